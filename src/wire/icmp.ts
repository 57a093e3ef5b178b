// ICMP for IPv4 (RFC 792), with the Fragmentation Needed MTU field of RFC 1191 §4.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Type      |     Code      |          Checksum             |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  echo: Identifier             |  echo: Sequence Number        |
//   |  errors: unused               |  frag needed: Next-Hop MTU    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  echo: data ...   errors: Internet Header + 64 bits of Original Data Datagram
//   +-+-+-+-+-+-+-+-+-
//
//   offset  size  field
//   0       1     type
//   1       1     code
//   2       2     checksum over the whole ICMP message (RFC 1071)
//   4       2     echo identifier | unused
//   6       2     echo sequence number | next-hop MTU (type 3 code 4) | unused
//   8       -     echo data | quoted IP header + at least 8 bytes of its payload
//
// Contract: wrap() records (buf, offset, length) and allocates nothing; the
// caller wraps the IP payload. check() must return WireError.None before any
// accessor is used: it guarantees length >= 8. The quoted datagram of an error
// is NOT checked here — it is someone else's, usually truncated packet: wrap
// it in an Ipv4View and check that (its total length will exceed what is
// quoted, so compare addresses and ports, not lengths).
import { foldChecksum, internetChecksum, onesComplementSum } from './checksum.js';
import { WireError, WireFormatError } from './errors.js';
import { readU16, writeU16, readU32, writeU32 } from './bytes.js';
import { writeIpv4Header } from './ipv4.js';
import { Wire, ICMP_HEADER_LEN } from './offsets.js';

export { ICMP_HEADER_LEN };
export const IcmpType = {
  EchoReply: 0,
  DestUnreachable: 3,
  SourceQuench: 4,
  Redirect: 5,
  EchoRequest: 8,
  TimeExceeded: 11,
  ParameterProblem: 12,
} as const;
export const IcmpCode = {
  NetUnreachable: 0,
  HostUnreachable: 1,
  ProtoUnreachable: 2,
  PortUnreachable: 3,
  FragNeeded: 4,
  AdminProhibited: 13,
  TtlExceeded: 0,
} as const;

/**
 * Is an ICMP message of this type an error, quoting the datagram that caused
 * it (RFC 792, RFC 1812 §4.3.2.3)? The one place this is decided: the
 * pipeline (never answer an error with an error, RFC 1122 §3.2.2; an error is
 * only let in as RELATED to a tracked flow), `trace` and `decode` all ask here.
 * The same five types as the Linux kernel's icmp_is_err()
 * (include/linux/icmp.h), which nf_conntrack_icmpv4_error() uses to decide
 * which messages it looks up as RELATED: Destination Unreachable, Source
 * Quench, Redirect, Time Exceeded and Parameter Problem. Everything else
 * (echo, timestamp, the obsolete and unassigned types) is a query or unknown.
 */
export function isIcmpErrorType(type: number): boolean {
  return (
    type === IcmpType.DestUnreachable ||
    type === IcmpType.SourceQuench ||
    type === IcmpType.Redirect ||
    type === IcmpType.TimeExceeded ||
    type === IcmpType.ParameterProblem
  );
}

const EMPTY = new Uint8Array(0);

export class IcmpView {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;

  wrap(buf: Uint8Array, offset: number, length: number): this {
    this.buf = buf;
    this.off = offset;
    this.len = length;
    return this;
  }

  check(): WireError {
    if (this.off < 0 || this.len < 0 || this.off + this.len > this.buf.length) return WireError.Truncated;
    if (this.len < Wire.ICMP_HEADER_LEN) return WireError.Truncated;
    return WireError.None;
  }

  /** Type. */
  get type(): number {
    return this.buf[this.off + Wire.ICMP_TYPE]!;
  }
  set type(v: number) {
    this.buf[this.off + Wire.ICMP_TYPE] = v & 0xff;
  }
  /** Code. */
  get code(): number {
    return this.buf[this.off + Wire.ICMP_CODE]!;
  }
  set code(v: number) {
    this.buf[this.off + Wire.ICMP_CODE] = v & 0xff;
  }
  /** Checksum. */
  get checksum(): number {
    return readU16(this.buf, this.off + Wire.ICMP_CHECKSUM);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + Wire.ICMP_CHECKSUM, v);
  }
  /** Echo / echo reply: Identifier. */
  get echoId(): number {
    return readU16(this.buf, this.off + Wire.ICMP_ECHO_ID);
  }
  set echoId(v: number) {
    writeU16(this.buf, this.off + Wire.ICMP_ECHO_ID, v);
  }
  /** Echo / echo reply: Sequence Number. */
  get echoSeq(): number {
    return readU16(this.buf, this.off + Wire.ICMP_ECHO_SEQ);
  }
  set echoSeq(v: number) {
    writeU16(this.buf, this.off + Wire.ICMP_ECHO_SEQ, v);
  }
  /** Destination Unreachable / Fragmentation Needed: Next-Hop MTU (RFC 1191 §4). */
  get nextHopMtu(): number {
    return this.echoSeq;
  }
  set nextHopMtu(v: number) {
    this.echoSeq = v;
  }
  /** Bytes 4..7 as one u32 ("rest of header"). */
  get restOfHeader(): number {
    return readU32(this.buf, this.off + Wire.ICMP_ECHO_ID);
  }
  set restOfHeader(v: number) {
    writeU32(this.buf, this.off + Wire.ICMP_ECHO_ID, v);
  }
  /** An error message (quotes the offending datagram). */
  get isError(): boolean {
    return isIcmpErrorType(this.type);
  }
  /** Absolute offset of the quoted IP header in an error (the data after the header otherwise). */
  get quotedOffset(): number {
    return this.off + Wire.ICMP_HEADER_LEN;
  }
  /** Absolute offset of the data after the 8-byte header. */
  get payloadOffset(): number {
    return this.off + Wire.ICMP_HEADER_LEN;
  }
  get payloadLen(): number {
    return this.len - Wire.ICMP_HEADER_LEN;
  }

  /** True if the checksum over the whole message (the view's length) is correct. */
  verifyChecksum(): boolean {
    return foldChecksum(onesComplementSum(this.buf, this.off, this.len)) === 0;
  }
  /** Compute and store the checksum over the whole message. */
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.len);
  }
}

export interface IcmpRepr {
  type: number;
  code: number;
  /** Bytes 4..7: echo id << 16 | seq, next-hop MTU, or 0. */
  restOfHeader: number;
  /** Bytes after the 8-byte header (echo data or the quoted datagram). */
  payloadLen: number;
}

export function parseIcmp(view: IcmpView): IcmpRepr {
  const err = view.check();
  if (err !== WireError.None) throw new WireFormatError(err, 'ICMP');
  return { type: view.type, code: view.code, restOfHeader: view.restOfHeader, payloadLen: view.payloadLen };
}

/**
 * Write the 8-byte header at buf[off..] and fill the checksum over it and the
 * repr.payloadLen bytes that must already follow it. Returns ICMP_HEADER_LEN.
 */
export function emitIcmp(repr: IcmpRepr, buf: Uint8Array, off: number): number {
  buf[off + Wire.ICMP_TYPE] = repr.type & 0xff;
  buf[off + Wire.ICMP_CODE] = repr.code & 0xff;
  writeU16(buf, off + Wire.ICMP_CHECKSUM, 0);
  writeU32(buf, off + Wire.ICMP_ECHO_ID, repr.restOfHeader);
  writeU16(buf, off + Wire.ICMP_CHECKSUM, internetChecksum(buf, off, Wire.ICMP_HEADER_LEN + repr.payloadLen));
  return Wire.ICMP_HEADER_LEN;
}

export function icmpBufferLen(repr: IcmpRepr): number {
  return Wire.ICMP_HEADER_LEN + repr.payloadLen;
}

/**
 * RFC 792 asks errors to quote "the internet header plus the first 64 bits of
 * the original data datagram". RFC 1812 §4.3.2.3 lets routers quote as much as
 * fits in 576 bytes; we keep RFC 792's minimum: it is all that a sender's stack
 * (and our conntrack) needs to find the flow — addresses, protocol, ports —
 * and it keeps the error small for the rate limiter.
 */
export const ICMP_QUOTE_DATA_LEN = 8;
/** Largest quote: a 60-byte IP header + 8 bytes. */
const MAX_QUOTE = 60 + ICMP_QUOTE_DATA_LEN;
/** Module-level scratch: the quote may overlap the output, so it is copied here first, without allocating. */
const quoteScratch = new Uint8Array(MAX_QUOTE);

/** TOS of the errors we generate: precedence 6, internetwork control, as Linux's icmp_send() uses. */
const ICMP_ERROR_TOS = 0xc0;

/**
 * Write a complete IPv4 datagram carrying an ICMP error at buf[off..]: a
 * 20-byte IPv4 header (src `srcIp`, dst `dstIp`, TTL `ttl`, DF set, ident 0 —
 * an atomic datagram, RFC 6864 §4.1), the 8-byte ICMP header (type, code, and
 * `mtu` in bytes 6-7 for Fragmentation Needed, else 0), then the offending IP
 * header plus min(8, rest) bytes of its payload from quoted[quotedOff..
 * quotedOff+quotedLen). Both checksums are filled. `quoted` may be `buf`
 * itself with an overlapping region. Returns the IPv4 total length, or 0 if
 * buf cannot hold it (a counted drop for the caller, never a throw).
 */
export function writeIcmpError(
  buf: Uint8Array,
  off: number,
  type: number,
  code: number,
  mtu: number,
  srcIp: number,
  dstIp: number,
  quoted: Uint8Array,
  quotedOff: number,
  quotedLen: number,
  ttl = 64,
): number {
  if (quotedLen <= 0 || quotedOff < 0 || quotedOff + quotedLen > quoted.length) return 0;
  let hl = (quoted[quotedOff + Wire.IPV4_VER_IHL]! & 0x0f) << 2;
  if (hl < Wire.IPV4_HEADER_LEN) hl = Wire.IPV4_HEADER_LEN;
  let qlen = hl + ICMP_QUOTE_DATA_LEN;
  if (qlen > quotedLen) qlen = quotedLen;
  const total = Wire.IPV4_HEADER_LEN + Wire.ICMP_HEADER_LEN + qlen;
  if (off < 0 || off + total > buf.length) return 0;

  for (let i = 0; i < qlen; i++) quoteScratch[i] = quoted[quotedOff + i]!;

  // IPv4 header.
  writeIpv4Header(buf, off, total, 0, Wire.IPV4_FLAG_DF, ttl, Wire.IPPROTO_ICMP, srcIp, dstIp, ICMP_ERROR_TOS);

  // ICMP header + quote.
  const o = off + Wire.IPV4_HEADER_LEN;
  const isFragNeeded = type === IcmpType.DestUnreachable && code === IcmpCode.FragNeeded;
  buf[o + Wire.ICMP_TYPE] = type & 0xff;
  buf[o + Wire.ICMP_CODE] = code & 0xff;
  writeU16(buf, o + Wire.ICMP_CHECKSUM, 0);
  writeU16(buf, o + Wire.ICMP_ECHO_ID, 0);
  writeU16(buf, o + Wire.ICMP_NEXT_HOP_MTU, isFragNeeded ? mtu : 0);
  for (let i = 0; i < qlen; i++) buf[o + Wire.ICMP_HEADER_LEN + i] = quoteScratch[i]!;
  writeU16(buf, o + Wire.ICMP_CHECKSUM, internetChecksum(buf, o, Wire.ICMP_HEADER_LEN + qlen));
  return total;
}

/** The flow an ICMP error quotes, read by readQuotedFlow() into a caller-owned object (reused, so nothing is allocated). */
export interface QuotedFlow {
  /** Source and destination of the quoted (offending) datagram, as it was sent. */
  src: number;
  dst: number;
  protocol: number;
  /** TCP/UDP ports; for a quoted ICMP echo, the identifier as sport and 0 as dport. */
  sport: number;
  dport: number;
}

/**
 * Read the flow an ICMP error quotes (RFC 792: the offending IP header plus
 * at least 8 bytes of its payload) from the error message at
 * buf[icmpOff..icmpOff+icmpLen). False, and `out` untouched, when the quote
 * is not an IPv4 header followed by 8 bytes; nothing outside the message is
 * read. The quote's own lengths and checksum are not checked: it is usually
 * truncated, and only addresses, protocol and ports identify the flow.
 */
export function readQuotedFlow(buf: Uint8Array, icmpOff: number, icmpLen: number, out: QuotedFlow): boolean {
  const q = icmpOff + Wire.ICMP_HEADER_LEN;
  const avail = icmpLen - Wire.ICMP_HEADER_LEN;
  if (avail < Wire.IPV4_HEADER_LEN) return false;
  const b0 = buf[q + Wire.IPV4_VER_IHL]!;
  const ihl = (b0 & 0x0f) << 2;
  if (b0 >>> 4 !== 4 || ihl < Wire.IPV4_HEADER_LEN || avail < ihl + 8) return false;
  const proto = buf[q + Wire.IPV4_PROTOCOL]!;
  const l4 = q + ihl;
  out.src = readU32(buf, q + Wire.IPV4_SRC);
  out.dst = readU32(buf, q + Wire.IPV4_DST);
  out.protocol = proto;
  if (proto === Wire.IPPROTO_ICMP) {
    out.sport = readU16(buf, l4 + Wire.ICMP_ECHO_ID);
    out.dport = 0;
  } else {
    // TCP and UDP put the ports at the same offsets (and so do SCTP, DCCP, UDP-Lite).
    out.sport = readU16(buf, l4 + Wire.TCP_SRC_PORT);
    out.dport = readU16(buf, l4 + Wire.TCP_DST_PORT);
  }
  return true;
}
