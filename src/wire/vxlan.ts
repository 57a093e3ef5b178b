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
// bits are ignored by check(), as RFC 7348 asks of receivers; the Linux
// kernel is stricter, and vxlanFlagsAcceptable() says what it accepts.
import { WireError, WireFormatError } from './errors.js';
import { readU16, writeU16 } from './bytes.js';
import { Wire, VXLAN_HEADER_LEN, VXLAN_PORT } from './offsets.js';

export { VXLAN_HEADER_LEN, VXLAN_PORT };
/** Byte 0 flags by name (offsets.ts holds the numbers). */
export const VxlanFlags = { G: Wire.VXLAN_FLAG_G, I: Wire.VXLAN_FLAG_I } as const;
/** Byte 1 (GBP) flags by name. */
export const VxlanGbpFlags = { D: Wire.VXLAN_GBP_FLAG_D, A: Wire.VXLAN_GBP_FLAG_A } as const;

/** The byte-0 flags a `vxlan ... gbp` device understands: I and G. */
export const VXLAN_FLAGS_KNOWN = Wire.VXLAN_FLAG_I | Wire.VXLAN_FLAG_G;

/**
 * Would the Linux kernel's vxlan_rcv() (drivers/net/vxlan/vxlan_core.c) on a
 * `vxlan ... gbp` device accept a header with this byte-0 `flags`? I must be
 * set, and no flag it does not understand may be: it drops a header that
 * uses any bit beyond I and G (those of the extensions it is not configured
 * for) as malformed. silkworm's ingress drops exactly these (reason
 * bad-vxlan-flags), and `decode` uses this to say "the kernel would drop
 * this". RFC 7348 alone would ignore the reserved bits; check() does.
 */
export function vxlanFlagsAcceptable(flags: number): boolean {
  return (flags & Wire.VXLAN_FLAG_I) !== 0 && (flags & ~VXLAN_FLAGS_KNOWN & 0xff) === 0;
}

/** Group Policy ID of the VXLAN header at buf[off..], or 0 when G is clear (the kernel sets no mark then). */
export function vxlanGpidAt(buf: Uint8Array, off: number): number {
  return (buf[off + Wire.VXLAN_FLAGS]! & Wire.VXLAN_FLAG_G) !== 0 ? readU16(buf, off + Wire.VXLAN_GPID) : 0;
}

/** VNI (24 bits) of the VXLAN header at buf[off..]. */
export function vxlanVniAt(buf: Uint8Array, off: number): number {
  return (buf[off + Wire.VXLAN_VNI]! << 16) | readU16(buf, off + Wire.VXLAN_VNI + 1);
}

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
    if (this.len < Wire.VXLAN_HEADER_LEN) return WireError.Truncated;
    if ((this.buf[this.off + Wire.VXLAN_FLAGS]! & Wire.VXLAN_FLAG_I) === 0) return WireError.BadFlags;
    return WireError.None;
  }

  /** Flags (byte 0): VxlanFlags. */
  get flags(): number {
    return this.buf[this.off + Wire.VXLAN_FLAGS]!;
  }
  set flags(v: number) {
    this.buf[this.off + Wire.VXLAN_FLAGS] = v & 0xff;
  }
  /** GBP flags (byte 1): VxlanGbpFlags. */
  get gbpFlags(): number {
    return this.buf[this.off + Wire.VXLAN_GBP_FLAGS]!;
  }
  set gbpFlags(v: number) {
    this.buf[this.off + Wire.VXLAN_GBP_FLAGS] = v & 0xff;
  }
  /** Group Policy ID (bytes 2-3): the source's 16-bit tag. Meaningful when hasGbp. */
  get groupPolicyId(): number {
    return readU16(this.buf, this.off + Wire.VXLAN_GPID);
  }
  set groupPolicyId(v: number) {
    writeU16(this.buf, this.off + Wire.VXLAN_GPID, v);
  }
  /** VXLAN Network Identifier (24 bits). */
  get vni(): number {
    return vxlanVniAt(this.buf, this.off);
  }
  set vni(v: number) {
    this.buf[this.off + Wire.VXLAN_VNI] = (v >>> 16) & 0xff;
    writeU16(this.buf, this.off + Wire.VXLAN_VNI + 1, v);
  }
  /** Reserved (byte 7). */
  get reserved(): number {
    return this.buf[this.off + Wire.VXLAN_RESERVED]!;
  }
  /** G flag: a Group Policy ID is present. */
  get hasGbp(): boolean {
    return (this.buf[this.off + Wire.VXLAN_FLAGS]! & Wire.VXLAN_FLAG_G) !== 0;
  }
  /** I flag: the VNI is valid. */
  get hasVni(): boolean {
    return (this.buf[this.off + Wire.VXLAN_FLAGS]! & Wire.VXLAN_FLAG_I) !== 0;
  }
  /** Would the Linux kernel accept these flags? (vxlanFlagsAcceptable) */
  get kernelAccepts(): boolean {
    return vxlanFlagsAcceptable(this.flags);
  }
  /** Absolute offset of the inner Ethernet frame. */
  get payloadOffset(): number {
    return this.off + Wire.VXLAN_HEADER_LEN;
  }
  get payloadLen(): number {
    return this.len - Wire.VXLAN_HEADER_LEN;
  }
}

/**
 * Write an 8-byte VXLAN header at buf[off..]: `gpid` 0 gives flags 0x08 and a
 * zero policy field (as the kernel sends for mark 0); otherwise flags 0x88,
 * GBP flags 0 and the Group Policy ID. Writes all 8 bytes.
 */
export function writeVxlanHeader(buf: Uint8Array, off: number, vni: number, gpid: number): void {
  buf[off + Wire.VXLAN_FLAGS] = gpid === 0 ? Wire.VXLAN_FLAG_I : Wire.VXLAN_FLAG_G | Wire.VXLAN_FLAG_I;
  buf[off + Wire.VXLAN_GBP_FLAGS] = 0;
  writeU16(buf, off + Wire.VXLAN_GPID, gpid);
  buf[off + Wire.VXLAN_VNI] = (vni >>> 16) & 0xff;
  writeU16(buf, off + Wire.VXLAN_VNI + 1, vni);
  buf[off + Wire.VXLAN_RESERVED] = 0;
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
  const g = (repr.flags & Wire.VXLAN_FLAG_G) !== 0;
  buf[off + Wire.VXLAN_FLAGS] = repr.flags & 0xff;
  buf[off + Wire.VXLAN_GBP_FLAGS] = g ? repr.gbpFlags & 0xff : 0;
  writeU16(buf, off + Wire.VXLAN_GPID, g ? repr.groupPolicyId : 0);
  buf[off + Wire.VXLAN_VNI] = (repr.vni >>> 16) & 0xff;
  writeU16(buf, off + Wire.VXLAN_VNI + 1, repr.vni);
  buf[off + Wire.VXLAN_RESERVED] = 0;
  return Wire.VXLAN_HEADER_LEN;
}

/** Bytes emitVxlan() writes (the header; the inner frame is the caller's). */
export function vxlanBufferLen(_repr: VxlanRepr): number {
  return Wire.VXLAN_HEADER_LEN;
}
