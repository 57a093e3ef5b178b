// The cell's packet pipeline, pure: batches of frames in, verdicts out.
//
//   egress:  a container's frame (from its TAP) → checks → route → neighbor →
//            FDB → tag → VXLAN-GBP encapsulation toward a remote cell; or,
//            for a container on this cell, the ingress policy and delivery.
//   ingress: a VXLAN datagram (from UDP 4789) → checks (lease-holding
//            sender, VNI, inner source inside the sender's lease) → policy
//            (conntrack, then the Group Policy ID against the compiled
//            rules) → delivery to the container's TAP, or an ICMP reject.
//
// It never touches a file descriptor: the cell runtime hands it FrameBatches
// and carries out the verdicts (batch.action/outOff/outLen/outTarget). The same
// code runs in unit tests with in-memory devices, in the real cell, and under
// `silkworm trace` (with a Tracer attached, which is the only time it
// allocates per packet).
//
// What the kernel does for silk, and so what we do (seed 002): each cell
// routes the packet once, so the inner TTL drops by one per cell (64 in the
// source container, 63 on the wire, 62 in the destination container); on the
// wire the inner frame carries VTEP MACs; the destination container sees
// dst ee:ee:<its ip>, src aa:aa:<its ip>.
import { Action, DEFAULT_HEADROOM, FrameBatch } from './batch.js';
import { Counters, Drop, Stat } from './counters.js';
import { flowHash, sourcePortFor } from './flowhash.js';
import { OUTER_LEN, writeOuterHeaders } from './encap.js';
import { Ipv4View } from '../wire/ipv4.js';
import { writeIcmpError, IcmpType, IcmpCode } from '../wire/icmp.js';
import { completePartialChecksum } from '../wire/checksum.js';
import { RouteTable, type RouteEntry } from '../tables/route.js';
import { NeighborTable } from '../tables/neighbor.js';
import { Fdb, macKey } from '../tables/fdb.js';
import { plan as planPolicies, type Plan } from '../policy/planner.js';
import { CompiledPolicy } from '../policy/compiled.js';
import { ConnTrack, CtState } from '../policy/conntrack.js';
import type { PolicyRecord, LocalContainer } from '../policy/types.js';
import { ipToU32, macFromIp, prefixMask, silkIfName, writeMacFromIp } from '../util/ip.js';

export const GATEWAY_IP = ipToU32('169.254.0.1');
export const VTEP_DEV = 'silk-vtep';
const ETH = 14;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const VXLAN_FLAG_G = 0x80;
const VXLAN_FLAG_I = 0x08;

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
  conntrackCapacity: 262144,
};

const enum Verdict {
  Deny = 0,
  Allow = 1,
  /** An ICMP error that belongs to no tracked flow: dropped silently (never answer an error with one). */
  Unrelated = 2,
}

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

export interface TraceResult {
  action: 'underlay' | 'tap' | 'drop';
  /** Underlay IP, TAP index, or the drop reason. */
  target: number;
  output: Uint8Array;
}

/** Receives the steps of one packet's walk when tracing. */
export interface Tracer {
  step(name: string, detail: Record<string, unknown>): void;
}

export class Dataplane {
  readonly cfg: DataplaneConfig;
  readonly vtepIp: number;
  readonly vtepMac: Uint8Array;
  readonly innerMtu: number;
  readonly routes = new RouteTable();
  readonly neighbors = new NeighborTable();
  readonly fdb = new Fdb();
  readonly conntrack: ConnTrack;
  counters = new Counters();
  /** Per accepted-rule hit counts, parallel to plan.accepts. */
  ruleHits = new Float64Array(0);
  policy: CompiledPolicy = CompiledPolicy.empty();
  policies: PolicyRecord[] = [];
  tracer: Tracer | null = null;
  /** While tracing: no conntrack entry is created, counters go to a scratch set. */
  private dry = false;

  private readonly ports: (Port | undefined)[] = [];
  private readonly portByIp = new Map<number, Port>();
  /** underlay IP → lease (for anti-spoofing: only lease holders may send us VXLAN). */
  private readonly leaseByUnderlay = new Map<number, LeaseInfo>();
  private leases: LeaseInfo[] = [];
  private readonly ip = new Ipv4View();
  private ident = 0;
  private icmpTokens: number;
  private icmpLast = 0;
  // L4 fields of the packet being processed (fields, not a returned object, so nothing is allocated).
  private sport = 0;
  private dport = 0;
  private tcpFlags = 0;
  private icmpError = false;
  private icmpType = -1;

  constructor(cfg: DataplaneConfig) {
    this.cfg = cfg;
    this.vtepIp = cfg.leaseSubnet >>> 0;
    this.vtepMac = macFromIp(0xeeee, this.vtepIp);
    this.innerMtu = cfg.underlayMtu - 50;
    this.conntrack = new ConnTrack({ capacity: cfg.conntrackCapacity });
    this.icmpTokens = cfg.icmpBurst;
  }

  // ---------------------------------------------------------------- control

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
    this.replan();
    this.rebuildTables();
    return port;
  }

  removePort(index: number): void {
    const port = this.ports[index];
    if (!port) return;
    this.ports[index] = undefined;
    this.portByIp.delete(port.ip);
    this.replan();
    this.rebuildTables();
  }

  port(index: number): Port | undefined {
    return this.ports[index];
  }

  portByAddress(ip: number): Port | undefined {
    return this.portByIp.get(ip >>> 0);
  }

  listPorts(): Port[] {
    return this.ports.filter((p): p is Port => p !== undefined);
  }

  setPolicies(policies: PolicyRecord[]): void {
    this.policies = policies;
    this.replan();
  }

  get plan(): Plan {
    return this.policy.plan;
  }

  private replan(): void {
    const containers: LocalContainer[] = this.listPorts().map((p) => ({ handle: p.handle, ip: p.ip, app: p.app }));
    const plan = planPolicies(this.policies, containers);
    this.policy = CompiledPolicy.compile(plan);
    this.ruleHits = new Float64Array(plan.accepts.length);
    for (const p of this.listPorts()) p.tag = this.policy.tagFor(p.ip);
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

  // ---------------------------------------------------------------- helpers

  private takeIcmpToken(now: number): boolean {
    const elapsed = now - this.icmpLast;
    this.icmpLast = now;
    if (elapsed > 0) this.icmpTokens = Math.min(this.cfg.icmpBurst, this.icmpTokens + elapsed * this.cfg.icmpRate);
    if (this.icmpTokens < 1) return false;
    this.icmpTokens -= 1;
    return true;
  }

  /** Read ports/flags of the L4 header of `this.ip` into fields; false if it is too short to hold them. */
  private readL4(buf: Uint8Array): boolean {
    const ip = this.ip;
    const off = ip.payloadOffset;
    const len = ip.payloadLen;
    const proto = ip.protocol;
    this.icmpError = false;
    this.icmpType = -1;
    this.tcpFlags = 0;
    if (proto === PROTO_TCP) {
      if (len < 20) return false;
      this.sport = (buf[off]! << 8) | buf[off + 1]!;
      this.dport = (buf[off + 2]! << 8) | buf[off + 3]!;
      this.tcpFlags = ((buf[off + 12]! & 1) << 8) | buf[off + 13]!;
      return true;
    }
    if (proto === PROTO_UDP) {
      if (len < 8) return false;
      this.sport = (buf[off]! << 8) | buf[off + 1]!;
      this.dport = (buf[off + 2]! << 8) | buf[off + 3]!;
      return true;
    }
    if (proto === PROTO_ICMP) {
      if (len < 8) return false;
      const type = buf[off]!;
      this.icmpType = type;
      if (type === IcmpType.EchoRequest || type === IcmpType.EchoReply) {
        this.sport = (buf[off + 4]! << 8) | buf[off + 5]!;
        this.dport = 0;
      } else {
        this.sport = 0;
        this.dport = 0;
        this.icmpError = type === IcmpType.DestUnreachable || type === IcmpType.TimeExceeded || type === 12 || type === 4;
      }
      return true;
    }
    this.sport = 0;
    this.dport = 0;
    return true;
  }

  /** May this packet create a conntrack entry? TCP, UDP, and of ICMP only echo requests. */
  private opensFlow(proto: number): boolean {
    return proto !== PROTO_ICMP || this.icmpType === IcmpType.EchoRequest;
  }

  /** For an ICMP error: does the quoted header belong to a tracked flow? */
  private icmpRelated(buf: Uint8Array, now: number): boolean {
    const ip = this.ip;
    const q = ip.payloadOffset + 8;
    const avail = ip.payloadLen - 8;
    if (avail < 20) return false;
    const ihl = (buf[q]! & 0x0f) * 4;
    if (buf[q]! >> 4 !== 4 || ihl < 20 || avail < ihl + 8) return false;
    const proto = buf[q + 9]!;
    const src = ((buf[q + 12]! << 24) | (buf[q + 13]! << 16) | (buf[q + 14]! << 8) | buf[q + 15]!) >>> 0;
    const dst = ((buf[q + 16]! << 24) | (buf[q + 17]! << 16) | (buf[q + 18]! << 8) | buf[q + 19]!) >>> 0;
    const l4 = q + ihl;
    let sport = (buf[l4]! << 8) | buf[l4 + 1]!;
    let dport = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
    if (proto === PROTO_ICMP) {
      sport = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
      dport = 0;
    }
    return this.conntrack.related(src, dst, proto, sport, dport, now);
  }

  /**
   * Turn frame slot `i` (IPv4 packet at ipOff) into an ICMP error addressed to
   * the packet's source, written in place. Returns the IPv4 length, or 0 when
   * rate-limited or when the offending packet is itself an ICMP error (RFC 1122
   * 3.2.2: never answer an ICMP error with one).
   */
  private icmpInPlace(buf: Uint8Array, ipOff: number, type: number, code: number, mtu: number, from: number, now: number): number {
    const ip = this.ip;
    if (this.icmpError) return 0;
    if (ip.isFragment && ip.fragOffset !== 0) return 0;
    if (!this.takeIcmpToken(now)) {
      this.counters.stats[Stat.IcmpRateLimited]!++;
      return 0;
    }
    const to = ip.srcAddr;
    const quoteLen = Math.min(ip.totalLen, ip.headerLen + 8);
    const n = writeIcmpError(buf, ipOff, type, code, mtu, from, to, buf, ipOff, quoteLen, 64);
    this.counters.stats[Stat.IcmpSent]!++;
    return n;
  }

  // ---------------------------------------------------------------- egress

  /**
   * Frames a local container sent (all from TAP `portIndex`). For each frame i
   * sets batch.action[i] and the output fields.
   */
  egress(batch: FrameBatch, portIndex: number, now: number): void {
    const port = this.ports[portIndex];
    const stats = this.counters.stats;
    for (let i = 0; i < batch.count; i++) {
      const off = batch.inOff(i);
      const len = batch.len[i]!;
      stats[Stat.EgressPackets]!++;
      stats[Stat.EgressBytes]! += len;
      if (port === undefined) {
        this.dropFrame(batch, i, Drop.PortGone);
        continue;
      }
      port.packets[0]!++;
      port.packets[1]! += len;
      this.egressOne(batch, i, off, len, port, now);
    }
  }

  private dropFrame(batch: FrameBatch, i: number, reason: Drop): void {
    this.counters.drop(reason);
    batch.action[i] = Action.Drop;
    batch.outTarget[i] = reason;
    batch.outLen[i] = 0;
    if (this.tracer !== null) this.tracer.step('drop', { reason });
  }

  private egressOne(batch: FrameBatch, i: number, off: number, len: number, port: Port, now: number): void {
    const buf = batch.slab;
    const tr = this.tracer;
    if (len < ETH) return this.dropFrame(batch, i, Drop.Truncated);
    const etype = (buf[off + 12]! << 8) | buf[off + 13]!;
    if (etype !== ETHERTYPE_IPV4) return this.dropFrame(batch, i, etype === ETHERTYPE_ARP ? Drop.Arp : Drop.NotIpv4);
    const ip = this.ip.wrap(buf, off + ETH, len - ETH);
    if (ip.check() !== 0) return this.dropFrame(batch, i, Drop.BadIpHeader);
    if (!ip.verifyChecksum()) return this.dropFrame(batch, i, Drop.BadIpChecksum);
    const src = ip.srcAddr;
    const dst = ip.dstAddr;
    if (tr !== null) tr.step('source', { container: port.handle, app: port.app, ip: src, tag: port.tag });
    if (src !== port.ip) return this.dropFrame(batch, i, Drop.SpoofedSource);
    if (ip.isFragment) return this.dropFrame(batch, i, Drop.Fragment);
    if (!this.readL4(buf)) return this.dropFrame(batch, i, Drop.BadL4Header);
    const proto = ip.protocol;
    // Trim Ethernet padding: the kernel forwards the IP datagram, not the pad.
    const frameLen = ETH + ip.totalLen;
    const local = this.portByIp.get(dst);
    if (local === undefined && (dst === this.vtepIp || dst === GATEWAY_IP)) return this.dropFrame(batch, i, Drop.ToCell);
    let route: RouteEntry | undefined;
    if (local === undefined) {
      route = this.routes.lookup(dst);
      if (tr !== null) tr.step('route', { dst, route: route ?? null });
      if (route === undefined || route.via === 0) {
        const n = this.icmpInPlace(buf, off + ETH, IcmpType.DestUnreachable, IcmpCode.NetUnreachable, 0, GATEWAY_IP, now);
        if (n === 0) return this.dropFrame(batch, i, Drop.NoRoute);
        this.counters.drop(Drop.NoRoute);
        return this.replyToPort(batch, i, off, n, port);
      }
    } else if (tr !== null) {
      tr.step('route', { dst, route: this.routes.lookup(dst) ?? null, local: local.handle });
    }
    if (ip.ttl <= 1) {
      const n = this.icmpInPlace(buf, off + ETH, IcmpType.TimeExceeded, IcmpCode.TtlExceeded, 0, GATEWAY_IP, now);
      if (n === 0) return this.dropFrame(batch, i, Drop.TtlExceeded);
      this.counters.drop(Drop.TtlExceeded);
      return this.replyToPort(batch, i, off, n, port);
    }
    if (ip.totalLen > this.innerMtu) {
      if (ip.dontFrag) {
        const n = this.icmpInPlace(buf, off + ETH, IcmpType.DestUnreachable, IcmpCode.FragNeeded, this.innerMtu, GATEWAY_IP, now);
        if (n === 0) return this.dropFrame(batch, i, Drop.TooBig);
        this.counters.drop(Drop.TooBig);
        return this.replyToPort(batch, i, off, n, port);
      }
      return this.dropFrame(batch, i, Drop.TooBig);
    }

    if (local !== undefined) {
      // Same cell: the packet never touches the wire, but the destination's
      // policy applies exactly as for a packet from another cell.
      const v = this.admit(buf, local, port.tag, now, true);
      if (v === Verdict.Unrelated) return this.dropFrame(batch, i, Drop.UnrelatedIcmpError);
      if (v === Verdict.Deny) {
        // The kernel answers a same-cell reject from the host side of the veth: 169.254.0.1.
        const n = this.icmpInPlace(buf, off + ETH, IcmpType.DestUnreachable, IcmpCode.PortUnreachable, 0, GATEWAY_IP, now);
        if (n === 0) return this.dropFrame(batch, i, Drop.PolicyDenied);
        this.counters.drop(Drop.PolicyDenied);
        return this.replyToPort(batch, i, off, n, port);
      }
      ip.decrementTtl();
      writeMacFromIp(buf, off, 0xeeee, dst);
      writeMacFromIp(buf, off + 6, 0xaaaa, dst);
      this.counters.stats[Stat.DeliveredLocal]!++;
      local.packets[2]!++;
      local.packets[3]! += frameLen;
      batch.action[i] = Action.Tap;
      batch.outOff[i] = off;
      batch.outLen[i] = frameLen;
      batch.outTarget[i] = local.index;
      if (tr !== null) tr.step('deliver', { container: local.handle, app: local.app, ttl: ip.ttl });
      return;
    }

    // Remote: neighbor → FDB → encapsulate.
    const via = route!.via;
    const neigh = this.neighbors.get(via);
    if (tr !== null) tr.step('neighbor', { ip: via, entry: neigh ?? null });
    if (neigh === undefined) return this.dropFrame(batch, i, Drop.NoNeighbor);
    const fdb = this.fdb.getByKey(macKey(neigh.mac, 0));
    if (tr !== null) tr.step('fdb', { mac: neigh.mac, entry: fdb ?? null });
    if (fdb === undefined) return this.dropFrame(batch, i, Drop.NoFdb);
    // Track the flow so the reply is let in on the way back (ESTABLISHED).
    // ICMP errors are never tracked themselves (they are RELATED to a flow), and
    // of the rest of ICMP only an echo request opens an entry, as in the kernel.
    if (!this.icmpError) this.conntrack.process(src, dst, proto, this.sport, this.dport, this.tcpFlags, now, !this.dry && this.opensFlow(proto));
    ip.decrementTtl();
    buf.set(neigh.mac, off);
    buf.set(this.vtepMac, off + 6);
    const sp = sourcePortFor(flowHash(src, dst, proto, this.sport, this.dport), this.cfg.srcPortMin, this.cfg.srcPortMax);
    this.ident = (this.ident + 1) & 0xffff;
    const outer = writeOuterHeaders(buf, off, frameLen, this.cfg.underlayIp, fdb.dst, this.ident, sp, this.cfg.vxlanPort, this.cfg.vni, port.tag);
    this.counters.stats[Stat.Encapsulated]!++;
    batch.action[i] = Action.Underlay;
    batch.outOff[i] = outer;
    batch.outLen[i] = frameLen + OUTER_LEN;
    batch.outTarget[i] = fdb.dst;
    if (tr !== null) {
      tr.step('encapsulate', {
        vni: this.cfg.vni,
        groupPolicyId: port.tag,
        flags: port.tag !== 0 ? VXLAN_FLAG_G | VXLAN_FLAG_I : VXLAN_FLAG_I,
        srcPort: sp,
        dstPort: this.cfg.vxlanPort,
        underlaySrc: this.cfg.underlayIp,
        underlayDst: fdb.dst,
        innerSrcMac: this.vtepMac,
        innerDstMac: neigh.mac,
        ttl: ip.ttl,
      });
    }
  }

  /** An ICMP error we generated at ipOff goes back out of the TAP it came from. */
  private replyToPort(batch: FrameBatch, i: number, off: number, ipLen: number, port: Port): void {
    const buf = batch.slab;
    writeMacFromIp(buf, off, 0xeeee, port.ip);
    writeMacFromIp(buf, off + 6, 0xaaaa, port.ip);
    buf[off + 12] = 0x08;
    buf[off + 13] = 0x00;
    batch.action[i] = Action.Tap;
    batch.outOff[i] = off;
    batch.outLen[i] = ETH + ipLen;
    batch.outTarget[i] = port.index;
    if (this.tracer !== null) this.tracer.step('icmp-error', { to: port.handle });
  }

  /**
   * The ingress decision for a packet (in this.ip, L4 fields read) to local
   * container `dstPort`, carrying Group Policy ID `tag` (0 = none):
   * tracked connection, related ICMP error, or a policy rule; else deny.
   */
  private admit(buf: Uint8Array, dstPort: Port, tag: number, now: number, sameCell: boolean): Verdict {
    const ip = this.ip;
    const tr = this.tracer;
    const proto = ip.protocol;
    if (this.icmpError) {
      const ok = this.icmpRelated(buf, now);
      if (tr !== null) tr.step('policy', { verdict: ok ? 'allow' : 'deny', why: ok ? 'related ICMP error of a tracked connection (RELATED)' : 'ICMP error not related to any tracked connection' });
      if (!ok) return Verdict.Unrelated;
      this.counters.stats[Stat.ConntrackAllowed]!++;
      return Verdict.Allow;
    }
    const st = this.conntrack.process(ip.srcAddr, ip.dstAddr, proto, this.sport, this.dport, this.tcpFlags, now, false);
    if (st !== CtState.New) {
      this.counters.stats[Stat.ConntrackAllowed]!++;
      if (tr !== null) tr.step('policy', { verdict: 'allow', why: st === CtState.Reply ? 'reply of a tracked connection (ESTABLISHED)' : 'tracked connection (ESTABLISHED)' });
      return Verdict.Allow;
    }
    const rule = tag === 0 || proto === PROTO_ICMP ? -1 : this.policy.match(ip.dstAddr, proto, this.dport, tag);
    if (rule < 0) {
      if (tr !== null) tr.step('policy', { verdict: 'deny', why: tag === 0 ? 'no Group Policy ID on the packet and no tracked connection' : 'no policy allows this tag to this container, protocol and port', tag, container: dstPort.handle, app: dstPort.app });
      return Verdict.Deny;
    }
    this.ruleHits[rule]!++;
    this.counters.stats[Stat.PolicyAllowed]!++;
    // Same-cell packets were tracked at egress already only for remote
    // destinations; here the allowed packet opens the connection.
    if (!this.dry) this.conntrack.process(ip.srcAddr, ip.dstAddr, proto, this.sport, this.dport, this.tcpFlags, now, true);
    if (tr !== null) tr.step('policy', { verdict: 'allow', why: 'policy', rule: this.policy.plan.accepts[rule], sameCell });
    return Verdict.Allow;
  }

  // ---------------------------------------------------------------- ingress

  /** VXLAN datagrams received on the underlay (payload = VXLAN header first; srcIp set). */
  ingress(batch: FrameBatch, now: number): void {
    const stats = this.counters.stats;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.len[i]!;
      stats[Stat.IngressPackets]!++;
      stats[Stat.IngressBytes]! += len;
      this.ingressOne(batch, i, batch.inOff(i), len, batch.srcIp[i]! >>> 0, now);
    }
  }

  private ingressOne(batch: FrameBatch, i: number, off: number, len: number, from: number, now: number): void {
    const buf = batch.slab;
    const tr = this.tracer;
    if (len < 8) return this.dropFrame(batch, i, Drop.BadVxlan);
    const flags = buf[off]!;
    // I must be set; of the other bits only G is understood (draft-smith-vxlan-group-policy).
    // Like the kernel, refuse packets with flags we do not understand.
    if ((flags & VXLAN_FLAG_I) === 0 || (flags & ~(VXLAN_FLAG_I | VXLAN_FLAG_G)) !== 0) return this.dropFrame(batch, i, Drop.BadVxlanFlags);
    const vni = (buf[off + 4]! << 16) | (buf[off + 5]! << 8) | buf[off + 6]!;
    if (vni !== this.cfg.vni) return this.dropFrame(batch, i, Drop.WrongVni);
    const gpid = (flags & VXLAN_FLAG_G) !== 0 ? (buf[off + 2]! << 8) | buf[off + 3]! : 0;
    if (tr !== null) tr.step('decapsulate', { from, vni, flags, groupPolicyId: gpid });
    // VXLAN has no authentication: only lease holders may send to us.
    const lease = this.leaseByUnderlay.get(from);
    if (lease === undefined || from === this.cfg.underlayIp) return this.dropFrame(batch, i, Drop.UnknownUnderlaySource);
    const eth = off + 8;
    const elen = len - 8;
    if (elen < ETH) return this.dropFrame(batch, i, Drop.Truncated);
    for (let k = 0; k < 6; k++) {
      if (buf[eth + k] !== this.vtepMac[k]) return this.dropFrame(batch, i, Drop.WrongInnerMac);
    }
    const etype = (buf[eth + 12]! << 8) | buf[eth + 13]!;
    if (etype !== ETHERTYPE_IPV4) return this.dropFrame(batch, i, etype === ETHERTYPE_ARP ? Drop.Arp : Drop.NotIpv4);
    const ip = this.ip.wrap(buf, eth + ETH, elen - ETH);
    if (ip.check() !== 0) return this.dropFrame(batch, i, Drop.BadIpHeader);
    if (!ip.verifyChecksum()) return this.dropFrame(batch, i, Drop.BadIpChecksum);
    const src = ip.srcAddr;
    const dst = ip.dstAddr;
    if (((src & prefixMask(lease.prefixLen)) >>> 0) !== lease.subnet) return this.dropFrame(batch, i, Drop.SpoofedInnerSource);
    if (ip.isFragment) return this.dropFrame(batch, i, Drop.Fragment);
    if (!this.readL4(buf)) return this.dropFrame(batch, i, Drop.BadL4Header);
    const port = this.portByIp.get(dst);
    if (tr !== null) tr.step('lookup-container', { dst, container: port ? port.handle : null, app: port ? port.app : null });
    if (port === undefined) return this.dropFrame(batch, i, dst === this.vtepIp ? Drop.ToCell : Drop.NoContainer);
    const frameLen = ETH + ip.totalLen;
    if (ip.ttl <= 1) {
      const n = this.icmpInPlace(buf, eth + ETH, IcmpType.TimeExceeded, IcmpCode.TtlExceeded, 0, this.vtepIp, now);
      if (n === 0) return this.dropFrame(batch, i, Drop.TtlExceeded);
      this.counters.drop(Drop.TtlExceeded);
      return this.replyToUnderlay(batch, i, eth, n, lease, from);
    }
    const v = this.admit(buf, port, gpid, now, false);
    if (v === Verdict.Unrelated) return this.dropFrame(batch, i, Drop.UnrelatedIcmpError);
    if (v === Verdict.Deny) {
      const n = this.icmpInPlace(buf, eth + ETH, IcmpType.DestUnreachable, IcmpCode.PortUnreachable, 0, this.vtepIp, now);
      if (n === 0) return this.dropFrame(batch, i, Drop.PolicyDenied);
      this.counters.drop(Drop.PolicyDenied);
      return this.replyToUnderlay(batch, i, eth, n, lease, from);
    }
    // A kernel peer on this host (veth, virtio) may have left the TCP/UDP
    // checksum for the NIC to finish; the container's stack would drop it.
    if (completePartialChecksum(buf, ip.payloadOffset, ip.payloadLen, ip.protocol, src, dst)) this.counters.stats[Stat.ChecksumCompleted]!++;
    ip.decrementTtl();
    writeMacFromIp(buf, eth, 0xeeee, dst);
    writeMacFromIp(buf, eth + 6, 0xaaaa, dst);
    this.counters.stats[Stat.Decapsulated]!++;
    this.counters.stats[Stat.DeliveredRemote]!++;
    port.packets[2]!++;
    port.packets[3]! += frameLen;
    batch.action[i] = Action.Tap;
    batch.outOff[i] = eth;
    batch.outLen[i] = frameLen;
    batch.outTarget[i] = port.index;
    if (tr !== null) tr.step('deliver', { container: port.handle, app: port.app, ttl: ip.ttl });
  }

  /** An ICMP error we generated (IPv4 at eth+14) goes back, encapsulated, to the cell it came from. */
  private replyToUnderlay(batch: FrameBatch, i: number, eth: number, ipLen: number, lease: LeaseInfo, to: number): void {
    const buf = batch.slab;
    writeMacFromIp(buf, eth, 0xeeee, lease.subnet);
    buf.set(this.vtepMac, eth + 6);
    buf[eth + 12] = 0x08;
    buf[eth + 13] = 0x00;
    const frameLen = ETH + ipLen;
    this.ident = (this.ident + 1) & 0xffff;
    const ipv4 = this.ip;
    const sp = sourcePortFor(flowHash(ipv4.srcAddr, ipv4.dstAddr, PROTO_ICMP, 0, 0), this.cfg.srcPortMin, this.cfg.srcPortMax);
    const outer = writeOuterHeaders(buf, eth, frameLen, this.cfg.underlayIp, to, this.ident, sp, this.cfg.vxlanPort, this.cfg.vni, 0);
    batch.action[i] = Action.Underlay;
    batch.outOff[i] = outer;
    batch.outLen[i] = frameLen + OUTER_LEN;
    batch.outTarget[i] = to;
    if (this.tracer !== null) this.tracer.step('icmp-error', { to });
  }

  // ----------------------------------------------------------------- trace

  /**
   * Run one frame through the real egress (or ingress) code with a tracer
   * attached, without side effects: no conntrack entry is created, counters
   * and ICMP tokens are not spent. Returns the verdict and the output bytes.
   */
  trace(kind: 'egress' | 'ingress', bytes: Uint8Array, opts: { port?: number; srcIp?: number; now: number }, tracer: Tracer): TraceResult {
    const batch = new FrameBatch(1, Math.max(2048, bytes.length + DEFAULT_HEADROOM + 64));
    batch.push(bytes, opts.srcIp ?? 0, 0);
    const saved = { counters: this.counters, tokens: this.icmpTokens, last: this.icmpLast, ident: this.ident };
    this.counters = new Counters();
    this.tracer = tracer;
    this.dry = true;
    try {
      if (kind === 'egress') this.egress(batch, opts.port ?? -1, opts.now);
      else this.ingress(batch, opts.now);
    } finally {
      this.tracer = null;
      this.dry = false;
      this.counters = saved.counters;
      this.icmpTokens = saved.tokens;
      this.icmpLast = saved.last;
      this.ident = saved.ident;
    }
    return {
      action: batch.action[0] === Action.Underlay ? 'underlay' : batch.action[0] === Action.Tap ? 'tap' : 'drop',
      target: batch.outTarget[0]!,
      output: batch.action[0] === Action.Drop ? new Uint8Array(0) : batch.output(0),
    };
  }

  /** One coarse tick for every expiry (conntrack). */
  tick(now: number): void {
    this.conntrack.tick(now);
  }
}
