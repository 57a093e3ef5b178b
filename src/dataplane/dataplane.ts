// The cell's packet pipeline, pure: batches of frames in, verdicts out. This
// facade keeps the API the cell uses; the work is done in rooms:
//
//   state.ts    control state: ports, leases → route/neighbor/FDB tables,
//               policies → plan → compiled policy (the converger), and Run
//   egress.ts   a container's frame → checks → route → neighbor → FDB → tag →
//               VXLAN-GBP encapsulation (encap.ts, flowhash.ts); or, for a
//               container on this cell, its policy and delivery
//   ingress.ts  a VXLAN datagram → checks → policy (conntrack, then the Group
//               Policy ID against the compiled rules) → delivery or a reject
//   icmp.ts     ICMP errors written in place, and their rate limit
//   l4.ts       ports, TCP flags and ICMP type of a packet
//   defrag.ts   IPv4 fragments: held, reassembled for the decision, sent on
//               as they came (fragments.ts), or cut at the MTU (fragment-out.ts)
//   trace.ts    typed trace steps
//   counters.ts the drop-reason table and the counters
//
// It never touches a file descriptor: the cell runtime hands it FrameBatches
// and carries out the verdicts (batch.action/outOff/outLen/outTarget). The same
// code runs in unit tests with in-memory devices, in the real cell, and under
// `silkworm trace` (a dry Run with a StepRecorder, the only time it allocates
// per packet).
import { Action, DEFAULT_HEADROOM, FrameBatch, SideOut } from './batch.js';
import { Defrag } from './defrag.js';
import { Counters } from './counters.js';
import { Egress } from './egress.js';
import { IcmpLimiter } from './icmp.js';
import { Ingress } from './ingress.js';
import { ControlState, Run, type DataplaneConfig, type LeaseInfo, type Port } from './state.js';
import { NO_STEPS, StepRecorder, type TraceResult, type TraceStep } from './trace.js';
import type { RouteTable } from '../tables/route.js';
import type { NeighborTable } from '../tables/neighbor.js';
import type { Fdb } from '../tables/fdb.js';
import type { Plan } from '../policy/planner.js';
import type { CompiledPolicy } from '../policy/compiled.js';
import type { ConnTrack } from '../policy/conntrack.js';
import type { PolicyRecord } from '../policy/types.js';
import type { FragmentTableOptions } from './fragments.js';

export { DEFAULT_CONFIG, GATEWAY_IP, VTEP_DEV, type DataplaneConfig, type LeaseInfo, type Port } from './state.js';
export type { TraceResult, TraceStep } from './trace.js';

export class Dataplane {
  private readonly state: ControlState;
  private readonly live: Run;
  private readonly egressRoom: Egress;
  private readonly ingressRoom: Ingress;
  private readonly egressFrags: Defrag;
  private readonly ingressFrags: Defrag;
  /**
   * Frames a batch produced beyond one per slot (the fragments of a
   * datagram): emptied at the start of every egress()/ingress() call; the
   * cell sends them right after the batch's own verdicts.
   */
  readonly side = new SideOut();

  /**
   * `counters`: a table made earlier (the cell opens its underlay, which
   * counts into it, before the lease). `frag`: the reassembly tables' limits.
   */
  constructor(cfg: DataplaneConfig, counters: Counters = new Counters(), frag: FragmentTableOptions = {}) {
    this.state = new ControlState(cfg);
    this.live = new Run(counters, NO_STEPS, new IcmpLimiter(cfg.icmpRate, cfg.icmpBurst), false);
    const drops = this.live.counters.drops;
    this.egressFrags = new Defrag(drops, this.side, this.state.innerMtu, frag);
    this.ingressFrags = new Defrag(drops, this.side, this.state.innerMtu, frag);
    this.egressRoom = new Egress(this.state, this.egressFrags);
    this.ingressRoom = new Ingress(this.state, this.ingressFrags);
  }

  /** Ingress runs decided whole (ingress.ts whole runs): how many, and the datagrams in them. */
  get rxRuns(): { readonly runs: number; readonly segments: number } {
    return this.ingressRoom.runCounters;
  }

  /** Datagrams being reassembled and bytes held for them, both directions. */
  get fragments(): { queues: number; bytes: number; reassembled: number } {
    const e = this.egressFrags.table;
    const i = this.ingressFrags.table;
    return { queues: e.queues + i.queues, bytes: e.bytesUsed + i.bytesUsed, reassembled: e.reassembled + i.reassembled };
  }

  // ---------------------------------------------------------------- state
  get cfg(): DataplaneConfig {
    return this.state.cfg;
  }
  get vtepIp(): number {
    return this.state.vtepIp;
  }
  get vtepMac(): Uint8Array {
    return this.state.vtepMac;
  }
  get innerMtu(): number {
    return this.state.innerMtu;
  }
  get routes(): RouteTable {
    return this.state.routes;
  }
  get neighbors(): NeighborTable {
    return this.state.neighbors;
  }
  get fdb(): Fdb {
    return this.state.fdb;
  }
  get conntrack(): ConnTrack {
    return this.state.conntrack;
  }
  get counters(): Counters {
    return this.live.counters;
  }
  /** Per accepted-rule hit counts, parallel to plan.accepts. */
  get ruleHits(): Float64Array {
    return this.state.ruleHits;
  }
  get policy(): CompiledPolicy {
    return this.state.policy;
  }
  get policies(): PolicyRecord[] {
    return this.state.policies;
  }
  get plan(): Plan {
    return this.state.policy.plan;
  }
  /** How often a snapshot swapped in a new plan, and how often it changed nothing. */
  get converger(): { readonly swapped: number; readonly unchanged: number } {
    return this.state.converger;
  }

  /** Replace the set of leases: one route, neighbor and FDB entry per remote cell. */
  setLeases(leases: LeaseInfo[]): void {
    this.state.setLeases(leases);
  }
  setPolicies(policies: PolicyRecord[]): void {
    this.state.setPolicies(policies);
  }
  /** Keep the plan, hold `policies` for the next one (the caller knows they change no rule here). */
  holdPolicies(policies: PolicyRecord[]): void {
    this.state.policies = policies;
  }
  /** Whether a container of any of these apps is attached. */
  hasPortOfApp(apps: ReadonlySet<string>): boolean {
    return this.state.listPorts().some((p) => apps.has(p.app));
  }
  addPort(handle: string, app: string, ip: number): Port {
    return this.state.addPort(handle, app, ip);
  }
  removePort(index: number): void {
    this.state.removePort(index);
  }
  port(index: number): Port | undefined {
    return this.state.ports[index];
  }
  portByAddress(ip: number): Port | undefined {
    return this.state.portByIp.get(ip >>> 0);
  }
  listPorts(): Port[] {
    return this.state.listPorts();
  }

  // ---------------------------------------------------------------- packets
  /** Frames a local container sent (all from TAP `portIndex`): sets batch.action[i] and the output fields. */
  egress(batch: FrameBatch, portIndex: number, now: number): void {
    this.side.reset();
    this.egressRoom.run(batch, portIndex, now, this.live);
  }

  /** VXLAN datagrams received on the underlay (payload = VXLAN header first; srcIp set). */
  ingress(batch: FrameBatch, now: number): void {
    this.side.reset();
    this.ingressRoom.run(batch, now, this.live);
  }

  /**
   * Run one frame through the real egress (or ingress) code in a dry Run,
   * recording its steps: no conntrack entry is created or changed, and no counter, rule
   * hit, ICMP token or IP ident of the cell is spent. Returns the steps, the
   * verdict and the output bytes.
   */
  trace(kind: 'egress' | 'ingress', bytes: Uint8Array, opts: { port?: number; srcIp?: number; now: number }): TraceResult & { steps: TraceStep[] } {
    const batch = new FrameBatch(1, Math.max(2048, bytes.length + DEFAULT_HEADROOM + 64));
    batch.push(bytes, opts.srcIp ?? 0, 0);
    const recorder = new StepRecorder(this.state.routes);
    const run = new Run(new Counters(), recorder, this.live.icmp.clone(), true, this.live.ident);
    // Conntrack answers without changing anything (an existing flow's state,
    // expiry and a RST's deletion included), as it creates nothing.
    const ct = this.state.conntrack;
    ct.readOnly = true;
    try {
      if (kind === 'egress') this.egressRoom.run(batch, opts.port ?? -1, opts.now, run);
      else this.ingressRoom.run(batch, opts.now, run);
    } finally {
      ct.readOnly = false;
    }
    const action = batch.action[0];
    return {
      steps: recorder.steps,
      action: action === Action.Underlay ? 'underlay' : action === Action.Tap ? 'tap' : action === Action.Held ? 'held' : 'drop',
      target: batch.outTarget[0]!,
      output: action === Action.Drop ? new Uint8Array(0) : batch.output(0),
    };
  }

  /** One coarse tick for every expiry (conntrack, fragment queues). */
  tick(now: number): void {
    this.state.conntrack.tick(now);
    this.egressFrags.expire(now);
    this.ingressFrags.expire(now);
  }
}
