// Ingress: VXLAN datagrams received on UDP 4789 (payload = VXLAN header
// first, the sender's underlay address in batch.srcIp) → checks (flags the
// kernel accepts, VNI, a lease-holding sender, the inner frame addressed to
// our VTEP, an inner source inside the sender's lease) → the destination
// container's policy (admit) → delivery to its TAP, or an ICMP error
// encapsulated back to the sending cell.
//
// admit() is also the same-cell half of egress: a packet between two
// containers of one cell meets the destination's policy exactly as one from
// another cell does.
import { Wire } from '../wire/offsets.js';
import { readU16, readU32, writeU16 } from '../wire/bytes.js';
import { completePartialChecksum, updateChecksum16 } from '../wire/checksum.js';
import { IcmpCode, IcmpType, readQuotedFlow, type QuotedFlow } from '../wire/icmp.js';
import { Ipv4View } from '../wire/ipv4.js';
import { vxlanFlagsAcceptable, vxlanGpidAt, vxlanVniAt } from '../wire/vxlan.js';
import { CtState } from '../policy/conntrack.js';
import { prefixMask, writeMacFromIp } from '../util/ip.js';
import { Action, type FrameBatch } from './batch.js';
import { Drop, Stat } from './counters.js';
import type { Defrag } from './defrag.js';
import { EcnDecap, ecnDecapsulateIpv4 } from './ecn.js';
import { OUTER_LEN, writeOuterHeaders } from './encap.js';
import { flowHash, sourcePortFor } from './flowhash.js';
import { icmpInPlace } from './icmp.js';
import { L4, NO_DROP, wrapIpv4 } from './l4.js';
import type { ControlState, LeaseInfo, Port, Run } from './state.js';

export const enum Verdict {
  Deny = 0,
  Allow = 1,
  /** An ICMP error that belongs to no tracked flow: dropped silently (never answer an error with one). */
  Unrelated = 2,
}

const quoted: QuotedFlow = { src: 0, dst: 0, protocol: 0, sport: 0, dport: 0 };

/**
 * The ingress decision for the packet in `ip` (L4 fields in `l4`) to local
 * container `dst`, carrying Group Policy ID `tag` (0 = none): a related ICMP
 * error, a tracked connection, or a policy rule; else deny.
 */
export function admit(state: ControlState, buf: Uint8Array, ip: Ipv4View, l4: L4, dst: Port, tag: number, now: number, sameCell: boolean, run: Run): Verdict {
  const proto = ip.protocol;
  if (l4.icmpError) {
    const ok = readQuotedFlow(buf, ip.payloadOffset, ip.payloadLen, quoted) && state.conntrack.related(quoted.src, quoted.dst, quoted.protocol, quoted.sport, quoted.dport, now);
    if (run.tracing) run.steps.policyTracked(ok ? 'related' : 'unrelated');
    if (!ok) return Verdict.Unrelated;
    run.counters.stats[Stat.ConntrackAllowed]!++;
    return Verdict.Allow;
  }
  const st = state.conntrack.process(ip.srcAddr, ip.dstAddr, proto, l4.sport, l4.dport, l4.tcpFlags, now, false, 0, l4.tcpSeq, l4.tcpAck, l4.tcpLen);
  if (st === CtState.Reply || st === CtState.Established) {
    run.counters.stats[Stat.ConntrackAllowed]!++;
    if (run.tracing) run.steps.policyTracked(st === CtState.Reply ? 'reply' : 'established');
    return Verdict.Allow;
  }
  // INVALID (conntrack.ts): no connection, as for a new packet — silk's
  // accept rules match the mark and port whatever the state, and its
  // `--state RELATED,ESTABLISHED` rule does not match — but nothing is tracked.
  if (st === CtState.Invalid) {
    run.counters.stats[Stat.ConntrackInvalid]!++;
    if (run.tracing) run.steps.conntrackInvalid(l4.tcpFlags);
  }
  const rule = tag === 0 || proto === Wire.IPPROTO_ICMP ? -1 : state.policy.match(ip.dstAddr, proto, l4.dport, tag);
  if (rule < 0) {
    if (run.tracing) run.steps.policyDenied(tag === 0 ? 'no-tag' : 'no-rule', tag, dst);
    return Verdict.Deny;
  }
  run.counters.stats[Stat.PolicyAllowed]!++;
  if (!run.dry) {
    state.ruleHits[rule]!++;
    // Same-cell packets are not tracked at egress (only remote ones are);
    // here the allowed packet opens the connection (unless it is INVALID).
    if (st === CtState.New) state.conntrack.process(ip.srcAddr, ip.dstAddr, proto, l4.sport, l4.dport, l4.tcpFlags, now, true, 0, l4.tcpSeq, l4.tcpAck, l4.tcpLen);
  }
  if (run.tracing) run.steps.policyRule(state.policy.plan.accepts[rule]!, sameCell);
  return Verdict.Allow;
}

/**
 * Deliver the packet in `ip` (Ethernet header at `eth`, `frameLen` bytes) to
 * container `port`: TTL - 1 (this cell routed it), the container's MACs
 * (dst ee:ee:<ip>, src aa:aa:<ip>), counted, written to its TAP.
 */
export function deliverToPort(batch: FrameBatch, i: number, eth: number, ip: Ipv4View, port: Port, frameLen: number, run: Run): void {
  const buf = batch.slab;
  ip.decrementTtl();
  writeMacFromIp(buf, eth, 0xeeee, port.ip);
  writeMacFromIp(buf, eth + Wire.ETH_SRC, 0xaaaa, port.ip);
  if (!run.dry) {
    port.packets[2]!++;
    port.packets[3]! += frameLen;
  }
  batch.verdict(i, Action.Tap, eth, frameLen, port.index);
  if (run.tracing) run.steps.deliver(port, ip.ttl);
}

/** Inner headers a whole run compares (VXLAN 8 + Ethernet 14 + IPv4 20 + TCP 20). */
const RUN_HDR = Wire.VXLAN_HEADER_LEN + Wire.ETH_HEADER_LEN + Wire.IPV4_HEADER_LEN + Wire.TCP_HEADER_LEN;
/** Where a run's headers sit from the start of a datagram (IPv4 without options). */
const enum R {
  IP = Wire.VXLAN_HEADER_LEN + Wire.ETH_HEADER_LEN,
  /** The IPv4 header's first 16-bit word. */
  IP_WORD = R.IP / 2,
  TCP = R.IP + Wire.IPV4_HEADER_LEN,
  TCP_DOFF = R.TCP + Wire.TCP_DATA_OFF,
  TCP_FLAGS = R.TCP + Wire.TCP_FLAGS,
}
/** TCP flags a run's segments may carry: ACK, with or without PSH (conntrack's K_ACK either way). */
const RUN_FLAGS_ACK = 0x10;
const RUN_FLAGS_PSH = 0x08;

export class Ingress {
  private readonly ip = new Ipv4View();
  private readonly l4 = new L4();
  /**
   * Whole runs (see runLength): consecutive datagrams of one settled TCP flow from one peer decided
   * once. Off (false) with SILKWORM_WHOLE_RX=0 (cfg.wholeRx).
   */
  private readonly wholeRx: boolean;
  /** Runs decided whole, and the datagrams in them (not Counters: the two paths count alike there). */
  readonly runCounters = { runs: 0, segments: 0 };
  /** The last runLength's TCP payload bytes. */
  private runTotal = 0;
  /** While the lead of a run is decided: the run's total TCP payload bytes; -1 otherwise. */
  private wholeLen = -1;
  /** Set by toContainer when the lead's flow was settled in conntrack before its decision (ConnTrack.settled). */
  private wholeSettled = false;
  /** The container the lead was delivered to. */
  private wholePort: Port | undefined = undefined;
  /** The outer DS byte of the datagram in hand. */
  private tos = 0;

  constructor(
    private readonly state: ControlState,
    private readonly frag: Defrag,
  ) {
    this.wholeRx = state.cfg.wholeRx !== false;
  }

  /** VXLAN datagrams received on the underlay (payload = VXLAN header first; srcIp set). */
  run(batch: FrameBatch, now: number, run: Run): void {
    const stats = run.counters.stats;
    const whole = this.wholeRx && !run.dry && !run.tracing;
    for (let i = 0; i < batch.count; i++) {
      if (whole && i + 1 < batch.count) {
        const n = this.runLength(batch, i);
        if (n > 1) {
          // Decided whole: on after the run. If not, the lead is done and the followers go one by one.
          if (this.whole(batch, i, n, now, run)) i += n - 1;
          continue;
        }
      }
      const len = batch.len[i]!;
      stats[Stat.IngressPackets]!++;
      stats[Stat.IngressBytes]! += len;
      this.tos = batch.tos[i]!;
      this.one(batch, i, batch.inOff(i), len, batch.srcIp[i]! >>> 0, now, run);
      if (this.frag.split) this.frag.splitSlot(batch, i, run);
    }
  }

  /**
   * How many datagrams from slot i on (at least 1) form a run the pipeline may decide once: each is a
   * plain ACK segment (ACK, or ACK|PSH; no SYN, FIN, RST, URG, ECE, CWR) of one inner TCP flow from
   * one underlay peer, with the same outer DS byte (no ECN bits: RFC 6040 decapsulation stays per
   * datagram), the same 8 VXLAN bytes, 14 inner Ethernet bytes, IPv4 header (IHL 5, not a fragment,
   * same DS byte, flags, TTL, addresses) and TCP ports, acknowledgment number and data offset; only
   * the per-segment fields differ (total length, identification, header checksum, sequence number,
   * window, TCP checksum, options' values, payload). Every follower's IPv4 header passes the checks
   * the per-segment path makes (wrapIpv4), its TCP header fits, and it fits the container's MTU —
   * so the per-segment path would take every follower exactly where it takes the lead. The lead's own
   * Ethernet type and checks are left to the per-segment path it takes first (whole() gives up when
   * the lead is not delivered). Slots at odd offsets never form runs (headers are compared as words).
   * Reads only.
   * Sets runTotal to the run's TCP payload bytes.
   */
  private runLength(batch: FrameBatch, i: number): number {
    const buf = batch.slab;
    const w = batch.w16;
    const lenI = batch.len[i]!;
    const tos = batch.tos[i]!;
    const a = batch.inOff(i);
    // Headers are compared as 16-bit words (FrameBatch.w16), so every slot must start on an even byte.
    if (tos & 3 || lenI < RUN_HDR || (a & 1) !== 0 || (batch.slotSize & 1) !== 0) return 1;
    const ipA = a + R.IP;
    // The lead: IPv4 without options, TCP, not a fragment, TTL over 1 (what the followers copy).
    if (buf[ipA] !== Wire.IPV4_VER_IHL_NO_OPTIONS || buf[ipA + Wire.IPV4_PROTOCOL] !== Wire.IPPROTO_TCP) return 1;
    if ((buf[ipA + Wire.IPV4_FLAGS_FRAG]! & ~(Wire.IPV4_FLAG_DF >>> 8)) !== 0 || buf[ipA + Wire.IPV4_FLAGS_FRAG + 1] !== 0) return 1;
    if (buf[ipA + Wire.IPV4_TTL]! <= 1) return 1;
    if ((buf[a + R.TCP_DOFF]! >>> 4) < 5) return 1;
    const from = batch.srcIp[i]!;
    const mtu = this.state.innerMtu;
    const wa = a >>> 1;
    const slotWords = batch.slotSize >>> 1;
    let total = 0;
    let n = 0;
    for (let s = i; s < batch.count; s++) {
      const len = batch.len[s]!;
      const b = a + (s - i) * batch.slotSize;
      const wb = wa + (s - i) * slotWords;
      if (s > i) {
        if (batch.srcIp[s] !== from || batch.tos[s] !== tos || len < RUN_HDR) break;
        // VXLAN 8 + Ethernet 14 + IPv4 bytes 0-1 (version/IHL, DS): words 0-11.
        let k = 0;
        while (k < 12 && w[wa + k] === w[wb + k]) k++;
        if (k < 12) break;
        // IPv4 flags/fragment, TTL, protocol (bytes 6-9: words 14-15), addresses (12-19: words 17-20),
        // TCP ports (words 21-22), acknowledgment (words 25-26), data offset.
        if (w[wa + 14] !== w[wb + 14] || w[wa + 15] !== w[wb + 15]) break;
        if (w[wa + 17] !== w[wb + 17] || w[wa + 18] !== w[wb + 18] || w[wa + 19] !== w[wb + 19] || w[wa + 20] !== w[wb + 20]) break;
        if (w[wa + 21] !== w[wb + 21] || w[wa + 22] !== w[wb + 22] || w[wa + 25] !== w[wb + 25] || w[wa + 26] !== w[wb + 26]) break;
        if (buf[a + R.TCP_DOFF] !== buf[b + R.TCP_DOFF]) break;
      }
      const fl = buf[b + R.TCP_FLAGS]!;
      if ((fl & ~RUN_FLAGS_PSH) !== RUN_FLAGS_ACK) break;
      // What wrapIpv4 checks of a follower whose first 24 bytes equal the lead's (IPv4, IHL 5): the
      // total length within the datagram, then the header checksum (10 words folding to 0xffff).
      const ipLen = (buf[b + R.IP + Wire.IPV4_TOTAL_LEN]! << 8) | buf[b + R.IP + Wire.IPV4_TOTAL_LEN + 1]!;
      if (ipLen < Wire.IPV4_HEADER_LEN || ipLen > len - R.IP) break;
      let sum = 0;
      for (let k = R.IP_WORD; k < R.IP_WORD + 10; k++) sum += w[wb + k]!;
      sum = (sum & 0xffff) + (sum >>> 16);
      sum = (sum & 0xffff) + (sum >>> 16);
      if (sum !== 0xffff) break;
      const doff = (buf[b + R.TCP_DOFF]! >>> 4) * 4;
      const payloadLen = ipLen - Wire.IPV4_HEADER_LEN;
      if (doff > payloadLen || ipLen > mtu) break;
      total += payloadLen - doff;
      n++;
    }
    this.runTotal = total;
    return n;
  }

  /**
   * The run of n datagrams at [i, i+n) (runLength): the lead takes the per-segment path; when its flow
   * was settled in conntrack before (ConnTrack.settled: one process() call, made with the run's total
   * payload, leaves the table as n would) and it was delivered, every follower is delivered to the same
   * container as the per-segment path would deliver it (counted as it counts, TTL and MACs rewritten,
   * a partial checksum completed) without its checks, lookups and conntrack call. Returns false when
   * the lead went another way: the followers then take the per-segment path.
   */
  private whole(batch: FrameBatch, i: number, n: number, now: number, run: Run): boolean {
    const stats = run.counters.stats;
    const len = batch.len[i]!;
    stats[Stat.IngressPackets]!++;
    stats[Stat.IngressBytes]! += len;
    this.tos = batch.tos[i]!;
    this.wholeSettled = false;
    this.wholePort = undefined;
    this.wholeLen = this.runTotal;
    this.one(batch, i, batch.inOff(i), len, batch.srcIp[i]! >>> 0, now, run);
    this.wholeLen = -1;
    if (this.frag.split) this.frag.splitSlot(batch, i, run);
    const port = this.wholePort as Port | undefined; // set by one() (TypeScript narrowed it to undefined above)
    if (!this.wholeSettled || port === undefined || batch.action[i] !== Action.Tap) return false;
    this.runCounters.runs++;
    this.runCounters.segments += n;
    // What deliverToPort did to the lead, done to each follower: TTL - 1 (the same old and new TTL for
    // all, so the same checksum update), the lead's rewritten container MACs, counted, to the TAP.
    const buf = batch.slab;
    const w = batch.w16;
    const a = batch.inOff(i);
    const wa = a >>> 1;
    const src = readU32(buf, a + R.IP + Wire.IPV4_SRC);
    const dst = readU32(buf, a + R.IP + Wire.IPV4_DST);
    const ttl = buf[a + R.IP + Wire.IPV4_TTL]!;
    const oldWord = ((ttl + 1) << 8) | Wire.IPPROTO_TCP;
    const newWord = (ttl << 8) | Wire.IPPROTO_TCP;
    const counts = port.packets;
    for (let s = i + 1; s < i + n; s++) {
      const l = batch.len[s]!;
      stats[Stat.IngressPackets]!++;
      stats[Stat.IngressBytes]! += l;
      const b = a + (s - i) * batch.slotSize;
      const ipOff = b + R.IP;
      const ipLen = (buf[ipOff + Wire.IPV4_TOTAL_LEN]! << 8) | buf[ipOff + Wire.IPV4_TOTAL_LEN + 1]!;
      stats[Stat.ConntrackAllowed]!++;
      if (completePartialChecksum(buf, ipOff + Wire.IPV4_HEADER_LEN, ipLen - Wire.IPV4_HEADER_LEN, Wire.IPPROTO_TCP, src, dst)) stats[Stat.ChecksumCompleted]!++;
      stats[Stat.Decapsulated]!++;
      stats[Stat.DeliveredRemote]!++;
      buf[ipOff + Wire.IPV4_TTL] = ttl;
      writeU16(buf, ipOff + Wire.IPV4_CHECKSUM, updateChecksum16(readU16(buf, ipOff + Wire.IPV4_CHECKSUM), oldWord, newWord));
      // Ethernet destination and source: words 4-9 of the datagram.
      const wb = b >>> 1;
      for (let k = 4; k < 10; k++) w[wb + k] = w[wa + k]!;
      const frameLen = Wire.ETH_HEADER_LEN + ipLen;
      if (!run.dry) {
        counts[2]!++;
        counts[3]! += frameLen;
      }
      batch.verdict(s, Action.Tap, b + Wire.VXLAN_HEADER_LEN, frameLen, port.index);
    }
    return true;
  }

  private one(batch: FrameBatch, i: number, off: number, len: number, from: number, now: number, run: Run): void {
    const buf = batch.slab;
    const state = this.state;
    const cfg = state.cfg;
    if (len < Wire.VXLAN_HEADER_LEN) return run.drop(batch, i, Drop.BadVxlan);
    const flags = buf[off]!;
    // Like the kernel, refuse headers with flags it would not accept (wire/vxlan.ts).
    if (!vxlanFlagsAcceptable(flags)) return run.drop(batch, i, Drop.BadVxlanFlags);
    // vxlan_rcv drops a header whose reserved bits after the VNI are set
    // (`unparsed.vx_vni & ~VXLAN_VNI_MASK`): no extension silk enables uses them.
    if (buf[off + Wire.VXLAN_RESERVED] !== 0) return run.drop(batch, i, Drop.BadVxlanReserved);
    const vni = vxlanVniAt(buf, off);
    if (vni !== cfg.vni) return run.drop(batch, i, Drop.WrongVni);
    const gpid = vxlanGpidAt(buf, off);
    if (run.tracing) run.steps.decapsulate(from, vni, flags, gpid);
    // VXLAN has no authentication: only lease holders may send to us.
    const lease = state.leaseByUnderlay.get(from);
    if (lease === undefined || from === cfg.underlayIp) return run.drop(batch, i, Drop.UnknownUnderlaySource);
    const eth = off + Wire.VXLAN_HEADER_LEN;
    const elen = len - Wire.VXLAN_HEADER_LEN;
    if (elen < Wire.ETH_HEADER_LEN) return run.drop(batch, i, Drop.Truncated);
    const vtepMac = state.vtepMac;
    for (let k = 0; k < 6; k++) {
      if (buf[eth + k] !== vtepMac[k]) return run.drop(batch, i, Drop.WrongInnerMac);
    }
    const ip = this.ip;
    const bad = wrapIpv4(buf, eth, elen, ip);
    if (bad !== NO_DROP) return run.drop(batch, i, bad);
    if (this.tos & 3 && this.ecn(buf, eth)) return run.drop(batch, i, Drop.EcnCeOnNotEct);
    const src = ip.srcAddr;
    if (((src & prefixMask(lease.prefixLen)) >>> 0) !== lease.subnet) return run.drop(batch, i, Drop.SpoofedInnerSource);
    if (ip.isFragment) return this.fragment(batch, i, off, from, now, run);
    this.toContainer(batch, i, eth, lease, from, gpid, now, run);
  }

  /** The inner packet passed the tunnel's checks: its container, TTL, policy, delivery (a method of its own: see egress.ts). */
  private toContainer(batch: FrameBatch, i: number, eth: number, lease: LeaseInfo, from: number, gpid: number, now: number, run: Run): void {
    const buf = batch.slab;
    const state = this.state;
    const ip = this.ip;
    const ipOff = eth + Wire.ETH_HEADER_LEN;
    // By hand (Ipv4View's dstAddr): the getter is left as a real call here (see egress.ts one()).
    const dst = ((buf[ipOff + Wire.IPV4_DST]! << 24) | (buf[ipOff + Wire.IPV4_DST + 1]! << 16) | (buf[ipOff + Wire.IPV4_DST + 2]! << 8) | buf[ipOff + Wire.IPV4_DST + 3]!) >>> 0;
    const l4 = this.l4;
    if (!l4.read(buf, ip)) return run.drop(batch, i, Drop.BadL4Header);
    const port = state.portByIp.get(dst);
    if (run.tracing) run.steps.lookupContainer(dst, port);
    if (port === undefined) return run.drop(batch, i, dst === state.vtepIp ? Drop.ToCell : Drop.NoContainer);
    const frameLen = Wire.ETH_HEADER_LEN + ((buf[ipOff + Wire.IPV4_TOTAL_LEN]! << 8) | buf[ipOff + Wire.IPV4_TOTAL_LEN + 1]!);
    if (buf[ipOff + Wire.IPV4_TTL]! <= 1) {
      const n = icmpInPlace(buf, ipOff, ip, l4, IcmpType.TimeExceeded, IcmpCode.TtlExceeded, 0, state.vtepIp, now, run);
      if (n === 0) return run.drop(batch, i, Drop.TtlExceeded);
      run.counters.drop(Drop.TtlExceeded);
      return this.replyToUnderlay(batch, i, eth, n, lease, from, run);
    }
    const mtu = state.innerMtu;
    if (ip.totalLen > mtu && !this.cutLater(mtu)) {
      // ip_forward: DF set and larger than the container's link → Fragmentation Needed to the sender.
      const n = icmpInPlace(buf, ipOff, ip, l4, IcmpType.DestUnreachable, IcmpCode.FragNeeded, mtu, state.vtepIp, now, run);
      if (n === 0) return run.drop(batch, i, Drop.TooBig);
      run.counters.drop(Drop.TooBig);
      return this.replyToUnderlay(batch, i, eth, n, lease, from, run);
    }
    if (this.wholeLen >= 0 && ip.protocol === Wire.IPPROTO_TCP && state.conntrack.settled(ip.srcAddr, dst, l4.sport, l4.dport, now)) {
      // The lead of a whole run (runLength): one conntrack call for the run's payload.
      this.wholeSettled = true;
      this.wholePort = port;
      l4.tcpLen = this.wholeLen;
    }
    const v = admit(state, buf, ip, l4, port, gpid, now, false, run);
    if (v === Verdict.Unrelated) return run.drop(batch, i, Drop.UnrelatedIcmpError);
    if (v === Verdict.Deny) {
      const n = icmpInPlace(buf, ipOff, ip, l4, IcmpType.DestUnreachable, IcmpCode.PortUnreachable, 0, state.vtepIp, now, run);
      if (n === 0) return run.drop(batch, i, Drop.PolicyDenied);
      run.counters.drop(Drop.PolicyDenied);
      return this.replyToUnderlay(batch, i, eth, n, lease, from, run);
    }
    // A kernel peer on this host (veth, virtio) may have left the TCP/UDP
    // checksum for the NIC to finish; the container's stack would drop it.
    if (completePartialChecksum(buf, ip.payloadOffset, ip.payloadLen, ip.protocol, ip.srcAddr, dst)) run.counters.stats[Stat.ChecksumCompleted]!++;
    run.counters.stats[Stat.Decapsulated]!++;
    run.counters.stats[Stat.DeliveredRemote]!++;
    deliverToPort(batch, i, eth, ip, port, frameLen, run);
  }

  /**
   * RFC 6040 decapsulation, as vxlan_rcv → INET_ECN_decapsulate (ecn.ts):
   * the outer CE reaches an ECT inner packet (per fragment, before
   * reassembly, as in the kernel), outer ECT(1) turns inner ECT(0) into
   * ECT(1). True when the packet must be dropped: CE outside, Not-ECT inside.
   */
  private ecn(buf: Uint8Array, eth: number): boolean {
    const d = ecnDecapsulateIpv4(this.tos, buf, eth + Wire.ETH_HEADER_LEN);
    if (d === EcnDecap.DropCeOnNotEct) return true;
    // A reassembled datagram is decapsulated once, per fragment: never again.
    this.tos = 0;
    return false;
  }

  /** Over the MTU: sent on in fragments when they fit or DF is clear (as egress.ts cutLater). */
  private cutLater(mtu: number): boolean {
    if (this.frag.fitsCurrent(mtu)) return true;
    if (this.ip.dontFrag) return false;
    this.frag.split = true;
    return true;
  }

  /**
   * An inner IPv4 fragment: held until its datagram is whole; the datagram
   * then takes the ordinary path with the first fragment's VXLAN word (flags
   * and Group Policy ID: the kernel's reassembled skb keeps its head's mark).
   */
  private fragment(batch: FrameBatch, i: number, off: number, from: number, now: number, run: Run): void {
    const d = this.frag;
    const buf = batch.slab;
    const word = ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
    const q = d.offer(batch, i, off + Wire.VXLAN_HEADER_LEN + Wire.ETH_HEADER_LEN, now, run, word);
    if (q < 0) return;
    const rb = d.reasm;
    const len = d.load(q, buf, off, Wire.VXLAN_HEADER_LEN + Wire.ETH_HEADER_LEN);
    const first = d.table.meta(q);
    const r = rb.inOff(0);
    rb.slab[r] = first >>> 24;
    rb.slab[r + 1] = (first >>> 16) & 0xff;
    rb.slab[r + 2] = (first >>> 8) & 0xff;
    rb.slab[r + 3] = first & 0xff;
    d.current = q;
    this.tos = 0;
    this.one(rb, 0, r, len, from, now, run);
    d.finish(batch, i, q, run);
  }

  /** An ICMP error we generated (IPv4 after the inner Ethernet header at eth) goes back, encapsulated, to the cell it came from. */
  private replyToUnderlay(batch: FrameBatch, i: number, eth: number, ipLen: number, lease: LeaseInfo, to: number, run: Run): void {
    const buf = batch.slab;
    const state = this.state;
    const cfg = state.cfg;
    writeMacFromIp(buf, eth, 0xeeee, lease.subnet);
    buf.set(state.vtepMac, eth + Wire.ETH_SRC);
    writeU16(buf, eth + Wire.ETH_TYPE, Wire.ETHERTYPE_IPV4);
    const frameLen = Wire.ETH_HEADER_LEN + ipLen;
    const ident = run.nextIdent();
    const ip = this.ip;
    const sp = sourcePortFor(flowHash(ip.srcAddr, ip.dstAddr, Wire.IPPROTO_ICMP, 0, 0), cfg.srcPortMin, cfg.srcPortMax);
    const outer = writeOuterHeaders(buf, eth, frameLen, cfg.underlayIp, to, ident, sp, cfg.vxlanPort, cfg.vni, 0);
    batch.verdict(i, Action.Underlay, outer, frameLen + OUTER_LEN, to);
    if (run.tracing) run.steps.icmpErrorToUnderlay(to);
  }
}
