// The cell agent: silk-daemon + vxlan-policy-agent + silk-cni for one cell,
// with the data plane in-process. It
//   - acquires (and keeps renewing) its subnet lease from the controller,
//   - watches leases and policies (long-poll; every change resyncs the whole
//     snapshot) and feeds them to the Dataplane (routes/neighbors/FDB, plan),
//   - attaches containers: a TAP per container, moved into its namespace,
//   - moves frames: TAP batches → egress; UDP 4789 batches → ingress; and
//     carries out the verdicts with one send/write call per destination.
import { Action, FrameBatch, slotSizeFor } from '../dataplane/batch.js';
import { Dataplane, DEFAULT_CONFIG, type DataplaneConfig, type LeaseInfo, type Port } from '../dataplane/dataplane.js';
import type { DatagramSocket, FrameDevice } from '../io/types.js';
import type { ControllerClient, Lease, Snapshot } from '../control/client.js';
import { ControlLoop } from './control-loop.js';
import { netnsPath, validIfName, type ContainerNet } from './netns.js';
import { ipToU32, isIpv4, parseCidr, silkIfName, u32ToIp, formatMac, macFromIp } from '../util/ip.js';
import { logger, type Logger } from '../util/log.js';
import { formatTag } from '../policy/tags.js';

/** How the cell reaches devices: real (native addon) or in-memory for tests. */
export interface CellIo {
  openTap(name: string, slotSize: number): FrameDevice;
  openUnderlay(underlayIp: number, port: number, slotSize: number): DatagramSocket;
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

export interface ContainerInfo {
  handle: string;
  app: string;
  ip: string;
  mac: string;
  netns: string;
  cell: string;
  tag: string;
  /** The container's interface: given for CNI attachments and names other than eth0 (absent = eth0). */
  ifname?: string;
  /** CNI_CONTAINERID when a CNI runtime attached it. */
  container_id?: string;
}

/** What `container add` (and silkworm-cni's ADD) asks of a cell. */
export interface AddContainerRequest {
  app: string;
  /** A namespace name (ip netns) or a path (CNI_NETNS). */
  netns: string;
  handle?: string;
  /** Interface name in the namespace (default eth0). */
  ifname?: string;
  /** A fixed address (from a delegated IPAM plugin); must lie in the cell's lease. */
  ip?: string;
  /** CNI_CONTAINERID. */
  containerId?: string;
}

/** Thrown when the lease has no free address: the admin API answers 507. */
export class LeaseExhaustedError extends Error {}

/** Checks shared by both cells; returns the interface name to use. */
export function checkAddRequest(req: AddContainerRequest, exists: (netns: string) => boolean): string {
  const { app, netns } = req;
  if (typeof app !== 'string' || !/^[A-Za-z0-9_.:-]{1,128}$/.test(app)) throw new Error('app must be a name of letters, digits, "_.:-"');
  if (typeof netns !== 'string' || !exists(netns)) throw new Error(`network namespace "${netns}" does not exist`);
  const ifname = req.ifname ?? 'eth0';
  if (!validIfName(ifname)) throw new Error(`interface name "${ifname}" is not a valid Linux interface name (1-15 of letters, digits, "_.-")`);
  if (req.containerId !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(req.containerId)) {
    throw new Error('container id must be letters, digits, "_.-", starting with a letter or digit');
  }
  return ifname;
}

/** A fixed address for a container: inside the lease, not .0 (VTEP), .1 or broadcast. */
export function checkFixedIp(text: string, leaseCidr: string): number {
  if (!isIpv4(text)) throw new Error(`ip "${text}" is not an IPv4 address`);
  const ip = ipToU32(text);
  const { addr, len } = parseCidr(leaseCidr);
  const size = 2 ** (32 - len);
  const off = (ip - addr) >>> 0;
  if (off >= size) throw new Error(`ip ${text} is outside the cell's lease ${leaseCidr}`);
  if (off < 2 || off === size - 1) throw new Error(`ip ${text} is reserved in ${leaseCidr} (.0 is the VTEP, .1 silk's gateway, the last is broadcast)`);
  return ip;
}

interface Attached {
  port: Port;
  netns: string;
  dev: FrameDevice;
  ifname: string;
  containerId?: string;
}

const BATCH = 64;

export class Cell {
  readonly name: string;
  readonly log: Logger;
  dp!: Dataplane;
  /** Lease, renewals and the watch: shared with the kernel cell. */
  readonly loop: ControlLoop;
  private readonly opts: CellOptions;
  private underlay!: DatagramSocket;
  private readonly attached = new Map<string, Attached>(); // by handle
  /** Adds in flight (between choosing an address and recording the port): handle → {ip, netns}. */
  private readonly pending = new Map<string, { ip: number; netns: string }>();
  private readonly devByIndex: (FrameDevice | undefined)[] = [];
  /** Set by the metrics registry when metrics are on. */
  applyHistogram: { observe(v: number): void } | null = null;
  watchLagHistogram: { observe(v: number): void } | null = null;
  private stopped = false;
  private timers: NodeJS.Timeout[] = [];
  private slotSize = 0;
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
    this.opts = opts;
    this.name = opts.name;
    this.log = logger('cell', { cell: opts.name });
    this.now = opts.now ?? (() => performance.now() / 1000);
    this.loop = new ControlLoop({
      client: opts.controller,
      underlayIp: opts.underlayIp,
      log: this.log,
      renewInterval: opts.renewInterval,
      onSnapshot: (snap) => this.apply(snap),
    });
  }

  get lease(): Lease {
    return this.loop.lease;
  }
  get version(): number {
    return this.loop.version;
  }
  get lastSnapshotAt(): number {
    return this.loop.lastSnapshotAt;
  }
  get watchErrors(): number {
    return this.loop.watchErrors;
  }
  get renewFailures(): number {
    return this.loop.renewFailures;
  }

  get underlayIp(): string {
    return this.opts.underlayIp;
  }

  async start(): Promise<void> {
    await this.loop.acquire();
    const subnet = parseCidr(this.lease.overlay_subnet);
    const cfg: DataplaneConfig = {
      ...DEFAULT_CONFIG,
      ...this.opts.dataplane,
      underlayIp: ipToU32(this.opts.underlayIp),
      leaseSubnet: subnet.addr,
      leasePrefixLen: subnet.len,
    };
    this.dp = new Dataplane(cfg);
    this.slotSize = slotSizeFor(cfg.underlayMtu);
    await this.loop.start();
    if (this.opts.capture) {
      this.capture = this.opts.io.openTap('silk-vtep', this.slotSize);
      await this.opts.containerNet.prepareCapture(this.capture.name);
      this.log.info({ dev: this.capture.name }, 'capture-enabled');
    }
    this.underlay = this.opts.io.openUnderlay(cfg.underlayIp, cfg.vxlanPort, this.slotSize);
    this.underlay.start((batch) => {
      if (this.capture !== null) this.captureIngress(batch);
      this.dp.ingress(batch, this.now());
      this.dispatch(batch);
    });
    // One coarse tick drives every expiry (conntrack), never a timer per flow.
    this.timers.push(setInterval(() => this.dp.tick(this.now()), 1000).unref());
    this.log.info({ underlayIp: this.opts.underlayIp, vtep: u32ToIp(this.dp.vtepIp) }, 'cell-started');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.loop.stop();
    for (const t of this.timers) clearInterval(t);
    for (const a of [...this.attached.values()]) await this.removeContainer(a.port.handle).catch(() => undefined);
    this.underlay?.close();
    this.capture?.close();
    this.log.info('cell-stopped');
  }

  /** Apply a controller snapshot: leases → tables, policies → plan. */
  apply(snap: Snapshot): void {
    const t0 = performance.now();
    const leases: LeaseInfo[] = [];
    for (const l of snap.leases) {
      try {
        const s = parseCidr(l.overlay_subnet);
        leases.push({ underlayIp: ipToU32(l.underlay_ip), subnet: s.addr, prefixLen: s.len });
      } catch {
        this.log.warn({ lease: l }, 'skipping-bad-lease');
      }
    }
    this.dp.setLeases(leases);
    this.dp.setPolicies(snap.policies);
    this.applyHistogram?.observe((performance.now() - t0) / 1000);
    const changedAt = snap.changed_at;
    if (typeof changedAt === 'number') this.watchLagHistogram?.observe(Math.max(0, Date.now() - changedAt) / 1000);
    this.log.debug({ version: snap.version, leases: leases.length, policies: snap.policies.length }, 'snapshot-applied');
  }

  // ------------------------------------------------------------- containers

  private nextIp(): number {
    const { addr, len } = parseCidr(this.lease.overlay_subnet);
    const size = 2 ** (32 - len);
    // .0 is the VTEP, .1 is kept free (silk's gateway), the last is broadcast.
    for (let i = 2; i < size - 1; i++) {
      const ip = (addr + i) >>> 0;
      if (this.dp.portByAddress(ip) === undefined && !this.isPending(ip)) return ip;
    }
    throw new LeaseExhaustedError(`no free address left in ${this.lease.overlay_subnet}`);
  }

  private isPending(ip: number): boolean {
    for (const p of this.pending.values()) if (p.ip === ip) return true;
    return false;
  }

  listContainers(): ContainerInfo[] {
    return [...this.attached.values()].map((a) => this.info(a));
  }

  private info(a: Attached): ContainerInfo {
    return {
      handle: a.port.handle,
      app: a.port.app,
      ip: u32ToIp(a.port.ip),
      mac: formatMac(macFromIp(0xeeee, a.port.ip)),
      netns: a.netns,
      cell: this.name,
      tag: a.port.tag === 0 ? '' : formatTag(a.port.tag),
      // A CNI attachment carries its identity; a plain `container add` keeps its old shape (eth0 implied).
      ...(a.containerId !== undefined ? { container_id: a.containerId, ifname: a.ifname } : a.ifname !== 'eth0' ? { ifname: a.ifname } : {}),
    };
  }

  async addContainer(req: AddContainerRequest): Promise<ContainerInfo> {
    const { app, netns } = req;
    const ifname = checkAddRequest(req, (n) => this.opts.containerNet.exists(n));
    // Everything from here to `pending.set` is synchronous: concurrent adds
    // see each other's namespace, handle and address before any await.
    for (const a of [...this.attached.values(), ...this.pending.values()]) {
      if (netnsPath(a.netns) === netnsPath(netns)) throw new Error(`namespace ${netns} already has a container${'port' in a ? ` (${a.port.handle})` : ''}`);
    }
    const handle = req.handle ?? req.containerId ?? netns;
    if (this.attached.has(handle) || this.pending.has(handle)) throw new Error(`a container with handle ${handle} already exists`);
    let ip: number;
    if (req.ip !== undefined) {
      ip = checkFixedIp(req.ip, this.lease.overlay_subnet);
      if (this.dp.portByAddress(ip) !== undefined || this.isPending(ip)) throw new Error(`ip ${req.ip} is already in use on cell ${this.name}`);
    } else {
      ip = this.nextIp();
    }
    const tapName = silkIfName(ip);
    const dev = this.opts.io.openTap(tapName, this.slotSize);
    this.pending.set(handle, { ip, netns });
    try {
      await this.opts.containerNet.attach(dev.name, netns, ip, this.dp.innerMtu, ifname);
    } catch (err) {
      dev.close();
      throw err;
    } finally {
      this.pending.delete(handle);
    }
    const port = this.dp.addPort(handle, app, ip);
    const a: Attached = { port, netns, dev, ifname, ...(req.containerId !== undefined ? { containerId: req.containerId } : {}) };
    this.attached.set(handle, a);
    this.devByIndex[port.index] = dev;
    dev.start(
      (batch) => {
        this.dp.egress(batch, port.index, this.now());
        this.dispatch(batch);
      },
      (err) => {
        // The namespace was deleted under us: the container is gone.
        this.log.info({ handle, err: err.message }, 'container-gone');
        this.forget(handle);
      },
    );
    this.log.info({ handle, app, ip: u32ToIp(ip), netns, ifname, containerId: req.containerId }, 'container-added');
    return this.info(a);
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

  findContainer(key: { handle?: string; netns?: string; containerId?: string; ifname?: string }): string | undefined {
    for (const a of this.attached.values()) {
      if (key.containerId !== undefined) {
        if (a.containerId === key.containerId && (key.ifname === undefined || a.ifname === key.ifname)) return a.port.handle;
        continue;
      }
      if (a.port.handle === key.handle || (key.netns !== undefined && netnsPath(a.netns) === netnsPath(key.netns))) return a.port.handle;
    }
    return undefined;
  }

  async removeContainer(handle: string): Promise<ContainerInfo> {
    const a = this.attached.get(handle);
    if (!a) throw new Error(`no container ${handle} on cell ${this.name}`);
    const info = this.info(a);
    this.forget(handle);
    await this.opts.containerNet.detach(a.netns, a.ifname);
    this.log.info({ handle }, 'container-removed');
    return info;
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
    if (nu > 0) {
      this.underlay.send(batch.slab, this.sOff, this.sLen, this.sDst, nu);
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
      if (dev !== undefined) dev.write(batch.slab, this.tOff, this.tLen, nt);
    }
  }
}
