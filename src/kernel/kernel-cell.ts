// `silkworm cell --dataplane kernel`: the same cell agent (lease, renewals,
// policy watch, containers via the admin socket) but the packets are moved by
// the Linux kernel, programmed as silk-daemon, silk-cni and the
// vxlan-policy-agent program it (plan.ts says what and why). It is the
// reference peer silkworm must be indistinguishable from on the wire.
//
// Everything it changes lives in the cell's own network namespace (the
// process runs inside it): silk-vtep, routes/neighbors/FDB on it, the veths'
// host sides, ip_forward, and filter-table chains. Deleting the namespace
// removes all of it; `stop()` also removes it for a cell that keeps running
// its namespace.
import fs from 'node:fs';
import type { ControllerClient, Lease, Snapshot } from '../control/client.js';
import { netnsPath, type ContainerNet } from '../cell/netns.js';
import { checkAddRequest, checkFixedIp, LeaseExhaustedError, type AddContainerRequest, type ContainerInfo } from '../cell/cell.js';
import { plan as planRules, validatePolicy, type Plan } from '../policy/planner.js';
import type { LocalContainer, PolicyRecord } from '../policy/types.js';
import { formatMac, ipToU32, macFromIp, parseCidr, u32ToIp, inPrefix } from '../util/ip.js';
import { logger, type Logger } from '../util/log.js';
import { ControlLoop } from '../cell/control-loop.js';
import { ExecError, realExec, type Exec } from './exec.js';
import {
  HOST_VETH_GLOB,
  OVERLAY_CHAIN,
  VTEP_DEV,
  baseRestorePayload,
  containerHostCommands,
  diffLeases,
  leaseAddCommands,
  leaseDelCommands,
  leaseKey,
  nextChainName,
  policyChainLines,
  policyChainsIn,
  swapRestorePayload,
  vethNames,
  vtepCommands,
  type RemoteLease,
} from './plan.js';

export interface KernelCellOptions {
  name: string;
  controller: ControllerClient;
  underlayIp: string;
  /** The underlay device silk-vtep sends through (eth0 in the lab). */
  underlayDev: string;
  /** Underlay MTU; silk-vtep and the containers get MTU − 50. */
  underlayMtu?: number;
  vni?: number;
  vxlanPort?: number;
  /** The overlay network the leases come from; its prefix goes on silk-vtep's address. */
  overlayNetwork?: string;
  containerNet: ContainerNet;
  exec?: Exec;
  renewInterval?: number;
  /** Seconds between checks for containers whose namespace vanished. */
  reapInterval?: number;
  /** Wall clock in seconds, for vpa--<ts> chain names (tests pass their own). */
  nowSeconds?: () => number;
  /** Where the cell looks for interfaces (/sys/class/net); tests point it elsewhere. */
  sysClassNet?: string;
}

interface KContainer {
  handle: string;
  app: string;
  ip: number;
  netns: string;
  ifname: string;
  containerId?: string;
}

export class KernelCell {
  readonly name: string;
  readonly log: Logger;
  readonly exec: Exec;
  readonly loop: ControlLoop;
  vtepIp = 0;
  innerMtu: number;
  /** The plan the kernel holds now, and the chain it lives in. */
  plan: Plan = { marks: [], accepts: [] };
  chain: string | null = null;
  swaps = 0;
  private readonly o: KernelCellOptions;
  private readonly containers = new Map<string, KContainer>();
  private readonly leases = new Map<string, RemoteLease>();
  private policies: PolicyRecord[] = [];
  private appliedLines: string | null = null;
  private staleChains: string[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private reaper: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(o: KernelCellOptions) {
    this.o = o;
    this.name = o.name;
    this.log = logger('kernel-cell', { cell: o.name });
    this.exec = o.exec ?? realExec();
    this.innerMtu = (o.underlayMtu ?? 1500) - 50;
    this.loop = new ControlLoop({
      client: o.controller,
      underlayIp: o.underlayIp,
      log: this.log,
      renewInterval: o.renewInterval,
      onSnapshot: (snap) => this.serial(() => this.applySnapshot(snap)),
    });
  }

  get lease(): Lease {
    return this.loop.lease;
  }
  get underlayIp(): string {
    return this.o.underlayIp;
  }
  get vtepMac(): Uint8Array {
    return macFromIp(0xeeee, this.vtepIp);
  }

  /** Run kernel changes one at a time: snapshots and container adds both rewrite the chains. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private ip(args: string[]): Promise<string> {
    return this.exec.run('ip', args);
  }

  async start(): Promise<void> {
    const lease = await this.loop.acquire();
    const subnet = parseCidr(lease.overlay_subnet);
    this.vtepIp = subnet.addr >>> 0;
    const overlay = parseCidr(this.o.overlayNetwork ?? '10.255.0.0/16');
    if (!inPrefix(this.vtepIp, overlay.addr, overlay.len)) {
      throw new Error(`the lease ${lease.overlay_subnet} is outside the overlay network ${this.o.overlayNetwork ?? '10.255.0.0/16'}`);
    }
    // A stale silk-vtep (a cell that died) would keep old FDB entries: silk-daemon replaces it too.
    await this.ip(['link', 'del', VTEP_DEV]).catch(() => undefined);
    for (const argv of vtepCommands({
      underlayIp: this.o.underlayIp,
      underlayDev: this.o.underlayDev,
      vtepIp: this.vtepIp,
      overlayPrefixLen: overlay.len,
      vni: this.o.vni ?? 1,
      port: this.o.vxlanPort ?? 4789,
      mtu: this.innerMtu,
    })) {
      await this.ip(argv);
    }
    await this.exec.run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    this.log.info({ dev: VTEP_DEV, vtep: u32ToIp(this.vtepIp), mac: formatMac(this.vtepMac), mtu: this.innerMtu }, 'vtep-created');

    const save = await this.exec.run('iptables', ['-w', '-S']);
    const hasOverlay = save.split('\n').some((l) => l.trim() === `-N ${OVERLAY_CHAIN}`);
    const hasJump = save.split('\n').some((l) => l.trim() === `-A FORWARD -o ${HOST_VETH_GLOB} -j ${OVERLAY_CHAIN}`);
    await this.exec.run('iptables-restore', ['-w', '--noflush'], baseRestorePayload(hasOverlay, hasJump));
    this.staleChains = policyChainsIn(save);
    await this.loop.start();
    const every = (this.o.reapInterval ?? 2) * 1000;
    this.reaper = setInterval(() => void this.serial(() => this.reap()), every);
    this.reaper.unref();
    this.log.info({ underlayIp: this.o.underlayIp, vtep: u32ToIp(this.vtepIp) }, 'cell-started');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.loop.stop();
    if (this.reaper) clearInterval(this.reaper);
    await this.serial(async () => {
      for (const c of [...this.containers.values()]) await this.detach(c).catch(() => undefined);
      const chains = this.chain ? [this.chain] : [];
      const payload = ['*filter', ...chains.flatMap((c) => [`-D FORWARD -j ${c}`, `-F ${c}`, `-X ${c}`]),
        `-D FORWARD -o ${HOST_VETH_GLOB} -j ${OVERLAY_CHAIN}`, `-F ${OVERLAY_CHAIN}`, `-X ${OVERLAY_CHAIN}`, 'COMMIT', ''].join('\n');
      await this.exec.run('iptables-restore', ['-w', '--noflush'], payload).catch((e) => this.log.warn({ err: (e as Error).message }, 'rules-removal-failed'));
      await this.ip(['link', 'del', VTEP_DEV]).catch(() => undefined);
    });
    this.log.info('cell-stopped');
  }

  /** Leases → silk-vtep routes/neighbors/FDB; policies → the policy chain. */
  async applySnapshot(snap: Snapshot): Promise<void> {
    const remote: RemoteLease[] = [];
    for (const l of snap.leases) {
      try {
        const s = parseCidr(l.overlay_subnet);
        ipToU32(l.underlay_ip);
        if ((s.addr >>> 0) === this.vtepIp) continue; // our own lease
        remote.push({ underlayIp: l.underlay_ip, subnet: s.addr >>> 0, prefixLen: s.len });
      } catch {
        this.log.warn({ lease: l }, 'skipping-bad-lease');
      }
    }
    const { add, del } = diffLeases(this.leases, remote);
    for (const l of del) {
      const c = leaseDelCommands(l);
      for (const a of c.ip) await this.ip(a).catch((e) => this.log.warn({ err: (e as Error).message }, 'lease-removal-failed'));
      for (const a of c.bridge) await this.exec.run('bridge', a).catch((e) => this.log.warn({ err: (e as Error).message }, 'lease-removal-failed'));
      this.leases.delete(leaseKey(l));
      this.log.info({ subnet: leaseKey(l), underlay: l.underlayIp }, 'lease-removed');
    }
    for (const l of add) {
      try {
        const c = leaseAddCommands(l, this.vtepIp);
        for (const a of c.ip) await this.ip(a);
        for (const a of c.bridge) await this.exec.run('bridge', a);
        this.leases.set(leaseKey(l), l);
        this.log.info({ subnet: leaseKey(l), underlay: l.underlayIp }, 'lease-installed');
      } catch (err) {
        this.log.warn({ err: (err as Error).message, subnet: leaseKey(l) }, 'lease-install-failed');
      }
    }
    this.policies = snap.policies.filter((p) => {
      const why = validatePolicy(p);
      if (why) this.log.warn({ policy: p, why }, 'skipping-bad-policy');
      return !why;
    });
    await this.enforce();
  }

  private locals(): LocalContainer[] {
    return [...this.containers.values()].map((c) => ({ handle: c.handle, ip: c.ip, app: c.app }));
  }

  /** Re-plan and, if the rules differ from what the kernel holds, swap them in make-before-break. */
  private async enforce(): Promise<void> {
    const p = planRules(this.policies, this.locals());
    const key = policyChainLines(p, 'x').join('\n');
    if (key === this.appliedLines && this.staleChains.length === 0) return;
    const chain = nextChainName(this.o.nowSeconds?.() ?? Date.now() / 1000, this.chain);
    const old = [...this.staleChains, ...(this.chain ? [this.chain] : [])];
    await this.exec.run('iptables-restore', ['-w', '--noflush'], swapRestorePayload(p, chain, old));
    this.log.info({ chain, replaced: old, marks: p.marks.length, accepts: p.accepts.length }, 'rules-swapped');
    this.plan = p;
    this.chain = chain;
    this.appliedLines = key;
    this.staleChains = [];
    this.swaps++;
  }

  // ------------------------------------------------------------- containers

  private nextIp(): number {
    const { addr, len } = parseCidr(this.lease.overlay_subnet);
    const size = 2 ** (32 - len);
    const used = new Set([...this.containers.values()].map((c) => c.ip));
    // .0 is the VTEP, .1 kept free (silk's gateway), the last is broadcast: as the userspace cell.
    for (let i = 2; i < size - 1; i++) {
      const ip = (addr + i) >>> 0;
      if (!used.has(ip)) return ip;
    }
    throw new LeaseExhaustedError(`no free address left in ${this.lease.overlay_subnet}`);
  }

  private info(c: KContainer): ContainerInfo {
    const tag = this.plan.marks.find((m) => m.ip === c.ip)?.tag ?? 0;
    return {
      handle: c.handle,
      app: c.app,
      ip: u32ToIp(c.ip),
      mac: formatMac(macFromIp(0xeeee, c.ip)),
      netns: c.netns,
      cell: this.name,
      tag: tag === 0 ? '' : tag.toString(16).toUpperCase().padStart(4, '0'),
      // A CNI attachment carries its identity; a plain `container add` keeps its old shape (eth0 implied).
      ...(c.containerId !== undefined ? { container_id: c.containerId, ifname: c.ifname } : c.ifname !== 'eth0' ? { ifname: c.ifname } : {}),
    };
  }

  listContainers(): ContainerInfo[] {
    return [...this.containers.values()].map((c) => this.info(c));
  }

  /** Local containers with their host-side veth names (for counters). */
  containerDevices(): { handle: string; app: string; ip: string; dev: string }[] {
    return [...this.containers.values()].map((c) => ({ handle: c.handle, app: c.app, ip: u32ToIp(c.ip), dev: vethNames(c.ip).host }));
  }

  findContainer(key: { handle?: string; netns?: string; containerId?: string; ifname?: string }): string | undefined {
    for (const c of this.containers.values()) {
      if (key.containerId !== undefined) {
        if (c.containerId === key.containerId && (key.ifname === undefined || c.ifname === key.ifname)) return c.handle;
        continue;
      }
      if (c.handle === key.handle || (key.netns !== undefined && netnsPath(c.netns) === netnsPath(key.netns))) return c.handle;
    }
    return undefined;
  }

  addContainer(req: AddContainerRequest): Promise<ContainerInfo> {
    return this.serial(async () => {
      const { app, netns } = req;
      const ifname = checkAddRequest(req, (n) => this.o.containerNet.exists(n));
      for (const c of this.containers.values()) {
        if (netnsPath(c.netns) === netnsPath(netns)) throw new Error(`namespace ${netns} already has a container (${c.handle})`);
      }
      const handle = req.handle ?? req.containerId ?? netns;
      if (this.containers.has(handle)) throw new Error(`a container with handle ${handle} already exists`);
      let ip: number;
      if (req.ip !== undefined) {
        ip = checkFixedIp(req.ip, this.lease.overlay_subnet);
        for (const c of this.containers.values()) if (c.ip === ip) throw new Error(`ip ${req.ip} is already in use on cell ${this.name}`);
      } else {
        ip = this.nextIp();
      }
      const { host, peer } = vethNames(ip);
      const cmds = containerHostCommands(ip, this.innerMtu);
      await this.ip(['link', 'del', host]).catch(() => undefined); // a leftover of a dead cell
      await this.ip(cmds.create);
      try {
        // The container side exactly as the userspace cell sets up its TAP.
        await this.o.containerNet.attach(peer, netns, ip, this.innerMtu, ifname);
        await this.exec.run('sysctl', ['-q', '-w', `net.ipv6.conf.${host}.disable_ipv6=1`]).catch(() => undefined);
        for (const a of cmds.configure) await this.ip(a);
      } catch (err) {
        await this.ip(['link', 'del', host]).catch(() => undefined);
        await this.o.containerNet.detach(netns, ifname).catch(() => undefined);
        throw err instanceof ExecError ? new Error(err.message) : err;
      }
      const c: KContainer = { handle, app, ip, netns, ifname, ...(req.containerId !== undefined ? { containerId: req.containerId } : {}) };
      this.containers.set(handle, c);
      await this.enforce();
      this.log.info({ handle, app, ip: u32ToIp(ip), netns, ifname, containerId: req.containerId, dev: host }, 'container-added');
      return this.info(c);
    });
  }

  private async detach(c: KContainer): Promise<void> {
    this.containers.delete(c.handle);
    await this.o.containerNet.detach(c.netns, c.ifname).catch(() => undefined);
    await this.ip(['link', 'del', vethNames(c.ip).host]).catch(() => undefined);
  }

  removeContainer(handle: string): Promise<ContainerInfo> {
    return this.serial(async () => {
      const c = this.containers.get(handle);
      if (!c) throw new Error(`no container ${handle} on cell ${this.name}`);
      const info = this.info(c);
      await this.detach(c);
      await this.enforce();
      this.log.info({ handle }, 'container-removed');
      return info;
    });
  }

  /** A deleted container namespace takes its veth pair with it: forget those containers. */
  private async reap(): Promise<void> {
    if (this.stopped) return;
    const dir = this.o.sysClassNet ?? '/sys/class/net';
    let gone = false;
    for (const c of [...this.containers.values()]) {
      if (fs.existsSync(`${dir}/${vethNames(c.ip).host}`)) continue;
      this.containers.delete(c.handle);
      this.log.info({ handle: c.handle }, 'container-gone');
      gone = true;
    }
    if (gone) await this.enforce().catch((e) => this.log.warn({ err: (e as Error).message }, 'rules-swap-failed'));
  }
}
