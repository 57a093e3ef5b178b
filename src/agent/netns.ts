// What silk-cni does to a container's network namespace, done with iproute2
// (the source container's frame in test/vectors/seed002.ts carries these
// MACs and addresses):
//   eth0 (or the runtime's CNI_IFNAME) = our TAP moved into the namespace,
//   MAC ee:ee:<ip>, NOARP, MTU,
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

/**
 * A namespace is named by `ip netns` (`sw-appA-0`, in /run/netns) or by a path
 * (what CNI_NETNS holds: /run/netns/cni-…, /proc/PID/ns/net).
 */
export function netnsPath(netns: string): string {
  return netns.startsWith('/') ? netns : `/run/netns/${netns}`;
}

/** A Linux interface name: 1-15 bytes, no "/", whitespace or ":" (IFNAMSIZ, dev_valid_name). */
export function validIfName(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name) && name !== '.' && name !== '..';
}

/** `ip` inside `netns`: `ip -n NAME …`, or through nsenter for a path (ip -n takes names only). */
export function ipIn(netns: string, args: string[]): [string, string[]] {
  return netns.startsWith('/') ? ['nsenter', [`--net=${netns}`, 'ip', ...args]] : ['ip', ['-n', netns, ...args]];
}

export interface ContainerNet {
  /** Move TAP `tap` (in our namespace) into `netns` as `ifname` (default eth0) and configure it. */
  attach(tap: string, netns: string, ip: number, mtu: number, ifname?: string): Promise<void>;
  /** Remove `ifname` (default eth0) from `netns` (if it is still there). */
  detach(netns: string, ifname?: string): Promise<void>;
  /** Does the namespace exist? (a name in /run/netns or a path) */
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

async function ipNs(netns: string, args: string[]): Promise<void> {
  const [cmd, argv] = ipIn(netns, args);
  try {
    await run(cmd, argv, { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')} in ${netns} failed: ${(e.stderr || e.message).trim()}`);
  }
}

function sysctlIn(netns: string, setting: string): Promise<unknown> {
  const argv = netns.startsWith('/')
    ? ['nsenter', [`--net=${netns}`, 'sysctl', '-q', '-w', setting]]
    : ['ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', setting]];
  return run(argv[0] as string, argv[1] as string[], { timeout: 10_000 }).catch(() => undefined);
}

export class IprouteContainerNet implements ContainerNet {
  exists(netns: string): boolean {
    if (netns.startsWith('/')) return /^(\/[A-Za-z0-9_.:-]+)+$/.test(netns) && !netns.includes('/../') && fs.existsSync(netns);
    return /^[A-Za-z0-9_.-]+$/.test(netns) && fs.existsSync(`/run/netns/${netns}`);
  }

  async attach(tap: string, netns: string, addr: number, mtu: number, ifname = 'eth0'): Promise<void> {
    const ipText = u32ToIp(addr);
    const gw = u32ToIp(GATEWAY_IP);
    const mac = formatMac(macFromIp(0xeeee, addr));
    const hostMac = formatMac(macFromIp(0xaaaa, addr));
    // `ip link set … netns` takes a name or a path.
    await ip(['link', 'set', 'dev', tap, 'netns', netns]);
    const n = (args: string[]) => ipNs(netns, args);
    await n(['link', 'set', 'dev', tap, 'name', ifname]);
    // txqueuelen: the TAP's ring between the container's kernel and our
    // reader. At the default 1000 a TCP burst overflows it while the cell is
    // busy with the previous batch, and every overflow is a retransmit.
    await n(['link', 'set', 'dev', ifname, 'address', mac, 'mtu', String(mtu), 'arp', 'off', 'txqueuelen', String(TAP_QUEUE_LEN)]);
    await n(['link', 'set', 'dev', 'lo', 'up']);
    // IPv6 off, as silk does (the overlay is IPv4 only); before the link is up
    // so no router solicitations or DAD ever leave.
    await sysctlIn(netns, 'net.ipv6.conf.all.disable_ipv6=1');
    await sysctlIn(netns, `net.ipv6.conf.${ifname}.disable_ipv6=1`);
    await n(['addr', 'add', ipText, 'peer', `${gw}/32`, 'dev', ifname, 'scope', 'link']);
    await n(['link', 'set', 'dev', ifname, 'up']);
    await n(['neigh', 'replace', gw, 'lladdr', hostMac, 'dev', ifname, 'nud', 'permanent']);
    await n(['route', 'replace', 'default', 'via', gw, 'dev', ifname, 'src', ipText]);
  }

  async prepareCapture(dev: string): Promise<void> {
    await run('sysctl', ['-q', '-w', `net.ipv6.conf.${dev}.disable_ipv6=1`], { timeout: 10_000 }).catch(() => undefined);
    await ip(['link', 'set', 'dev', dev, 'arp', 'off', 'up']);
  }

  async detach(netns: string, ifname = 'eth0'): Promise<void> {
    if (!this.exists(netns)) return;
    await ipNs(netns, ['link', 'del', 'dev', ifname]).catch(() => undefined);
  }
}
