// VXLAN header (RFC 7348 §5) with the Group Based Policy extension
// (draft-smith-vxlan-group-policy §2.1), as Linux's `vxlan ... gbp` speaks it.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |G|R|R|R|I|R|R|R|R|D|R|R|A|R|R|R|        Group Policy ID        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |          VXLAN Network Identifier (VNI)       |   Reserved    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   offset  size  field
//   0       1     flags: G 0x80 (Group Policy ID present), I 0x08 (VNI valid)
//   1       1     GBP flags: D 0x40 (Don't Learn), A 0x08 (policy Applied)
//   2       2     Group Policy ID (big-endian; reserved, zero, when G is clear)
//   4       3     VNI
//   7       1     reserved
//   8       -     inner Ethernet frame
//
// Kernel mapping (interop): GBP ID <-> skb->mark & 0xffff, D <-> mark 0x400000,
// A <-> mark 0x80000. The kernel sends flags 0x08 (no G) for mark 0 and 0x88
// otherwise; writeVxlanHeader() does the same.
//
// Contract: wrap() records (buf, offset, length) and allocates nothing; the
// caller wraps the UDP payload. check() must return WireError.None before any
// accessor is used: it guarantees length >= 8 and the I flag set (RFC 7348 §5:
// "The I flag MUST be set to 1 for a valid VXLAN Network ID"). Other reserved
// bits are ignored on receipt, as RFC 7348 asks.
import { WireError, WireFormatError } from './errors.js';
import { readU16, writeU16 } from './bytes.js';

export const VXLAN_HEADER_LEN = 8;
export const VXLAN_PORT = 4789;
export const VxlanFlags = { G: 0x80, I: 0x08 } as const;
export const VxlanGbpFlags = { D: 0x40, A: 0x08 } as const;

const EMPTY = new Uint8Array(0);

export class VxlanView {
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
    if (this.len < VXLAN_HEADER_LEN) return WireError.Truncated;
    if ((this.buf[this.off]! & VxlanFlags.I) === 0) return WireError.BadFlags;
    return WireError.None;
  }

  /** Flags (byte 0): VxlanFlags. */
  get flags(): number {
    return this.buf[this.off]!;
  }
  set flags(v: number) {
    this.buf[this.off] = v & 0xff;
  }
  /** GBP flags (byte 1): VxlanGbpFlags. */
  get gbpFlags(): number {
    return this.buf[this.off + 1]!;
  }
  set gbpFlags(v: number) {
    this.buf[this.off + 1] = v & 0xff;
  }
  /** Group Policy ID (bytes 2-3): the source's 16-bit tag. Meaningful when hasGbp. */
  get groupPolicyId(): number {
    return readU16(this.buf, this.off + 2);
  }
  set groupPolicyId(v: number) {
    writeU16(this.buf, this.off + 2, v);
  }
  /** VXLAN Network Identifier (24 bits). */
  get vni(): number {
    return (this.buf[this.off + 4]! << 16) | readU16(this.buf, this.off + 5);
  }
  set vni(v: number) {
    this.buf[this.off + 4] = (v >>> 16) & 0xff;
    writeU16(this.buf, this.off + 5, v);
  }
  /** Reserved (byte 7). */
  get reserved(): number {
    return this.buf[this.off + 7]!;
  }
  /** G flag: a Group Policy ID is present. */
  get hasGbp(): boolean {
    return (this.buf[this.off]! & VxlanFlags.G) !== 0;
  }
  /** I flag: the VNI is valid. */
  get hasVni(): boolean {
    return (this.buf[this.off]! & VxlanFlags.I) !== 0;
  }
  /** Absolute offset of the inner Ethernet frame. */
  get payloadOffset(): number {
    return this.off + VXLAN_HEADER_LEN;
  }
  get payloadLen(): number {
    return this.len - VXLAN_HEADER_LEN;
  }
}

/**
 * Write an 8-byte VXLAN header at buf[off..]: `gpid` 0 gives flags 0x08 and a
 * zero policy field (as the kernel sends for mark 0); otherwise flags 0x88,
 * GBP flags 0 and the Group Policy ID. Writes all 8 bytes.
 */
export function writeVxlanHeader(buf: Uint8Array, off: number, vni: number, gpid: number): void {
  buf[off] = gpid === 0 ? VxlanFlags.I : VxlanFlags.G | VxlanFlags.I;
  buf[off + 1] = 0;
  buf[off + 2] = (gpid >>> 8) & 0xff;
  buf[off + 3] = gpid & 0xff;
  buf[off + 4] = (vni >>> 16) & 0xff;
  buf[off + 5] = (vni >>> 8) & 0xff;
  buf[off + 6] = vni & 0xff;
  buf[off + 7] = 0;
}

export interface VxlanRepr {
  /** Byte 0 (VxlanFlags); I must be set. */
  flags: number;
  /** Byte 1 (VxlanGbpFlags); 0 when G is clear. */
  gbpFlags: number;
  /** 0 when G is clear. */
  groupPolicyId: number;
  vni: number;
}

export function parseVxlan(view: VxlanView): VxlanRepr {
  const err = view.check();
  if (err !== WireError.None) throw new WireFormatError(err, 'VXLAN');
  const g = view.hasGbp;
  return {
    flags: view.flags,
    gbpFlags: g ? view.gbpFlags : 0,
    groupPolicyId: g ? view.groupPolicyId : 0,
    vni: view.vni,
  };
}

/** Write the header at buf[off..] (reserved bits zero); returns VXLAN_HEADER_LEN. */
export function emitVxlan(repr: VxlanRepr, buf: Uint8Array, off: number): number {
  const g = (repr.flags & VxlanFlags.G) !== 0;
  buf[off] = repr.flags & 0xff;
  buf[off + 1] = g ? repr.gbpFlags & 0xff : 0;
  buf[off + 2] = g ? (repr.groupPolicyId >>> 8) & 0xff : 0;
  buf[off + 3] = g ? repr.groupPolicyId & 0xff : 0;
  buf[off + 4] = (repr.vni >>> 16) & 0xff;
  buf[off + 5] = (repr.vni >>> 8) & 0xff;
  buf[off + 6] = repr.vni & 0xff;
  buf[off + 7] = 0;
  return VXLAN_HEADER_LEN;
}

/** Bytes emitVxlan() writes (the header; the inner frame is the caller's). */
export function vxlanBufferLen(_repr: VxlanRepr): number {
  return VXLAN_HEADER_LEN;
}
