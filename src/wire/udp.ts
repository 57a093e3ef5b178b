// UDP header (RFC 768).
//
//    0      7 8     15 16    23 24    31
//   +--------+--------+--------+--------+
//   |     Source      |   Destination   |
//   |      Port       |      Port       |
//   +--------+--------+--------+--------+
//   |                 |                 |
//   |     Length      |    Checksum     |
//   +--------+--------+--------+--------+
//   |          data octets ...
//   +---------------- ...
//
//   offset  size  field
//   0       2     source port
//   2       2     destination port
//   4       2     length (header + data, bytes)
//   6       2     checksum over pseudo-header + header + data; 0 = none sent
//   8       -     data
//
// Contract: wrap() records (buf, offset, length) and allocates nothing; the
// caller wraps the IP payload (offset = ipv4.payloadOffset, length =
// ipv4.payloadLen). check() must return WireError.None before any accessor
// is used: it guarantees length >= 8 and 8 <= Length field <= length, so
// payloadOffset + payloadLen stay inside the view. A zero checksum means the
// sender computed none (RFC 768); RFC 7348 §5 lets VXLAN senders do that, so
// verifyChecksum() accepts it.
import { foldChecksum, onesComplementSum, pseudoHeaderSum } from './checksum.js';
import { WireError, WireFormatError } from './errors.js';
import { readU16, writeU16 } from './bytes.js';
import { Wire, UDP_HEADER_LEN } from './offsets.js';

export { UDP_HEADER_LEN };

const EMPTY = new Uint8Array(0);

export class UdpView {
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
    if (this.len < Wire.UDP_HEADER_LEN) return WireError.Truncated;
    const l = this.length;
    if (l < Wire.UDP_HEADER_LEN || l > this.len) return WireError.BadLength;
    return WireError.None;
  }

  /** Source Port. */
  get srcPort(): number {
    return readU16(this.buf, this.off + Wire.UDP_SRC_PORT);
  }
  set srcPort(v: number) {
    writeU16(this.buf, this.off + Wire.UDP_SRC_PORT, v);
  }
  /** Destination Port. */
  get dstPort(): number {
    return readU16(this.buf, this.off + Wire.UDP_DST_PORT);
  }
  set dstPort(v: number) {
    writeU16(this.buf, this.off + Wire.UDP_DST_PORT, v);
  }
  /** Length: header + data, in bytes. */
  get length(): number {
    return readU16(this.buf, this.off + Wire.UDP_LENGTH);
  }
  set length(v: number) {
    writeU16(this.buf, this.off + Wire.UDP_LENGTH, v);
  }
  /** Checksum (0 = none). */
  get checksum(): number {
    return readU16(this.buf, this.off + Wire.UDP_CHECKSUM);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + Wire.UDP_CHECKSUM, v);
  }
  /** Absolute offset of the data in buf. */
  get payloadOffset(): number {
    return this.off + Wire.UDP_HEADER_LEN;
  }
  /** Data bytes according to the Length field. */
  get payloadLen(): number {
    return this.length - Wire.UDP_HEADER_LEN;
  }

  /** The checksum this datagram should carry (never 0: a computed 0 is sent as 0xffff, RFC 768). */
  computeChecksum(srcIp: number, dstIp: number): number {
    const l = this.length;
    const saved = this.checksum;
    this.checksum = 0;
    const c = foldChecksum(onesComplementSum(this.buf, this.off, l, pseudoHeaderSum(srcIp, dstIp, Wire.IPPROTO_UDP, l)));
    this.checksum = saved;
    return c === 0 ? 0xffff : c;
  }
  /** Compute and store the checksum over the pseudo-header, header and Length-field bytes. */
  fillChecksum(srcIp: number, dstIp: number): void {
    this.checksum = this.computeChecksum(srcIp, dstIp);
  }
  /** True if the checksum is 0 (none sent) or correct. */
  verifyChecksum(srcIp: number, dstIp: number): boolean {
    if (this.checksum === 0) return true;
    const l = this.length;
    const sum = onesComplementSum(this.buf, this.off, l, pseudoHeaderSum(srcIp, dstIp, Wire.IPPROTO_UDP, l));
    return foldChecksum(sum) === 0;
  }
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** Data bytes after the 8-byte header. */
  payloadLen: number;
}

export function parseUdp(view: UdpView): UdpRepr {
  const err = view.check();
  if (err !== WireError.None) throw new WireFormatError(err, 'UDP');
  return { srcPort: view.srcPort, dstPort: view.dstPort, payloadLen: view.payloadLen };
}

/**
 * Write the header at buf[off..]; returns UDP_HEADER_LEN. The data must already
 * be at buf[off+8..] when `checksum` is true (the default): the checksum covers
 * it. With `checksum` false the field is 0, as VXLAN senders may do (RFC 7348 §5).
 */
export function emitUdp(
  repr: UdpRepr,
  buf: Uint8Array,
  off: number,
  srcIp: number,
  dstIp: number,
  checksum = true,
): number {
  const l = Wire.UDP_HEADER_LEN + repr.payloadLen;
  if (l > 0xffff) throw new Error(`UDP length ${l} exceeds 65535`);
  writeUdpHeader(buf, off, repr.srcPort, repr.dstPort, l);
  if (checksum) {
    const c = foldChecksum(onesComplementSum(buf, off, l, pseudoHeaderSum(srcIp, dstIp, Wire.IPPROTO_UDP, l)));
    writeU16(buf, off + Wire.UDP_CHECKSUM, c === 0 ? 0xffff : c);
  }
  return Wire.UDP_HEADER_LEN;
}

/**
 * The hot path's emitter: the 8-byte header at buf[off..] with checksum 0
 * (none, as VXLAN senders may send, RFC 7348 §5). `length` is header + data.
 * Writes all 8 bytes; no repr, no allocation.
 */
export function writeUdpHeader(buf: Uint8Array, off: number, srcPort: number, dstPort: number, length: number): void {
  writeU16(buf, off + Wire.UDP_SRC_PORT, srcPort);
  writeU16(buf, off + Wire.UDP_DST_PORT, dstPort);
  writeU16(buf, off + Wire.UDP_LENGTH, length);
  writeU16(buf, off + Wire.UDP_CHECKSUM, 0);
}

/** Bytes of the whole datagram: header + data. */
export function udpBufferLen(repr: UdpRepr): number {
  return Wire.UDP_HEADER_LEN + repr.payloadLen;
}
