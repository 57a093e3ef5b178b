// IPv4 header (RFC 791 §3.1).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |Version|  IHL  |Type of Service|          Total Length         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |         Identification        |Flags|      Fragment Offset    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Time to Live |    Protocol   |         Header Checksum       |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                       Source Address                          |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Destination Address                        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Options                    |    Padding    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   offset  size  field
//   0       1     version (high nibble) | IHL in 32-bit words (low nibble)
//   1       1     DSCP (6 bits) | ECN (2 bits), formerly Type of Service (RFC 2474, RFC 3168)
//   2       2     total length (header + payload, bytes)
//   4       2     identification
//   6       2     flags (bit 15 reserved, 14 DF, 13 MF) | fragment offset in 8-byte units
//   8       1     time to live
//   9       1     protocol (IANA numbers: 1 ICMP, 6 TCP, 17 UDP)
//   10      2     header checksum (RFC 1071 over the header only)
//   12      4     source address
//   16      4     destination address
//   20      0-40  options (IHL > 5)
//
// Contract: wrap() records (buf, offset, length) and allocates nothing. check()
// must return WireError.None before any accessor is used: it guarantees
// length >= 20, version 4, IHL >= 5, IHL*4 <= length, and
// IHL*4 <= total length <= length. Bytes after the total length (Ethernet's
// minimum-frame padding, RFC 894) are allowed and ignored: payloadLen comes
// from the total length, not from `length`. check() does NOT verify the
// checksum (verifyChecksum() does) so that callers choose what a bad checksum
// costs. Addresses are u32 numbers in host order. Unknown protocols are plain
// numbers.
import { foldChecksum, internetChecksum, onesComplementSum, updateChecksum16, updateChecksum32 } from './checksum.js';
import { WireError, WireFormatError } from './errors.js';
import { readU16, writeU16, readU32, writeU32 } from './bytes.js';
import { Wire, IPV4_HEADER_LEN, IPV4_MAX_HEADER_LEN } from './offsets.js';

export { IPV4_HEADER_LEN, IPV4_MAX_HEADER_LEN };
/** The IP protocols silkworm names (offsets.ts holds the numbers). */
export const IpProtocol = { Icmp: Wire.IPPROTO_ICMP, Tcp: Wire.IPPROTO_TCP, Udp: Wire.IPPROTO_UDP } as const;

const EMPTY = new Uint8Array(0);

export class Ipv4View {
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
    if (this.len < Wire.IPV4_HEADER_LEN) return WireError.Truncated;
    const b0 = this.buf[this.off + Wire.IPV4_VER_IHL]!;
    if (b0 >>> 4 !== 4) return WireError.BadVersion;
    const hl = (b0 & 0x0f) << 2;
    if (hl < Wire.IPV4_HEADER_LEN || hl > this.len) return WireError.BadHeaderLength;
    const total = this.totalLen;
    if (total < hl || total > this.len) return WireError.BadTotalLength;
    return WireError.None;
  }

  // --- fields -------------------------------------------------------------
  /** Version: 4. */
  get version(): number {
    return this.buf[this.off + Wire.IPV4_VER_IHL]! >>> 4;
  }
  set version(v: number) {
    this.buf[this.off + Wire.IPV4_VER_IHL] = ((v & 0x0f) << 4) | (this.buf[this.off + Wire.IPV4_VER_IHL]! & 0x0f);
  }
  /** Internet Header Length, in bytes (IHL * 4). */
  get headerLen(): number {
    return (this.buf[this.off + Wire.IPV4_VER_IHL]! & 0x0f) << 2;
  }
  set headerLen(bytes: number) {
    this.buf[this.off + Wire.IPV4_VER_IHL] = (this.buf[this.off + Wire.IPV4_VER_IHL]! & 0xf0) | ((bytes >>> 2) & 0x0f);
  }
  /** Differentiated Services field + ECN (the old Type of Service byte). */
  get dscpEcn(): number {
    return this.buf[this.off + Wire.IPV4_DSCP_ECN]!;
  }
  set dscpEcn(v: number) {
    this.buf[this.off + Wire.IPV4_DSCP_ECN] = v & 0xff;
  }
  /** Total Length: header + data, in bytes. */
  get totalLen(): number {
    return readU16(this.buf, this.off + Wire.IPV4_TOTAL_LEN);
  }
  set totalLen(v: number) {
    writeU16(this.buf, this.off + Wire.IPV4_TOTAL_LEN, v);
  }
  /** Identification. */
  get ident(): number {
    return readU16(this.buf, this.off + Wire.IPV4_IDENT);
  }
  set ident(v: number) {
    writeU16(this.buf, this.off + Wire.IPV4_IDENT, v);
  }
  private get flagsFrag(): number {
    return readU16(this.buf, this.off + Wire.IPV4_FLAGS_FRAG);
  }
  private set flagsFrag(v: number) {
    writeU16(this.buf, this.off + Wire.IPV4_FLAGS_FRAG, v);
  }
  /** Flags bit 1: Don't Fragment. */
  get dontFrag(): boolean {
    return (this.flagsFrag & Wire.IPV4_FLAG_DF) !== 0;
  }
  set dontFrag(v: boolean) {
    this.flagsFrag = v ? this.flagsFrag | Wire.IPV4_FLAG_DF : this.flagsFrag & ~Wire.IPV4_FLAG_DF;
  }
  /** Flags bit 2: More Fragments. */
  get moreFrags(): boolean {
    return (this.flagsFrag & Wire.IPV4_FLAG_MF) !== 0;
  }
  set moreFrags(v: boolean) {
    this.flagsFrag = v ? this.flagsFrag | Wire.IPV4_FLAG_MF : this.flagsFrag & ~Wire.IPV4_FLAG_MF;
  }
  /** Flags bit 0: reserved, must be zero (RFC 791). Exposed so a decoder can show it. */
  get reservedFlag(): boolean {
    return (this.flagsFrag & Wire.IPV4_FLAG_RESERVED) !== 0;
  }
  /** Fragment Offset, converted to bytes (the field counts 8-byte units). */
  get fragOffset(): number {
    return (this.flagsFrag & Wire.IPV4_FRAG_OFFSET_MASK) << 3;
  }
  set fragOffset(bytes: number) {
    this.flagsFrag = (this.flagsFrag & ~Wire.IPV4_FRAG_OFFSET_MASK) | ((bytes >>> 3) & Wire.IPV4_FRAG_OFFSET_MASK);
  }
  /** Zero the flags and fragment offset (bytes 6-7), reserved bit included. */
  clearFlags(): void {
    this.flagsFrag = 0;
  }
  /** Part of a fragmented datagram: MF set or a non-zero offset (RFC 791 §2.3). */
  get isFragment(): boolean {
    return (this.flagsFrag & (Wire.IPV4_FLAG_MF | Wire.IPV4_FRAG_OFFSET_MASK)) !== 0;
  }
  /** Time to Live. */
  get ttl(): number {
    return this.buf[this.off + Wire.IPV4_TTL]!;
  }
  set ttl(v: number) {
    this.buf[this.off + Wire.IPV4_TTL] = v & 0xff;
  }
  /** Protocol of the payload (IpProtocol). */
  get protocol(): number {
    return this.buf[this.off + Wire.IPV4_PROTOCOL]!;
  }
  set protocol(v: number) {
    this.buf[this.off + Wire.IPV4_PROTOCOL] = v & 0xff;
  }
  /** Header Checksum. */
  get checksum(): number {
    return readU16(this.buf, this.off + Wire.IPV4_CHECKSUM);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + Wire.IPV4_CHECKSUM, v);
  }
  /** Source Address (u32, host order). */
  get srcAddr(): number {
    return readU32(this.buf, this.off + Wire.IPV4_SRC);
  }
  set srcAddr(v: number) {
    writeU32(this.buf, this.off + Wire.IPV4_SRC, v);
  }
  /** Destination Address (u32, host order). */
  get dstAddr(): number {
    return readU32(this.buf, this.off + Wire.IPV4_DST);
  }
  set dstAddr(v: number) {
    writeU32(this.buf, this.off + Wire.IPV4_DST, v);
  }
  /** Bytes of options (headerLen - 20). */
  get optionsLen(): number {
    return this.headerLen - Wire.IPV4_HEADER_LEN;
  }
  /** Absolute offset in buf of the payload (after options). */
  get payloadOffset(): number {
    return this.off + this.headerLen;
  }
  /** Payload bytes according to the total length (padding after it excluded). */
  get payloadLen(): number {
    return this.totalLen - this.headerLen;
  }

  // --- checksums ------------------------------------------------------------
  /** True if the header checksum is correct (the one's complement sum of the header is 0xffff). */
  verifyChecksum(): boolean {
    return foldChecksum(onesComplementSum(this.buf, this.off, this.headerLen)) === 0;
  }
  /** Compute and store the header checksum. */
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.headerLen);
  }
  /**
   * TTL - 1 with the checksum updated incrementally (RFC 1624 eqn. 3; TTL is
   * the high byte of the word at offset 8, RFC 1812 §5.3.1). A TTL of 0 is left
   * alone: callers drop (and answer Time Exceeded) at TTL <= 1 before this.
   */
  decrementTtl(): void {
    const ttl = this.ttl;
    if (ttl === 0) return;
    const proto = this.protocol;
    this.checksum = updateChecksum16(this.checksum, (ttl << 8) | proto, ((ttl - 1) << 8) | proto);
    this.ttl = ttl - 1;
  }
  /** Set the source address and update the checksum incrementally (RFC 1624). */
  rewriteSrcAddr(v: number): void {
    this.checksum = updateChecksum32(this.checksum, this.srcAddr, v >>> 0);
    this.srcAddr = v;
  }
  /** Set the destination address and update the checksum incrementally (RFC 1624). */
  rewriteDstAddr(v: number): void {
    this.checksum = updateChecksum32(this.checksum, this.dstAddr, v >>> 0);
    this.dstAddr = v;
  }
}


/** An IPv4 header's values. The checksum is not here: emit computes it, verifyChecksum() checks it. */
export interface Ipv4Repr {
  src: number;
  dst: number;
  protocol: number;
  ttl: number;
  /** Bytes after the header (total length - header length). */
  payloadLen: number;
  dscpEcn: number;
  ident: number;
  dontFrag: boolean;
  moreFrags: boolean;
  /** Fragment offset in bytes (a multiple of 8). */
  fragOffset: number;
  /** Raw option bytes (length a multiple of 4, at most 40); empty when IHL = 5. */
  options: Uint8Array;
}

/** Check, then read the header into a repr. Throws WireFormatError on a bad header (not for the hot path). */
export function parseIpv4(view: Ipv4View): Ipv4Repr {
  const err = view.check();
  if (err !== WireError.None) throw new WireFormatError(err, 'IPv4');
  return {
    src: view.srcAddr,
    dst: view.dstAddr,
    protocol: view.protocol,
    ttl: view.ttl,
    payloadLen: view.payloadLen,
    dscpEcn: view.dscpEcn,
    ident: view.ident,
    dontFrag: view.dontFrag,
    moreFrags: view.moreFrags,
    fragOffset: view.fragOffset,
    options: view.buf.slice(view.off + Wire.IPV4_HEADER_LEN, view.off + view.headerLen),
  };
}

/**
 * Write the header (options included, checksum filled) at buf[off..]; returns
 * the header length. Every header byte is written, so a reused buffer is fine.
 */
export function emitIpv4(repr: Ipv4Repr, buf: Uint8Array, off: number): number {
  const optLen = repr.options.length;
  if (optLen % 4 !== 0 || optLen > Wire.IPV4_MAX_HEADER_LEN - Wire.IPV4_HEADER_LEN) {
    throw new Error(`IPv4 options must be a multiple of 4 bytes and at most 40, got ${optLen}`);
  }
  const hl = Wire.IPV4_HEADER_LEN + optLen;
  const total = hl + repr.payloadLen;
  if (total > 0xffff) throw new Error(`IPv4 total length ${total} exceeds 65535`);
  buf[off + Wire.IPV4_VER_IHL] = 0x40 | (hl >>> 2);
  buf[off + Wire.IPV4_DSCP_ECN] = repr.dscpEcn & 0xff;
  writeU16(buf, off + Wire.IPV4_TOTAL_LEN, total);
  writeU16(buf, off + Wire.IPV4_IDENT, repr.ident);
  writeU16(buf, off + Wire.IPV4_FLAGS_FRAG, (repr.dontFrag ? Wire.IPV4_FLAG_DF : 0) | (repr.moreFrags ? Wire.IPV4_FLAG_MF : 0) | ((repr.fragOffset >>> 3) & Wire.IPV4_FRAG_OFFSET_MASK));
  buf[off + Wire.IPV4_TTL] = repr.ttl & 0xff;
  buf[off + Wire.IPV4_PROTOCOL] = repr.protocol & 0xff;
  writeU16(buf, off + Wire.IPV4_CHECKSUM, 0);
  writeU32(buf, off + Wire.IPV4_SRC, repr.src);
  writeU32(buf, off + Wire.IPV4_DST, repr.dst);
  for (let i = 0; i < optLen; i++) buf[off + Wire.IPV4_HEADER_LEN + i] = repr.options[i]!;
  writeU16(buf, off + Wire.IPV4_CHECKSUM, internetChecksum(buf, off, hl));
  return hl;
}

/**
 * The hot path's emitter: a 20-byte header without options at buf[off..],
 * checksum filled, no repr and no allocation. `flagsFrag` is the 16-bit
 * flags/fragment word (IPV4_FLAG_DF, or 0). Writes all 20 bytes.
 */
export function writeIpv4Header(
  buf: Uint8Array,
  off: number,
  totalLen: number,
  ident: number,
  flagsFrag: number,
  ttl: number,
  protocol: number,
  src: number,
  dst: number,
  dscpEcn = 0,
): void {
  const w0 = (Wire.IPV4_VER_IHL_NO_OPTIONS << 8) | (dscpEcn & 0xff);
  const w4 = ((ttl & 0xff) << 8) | (protocol & 0xff);
  // The checksum from the values in hand (RFC 1071: the ten 16-bit words of
  // the header, the checksum word 0), not by reading the written bytes back:
  // this runs once per encapsulated packet.
  let sum = w0 + (totalLen & 0xffff) + (ident & 0xffff) + (flagsFrag & 0xffff) + w4 + (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const csum = ~sum & 0xffff;
  buf[off + Wire.IPV4_VER_IHL] = w0 >>> 8;
  buf[off + Wire.IPV4_DSCP_ECN] = w0 & 0xff;
  writeU16(buf, off + Wire.IPV4_TOTAL_LEN, totalLen);
  writeU16(buf, off + Wire.IPV4_IDENT, ident);
  writeU16(buf, off + Wire.IPV4_FLAGS_FRAG, flagsFrag);
  buf[off + Wire.IPV4_TTL] = w4 >>> 8;
  buf[off + Wire.IPV4_PROTOCOL] = w4 & 0xff;
  writeU16(buf, off + Wire.IPV4_CHECKSUM, csum);
  writeU32(buf, off + Wire.IPV4_SRC, src);
  writeU32(buf, off + Wire.IPV4_DST, dst);
}

/** Bytes of the whole datagram the repr describes: header + options + payload. */
export function ipv4BufferLen(repr: Ipv4Repr): number {
  return Wire.IPV4_HEADER_LEN + repr.options.length + repr.payloadLen;
}
