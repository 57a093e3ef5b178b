// The byte primitives (src/offload/bytes.ts, native/bytes.cc): copies and one's
// complement sums over described ranges, checked against referenceChecksum
// (RFC 1071, folded word by word) on random bytes, every offset parity and
// length remainder, and ranges long enough to cross the native loop's blocks.
import { describe, expect, it } from 'vitest';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { jsByteOps, type ByteOps } from '../../../src/offload/bytes.js';
import { loadNative, nativeAvailable } from '../../../src/io/native.js';

const PATHS: [string, ByteOps][] = [
  ['jsByteOps', jsByteOps],
  ...(nativeAvailable() ? ([['native', loadNative() as unknown as ByteOps]] as [string, ByteOps][]) : []),
];

function randomBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** The folded, uncomplemented sum: referenceChecksum's complement (0xffff for all-zero-sum ranges stays 0 only when empty). */
function refSum(b: Uint8Array): number {
  return b.length === 0 ? 0 : ~referenceChecksum(b) & 0xffff;
}

describe('the addon is built for these tests', () => {
  it('loads copySum and sumRanges', () => {
    expect(nativeAvailable()).toBe(true);
    const n = loadNative() as unknown as Partial<ByteOps>;
    expect(typeof n.copySum).toBe('function');
    expect(typeof n.sumRanges).toBe('function');
  });
});

for (const [name, ops] of PATHS) {
  describe(`byte primitives (${name})`, () => {
    const src = randomBytes(140000, 7);
    it('sumRanges matches RFC 1071 for every offset parity and length remainder', () => {
      const lens = [0, 1, 2, 3, 4, 5, 7, 15, 16, 17, 31, 33, 63, 64, 65, 1447, 1448, 1449, 9000, 65535, 65536, 131071];
      const desc = new Uint32Array(2 * lens.length * 4);
      const sums = new Uint32Array(lens.length * 4);
      let n = 0;
      for (const len of lens) {
        for (let off = 1; off <= 4; off++) {
          desc[2 * n] = off;
          desc[2 * n + 1] = len;
          n++;
        }
      }
      ops.sumRanges(src, desc, n, sums);
      for (let k = 0; k < n; k++) {
        const off = desc[2 * k]!;
        const len = desc[2 * k + 1]!;
        expect(sums[k], `off ${off} len ${len}`).toBe(refSum(src.subarray(off, off + len)));
      }
    });

    it('sumRanges of all-0xff bytes (the largest words) folds without losing carries', () => {
      const ff = new Uint8Array(140000).fill(0xff);
      const sums = new Uint32Array(2);
      ops.sumRanges(ff, Uint32Array.of(0, 131072, 1, 65537), 2, sums);
      expect(sums[0]).toBe(0xffff);
      expect(sums[1]).toBe(refSum(ff.subarray(1, 65538)));
    });

    it('copySum copies each range and returns its sum', () => {
      const dst = new Uint8Array(8192);
      // header-and-payload pairs as GsoSegmenter describes them; odd destinations included
      const desc = Uint32Array.of(10, 64, 66, 1000, 130, 1448, 3, 2049, 1, 70000, 4001, 999);
      const sums = new Uint32Array(4);
      ops.copySum(src, dst, desc, 4, sums);
      for (let k = 0; k < 4; k++) {
        const [s, d, len] = [desc[3 * k]!, desc[3 * k + 1]!, desc[3 * k + 2]!];
        expect(dst.subarray(d, d + len)).toEqual(src.subarray(s, s + len));
        expect(sums[k]).toBe(refSum(src.subarray(s, s + len)));
      }
    });

    it('a range outside its buffer is a RangeError and nothing is copied', () => {
      const dst = new Uint8Array(100);
      const sums = new Uint32Array(2);
      expect(() => ops.copySum(src, dst, Uint32Array.of(0, 0, 50, 0, 60, 50), 2, sums)).toThrow(RangeError);
      if (name === 'native') expect(dst[0]).toBe(0);
      expect(() => ops.sumRanges(dst, Uint32Array.of(90, 11), 1, sums)).toThrow(RangeError);
    });
  });
}
