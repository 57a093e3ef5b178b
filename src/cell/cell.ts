// The userspace cell: the agent (src/agent) in front of silkworm's own data
// plane. As a Backend it
//   - builds the Dataplane for the cell's lease and feeds it every snapshot
//     (leases → routes/neighbors/FDB, policies → plan),
//   - attaches containers: a TAP per container, moved into its namespace;
//     the TAPs are persistent (TUNSETPERSIST), so they outlive this process
//     and a restarted cell re-attaches them from inside the namespace
//     (`reattach`); only `container del` lets one go,
//   - keeps its tracked connections across a restart (src/cell/conntrack-state.ts),
//   - moves frames (src/cell/forwarder.ts): TAP batches → egress; UDP 4789
//     batches → ingress; the verdicts carried out with one send/write call per
//     destination,
//   - with `workers` (--workers N > 1), is worker 0 of N: every container's TAP
//     gets N queues and UDP 4789 a group of N sockets, the kernel steers each
//     flow to one worker both ways, and workers 1..N-1 (src/cell/worker.ts)
//     get every table change in order (src/cell/workers.ts).
import { slotSizeFor } from '../dataplane/batch.js';
import { Counters, DROP_NAMES, STAT_NAMES } from '../dataplane/counters.js';
import { Dataplane, DEFAULT_CONFIG, type DataplaneConfig, type Port } from '../dataplane/dataplane.js';
import { steerWorkerOfFlow } from '../dataplane/steer.js';
import type { DatagramSocket, FrameDevice } from '../io/types.js';
import { tapRefusal } from '../io/tap.js';
import type { OffloadOptions, OffloadStatus } from '../offload/options.js';
import type { UpstreamControl } from '../agent/agent.js';
import type { ControllerClient, Lease, PolicyRecord } from '../net/controller-client.js';
import { AgentCell } from '../agent/agent-cell.js';
import type { AgentHooks, DesiredState } from '../agent/backend.js';
import { ifnameOf, type ContainerInfo, type ContainerRecord } from '../agent/containers.js';
import { samePolicies } from '../agent/converger.js';
import { netnsPath, type ContainerNet } from '../agent/netns.js';
import { ipToU32, parseCidr, silkIfName } from '../util/ip.js';
import { logger } from '../util/log.js';
import { VTEP_DEV } from '../util/silk.js';
import type { StateDir } from '../agent/state-dir.js';
import { ConntrackWriter, restoreConntrackBytes, type SavedCt } from './conntrack-state.js';
import { deviceStats, Forwarder } from './forwarder.js';
import type { ConntrackQuery, ConntrackSource } from './conntrack-stream.js';
import type { IoTuning } from './io.js';
import { MAX_WORKERS, type TapQueue, type WorkerStats } from './worker-protocol.js';
import { WorkerPool } from './workers.js';

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
  /**
   * `innerMtu`: the containers' MTU, for cutting UDP-tunnel super-packets from a same-host kernel peer (native only);
   * `reusePort`: join a SO_REUSEPORT group (several workers), steered with `steerUnderlay`.
   */
  openUnderlay(underlayIp: number, port: number, slotSize: number, drops?: Float64Array, innerMtu?: number, reusePort?: boolean): DatagramSocket;
  /**
   * Several workers (native only): open TAP `name` with `queues` queues (IFF_MULTI_QUEUE), in order,
   * and attach the steering program for that many; queue 0 as a device, the others for workers to adopt.
   */
  openTapQueues?(name: string, queues: number, slotSize: number, drops: Float64Array, persist: boolean): { dev: FrameDevice; others: TapQueue[] };
  /** The same for a persistent multi-queue TAP an earlier cell process left in a container's namespace (ENODEV: not there). */
  reattachTapQueues?(netnsPath: string, name: string, queues: number, slotSize: number, drops: Float64Array): { dev: FrameDevice; others: TapQueue[] };
  /** In a worker: take over a queue another thread opened. */
  adoptTap?(queue: TapQueue, slotSize: number, drops: Float64Array): FrameDevice;
  /** Attach the group's steering program for `n` sockets (on a socket opened with reusePort). */
  steerUnderlay?(sock: DatagramSocket, n: number): void;
  /** Close a queue nobody adopted. */
  closeQueue?(queue: TapQueue): void;
  /** The offloads asked for and what the kernel granted, where the devices have any. */
  offloads?(): OffloadStatus;
  /** Busy-polling counters (windowUs, kicks, spins, windows), where the devices do it. */
  busyPoll?(): unknown;
}

/** The state directory's files for the tracked connections and the counters. */
export const CONNTRACK_FILE = 'conntrack.bin';
export const COUNTERS_FILE = 'counters.json';
/** Worker k's tracked connections: worker 0's is the file a single-worker cell writes. */
export function conntrackFile(k: number): string {
  return k === 0 ? CONNTRACK_FILE : `conntrack-${k}.bin`;
}

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
  /**
   * More than one worker thread (--workers N, native io only): each moves the flows the kernel
   * steers to it; `offload` and `tuning` are what each worker opens its devices with.
   */
  workers?: { count: number; offload: OffloadOptions; tuning: IoTuning };
}

interface Attached {
  port: Port;
  netns: string;
  ifname: string;
  dev: FrameDevice;
}

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
  private fw!: Forwarder;
  private readonly attached = new Map<string, Attached>(); // by handle
  /** Set by the metrics registry when metrics are on. */
  applyHistogram: { observe(v: number): void } | null = null;
  watchLagHistogram: { observe(v: number): void } | null = null;
  private timers: NodeJS.Timeout[] = [];
  private slotSize = 0;
  private cfg!: DataplaneConfig;
  private hooks: AgentHooks | null = null;
  private appliedPolicies: PolicyRecord[] | null = null;
  private readonly now: () => number;
  /** The data plane's counters, made before the data plane (the underlay counts into them from start()). */
  private readonly counters = new Counters();
  /** The periodic conntrack save under way (one at a time). */
  private ctSaving: ConntrackWriter | null = null;
  /** Tracked connections read from the state directory, put in the table once it exists. */
  restoredConntrack = 0;
  /** Workers 1..N-1 (with `workers`), else null. */
  private pool: WorkerPool | null = null;
  /** Worker threads in all, this one included. */
  readonly workers: number;
  /** The workers' periodic conntrack save under way. */
  private workersSaving = false;
  /** This process has written worker 0's and the workers' conntrack files (stale ones may go then). */
  private mainSaved = false;
  private workersSaved = false;
  private staleRemoved = false;
  /** Set by a final saveState: close() writes the workers' conntrack there once they have stopped moving frames. */
  private finalDir: StateDir | null = null;

  constructor(opts: CellOptions) {
    super(opts, logger('cell', { cell: opts.name }));
    this.opts = opts;
    this.now = opts.now ?? (() => performance.now() / 1000);
    this.workers = opts.workers?.count ?? 1;
    if (this.workers > 1 && opts.capture) throw new Error('--capture works with one worker (--workers 1)');
    if (this.workers > 1 && (!opts.io.openTapQueues || !opts.io.reattachTapQueues || !opts.io.steerUnderlay)) {
      throw new Error('several workers need the native devices (multi-queue TAPs, a SO_REUSEPORT group)');
    }
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
    this.fw = new Forwarder(this.dp, this.underlay, this.now);
    this.slotSize = slotSizeFor(cfg.underlayMtu);
    this.pool?.post({ t: 'open', cfg });
  }

  /**
   * Bind the underlay (UDP port 4789 on the underlay IP) before anything else
   * — before the lease: a second cell for the same underlay address fails
   * here (EADDRINUSE, no port sharing) having touched nothing.
   */
  override async start(): Promise<void> {
    const mtu = this.opts.dataplane?.underlayMtu ?? DEFAULT_CONFIG.underlayMtu;
    const port = this.opts.dataplane?.vxlanPort ?? DEFAULT_CONFIG.vxlanPort;
    const io = this.opts.io;
    const ip = ipToU32(this.opts.underlayIp);
    try {
      if (this.workers > 1) {
        // A plain bind first, closed at once: the port shared by nobody yet, as with one worker
        // (a second cell for this address fails here, not by joining the group).
        io.openUnderlay(ip, port, slotSizeFor(mtu), undefined, mtu - 50).close();
      }
      this.underlay = io.openUnderlay(ip, port, slotSizeFor(mtu), this.counters.drops, mtu - 50, this.workers > 1);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE') throw new Error(`UDP port ${port} on ${this.opts.underlayIp} is in use (another cell for this underlay address is running)`);
      if (e.code === 'EADDRNOTAVAIL') throw new Error(`${this.opts.underlayIp} is not an address of this network namespace`);
      throw err;
    }
    if (this.workers > 1) {
      const w = this.opts.workers!;
      try {
        this.pool = await WorkerPool.start(
          { n: this.workers, underlayIp: ip, port, slotSize: slotSizeFor(mtu), innerMtu: mtu - 50, offload: w.offload, tuning: w.tuning },
          this.log,
          {
            gone: (handle, err) => {
              if (this.forget(handle) !== undefined) this.hooks?.gone(handle, { err });
            },
            died: (index, err) => {
              // Its flows have nowhere to go: stop, so a supervisor starts the cell again (state kept).
              this.log.fatal({ worker: index, err }, 'worker-died');
              process.kill(process.pid, 'SIGTERM');
            },
          },
        );
        io.steerUnderlay!(this.underlay, this.workers);
      } catch (err) {
        this.underlay.close();
        throw err;
      }
      this.log.info({ workers: this.workers }, 'workers-started');
    }
    await super.start();
  }

  /** The flows the kernel steers to worker `index` (restoring saved connections with several workers). */
  private ownedBy(index: number): ((e: SavedCt) => boolean) | undefined {
    const n = this.workers;
    if (n === 1) return undefined;
    return (e) => steerWorkerOfFlow(e.src, e.dst, e.proto, e.sport, e.dport, n) === index;
  }

  /** All workers' counters added up (the main thread's alone with one worker). */
  counterTotals(): Counters {
    if (this.pool === null) return this.counters;
    const sum = new Counters();
    sum.add(this.counters);
    for (const c of this.pool.counters()) sum.add(c);
    return sum;
  }

  /** The other workers' tables for `show conntrack`; none with one worker. */
  conntrackSources(q: ConntrackQuery): ConntrackSource[] {
    return this.pool === null ? [] : this.pool.conntrackSources(q);
  }

  /** The other workers' own figures (devices, conntrack, rule hits); empty with one worker. */
  async workerStats(): Promise<(WorkerStats | null)[]> {
    return this.pool === null ? [] : this.pool.stats();
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
    // With several workers each saved its own file; every worker reads them all and keeps its flows'.
    const files: Uint8Array[] = [];
    for (let k = 0; k < MAX_WORKERS; k++) {
      const b = dir.readBinary(conntrackFile(k));
      if (b !== null) files.push(b);
    }
    if (files.length === 0) return;
    this.pool?.post({ t: 'restore', files });
    const keep = this.ownedBy(0);
    for (const b of files) {
      try {
        this.restoredConntrack += restoreConntrackBytes(this.dp.conntrack, b, this.now(), keep);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'conntrack-unreadable');
      }
    }
    this.log.info({ entries: this.restoredConntrack }, 'conntrack-restored');
  }

  /**
   * Counters now; the tracked connections now when `final` (stopping), else
   * walked in slices of a few milliseconds between packet batches and written
   * when the walk ends (a full table must not stall forwarding).
   */
  saveState(dir: StateDir, final = false): void {
    dir.writeBinary(COUNTERS_FILE, Buffer.from(JSON.stringify(this.counterTotals().snapshot())));
    if (this.pool !== null) {
      if (final) this.finalDir = dir; // written by close(), once the workers stop
      else if (!this.workersSaving) {
        this.workersSaving = true;
        void this.pool
          .save(false)
          .then((files) => {
            this.writeWorkerFiles(dir, files);
            this.workersSaved = true;
            this.removeStaleFiles(dir);
          })
          .finally(() => (this.workersSaving = false));
      }
    }
    if (final) {
      this.ctSaving = null;
      const w = new ConntrackWriter(this.dp.conntrack, this.now());
      while (!w.step(Infinity));
      dir.writeBinary(CONNTRACK_FILE, w.bytes());
      this.mainSaved = true;
      if (this.pool === null) this.removeStaleFiles(dir);
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
        this.mainSaved = true;
        this.removeStaleFiles(dir);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'state-save-failed');
      }
    };
    slice();
  }

  /**
   * A cell that had more workers before left files no worker writes now: once every worker has
   * saved what it restored from them, they go (else a later start would restore them again).
   */
  private removeStaleFiles(dir: StateDir): void {
    if (this.staleRemoved || !this.mainSaved || (this.pool !== null && !this.workersSaved)) return;
    this.staleRemoved = true;
    try {
      for (let k = this.workers; k < MAX_WORKERS; k++) dir.remove(conntrackFile(k));
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'state-save-failed');
    }
  }

  /** Worker k's conntrack files (worker 0's name is the one a single-worker cell uses). */
  private writeWorkerFiles(dir: StateDir, files: Uint8Array[]): void {
    try {
      files.forEach((bytes, i) => dir.writeBinary(conntrackFile(i + 1), bytes));
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'state-save-failed');
    }
  }

  async run(): Promise<void> {
    if (this.opts.capture) {
      this.fw.capture = this.opts.io.openTap(VTEP_DEV, this.slotSize);
      await this.opts.containerNet.prepareCapture(this.fw.capture.name);
      this.log.info({ dev: this.fw.capture.name }, 'capture-enabled');
    }
    this.fw.startUnderlay();
    this.pool?.post({ t: 'run' });
    // One coarse tick drives every expiry (conntrack), never a timer per flow.
    this.timers.push(setInterval(() => this.dp.tick(this.now()), 1000).unref());
  }

  /** Close every fd; the containers' TAPs persist (a restarted cell re-attaches them). */
  async close(): Promise<void> {
    this.ctSaving = null;
    for (const t of this.timers) clearInterval(t);
    if (this.pool !== null) {
      const pool = this.pool;
      if (this.finalDir !== null) {
        this.writeWorkerFiles(this.finalDir, await pool.save(true));
        this.workersSaved = true;
        this.removeStaleFiles(this.finalDir);
      }
      await pool.close();
      this.pool = null;
    }
    for (const a of [...this.attached.values()]) this.forget(a.port.handle);
    this.underlay?.close();
    this.fw?.capture?.close();
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
    this.pool?.post({ t: 'leases', leases: state.leases });
    if (this.appliedPolicies !== null && touched && !this.dp.hasPortOfApp(touched)) {
      this.dp.holdPolicies(snap.policies);
      this.pool?.post({ t: 'policies', policies: snap.policies, hold: true });
      this.appliedPolicies = snap.policies;
    } else if (this.appliedPolicies === null || !samePolicies(this.appliedPolicies, snap.policies)) {
      this.dp.setPolicies(snap.policies);
      this.pool?.post({ t: 'policies', policies: snap.policies, hold: false });
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
    const io = this.opts.io;
    let dev: FrameDevice;
    let others: TapQueue[] = [];
    if (this.workers > 1) ({ dev, others } = io.openTapQueues!(silkIfName(ip), this.workers, this.slotSize, this.dp.counters.drops, true));
    else dev = io.openTap(silkIfName(ip), this.slotSize, this.dp.counters.drops, true);
    try {
      await this.opts.containerNet.attach(dev.name, netns, ip, this.dp.innerMtu, ifname);
    } catch (err) {
      for (const q of others) io.closeQueue?.(q);
      release(dev);
      throw err;
    }
    this.adopt(c, dev, others);
  }

  async reattach(c: ContainerRecord): Promise<boolean> {
    const io = this.opts.io;
    let dev: FrameDevice;
    let others: TapQueue[] = [];
    try {
      if (this.workers > 1) ({ dev, others } = io.reattachTapQueues!(netnsPath(c.netns), ifnameOf(c), this.workers, this.slotSize, this.dp.counters.drops));
      else if (io.reattachTap) dev = io.reattachTap(netnsPath(c.netns), ifnameOf(c), this.slotSize, this.dp.counters.drops);
      else return false;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENODEV' || e.code === 'ENOENT') return false;
      // A TAP a one-worker cell made has one queue, and the kernel does not change a TAP's queue
      // mode: give the container a new multi-queue TAP (same name, address, MAC and routes; its
      // connections see a short loss, as when a link flaps).
      if (this.workers > 1 && tapRefusal(e) === 'single') {
        await this.opts.containerNet.detach(c.netns, ifnameOf(c));
        await this.attach(c);
        this.log.info({ handle: c.handle, workers: this.workers }, 'container-tap-replaced');
        return true;
      }
      throw err;
    }
    this.adopt(c, dev, others);
    return true;
  }

  /** Give the container a port and start moving its device's frames (each other queue in its worker). */
  private adopt(c: ContainerRecord, dev: FrameDevice, others: TapQueue[]): void {
    const { handle, app, ip, netns } = c;
    const ifname = ifnameOf(c);
    const port = this.dp.addPort(handle, app, ip);
    this.attached.set(handle, { port, netns, ifname, dev });
    this.pool?.postEach((k) => ({ t: 'port', index: port.index, handle, app, ip, queue: others[k - 1]! }));
    this.fw.startDevice(port.index, dev, (err) => {
      // The namespace was deleted under us: the container is gone.
      if (this.forget(handle) !== undefined) this.hooks?.gone(handle, { err: err.message });
    });
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
    this.fw.dropDevice(a.port.index);
    this.dp.removePort(a.port.index);
    // The workers close their queues (a TAP without persistence goes when its last queue closes).
    this.pool?.post({ t: 'unport', index: a.port.index });
    if (remove) release(a.dev);
    else a.dev.close();
    return a;
  }

  /** The devices' own counters (syscall-level drops: full queues, EAGAIN), where they keep any. */
  ioStats(): Record<string, unknown> {
    const out = deviceStats(this.underlay, [...this.attached.values()].map((a) => a.dev));
    const off = this.opts.io.offloads?.();
    if (off !== undefined) out.offload = off;
    const bp = this.opts.io.busyPoll?.();
    if (bp !== undefined) out.busy_poll = bp;
    return out;
  }
}
