// Trace steps, typed: what the pipeline tells a tracer about one packet's walk.
//
// The pipeline reports each step to a StepSink by calling one method per step
// kind with the values it already has in hand, each call under `if
// (run.tracing)` (state.ts Run): on the hot path the sink is NO_STEPS and the
// calls are skipped, arguments and all, so a packet that is not traced builds
// nothing and allocates nothing. Under `silkworm trace` the sink is a
// StepRecorder, which builds one TraceStep object per call.
//
// A TraceStep is plain data with typed fields (numbers for addresses, table
// entries as the tables hold them); src/cell/trace.ts turns each kind into a
// line of text and a JSON document. Nothing here formats.
import type { RouteEntry, RouteTable } from '../tables/route.js';
import type { NeighborEntry } from '../tables/neighbor.js';
import type { FdbEntry } from '../tables/fdb.js';
import type { AcceptRule } from '../policy/planner.js';
import type { Drop } from './counters.js';

/** Why a packet was allowed or denied at the destination (a tracked flow, a rule, or neither). */
export type PolicyWhy =
  | 'related' // an ICMP error quoting a tracked connection (RELATED)
  | 'unrelated' // an ICMP error quoting none
  | 'reply' // the reply direction of a tracked connection (ESTABLISHED)
  | 'established' // the original direction of a tracked connection (ESTABLISHED)
  | 'no-tag' // no Group Policy ID and no tracked connection
  | 'no-rule' // a tag, but no rule for it to this container, protocol and port
  | 'policy'; // allowed by a policy rule

export type TraceStep =
  | { kind: 'source'; container: string; app: string; ip: number; tag: number }
  /** Route lookup; `local` names the container when the destination is on this cell. */
  | { kind: 'route'; dst: number; route: RouteEntry | null; local?: string }
  | { kind: 'neighbor'; ip: number; entry: NeighborEntry | null }
  | { kind: 'fdb'; mac: Uint8Array; entry: FdbEntry | null }
  | {
      kind: 'encapsulate';
      vni: number;
      groupPolicyId: number;
      /** VXLAN byte 0. */
      flags: number;
      srcPort: number;
      dstPort: number;
      underlaySrc: number;
      underlayDst: number;
      innerSrcMac: Uint8Array;
      innerDstMac: Uint8Array;
      /** Inner TTL as sent. */
      ttl: number;
    }
  | { kind: 'decapsulate'; from: number; vni: number; flags: number; groupPolicyId: number }
  | { kind: 'lookup-container'; dst: number; container: string | null; app: string | null }
  | { kind: 'conntrack'; state: 'invalid'; tcpFlags: number }
  | { kind: 'policy'; verdict: 'allow'; why: 'related' | 'reply' | 'established' }
  | { kind: 'policy'; verdict: 'deny'; why: 'unrelated' }
  | { kind: 'policy'; verdict: 'deny'; why: 'no-tag' | 'no-rule'; tag: number; container: string; app: string }
  | { kind: 'policy'; verdict: 'allow'; why: 'policy'; rule: AcceptRule; sameCell: boolean }
  | { kind: 'deliver'; container: string; app: string; ttl: number }
  /** An ICMP error generated in place: back out of a container's TAP, or encapsulated to a cell. */
  | { kind: 'icmp-error'; toContainer: string }
  | { kind: 'icmp-error'; toUnderlay: number }
  /**
   * An IPv4 fragment or an oversize packet: `held` for reassembly (offset and
   * MF of this fragment, the datagram's id), or a datagram sent on as
   * `fragments` pieces (`split` when cut afresh at the MTU).
   */
  | { kind: 'fragment'; id: number; offset: number; more: boolean; outcome: 'held' | 'forward' | 'split'; fragments: number }
  | { kind: 'drop'; reason: Drop };

export type TraceStepKind = TraceStep['kind'];

/** The containers the pipeline names in steps (a Port is one). */
interface Named {
  readonly handle: string;
  readonly app: string;
}

/** What the encapsulate step is told, in order (a tuple, so the sink and the recorder cannot disagree). */
export type EncapsulateArgs = [
  vni: number,
  groupPolicyId: number,
  flags: number,
  srcPort: number,
  dstPort: number,
  underlaySrc: number,
  underlayDst: number,
  innerSrcMac: Uint8Array,
  innerDstMac: Uint8Array,
  ttl: number,
];

/** Where the pipeline reports steps. Arguments are values the pipeline already holds: calling costs no allocation. */
export interface StepSink {
  source(port: Named, ip: number, tag: number): void;
  route(dst: number, route: RouteEntry | undefined): void;
  /** The destination is container `local` on this cell (the route table is consulted only when recording). */
  routeLocal(dst: number, local: Named): void;
  neighbor(ip: number, entry: NeighborEntry | undefined): void;
  fdb(mac: Uint8Array, entry: FdbEntry | undefined): void;
  encapsulate(...args: EncapsulateArgs): void;
  decapsulate(from: number, vni: number, flags: number, groupPolicyId: number): void;
  lookupContainer(dst: number, port: Named | undefined): void;
  /** Allowed or denied by connection tracking alone. */
  policyTracked(why: 'related' | 'unrelated' | 'reply' | 'established'): void;
  policyDenied(why: 'no-tag' | 'no-rule', tag: number, port: Named): void;
  policyRule(rule: AcceptRule, sameCell: boolean): void;
  /** Connection tracking calls this TCP packet INVALID (policy/conntrack.ts): it is not tracked. */
  conntrackInvalid(tcpFlags: number): void;
  deliver(port: Named, ttl: number): void;
  icmpErrorToContainer(port: Named): void;
  icmpErrorToUnderlay(ip: number): void;
  fragment(id: number, offset: number, more: boolean, outcome: 'held' | 'forward' | 'split', fragments: number): void;
  drop(reason: Drop): void;
}

function nothing(): void {}

/** The hot path's sink: every method does nothing. */
export const NO_STEPS: StepSink = Object.freeze({
  source: nothing,
  route: nothing,
  routeLocal: nothing,
  neighbor: nothing,
  fdb: nothing,
  encapsulate: nothing,
  decapsulate: nothing,
  lookupContainer: nothing,
  policyTracked: nothing,
  policyDenied: nothing,
  policyRule: nothing,
  conntrackInvalid: nothing,
  deliver: nothing,
  icmpErrorToContainer: nothing,
  icmpErrorToUnderlay: nothing,
  fragment: nothing,
  drop: nothing,
});

/** Records every step as a TraceStep (for `silkworm trace`; allocates per step). */
export class StepRecorder implements StepSink {
  readonly steps: TraceStep[] = [];

  constructor(private readonly routes: RouteTable) {}

  source(port: Named, ip: number, tag: number): void {
    this.steps.push({ kind: 'source', container: port.handle, app: port.app, ip, tag });
  }
  route(dst: number, route: RouteEntry | undefined): void {
    this.steps.push({ kind: 'route', dst, route: route ?? null });
  }
  routeLocal(dst: number, local: Named): void {
    this.steps.push({ kind: 'route', dst, route: this.routes.lookup(dst) ?? null, local: local.handle });
  }
  neighbor(ip: number, entry: NeighborEntry | undefined): void {
    this.steps.push({ kind: 'neighbor', ip, entry: entry ?? null });
  }
  fdb(mac: Uint8Array, entry: FdbEntry | undefined): void {
    this.steps.push({ kind: 'fdb', mac: mac.slice(), entry: entry ?? null });
  }
  encapsulate(...[vni, groupPolicyId, flags, srcPort, dstPort, underlaySrc, underlayDst, innerSrcMac, innerDstMac, ttl]: EncapsulateArgs): void {
    this.steps.push({
      kind: 'encapsulate',
      vni,
      groupPolicyId,
      flags,
      srcPort,
      dstPort,
      underlaySrc,
      underlayDst,
      innerSrcMac: innerSrcMac.slice(),
      innerDstMac: innerDstMac.slice(),
      ttl,
    });
  }
  decapsulate(from: number, vni: number, flags: number, groupPolicyId: number): void {
    this.steps.push({ kind: 'decapsulate', from, vni, flags, groupPolicyId });
  }
  lookupContainer(dst: number, port: Named | undefined): void {
    this.steps.push({ kind: 'lookup-container', dst, container: port ? port.handle : null, app: port ? port.app : null });
  }
  policyTracked(why: 'related' | 'unrelated' | 'reply' | 'established'): void {
    this.steps.push(why === 'unrelated' ? { kind: 'policy', verdict: 'deny', why } : { kind: 'policy', verdict: 'allow', why });
  }
  policyDenied(why: 'no-tag' | 'no-rule', tag: number, port: Named): void {
    this.steps.push({ kind: 'policy', verdict: 'deny', why, tag, container: port.handle, app: port.app });
  }
  policyRule(rule: AcceptRule, sameCell: boolean): void {
    this.steps.push({ kind: 'policy', verdict: 'allow', why: 'policy', rule, sameCell });
  }
  conntrackInvalid(tcpFlags: number): void {
    this.steps.push({ kind: 'conntrack', state: 'invalid', tcpFlags });
  }
  deliver(port: Named, ttl: number): void {
    this.steps.push({ kind: 'deliver', container: port.handle, app: port.app, ttl });
  }
  icmpErrorToContainer(port: Named): void {
    this.steps.push({ kind: 'icmp-error', toContainer: port.handle });
  }
  icmpErrorToUnderlay(ip: number): void {
    this.steps.push({ kind: 'icmp-error', toUnderlay: ip });
  }
  fragment(id: number, offset: number, more: boolean, outcome: 'held' | 'forward' | 'split', fragments: number): void {
    this.steps.push({ kind: 'fragment', id, offset, more, outcome, fragments });
  }
  drop(reason: Drop): void {
    this.steps.push({ kind: 'drop', reason });
  }
}

/** What a traced packet came to: sent on the underlay, written to a TAP, or dropped. */
export interface TraceResult {
  action: 'underlay' | 'tap' | 'drop' | 'held';
  /** Underlay IP, TAP index, or the drop reason. */
  target: number;
  output: Uint8Array;
}
