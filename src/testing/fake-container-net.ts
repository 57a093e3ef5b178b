// A ContainerNet for tests: remembers what it was asked to do instead of
// running iproute2, so both backends are tested without root.
import type { ContainerNet } from '../agent/netns.js';

export class FakeContainerNet implements ContainerNet {
  readonly attached = new Map<string, { tap: string; ip: number; mtu: number }>();
  /** The interface name each namespace got. */
  readonly ifnames = new Map<string, string>();
  /** Milliseconds each attach takes (a real one awaits several `ip` calls). */
  delayMs = 0;
  exists(netns: string): boolean {
    return netns.length > 0;
  }
  async attach(tap: string, netns: string, ip: number, mtu: number, ifname = 'eth0'): Promise<void> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    this.attached.set(netns, { tap, ip, mtu });
    this.ifnames.set(netns, ifname);
  }
  async detach(netns: string): Promise<void> {
    this.attached.delete(netns);
    this.ifnames.delete(netns);
  }
  captureDev = '';
  async prepareCapture(dev: string): Promise<void> {
    this.captureDev = dev;
  }
}
