// The userspace cell: the agent (src/agent) in front of silkworm's own data
// plane. As a Backend it
//   - builds the Dataplane for the cell's lease and feeds it every snapshot
//     (leases → routes/neighbors/FDB, policies → plan),
//   - attaches containers: a TAP per container, moved into its namespace;
//     the TAPs are persistent (TUNSETPERSIST), so they outlive this process
//     and a restarted cell re-attaches them from inside the namespace
//     (`reattach`); only `container del` lets one go,
//   - keeps its tracked connections across a restart (src/cell/conntrack-state.ts),
//   - moves frames: TAP batches → egress; UDP 4789 batches → ingress; and
//     carries out the verdicts with one send/write call per destination.
import { Action, FrameBatch, slotSizeFor } from '../dataplane/batch.js';
import { Wire } from '../wire/offsets.js';
import { Counters, Drop, DROP_NAMES, Stat, STAT_NAMES } from '../dataplane/counters.js';
import { Dataplane, DEFAULT_CONFIG, type DataplaneConfig, type Port } from '../dataplane/dataplane.js';
import { BATCH_SIZE, type DatagramSocket, type FrameDevice } from '../io/types.js';
import type { OffloadStatus } from '../offload/options.js';
import type { UpstreamControl } from '../agent/agent.js';
import type { ControllerClient, Lease, PolicyRecord } from '../net/controller-client.js';
import { AgentCell } from '../agent/agent-cell.js';
import type { AgentHooks, DesiredState } from '../agent/backend.js';
import { ifnameOf, type ContainerInfo, type ContainerRecord } from '../agent/containers.js';
import { samePolicies } from '../agent/converger.js';
import { netnsPath, type ContainerNet } from '../agent/netns.js';
import { ipToU32, parseCidr, silkIfName, u32ToIp } from '../util/ip.js';
import { logger } from '../util/log.js';
import { VTEP_DEV } from '../util/silk.js';
import type { StateDir } from '../agent/state-dir.js';
import { ConntrackWriter, restoreConntrackBytes } from './conntrack-state.js';

export type { ContainerInfo };

/** How the cell reaches devices: real (native addon) or in-memory for tests. */
export interface CellIo {
  /**
   * `drops`: the drop-reason table the device counts its own drops in (omitted for the capture TAP);
   * `persist`: the TAP outlives its fd (TUNSETPERSIST).
   */
  openTap(name: string, slotSize: number, drops?: Float64Array, persist?: boolean): FrameDevice;
  /**
   * Open the persistent TAP `name` an earlier cell process left in the
   * namespace at `netnsPath`. Throws with code ENODEV when it is not there.
   * Without it the cell cannot re-attach containers after a restart.
   */
  reattachTap?(netnsPath: string, name: string, slotSize: number, drops?: Float64Array): FrameDevice;
  /** `innerMtu`: the containers' MTU, for cutting UDP-tunnel super-packets from a same-host kernel peer (native only). */
  openUnderlay(underlayIp: number, port: number, slotSize: number, drops?: Float64Array, innerMtu?: number): DatagramSocket;
  /** The offloads asked for and what the kernel granted, where the devices have any. */
  offloads?(): OffloadStatus;
  /** Busy-polling counters (windowUs, kicks, spins, windows), where the devices do it. */
  busyPoll?(): unknown;
}

/** The state directory's files for the tracked connections and the counters. */
export const CONNTRACK_FILE = 'conntrack.bin';
export const COUNTERS_FILE = 'counters.json';

/** Add saved values (by name) into a counter array; unknown names and non-numbers are ignored. */
function addNamed(into: Float64Array, names: readonly string[], saved: Record<string, unknown> | undefined): void {
  if (!saved || typeof saved !== 'object') return;
  names.forEach((n, i) => {
    const v = saved[n];
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) into[i] = into[i]! + v;
  });
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
  /** Poll an unmodified silk-controller and policy server (src/agent/silk-loop.ts) instead of watching. */
  upstream?: UpstreamControl;
  /** Open a `silk-vtep` TAP in the cell's namespace and copy every inner frame to it (for tcpdump). */
  capture?: boolean;
  /** Clock in seconds (tests pass their own). */
  now?: () => number;  /** The cell's state directory, locked by the caller (src/agent/state-dir.ts); none: nothing survives a restart. */
  state?: StateDir;
}

interface Attached {
  port: Port;
  netns: string;
  ifname: string;
  dev: FrameDevice;
}

const BATCH = BATCH_SIZE;
/** Milliseconds of conntrack walking per event-loop turn during a periodic save. */
const CT_SAVE_SLICE_MS = 2;

/** Close a device for good: a persistent TAP vanishes once its last fd closes with persistence off. */
function release(dev: FrameDevice): void {
  const p = dev as FrameDevice & { setPersist?(on: boolean): void; gone?: Error };
  try {
    if (typeof p.setPersist === 'function' && p.gone === undefined) p.setPersist(false);
  } catch {
    /* already gone */
  }
  dev.close();
}

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
  /** The data plane's counters, made before the data plane (the underlay counts into them from start()). */
  private readonly counters = new Counters();
  /** The periodic conntrack save under way (one at a time). */
  private ctSaving: ConntrackWriter | null = null;
  /** Tracked connections read from the state directory, put in the table once it exists. */
  restoredConntrack = 0;
  private readonly sOff = new Uint32Array(BATCH);
  private readonly sLen = new Uint32Array(BATCH);
  private readonly sDst = new Uint32Array(BATCH);
  /** Zero-copy segments' payload pieces (FrameBatch.ext), per underlay packet of a dispatch. */
  private readonly sXOff = new Uint32Array(BATCH);
  private readonly sXLen = new Uint32Array(BATCH);
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
    // The underlay socket was opened before the lease (see start), counting into this table.
    this.dp = new Dataplane(cfg, this.counters);
    this.slotSize = slotSizeFor(cfg.underlayMtu);
  }

  /**
   * Bind the underlay (UDP port 4789 on the underlay IP) before anything else
   * — before the lease: a second cell for the same underlay address fails
   * here (EADDRINUSE, no port sharing) having touched nothing.
   */
  override async start(): Promise<void> {
    const mtu = this.opts.dataplane?.underlayMtu ?? DEFAULT_CONFIG.underlayMtu;
    const port = this.opts.dataplane?.vxlanPort ?? DEFAULT_CONFIG.vxlanPort;
    try {
      this.underlay = this.opts.io.openUnderlay(ipToU32(this.opts.underlayIp), port, slotSizeFor(mtu), this.counters.drops, mtu - 50);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE') throw new Error(`UDP port ${port} on ${this.opts.underlayIp} is in use (another cell for this underlay address is running)`);
      if (e.code === 'EADDRNOTAVAIL') throw new Error(`${this.opts.underlayIp} is not an address of this network namespace`);
      throw err;
    }
    await super.start();
  }

  /** Counters and tracked connections an earlier process of this cell saved. */
  loadState(dir: StateDir): void {
    const counters = dir.readBinary(COUNTERS_FILE);
    if (counters !== null) {
      // Counters carry on from where they were, so a restart is not a reset to whoever graphs them.
      try {
        const saved = JSON.parse(counters.toString('utf8')) as { stats?: Record<string, unknown>; drops?: Record<string, unknown> };
        addNamed(this.counters.stats, STAT_NAMES, saved.stats);
        addNamed(this.counters.drops, DROP_NAMES, saved.drops);
      } catch {
        this.log.warn({ file: dir.path(COUNTERS_FILE) }, 'counters-unreadable');
      }
    }
    const bytes = dir.readBinary(CONNTRACK_FILE);
    if (bytes === null) return;
    this.restoredConntrack = restoreConntrackBytes(this.dp.conntrack, bytes, this.now());
    this.log.info({ entries: this.restoredConntrack }, 'conntrack-restored');
  }

  /**
   * Counters now; the tracked connections now when `final` (stopping), else
   * walked in slices of a few milliseconds between packet batches and written
   * when the walk ends (a full table must not stall forwarding).
   */
  saveState(dir: StateDir, final = false): void {
    dir.writeBinary(COUNTERS_FILE, Buffer.from(JSON.stringify(this.counters.snapshot())));
    if (final) {
      this.ctSaving = null;
      const w = new ConntrackWriter(this.dp.conntrack, this.now());
      while (!w.step(Infinity));
      dir.writeBinary(CONNTRACK_FILE, w.bytes());
      return;
    }
    if (this.ctSaving !== null) return; // one walk at a time; the next save starts a fresh one
    const w = new ConntrackWriter(this.dp.conntrack, this.now());
    this.ctSaving = w;
    const slice = () => {
      if (this.ctSaving !== w) return; // superseded by a final save, or closed
      if (!w.step(CT_SAVE_SLICE_MS)) {
        setImmediate(slice);
        return;
      }
      this.ctSaving = null;
      try {
        dir.writeBinary(CONNTRACK_FILE, w.bytes());
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'state-save-failed');
      }
    };
    slice();
  }

  async run(): Promise<void> {
    if (this.opts.capture) {
      this.capture = this.opts.io.openTap(VTEP_DEV, this.slotSize);
      await this.opts.containerNet.prepareCapture(this.capture.name);
      this.log.info({ dev: this.capture.name }, 'capture-enabled');
    }
    this.underlay.start((batch) => {
      if (this.capture !== null) this.captureIngress(batch);
      this.dp.ingress(batch, this.now());
      this.dispatch(batch);
      this.dispatchSide();
    });
    // One coarse tick drives every expiry (conntrack), never a timer per flow.
    this.timers.push(setInterval(() => this.dp.tick(this.now()), 1000).unref());
  }

  /** Close every fd; the containers' TAPs persist (a restarted cell re-attaches them). */
  async close(): Promise<void> {
    this.ctSaving = null;
    for (const t of this.timers) clearInterval(t);
    for (const a of [...this.attached.values()]) this.forget(a.port.handle);
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
    // A delta that names none of this cell's apps cannot change the plan: keep
    // it and just hold the new list (60,000 policies are not planned again).
    const touched = state.touchedApps;
    if (this.appliedPolicies !== null && touched && !this.dp.hasPortOfApp(touched)) {
      this.dp.holdPolicies(snap.policies);
      this.appliedPolicies = snap.policies;
    } else if (this.appliedPolicies === null || !samePolicies(this.appliedPolicies, snap.policies)) {
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
    const { ip, netns } = c;
    const ifname = ifnameOf(c);
    const dev = this.opts.io.openTap(silkIfName(ip), this.slotSize, this.dp.counters.drops, true);
    try {
      await this.opts.containerNet.attach(dev.name, netns, ip, this.dp.innerMtu, ifname);
    } catch (err) {
      release(dev);
      throw err;
    }
    this.adopt(c, dev);
  }

  async reattach(c: ContainerRecord): Promise<boolean> {
    const open = this.opts.io.reattachTap;
    if (!open) return false;
    let dev: FrameDevice;
    try {
      dev = open(netnsPath(c.netns), ifnameOf(c), this.slotSize, this.dp.counters.drops);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENODEV' || (err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    this.adopt(c, dev);
    return true;
  }

  /** Give the container a port and start moving its device's frames. */
  private adopt(c: ContainerRecord, dev: FrameDevice): void {
    const { handle, app, ip, netns } = c;
    const ifname = ifnameOf(c);
    const port = this.dp.addPort(handle, app, ip);
    this.attached.set(handle, { port, netns, ifname, dev });
    this.devByIndex[port.index] = dev;
    dev.start(
      (batch) => {
        this.dp.egress(batch, port.index, this.now());
        this.dispatch(batch);
        this.dispatchSide();
      },
      (err) => {
        // The namespace was deleted under us: the container is gone.
        this.forget(handle);
        this.hooks?.gone(handle, { err: err.message });
      },
    );
  }

  async detach(c: ContainerRecord): Promise<void> {
    this.forget(c.handle, true);
    // Persistence off and the fd closed removes the TAP; `ip link del` makes sure.
    await this.opts.containerNet.detach(c.netns, ifnameOf(c));
  }

  /** Stop moving a container's frames and close its fd; with `remove`, its TAP goes too (persistence off). */
  private forget(handle: string, remove = false): Attached | undefined {
    const a = this.attached.get(handle);
    if (!a) return undefined;
    this.attached.delete(handle);
    this.devByIndex[a.port.index] = undefined;
    this.dp.removePort(a.port.index);
    if (remove) release(a.dev);
    else a.dev.close();
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
    const bp = this.opts.io.busyPoll?.();
    if (bp !== undefined) out.busy_poll = bp;
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

  /**
   * Send what the pipeline put in its side area (the fragments of datagrams),
   * in chunks of a batch: one underlay send, one write per TAP, per chunk.
   */
  private dispatchSide(): void {
    const side = this.dp.side;
    const total = side.count;
    for (let base = 0; base < total; base += BATCH) {
      const end = Math.min(total, base + BATCH);
      let nu = 0;
      for (let k = base; k < end; k++) {
        if (side.action[k] !== Action.Underlay) continue;
        this.sOff[nu] = side.off[k]!;
        this.sLen[nu] = side.len[k]!;
        this.sDst[nu] = side.target[k]!;
        nu++;
      }
      if (nu > 0) {
        this.underlay.send(side.slab, this.sOff, this.sLen, this.sDst, nu);
        if (this.capture !== null) {
          for (let k = 0; k < nu; k++) {
            this.cOff[k] = this.sOff[k]! + 36;
            this.cLen[k] = this.sLen[k]! - 36;
          }
          this.capture.write(side.slab, this.cOff, this.cLen, nu);
        }
      }
      for (let k = base; k < end; k++) {
        if (side.action[k] !== Action.Tap) continue;
        const target = side.target[k]!;
        let nt = 0;
        for (let j = k; j < end; j++) {
          if (side.action[j] === Action.Tap && side.target[j] === target) {
            this.tOff[nt] = side.off[j]!;
            this.tLen[nt] = side.len[j]!;
            nt++;
            side.action[j] = Action.Drop; // handled
          }
        }
        const dev = this.devByIndex[target];
        if (dev !== undefined) dev.write(side.slab, this.tOff, this.tLen, nt);
      }
    }
    side.reset();
  }

  /**
   * Carry out the pipeline's verdicts: one underlay send, one write per TAP. Zero-copy segments
   * (batch.extLen[i] > 0) encapsulated whole go to the underlay in two pieces (headers in the slot,
   * payload in batch.ext); one delivered whole to a TAP, or any with the capture on, is made whole
   * in its slot first; any other output of such a slot (an ICMP error built in place) lies in the slot.
   */
  private dispatch(batch: FrameBatch): void {
    const n = batch.count;
    const action = batch.action;
    const ext = batch.ext;
    if (ext !== undefined && this.capture !== null) for (let i = 0; i < n; i++) batch.materialize(i);
    let nu = 0;
    let nx = 0;
    for (let i = 0; i < n; i++) {
      if (action[i] === Action.Underlay) {
        const len = batch.outLen[i]!;
        this.sOff[nu] = batch.outOff[i]!;
        this.sLen[nu] = len;
        this.sDst[nu] = batch.outTarget[i]!;
        let xl = 0;
        if (ext !== undefined) {
          xl = batch.extLen[i]!;
          // Only the whole frame behind the outer headers carries the piece outside the slot.
          if (xl !== 0 && len !== batch.len[i]! + Wire.VXLAN_ENCAP_LEN) {
            batch.materialize(i);
            xl = 0;
          }
          this.sXOff[nu] = batch.extOff[i]!;
          this.sXLen[nu] = xl;
          if (xl !== 0) nx++;
        }
        nu++;
      }
    }
    // Final outcomes: what the devices took is delivered or sent; what they
    // refused they count under their own drop reasons (never both).
    const stats = this.dp.counters.stats;
    if (nu > 0) {
      stats[Stat.Sent]! +=
        nx > 0
          ? this.underlay.send(batch.slab, this.sOff, this.sLen, this.sDst, nu, ext, this.sXOff, this.sXLen)
          : this.underlay.send(batch.slab, this.sOff, this.sLen, this.sDst, nu);
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
          if (ext !== undefined && batch.extLen[j]! !== 0 && batch.outLen[j]! === batch.len[j]!) batch.materialize(j);
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
