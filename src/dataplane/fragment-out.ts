// IPv4 fragmentation on output, as Linux's ip_do_fragment slow path does it
// (net/ipv4/ip_output.c ip_frag_init / ip_frag_next / ip_frag_ipcb; options
// in net/ipv4/ip_options.c ip_options_fragment), so that a packet larger than
// the next link's MTU and without DF is split instead of dropped (RFC 791
// §2.3, §3.2 "An Example Fragmentation Procedure").
//
// What the kernel does, and so what this does:
// - Every fragment carries the whole original header, IHL unchanged: the
//   options are not shortened. The first fragment keeps them as they are; in
//   the others each option whose copy flag (bit 7 of the type, RFC 791 §3.1)
//   is clear is overwritten with NOP bytes (ip_options_fragment), so the
//   header length — and the payload room — is the same in every fragment.
// - Payload per fragment: (mtu − header length) rounded down to a multiple of
//   8, the last one takes the rest. Offsets count from the packet's own
//   offset, so a fragment can be fragmented again; MF is set on every piece
//   but the last, and on the last too if the packet being split had MF.
// - DF, DS byte, TTL, identification, protocol and addresses are copied; the
//   total length and header checksum are rewritten.
// The bytes match the kernel's: test/unit/dataplane/fragment-out.test.ts
// compares them with fragments a Linux router made (test/vectors/).
//
// Allocation-free: the caller asks how many fragments there will be, then
// writes each into its own buffer slot with writeFragment().
import { internetChecksum } from '../wire/checksum.js';

const IPOPT_END = 0;
const IPOPT_NOOP = 1;
const IPOPT_COPIED = 0x80;
const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const OFFSET_MASK = 0x1fff;

/** Payload bytes every fragment but the last carries, or 0 when the MTU leaves no room for 8 bytes. */
export function fragmentPayloadStep(headerLen: number, mtu: number): number {
  const room = mtu - headerLen;
  if (room < 8) return 0;
  return room & ~7;
}

/**
 * How many fragments the IPv4 packet at buf[off..] becomes on a link of
 * `mtu` bytes: 1 when it fits, 0 when it cannot be fragmented at this MTU
 * (less than 8 bytes of room after the header). The caller has checked the
 * header (Ipv4View.check) and DF.
 */
export function fragmentCount(buf: Uint8Array, off: number, mtu: number): number {
  const hl = (buf[off]! & 0x0f) << 2;
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (total <= mtu) return 1;
  const step = fragmentPayloadStep(hl, mtu);
  if (step === 0) return 0;
  return Math.ceil((total - hl) / step);
}

/**
 * Write fragment `index` (0-based) of the IPv4 packet at buf[off..] for a link
 * of `mtu` bytes into out[outOff..]; returns its length. `out` must not
 * overlap the source bytes. Every byte of the fragment is written.
 */
export function writeFragment(
  buf: Uint8Array,
  off: number,
  mtu: number,
  index: number,
  out: Uint8Array,
  outOff: number,
): number {
  const hl = (buf[off]! & 0x0f) << 2;
  const total = (buf[off + 2]! << 8) | buf[off + 3]!;
  const payload = total - hl;
  const ff = (buf[off + 6]! << 8) | buf[off + 7]!;
  const baseOffset = (ff & OFFSET_MASK) << 3;
  const step = total <= mtu ? payload : fragmentPayloadStep(hl, mtu);
  const start = index * step;
  const len = Math.min(step, payload - start);
  // Header, then payload slice.
  for (let i = 0; i < hl; i++) out[outOff + i] = buf[off + i]!;
  copyBytes(out, outOff + hl, buf, off + hl + start, len);
  // ip_frag_ipcb → ip_options_fragment runs once, after the first piece of a
  // packet that starts at offset 0; every later piece has the non-copied
  // options turned into NOPs.
  if (index > 0 && baseOffset === 0 && hl > 20) nopUncopiedOptions(out, outOff + 20, hl - 20);
  const last = start + len >= payload;
  let nff = (baseOffset + start) >>> 3;
  if (ff & FLAG_DF) nff |= FLAG_DF;
  if (!last || ff & FLAG_MF) nff |= FLAG_MF;
  const tot = hl + len;
  finishFragmentHeader(out, outOff, hl, tot, nff);
  return tot;
}

/**
 * Write a fragment's total length and flags/fragment-offset word into the
 * IPv4 header at `off` (header length `hl`) and recompute its checksum: the
 * last step of every fragment, cut here or forwarded by the reassembly table.
 */
export function finishFragmentHeader(out: Uint8Array, off: number, hl: number, tot: number, flagsFrag: number): void {
  out[off + 2] = tot >>> 8;
  out[off + 3] = tot & 0xff;
  out[off + 6] = flagsFrag >>> 8;
  out[off + 7] = flagsFrag & 0xff;
  out[off + 10] = 0;
  out[off + 11] = 0;
  const c = internetChecksum(out, off, hl);
  out[off + 10] = c >>> 8;
  out[off + 11] = c & 0xff;
}

const nativeCopy = Buffer.prototype.copy;

/**
 * dst[dstOff..dstOff+n) = src[srcOff..srcOff+n). Node's native Buffer copy
 * accepts any Uint8Array as source and target, so this neither allocates
 * (Uint8Array.set would need a subarray view per call) nor runs a byte loop
 * (measured about 20× slower than the native copy for a 1,424-byte fragment).
 */
export function copyBytes(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number): void {
  if (n <= 0) return;
  nativeCopy.call(src as Buffer, dst, dstOff, srcOff, srcOff + n);
}

/**
 * ip_options_fragment: walk the options; an option whose copy flag is clear
 * becomes NOP bytes. Stops at End of Option List or at a malformed length,
 * as the kernel does.
 */
export function nopUncopiedOptions(buf: Uint8Array, off: number, len: number): void {
  let p = off;
  let l = len;
  while (l > 0) {
    const type = buf[p]!;
    if (type === IPOPT_END) return;
    if (type === IPOPT_NOOP) {
      p++;
      l--;
      continue;
    }
    if (l < 2) return;
    const optlen = buf[p + 1]!;
    if (optlen < 2 || optlen > l) return;
    if ((type & IPOPT_COPIED) === 0) buf.fill(IPOPT_NOOP, p, p + optlen);
    l -= optlen;
    p += optlen;
  }
}
