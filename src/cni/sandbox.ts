// What silkworm-cni reads and changes inside a container's namespace itself
// (CHECK, a lower MTU, DEL after the cell forgot the container): `ip -j`
// through nsenter, since `ip -n` takes only names in /run/netns and CNI_NETNS
// is a path. compareSandbox() is pure, so CHECK's rules are unit-tested.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { GATEWAY } from './spec.js';

const run = promisify(execFile);

export interface SandboxState {
  /** `ip -j addr show dev IFNAME`[0], or null when there is no such interface. */
  link: { ifname?: string; address?: string; mtu?: number; flags?: string[]; addr_info?: { family?: string; local?: string; address?: string; prefixlen?: number }[] } | null;
  /** `ip -j route show`. */
  routes: { dst?: string; gateway?: string; dev?: string; prefsrc?: string }[];
  /** `ip -j neigh show dev IFNAME`. */
  neighs: { dst?: string; lladdr?: string; state?: string[] }[];
}

async function ipJson(netns: string, args: string[]): Promise<unknown[]> {
  const { stdout } = await run('nsenter', [`--net=${netns}`, 'ip', '-j', ...args], { timeout: 10_000, encoding: 'utf8' });
  const v = JSON.parse(stdout || '[]');
  return Array.isArray(v) ? v : [];
}

export function sandboxExists(netns: string): boolean {
  return netns.startsWith('/') && fs.existsSync(netns);
}

export async function readSandbox(netns: string, ifname: string): Promise<SandboxState> {
  const links = (await ipJson(netns, ['addr', 'show'])) as NonNullable<SandboxState['link']>[];
  const link = links.find((l) => l.ifname === ifname) ?? null;
  const routes = (await ipJson(netns, ['route', 'show'])) as SandboxState['routes'];
  const neighs = link ? ((await ipJson(netns, ['neigh', 'show', 'dev', ifname])) as SandboxState['neighs']) : [];
  return { link, routes, neighs };
}

export interface Expected {
  ifname: string;
  ip: string;
  mac: string;
  /** The gateway's MAC: aa:aa:<ip>. */
  gatewayMac: string;
}

/** Every way the namespace differs from what ADD set up; empty when it matches. */
export function compareSandbox(s: SandboxState, e: Expected): string[] {
  const out: string[] = [];
  if (!s.link) return [`interface ${e.ifname} is missing`];
  if ((s.link.address ?? '').toLowerCase() !== e.mac.toLowerCase()) out.push(`${e.ifname} has MAC ${s.link.address}, not ${e.mac}`);
  if (!(s.link.flags ?? []).includes('UP')) out.push(`${e.ifname} is down`);
  const v4 = (s.link.addr_info ?? []).filter((a) => a.family === 'inet');
  const ours = v4.find((a) => a.local === e.ip);
  if (!ours) out.push(`${e.ifname} has no address ${e.ip}`);
  else if (ours.address !== GATEWAY || ours.prefixlen !== 32) out.push(`${e.ifname}'s address ${e.ip} is not "peer ${GATEWAY}/32"`);
  const def = s.routes.find((r) => r.dst === 'default');
  if (!def) out.push('there is no default route');
  else if (def.gateway !== GATEWAY || def.dev !== e.ifname) out.push(`the default route is via ${def.gateway ?? '-'} dev ${def.dev ?? '-'}, not via ${GATEWAY} dev ${e.ifname}`);
  const n = s.neighs.find((x) => x.dst === GATEWAY);
  if (!n || (n.lladdr ?? '').toLowerCase() !== e.gatewayMac.toLowerCase()) out.push(`there is no neighbor ${GATEWAY} lladdr ${e.gatewayMac} on ${e.ifname}`);
  return out;
}

/** `ip link set dev IFNAME mtu N` in the namespace. */
export async function setMtu(netns: string, ifname: string, mtu: number): Promise<void> {
  await run('nsenter', [`--net=${netns}`, 'ip', 'link', 'set', 'dev', ifname, 'mtu', String(mtu)], { timeout: 10_000 });
}

/**
 * DEL when the cell has no record (it restarted, or was never told): remove
 * IFNAME only if it carries silk's container MAC (ee:ee:…), so an interface
 * some other plugin made is never touched. Returns whether it removed one.
 */
export async function removeOurInterface(netns: string, ifname: string): Promise<boolean> {
  if (!sandboxExists(netns)) return false;
  let links: { ifname?: string; address?: string }[];
  try {
    links = (await ipJson(netns, ['link', 'show'])) as typeof links;
  } catch {
    return false;
  }
  const l = links.find((x) => x.ifname === ifname);
  if (!l || !(l.address ?? '').toLowerCase().startsWith('ee:ee:')) return false;
  await run('nsenter', [`--net=${netns}`, 'ip', 'link', 'del', 'dev', ifname], { timeout: 10_000 });
  return true;
}
