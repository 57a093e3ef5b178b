// What a kernel cell asks of the kernel, as plain data: argv arrays for `ip`,
// `bridge` and an iptables-restore payload, computed from the lease, the
// remote leases, the containers and the policy plan. Pure, so the exact
// commands are tested without root (as silk's vxlan-policy-agent: the plan
// is data, the converger in src/agent/converger.ts decides what to apply).
//
// What silk does, and what this mirrors:
// - silk-daemon's VTEP: `silk-vtep`, vxlan id 1, dstport 4789, local =
//   underlay IP on the underlay device, no learning, GBP on, MAC ee:ee:<VTEP
//   IP>, MTU underlay − 50, and the lease's first address with the overlay
//   network's prefix (so every remote VTEP address is on-link through it:
//   silk's route `10.255.43.0/24 via 10.255.43.0 dev silk-vtep src
//   10.255.108.0` needs no `onlink`).
// - silk-daemon's converger: per remote lease a route, a permanent neighbor
//   for the remote VTEP IP → ee:ee:<VTEP IP>, and an FDB entry for that MAC
//   → the remote underlay IP.
// - silk-cni: a veth pair, host side `s-<12 digits>` with MAC aa:aa:<ip>,
//   NOARP, `169.254.0.1 peer <ip>/32`, and a permanent neighbor <ip> →
//   ee:ee:<ip>; the container side is configured exactly as the userspace
//   cell configures its TAP (src/agent/netns.ts does both).
// - vxlan-policy-agent's enforcer: a new `vpa--<ts>` chain filled from the
//   plan, a jump to it inserted at FORWARD position 1, the old jump and chain
//   removed. Done as ONE iptables-restore --noflush transaction, so there is
//   no instant with both or neither chain (silk runs the same steps as
//   separate commands under the xtables lock; the order is the same).
import { formatMac, macFromIp, silkIfName, u32ToIp } from '../util/ip.js';
import { GATEWAY_IP, VTEP_DEV } from '../util/silk.js';
import { renderIptables, type Plan } from '../policy/planner.js';
import { diffByKey } from '../agent/converger.js';

/** The per-cell overlay chain (renderIptables' default name) and the prefix of the policy chains. */
export const OVERLAY_CHAIN = 'overlay';
export const POLICY_CHAIN_PREFIX = 'vpa--';
/** Host-side veth names all start with "s-" (silk-cni): one wildcard jump covers every local container. */
export const HOST_VETH_GLOB = 's-+';

export interface VtepSpec {
  underlayIp: string;
  underlayDev: string;
  /** The lease's first address (u32). */
  vtepIp: number;
  /** Overlay network prefix length (16 for 10.255.0.0/16). */
  overlayPrefixLen: number;
  vni: number;
  port: number;
  /** Inner MTU (underlay − 50). */
  mtu: number;
}

export type Argv = string[];

/** `ip …` argv lists that create silk-vtep (after any stale one was deleted). */
export function vtepCommands(s: VtepSpec): Argv[] {
  const mac = formatMac(macFromIp(0xeeee, s.vtepIp));
  return [
    ['link', 'add', VTEP_DEV, 'address', mac, 'mtu', String(s.mtu), 'type', 'vxlan', 'id', String(s.vni), 'dev', s.underlayDev,
      'local', s.underlayIp, 'dstport', String(s.port), 'nolearning', 'gbp'],
    ['addr', 'add', `${u32ToIp(s.vtepIp)}/${s.overlayPrefixLen}`, 'scope', 'link', 'dev', VTEP_DEV],
    ['link', 'set', 'dev', VTEP_DEV, 'up'],
  ];
}

/** A remote cell as the kernel needs it. */
export interface RemoteLease {
  underlayIp: string;
  /** Lease network address = the remote VTEP's overlay IP (u32). */
  subnet: number;
  prefixLen: number;
}

export function leaseKey(l: RemoteLease): string {
  return `${u32ToIp(l.subnet)}/${l.prefixLen}`;
}

/** Commands that install (or replace) one remote lease: route, permanent neighbor, FDB entry. */
export function leaseAddCommands(l: RemoteLease, localVtepIp: number): { ip: Argv[]; bridge: Argv[] } {
  const vtep = u32ToIp(l.subnet);
  const mac = formatMac(macFromIp(0xeeee, l.subnet));
  return {
    ip: [
      ['neigh', 'replace', vtep, 'lladdr', mac, 'dev', VTEP_DEV, 'nud', 'permanent'],
      ['route', 'replace', leaseKey(l), 'via', vtep, 'dev', VTEP_DEV, 'src', u32ToIp(localVtepIp)],
    ],
    bridge: [['fdb', 'replace', mac, 'dev', VTEP_DEV, 'dst', l.underlayIp, 'self', 'permanent']],
  };
}

/** Commands that remove one remote lease. */
export function leaseDelCommands(l: RemoteLease): { ip: Argv[]; bridge: Argv[] } {
  const vtep = u32ToIp(l.subnet);
  const mac = formatMac(macFromIp(0xeeee, l.subnet));
  return {
    ip: [
      ['route', 'del', leaseKey(l), 'dev', VTEP_DEV],
      ['neigh', 'del', vtep, 'dev', VTEP_DEV],
    ],
    bridge: [['fdb', 'del', mac, 'dev', VTEP_DEV, 'self']],
  };
}

/** What changed between the applied remote leases and the desired ones (keyed by subnet). */
export function diffLeases(
  applied: ReadonlyMap<string, RemoteLease>,
  desired: readonly RemoteLease[],
): { add: RemoteLease[]; del: RemoteLease[] } {
  return diffByKey(applied, desired, leaseKey, (a, b) => a.underlayIp === b.underlayIp);
}

/** Host-side and temporary peer names of a container's veth pair. */
export function vethNames(ip: number): { host: string; peer: string } {
  const host = silkIfName(ip); // s-010255002002: 14 bytes, within IFNAMSIZ
  return { host, peer: 'c' + host.slice(1) };
}

/** `ip …` argv lists for the host side of a container (before/after the peer is moved in). */
export function containerHostCommands(ip: number, mtu: number): { create: Argv; configure: Argv[] } {
  const { host, peer } = vethNames(ip);
  const hostMac = formatMac(macFromIp(0xaaaa, ip));
  const ctrMac = formatMac(macFromIp(0xeeee, ip));
  const ipText = u32ToIp(ip);
  return {
    create: ['link', 'add', host, 'mtu', String(mtu), 'address', hostMac, 'type', 'veth', 'peer', 'name', peer, 'mtu', String(mtu)],
    configure: [
      ['link', 'set', 'dev', host, 'arp', 'off', 'up'],
      ['addr', 'add', u32ToIp(GATEWAY_IP), 'peer', `${ipText}/32`, 'dev', host, 'scope', 'link'],
      ['neigh', 'replace', ipText, 'lladdr', ctrMac, 'dev', host, 'nud', 'permanent'],
    ],
  };
}

/**
 * The fixed part, applied once at start: the overlay chain exactly as
 * renderIptables prints it, and FORWARD's jump to it for everything going to
 * a local container. Replaces any stale copy (a restarted cell).
 */
export function baseRestorePayload(hasOverlayChain: boolean, hasJump: boolean): string {
  const lines = renderIptables({ marks: [], accepts: [] }, 'unused', OVERLAY_CHAIN);
  const overlay = lines.slice(lines.indexOf(`-N ${OVERLAY_CHAIN}`) + 1);
  return [
    '*filter',
    ...(hasJump ? [`-D FORWARD -o ${HOST_VETH_GLOB} -j ${OVERLAY_CHAIN}`] : []),
    ...(hasOverlayChain ? [`-F ${OVERLAY_CHAIN}`] : [`:${OVERLAY_CHAIN} - [0:0]`]),
    ...overlay,
    `-A FORWARD -o ${HOST_VETH_GLOB} -j ${OVERLAY_CHAIN}`,
    'COMMIT',
    '',
  ].join('\n');
}

/** The policy chain's rules, exactly as renderIptables prints them for `chain` (the `-N` line first). */
export function policyChainLines(p: Plan, chain: string): string[] {
  const lines = renderIptables(p, chain, OVERLAY_CHAIN);
  return lines.slice(0, lines.indexOf(`-N ${OVERLAY_CHAIN}`));
}

/**
 * One iptables-restore --noflush transaction: create `chain` with the plan's
 * rules, jump to it from FORWARD position 1, then drop every `old` chain and
 * its jump. `-N X` becomes the restore format's `:X - [0:0]`; every other
 * line is passed as renderIptables printed it.
 */
export function swapRestorePayload(p: Plan, chain: string, old: readonly string[]): string {
  const lines = policyChainLines(p, chain).map((l) => (l.startsWith('-N ') ? `:${l.slice(3)} - [0:0]` : l));
  const out = ['*filter', ...lines, `-I FORWARD 1 -j ${chain}`];
  for (const o of old) out.push(`-D FORWARD -j ${o}`, `-F ${o}`, `-X ${o}`);
  out.push('COMMIT', '');
  return out.join('\n');
}

/** silk names the chain vpa--<unix seconds>; two swaps in one second get the next number. */
export function nextChainName(nowSeconds: number, previous: string | null): string {
  let ts = Math.floor(nowSeconds);
  const prev = previous === null ? NaN : Number(previous.slice(POLICY_CHAIN_PREFIX.length));
  if (Number.isFinite(prev) && ts <= prev) ts = prev + 1;
  return `${POLICY_CHAIN_PREFIX}${ts}`;
}

export interface CountedRule {
  /** The rule as `iptables -S` prints it (without the counters). */
  line: string;
  packets: number;
  bytes: number;
}

/**
 * Parse `iptables -v -S [chain]`: rules carry `-c PKTS BYTES` (iptables 1.8
 * prints them before the target); chain lines (`-N`, `-P`) have no counters.
 * Policy lines `-P CHAIN POLICY -c P B` keep their counters too.
 */
export function parseCountedRules(text: string): CountedRule[] {
  const out: CountedRule[] = [];
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (l === '') continue;
    const m = / -c (\d+) (\d+)(?= |$)/.exec(l);
    if (!m) {
      out.push({ line: l, packets: 0, bytes: 0 });
      continue;
    }
    out.push({ line: (l.slice(0, m.index) + l.slice(m.index + m[0].length)).trim(), packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return out;
}

/** Policy chains present in `iptables -S` output (`-N vpa--…`). */
export function policyChainsIn(saveText: string): string[] {
  const out: string[] = [];
  for (const l of saveText.split('\n')) {
    const m = /^-N (vpa--\d+)$/.exec(l.trim());
    if (m) out.push(m[1]!);
  }
  return out;
}

/** One device's counters from `ip -s -j link`. */
export interface LinkStats {
  ifname: string;
  rx_packets: number;
  rx_bytes: number;
  rx_dropped: number;
  tx_packets: number;
  tx_bytes: number;
  tx_dropped: number;
}

/** Parse `ip -s -j link show` (stats64 since iproute2 4.x; fall back to stats). */
export function parseLinkStats(json: string): LinkStats[] {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(v)) return [];
  const out: LinkStats[] = [];
  for (const d of v as Record<string, any>[]) {
    if (!d || typeof d.ifname !== 'string') continue;
    const s = d.stats64 ?? d.stats ?? {};
    const n = (x: unknown) => (typeof x === 'number' ? x : 0);
    out.push({
      ifname: d.ifname,
      rx_packets: n(s.rx?.packets),
      rx_bytes: n(s.rx?.bytes),
      rx_dropped: n(s.rx?.dropped),
      tx_packets: n(s.tx?.packets),
      tx_bytes: n(s.tx?.bytes),
      tx_dropped: n(s.tx?.dropped),
    });
  }
  return out;
}
