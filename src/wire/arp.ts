// ARP for IPv4 over Ethernet (RFC 826; field names as in RFC 5227 and smoltcp).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |         Hardware Type         |         Protocol Type         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  HW Addr Len  | Proto Addr Len|           Operation           |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                 Sender Hardware Address (6)                   |
//   +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                               |  Sender Protocol Address (4)  |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//   |                               |                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//   |                 Target Hardware Address (6)                   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                  Target Protocol Address (4)                  |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   offset  size  field
//   0       2     hardware type (1 = Ethernet)
//   2       2     protocol type (0x0800 = IPv4)
//   4       1     hardware address length (6)
//   5       1     protocol address length (4)
//   6       2     operation (1 request, 2 reply)
//   8       6     sender hardware address
//   14      4     sender protocol address
//   18      6     target hardware address
//   24      4     target protocol address
//
// Contract: wrap() records (buf, offset, length) and allocates nothing. check()
// must return WireError.None before any accessor is used: it guarantees
// length >= 28 and an Ethernet/IPv4 packet (hardware type 1, protocol 0x0800,
// lengths 6 and 4), else WireError.Unsupported — the only kind silkworm uses
// (containers are NOARP; this is for the underlay and the decoder).
import { WireError, WireFormatError } from './errors.js';
import { formatMacKey, macKeyAt, macKeyFromString, writeMacKey } from './ethernet.js';
import { readU16, writeU16, readU32, writeU32 } from './bytes.js';
import { Wire } from './offsets.js';

export const ARP_HEADER_LEN = 28;
export const ArpOperation = { Request: 1, Reply: 2 } as const;
export const ARP_HTYPE_ETHERNET = 1;

const EMPTY = new Uint8Array(0);

export class ArpView {
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
    if (this.len < ARP_HEADER_LEN) return WireError.Truncated;
    if (this.hardwareType !== ARP_HTYPE_ETHERNET || this.protocolType !== Wire.ETHERTYPE_IPV4) return WireError.Unsupported;
    if (this.hardwareLen !== 6 || this.protocolLen !== 4) return WireError.Unsupported;
    return WireError.None;
  }

  /** Hardware Type. */
  get hardwareType(): number {
    return readU16(this.buf, this.off);
  }
  /** Protocol Type (an EtherType). */
  get protocolType(): number {
    return readU16(this.buf, this.off + 2);
  }
  /** Hardware Address Length. */
  get hardwareLen(): number {
    return this.buf[this.off + 4]!;
  }
  /** Protocol Address Length. */
  get protocolLen(): number {
    return this.buf[this.off + 5]!;
  }
  /** Operation (ArpOperation). */
  get operation(): number {
    return readU16(this.buf, this.off + 6);
  }
  set operation(v: number) {
    writeU16(this.buf, this.off + 6, v);
  }
  /** Sender Hardware Address as a 48-bit key (macKeyAt). */
  get senderMacKey(): number {
    return macKeyAt(this.buf, this.off + 8);
  }
  set senderMacKey(k: number) {
    writeMacKey(this.buf, this.off + 8, k);
  }
  /** Sender Protocol Address (u32). */
  get senderIp(): number {
    return readU32(this.buf, this.off + 14);
  }
  set senderIp(v: number) {
    writeU32(this.buf, this.off + 14, v);
  }
  /** Target Hardware Address as a 48-bit key (macKeyAt). */
  get targetMacKey(): number {
    return macKeyAt(this.buf, this.off + 18);
  }
  set targetMacKey(k: number) {
    writeMacKey(this.buf, this.off + 18, k);
  }
  /** Target Protocol Address (u32). */
  get targetIp(): number {
    return readU32(this.buf, this.off + 24);
  }
  set targetIp(v: number) {
    writeU32(this.buf, this.off + 24, v);
  }
}

export interface ArpRepr {
  operation: number;
  senderMac: string;
  senderIp: number;
  targetMac: string;
  targetIp: number;
}

export function parseArp(view: ArpView): ArpRepr {
  const err = view.check();
  if (err !== WireError.None) throw new WireFormatError(err, 'ARP');
  return {
    operation: view.operation,
    senderMac: formatMacKey(view.senderMacKey),
    senderIp: view.senderIp,
    targetMac: formatMacKey(view.targetMacKey),
    targetIp: view.targetIp,
  };
}

/** Write the 28-byte Ethernet/IPv4 ARP packet at buf[off..]; returns ARP_HEADER_LEN. */
export function emitArp(repr: ArpRepr, buf: Uint8Array, off: number): number {
  buf[off] = 0;
  buf[off + 1] = ARP_HTYPE_ETHERNET;
  buf[off + 2] = 0x08;
  buf[off + 3] = 0x00;
  buf[off + 4] = 6;
  buf[off + 5] = 4;
  buf[off + 6] = (repr.operation >>> 8) & 0xff;
  buf[off + 7] = repr.operation & 0xff;
  writeMacKey(buf, off + 8, macKeyFromString(repr.senderMac));
  writeU32(buf, off + 14, repr.senderIp);
  writeMacKey(buf, off + 18, macKeyFromString(repr.targetMac));
  writeU32(buf, off + 24, repr.targetIp);
  return ARP_HEADER_LEN;
}

export function arpBufferLen(_repr: ArpRepr): number {
  return ARP_HEADER_LEN;
}
