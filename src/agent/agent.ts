// The cell agent, whichever data plane moves the packets: silk-daemon (the
// subnet lease, its renewals, the controller watch) plus silk-cni's
// bookkeeping (container records, addresses from the lease) in front of a
// Backend (src/agent/backend.ts) that does the data-plane work. Snapshots and
// container changes go through one queue, so a backend never sees two at
// once and two adds can never pick the same address.
//
// With a state directory (src/agent/state-dir.ts) the agent survives its own
// restart: the container records and the lease are written on every add and
// delete, every few seconds and on stop; on start they are read back and
// every container whose namespace and device are still there is re-attached
// (the backend adopts the device), the rest forgotten. A start that fails
// after the lease was acquired releases it again.
import type { ControllerClient, Lease, Snapshot } from '../net/controller-client.js';
import { ipToU32, isIpv4, parseCidr, u32ToIp } from '../util/ip.js';
import type { Logger } from '../util/log.js';
import type { AgentHooks, Backend, DesiredState } from './backend.js';
import {
  checkContainerRequest,
  containerInfo,
  matchesKey,
  type ContainerInfo,
  type ContainerKey,
  type ContainerRecord,
  type ContainerRequest,
} from './containers.js';
import { ControlLoop } from './control-loop.js';
import { SilkPollLoop } from './silk-loop.js';
import { checkFixedIp, nextIp } from './ipam.js';
import { parseLease, parseLeases } from './leases.js';
import type { SavedCell, StateDir } from './state-dir.js';

export interface AgentOptions {
  name: string;
  controller: ControllerClient;
  underlayIp: string;
  /** Only asked whether a namespace exists; the backend sets the container up. */
  netnsExists: (netns: string) => boolean;
  backend: Backend;
  /** Seconds between lease renewals. */
  renewInterval?: number;
  /** Where the cell keeps its state across restarts (locked by the caller); none: nothing is kept. */
  state?: StateDir;
  /** Seconds between periodic state saves (default 5). */
  saveInterval?: number;
  /** Join an upstream foundation: poll silk-controller and the policy server's internal API instead of watching. */
  upstream?: UpstreamControl;
}

/** How a cell talks to an unmodified silk-controller and policy server (src/agent/silk-loop.ts). */
export interface UpstreamControl {
  policyServer: ControllerClient;
  leasePollS?: number;
  policyPollS?: number;
  partitionToleranceS?: number;
  /** Fatal as silk-daemon's poller makes it (409 on renew…): the CLI stops the cell and exits non-zero. */
  onFatal: (err: Error) => void;
}

export class Agent {
  readonly name: string;
  readonly loop: ControlLoop | SilkPollLoop;
  private readonly o: AgentOptions;
  private readonly backend: Backend;
  private readonly log: Logger;
  private readonly records = new Map<string, ContainerRecord>(); // by handle, in attach order
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private saveTimer: NodeJS.Timeout | null = null;
  private started = false;

  constructor(o: AgentOptions) {
    this.o = o;
    this.name = o.name;
    this.backend = o.backend;
    this.log = o.backend.log;
    this.loop = o.upstream
      ? new SilkPollLoop({
          client: o.controller,
          policyServer: o.upstream.policyServer,
          underlayIp: o.underlayIp,
          log: this.log,
          leasePollS: o.upstream.leasePollS ?? o.renewInterval,
          policyPollS: o.upstream.policyPollS,
          partitionToleranceS: o.upstream.partitionToleranceS,
          localApps: () => [...this.records.values()].map((c) => c.app),
          onSnapshot: (snap) => this.applySnapshot(snap),
          onFatal: o.upstream.onFatal,
        })
      : new ControlLoop({
          client: o.controller,
          underlayIp: o.underlayIp,
          log: this.log,
          renewInterval: o.renewInterval,
          onSnapshot: (snap, touchedApps) => this.applySnapshot(snap, touchedApps),
        });
  }

  get lease(): Lease {
    return this.loop.lease;
  }

  /** Run changes one at a time: snapshots and container adds/removes all rewrite the data plane. */
  serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Acquire the lease, open the backend, apply the first snapshot, re-attach
   * the containers an earlier run recorded, start moving packets. On failure
   * everything made is undone (the lease released) and the error rethrown.
   */
  async start(): Promise<void> {
    const saved = this.loadSaved();
    let lease: Lease | undefined;
    try {
      lease = await this.loop.acquire();
      if (saved?.lease && saved.lease.overlay_subnet !== lease.overlay_subnet) {
        this.log.warn({ saved: saved.lease, lease }, 'lease-differs-from-saved');
      }
      const hooks: AgentHooks = { serial: (fn) => this.serial(fn), gone: (handle, fields) => this.gone(handle, fields) };
      await this.backend.open(lease, hooks);
      if (this.o.state && this.backend.loadState) {
        try {
          this.backend.loadState(this.o.state);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'state-unreadable');
        }
      }
      await this.loop.start();
      if (saved) await this.serial(() => this.restore(saved));
      await this.backend.run();
    } catch (err) {
      await this.abortStart(lease);
      throw err;
    }
    this.started = true;
    this.saveNow();
    if (this.o.state) {
      this.saveTimer = setInterval(() => void this.serial(() => this.saveNow()), (this.o.saveInterval ?? 5) * 1000);
      this.saveTimer.unref();
    }
    this.log.info({ underlayIp: this.o.underlayIp, vtep: u32ToIp(parseLease(lease).subnet), containers: this.records.size }, 'cell-started');
  }

  /** Undo a start that failed: stop the loop, close the backend, release a lease this run acquired. */
  private async abortStart(lease: Lease | undefined): Promise<void> {
    this.stopped = true;
    this.loop.stop();
    await this.serial(() => this.backend.close()).catch((err) => this.log.warn({ err: (err as Error).message }, 'close-failed'));
    this.records.clear();
    if (lease) {
      try {
        await this.o.controller.releaseLease(lease);
        this.log.info({ lease }, 'lease-released');
      } catch (err) {
        this.log.error({ lease, err: (err as Error).message }, 'lease-release-failed');
      }
    }
  }

  /** Stop: write the state (containers keep their devices), then close the backend. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.loop.stop();
    if (this.saveTimer) clearInterval(this.saveTimer);
    await this.serial(async () => {
      this.saveNow(true);
      await this.backend.close();
    });
    this.records.clear();
    this.log.info('cell-stopped');
  }

  // ------------------------------------------------------------------ state

  /** The state an earlier run left, or null. A damaged file is moved aside (one warning), never fatal. */
  private loadSaved(): SavedCell | null {
    const dir = this.o.state;
    if (!dir) return null;
    try {
      const s = dir.load();
      if (s && s.cell !== this.name) {
        this.log.warn({ file: dir.file, cell: s.cell }, 'state-of-another-cell');
        return null;
      }
      return s;
    } catch (err) {
      this.log.warn({ err: (err as Error).message, movedTo: `${dir.file}.bad` }, 'state-unreadable');
      try {
        dir.rename(dir.file, `${dir.file}.bad`);
      } catch {
        /* leave it; the next save replaces it */
      }
      return null;
    }
  }

  /** Re-attach what an earlier run recorded; forget (and say why) what cannot be. */
  private async restore(saved: SavedCell): Promise<void> {
    const lease = parseCidr(this.lease.overlay_subnet);
    const mask = lease.len === 0 ? 0 : (0xffffffff << (32 - lease.len)) >>> 0;
    for (const s of saved.containers) {
      const { handle, app, netns } = s;
      const drop = (reason: string) => this.log.warn({ handle, app, ip: s.ip, netns, reason }, 'container-dropped');
      if (this.records.has(handle) || [...this.records.values()].some((c) => c.netns === netns)) {
        drop('recorded twice');
        continue;
      }
      if (!isIpv4(s.ip) || ((ipToU32(s.ip) & mask) >>> 0) !== lease.addr >>> 0) {
        drop(`address outside the lease ${this.lease.overlay_subnet}`);
        continue;
      }
      if (!this.o.netnsExists(netns)) {
        drop('namespace gone');
        continue;
      }
      const c: ContainerRecord = { ...s, handle, app, netns, ip: ipToU32(s.ip) };
      let ok = false;
      try {
        ok = this.backend.reattach ? await this.backend.reattach(c) : false;
      } catch (err) {
        drop(`re-attach failed: ${(err as Error).message}`);
        continue;
      }
      if (!ok) {
        drop(this.backend.reattach ? 'device gone' : `the ${this.backend.kind} data plane cannot re-attach`);
        continue;
      }
      this.records.set(handle, c);
      this.log.info({ handle, app, ip: s.ip, netns }, 'container-reattached');
    }
  }

  /** Write the state now (no-op without a state directory); a failure is logged, never thrown. */
  saveNow(final = false): void {
    const dir = this.o.state;
    if (!dir || !this.started) return;
    try {
      const containers = [...this.records.values()].map((c) => ({ ...c, ip: u32ToIp(c.ip) }));
      dir.save({
        version: 1,
        cell: this.name,
        underlayIp: this.o.underlayIp,
        dataplane: this.backend.kind,
        lease: this.lease ?? null,
        pid: process.pid,
        savedAt: new Date().toISOString(),
        containers,
      });
      this.backend.saveState?.(dir, final);
    } catch (err) {
      this.log.error({ dir: dir.dir, err: (err as Error).message }, 'state-save-failed');
    }
  }

  /** Apply a controller snapshot (in the queue): leases parsed once, then the backend. */
  applySnapshot(snap: Snapshot, touchedApps?: ReadonlySet<string>): Promise<void> {
    return this.serial(async () => {
      // A watch answer that lands after stop() must not program a backend that has closed.
      if (this.stopped) return;
      const state: DesiredState = { snapshot: snap, leases: parseLeases(snap.leases, this.log) };
      if (touchedApps) state.touchedApps = touchedApps;
      await this.backend.apply(state);
    });
  }

  // ------------------------------------------------------------- containers

  listContainers(): ContainerInfo[] {
    return [...this.records.values()].map((c) => this.info(c));
  }

  /** The handle of the container `key` names: by handle or namespace (name or path), or by CNI container id. */
  findContainer(key: ContainerKey): string | undefined {
    for (const c of this.records.values()) if (matchesKey(c, key)) return c.handle;
    return undefined;
  }

  addContainer(req: ContainerRequest): Promise<ContainerInfo> {
    return this.serial(async () => {
      const { handle, app, netns, ifname, containerId, cniNetwork } = checkContainerRequest(req, this.records.values(), this.o.netnsExists);
      const used = new Set([...this.records.values()].map((c) => c.ip));
      let ip: number;
      if (req.ip !== undefined) {
        ip = checkFixedIp(req.ip, this.lease.overlay_subnet);
        if (used.has(ip)) throw new Error(`ip ${req.ip} is already in use on cell ${this.name}`);
      } else {
        ip = nextIp(this.lease.overlay_subnet, (a) => used.has(a));
      }
      // A CNI attachment keeps its interface name and container id; a plain
      // add keeps an interface name only when it is not eth0.
      const c: ContainerRecord = {
        handle,
        app,
        ip,
        netns,
        ...(containerId !== undefined ? { ifname: ifname ?? 'eth0', containerId } : ifname !== undefined && ifname !== 'eth0' ? { ifname } : {}),
        ...(cniNetwork !== undefined ? { cniNetwork } : {}),
      };
      const extra = await this.backend.attach(c);
      this.records.set(handle, c);
      this.saveNow();
      this.log.info({ handle, app, ip: u32ToIp(ip), netns, ifname: c.ifname, containerId, ...extra }, 'container-added');
      // Polling an upstream policy server: a new app's policies are asked for now, not next round.
      if (this.loop instanceof SilkPollLoop) this.loop.poke();
      return this.info(c);
    });
  }

  removeContainer(handle: string): Promise<ContainerInfo> {
    return this.serial(async () => {
      const c = this.records.get(handle);
      if (!c) throw new Error(`no container ${handle} on cell ${this.name}`);
      const info = this.info(c);
      this.records.delete(handle);
      this.saveNow();
      await this.backend.detach(c);
      this.log.info({ handle }, 'container-removed');
      return info;
    });
  }

  /**
   * Remove the container `key` names, if there is one (CNI DEL): looked up in
   * the queue, so two DELs of one container at once both succeed and the
   * second finds nothing. Undefined when there was nothing to remove.
   */
  removeIfPresent(key: ContainerKey): Promise<ContainerInfo | undefined> {
    return this.serial(async () => {
      const handle = this.findContainer(key);
      const c = handle === undefined ? undefined : this.records.get(handle);
      if (!c) return undefined;
      const info = this.info(c);
      this.records.delete(c.handle);
      this.saveNow();
      await this.backend.detach(c);
      this.log.info({ handle: c.handle, containerId: c.containerId }, 'container-removed');
      return info;
    });
  }

  private gone(handle: string, fields?: Record<string, unknown>): void {
    if (this.records.delete(handle)) {
      this.log.info({ handle, ...fields }, 'container-gone');
      this.saveNow();
    }
  }

  private info(c: ContainerRecord): ContainerInfo {
    return containerInfo(c, this.name, this.backend.tagOf(c.ip));
  }
}
