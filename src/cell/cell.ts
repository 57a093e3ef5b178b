// The userspace cell: the agent (src/agent) in front of silkworm's own data
// plane. As a Backend it
//   - builds the Dataplane for the cell's lease and feeds it every snapshot
//     (leases → routes/neighbors/FDB, policies → plan),
//   - attaches containers: a TAP per container, moved into its namespace,
//   - moves frames: TAP batches → egress; UDP 4789 batches → ingress; and
//     carries out the verdicts with one send/write call per destination.
import { Action, FrameBatch, slotSizeFor } from '../dataplane/batch.js';
import { Drop, Stat } from '../dataplane/counters.js';
import { Dataplane, DEFAULT_CONFIG, type DataplaneConfig, type Port } from '../dataplane/dataplane.js';
import { BATCH_SIZE, type DatagramSocket, type FrameDevice } from '../io/types.js';
import type { OffloadStatus } from '../offload/options.js';
import type { ControllerClient, Lease, PolicyRecord } from '../net/controller-client.js';
import { AgentCell } from '../agent/agent-cell.js';
import type { AgentHooks, DesiredState } from '../agent/backend.js';
import { ifnameOf, type ContainerInfo, type ContainerRecord } from '../agent/containers.js';
import { samePolicies } from '../agent/converger.js';
import type { ContainerNet } from '../agent/netns.js';
import { ipToU32, parseCidr, silkIfName, u32ToIp } from '../util/ip.js';
import { logger } from '../util/log.js';
import { VTEP_DEV } from '../util/silk.js';

export type { ContainerInfo };

/** How the cell reaches devices: real (native addon) or in-memory for tests. */
export interface CellIo {
  /** `drops`: the drop-reason table the device counts its own drops in (omitted for the capture TAP). */
  openTap(name: string, slotSize: number, drops?: Float64Array): FrameDevice;
  /** `innerMtu`: the containers' MTU, for cutting UDP-tunnel super-packets from a same-host kernel peer (native only). */
  openUnderlay(underlayIp: number, port: number, slotSize: number, drops?: Float64Array, innerMtu?: number): DatagramSocket;
  /** The offloads asked for and what the kernel granted, where the devices have any. */
  offloads?(): OffloadStatus;
}

export interface CellOptions {
  name: string;
  controller: ControllerClient;
  underlayIp: string;
  io: CellIo;
  containerNet: ContainerNet;
  dataplane?: Partial<Omit<DataplaneConfig, 'underlayIp' | 'leaseSubnet' | 'leasePrefixLen'>>;
  /** Seconds between lease renewals. */
  renewInterval?: number;
  /** Open a `silk-vtep` TAP in the cell's namespace and copy every inner frame to it (for tcpdump). */
  capture?: boolean;
  /** Clock in seconds (tests pass their own). */
  now?: () => number;
}

interface Attached {
  port: Port;
  netns: string;
  ifname: string;
  dev: FrameDevice;
}

const BATCH = BATCH_SIZE;

/** The userspace cell: the agent (AgentCell) with silkworm's own data plane as its Backend. */
export class Cell extends AgentCell {
  readonly kind = 'user';
  dp!: Dataplane;
  private readonly opts: CellOptions;
  private underlay!: DatagramSocket;
  private readonly attached = new Map<string, Attached>(); // by handle
  private readonly devByIndex: (FrameDevice | undefined)[] = [];
  /** Set by the metrics registry when metrics are on. */
  applyHistogram: { observe(v: number): void } | null = null;
  watchLagHistogram: { observe(v: number): void } | null = null;
  private timers: NodeJS.Timeout[] = [];
  private slotSize = 0;
  private cfg!: DataplaneConfig;
  private hooks: AgentHooks | null = null;
  private appliedPolicies: PolicyRecord[] | null = null;
  private readonly now: () => number;
  // Scratch for dispatch: one set per cell, reused for every batch.
  private readonly sOff = new Uint32Array(BATCH);
  private readonly sLen = new Uint32Array(BATCH);
  private readonly sDst = new Uint32Array(BATCH);
  private readonly tOff = new Uint32Array(BATCH);
  private readonly tLen = new Uint32Array(BATCH);
  private readonly cOff = new Uint32Array(BATCH);
  private readonly cLen = new Uint32Array(BATCH);
  /** The silk-vtep capture point, when enabled: written, never read. */
  private capture: FrameDevice | null = null;

  constructor(opts: CellOptions) {
    super(opts, logger('cell', { cell: opts.name }));
    this.opts = opts;
    this.now = opts.now ?? (() => performance.now() / 1000);
  }

  // ------------------------------------------------------------- Backend

  async open(lease: Lease, hooks: AgentHooks): Promise<void> {
    this.hooks = hooks;
    const subnet = parseCidr(lease.overlay_subnet);
    const cfg: DataplaneConfig = {
      ...DEFAULT_CONFIG,
      ...this.opts.dataplane,
      underlayIp: ipToU32(this.opts.underlayIp),
      leaseSubnet: subnet.addr,
      leasePrefixLen: subnet.len,
    };
    this.cfg = cfg;
    this.dp = new Dataplane(cfg);
    this.slotSize = slotSizeFor(cfg.underlayMtu);
  }

  async run(): Promise<void> {
    const cfg = this.cfg;
    if (this.opts.capture) {
      this.capture = this.opts.io.openTap(VTEP_DEV, this.slotSize);
      await this.opts.containerNet.prepareCapture(this.capture.name);
      this.log.info({ dev: this.capture.name }, 'capture-enabled');
    }
    this.underlay = this.opts.io.openUnderlay(cfg.underlayIp, cfg.vxlanPort, this.slotSize, this.dp.counters.drops, this.dp.innerMtu);
    this.underlay.start((batch) => {
      if (this.capture !== null) this.captureIngress(batch);
      this.dp.ingress(batch, this.now());
      this.dispatch(batch);
    });
    // One coarse tick drives every expiry (conntrack), never a timer per flow.
    this.timers.push(setInterval(() => this.dp.tick(this.now()), 1000).unref());
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const a of [...this.attached.values()]) {
      this.forget(a.port.handle);
      await this.opts.containerNet
        .detach(a.netns, a.ifname)
        .then(() => this.log.info({ handle: a.port.handle }, 'container-removed'))
        .catch(() => undefined);
    }
    this.underlay?.close();
    this.capture?.close();
  }

  /** Apply a controller snapshot: leases → tables, policies → plan. */
  apply(state: DesiredState): void {
    const t0 = performance.now();
    const snap = state.snapshot;
    this.dp.setLeases(state.leases);
    // Diff before enforce: an unchanged policy list keeps the compiled rules
    // and their hit counters (a lease change or a no-op snapshot resets nothing).
    if (this.appliedPolicies === null || !samePolicies(this.appliedPolicies, snap.policies)) {
      this.dp.setPolicies(snap.policies);
      this.appliedPolicies = snap.policies;
    }
    this.applyHistogram?.observe((performance.now() - t0) / 1000);
    const changedAt = snap.changed_at;
    if (typeof changedAt === 'number') this.watchLagHistogram?.observe(Math.max(0, Date.now() - changedAt) / 1000);
    this.log.debug({ version: snap.version, leases: state.leases.length, policies: snap.policies.length }, 'snapshot-applied');
  }

  tagOf(ip: number): number {
    return this.dp.portByAddress(ip)?.tag ?? 0;
  }

  async attach(c: ContainerRecord): Promise<void> {
    const { handle, app, ip, netns } = c;
    const ifname = ifnameOf(c);
    const dev = this.opts.io.openTap(silkIfName(ip), this.slotSize, this.dp.counters.drops);
    try {
      await this.opts.containerNet.attach(dev.name, netns, ip, this.dp.innerMtu, ifname);
    } catch (err) {
      dev.close();
      throw err;
    }
    const port = this.dp.addPort(handle, app, ip);
    this.attached.set(handle, { port, netns, ifname, dev });
    this.devByIndex[port.index] = dev;
    dev.start(
      (batch) => {
        this.dp.egress(batch, port.index, this.now());
        this.dispatch(batch);
      },
      (err) => {
        // The namespace was deleted under us: the container is gone.
        this.forget(handle);
        this.hooks?.gone(handle, { err: err.message });
      },
    );
  }

  async detach(c: ContainerRecord): Promise<void> {
    this.forget(c.handle);
    await this.opts.containerNet.detach(c.netns, ifnameOf(c));
  }

  private forget(handle: string): Attached | undefined {
    const a = this.attached.get(handle);
    if (!a) return undefined;
    this.attached.delete(handle);
    this.devByIndex[a.port.index] = undefined;
    this.dp.removePort(a.port.index);
    a.dev.close();
    return a;
  }

  /** The devices' own counters (syscall-level drops: full queues, EAGAIN), where they keep any. */
  ioStats(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const statsOf = (d: unknown) => (d && typeof d === 'object' && 'stats' in d ? (d as { stats: unknown }).stats : undefined);
    out.underlay = statsOf(this.underlay);
    // GSO sender and GRO receiver counters, where the underlay has them.
    const u = this.underlay as unknown as { senderCounters?: () => unknown; receiverCounters?: () => unknown };
    if (typeof u?.senderCounters === 'function') out.underlay_gso = u.senderCounters();
    if (typeof u?.receiverCounters === 'function') out.underlay_rx = u.receiverCounters();
    for (const a of this.attached.values()) out[a.dev.name] = statsOf(a.dev);
    const off = this.opts.io.offloads?.();
    if (off !== undefined) out.offload = off;
    return out;
  }

  // --------------------------------------------------------------- dispatch

  /** What the kernel's silk-vtep receives: each decapsulated inner frame, before policy. */
  private captureIngress(batch: FrameBatch): void {
    let n = 0;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.len[i]!;
      if (len < 8 + 14) continue;
      this.cOff[n] = batch.inOff(i) + 8;
      this.cLen[n] = len - 8;
      n++;
    }
    if (n > 0) this.capture!.write(batch.slab, this.cOff, this.cLen, n);
  }

  /** Carry out the pipeline's verdicts: one underlay send, one write per TAP. */
  private dispatch(batch: FrameBatch): void {
    const n = batch.count;
    const action = batch.action;
    let nu = 0;
    for (let i = 0; i < n; i++) {
      if (action[i] === Action.Underlay) {
        this.sOff[nu] = batch.outOff[i]!;
        this.sLen[nu] = batch.outLen[i]!;
        this.sDst[nu] = batch.outTarget[i]!;
        nu++;
      }
    }
    // Final outcomes: what the devices took is delivered or sent; what they
    // refused they count under their own drop reasons (never both).
    const stats = this.dp.counters.stats;
    if (nu > 0) {
      stats[Stat.Sent]! += this.underlay.send(batch.slab, this.sOff, this.sLen, this.sDst, nu);
      if (this.capture !== null) {
        // What the kernel's silk-vtep transmits: the inner frame, VTEP MACs, TTL already decremented.
        for (let k = 0; k < nu; k++) {
          this.cOff[k] = this.sOff[k]! + 36;
          this.cLen[k] = this.sLen[k]! - 36;
        }
        this.capture.write(batch.slab, this.cOff, this.cLen, nu);
      }
    }
    for (let i = 0; i < n; i++) {
      if (action[i] !== Action.Tap) continue;
      const target = batch.outTarget[i]!;
      let nt = 0;
      for (let j = i; j < n; j++) {
        if (action[j] === Action.Tap && batch.outTarget[j] === target) {
          this.tOff[nt] = batch.outOff[j]!;
          this.tLen[nt] = batch.outLen[j]!;
          nt++;
          action[j] = Action.Drop; // handled
        }
      }
      const dev = this.devByIndex[target];
      if (dev !== undefined) stats[Stat.Delivered]! += dev.write(batch.slab, this.tOff, this.tLen, nt);
      else this.dp.counters.drops[Drop.TapTxGone]! += nt;
    }
  }
}
