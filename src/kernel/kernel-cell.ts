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
import type { UpstreamControl } from '../agent/agent.js';
import type { ControllerClient, Lease } from '../net/controller-client.js';
import type { StateDir } from '../agent/state-dir.js';
import { AgentCell } from '../agent/agent-cell.js';
import type { AgentHooks, DesiredState } from '../agent/backend.js';
import { ifnameOf, type ContainerRecord } from '../agent/containers.js';
import { Converger } from '../agent/converger.js';
import type { ContainerNet } from '../agent/netns.js';
import { plan as planRules, validatePolicy, type Plan } from '../policy/planner.js';
import type { LocalContainer, PolicyRecord } from '../policy/types.js';
import { formatMac, macFromIp, parseCidr, u32ToIp, inPrefix } from '../util/ip.js';
import { logger } from '../util/log.js';
import { VTEP_DEV } from '../util/silk.js';
import { ExecError, realExec, type Exec } from './exec.js';
import {
  HOST_VETH_GLOB,
  OVERLAY_CHAIN,
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
  /** Poll an unmodified silk-controller and policy server (src/agent/silk-loop.ts) instead of watching. */
  upstream?: UpstreamControl;
  /** Seconds between checks for containers whose namespace vanished. */
  reapInterval?: number;
  /** Wall clock in seconds, for vpa--<ts> chain names (tests pass their own). */
  nowSeconds?: () => number;
  /** Where the cell looks for interfaces (/sys/class/net); tests point it elsewhere. */
  sysClassNet?: string;  /** The cell's state directory, locked by the caller (src/agent/state-dir.ts); none: nothing survives a restart. */
  state?: StateDir;
}

/** The kernel cell: the agent (AgentCell) with the Linux kernel, programmed as silk does, as its Backend. */
export class KernelCell extends AgentCell {
  readonly kind = 'kernel';
  readonly exec: Exec;
  vtepIp = 0;
  innerMtu: number;
  /** The plan the kernel holds now, and the chain it lives in. */
  plan: Plan = { marks: [], accepts: [] };
  chain: string | null = null;
  swaps = 0;
  private readonly o: KernelCellOptions;
  /** The containers whose veths this backend made (the agent keeps the records). */
  private readonly containers = new Map<string, ContainerRecord>();
  private readonly leases = new Map<string, RemoteLease>();
  private policies: PolicyRecord[] = [];
  private staleChains: string[] = [];
  /** Diff before enforce: the policy chain is swapped only when its rules change (or a stale chain is left). */
  private readonly rules: Converger<Plan>;
  private hooks: AgentHooks | null = null;
  private reaper: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(o: KernelCellOptions) {
    super(o, logger('kernel-cell', { cell: o.name }));
    this.o = o;
    this.exec = o.exec ?? realExec();
    this.innerMtu = (o.underlayMtu ?? 1500) - 50;
    this.rules = new Converger<Plan>(
      (p) => policyChainLines(p, 'x').join('\n'),
      (p) => this.swapRules(p),
    );
  }

  get vtepMac(): Uint8Array {
    return macFromIp(0xeeee, this.vtepIp);
  }

  /** Local containers with their host-side veth names (for counters). */
  containerDevices(): { handle: string; app: string; ip: string; dev: string }[] {
    return [...this.containers.values()].map((c) => ({ handle: c.handle, app: c.app, ip: u32ToIp(c.ip), dev: vethNames(c.ip).host }));
  }

  private ip(args: string[]): Promise<string> {
    return this.exec.run('ip', args);
  }

  // ------------------------------------------------------------- Backend

  async open(lease: Lease, hooks: AgentHooks): Promise<void> {
    this.hooks = hooks;
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
  }

  async run(): Promise<void> {
    const every = (this.o.reapInterval ?? 2) * 1000;
    this.reaper = setInterval(() => void this.hooks?.serial(() => this.reap()), every);
    this.reaper.unref();
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.reaper) clearInterval(this.reaper);
    for (const c of [...this.containers.values()]) await this.removeVeth(c).catch(() => undefined);
    const chains = this.chain ? [this.chain] : [];
    const payload = ['*filter', ...chains.flatMap((c) => [`-D FORWARD -j ${c}`, `-F ${c}`, `-X ${c}`]),
      `-D FORWARD -o ${HOST_VETH_GLOB} -j ${OVERLAY_CHAIN}`, `-F ${OVERLAY_CHAIN}`, `-X ${OVERLAY_CHAIN}`, 'COMMIT', ''].join('\n');
    await this.exec.run('iptables-restore', ['-w', '--noflush'], payload).catch((e) => this.log.warn({ err: (e as Error).message }, 'rules-removal-failed'));
    await this.ip(['link', 'del', VTEP_DEV]).catch(() => undefined);
  }

  async apply(state: DesiredState): Promise<void> {
    const remote: RemoteLease[] = [];
    for (const l of state.leases) {
      if (l.subnet === this.vtepIp) continue; // our own lease
      remote.push({ underlayIp: u32ToIp(l.underlayIp), subnet: l.subnet, prefixLen: l.prefixLen });
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
    this.policies = state.snapshot.policies.filter((p) => {
      const why = validatePolicy(p);
      if (why) this.log.warn({ policy: p, why }, 'skipping-bad-policy');
      return !why;
    });
    await this.enforce();
  }

  tagOf(ip: number): number {
    return this.plan.marks.find((m) => m.ip === ip)?.tag ?? 0;
  }

  async attach(c: ContainerRecord): Promise<Record<string, unknown>> {
    const { ip, netns } = c;
    const { host, peer } = vethNames(ip);
    const cmds = containerHostCommands(ip, this.innerMtu);
    await this.ip(['link', 'del', host]).catch(() => undefined); // a leftover of a dead cell
    await this.ip(cmds.create);
    try {
      // The container side exactly as the userspace cell sets up its TAP.
      await this.o.containerNet.attach(peer, netns, ip, this.innerMtu, ifnameOf(c));
      await this.exec.run('sysctl', ['-q', '-w', `net.ipv6.conf.${host}.disable_ipv6=1`]).catch(() => undefined);
      for (const a of cmds.configure) await this.ip(a);
    } catch (err) {
      await this.ip(['link', 'del', host]).catch(() => undefined);
      await this.o.containerNet.detach(netns, ifnameOf(c)).catch(() => undefined);
      throw err instanceof ExecError ? new Error(err.message) : err;
    }
    this.containers.set(c.handle, c);
    await this.enforce();
    return { dev: host };
  }

  async detach(c: ContainerRecord): Promise<void> {
    await this.removeVeth(c);
    await this.enforce();
  }

  // ------------------------------------------------------------- details

  private async removeVeth(c: ContainerRecord): Promise<void> {
    this.containers.delete(c.handle);
    await this.o.containerNet.detach(c.netns, ifnameOf(c)).catch(() => undefined);
    await this.ip(['link', 'del', vethNames(c.ip).host]).catch(() => undefined);
  }

  private locals(): LocalContainer[] {
    return [...this.containers.values()].map((c) => ({ handle: c.handle, ip: c.ip, app: c.app }));
  }

  /** Re-plan; the converger swaps the rules in only if they differ from what the kernel holds. */
  private async enforce(): Promise<void> {
    await this.rules.converge(planRules(this.policies, this.locals()), this.staleChains.length > 0);
  }

  /** The enforcer: one iptables-restore that makes the new chain before breaking the old ones. */
  private async swapRules(p: Plan): Promise<void> {
    const chain = nextChainName(this.o.nowSeconds?.() ?? Date.now() / 1000, this.chain);
    const old = [...this.staleChains, ...(this.chain ? [this.chain] : [])];
    await this.exec.run('iptables-restore', ['-w', '--noflush'], swapRestorePayload(p, chain, old));
    this.log.info({ chain, replaced: old, marks: p.marks.length, accepts: p.accepts.length }, 'rules-swapped');
    this.plan = p;
    this.chain = chain;
    this.staleChains = [];
    this.swaps++;
  }

  /** A deleted container namespace takes its veth pair with it: forget those containers. */
  private async reap(): Promise<void> {
    if (this.stopped) return;
    const dir = this.o.sysClassNet ?? '/sys/class/net';
    let gone = false;
    for (const c of [...this.containers.values()]) {
      if (fs.existsSync(`${dir}/${vethNames(c.ip).host}`)) continue;
      this.containers.delete(c.handle);
      this.hooks?.gone(c.handle);
      gone = true;
    }
    if (gone) await this.enforce().catch((e) => this.log.warn({ err: (e as Error).message }, 'rules-swap-failed'));
  }
}
