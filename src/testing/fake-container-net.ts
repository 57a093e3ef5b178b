// A ContainerNet for tests: remembers what it was asked to do instead of
// running iproute2, so both backends are tested without root.
import type { ContainerNet } from '../agent/netns.js';

export class FakeContainerNet implements ContainerNet {
  readonly attached = new Map<string, { tap: string; ip: number; mtu: number }>();
  exists(netns: string): boolean {
    return netns.length > 0;
  }
  async attach(tap: string, netns: string, ip: number, mtu: number): Promise<void> {
    this.attached.set(netns, { tap, ip, mtu });
  }
  async detach(netns: string): Promise<void> {
    this.attached.delete(netns);
  }
  captureDev = '';
  async prepareCapture(dev: string): Promise<void> {
    this.captureDev = dev;
  }
}
