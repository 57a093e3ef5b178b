// What silk-cni does to a container's network namespace, done with iproute2
// (the source container's frame in test/vectors/seed002.ts carries these
// MACs and addresses):
//   eth0 = our TAP moved into the namespace, MAC ee:ee:<ip>, NOARP, MTU,
//   `<ip> peer 169.254.0.1/32`, default route via 169.254.0.1 src <ip>,
//   permanent neighbor 169.254.0.1 → aa:aa:<ip>, IPv6 off.
// Behind an interface so both backends are tested without root (the fake is
// in src/testing/fake-container-net.ts). The kernel backend gives the same
// set-up to its veth's container end.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import { formatMac, macFromIp, u32ToIp } from '../util/ip.js';
import { GATEWAY_IP } from '../util/silk.js';

const run = promisify(execFile);
export const TAP_QUEUE_LEN = 4096;

export interface ContainerNet {
  /** Move TAP `tap` (in our namespace) into `netns` as eth0 and configure it. */
  attach(tap: string, netns: string, ip: number, mtu: number): Promise<void>;
  /** Remove eth0 from `netns` (if it is still there). */
  detach(netns: string): Promise<void>;
  /** Does the namespace exist? */
  exists(netns: string): boolean;
  /** Bring up the silk-vtep capture TAP in our own namespace: up, no ARP, no IPv6, nothing answers on it. */
  prepareCapture(dev: string): Promise<void>;
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args, { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}`);
  }
}

export class IprouteContainerNet implements ContainerNet {
  exists(netns: string): boolean {
    return /^[A-Za-z0-9_.-]+$/.test(netns) && fs.existsSync(`/run/netns/${netns}`);
  }

  async attach(tap: string, netns: string, addr: number, mtu: number): Promise<void> {
    const ipText = u32ToIp(addr);
    const gw = u32ToIp(GATEWAY_IP);
    const mac = formatMac(macFromIp(0xeeee, addr));
    const hostMac = formatMac(macFromIp(0xaaaa, addr));
    await ip(['link', 'set', 'dev', tap, 'netns', netns]);
    const n = ['-n', netns];
    await ip([...n, 'link', 'set', 'dev', tap, 'name', 'eth0']);
    // txqueuelen: the TAP's ring between the container's kernel and our
    // reader. At the default 1000 a TCP burst overflows it while the cell is
    // busy with the previous batch, and every overflow is a retransmit.
    await ip([...n, 'link', 'set', 'dev', 'eth0', 'address', mac, 'mtu', String(mtu), 'arp', 'off', 'txqueuelen', String(TAP_QUEUE_LEN)]);
    await ip([...n, 'link', 'set', 'dev', 'lo', 'up']);
    // IPv6 off, as silk does (the overlay is IPv4 only); before the link is up
    // so no router solicitations or DAD ever leave.
    await run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1'], { timeout: 10_000 }).catch(() => undefined);
    await run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1'], { timeout: 10_000 }).catch(() => undefined);
    await ip([...n, 'addr', 'add', ipText, 'peer', `${gw}/32`, 'dev', 'eth0', 'scope', 'link']);
    await ip([...n, 'link', 'set', 'dev', 'eth0', 'up']);
    await ip([...n, 'neigh', 'replace', gw, 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent']);
    await ip([...n, 'route', 'replace', 'default', 'via', gw, 'dev', 'eth0', 'src', ipText]);
  }

  async prepareCapture(dev: string): Promise<void> {
    await run('sysctl', ['-q', '-w', `net.ipv6.conf.${dev}.disable_ipv6=1`], { timeout: 10_000 }).catch(() => undefined);
    await ip(['link', 'set', 'dev', dev, 'arp', 'off', 'up']);
  }

  async detach(netns: string): Promise<void> {
    if (!this.exists(netns)) return;
    await ip(['-n', netns, 'link', 'del', 'dev', 'eth0']).catch(() => undefined);
  }
}
