// Namespaces, the underlay bridge and the cells' veths, made with iproute2.
//
// Network safety: nothing is ever created in the root namespace. Each veth
// is created *inside* P-underlay with its peer placed straight into the
// cell's namespace in the same netlink request (`ip -n P-underlay link add …
// peer name eth0 netns P-cell1`), so the root namespace never holds it, not
// even for a moment. Every command is an argv array for execFileSync — no
// shell, no string splicing.
import { execFileSync } from 'node:child_process';
import { fail } from './errors.js';
import type { LabPlan } from './topology.js';

export type Exec = (cmd: string, args: string[]) => string;

/** Run a command; on failure throw one sentence with the command and its stderr. */
export const run: Exec = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') fail(`"${cmd}" is not installed (the lab needs iproute2)`);
    const why = (e.stderr ?? '').trim().split('\n').pop() || e.message;
    fail(`${cmd} ${args.join(' ')} failed: ${why}`);
  }
};

export function ip(args: string[]): string {
  return run('ip', args);
}

/** Names of all network namespaces (`ip netns list` prints "name (id: N)" or "name"). */
export function listNetns(): string[] {
  const out = ip(['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

export function netnsExists(name: string): boolean {
  return listNetns().includes(name);
}

/** Interface names in a namespace (`ip -o link` lines are "N: name@peer: <…>"). */
export function listLinks(netns?: string): string[] {
  const args = netns ? ['-n', netns, '-o', 'link', 'show'] : ['-o', 'link', 'show'];
  return ip(args)
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n);
}

/** IPv4 addresses with prefix length on one device of a namespace. */
export function listAddrs(netns: string, dev: string): string[] {
  const out = ip(['-n', netns, '-o', '-4', 'addr', 'show', 'dev', dev]);
  return [...out.matchAll(/\binet\s+(\d+\.\d+\.\d+\.\d+\/\d+)/g)].map((m) => m[1]!);
}

/** PIDs of processes whose network namespace is `netns`. */
export function netnsPids(netns: string): number[] {
  return ip(['netns', 'pids', netns])
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

function addNetns(name: string, sysctl: Exec): void {
  ip(['netns', 'add', name]);
  ip(['-n', name, 'link', 'set', 'lo', 'up']);
  // IPv6 off before any device arrives, so the default applies to every later
  // interface: no router solicitations or DAD multicast in the captures users
  // read, and silk's containers run without IPv6 too. Not fatal if sysctl is
  // missing: the data path is IPv4 only.
  try {
    sysctl('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  } catch {
    /* IPv6 noise is cosmetic */
  }
}

/**
 * Create every namespace of the plan and wire the underlay. `onCreated` is
 * called after each namespace exists, so a caller can record it before the
 * next step can fail (tear-down then knows exactly what to remove).
 */
export function buildTopology(plan: LabPlan, onCreated: (netns: string) => void, exec: Exec = run): void {
  const u = plan.underlay;
  for (const ns of plan.namespaces) {
    if (netnsExists(ns)) fail(`namespace ${ns} already exists: remove it with "silkworm lab down --prefix ${plan.prefix}"`);
    addNetns(ns, exec);
    onCreated(ns);
  }
  const mtu = String(plan.mtu);
  // STP off (the default, said explicitly): a port then forwards at once
  // instead of spending 2 × forward_delay in listening/learning (802.1D).
  ip(['-n', u.netns, 'link', 'add', u.bridge, 'mtu', mtu, 'type', 'bridge', 'stp_state', '0']);
  ip(['-n', u.netns, 'link', 'set', u.bridge, 'up']);
  // The controller's host address: the controller runs in this namespace and cells reach it over the bridge.
  ip(['-n', u.netns, 'addr', 'add', `${plan.controller.ip}/${plan.controller.prefixLen}`, 'dev', u.bridge]);
  for (const c of plan.cells) {
    ip(['-n', u.netns, 'link', 'add', c.bridgePort, 'mtu', mtu, 'type', 'veth', 'peer', 'name', c.dev, 'mtu', mtu, 'netns', c.netns]);
    ip(['-n', u.netns, 'link', 'set', c.bridgePort, 'master', u.bridge]);
    ip(['-n', u.netns, 'link', 'set', c.bridgePort, 'up']);
    ip(['-n', c.netns, 'addr', 'add', `${c.underlayIp}/${c.underlayPrefixLen}`, 'dev', c.dev]);
    ip(['-n', c.netns, 'link', 'set', c.dev, 'up']);
  }
}

/** Delete namespaces that exist; returns the ones that could not be deleted, with why. */
export function deleteNamespaces(names: string[]): string[] {
  const errors: string[] = [];
  const present = new Set(listNetns());
  for (const ns of names) {
    if (!present.has(ns)) continue;
    try {
      ip(['netns', 'del', ns]);
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
    }
  }
  return errors;
}
