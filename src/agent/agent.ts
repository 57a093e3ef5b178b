// The cell agent, whichever data plane moves the packets: silk-daemon (the
// subnet lease, its renewals, the controller watch) plus silk-cni's
// bookkeeping (container records, addresses from the lease) in front of a
// Backend (src/agent/backend.ts) that does the data-plane work. Snapshots and
// container changes go through one queue, so a backend never sees two at
// once and two adds can never pick the same address.
import type { ControllerClient, Lease, Snapshot } from '../net/controller-client.js';
import { u32ToIp } from '../util/ip.js';
import type { Logger } from '../util/log.js';
import type { AgentHooks, Backend } from './backend.js';
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
import { checkFixedIp, nextIp } from './ipam.js';
import { parseLease, parseLeases } from './leases.js';

export interface AgentOptions {
  name: string;
  controller: ControllerClient;
  underlayIp: string;
  /** Only asked whether a namespace exists; the backend sets the container up. */
  netnsExists: (netns: string) => boolean;
  backend: Backend;
  /** Seconds between lease renewals. */
  renewInterval?: number;
}

export class Agent {
  readonly name: string;
  readonly loop: ControlLoop;
  private readonly o: AgentOptions;
  private readonly backend: Backend;
  private readonly log: Logger;
  private readonly records = new Map<string, ContainerRecord>(); // by handle, in attach order
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(o: AgentOptions) {
    this.o = o;
    this.name = o.name;
    this.backend = o.backend;
    this.log = o.backend.log;
    this.loop = new ControlLoop({
      client: o.controller,
      underlayIp: o.underlayIp,
      log: this.log,
      renewInterval: o.renewInterval,
      onSnapshot: (snap) => this.applySnapshot(snap),
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

  async start(): Promise<void> {
    const lease = await this.loop.acquire();
    const hooks: AgentHooks = { serial: (fn) => this.serial(fn), gone: (handle, fields) => this.gone(handle, fields) };
    await this.backend.open(lease, hooks);
    await this.loop.start();
    await this.backend.run();
    this.log.info({ underlayIp: this.o.underlayIp, vtep: u32ToIp(parseLease(lease).subnet) }, 'cell-started');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.loop.stop();
    await this.serial(() => this.backend.close());
    this.records.clear();
    this.log.info('cell-stopped');
  }

  /** Apply a controller snapshot (in the queue): leases parsed once, then the backend. */
  applySnapshot(snap: Snapshot): Promise<void> {
    return this.serial(async () => {
      // A watch answer that lands after stop() must not program a backend that has closed.
      if (this.stopped) return;
      await this.backend.apply({ snapshot: snap, leases: parseLeases(snap.leases, this.log) });
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
      this.log.info({ handle, app, ip: u32ToIp(ip), netns, ifname: c.ifname, containerId, ...extra }, 'container-added');
      return this.info(c);
    });
  }

  removeContainer(handle: string): Promise<ContainerInfo> {
    return this.serial(async () => {
      const c = this.records.get(handle);
      if (!c) throw new Error(`no container ${handle} on cell ${this.name}`);
      const info = this.info(c);
      this.records.delete(handle);
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
      await this.backend.detach(c);
      this.log.info({ handle: c.handle, containerId: c.containerId }, 'container-removed');
      return info;
    });
  }

  private gone(handle: string, fields?: Record<string, unknown>): void {
    if (this.records.delete(handle)) this.log.info({ handle, ...fields }, 'container-gone');
  }

  private info(c: ContainerRecord): ContainerInfo {
    return containerInfo(c, this.name, this.backend.tagOf(c.ip));
  }
}
