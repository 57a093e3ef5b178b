// `silkworm trace` on the cell side: run a probe through the cell's real
// pipeline (a dry run that records typed steps, src/dataplane/trace.ts), and
// turn each step into a line that names the table entry used, in the kernel
// tools' formats, and a JSON-safe detail (IPs as dotted quads, MACs as text).
import type { Dataplane, TraceResult, TraceStep } from '../dataplane/dataplane.js';
import { dropName } from '../dataplane/counters.js';
import type { PolicyWhy } from '../dataplane/trace.js';
import { formatRoute, type RouteEntry } from '../tables/route.js';
import { formatNeighbor, type NeighborEntry } from '../tables/neighbor.js';
import { formatFdb, type FdbEntry } from '../tables/fdb.js';
import { renderIptables, type AcceptRule } from '../policy/planner.js';
import { tcpFlagsValid } from '../policy/conntrack.js';
import { tcpdumpFlags } from '../wire/dissect.js';
import { formatMac, u32ToIp } from '../util/ip.js';
import { formatTag } from '../policy/tags.js';

export interface CellTraceStep {
  step: TraceStep['kind'];
  text: string;
  detail: Record<string, unknown>;
}

/** The reasons printed for a policy verdict. */
const WHY: { readonly [K in PolicyWhy]: string } = {
  related: 'related ICMP error of a tracked connection (RELATED)',
  unrelated: 'ICMP error not related to any tracked connection',
  reply: 'reply of a tracked connection (ESTABLISHED)',
  established: 'tracked connection (ESTABLISHED)',
  'no-tag': 'no Group Policy ID on the packet and no tracked connection',
  'no-rule': 'no policy allows this tag to this container, protocol and port',
  policy: 'policy',
};

function tagText(tag: number): string {
  return tag ? `${formatTag(tag)} (mark 0x${tag.toString(16)})` : 'none (the app is in no policy)';
}

/** One line for a step, naming the table entry used as `ip route`, `ip neigh`, `bridge fdb` and `iptables -S` print it. */
export function describeStep(s: TraceStep): string {
  switch (s.kind) {
    case 'source':
      return `from container ${s.container} (app ${s.app}, ${u32ToIp(s.ip)}); its app's tag: ${tagText(s.tag)}`;
    case 'route':
      if (s.local !== undefined) return `${u32ToIp(s.dst)} is container ${s.local} on this cell${s.route ? `: ${formatRoute(s.route)}` : ''}`;
      return s.route ? `ip route get ${u32ToIp(s.dst)} → ${formatRoute(s.route)}` : `no route to ${u32ToIp(s.dst)}`;
    case 'neighbor':
      return s.entry ? formatNeighbor(s.entry) : `no neighbor entry for ${u32ToIp(s.ip)}`;
    case 'fdb':
      return s.entry ? formatFdb(s.entry) : `no FDB entry for ${formatMac(s.mac)}`;
    case 'encapsulate':
      return (
        `VXLAN flags 0x${s.flags.toString(16)} [${s.groupPolicyId ? 'G I' : 'I'}], Group Policy ID ${s.groupPolicyId} (${formatTag(s.groupPolicyId)}), VNI ${s.vni}; ` +
        `UDP ${u32ToIp(s.underlaySrc)}:${s.srcPort} → ${u32ToIp(s.underlayDst)}:${s.dstPort}; inner ${formatMac(s.innerSrcMac)} → ${formatMac(s.innerDstMac)}, TTL ${s.ttl}`
      );
    case 'decapsulate':
      return `VXLAN from ${u32ToIp(s.from)}: flags 0x${s.flags.toString(16)}, VNI ${s.vni}, Group Policy ID ${s.groupPolicyId} (${formatTag(s.groupPolicyId)})`;
    case 'lookup-container':
      return s.container ? `${u32ToIp(s.dst)} is container ${s.container} (app ${s.app}) on this cell` : `no container with ${u32ToIp(s.dst)} on this cell`;
    case 'conntrack':
      return (
        `conntrack: INVALID, TCP flags [${tcpdumpFlags(s.tcpFlags)}] ` +
        (tcpFlagsValid(s.tcpFlags)
          ? 'without a tracked connection (only a SYN, or an ACK picked up mid-stream, opens one)'
          : 'are a mix conntrack never accepts') +
        ': not tracked (no ESTABLISHED, and an ICMP error about it is not RELATED)'
      );
    case 'policy': {
      if (s.why === 'policy') {
        const line = renderIptables({ marks: [], accepts: [s.rule] }).find((l) => l.includes('-j ACCEPT') && l.includes('--mark'));
        return `ALLOW by policy: ${line ?? JSON.stringify(ruleJson(s.rule))}`;
      }
      if (s.verdict === 'allow') return `ALLOW: ${WHY[s.why]}`;
      // An ICMP error is never answered with one (RFC 1122 §3.2.2): it is dropped, not rejected.
      return `DENY: ${WHY[s.why]} → ${s.why === 'unrelated' ? 'DROP (an ICMP error is never answered with another)' : 'REJECT with ICMP port unreachable'}`;
    }
    case 'deliver':
      return `deliver to container ${s.container} (app ${s.app}) with TTL ${s.ttl}`;
    case 'icmp-error':
      return `answer with an ICMP error to ${'toContainer' in s ? s.toContainer : u32ToIp(s.toUnderlay)}`;
    case 'fragment':
      if (s.outcome === 'held')
        return `IPv4 fragment (id ${s.id}, offset ${s.offset}${s.more ? ', MF' : ''}): held for reassembly; policy judges the whole datagram when its last fragment arrives`;
      return s.outcome === 'forward'
        ? `datagram ${s.id} reassembled: its ${s.fragments} fragments go on as they came (the first fragment's header on each)`
        : `datagram ${s.id} larger than the MTU and without DF: split into ${s.fragments} fragments`;
    case 'drop':
      return `DROP: ${dropName(s.reason)}`;
    default:
      return unreachable(s);
  }
}

function unreachable(s: never): never {
  throw new Error(`unknown trace step ${JSON.stringify(s)}`);
}

function routeJson(r: RouteEntry | null): Record<string, unknown> | null {
  return r && { prefix: u32ToIp(r.prefix), len: r.len, via: u32ToIp(r.via), dev: r.dev, src: u32ToIp(r.src) };
}
function neighborJson(e: NeighborEntry | null): Record<string, unknown> | null {
  return e && { ip: u32ToIp(e.ip), mac: formatMac(e.mac), dev: e.dev };
}
function fdbJson(e: FdbEntry | null): Record<string, unknown> | null {
  return e && { mac: formatMac(e.mac), dst: u32ToIp(e.dst), dev: e.dev };
}
function ruleJson(a: AcceptRule): Record<string, unknown> {
  return { dstIp: u32ToIp(a.dstIp), dstApp: a.dstApp, srcApp: a.srcApp, tag: a.tag, protocol: a.protocol, portStart: a.portStart, portEnd: a.portEnd };
}

/** A step's fields as JSON: IPs as dotted quads, MACs as text, a drop reason by name. */
export function stepDetail(s: TraceStep): Record<string, unknown> {
  switch (s.kind) {
    case 'source':
      return { container: s.container, app: s.app, ip: u32ToIp(s.ip), tag: s.tag };
    case 'route':
      return s.local !== undefined ? { dst: u32ToIp(s.dst), route: routeJson(s.route), local: s.local } : { dst: u32ToIp(s.dst), route: routeJson(s.route) };
    case 'neighbor':
      return { ip: u32ToIp(s.ip), entry: neighborJson(s.entry) };
    case 'fdb':
      return { mac: formatMac(s.mac), entry: fdbJson(s.entry) };
    case 'encapsulate':
      return {
        vni: s.vni,
        groupPolicyId: s.groupPolicyId,
        flags: s.flags,
        srcPort: s.srcPort,
        dstPort: s.dstPort,
        underlaySrc: u32ToIp(s.underlaySrc),
        underlayDst: u32ToIp(s.underlayDst),
        innerSrcMac: formatMac(s.innerSrcMac),
        innerDstMac: formatMac(s.innerDstMac),
        ttl: s.ttl,
      };
    case 'decapsulate':
      return { from: u32ToIp(s.from), vni: s.vni, flags: s.flags, groupPolicyId: s.groupPolicyId };
    case 'lookup-container':
      return { dst: u32ToIp(s.dst), container: s.container, app: s.app };
    case 'conntrack':
      return { state: s.state, tcpFlags: s.tcpFlags, flags: tcpdumpFlags(s.tcpFlags), validFlags: tcpFlagsValid(s.tcpFlags) };
    case 'policy':
      if (s.why === 'policy') return { verdict: s.verdict, why: WHY[s.why], rule: ruleJson(s.rule), sameCell: s.sameCell };
      if (s.why === 'no-tag' || s.why === 'no-rule') return { verdict: s.verdict, why: WHY[s.why], tag: s.tag, container: s.container, app: s.app };
      return { verdict: s.verdict, why: WHY[s.why] };
    case 'deliver':
      return { container: s.container, app: s.app, ttl: s.ttl };
    case 'icmp-error':
      return { to: 'toContainer' in s ? s.toContainer : u32ToIp(s.toUnderlay) };
    case 'fragment':
      return { id: s.id, offset: s.offset, more: s.more, outcome: s.outcome, fragments: s.fragments };
    case 'drop':
      return { reason: dropName(s.reason) };
    default:
      return unreachable(s);
  }
}

export function runTrace(
  dp: Dataplane,
  kind: 'egress' | 'ingress',
  bytes: Uint8Array,
  opts: { port?: number; srcIp?: number; now: number },
): { steps: CellTraceStep[]; result: TraceResult & { hex: string } } {
  const { steps, ...result } = dp.trace(kind, bytes, opts);
  return {
    steps: steps.map((s) => ({ step: s.kind, text: describeStep(s), detail: stepDetail(s) })),
    result: { ...result, hex: Buffer.from(result.output).toString('hex') },
  };
}
