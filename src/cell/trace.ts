// `silkworm trace` on the cell side: run a probe through the cell's real
// pipeline with a recording Tracer, and turn each recorded step into a line
// that names the table entry used, in the kernel tools' formats.
import type { Dataplane, TraceResult, Tracer } from '../dataplane/dataplane.js';
import { DROP_NAMES } from '../dataplane/counters.js';
import { formatRoute, type RouteEntry } from '../tables/route.js';
import { formatNeighbor, type NeighborEntry } from '../tables/neighbor.js';
import { formatFdb, type FdbEntry } from '../tables/fdb.js';
import { renderIptables } from '../policy/planner.js';
import { formatMac, u32ToIp } from '../util/ip.js';
import { formatTag } from '../policy/tags.js';

export interface TraceStep {
  step: string;
  text: string;
  detail: Record<string, unknown>;
}

const tag4 = formatTag;

function describe(dp: Dataplane, name: string, d: Record<string, any>): string {
  switch (name) {
    case 'source':
      return `from container ${d.container} (app ${d.app}, ${u32ToIp(d.ip)}); its app's tag: ${d.tag ? `${tag4(d.tag)} (mark 0x${d.tag.toString(16)})` : 'none (the app is in no policy)'}`;
    case 'route':
      if (d.local) return `${u32ToIp(d.dst)} is container ${d.local} on this cell${d.route ? `: ${formatRoute(d.route as RouteEntry)}` : ''}`;
      return d.route ? `ip route get ${u32ToIp(d.dst)} → ${formatRoute(d.route as RouteEntry)}` : `no route to ${u32ToIp(d.dst)}`;
    case 'neighbor':
      return d.entry ? formatNeighbor(d.entry as NeighborEntry) : `no neighbor entry for ${u32ToIp(d.ip)}`;
    case 'fdb':
      return d.entry ? formatFdb(d.entry as FdbEntry) : `no FDB entry for ${formatMac(d.mac)}`;
    case 'encapsulate':
      return (
        `VXLAN flags 0x${d.flags.toString(16)} [${d.groupPolicyId ? 'G I' : 'I'}], Group Policy ID ${d.groupPolicyId} (${tag4(d.groupPolicyId)}), VNI ${d.vni}; ` +
        `UDP ${u32ToIp(d.underlaySrc)}:${d.srcPort} → ${u32ToIp(d.underlayDst)}:${d.dstPort}; inner ${formatMac(d.innerSrcMac)} → ${formatMac(d.innerDstMac)}, TTL ${d.ttl}`
      );
    case 'decapsulate':
      return `VXLAN from ${u32ToIp(d.from)}: flags 0x${d.flags.toString(16)}, VNI ${d.vni}, Group Policy ID ${d.groupPolicyId} (${tag4(d.groupPolicyId)})`;
    case 'lookup-container':
      return d.container ? `${u32ToIp(d.dst)} is container ${d.container} (app ${d.app}) on this cell` : `no container with ${u32ToIp(d.dst)} on this cell`;
    case 'policy': {
      if (d.verdict === 'allow' && d.rule) {
        const line = renderIptables({ marks: [], accepts: [d.rule] }).find((l) => l.includes('-j ACCEPT') && l.includes('--mark'));
        return `ALLOW by policy: ${line ?? JSON.stringify(d.rule)}`;
      }
      return `${d.verdict === 'allow' ? 'ALLOW' : 'DENY'}: ${d.why}${d.verdict === 'deny' ? ' → REJECT with ICMP port unreachable' : ''}`;
    }
    case 'deliver':
      return `deliver to container ${d.container} (app ${d.app}) with TTL ${d.ttl}`;
    case 'icmp-error':
      return `answer with an ICMP error to ${typeof d.to === 'number' ? u32ToIp(d.to) : d.to}`;
    case 'drop':
      return `DROP: ${DROP_NAMES[d.reason] ?? d.reason}`;
    default:
      return JSON.stringify(d);
  }
}

/** JSON-safe copy of a step's detail: IPs as dotted quads, MACs as text. */
function plain(d: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) {
    if (v instanceof Uint8Array) out[k] = formatMac(v);
    else if (typeof v === 'number' && /(^ip$|dst$|src$|^from$|^to$|underlay)/i.test(k) && k !== 'dstPort' && k !== 'srcPort') out[k] = u32ToIp(v);
    else if (k === 'reason' && typeof v === 'number') out[k] = DROP_NAMES[v];
    else if (v && typeof v === 'object' && !Array.isArray(v)) out[k] = plain(v as Record<string, unknown>);
    else out[k] = v;
  }
  return out;
}

export function runTrace(
  dp: Dataplane,
  kind: 'egress' | 'ingress',
  bytes: Uint8Array,
  opts: { port?: number; srcIp?: number; now: number },
): { steps: TraceStep[]; result: TraceResult & { hex: string } } {
  const steps: TraceStep[] = [];
  const tracer: Tracer = { step: (step, detail) => steps.push({ step, text: describe(dp, step, detail), detail: plain(detail) }) };
  const result = dp.trace(kind, bytes, opts, tracer);
  return { steps, result: { ...result, hex: Buffer.from(result.output).toString('hex') } };
}
