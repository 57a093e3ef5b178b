// `silkworm decode`: hex (a `tcpdump -XX` dump or plain hex) → every layer,
// VXLAN-GBP included — what tcpdump 4.99 cannot show (it prints `flags [I]
// (0x88)` and no Group Policy ID) without reaching for tshark.
//
// decodeFrame() is pure: bytes in, a list of layers out, or a CliError whose
// message is one sentence naming the layer, what is wrong and the byte offset.
// It uses the same views as the data plane, so a packet the data plane would
// drop as malformed is refused here with the reason spelled out.
import { Command, Option } from 'commander';
import { fail } from './util.js';
import { u32ToIp } from '../util/ip.js';
import { WireError } from '../wire/errors.js';
import { ArpOperation, ArpView, ARP_HEADER_LEN } from '../wire/arp.js';
import { foldChecksum, internetChecksum, onesComplementSum, pseudoHeaderSum } from '../wire/checksum.js';
import { ETH_HEADER_LEN, EtherType, EthernetView, formatMacKey, macKeyAt } from '../wire/ethernet.js';
import { ICMP_HEADER_LEN, IcmpType, IcmpView, isIcmpErrorType } from '../wire/icmp.js';
import { IPV4_HEADER_LEN, IpProtocol, Ipv4View } from '../wire/ipv4.js';
import { TCP_HEADER_LEN, TcpFlags, TcpView } from '../wire/tcp.js';
import { UDP_HEADER_LEN, UdpView } from '../wire/udp.js';
import { VXLAN_HEADER_LEN, VXLAN_PORT, VxlanFlags, VxlanGbpFlags, VxlanView } from '../wire/vxlan.js';
import { parseHexDump } from '../wire/hex.js';

export type DecodeStart = 'auto' | 'ethernet' | 'ip' | 'vxlan';
export type LayerName = 'ethernet' | 'vlan' | 'arp' | 'ipv4' | 'udp' | 'tcp' | 'icmp' | 'vxlan' | 'payload';

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

class Decoder {
  readonly layers: Layer[] = [];
  private readonly eth = new EthernetView();
  private readonly ip = new Ipv4View();
  private readonly udp = new UdpView();
  private readonly tcp = new TcpView();
  private readonly icmp = new IcmpView();
  private readonly vx = new VxlanView();
  private readonly arp = new ArpView();

  constructor(private readonly b: Uint8Array) {}

  private push(layer: LayerName, offset: number, length: number, depth: number, summary: string, fields: Record<string, unknown>): void {
    this.layers.push({ layer, offset, length, depth, summary, fields });
  }

  ethernet(off: number, end: number, depth: number): void {
    const v = this.eth.wrap(this.b, off, end - off);
    if (v.check() !== WireError.None) {
      fail(`Ethernet header at byte ${off} is truncated: ${end - off} bytes left, ${ETH_HEADER_LEN} needed`);
    }
    const dst = formatMacKey(v.dstKey);
    const src = formatMacKey(v.srcKey);
    let type = v.etherType;
    const typeName = ETHERTYPE_NAMES[type] ?? 'unknown';
    this.push('ethernet', off, ETH_HEADER_LEN, depth, `${src} > ${dst}, ethertype ${typeName} (${hex16(type)}), length ${end - off}`, {
      dst,
      src,
      etherType: type,
      etherTypeName: typeName,
    });
    let p = v.payloadOffset;
    if (type === EtherType.Vlan) {
      // IEEE 802.1Q: TCI (PCP 3 bits, DEI 1, VID 12) then the real EtherType.
      if (end - p < 4) fail(`802.1Q tag at byte ${p} is truncated: ${end - p} bytes left, 4 needed`);
      const tci = (this.b[p]! << 8) | this.b[p + 1]!;
      type = (this.b[p + 2]! << 8) | this.b[p + 3]!;
      const name = ETHERTYPE_NAMES[type] ?? 'unknown';
      this.push('vlan', p, 4, depth, `vlan ${tci & 0xfff}, p ${tci >>> 13}, ethertype ${name} (${hex16(type)})`, {
        vlanId: tci & 0xfff,
        priority: tci >>> 13,
        dei: (tci >>> 12) & 1,
        etherType: type,
        etherTypeName: name,
      });
      p += 4;
    }
    if (type === EtherType.Ipv4) this.ipv4(p, end, depth);
    else if (type === EtherType.Arp) this.arpLayer(p, end, depth);
    else this.payload(p, end, depth, `EtherType ${hex16(type)} is not decoded`);
  }

  arpLayer(off: number, end: number, depth: number): void {
    const v = this.arp.wrap(this.b, off, end - off);
    const err = v.check();
    if (err === WireError.Truncated) fail(`ARP packet at byte ${off} is truncated: ${end - off} bytes left, ${ARP_HEADER_LEN} needed`);
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
    this.push('arp', off, ARP_HEADER_LEN, depth, summary, {
      operation: op,
      operationName: op === 1 ? 'request' : op === 2 ? 'reply' : 'unknown',
      senderMac: sMac,
      senderIp: sIp,
      targetMac: tMac,
      targetIp: tIp,
    });
  }

  ipv4(off: number, end: number, depth: number): void {
    const v = this.ip.wrap(this.b, off, end - off);
    const n = end - off;
    switch (v.check()) {
      case WireError.None:
        break;
      case WireError.Truncated:
        fail(`IPv4 header at byte ${off} is truncated: ${n} bytes left, ${IPV4_HEADER_LEN} needed`);
      // eslint-disable-next-line no-fallthrough
      case WireError.BadVersion:
        fail(`IPv4 header at byte ${off} has version ${v.version}, not 4 (use --from to say where the packet starts)`);
      // eslint-disable-next-line no-fallthrough
      case WireError.BadHeaderLength:
        fail(
          v.headerLen < IPV4_HEADER_LEN
            ? `IPv4 header at byte ${off} has header length ${v.headerLen} (IHL ${v.headerLen / 4}), below the minimum of 20`
            : `IPv4 header at byte ${off} has header length ${v.headerLen}, but only ${n} bytes are present`,
        );
      // eslint-disable-next-line no-fallthrough
      default:
        fail(
          v.totalLen < v.headerLen
            ? `IPv4 header at byte ${off} has total length ${v.totalLen}, shorter than its ${v.headerLen}-byte header`
            : `IPv4 header at byte ${off} has total length ${v.totalLen}, but only ${n} bytes are present (truncated capture?)`,
        );
    }
    const ok = v.verifyChecksum();
    const csum = v.checksum;
    let expected = csum;
    if (!ok) {
      // what the checksum should be: sum with the field zeroed = sum - field
      expected = foldChecksum(onesComplementSum(this.b, off, v.headerLen) + (~csum & 0xffff));
    }
    const flags = [v.reservedFlag ? 'R' : '', v.dontFrag ? 'DF' : '', v.moreFrags ? '+' : ''].filter(Boolean);
    const proto = v.protocol;
    const protoName = PROTO_NAMES[proto] ?? 'unknown';
    const src = u32ToIp(v.srcAddr);
    const dst = u32ToIp(v.dstAddr);
    const trailing = n - v.totalLen;
    const flagText = flags.length ? flags.join('') : 'none';
    const summary =
      `${src} > ${dst}: tos ${hex8(v.dscpEcn).replace(/^0x0(?=.)/, '0x')}, ttl ${v.ttl}, id ${v.ident}, offset ${v.fragOffset}, ` +
      `flags [${flagText}], proto ${protoName} (${proto}), length ${v.totalLen}, checksum ${hex16(csum)} ` +
      (ok ? '(correct)' : `(incorrect -> ${hex16(expected)})`) +
      (v.optionsLen ? `, ${v.optionsLen} bytes of options` : '') +
      (trailing > 0 ? `, ${trailing} bytes of padding after it` : '');
    this.push('ipv4', off, v.headerLen, depth, summary, {
      version: v.version,
      headerLen: v.headerLen,
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
      optionsLen: v.optionsLen,
      trailingBytes: trailing,
    });
    const p = v.payloadOffset;
    const pend = off + v.totalLen;
    const srcIp = v.srcAddr;
    const dstIp = v.dstAddr;
    if (v.isFragment && v.fragOffset !== 0) {
      this.payload(p, pend, depth, `fragment data at offset ${v.fragOffset}, not decoded`);
      return;
    }
    if (v.moreFrags) {
      this.payload(p, pend, depth, 'first fragment: the transport header may continue in later fragments, not decoded');
      return;
    }
    if (proto === IpProtocol.Udp) this.udpLayer(p, pend, depth, srcIp, dstIp);
    else if (proto === IpProtocol.Tcp) this.tcpLayer(p, pend, depth, srcIp, dstIp);
    else if (proto === IpProtocol.Icmp) this.icmpLayer(p, pend, depth);
    else this.payload(p, pend, depth, `IP protocol ${proto} is not decoded`);
  }

  udpLayer(off: number, end: number, depth: number, srcIp: number, dstIp: number): void {
    const v = this.udp.wrap(this.b, off, end - off);
    const n = end - off;
    const err = v.check();
    if (err === WireError.Truncated) fail(`UDP header at byte ${off} is truncated: ${n} bytes left, ${UDP_HEADER_LEN} needed`);
    if (err !== WireError.None) {
      fail(
        v.length < UDP_HEADER_LEN
          ? `UDP header at byte ${off} has length ${v.length}, below the minimum of 8`
          : `UDP header at byte ${off} has length ${v.length}, but the IP payload holds only ${n} bytes`,
      );
    }
    const csum = v.checksum;
    let state: string;
    let ok: boolean | null = null;
    let expected: number | undefined;
    if (csum === 0) state = 'none';
    else {
      ok = v.verifyChecksum(srcIp, dstIp);
      if (!ok) expected = v.computeChecksum(srcIp, dstIp);
      state = ok ? 'correct' : `incorrect -> ${hex16(expected!)}`;
    }
    const isVxlan = v.dstPort === VXLAN_PORT;
    this.push(
      'udp',
      off,
      UDP_HEADER_LEN,
      depth,
      `${v.srcPort} > ${v.dstPort}${isVxlan ? ' (VXLAN)' : ''}, length ${v.length}, checksum ${hex16(csum)} (${state})`,
      {
        srcPort: v.srcPort,
        dstPort: v.dstPort,
        length: v.length,
        checksum: csum,
        checksumOk: ok,
        ...(expected === undefined ? {} : { checksumExpected: expected }),
        payloadLen: v.payloadLen,
      },
    );
    const p = v.payloadOffset;
    const pend = p + v.payloadLen;
    if (isVxlan && depth < MAX_DEPTH) this.vxlan(p, pend, depth);
    else this.payload(p, pend, depth);
  }

  vxlan(off: number, end: number, depth: number): void {
    const v = this.vx.wrap(this.b, off, end - off);
    const err = v.check();
    if (err === WireError.Truncated) fail(`VXLAN header at byte ${off} is truncated: ${end - off} bytes left, ${VXLAN_HEADER_LEN} needed`);
    if (err !== WireError.None) fail(`VXLAN header at byte ${off} has flags ${hex8(v.flags)} without the I flag (0x08)`);
    const flags = v.flags;
    const g = v.hasGbp;
    const flagNames = [flags & VxlanFlags.G ? 'G' : '', flags & VxlanFlags.I ? 'I' : ''].filter(Boolean);
    const gbpFlags = v.gbpFlags;
    const gbpNames = g ? [gbpFlags & VxlanGbpFlags.D ? 'D' : '', gbpFlags & VxlanGbpFlags.A ? 'A' : ''].filter(Boolean) : [];
    const gpid = v.groupPolicyId;
    const gpidHex = gpid.toString(16).toUpperCase().padStart(4, '0');
    const summary = g
      ? `GBP, flags ${hex8(flags)} [${flagNames.join(' ')}], GBP flags ${hex8(gbpFlags)} [${gbpNames.join(' ') || 'none'}], ` +
        `Group Policy ID ${gpid} (${gpidHex}), VNI ${v.vni}`
      : `flags ${hex8(flags)} [${flagNames.join(' ')}], no Group Policy ID (untagged), VNI ${v.vni}`;
    this.push('vxlan', off, VXLAN_HEADER_LEN, depth, summary, {
      flags,
      flagsHex: hex8(flags),
      flagNames,
      gbp: g,
      gbpFlags: g ? gbpFlags : 0,
      gbpFlagNames: gbpNames,
      groupPolicyId: g ? gpid : null,
      groupPolicyIdHex: g ? gpidHex : null,
      vni: v.vni,
      reserved: v.reserved,
    });
    this.ethernet(v.payloadOffset, end, depth + 1);
  }

  tcpLayer(off: number, end: number, depth: number, srcIp: number, dstIp: number): void {
    const v = this.tcp.wrap(this.b, off, end - off);
    const n = end - off;
    const err = v.check();
    if (err === WireError.Truncated) fail(`TCP header at byte ${off} is truncated: ${n} bytes left, ${TCP_HEADER_LEN} needed`);
    if (err !== WireError.None) {
      fail(
        v.headerLen < TCP_HEADER_LEN
          ? `TCP header at byte ${off} has data offset ${v.headerLen} bytes, below the minimum of 20`
          : `TCP header at byte ${off} has data offset ${v.headerLen} bytes, but the segment holds only ${n}`,
      );
    }
    const flags = v.flags;
    const csum = v.checksum;
    const ok = v.verifyChecksum(srcIp, dstIp);
    const expected = ok ? csum : v.computeChecksum(srcIp, dstIp);
    const len = v.payloadLen;
    const seq = v.seq;
    const ack = v.ack;
    const opts = tcpOptions(this.b, off + TCP_HEADER_LEN, v.optionsLen);
    const hasAck = (flags & TcpFlags.Ack) !== 0;
    const summary =
      `${v.srcPort} > ${v.dstPort}: Flags [${tcpdumpFlags(flags)}], cksum ${hex16(csum)} ` +
      (ok ? '(correct)' : `(incorrect -> ${hex16(expected)})`) +
      `, seq ${seq}${len > 0 ? ':' + ((seq + len) >>> 0) : ''}` +
      (hasAck ? `, ack ${ack}` : '') +
      `, win ${v.window}` +
      (v.urgent || flags & TcpFlags.Urg ? `, urg ${v.urgent}` : '') +
      (opts.length ? `, options [${opts.join(',')}]` : '') +
      `, length ${len}`;
    this.push('tcp', off, v.headerLen, depth, summary, {
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
      ...(ok ? {} : { checksumExpected: expected }),
      urgent: v.urgent,
      options: opts,
      payloadLen: len,
    });
    this.payload(v.payloadOffset, end, depth);
  }

  icmpLayer(off: number, end: number, depth: number): void {
    const v = this.icmp.wrap(this.b, off, end - off);
    if (v.check() !== WireError.None) {
      fail(`ICMP header at byte ${off} is truncated: ${end - off} bytes left, ${ICMP_HEADER_LEN} needed`);
    }
    const type = v.type;
    const code = v.code;
    const ok = v.verifyChecksum();
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
      ...(ok ? {} : { checksumExpected: foldChecksum(onesComplementSum(this.b, off, end - off) + (~csum & 0xffff)) }),
      length: end - off,
    };
    let summary = typeName;
    if (type === IcmpType.EchoRequest || type === IcmpType.EchoReply) {
      fields.echoId = v.echoId;
      fields.echoSeq = v.echoSeq;
      summary += `, id ${v.echoId}, seq ${v.echoSeq}`;
    } else {
      if (codeName) summary += `, ${codeName}`;
      else summary += `, code ${code}`;
      if (type === IcmpType.DestUnreachable && code === 4) {
        fields.nextHopMtu = v.nextHopMtu;
        summary += ` (mtu ${v.nextHopMtu})`;
      }
    }
    summary += `, length ${end - off}, checksum ${hex16(csum)} (${ok ? 'correct' : 'incorrect'})`;
    if (v.isError) {
      const q = quotedHeader(this.b, v.quotedOffset, end);
      fields.quoted = q;
      if (q) {
        summary += `; quotes ${q.protocolName} ${q.src}${q.srcPort !== undefined ? ':' + q.srcPort : ''} > ${q.dst}${
          q.dstPort !== undefined ? ':' + q.dstPort : ''
        } (id ${q.ident}, ${q.quotedBytes} bytes quoted)`;
      } else summary += '; the quoted IP header is missing or not IPv4';
    }
    this.push('icmp', off, ICMP_HEADER_LEN, depth, summary, fields);
    if (!isIcmpErrorType(type) && end - v.payloadOffset > 0) this.payload(v.payloadOffset, end, depth);
  }

  payload(off: number, end: number, depth: number, note?: string): void {
    const len = Math.max(0, end - off);
    if (len === 0 && !note) return;
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
    const summary =
      `${len} bytes` +
      (note ? ` (${note})` : '') +
      (isText ? ` ${JSON.stringify(text)}${len > shown ? '…' : ''}` : shown ? ` ${hex}${len > shown ? '…' : ''}` : '');
    this.push('payload', off, len, depth, summary, {
      length: len,
      ...(note ? { note } : {}),
      hex,
      ...(isText ? { text } : {}),
      truncatedDisplay: len > shown,
    });
  }
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

interface Quoted {
  src: string;
  dst: string;
  protocol: number;
  protocolName: string;
  ident: number;
  ttl: number;
  totalLen: number;
  quotedBytes: number;
  srcPort?: number;
  dstPort?: number;
}

/**
 * The datagram an ICMP error quotes is usually cut short (RFC 792: header + 8
 * bytes), so its total length is expected to lie: read it leniently, only the
 * fields that are actually present.
 */
function quotedHeader(b: Uint8Array, off: number, end: number): Quoted | null {
  const n = end - off;
  if (n < IPV4_HEADER_LEN || b[off]! >>> 4 !== 4) return null;
  const hl = (b[off]! & 0x0f) << 2;
  if (hl < IPV4_HEADER_LEN || hl > n) return null;
  const proto = b[off + 9]!;
  const ip = (o: number) => u32ToIp(((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0);
  const q: Quoted = {
    src: ip(off + 12),
    dst: ip(off + 16),
    protocol: proto,
    protocolName: PROTO_NAMES[proto] ?? `proto ${proto}`,
    ident: (b[off + 4]! << 8) | b[off + 5]!,
    ttl: b[off + 8]!,
    totalLen: (b[off + 2]! << 8) | b[off + 3]!,
    quotedBytes: n,
  };
  if ((proto === IpProtocol.Tcp || proto === IpProtocol.Udp) && n >= hl + 4) {
    q.srcPort = (b[off + hl]! << 8) | b[off + hl + 1]!;
    q.dstPort = (b[off + hl + 2]! << 8) | b[off + hl + 3]!;
  }
  return q;
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
    const u16 = (o: number) => (b[o]! << 8) | b[o + 1]!;
    const u32 = (o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
    if (kind === 2 && l === 4) out.push(`mss ${u16(i + 2)}`);
    else if (kind === 3 && l === 3) out.push(`wscale ${b[i + 2]}`);
    else if (kind === 4 && l === 2) out.push('sackOK');
    else if (kind === 5 && (l - 2) % 8 === 0) {
      const blocks: string[] = [];
      for (let k = i + 2; k < i + l; k += 8) blocks.push(`{${u32(k)}:${u32(k + 4)}}`);
      out.push(`sack ${blocks.length} ${blocks.join('')}`);
    } else if (kind === 8 && l === 10) out.push(`TS val ${u32(i + 2)} ecr ${u32(i + 6)}`);
    else out.push(`opt-${kind}:${l}`);
    i += l;
  }
  return out;
}

/**
 * Where do the bytes start? An IPv4 header is recognised by version 4, a sane
 * IHL, a total length that fits, and a correct header checksum (an Ethernet
 * frame almost never passes all four); VXLAN by flags with I set and nothing
 * but G/I, a zero reserved byte, and a known EtherType in the inner frame.
 * Anything else is taken as Ethernet, the common case (tcpdump -XX).
 */
export function detectStart(b: Uint8Array): 'ethernet' | 'ip' | 'vxlan' {
  const n = b.length;
  if (n >= IPV4_HEADER_LEN && b[0]! >>> 4 === 4) {
    const hl = (b[0]! & 0x0f) << 2;
    const total = (b[2]! << 8) | b[3]!;
    if (hl >= IPV4_HEADER_LEN && hl <= n && total >= hl && total <= n && internetChecksum(b, 0, hl) === 0) return 'ip';
  }
  const known = (t: number) => t === EtherType.Ipv4 || t === EtherType.Arp || t === EtherType.Ipv6 || t === EtherType.Vlan;
  if (n >= ETH_HEADER_LEN && known((b[12]! << 8) | b[13]!)) return 'ethernet';
  if (
    n >= VXLAN_HEADER_LEN + ETH_HEADER_LEN &&
    (b[0]! & VxlanFlags.I) !== 0 &&
    (b[0]! & ~(VxlanFlags.G | VxlanFlags.I) & 0xff) === 0 &&
    b[7] === 0 &&
    known((b[20]! << 8) | b[21]!)
  ) {
    return 'vxlan';
  }
  return 'ethernet';
}

/** Decode every layer of `bytes`. Throws a CliError (one sentence: layer, problem, byte offset) on malformed input. */
export function decodeFrame(bytes: Uint8Array, from: DecodeStart = 'auto'): Layer[] {
  if (bytes.length === 0) fail('there are no bytes to decode');
  const start = from === 'auto' ? detectStart(bytes) : from;
  const d = new Decoder(bytes);
  if (start === 'ethernet') d.ethernet(0, bytes.length, 0);
  else if (start === 'ip') d.ipv4(0, bytes.length, 0);
  else d.vxlan(0, bytes.length, 0);
  return d.layers;
}

const TITLES: Record<LayerName, string> = {
  ethernet: 'Ethernet',
  vlan: '802.1Q',
  arp: 'ARP',
  ipv4: 'IPv4',
  udp: 'UDP',
  tcp: 'TCP',
  icmp: 'ICMP',
  vxlan: 'VXLAN',
  payload: 'Payload',
};

/** The text form: one line per layer, indented per tunnel level, with its byte offset. */
export function formatLayers(layers: Layer[]): string {
  return layers
    .map((l) => `${'  '.repeat(l.depth)}${TITLES[l.layer].padEnd(9)}@${String(l.offset).padEnd(5)}${l.summary}`)
    .join('\n');
}

export interface DecodeIo {
  readStdin(): Promise<string>;
  write(text: string): void;
}

const defaultIo: DecodeIo = {
  async readStdin() {
    if (process.stdin.isTTY) {
      fail('give the hex as arguments or pipe it in, e.g. tcpdump -XX -c1 ... | silkworm decode');
    }
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
  write(text) {
    process.stdout.write(text);
  },
};

const EXAMPLES = `
Examples:
  # a frame captured on any interface, pasted or piped as tcpdump printed it
  tcpdump -XX -v -c 1 -i eth0 udp port 4789 | silkworm decode
  # plain hex: an outer IPv4 packet (auto-detected), or a UDP payload from --from vxlan
  silkworm decode --from vxlan 8800 0001 0000 0100 eeee 0aff 8400 eeee 0aff 6300 0800 4500 ...
  # machine-readable
  silkworm decode --json < frame.txt

Starts at Ethernet unless the bytes are clearly an IPv4 packet (valid header
checksum) or a VXLAN header; --from overrides. VXLAN (UDP port 4789) shows the
GBP flags and the Group Policy ID — the source app's tag — in decimal and %04X.`;

/** Add `silkworm decode` to the program. `io` is for tests. */
export function register(program: Command, io: DecodeIo = defaultIo): void {
  program
    .command('decode')
    .description('decode a packet from hex (tcpdump -XX dump or plain hex): every layer, VXLAN-GBP included')
    .argument('[hex...]', 'hex bytes or a tcpdump dump; read from stdin when absent')
    .addOption(new Option('--from <layer>', 'where the bytes start').choices(['auto', 'ethernet', 'ip', 'vxlan']).default('auto'))
    .option('--json', 'print the layers as a JSON array')
    .addHelpText('after', EXAMPLES)
    .action(async (hex: string[], opts: { from: DecodeStart; json?: boolean }) => {
      const text = hex.length > 0 ? hex.join('\n') : await io.readStdin();
      let bytes: Uint8Array;
      try {
        bytes = parseHexDump(text);
      } catch (e) {
        fail(`cannot read the hex input: ${(e as Error).message}`);
      }
      const layers = decodeFrame(bytes, opts.from);
      io.write(opts.json ? JSON.stringify(layers, null, 2) + '\n' : formatLayers(layers) + '\n');
    });
}
