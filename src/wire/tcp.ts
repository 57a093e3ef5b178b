// TCP header (RFC 9293 §3.1, which obsoletes RFC 793; NS from RFC 3540, CWR/ECE from RFC 3168).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |          Source Port          |       Destination Port        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                        Sequence Number                        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Acknowledgment Number                      |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Data |     |N|C|E|U|A|P|R|S|F|                               |
//   | Offset| Rsv |S|W|C|R|C|S|S|Y|I|            Window             |
//   |       |     | |R|E|G|K|H|T|N|N|                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |           Checksum            |         Urgent Pointer        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Options                    |    Padding    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   offset  size  field
//   0       2     source port
//   2       2     destination port
//   4       4     sequence number
//   8       4     acknowledgment number
//   12      2     data offset (4 bits, 32-bit words) | reserved (3) | flags (9, NS..FIN)
//   14      2     window
//   16      2     checksum over pseudo-header + header + data
//   18      2     urgent pointer
//   20      0-40  options
//
// Contract: wrap() records (buf, offset, length) and allocates nothing; the
// caller wraps the IP payload (length = ipv4.payloadLen, the TCP segment
// length). check() must return WireError.None before any accessor is used: it
// guarantees length >= 20 and 20 <= data offset * 4 <= length.
import { foldChecksum, onesComplementSum, pseudoHeaderSum } from './checksum.js';
import { WireError, WireFormatError } from './errors.js';
import { readU16, writeU16, readU32, writeU32 } from './bytes.js';
import { Wire, TCP_HEADER_LEN } from './offsets.js';

export { TCP_HEADER_LEN };
export const TcpFlags = {
  Fin: 0x001,
  Syn: 0x002,
  Rst: 0x004,
  Psh: 0x008,
  Ack: 0x010,
  Urg: 0x020,
  Ece: 0x040,
  Cwr: 0x080,
  Ns: 0x100,
} as const;

const EMPTY = new Uint8Array(0);

export class TcpView {
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
    if (this.len < Wire.TCP_HEADER_LEN) return WireError.Truncated;
    const hl = this.headerLen;
    if (hl < Wire.TCP_HEADER_LEN || hl > this.len) return WireError.BadHeaderLength;
    return WireError.None;
  }

  /** Source Port. */
  get srcPort(): number {
    return readU16(this.buf, this.off + Wire.TCP_SRC_PORT);
  }
  set srcPort(v: number) {
    writeU16(this.buf, this.off + Wire.TCP_SRC_PORT, v);
  }
  /** Destination Port. */
  get dstPort(): number {
    return readU16(this.buf, this.off + Wire.TCP_DST_PORT);
  }
  set dstPort(v: number) {
    writeU16(this.buf, this.off + Wire.TCP_DST_PORT, v);
  }
  /** Sequence Number (u32). */
  get seq(): number {
    return readU32(this.buf, this.off + Wire.TCP_SEQ);
  }
  set seq(v: number) {
    writeU32(this.buf, this.off + Wire.TCP_SEQ, v);
  }
  /** Acknowledgment Number (u32; meaningful when ACK is set). */
  get ack(): number {
    return readU32(this.buf, this.off + Wire.TCP_ACK);
  }
  set ack(v: number) {
    writeU32(this.buf, this.off + Wire.TCP_ACK, v);
  }
  /** Data Offset, converted to bytes. */
  get headerLen(): number {
    return (this.buf[this.off + Wire.TCP_DATA_OFF]! >>> 4) << 2;
  }
  set headerLen(bytes: number) {
    this.buf[this.off + Wire.TCP_DATA_OFF] = (((bytes >>> 2) & 0x0f) << 4) | (this.buf[this.off + Wire.TCP_DATA_OFF]! & 0x0f);
  }
  /** Control bits, NS (0x100) down to FIN (0x001): TcpFlags. */
  get flags(): number {
    return tcpFlagsAt(this.buf, this.off);
  }
  set flags(v: number) {
    this.buf[this.off + Wire.TCP_DATA_OFF] = (this.buf[this.off + Wire.TCP_DATA_OFF]! & 0xf0) | ((v >>> 8) & 0x01);
    this.buf[this.off + Wire.TCP_FLAGS] = v & 0xff;
  }
  /** Window. */
  get window(): number {
    return readU16(this.buf, this.off + Wire.TCP_WINDOW);
  }
  set window(v: number) {
    writeU16(this.buf, this.off + Wire.TCP_WINDOW, v);
  }
  /** Checksum. */
  get checksum(): number {
    return readU16(this.buf, this.off + Wire.TCP_CHECKSUM);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + Wire.TCP_CHECKSUM, v);
  }
  /** Urgent Pointer. */
  get urgent(): number {
    return readU16(this.buf, this.off + Wire.TCP_URGENT);
  }
  set urgent(v: number) {
    writeU16(this.buf, this.off + Wire.TCP_URGENT, v);
  }
  /** Bytes of options (headerLen - 20). */
  get optionsLen(): number {
    return this.headerLen - Wire.TCP_HEADER_LEN;
  }
  /** Absolute offset of the segment data in buf. */
  get payloadOffset(): number {
    return this.off + this.headerLen;
  }
  /** Segment data bytes (view length - header length). */
  get payloadLen(): number {
    return this.len - this.headerLen;
  }

  /** The checksum the segment of `len` bytes (default: the view's length) should carry. */
  computeChecksum(srcIp: number, dstIp: number, len = this.len): number {
    const saved = this.checksum;
    this.checksum = 0;
    const c = foldChecksum(onesComplementSum(this.buf, this.off, len, pseudoHeaderSum(srcIp, dstIp, Wire.IPPROTO_TCP, len)));
    this.checksum = saved;
    return c;
  }
  /** Compute and store the checksum (pseudo-header, header, data). */
  fillChecksum(srcIp: number, dstIp: number, len = this.len): void {
    this.checksum = this.computeChecksum(srcIp, dstIp, len);
  }
  /** True if the checksum is correct (TCP's is mandatory: 0 is not "none"). */
  verifyChecksum(srcIp: number, dstIp: number, len = this.len): boolean {
    const sum = onesComplementSum(this.buf, this.off, len, pseudoHeaderSum(srcIp, dstIp, Wire.IPPROTO_TCP, len));
    return foldChecksum(sum) === 0;
  }
}

/** Control bits (NS..FIN, TcpFlags) of the TCP header at buf[off..]; the caller checked it holds TCP_HEADER_LEN bytes. */
export function tcpFlagsAt(buf: Uint8Array, off: number): number {
  return ((buf[off + Wire.TCP_DATA_OFF]! & 0x01) << 8) | buf[off + Wire.TCP_FLAGS]!;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** TcpFlags bits. */
  flags: number;
  window: number;
  urgent: number;
  /** Raw option bytes (a multiple of 4, at most 40). */
  options: Uint8Array;
  /** Data bytes after the header. */
  payloadLen: number;
}

export function parseTcp(view: TcpView): TcpRepr {
  const err = view.check();
  if (err !== WireError.None) throw new WireFormatError(err, 'TCP');
  return {
    srcPort: view.srcPort,
    dstPort: view.dstPort,
    seq: view.seq,
    ack: view.ack,
    flags: view.flags,
    window: view.window,
    urgent: view.urgent,
    options: view.buf.slice(view.off + Wire.TCP_HEADER_LEN, view.off + view.headerLen),
    payloadLen: view.payloadLen,
  };
}

/**
 * Write the header at buf[off..] and fill the checksum over it and the
 * repr.payloadLen data bytes, which must already be in place after the header.
 * Returns the header length.
 */
export function emitTcp(repr: TcpRepr, buf: Uint8Array, off: number, srcIp: number, dstIp: number): number {
  const optLen = repr.options.length;
  if (optLen % 4 !== 0 || optLen > 40) {
    throw new Error(`TCP options must be a multiple of 4 bytes and at most 40, got ${optLen}`);
  }
  const hl = Wire.TCP_HEADER_LEN + optLen;
  writeU16(buf, off + Wire.TCP_SRC_PORT, repr.srcPort);
  writeU16(buf, off + Wire.TCP_DST_PORT, repr.dstPort);
  writeU32(buf, off + Wire.TCP_SEQ, repr.seq);
  writeU32(buf, off + Wire.TCP_ACK, repr.ack);
  buf[off + Wire.TCP_DATA_OFF] = ((hl >>> 2) << 4) | ((repr.flags >>> 8) & 0x01);
  buf[off + Wire.TCP_FLAGS] = repr.flags & 0xff;
  writeU16(buf, off + Wire.TCP_WINDOW, repr.window);
  writeU16(buf, off + Wire.TCP_CHECKSUM, 0);
  writeU16(buf, off + Wire.TCP_URGENT, repr.urgent);
  for (let i = 0; i < optLen; i++) buf[off + Wire.TCP_HEADER_LEN + i] = repr.options[i]!;
  const len = hl + repr.payloadLen;
  writeU16(buf, off + Wire.TCP_CHECKSUM, foldChecksum(onesComplementSum(buf, off, len, pseudoHeaderSum(srcIp, dstIp, Wire.IPPROTO_TCP, len))));
  return hl;
}

/** Bytes of the whole segment: header + options + data. */
export function tcpBufferLen(repr: TcpRepr): number {
  return Wire.TCP_HEADER_LEN + repr.options.length + repr.payloadLen;
}
