// The data plane's control state — ports (local containers), leases, the
// route/neighbor/FDB tables built from them, and the compiled policy — and a
// Run: what one pass of the pipeline writes besides the batch.
//
// Policy follows silk's vxlan-policy-agent: a pure planner turns policies and
// local containers into a sorted rule list; the converger compares it with
// the applied one and, only when it changed, compiles and swaps it in with one
// assignment (make before break). A snapshot that changes nothing keeps the
// applied policy and its rule hit counters; one that changes some rules keeps
// the hit counts of the rules that survive.
import { RouteTable } from '../tables/route.js';
import { NeighborTable } from '../tables/neighbor.js';
import { Fdb } from '../tables/fdb.js';
import { plan as planPolicies, type AcceptRule, type Plan } from '../policy/planner.js';
import { CompiledPolicy } from '../policy/compiled.js';
import { ConnTrack, DEFAULT_CONNTRACK_MAX } from '../policy/conntrack.js';
import type { PolicyRecord, LocalContainer } from '../policy/types.js';
import { macFromIp, silkIfName } from '../util/ip.js';
import { GATEWAY_IP, VTEP_DEV } from '../util/silk.js';
import { Wire } from '../wire/offsets.js';
import { Action, type FrameBatch } from './batch.js';
import { Counters, type Drop } from './counters.js';
import type { IcmpLimiter } from './icmp.js';
import { NO_STEPS, type StepSink } from './trace.js';

export { GATEWAY_IP, VTEP_DEV };

export interface DataplaneConfig {
  /** This cell's underlay address (outer source). */
  underlayIp: number;
  /** This cell's lease, e.g. 10.255.1.0/24; the VTEP's overlay IP is its first address. */
  leaseSubnet: number;
  leasePrefixLen: number;
  vni: number;
  vxlanPort: number;
  /** Outer UDP source port range for the flow hash (kernel default: the local port range). */
  srcPortMin: number;
  srcPortMax: number;
  /** Underlay MTU; the containers' MTU is this minus 50 (VXLAN overhead with the inner Ethernet header). */
  underlayMtu: number;
  /** ICMP errors per second we generate (token bucket), and the burst (kernel: icmp_msgs_per_sec/burst). */
  icmpRate: number;
  icmpBurst: number;
  conntrackCapacity: number;
  /**
   * Ingress decides runs of one settled TCP flow's segments once (ingress.ts whole runs); default
   * true, false with SILKWORM_WHOLE_RX=0.
   */
  wholeRx?: boolean;
}

export const DEFAULT_CONFIG: Omit<DataplaneConfig, 'underlayIp' | 'leaseSubnet'> = {
  leasePrefixLen: 24,
  vni: 1,
  vxlanPort: 4789,
  srcPortMin: 32768,
  srcPortMax: 60999,
  underlayMtu: 1500,
  icmpRate: 1000,
  icmpBurst: 50,
  conntrackCapacity: DEFAULT_CONNTRACK_MAX,
};

/** A remote (or our own) lease as the controller hands it out. */
export interface LeaseInfo {
  underlayIp: number;
  subnet: number;
  prefixLen: number;
}

/** A local container attached through a TAP. */
export interface Port {
  readonly index: number;
  readonly handle: string;
  readonly app: string;
  readonly ip: number;
  /** The tag stamped on its packets (0 = its app is in no policy). */
  tag: number;
  readonly packets: Float64Array; // [tx packets, tx bytes, rx packets, rx bytes]
}

/**
 * What one pass of the pipeline writes besides the batch: counters, trace
 * steps, ICMP tokens and the outer IPv4 identification. The cell has one live
 * Run; `trace` makes a dry one, so that walking a probe through the real code
 * changes nothing: no conntrack entry, rule hit, port or cell counter, ICMP
 * token or ident is spent.
 */
export class Run {
  /**
   * Steps are recorded (steps is not NO_STEPS). The pipeline calls the sink
   * only under `if (run.tracing)`: an untraced packet then neither evaluates
   * a step's arguments nor makes the call, and a cell that has served
   * `silkworm trace` does not carry the recorder's methods (polymorphic call
   * sites, inlined allocations) in its per-packet code.
   */
  readonly tracing: boolean;

  constructor(
    readonly counters: Counters,
    readonly steps: StepSink,
    readonly icmp: IcmpLimiter,
    /** A dry run (trace): record, but change no state outside this Run. */
    readonly dry: boolean,
    /** Outer IPv4 identification of the last datagram sent. */
    public ident = 0,
  ) {
    this.tracing = steps !== NO_STEPS;
  }

  /** Frame i is dropped for `reason`: counted, and its verdict written. */
  drop(batch: FrameBatch, i: number, reason: Drop): void {
    this.counters.drop(reason);
    batch.verdict(i, Action.Drop, 0, 0, reason);
    if (this.tracing) this.steps.drop(reason);
  }

  /** The next outer IPv4 identification. */
  nextIdent(): number {
    this.ident = (this.ident + 1) & 0xffff;
    return this.ident;
  }
}

/** Identity of an accept rule, for carrying hit counts across a plan swap. */
function ruleKey(a: AcceptRule): string {
  return `${a.dstIp}/${a.dstApp}/${a.srcApp}/${a.tag}/${a.protocol}/${a.portStart}-${a.portEnd}`;
}

/** Do two plans hold the same rules in the same order? (Plans are sorted, so equal sets compare equal.) */
export function samePlan(a: Plan, b: Plan): boolean {
  if (a.marks.length !== b.marks.length || a.accepts.length !== b.accepts.length) return false;
  for (let i = 0; i < a.marks.length; i++) {
    const x = a.marks[i]!;
    const y = b.marks[i]!;
    if (x.ip !== y.ip || x.app !== y.app || x.tag !== y.tag) return false;
  }
  for (let i = 0; i < a.accepts.length; i++) {
    if (ruleKey(a.accepts[i]!) !== ruleKey(b.accepts[i]!)) return false;
  }
  return true;
}

/** Hit counts for `next`'s rules: each rule that was in `prev` keeps its count; new rules start at 0. */
export function carryHits(prev: Plan, prevHits: Float64Array, next: Plan): Float64Array {
  const byKey = new Map<string, number[]>();
  prev.accepts.forEach((a, i) => {
    const k = ruleKey(a);
    const list = byKey.get(k);
    if (list) list.push(i);
    else byKey.set(k, [i]);
  });
  const hits = new Float64Array(next.accepts.length);
  next.accepts.forEach((a, i) => {
    const j = byKey.get(ruleKey(a))?.shift();
    if (j !== undefined) hits[i] = prevHits[j] ?? 0;
  });
  return hits;
}

export class ControlState {
  readonly cfg: DataplaneConfig;
  readonly vtepIp: number;
  readonly vtepMac: Uint8Array;
  readonly innerMtu: number;
  readonly routes = new RouteTable();
  readonly neighbors = new NeighborTable();
  readonly fdb = new Fdb();
  readonly conntrack: ConnTrack;
  /** Per accepted-rule hit counts, parallel to plan.accepts. */
  ruleHits: Float64Array = new Float64Array(0);
  policy: CompiledPolicy = CompiledPolicy.empty();
  policies: PolicyRecord[] = [];
  /** How often the converger swapped in a new plan, and how often it found nothing to change. */
  readonly converger = { swapped: 0, unchanged: 0 };

  readonly ports: (Port | undefined)[] = [];
  readonly portByIp = new Map<number, Port>();
  /** underlay IP → lease (for anti-spoofing: only lease holders may send us VXLAN). */
  readonly leaseByUnderlay = new Map<number, LeaseInfo>();
  private leases: LeaseInfo[] = [];

  constructor(cfg: DataplaneConfig) {
    this.cfg = cfg;
    this.vtepIp = cfg.leaseSubnet >>> 0;
    this.vtepMac = macFromIp(0xeeee, this.vtepIp);
    this.innerMtu = cfg.underlayMtu - Wire.VXLAN_OVERHEAD;
    this.conntrack = new ConnTrack({ capacity: cfg.conntrackCapacity });
  }

  /** Replace the set of leases: one route, neighbor and FDB entry per remote cell. */
  setLeases(leases: LeaseInfo[]): void {
    this.leases = leases.slice();
    this.leaseByUnderlay.clear();
    for (const l of this.leases) this.leaseByUnderlay.set(l.underlayIp >>> 0, l);
    this.rebuildTables();
  }

  addPort(handle: string, app: string, ip: number): Port {
    if (this.portByIp.has(ip)) throw new Error(`a container with IP ${ip} is already attached`);
    let index = this.ports.indexOf(undefined);
    if (index < 0) index = this.ports.length;
    const port: Port = { index, handle, app, ip: ip >>> 0, tag: 0, packets: new Float64Array(4) };
    this.ports[index] = port;
    this.portByIp.set(port.ip, port);
    this.converge();
    this.rebuildTables();
    return port;
  }

  removePort(index: number): void {
    const port = this.ports[index];
    if (!port) return;
    this.ports[index] = undefined;
    this.portByIp.delete(port.ip);
    this.converge();
    this.rebuildTables();
  }

  listPorts(): Port[] {
    return this.ports.filter((p): p is Port => p !== undefined);
  }

  setPolicies(policies: PolicyRecord[]): void {
    this.policies = policies;
    this.converge();
  }

  /**
   * Plan, compare, and swap only on a change. Returns true if a new plan was
   * swapped in. Ports' tags are refreshed either way (cheap, and a new port's
   * tag must be set even when the plan is unchanged).
   */
  converge(): boolean {
    const containers: LocalContainer[] = this.listPorts().map((p) => ({ handle: p.handle, ip: p.ip, app: p.app }));
    const next = planPolicies(this.policies, containers);
    const prev = this.policy.plan;
    const changed = !samePlan(prev, next);
    if (changed) {
      const compiled = CompiledPolicy.compile(next);
      this.ruleHits = carryHits(prev, this.ruleHits, next);
      this.policy = compiled;
      this.converger.swapped++;
    } else {
      this.converger.unchanged++;
    }
    for (const p of this.listPorts()) p.tag = this.policy.tagFor(p.ip);
    return changed;
  }

  private rebuildTables(): void {
    this.routes.clear();
    this.neighbors.clear();
    this.fdb.clear();
    for (const l of this.leases) {
      if (l.underlayIp === this.cfg.underlayIp) continue;
      const vtep = l.subnet >>> 0;
      const mac = macFromIp(0xeeee, vtep);
      this.routes.add({ prefix: l.subnet, len: l.prefixLen, via: vtep, dev: VTEP_DEV, src: this.vtepIp });
      this.neighbors.set(vtep, mac, VTEP_DEV);
      this.fdb.set(mac, l.underlayIp, VTEP_DEV);
    }
    // silk-cni gives each container a /32 host route on its s-<ip> interface.
    for (const p of this.listPorts()) {
      this.routes.add({ prefix: p.ip, len: 32, via: 0, dev: silkIfName(p.ip), src: 0 });
    }
  }
}
