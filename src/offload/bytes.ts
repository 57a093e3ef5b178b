// Bulk byte work the offloads hand to the native addon once per batch
// (native/bytes.cc): copies and RFC 1071 one's complement sums over ranges
// described in a Uint32Array. The offloads decide which ranges and what a sum
// means; the primitive only moves and adds bytes.
//
// A sum here is the folded, uncomplemented 16-bit one's complement sum of a
// range as big-endian words counted from its first byte (an odd final byte
// zero-padded, RFC 1071 §4.1): add it to other sums and fold, as
// onesComplementSum() results are.
//
// `jsByteOps` does the same in TypeScript: the reference the native one is
// tested against, and what runs where the addon is not loaded.
import { onesComplementSum } from '../wire/checksum.js';

export interface ByteOps {
  /**
   * For k < n with desc[3k..3k+2] = [srcOff, dstOff, len]: copy src[srcOff, +len) to
   * dst[dstOff, +len) and set sums[k] to the sum of those bytes. Ranges must not overlap.
   */
  copySum(src: Uint8Array, dst: Uint8Array, desc: Uint32Array, n: number, sums: Uint32Array): void;
  /** For k < n with desc[2k..2k+1] = [off, len]: sums[k] = the sum of buf[off, +len). */
  sumRanges(buf: Uint8Array, desc: Uint32Array, n: number, sums: Uint32Array): void;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

export const jsByteOps: ByteOps = {
  copySum(src, dst, desc, n, sums) {
    for (let k = 0; k < n; k++) {
      const s = desc[3 * k]!;
      const d = desc[3 * k + 1]!;
      const len = desc[3 * k + 2]!;
      if (s + len > src.length || d + len > dst.length) throw new RangeError('copySum: a range is outside its buffer');
      dst.set(src.subarray(s, s + len), d);
      sums[k] = fold(onesComplementSum(dst, d, len));
    }
  },
  sumRanges(buf, desc, n, sums) {
    for (let k = 0; k < n; k++) {
      const o = desc[2 * k]!;
      const len = desc[2 * k + 1]!;
      if (o + len > buf.length) throw new RangeError('sumRanges: a range is outside the buffer');
      sums[k] = fold(onesComplementSum(buf, o, len));
    }
  },
};
