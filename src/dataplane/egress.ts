// Egress: frames a local container sent (read from its TAP) → checks (IPv4,
// header and checksum, its own source address; fragments are reassembled
// first, defrag.ts) → route →
// neighbor → FDB → the app's tag in the VXLAN Group Policy ID →
// encapsulation toward the remote cell. A destination on this cell goes
// through the destination's policy (ingress.ts admit) and straight to its TAP.
// Errors the kernel would answer (no route, TTL, too big, a same-cell reject)
// are answered with ICMP from the gateway address, back out of the same TAP.
//
// As the kernel does for silk, each cell routes the packet once, so the inner
// TTL drops by one per cell (64 in the source container, 63 on the wire, 62
// in the destination container); on the wire the inner frame carries VTEP
// MACs; the destination container sees dst ee:ee:<its ip>, src aa:aa:<its ip>.
import { Wire } from '../wire/offsets.js';
import { writeU16 } from '../wire/bytes.js';
import { IcmpCode, IcmpType } from '../wire/icmp.js';
import { Ipv4View } from '../wire/ipv4.js';
import { macKey } from '../tables/fdb.js';
import { CtState } from '../policy/conntrack.js';
import { writeMacFromIp } from '../util/ip.js';
import { Action, type FrameBatch } from './batch.js';
import { Drop, Stat } from './counters.js';
import type { Defrag } from './defrag.js';
import { vxlanOuterTos } from './ecn.js';
import { writeOuterHeaders } from './encap.js';
import { flowHash, sourcePortFor } from './flowhash.js';
import { icmpInPlace } from './icmp.js';
import { admit, deliverToPort, Verdict } from './ingress.js';
import { L4, NO_DROP, wrapIpv4 } from './l4.js';
import { GATEWAY_IP, type ControlState, type Port, type Run } from './state.js';

export class Egress {
  private readonly ip = new Ipv4View();
  private readonly l4 = new L4();
  /** While whole() runs a lead: the run's payload bytes (conntrack's segment length); -1 otherwise. */
  private wholeLen = -1;
  /** Set by toRemote when it encapsulated a lead with the whole run's conntrack decision. */
  private wholeTaken = false;
  /** That decision was INVALID (counted per segment, as the per-frame path counts it). */
  private wholeInvalid = false;

  constructor(
    private readonly state: ControlState,
    private readonly frag: Defrag,
  ) {}

  /** Frames from TAP `portIndex`. For each frame i sets batch.action[i] and the output fields. */
  run(batch: FrameBatch, portIndex: number, now: number, run: Run): void {
    const port = this.state.ports[portIndex];
    const stats = run.counters.stats;
    for (let i = 0; i < batch.count; i++) {
      const n = batch.run[i]!;
      if (n > 1 && batch.runs !== undefined) {
        // A TSO super-frame's segments [i, i+n): decided once when its lead goes to another cell.
        if (port !== undefined && !run.dry && !run.tracing) {
          // Carried whole: on after the run. If not, the lead is done and the followers' headers are
          // written: they go one by one from i + 1.
          if (this.whole(batch, i, n, port, now, run)) i += n - 1;
          continue;
        }
        // No port (or a trace): every segment the per-frame way, the followers' headers written first.
        batch.runs.inner(batch, i + 1, n - 1);
      }
      const off = batch.inOff(i);
      const len = batch.len[i]!;
      stats[Stat.EgressPackets]!++;
      stats[Stat.EgressBytes]! += len;
      if (port === undefined) {
        run.drop(batch, i, Drop.PortGone);
        continue;
      }
      if (!run.dry) {
        port.packets[0]!++;
        port.packets[1]! += len;
      }
      this.one(batch, i, off, len, port, now, run);
      if (this.frag.split) this.frag.splitSlot(batch, i, run);
    }
  }

  /**
   * The run of n segments of one TSO super-frame at slots [i, i+n) (FrameBatch.run): its lead (slot i)
   * takes the per-frame path with the conntrack decision made for the whole run (its first sequence
   * number and all the run's payload bytes; the segmenter forms runs only of segments conntrack judges
   * alike — ACK without SYN, RST or FIN — so one decision leaves the table as n would). When the lead is
   * encapsulated, every follower is too, with the same route, FDB entry, tag and source port: the
   * segmenter writes its headers from the lead's (RunEmitter.vxlan), and it is counted as the per-frame
   * path counts it. Returns false when the lead took another way (dropped, answered, local): then the
   * followers' inner headers are written and each goes the per-frame way.
   */
  private whole(batch: FrameBatch, i: number, n: number, port: Port, now: number, run: Run): boolean {
    const stats = run.counters.stats;
    const len = batch.len[i]!;
    stats[Stat.EgressPackets]!++;
    stats[Stat.EgressBytes]! += len;
    port.packets[0]!++;
    port.packets[1]! += len;
    let total = 0;
    for (let j = 0; j < n; j++) total += batch.extLen[i + j]!;
    this.wholeLen = total;
    this.wholeTaken = false;
    this.one(batch, i, batch.inOff(i), len, port, now, run);
    this.wholeLen = -1;
    if (this.frag.split) this.frag.splitSlot(batch, i, run);
    const runs = batch.runs!;
    if (!this.wholeTaken || batch.action[i] !== Action.Underlay) {
      runs.inner(batch, i + 1, n - 1);
      return false;
    }
    runs.template(batch, i);
    const target = batch.outTarget[i]!;
    const invalid = this.wholeInvalid;
    for (let s = i + 1; s < i + n; s++) {
      const l = batch.len[s]!;
      stats[Stat.EgressPackets]!++;
      stats[Stat.EgressBytes]! += l;
      port.packets[0]!++;
      port.packets[1]! += l;
      if (invalid) stats[Stat.ConntrackInvalid]!++;
      const outer = runs.vxlan(batch, s, run.nextIdent());
      stats[Stat.Encapsulated]!++;
      batch.verdict(s, Action.Underlay, outer, l + Wire.VXLAN_ENCAP_LEN, target);
    }
    return true;
  }

  private one(batch: FrameBatch, i: number, off: number, len: number, port: Port, now: number, run: Run): void {
    const buf = batch.slab;
    const state = this.state;
    if (len < Wire.ETH_HEADER_LEN) return run.drop(batch, i, Drop.Truncated);
    const ip = this.ip;
    const bad = wrapIpv4(buf, off, len, ip);
    if (bad !== NO_DROP) return run.drop(batch, i, bad);
    // The addresses read by hand at their offsets (what Ipv4View's srcAddr
    // and dstAddr do), and handed to the path: with wrapIpv4, L4 reading and
    // the table lookups inlined here, V8 leaves the getters as real calls
    // (scripts/bench-dataplane.mjs, --trace-turbo-inlining).
    const ipOff = off + Wire.ETH_HEADER_LEN;
    const src = ((buf[ipOff + Wire.IPV4_SRC]! << 24) | (buf[ipOff + Wire.IPV4_SRC + 1]! << 16) | (buf[ipOff + Wire.IPV4_SRC + 2]! << 8) | buf[ipOff + Wire.IPV4_SRC + 3]!) >>> 0;
    const dst = ((buf[ipOff + Wire.IPV4_DST]! << 24) | (buf[ipOff + Wire.IPV4_DST + 1]! << 16) | (buf[ipOff + Wire.IPV4_DST + 2]! << 8) | buf[ipOff + Wire.IPV4_DST + 3]!) >>> 0;
    if (run.tracing) run.steps.source(port, src, port.tag);
    if (src !== port.ip) return run.drop(batch, i, Drop.SpoofedSource);
    if (ip.isFragment) return this.fragment(batch, i, off, port, now, run);
    // Trim Ethernet padding: the kernel forwards the IP datagram, not the pad.
    const frameLen = Wire.ETH_HEADER_LEN + ip.totalLen;
    // Two paths, each its own method (reading L4 first) so each is optimized
    // with its own inlining budget: one function doing everything kept the
    // wire getters out of line and cost a fifth of egress throughput
    // (scripts/bench-dataplane.mjs).
    const local = state.portByIp.get(dst);
    if (local !== undefined) return this.toLocal(batch, i, off, port, local, frameLen, now, run);
    return this.toRemote(batch, i, off, port, src, dst, frameLen, now, run);
  }

  /**
   * The checks after routing, as the kernel's ip_forward makes them: TTL, then
   * the MTU. True if the frame was answered or dropped here.
   */
  private forwardLimits(batch: FrameBatch, i: number, off: number, port: Port, now: number, run: Run): boolean {
    const buf = batch.slab;
    const ip = this.ip;
    const l4 = this.l4;
    const ipOff = off + Wire.ETH_HEADER_LEN;
    // TTL and total length by hand (Ipv4View's ttl, totalLen): inlined into
    // toRemote, this function's getters are otherwise left as calls.
    if (buf[ipOff + Wire.IPV4_TTL]! <= 1) {
      const n = icmpInPlace(buf, ipOff, ip, l4, IcmpType.TimeExceeded, IcmpCode.TtlExceeded, 0, GATEWAY_IP, now, run);
      if (n === 0) run.drop(batch, i, Drop.TtlExceeded);
      else {
        run.counters.drop(Drop.TtlExceeded);
        this.replyToPort(batch, i, off, n, port, run);
      }
      return true;
    }
    const mtu = this.state.innerMtu;
    if (((buf[ipOff + Wire.IPV4_TOTAL_LEN]! << 8) | buf[ipOff + Wire.IPV4_TOTAL_LEN + 1]!) > mtu && !this.cutLater(mtu)) {
      const n = ip.dontFrag ? icmpInPlace(buf, ipOff, ip, l4, IcmpType.DestUnreachable, IcmpCode.FragNeeded, mtu, GATEWAY_IP, now, run) : 0;
      if (n === 0) run.drop(batch, i, Drop.TooBig);
      else {
        run.counters.drop(Drop.TooBig);
        this.replyToPort(batch, i, off, n, port, run);
      }
      return true;
    }
    return false;
  }

  /**
   * A packet over the MTU goes on in fragments (defrag.ts) instead of being
   * refused: a reassembled datagram whose fragments each fit (ip_do_fragment's
   * fast path), or any packet without DF (ip_forward → ip_fragment).
   */
  private cutLater(mtu: number): boolean {
    if (this.frag.fitsCurrent(mtu)) return true;
    if (this.ip.dontFrag) return false;
    this.frag.split = true;
    return true;
  }

  /** An IPv4 fragment: held until its datagram is whole, which then takes the ordinary path (defrag.ts). */
  private fragment(batch: FrameBatch, i: number, off: number, port: Port, now: number, run: Run): void {
    const d = this.frag;
    const q = d.offer(batch, i, off + Wire.ETH_HEADER_LEN, now, run, 0);
    if (q < 0) return;
    const rb = d.reasm;
    const len = d.load(q, batch.slab, off, Wire.ETH_HEADER_LEN);
    d.current = q;
    this.one(rb, 0, rb.inOff(0), len, port, now, run);
    d.finish(batch, i, q, run);
  }

  /** Same cell: the destination's policy, then straight to its TAP. */
  private toLocal(batch: FrameBatch, i: number, off: number, port: Port, local: Port, frameLen: number, now: number, run: Run): void {
    const buf = batch.slab;
    const ip = this.ip;
    const l4 = this.l4;
    const ipOff = off + Wire.ETH_HEADER_LEN;
    const dst = local.ip;
    if (!l4.read(buf, ip)) return run.drop(batch, i, Drop.BadL4Header);
    if (run.tracing) run.steps.routeLocal(dst, local);
    if (this.forwardLimits(batch, i, off, port, now, run)) return;
    // Same cell: the packet never touches the wire, but the destination's
    // policy applies exactly as for a packet from another cell.
    const v = admit(this.state, buf, ip, l4, local, port.tag, now, true, run);
    if (v === Verdict.Unrelated) return run.drop(batch, i, Drop.UnrelatedIcmpError);
    if (v === Verdict.Deny) {
      // The kernel answers a same-cell reject from the host side of the veth: 169.254.0.1.
      const n = icmpInPlace(buf, ipOff, ip, l4, IcmpType.DestUnreachable, IcmpCode.PortUnreachable, 0, GATEWAY_IP, now, run);
      if (n === 0) return run.drop(batch, i, Drop.PolicyDenied);
      run.counters.drop(Drop.PolicyDenied);
      return this.replyToPort(batch, i, off, n, port, run);
    }
    run.counters.stats[Stat.DeliveredLocal]!++;
    deliverToPort(batch, i, off, ip, local, frameLen, run);
  }

  /** Another cell: route → neighbor → FDB → conntrack → encapsulation. */
  private toRemote(batch: FrameBatch, i: number, off: number, port: Port, src: number, dst: number, frameLen: number, now: number, run: Run): void {
    const buf = batch.slab;
    const state = this.state;
    const cfg = state.cfg;
    const ip = this.ip;
    const l4 = this.l4;
    const proto = buf[off + Wire.ETH_HEADER_LEN + Wire.IPV4_PROTOCOL]!;
    if (!l4.read(buf, ip)) return run.drop(batch, i, Drop.BadL4Header);
    if (dst === state.vtepIp || dst === GATEWAY_IP) return run.drop(batch, i, Drop.ToCell);
    const route = state.routes.lookup(dst);
    if (run.tracing) run.steps.route(dst, route);
    if (route === undefined || route.via === 0) {
      const n = icmpInPlace(buf, off + Wire.ETH_HEADER_LEN, ip, l4, IcmpType.DestUnreachable, IcmpCode.NetUnreachable, 0, GATEWAY_IP, now, run);
      if (n === 0) return run.drop(batch, i, Drop.NoRoute);
      run.counters.drop(Drop.NoRoute);
      return this.replyToPort(batch, i, off, n, port, run);
    }
    if (this.forwardLimits(batch, i, off, port, now, run)) return;
    const via = route.via;
    const neigh = state.neighbors.get(via);
    if (run.tracing) run.steps.neighbor(via, neigh);
    if (neigh === undefined) return run.drop(batch, i, Drop.NoNeighbor);
    const fdb = state.fdb.getByKey(macKey(neigh.mac, 0));
    if (run.tracing) run.steps.fdb(neigh.mac, fdb);
    if (fdb === undefined) return run.drop(batch, i, Drop.NoFdb);
    // Track the flow so the reply is let in on the way back (ESTABLISHED).
    // ICMP errors are never tracked themselves (they are RELATED to a flow), and
    // of the rest of ICMP only an echo request opens an entry, as in the kernel.
    // A TCP packet conntrack calls INVALID (a lone FIN, a first RST or
    // SYN+ACK, …) is sent on untracked, as the kernel forwards it: an ICMP
    // error coming back about it is then unrelated here and dropped, as the
    // kernel cell's `overlay` chain drops it (docs/kernel-differences.md).
    const wholeLen = this.wholeLen;
    let invalid = false;
    if (
      !l4.icmpError &&
      state.conntrack.process(src, dst, proto, l4.sport, l4.dport, l4.tcpFlags, now, !run.dry && l4.opensFlow(proto), 0, l4.tcpSeq, l4.tcpAck, wholeLen >= 0 ? wholeLen : l4.tcpLen) ===
        CtState.Invalid
    ) {
      invalid = true;
      run.counters.stats[Stat.ConntrackInvalid]!++;
      if (run.tracing) run.steps.conntrackInvalid(l4.tcpFlags);
    }
    if (wholeLen >= 0) {
      this.wholeTaken = true;
      this.wholeInvalid = invalid;
    }
    ip.decrementTtl();
    // The VTEP MACs with indexed stores: buf.set() of 6 bytes costs a builtin call each.
    const dstMac = neigh.mac;
    const srcMac = state.vtepMac;
    for (let k = 0; k < Wire.ETH_ADDR_LEN; k++) {
      buf[off + Wire.ETH_DST + k] = dstMac[k]!;
      buf[off + Wire.ETH_SRC + k] = srcMac[k]!;
    }
    const sp = sourcePortFor(flowHash(src, dst, proto, l4.sport, l4.dport), cfg.srcPortMin, cfg.srcPortMax);
    const ident = run.nextIdent();
    const outer = writeOuterHeaders(buf, off, frameLen, cfg.underlayIp, fdb.dst, ident, sp, cfg.vxlanPort, cfg.vni, port.tag, vxlanOuterTos(ip.dscpEcn));
    run.counters.stats[Stat.Encapsulated]!++;
    batch.verdict(i, Action.Underlay, outer, frameLen + Wire.VXLAN_ENCAP_LEN, fdb.dst);
    if (run.tracing) run.steps.encapsulate(
      cfg.vni,
      port.tag,
      port.tag !== 0 ? Wire.VXLAN_FLAG_G | Wire.VXLAN_FLAG_I : Wire.VXLAN_FLAG_I,
      sp,
      cfg.vxlanPort,
      cfg.underlayIp,
      fdb.dst,
      state.vtepMac,
      neigh.mac,
      ip.ttl,
    );
  }

  /** An ICMP error we generated (IPv4 after the Ethernet header at off) goes back out of the TAP it came from. */
  private replyToPort(batch: FrameBatch, i: number, off: number, ipLen: number, port: Port, run: Run): void {
    const buf = batch.slab;
    writeMacFromIp(buf, off, 0xeeee, port.ip);
    writeMacFromIp(buf, off + Wire.ETH_SRC, 0xaaaa, port.ip);
    writeU16(buf, off + Wire.ETH_TYPE, Wire.ETHERTYPE_IPV4);
    batch.verdict(i, Action.Tap, off, Wire.ETH_HEADER_LEN + ipLen, port.index);
    // The reply lies whole in the slot: a zero-copy segment's payload piece is no part of it.
    batch.extLen[i] = 0;
    if (run.tracing) run.steps.icmpErrorToContainer(port);
  }
}
