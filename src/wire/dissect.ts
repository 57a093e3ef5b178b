// The dissector behind `silkworm decode`: bytes in, every layer out as data —
// as smoltcp keeps its pretty-printer next to the wire formats. Not on the hot
// path: it allocates freely, but it reads headers through the same views the
// data plane uses, so what the data plane refuses is refused here, with the
// reason spelled out.
//
// A dissection is
// - `layers`: one entry per header (and one for the payload), outermost first;
//   each has a tcpdump-style one-line `summary`, a record of decoded `fields`,
//   and `wire`: every field with its byte offset, length and value, named as
//   Wireshark's display filters name them (ip.ttl, vxlan.gbp, ...) so that a
//   dissection can be checked against `tshark -T json` field by field;
// - `errors`: what is wrong, each with the byte offset where it is wrong.
//   Decoding stops at a malformed header (the layers before it are kept).
//   A VXLAN header the kernel would drop (no I flag, reserved bits) is an
//   error too, but the inner frame is still decoded, as tshark does;
// - `truncated`: the capture holds fewer bytes than were on the wire
//   (snaplen). Such a frame is decoded as far as its bytes go, not refused.
//
// dissect() never throws on any input.
import { u32ToIp } from '../util/ip.js';
import { WireError } from './errors.js';
import { ArpOperation, ArpView, ARP_HEADER_LEN } from './arp.js';
import { foldChecksum, internetChecksum, onesComplementSum, pseudoHeaderSum } from './checksum.js';
import { ETH_HEADER_LEN, EtherType, EthernetView, formatMacKey } from './ethernet.js';
import { ICMP_HEADER_LEN, IcmpType, IcmpView, isIcmpErrorType } from './icmp.js';
import { IPV4_HEADER_LEN, IpProtocol, Ipv4View } from './ipv4.js';
import { TCP_HEADER_LEN, TcpFlags, TcpView } from './tcp.js';
import { UDP_HEADER_LEN, UdpView } from './udp.js';
import { VXLAN_FLAGS_KNOWN, VXLAN_HEADER_LEN, VXLAN_PORT, VxlanFlags, VxlanGbpFlags, VxlanView } from './vxlan.js';
import { readU16, readU32 } from './bytes.js';

// Constants only the dissector needs (the pipeline's live in offsets.ts).
/** IEEE 802.1Q tag: TCI (2 bytes) + the real EtherType (2 bytes). */
const VLAN_TAG_LEN = 4;
/** The flag bits Linux's vxlan_rcv accepts on a GBP device: G and I; the pipeline decides by the same constant. */
const VXLAN_KERNEL_FLAGS = VXLAN_FLAGS_KNOWN;
/** RFC 791 §3.1 option types. */
const IPOPT_EOL = 0;
const IPOPT_NOP = 1;
const IPOPT_LSRR = 0x83;
const IPOPT_SSRR = 0x89;
/** The other EtherTypes an Ethernet frame is recognised by (besides IPv4, ARP, 802.1Q, IPv6). */
const ETHERTYPE_RARP = 0x8035;
const ETHERTYPE_QINQ = 0x88a8;
const ETHERTYPE_MPLS = 0x8847;
const ETHERTYPE_LLDP = 0x88cc;

export type DecodeStart = 'auto' | 'ethernet' | 'ip' | 'vxlan' | 'arp';
export type LayerName = 'ethernet' | 'vlan' | 'arp' | 'ipv4' | 'udp' | 'tcp' | 'icmp' | 'vxlan' | 'payload';

/** One field on the wire, named as Wireshark names it. */
export interface WireField {
  name: string;
  /** Byte offset of the field's first byte in the input; -1 for a value computed, not read (tcp.len). */
  offset: number;
  /** Bytes the field spans (a bit field spans the bytes holding it). */
  length: number;
  /** Numbers for numbers (already shifted down from their bit mask); strings for addresses. */
  value: number | string;
  /** For a bit field: the mask over the `length` bytes, as Wireshark shows it. */
  bitmask?: number;
}

export interface Layer {
  layer: LayerName;
  /** Byte offset of the layer's first byte in the input. */
  offset: number;
  /** Bytes of this layer's header (payload: its length). */
  length: number;
  /** Encapsulation depth: 0 outer, 1 inside one VXLAN tunnel, ... */
  depth: number;
  /** One line in tcpdump's style. */
  summary: string;
  fields: Record<string, unknown>;
  wire: WireField[];
}

export interface DissectError {
  /** The layer being decoded when it went wrong. */
  layer: LayerName;
  /** Byte offset (in the input) of what is wrong. */
  offset: number;
  /** One sentence: layer, problem, byte offset. */
  message: string;
}

export interface Dissection {
  layers: Layer[];
  /** Empty when the bytes decoded cleanly. */
  errors: DissectError[];
  /** The capture stops before the frame did (fewer bytes than originalLength). */
  truncated: boolean;
  /** Bytes decoded, and bytes the frame had on the wire. */
  capturedLength: number;
  originalLength: number;
  /** Where decoding started (auto-detected unless given). */
  start: Exclude<DecodeStart, 'auto'>;
}

export interface DissectOptions {
  /** Where the bytes start (default: auto-detect). */
  from?: DecodeStart;
  /** Bytes on the wire, when the capture says (pcap's original length); default: the bytes given. */
  originalLength?: number;
}

const MAX_DEPTH = 4; // VXLAN in VXLAN in ...: stop before a crafted input recurses deeply

const hex16 = (v: number) => '0x' + v.toString(16).padStart(4, '0');
const hex8 = (v: number) => '0x' + v.toString(16).padStart(2, '0');

const ETHERTYPE_NAMES: Record<number, string> = {
  [EtherType.Ipv4]: 'IPv4',
  [EtherType.Arp]: 'ARP',
  [EtherType.Vlan]: '802.1Q',
  [EtherType.Ipv6]: 'IPv6',
};
const PROTO_NAMES: Record<number, string> = { [IpProtocol.Icmp]: 'ICMP', [IpProtocol.Tcp]: 'TCP', [IpProtocol.Udp]: 'UDP' };

/** Thrown inside the Dissector to stop at a malformed header; never escapes dissect(). */
class Stop extends Error {}

class Dissector {
  readonly layers: Layer[] = [];
  readonly errors: DissectError[] = [];
  private readonly eth = new EthernetView();
  private readonly ip = new Ipv4View();
  private readonly udp = new UdpView();
  private readonly tcp = new TcpView();
  private readonly icmp = new IcmpView();
  private readonly vx = new VxlanView();
  private readonly arp = new ArpView();

  /**
   * @param b the captured bytes
   * @param missing bytes the frame had on the wire beyond b (snaplen); a
   *   length field may point that far past the end without being wrong
   */
  constructor(
    private readonly b: Uint8Array,
    private missing: number,
  ) {}

  private push(layer: LayerName, offset: number, length: number, depth: number, summary: string, fields: Record<string, unknown>, wire: WireField[]): void {
    this.layers.push({ layer, offset, length, depth, summary, fields, wire });
  }

  /** Record an error and stop decoding. */
  private fail(layer: LayerName, offset: number, message: string): never {
    this.errors.push({ layer, offset, message });
    throw new Stop(message);
  }

  /** Record an error and keep decoding (the bytes still make sense to read). */
  private flag(layer: LayerName, offset: number, message: string): void {
    this.errors.push({ layer, offset, message });
  }

  private f(name: string, offset: number, length: number, value: number | string, bitmask?: number): WireField {
    return bitmask === undefined ? { name, offset, length, value } : { name, offset, length, value, bitmask };
  }

  ethernet(off: number, end: number, depth: number): void {
    const v = this.eth.wrap(this.b, off, end - off);
    if (v.check() !== WireError.None) {
      if (this.missing > 0) return this.cutShort('ethernet', off, end, depth, ETH_HEADER_LEN);
      this.fail('ethernet', off, `Ethernet header at byte ${off} is truncated: ${end - off} bytes left, ${ETH_HEADER_LEN} needed`);
    }
    const dst = formatMacKey(v.dstKey);
    const src = formatMacKey(v.srcKey);
    let type = v.etherType;
    const typeName = ETHERTYPE_NAMES[type] ?? 'unknown';
    this.push(
      'ethernet',
      off,
      ETH_HEADER_LEN,
      depth,
      `${src} > ${dst}, ethertype ${typeName} (${hex16(type)}), length ${end - off + (depth === 0 ? this.missing : 0)}`,
      { dst, src, etherType: type, etherTypeName: typeName },
      [this.f('eth.dst', off, 6, dst), this.f('eth.src', off + 6, 6, src), this.f('eth.type', off + 12, 2, type)],
    );
    let p = v.payloadOffset;
    if (type === EtherType.Vlan) {
      // IEEE 802.1Q: TCI (PCP 3 bits, DEI 1, VID 12) then the real EtherType.
      if (end - p < VLAN_TAG_LEN) {
        if (this.missing > 0) return this.cutShort('vlan', p, end, depth, VLAN_TAG_LEN);
        this.fail('vlan', p, `802.1Q tag at byte ${p} is truncated: ${end - p} bytes left, 4 needed`);
      }
      const tci = readU16(this.b, p);
      type = readU16(this.b, p + 2);
      const name = ETHERTYPE_NAMES[type] ?? 'unknown';
      this.push(
        'vlan',
        p,
        VLAN_TAG_LEN,
        depth,
        `vlan ${tci & 0xfff}, p ${tci >>> 13}, ethertype ${name} (${hex16(type)})`,
        { vlanId: tci & 0xfff, priority: tci >>> 13, dei: (tci >>> 12) & 1, etherType: type, etherTypeName: name },
        [
          this.f('vlan.priority', p, 2, tci >>> 13, 0xe000),
          this.f('vlan.dei', p, 2, (tci >>> 12) & 1, 0x1000),
          this.f('vlan.id', p, 2, tci & 0xfff, 0x0fff),
          this.f('vlan.etype', p + 2, 2, type),
        ],
      );
      p += VLAN_TAG_LEN;
    }
    if (type === EtherType.Ipv4) this.ipv4(p, end, depth);
    else if (type === EtherType.Arp) this.arpLayer(p, end, depth);
    else this.payload(p, end, depth, `EtherType ${hex16(type)} is not decoded`);
  }

  /** A header cut off by the capture's snaplen: say so, as a payload layer, and stop (not an error). */
  private cutShort(layer: LayerName, off: number, end: number, depth: number, need: number): void {
    this.payload(off, end, depth, `the capture ends inside the ${layer} header: ${end - off} of ${need} bytes captured`);
  }

  arpLayer(off: number, end: number, depth: number): void {
    const v = this.arp.wrap(this.b, off, end - off);
    const err = v.check();
    if (err === WireError.Truncated) {
      if (this.missing > 0) return this.cutShort('arp', off, end, depth, ARP_HEADER_LEN);
      this.fail('arp', off, `ARP packet at byte ${off} is truncated: ${end - off} bytes left, ${ARP_HEADER_LEN} needed`);
    }
    if (err === WireError.Unsupported) {
      this.payload(off, end, depth, `ARP for hardware type ${v.hardwareType}, protocol ${hex16(v.protocolType)} is not decoded`);
      return;
    }
    const op = v.operation;
    const sMac = formatMacKey(v.senderMacKey);
    const tMac = formatMacKey(v.targetMacKey);
    const sIp = u32ToIp(v.senderIp);
    const tIp = u32ToIp(v.targetIp);
    const summary =
      op === ArpOperation.Request
        ? `Request who-has ${tIp} tell ${sIp} (${sMac})`
        : op === ArpOperation.Reply
          ? `Reply ${sIp} is-at ${sMac}`
          : `operation ${op}, sender ${sIp} (${sMac}), target ${tIp} (${tMac})`;
    this.push(
      'arp',
      off,
      ARP_HEADER_LEN,
      depth,
      summary,
      {
        operation: op,
        operationName: op === 1 ? 'request' : op === 2 ? 'reply' : 'unknown',
        senderMac: sMac,
        senderIp: sIp,
        targetMac: tMac,
        targetIp: tIp,
      },
      [
        this.f('arp.hw.type', off, 2, v.hardwareType),
        this.f('arp.proto.type', off + 2, 2, v.protocolType),
        this.f('arp.hw.size', off + 4, 1, v.hardwareLen),
        this.f('arp.proto.size', off + 5, 1, v.protocolLen),
        this.f('arp.opcode', off + 6, 2, op),
        this.f('arp.src.hw_mac', off + 8, 6, sMac),
        this.f('arp.src.proto_ipv4', off + 14, 4, sIp),
        this.f('arp.dst.hw_mac', off + 18, 6, tMac),
        this.f('arp.dst.proto_ipv4', off + 24, 4, tIp),
      ],
    );
  }

  ipv4(off: number, end: number, depth: number): void {
    const v = this.ip.wrap(this.b, off, end - off);
    const n = end - off;
    // `partial`: the capture stops before the datagram does (snaplen, or a short paste)
    let partial = false;
    let tso = false;
    let total = v.totalLen;
    switch (v.check()) {
      case WireError.None:
        break;
      case WireError.Truncated:
        if (this.missing > 0) return this.cutShort('ipv4', off, end, depth, IPV4_HEADER_LEN);
        this.fail('ipv4', off, `IPv4 header at byte ${off} is truncated: ${n} bytes left, ${IPV4_HEADER_LEN} needed`);
      // eslint-disable-next-line no-fallthrough
      case WireError.BadVersion:
        this.fail('ipv4', off, `IPv4 header at byte ${off} has version ${v.version}, not 4 (use --from to say where the packet starts)`);
      // eslint-disable-next-line no-fallthrough
      case WireError.BadHeaderLength:
        if (v.headerLen >= IPV4_HEADER_LEN && this.missing > 0) return this.cutShort('ipv4', off, end, depth, v.headerLen);
        this.fail(
          'ipv4',
          off,
          v.headerLen < IPV4_HEADER_LEN
            ? `IPv4 header at byte ${off} has header length ${v.headerLen} (IHL ${v.headerLen / 4}), below the minimum of 20`
            : `IPv4 header at byte ${off} has header length ${v.headerLen}, but only ${n} bytes are present`,
        );
      // eslint-disable-next-line no-fallthrough
      default:
        if (total === 0) {
          // A TSO super-frame captured before segmentation: the stack leaves
          // the total length 0 (Linux's tcp_gso_segment fills it per segment).
          // Use the frame's length, as tshark does.
          tso = true;
          total = n + (depth === 0 ? this.missing : 0);
          if (total > 0xffff) total = n;
          partial = total > n;
        } else if (total < v.headerLen) {
          this.fail('ipv4', off, `IPv4 header at byte ${off} has total length ${total}, shorter than its ${v.headerLen}-byte header`);
        } else if (total - n <= this.missing) {
          partial = true; // snaplen: the rest was on the wire, not in the capture
        } else {
          // Not known to be a short capture: an error, but decode what is there.
          partial = true;
          this.flag('ipv4', off, `IPv4 header at byte ${off} has total length ${total}, but only ${n} bytes are present (truncated capture?)`);
          // said once: the layers inside are read as a short capture, not flagged again
          this.missing = Math.max(this.missing, total - n);
        }
    }
    const hl = v.headerLen;
    const ok = v.verifyChecksum();
    const csum = v.checksum;
    let expected = csum;
    if (!ok) {
      // what the checksum should be: sum with the field zeroed = sum - field
      expected = foldChecksum(onesComplementSum(this.b, off, hl) + (~csum & 0xffff));
    }
    const flags = [v.reservedFlag ? 'R' : '', v.dontFrag ? 'DF' : '', v.moreFrags ? '+' : ''].filter(Boolean);
    const proto = v.protocol;
    const protoName = PROTO_NAMES[proto] ?? 'unknown';
    const src = u32ToIp(v.srcAddr);
    const dst = u32ToIp(v.dstAddr);
    const present = Math.min(total, n);
    const trailing = n - present;
    const route = sourceRoute(this.b, off + IPV4_HEADER_LEN, off + hl);
    const flagText = flags.length ? flags.join('') : 'none';
    const summary =
      `${src} > ${dst}: tos ${hex8(v.dscpEcn).replace(/^0x0(?=.)/, '0x')}, ttl ${v.ttl}, id ${v.ident}, offset ${v.fragOffset}, ` +
      `flags [${flagText}], proto ${protoName} (${proto}), length ${v.totalLen}, checksum ${hex16(csum)} ` +
      (ok ? '(correct)' : `(incorrect -> ${hex16(expected)})`) +
      (v.optionsLen ? `, ${v.optionsLen} bytes of options` : '') +
      (route ? `, ${route.kind} to ${u32ToIp(route.finalHop)}` : '') +
      (tso ? `, total length 0 (a TSO capture): using the frame's ${total}` : '') +
      (partial ? `, ${present} of ${total} bytes captured` : '') +
      (trailing > 0 ? `, ${trailing} bytes of padding after it` : '');
    const ff = readU16(this.b, off + 6);
    const wire: WireField[] = [
      this.f('ip.version', off, 1, v.version, 0xf0),
      this.f('ip.hdr_len', off, 1, hl, 0x0f),
      this.f('ip.dsfield', off + 1, 1, v.dscpEcn),
      this.f('ip.dsfield.dscp', off + 1, 1, v.dscpEcn >>> 2, 0xfc),
      this.f('ip.dsfield.ecn', off + 1, 1, v.dscpEcn & 3, 0x03),
      this.f('ip.len', off + 2, 2, v.totalLen),
      this.f('ip.id', off + 4, 2, v.ident),
      this.f('ip.flags', off + 6, 1, ff >>> 13, 0xe0),
      this.f('ip.flags.rb', off + 6, 1, (ff >>> 15) & 1, 0x80),
      this.f('ip.flags.df', off + 6, 1, (ff >>> 14) & 1, 0x40),
      this.f('ip.flags.mf', off + 6, 1, (ff >>> 13) & 1, 0x20),
      this.f('ip.frag_offset', off + 6, 2, ff & 0x1fff, 0x1fff),
      this.f('ip.ttl', off + 8, 1, v.ttl),
      this.f('ip.proto', off + 9, 1, proto),
      this.f('ip.checksum', off + 10, 2, csum),
      this.f('ip.checksum.status', -1, 0, ok ? CHECKSUM_GOOD : CHECKSUM_BAD),
      this.f('ip.src', off + 12, 4, src),
    ];
    // With a source route, the header's destination is the next hop, and the
    // route's last address the datagram's destination (RFC 791 §3.1): tshark
    // names them ip.cur_rt and ip.dst.
    if (route) {
      wire.push(this.f('ip.cur_rt', off + 16, 4, dst), this.f('ip.dst', route.finalHopOffset, 4, u32ToIp(route.finalHop)));
    } else wire.push(this.f('ip.dst', off + 16, 4, dst));
    this.push(
      'ipv4',
      off,
      hl,
      depth,
      summary,
      {
        version: v.version,
        headerLen: hl,
        tos: v.dscpEcn,
        dscp: v.dscpEcn >>> 2,
        ecn: v.dscpEcn & 3,
        totalLen: v.totalLen,
        ident: v.ident,
        flags,
        dontFrag: v.dontFrag,
        moreFrags: v.moreFrags,
        fragOffset: v.fragOffset,
        ttl: v.ttl,
        protocol: proto,
        protocolName: protoName,
        checksum: csum,
        checksumOk: ok,
        ...(ok ? {} : { checksumExpected: expected }),
        src,
        dst,
        ...(route ? { sourceRoute: route.kind, finalDst: u32ToIp(route.finalHop) } : {}),
        optionsLen: v.optionsLen,
        trailingBytes: trailing,
        ...(tso ? { tso: true, lengthUsed: total } : {}),
        ...(partial ? { truncated: true, capturedBytes: present } : {}),
      },
      wire,
    );
    const p = v.payloadOffset;
    const pend = off + present;
    const srcIp = v.srcAddr;
    // the transport checksum's pseudo-header carries the final destination (RFC 791 §3.1, RFC 768, RFC 9293 §3.1)
    const dstIp = route ? route.finalHop : v.dstAddr;
    const l4 = { partial, l4Len: total - hl };
    if (v.isFragment && v.fragOffset !== 0) {
      this.payload(p, pend, depth, `fragment data at offset ${v.fragOffset}, not decoded`);
      return;
    }
    if (v.moreFrags) {
      this.payload(p, pend, depth, 'first fragment: the transport header may continue in later fragments, not decoded');
      return;
    }
    if (proto === IpProtocol.Udp) this.udpLayer(p, pend, depth, srcIp, dstIp, l4);
    else if (proto === IpProtocol.Tcp) this.tcpLayer(p, pend, depth, srcIp, dstIp, l4);
    else if (proto === IpProtocol.Icmp) this.icmpLayer(p, pend, depth, l4);
    else this.payload(p, pend, depth, `IP protocol ${proto} is not decoded`);
  }

  udpLayer(off: number, end: number, depth: number, srcIp: number, dstIp: number, l4: L4Context): void {
    const v = this.udp.wrap(this.b, off, end - off);
    const n = end - off;
    const err = v.check();
    if (err === WireError.Truncated) {
      if (l4.partial) return this.cutShort('udp', off, end, depth, UDP_HEADER_LEN);
      this.fail('udp', off, `UDP header at byte ${off} is truncated: ${n} bytes left, ${UDP_HEADER_LEN} needed`);
    }
    let partial = false;
    if (err !== WireError.None) {
      if (v.length < UDP_HEADER_LEN) this.fail('udp', off, `UDP header at byte ${off} has length ${v.length}, below the minimum of 8`);
      if (!(l4.partial && v.length <= l4.l4Len)) {
        this.fail('udp', off, `UDP header at byte ${off} has length ${v.length}, but the IP payload holds only ${n} bytes`);
      }
      partial = true; // the datagram goes on past the capture
    }
    const csum = v.checksum;
    let state: string;
    let status: number;
    let ok: boolean | null = null;
    let expected: number | undefined;
    if (csum === 0) {
      state = 'none';
      status = CHECKSUM_NOT_PRESENT;
    } else if (partial) {
      state = 'not verified: the capture is cut short';
      status = CHECKSUM_UNVERIFIED;
    } else {
      ok = v.verifyChecksum(srcIp, dstIp);
      if (!ok) expected = v.computeChecksum(srcIp, dstIp);
      state = ok ? 'correct' : `incorrect -> ${hex16(expected!)}`;
      status = ok ? CHECKSUM_GOOD : CHECKSUM_BAD;
    }
    const sport = v.srcPort;
    const dport = v.dstPort;
    const isVxlan = dport === VXLAN_PORT || sport === VXLAN_PORT;
    this.push(
      'udp',
      off,
      UDP_HEADER_LEN,
      depth,
      `${sport} > ${dport}${isVxlan ? ' (VXLAN)' : ''}, length ${v.length}, checksum ${hex16(csum)} (${state})`,
      {
        srcPort: sport,
        dstPort: dport,
        length: v.length,
        checksum: csum,
        checksumOk: ok,
        ...(expected === undefined ? {} : { checksumExpected: expected }),
        payloadLen: v.length - UDP_HEADER_LEN,
        ...(partial ? { truncated: true } : {}),
      },
      [
        this.f('udp.srcport', off, 2, sport),
        this.f('udp.dstport', off + 2, 2, dport),
        this.f('udp.length', off + 4, 2, v.length),
        this.f('udp.checksum', off + 6, 2, csum),
        this.f('udp.checksum.status', -1, 0, status),
      ],
    );
    const p = v.payloadOffset;
    const pend = partial ? end : p + v.payloadLen;
    if (isVxlan && depth < MAX_DEPTH) this.vxlan(p, pend, depth, partial);
    else this.payload(p, pend, depth);
  }

  vxlan(off: number, end: number, depth: number, partial = false): void {
    const v = this.vx.wrap(this.b, off, end - off);
    const err = v.check();
    if (err === WireError.Truncated) {
      if (partial) return this.cutShort('vxlan', off, end, depth, VXLAN_HEADER_LEN);
      this.fail('vxlan', off, `VXLAN header at byte ${off} is truncated: ${end - off} bytes left, ${VXLAN_HEADER_LEN} needed`);
    }
    const flags = v.flags;
    const g = v.hasGbp;
    const flagNames = [flags & VxlanFlags.G ? 'G' : '', flags & VxlanFlags.I ? 'I' : ''].filter(Boolean);
    const gbpFlags = v.gbpFlags;
    const gbpNames = g ? [gbpFlags & VxlanGbpFlags.D ? 'D' : '', gbpFlags & VxlanGbpFlags.A ? 'A' : ''].filter(Boolean) : [];
    const gpid = v.groupPolicyId;
    const gpidHex = gpid.toString(16).toUpperCase().padStart(4, '0');
    const reservedFlags = flags & ~VXLAN_KERNEL_FLAGS & 0xff;
    const reserved = v.reserved;
    // Linux's vxlan_rcv (drivers/net/vxlan/vxlan_core.c) drops a header
    // without I, with any other bit of byte 0 but G set, or with a non-zero
    // reserved byte 7; on a GBP device bytes 1-3 are the policy fields, read
    // only when G is set.
    const kernelDrops: string[] = [];
    if ((flags & VxlanFlags.I) === 0) kernelDrops.push('no I flag');
    if (reservedFlags) kernelDrops.push(`reserved flag bits ${hex8(reservedFlags)}`);
    if (reserved) kernelDrops.push(`reserved byte ${hex8(reserved)}`);
    const note = kernelDrops.length ? ` (${kernelDrops.join(', ')}: the kernel drops this packet)` : '';
    const summary = g
      ? `GBP, flags ${hex8(flags)} [${flagNames.join(' ')}], GBP flags ${hex8(gbpFlags)} [${gbpNames.join(' ') || 'none'}], ` +
        `Group Policy ID ${gpid} (${gpidHex}), VNI ${v.vni}${note}`
      : `flags ${hex8(flags)} [${flagNames.join(' ')}], no Group Policy ID (untagged), VNI ${v.vni}${note}`;
    const f16 = readU16(this.b, off);
    // tshark reads every header in the GBP layout (draft-smith-vxlan-group-policy
    // §2.1), G set or not: bytes 2-3 are vxlan.gbp either way
    const wire: WireField[] = [
      this.f('vxlan.flags', off, 2, f16),
      this.f('vxlan.flag_g', off, 2, (f16 >>> 15) & 1, 0x8000),
      this.f('vxlan.flag_i', off, 2, (f16 >>> 11) & 1, 0x0800),
      this.f('vxlan.flag_d', off, 2, (f16 >>> 6) & 1, 0x0040),
      this.f('vxlan.flag_a', off, 2, (f16 >>> 3) & 1, 0x0008),
      this.f('vxlan.flags_reserved', off, 2, f16 & 0x77b7, 0x77b7),
      this.f('vxlan.gbp', off + 2, 2, gpid),
    ];
    wire.push(this.f('vxlan.vni', off + 4, 3, v.vni), this.f('vxlan.reserved8', off + 7, 1, reserved));
    this.push(
      'vxlan',
      off,
      VXLAN_HEADER_LEN,
      depth,
      summary,
      {
        flags,
        flagsHex: hex8(flags),
        flagNames,
        gbp: g,
        gbpFlags: g ? gbpFlags : 0,
        gbpFlagNames: gbpNames,
        groupPolicyId: g ? gpid : null,
        groupPolicyIdHex: g ? gpidHex : null,
        vni: v.vni,
        reserved,
        reservedFlags,
        kernelDrops: kernelDrops.length > 0,
      },
      wire,
    );
    if ((flags & VxlanFlags.I) === 0) {
      this.flag('vxlan', off, `VXLAN header at byte ${off} has flags ${hex8(flags)} without the I flag (0x08)`);
    } else if (reservedFlags) {
      this.flag('vxlan', off, `VXLAN header at byte ${off} has reserved flag bits ${hex8(reservedFlags)} set (flags ${hex8(flags)}): the kernel drops it`);
    } else if (reserved) {
      this.flag('vxlan', off + 7, `VXLAN header at byte ${off} has reserved byte 7 = ${hex8(reserved)}, not 0: the kernel drops it`);
    }
    this.ethernet(v.payloadOffset, end, depth + 1);
  }

  tcpLayer(off: number, end: number, depth: number, srcIp: number, dstIp: number, l4: L4Context): void {
    const v = this.tcp.wrap(this.b, off, end - off);
    const n = end - off;
    const err = v.check();
    if (err === WireError.Truncated) {
      if (l4.partial) return this.cutShort('tcp', off, end, depth, TCP_HEADER_LEN);
      this.fail('tcp', off, `TCP header at byte ${off} is truncated: ${n} bytes left, ${TCP_HEADER_LEN} needed`);
    }
    if (err !== WireError.None) {
      if (v.headerLen >= TCP_HEADER_LEN && l4.partial && v.headerLen <= l4.l4Len) return this.cutShort('tcp', off, end, depth, v.headerLen);
      this.fail(
        'tcp',
        off,
        v.headerLen < TCP_HEADER_LEN
          ? `TCP header at byte ${off} has data offset ${v.headerLen} bytes, below the minimum of 20`
          : `TCP header at byte ${off} has data offset ${v.headerLen} bytes, but the segment holds only ${n}`,
      );
    }
    const flags = v.flags;
    const csum = v.checksum;
    const ok = l4.partial ? null : v.verifyChecksum(srcIp, dstIp);
    const expected = ok === false ? v.computeChecksum(srcIp, dstIp) : csum;
    const len = l4.partial ? l4.l4Len - v.headerLen : v.payloadLen;
    const seq = v.seq;
    const ack = v.ack;
    const opts = tcpOptions(this.b, off + TCP_HEADER_LEN, v.optionsLen);
    const hasAck = (flags & TcpFlags.Ack) !== 0;
    const summary =
      `${v.srcPort} > ${v.dstPort}: Flags [${tcpdumpFlags(flags)}], cksum ${hex16(csum)} ` +
      (ok === null ? '(not verified: the capture is cut short)' : ok ? '(correct)' : `(incorrect -> ${hex16(expected)})`) +
      `, seq ${seq}${len > 0 ? ':' + ((seq + len) >>> 0) : ''}` +
      (hasAck ? `, ack ${ack}` : '') +
      `, win ${v.window}` +
      (v.urgent || flags & TcpFlags.Urg ? `, urg ${v.urgent}` : '') +
      (opts.length ? `, options [${opts.join(',')}]` : '') +
      `, length ${len}`;
    const fb = readU16(this.b, off + 12);
    this.push(
      'tcp',
      off,
      v.headerLen,
      depth,
      summary,
      {
        srcPort: v.srcPort,
        dstPort: v.dstPort,
        seq,
        ack,
        headerLen: v.headerLen,
        flags,
        flagsText: tcpdumpFlags(flags),
        flagNames: tcpFlagNames(flags),
        window: v.window,
        checksum: csum,
        checksumOk: ok,
        ...(ok === false ? { checksumExpected: expected } : {}),
        urgent: v.urgent,
        options: opts,
        payloadLen: len,
        ...(l4.partial ? { truncated: true } : {}),
      },
      [
        this.f('tcp.srcport', off, 2, v.srcPort),
        this.f('tcp.dstport', off + 2, 2, v.dstPort),
        this.f('tcp.len', -1, 0, len),
        this.f('tcp.seq', off + 4, 4, seq),
        this.f('tcp.ack', off + 8, 4, ack),
        this.f('tcp.hdr_len', off + 12, 1, v.headerLen, 0xf0),
        this.f('tcp.flags', off + 12, 2, fb & 0x0fff, 0x0fff),
        this.f('tcp.flags.cwr', off + 13, 1, (fb >>> 7) & 1, 0x80),
        this.f('tcp.flags.ece', off + 13, 1, (fb >>> 6) & 1, 0x40),
        this.f('tcp.flags.urg', off + 13, 1, (fb >>> 5) & 1, 0x20),
        this.f('tcp.flags.ack', off + 13, 1, (fb >>> 4) & 1, 0x10),
        this.f('tcp.flags.push', off + 13, 1, (fb >>> 3) & 1, 0x08),
        this.f('tcp.flags.reset', off + 13, 1, (fb >>> 2) & 1, 0x04),
        this.f('tcp.flags.syn', off + 13, 1, (fb >>> 1) & 1, 0x02),
        this.f('tcp.flags.fin', off + 13, 1, fb & 1, 0x01),
        this.f('tcp.window_size_value', off + 14, 2, v.window),
        this.f('tcp.checksum', off + 16, 2, csum),
        this.f('tcp.checksum.status', -1, 0, ok === null ? CHECKSUM_UNVERIFIED : ok ? CHECKSUM_GOOD : CHECKSUM_BAD),
        this.f('tcp.urgent_pointer', off + 18, 2, v.urgent),
      ],
    );
    this.payload(v.payloadOffset, end, depth, undefined, l4.partial ? len : undefined);
  }

  icmpLayer(off: number, end: number, depth: number, l4: L4Context): void {
    const v = this.icmp.wrap(this.b, off, end - off);
    if (v.check() !== WireError.None) {
      if (l4.partial) return this.cutShort('icmp', off, end, depth, ICMP_HEADER_LEN);
      this.fail('icmp', off, `ICMP header at byte ${off} is truncated: ${end - off} bytes left, ${ICMP_HEADER_LEN} needed`);
    }
    const type = v.type;
    const code = v.code;
    const ok = l4.partial ? null : v.verifyChecksum();
    const csum = v.checksum;
    const typeName = ICMP_TYPES[type] ?? 'unknown type';
    const codeName = icmpCodeName(type, code);
    const fields: Record<string, unknown> = {
      type,
      typeName,
      code,
      codeName,
      checksum: csum,
      checksumOk: ok,
      ...(ok === false ? { checksumExpected: foldChecksum(onesComplementSum(this.b, off, end - off) + (~csum & 0xffff)) } : {}),
      length: end - off,
    };
    const wire: WireField[] = [
      this.f('icmp.type', off, 1, type),
      this.f('icmp.code', off + 1, 1, code),
      this.f('icmp.checksum', off + 2, 2, csum),
      this.f('icmp.checksum.status', -1, 0, ok === null ? CHECKSUM_UNVERIFIED : ok ? CHECKSUM_GOOD : CHECKSUM_BAD),
    ];
    let summary = typeName;
    if (type === IcmpType.EchoRequest || type === IcmpType.EchoReply) {
      fields.echoId = v.echoId;
      fields.echoSeq = v.echoSeq;
      summary += `, id ${v.echoId}, seq ${v.echoSeq}`;
      wire.push(this.f('icmp.ident', off + 4, 2, v.echoId), this.f('icmp.seq', off + 6, 2, v.echoSeq));
    } else {
      if (codeName) summary += `, ${codeName}`;
      else summary += `, code ${code}`;
      if (type === IcmpType.DestUnreachable && code === 4) {
        fields.nextHopMtu = v.nextHopMtu;
        summary += ` (mtu ${v.nextHopMtu})`;
        wire.push(this.f('icmp.mtu', off + 6, 2, v.nextHopMtu));
      }
    }
    summary +=
      `, length ${end - off}, checksum ${hex16(csum)} (` + (ok === null ? 'not verified: the capture is cut short' : ok ? 'correct' : 'incorrect') + ')';
    if (v.isError) {
      const q = quotedHeader(this.b, v.quotedOffset, end);
      fields.quoted = q;
      if (q && q.complete) {
        summary += `; quotes ${q.protocolName} ${q.src}${q.srcPort !== undefined ? ':' + q.srcPort : ''} > ${q.dst}${
          q.dstPort !== undefined ? ':' + q.dstPort : ''
        } (id ${q.ident}, ${q.quotedBytes} bytes quoted)`;
      } else if (q) {
        summary += `; quotes only ${q.quotedBytes} bytes of an IPv4 header: ${describePartialQuote(q)}`;
      } else summary += '; the quoted IP header is missing or not IPv4';
      if (q) wire.push(...q.wire);
    }
    this.push('icmp', off, ICMP_HEADER_LEN, depth, summary, fields, wire);
    if (!isIcmpErrorType(type) && end - v.payloadOffset > 0) this.payload(v.payloadOffset, end, depth);
  }

  /** `wireLen`: bytes the payload had on the wire, when the capture holds fewer. */
  payload(off: number, end: number, depth: number, note?: string, wireLen?: number): void {
    const len = Math.max(0, end - off);
    if (len === 0 && !note && !wireLen) return;
    const shown = Math.min(len, 64);
    let hex = '';
    let text = '';
    let printable = 0;
    for (let i = off; i < off + shown; i++) {
      const c = this.b[i]!;
      hex += c.toString(16).padStart(2, '0');
      if ((c >= 0x20 && c < 0x7f) || c === 0x0a || c === 0x0d || c === 0x09) printable++;
      text += String.fromCharCode(c);
    }
    const isText = shown > 0 && printable === shown;
    const cut = wireLen !== undefined && wireLen > len;
    const summary =
      `${len} bytes` +
      (cut ? ` of ${wireLen} (the capture is cut short)` : '') +
      (note ? ` (${note})` : '') +
      (isText ? ` ${JSON.stringify(text)}${len > shown ? '…' : ''}` : shown ? ` ${hex}${len > shown ? '…' : ''}` : '');
    this.push(
      'payload',
      off,
      len,
      depth,
      summary,
      {
        length: len,
        ...(cut ? { wireLength: wireLen, truncated: true } : {}),
        ...(note ? { note } : {}),
        hex,
        ...(isText ? { text } : {}),
        truncatedDisplay: len > shown,
      },
      len > 0 ? [this.f('data.len', -1, 0, len)] : [],
    );
  }
}

interface L4Context {
  /** The capture holds fewer bytes of the datagram than its IP header says. */
  partial: boolean;
  /** Transport bytes according to the IP header (total length - header length). */
  l4Len: number;
}

/** Wireshark's checksum status values (the *.checksum.status fields). */
const CHECKSUM_BAD = 0;
const CHECKSUM_GOOD = 1;
const CHECKSUM_UNVERIFIED = 2;
const CHECKSUM_NOT_PRESENT = 3;

interface SourceRoute {
  kind: 'LSRR' | 'SSRR';
  finalHop: number;
  finalHopOffset: number;
}

/**
 * A loose or strict source route option (RFC 791 §3.1) in the options
 * [off, end): its last address, the datagram's final destination. The
 * transport checksum covers that address, not the header's next hop.
 */
function sourceRoute(b: Uint8Array, off: number, end: number): SourceRoute | null {
  let i = off;
  while (i < end) {
    const type = b[i]!;
    if (type === IPOPT_EOL) break;
    if (type === IPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const len = b[i + 1]!;
    if (len < 2 || i + len > end) break;
    if ((type === IPOPT_LSRR || type === IPOPT_SSRR) && len >= 7) {
      const last = i + 3 + Math.floor((len - 3) / 4) * 4 - 4;
      return { kind: type === IPOPT_LSRR ? 'LSRR' : 'SSRR', finalHop: readU32(b, last), finalHopOffset: last };
    }
    i += len;
  }
  return null;
}

const ICMP_TYPES: Record<number, string> = {
  0: 'echo reply',
  3: 'destination unreachable',
  4: 'source quench',
  5: 'redirect',
  8: 'echo request',
  11: 'time exceeded',
  12: 'parameter problem',
  13: 'timestamp request',
  14: 'timestamp reply',
};
const UNREACH_CODES: Record<number, string> = {
  0: 'net unreachable',
  1: 'host unreachable',
  2: 'protocol unreachable',
  3: 'port unreachable',
  4: 'fragmentation needed',
  5: 'source route failed',
  6: 'destination network unknown',
  7: 'destination host unknown',
  9: 'network administratively prohibited',
  10: 'host administratively prohibited',
  13: 'communication administratively prohibited',
};

function icmpCodeName(type: number, code: number): string {
  if (type === 3) return UNREACH_CODES[code] ?? '';
  if (type === 11) return code === 0 ? 'time to live exceeded in transit' : code === 1 ? 'fragment reassembly time exceeded' : '';
  if (type === 0 || type === 8) return code === 0 ? '' : `code ${code}`;
  return '';
}

export interface Quoted {
  /** The whole IPv4 header is quoted (else only the fields below that are present). */
  complete: boolean;
  quotedBytes: number;
  src?: string;
  dst?: string;
  protocol?: number;
  protocolName?: string;
  ident?: number;
  ttl?: number;
  totalLen?: number;
  srcPort?: number;
  dstPort?: number;
  wire: WireField[];
}

/**
 * The datagram an ICMP error quotes is usually cut short (RFC 792: header + 8
 * bytes), sometimes shorter still, so its total length is expected to lie:
 * read it leniently, only the fields that are actually present.
 */
function quotedHeader(b: Uint8Array, off: number, end: number): Quoted | null {
  const n = end - off;
  if (n < 1 || b[off]! >>> 4 !== 4) return null;
  const hl = (b[off]! & 0x0f) << 2;
  if (hl < IPV4_HEADER_LEN) return null;
  const has = (o: number, len: number) => o + len <= n;
  const q: Quoted = { complete: hl <= n, quotedBytes: n, wire: [] };
  const w = (name: string, o: number, len: number, value: number | string, bitmask?: number) =>
    q.wire.push(bitmask === undefined ? { name, offset: off + o, length: len, value } : { name, offset: off + o, length: len, value, bitmask });
  w('ip.version', 0, 1, 4, 0xf0);
  w('ip.hdr_len', 0, 1, hl, 0x0f);
  if (has(1, 1)) w('ip.dsfield', 1, 1, b[off + 1]!);
  if (has(2, 2)) {
    q.totalLen = readU16(b, off + 2);
    w('ip.len', 2, 2, q.totalLen);
  }
  if (has(4, 2)) {
    q.ident = readU16(b, off + 4);
    w('ip.id', 4, 2, q.ident);
  }
  if (has(8, 1)) {
    q.ttl = b[off + 8]!;
    w('ip.ttl', 8, 1, q.ttl);
  }
  if (has(9, 1)) {
    q.protocol = b[off + 9]!;
    q.protocolName = PROTO_NAMES[q.protocol] ?? `proto ${q.protocol}`;
    w('ip.proto', 9, 1, q.protocol);
  }
  if (has(10, 2)) w('ip.checksum', 10, 2, readU16(b, off + 10));
  if (has(12, 4)) {
    q.src = u32ToIp(readU32(b, off + 12));
    w('ip.src', 12, 4, q.src);
  }
  if (has(16, 4)) {
    q.dst = u32ToIp(readU32(b, off + 16));
    w('ip.dst', 16, 4, q.dst);
  }
  if (q.complete && (q.protocol === IpProtocol.Tcp || q.protocol === IpProtocol.Udp) && n >= hl + 4) {
    const t = q.protocol === IpProtocol.Tcp ? 'tcp' : 'udp';
    q.srcPort = readU16(b, off + hl);
    q.dstPort = readU16(b, off + hl + 2);
    w(`${t}.srcport`, hl, 2, q.srcPort);
    w(`${t}.dstport`, hl + 2, 2, q.dstPort);
  }
  return q;
}

function describePartialQuote(q: Quoted): string {
  const parts: string[] = [];
  if (q.totalLen !== undefined) parts.push(`length ${q.totalLen}`);
  if (q.ident !== undefined) parts.push(`id ${q.ident}`);
  if (q.ttl !== undefined) parts.push(`ttl ${q.ttl}`);
  if (q.protocolName !== undefined) parts.push(`proto ${q.protocolName}`);
  if (q.src !== undefined) parts.push(`src ${q.src}`);
  if (q.dst !== undefined) parts.push(`dst ${q.dst}`);
  return parts.length ? parts.join(', ') : 'no field complete';
}

/** tcpdump's flag letters, in its order (print-tcp.c): F S R P . U E W; "none" when empty. */
export function tcpdumpFlags(flags: number): string {
  let s = '';
  if (flags & TcpFlags.Fin) s += 'F';
  if (flags & TcpFlags.Syn) s += 'S';
  if (flags & TcpFlags.Rst) s += 'R';
  if (flags & TcpFlags.Psh) s += 'P';
  if (flags & TcpFlags.Ack) s += '.';
  if (flags & TcpFlags.Urg) s += 'U';
  if (flags & TcpFlags.Ece) s += 'E';
  if (flags & TcpFlags.Cwr) s += 'W';
  return s || 'none';
}

function tcpFlagNames(flags: number): string[] {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(TcpFlags)) if (flags & bit) names.push(name.toUpperCase());
  return names;
}

/** TCP options as tcpdump prints them (RFC 9293 §3.2, RFC 7323, RFC 2018). */
export function tcpOptions(b: Uint8Array, off: number, len: number): string[] {
  const out: string[] = [];
  const end = off + len;
  let i = off;
  while (i < end) {
    const kind = b[i]!;
    if (kind === 0) {
      out.push('eol');
      break;
    }
    if (kind === 1) {
      out.push('nop');
      i++;
      continue;
    }
    if (i + 1 >= end) {
      out.push(`bad opt ${kind}`);
      break;
    }
    const l = b[i + 1]!;
    if (l < 2 || i + l > end) {
      out.push(`bad opt ${kind} len ${l}`);
      break;
    }
    if (kind === 2 && l === 4) out.push(`mss ${readU16(b, i + 2)}`);
    else if (kind === 3 && l === 3) out.push(`wscale ${b[i + 2]}`);
    else if (kind === 4 && l === 2) out.push('sackOK');
    else if (kind === 5 && (l - 2) % 8 === 0) {
      const blocks: string[] = [];
      for (let k = i + 2; k < i + l; k += 8) blocks.push(`{${readU32(b, k)}:${readU32(b, k + 4)}}`);
      out.push(`sack ${blocks.length} ${blocks.join('')}`);
    } else if (kind === 8 && l === 10) out.push(`TS val ${readU32(b, i + 2)} ecr ${readU32(b, i + 6)}`);
    else out.push(`opt-${kind}:${l}`);
    i += l;
  }
  return out;
}

const KNOWN_ETHERTYPES = new Set<number>([
  EtherType.Ipv4,
  EtherType.Arp,
  EtherType.Ipv6,
  EtherType.Vlan,
  ETHERTYPE_RARP,
  ETHERTYPE_QINQ,
  ETHERTYPE_MPLS,
  ETHERTYPE_LLDP,
]);

/** An IPv4 header at 0: version 4, IHL >= 5 within the bytes, total length at least the header (or 0, TSO), correct checksum. Short captures allowed. */
function looksLikeIpv4(b: Uint8Array): boolean {
  const n = b.length;
  if (n < IPV4_HEADER_LEN || b[0]! >>> 4 !== 4) return false;
  const hl = (b[0]! & 0x0f) << 2;
  const total = readU16(b, 2);
  return hl >= IPV4_HEADER_LEN && hl <= n && (total >= hl || total === 0) && internetChecksum(b, 0, hl) === 0;
}

/** An Ethernet/IPv4 ARP packet at 0 (as `tcpdump -x` prints one: no link layer). */
function looksLikeArp(b: Uint8Array): boolean {
  if (b.length < ARP_HEADER_LEN) return false;
  const op = readU16(b, 6);
  return readU16(b, 0) === 1 && readU16(b, 2) === EtherType.Ipv4 && b[4] === 6 && b[5] === 4 && (op === 1 || op === 2);
}

/**
 * Where do the bytes start? An IPv4 header is recognised by version 4, a sane
 * IHL and a correct header checksum (an Ethernet frame almost never passes);
 * its total length may exceed the bytes (a snaplen-truncated `tcpdump -x`
 * dump). An Ethernet frame by a known EtherType; ARP (`tcpdump -x` of an ARP
 * packet) by hardware type 1, protocol 0x0800, lengths 6/4 and operation 1
 * or 2; VXLAN by flags with I set and nothing but G/I, a zero reserved byte,
 * and a known EtherType in the inner frame. null: none of these.
 */
export function detectStart(b: Uint8Array): Exclude<DecodeStart, 'auto'> | null {
  const n = b.length;
  if (looksLikeIpv4(b)) return 'ip';
  if (n >= ETH_HEADER_LEN && KNOWN_ETHERTYPES.has(readU16(b, 12))) return 'ethernet';
  if (looksLikeArp(b)) return 'arp';
  if (
    n >= VXLAN_HEADER_LEN + ETH_HEADER_LEN &&
    (b[0]! & VxlanFlags.I) !== 0 &&
    (b[0]! & ~(VxlanFlags.G | VxlanFlags.I) & 0xff) === 0 &&
    b[7] === 0 &&
    KNOWN_ETHERTYPES.has(readU16(b, 20))
  ) {
    return 'vxlan';
  }
  return null;
}

/** Where a capture's link type starts decoding; null for link types not decoded. */
export function startForLinkType(linkType: number, firstByte: number | undefined): Exclude<DecodeStart, 'auto'> | null {
  if (linkType === 1) return 'ethernet';
  if (linkType === 228) return 'ip';
  if (linkType === 101) return firstByte !== undefined && firstByte >>> 4 === 6 ? null : 'ip';
  return null;
}

/** Decode every layer of `bytes`. Never throws; see the module comment. */
export function dissect(bytes: Uint8Array, opts: DissectOptions = {}): Dissection {
  const originalLength = Math.max(opts.originalLength ?? bytes.length, bytes.length);
  const missing = originalLength - bytes.length;
  const base = { capturedLength: bytes.length, originalLength, truncated: missing > 0 };
  if (bytes.length === 0) {
    return { ...base, layers: [], errors: [{ layer: 'ethernet', offset: 0, message: 'there are no bytes to decode' }], start: 'ethernet' };
  }
  const from = opts.from ?? 'auto';
  let start: Exclude<DecodeStart, 'auto'>;
  if (from !== 'auto') start = from;
  else {
    const found = detectStart(bytes);
    if (found === null && bytes.length >= ETH_HEADER_LEN) {
      return {
        ...base,
        layers: [],
        errors: [
          {
            layer: 'ethernet',
            offset: 0,
            message:
              `cannot tell where the packet starts: not an Ethernet frame with a known EtherType (bytes 12-13 are ${hex16(readU16(bytes, 12))}), ` +
              'an IPv4 header with a correct checksum, an ARP packet or a VXLAN header; say where with --from',
          },
        ],
        start: 'ethernet',
      };
    }
    start = found ?? 'ethernet'; // too short for anything: Ethernet, whose error says how short
  }
  const d = new Dissector(bytes, missing);
  try {
    if (start === 'ethernet') d.ethernet(0, bytes.length, 0);
    else if (start === 'ip') d.ipv4(0, bytes.length, 0);
    else if (start === 'arp') d.arpLayer(0, bytes.length, 0);
    else d.vxlan(0, bytes.length, 0);
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
  }
  return { ...base, layers: d.layers, errors: d.errors, start };
}
