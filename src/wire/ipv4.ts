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

export const IPV4_HEADER_LEN = 20;
export const IPV4_MAX_HEADER_LEN = 60;
export const IpProtocol = { Icmp: 1, Tcp: 6, Udp: 17 } as const;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const FRAG_MASK = 0x1fff;

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
    if (this.len < IPV4_HEADER_LEN) return WireError.Truncated;
    const b0 = this.buf[this.off]!;
    if (b0 >>> 4 !== 4) return WireError.BadVersion;
    const hl = (b0 & 0x0f) << 2;
    if (hl < IPV4_HEADER_LEN || hl > this.len) return WireError.BadHeaderLength;
    const total = this.totalLen;
    if (total < hl || total > this.len) return WireError.BadTotalLength;
    return WireError.None;
  }

  // --- fields -------------------------------------------------------------
  /** Version: 4. */
  get version(): number {
    return this.buf[this.off]! >>> 4;
  }
  set version(v: number) {
    this.buf[this.off] = ((v & 0x0f) << 4) | (this.buf[this.off]! & 0x0f);
  }
  /** Internet Header Length, in bytes (IHL * 4). */
  get headerLen(): number {
    return (this.buf[this.off]! & 0x0f) << 2;
  }
  set headerLen(bytes: number) {
    this.buf[this.off] = (this.buf[this.off]! & 0xf0) | ((bytes >>> 2) & 0x0f);
  }
  /** Differentiated Services field + ECN (the old Type of Service byte). */
  get dscpEcn(): number {
    return this.buf[this.off + 1]!;
  }
  set dscpEcn(v: number) {
    this.buf[this.off + 1] = v & 0xff;
  }
  /** Total Length: header + data, in bytes. */
  get totalLen(): number {
    return readU16(this.buf, this.off + 2);
  }
  set totalLen(v: number) {
    writeU16(this.buf, this.off + 2, v);
  }
  /** Identification. */
  get ident(): number {
    return readU16(this.buf, this.off + 4);
  }
  set ident(v: number) {
    writeU16(this.buf, this.off + 4, v);
  }
  private get flagsFrag(): number {
    return readU16(this.buf, this.off + 6);
  }
  private set flagsFrag(v: number) {
    writeU16(this.buf, this.off + 6, v);
  }
  /** Flags bit 1: Don't Fragment. */
  get dontFrag(): boolean {
    return (this.flagsFrag & FLAG_DF) !== 0;
  }
  set dontFrag(v: boolean) {
    this.flagsFrag = v ? this.flagsFrag | FLAG_DF : this.flagsFrag & ~FLAG_DF;
  }
  /** Flags bit 2: More Fragments. */
  get moreFrags(): boolean {
    return (this.flagsFrag & FLAG_MF) !== 0;
  }
  set moreFrags(v: boolean) {
    this.flagsFrag = v ? this.flagsFrag | FLAG_MF : this.flagsFrag & ~FLAG_MF;
  }
  /** Flags bit 0: reserved, must be zero (RFC 791). Exposed so a decoder can show it. */
  get reservedFlag(): boolean {
    return (this.flagsFrag & 0x8000) !== 0;
  }
  /** Fragment Offset, converted to bytes (the field counts 8-byte units). */
  get fragOffset(): number {
    return (this.flagsFrag & FRAG_MASK) << 3;
  }
  set fragOffset(bytes: number) {
    this.flagsFrag = (this.flagsFrag & ~FRAG_MASK) | ((bytes >>> 3) & FRAG_MASK);
  }
  /** Zero the flags and fragment offset (bytes 6-7), reserved bit included. */
  clearFlags(): void {
    this.flagsFrag = 0;
  }
  /** Part of a fragmented datagram: MF set or a non-zero offset (RFC 791 §2.3). */
  get isFragment(): boolean {
    return (this.flagsFrag & (FLAG_MF | FRAG_MASK)) !== 0;
  }
  /** Time to Live. */
  get ttl(): number {
    return this.buf[this.off + 8]!;
  }
  set ttl(v: number) {
    this.buf[this.off + 8] = v & 0xff;
  }
  /** Protocol of the payload (IpProtocol). */
  get protocol(): number {
    return this.buf[this.off + 9]!;
  }
  set protocol(v: number) {
    this.buf[this.off + 9] = v & 0xff;
  }
  /** Header Checksum. */
  get checksum(): number {
    return readU16(this.buf, this.off + 10);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + 10, v);
  }
  /** Source Address (u32, host order). */
  get srcAddr(): number {
    return readU32(this.buf, this.off + 12);
  }
  set srcAddr(v: number) {
    writeU32(this.buf, this.off + 12, v);
  }
  /** Destination Address (u32, host order). */
  get dstAddr(): number {
    return readU32(this.buf, this.off + 16);
  }
  set dstAddr(v: number) {
    writeU32(this.buf, this.off + 16, v);
  }
  /** Bytes of options (headerLen - 20). */
  get optionsLen(): number {
    return this.headerLen - IPV4_HEADER_LEN;
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

export { readU32, writeU32 };

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
    options: view.buf.slice(view.off + IPV4_HEADER_LEN, view.off + view.headerLen),
  };
}

/**
 * Write the header (options included, checksum filled) at buf[off..]; returns
 * the header length. Every header byte is written, so a reused buffer is fine.
 */
export function emitIpv4(repr: Ipv4Repr, buf: Uint8Array, off: number): number {
  const optLen = repr.options.length;
  if (optLen % 4 !== 0 || optLen > IPV4_MAX_HEADER_LEN - IPV4_HEADER_LEN) {
    throw new Error(`IPv4 options must be a multiple of 4 bytes and at most 40, got ${optLen}`);
  }
  const hl = IPV4_HEADER_LEN + optLen;
  const total = hl + repr.payloadLen;
  if (total > 0xffff) throw new Error(`IPv4 total length ${total} exceeds 65535`);
  buf[off] = 0x40 | (hl >>> 2);
  buf[off + 1] = repr.dscpEcn & 0xff;
  buf[off + 2] = total >>> 8;
  buf[off + 3] = total & 0xff;
  buf[off + 4] = (repr.ident >>> 8) & 0xff;
  buf[off + 5] = repr.ident & 0xff;
  const ff = (repr.dontFrag ? FLAG_DF : 0) | (repr.moreFrags ? FLAG_MF : 0) | ((repr.fragOffset >>> 3) & FRAG_MASK);
  buf[off + 6] = ff >>> 8;
  buf[off + 7] = ff & 0xff;
  buf[off + 8] = repr.ttl & 0xff;
  buf[off + 9] = repr.protocol & 0xff;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  writeU32(buf, off + 12, repr.src);
  writeU32(buf, off + 16, repr.dst);
  for (let i = 0; i < optLen; i++) buf[off + IPV4_HEADER_LEN + i] = repr.options[i]!;
  const c = internetChecksum(buf, off, hl);
  buf[off + 10] = c >>> 8;
  buf[off + 11] = c & 0xff;
  return hl;
}

/** Bytes of the whole datagram the repr describes: header + options + payload. */
export function ipv4BufferLen(repr: Ipv4Repr): number {
  return IPV4_HEADER_LEN + repr.options.length + repr.payloadLen;
}
