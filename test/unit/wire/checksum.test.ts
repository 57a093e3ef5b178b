import { describe, expect, it } from 'vitest';
import {
  foldChecksum,
  internetChecksum,
  onesComplementSum,
  pseudoHeaderSum,
  referenceChecksum,
  updateChecksum16,
  updateChecksum32,
} from '../../../src/wire/checksum.js';
import { seedBytes } from '../../vectors/seed002.js';

// Deterministic PRNG (mulberry32) so failures reproduce.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('internet checksum', () => {
  it('matches the header checksums tcpdump printed for the seed (0xa395, 0xa291)', () => {
    const c = seedBytes('SRC_CONTAINER_ETH0');
    const hdr = c.slice(14, 34);
    expect((hdr[10]! << 8) | hdr[11]!).toBe(0xa395);
    hdr[10] = 0;
    hdr[11] = 0;
    expect(internetChecksum(hdr, 0, 20)).toBe(0xa395);
    expect(referenceChecksum(hdr)).toBe(0xa395);

    const o = seedBytes('SRC_HOST_ETH0');
    o[24] = 0;
    o[25] = 0;
    expect(internetChecksum(o, 14, 20)).toBe(0xa291);
  });

  it('gives the TCP checksum tcpdump calls correct (0x0fc9) over pseudo-header + segment', () => {
    const f = seedBytes('DST_CONTAINER_ETH0');
    const seg = f.slice(34); // TCP header + data, 57 bytes (odd: exercises the pad byte)
    expect(seg.length).toBe(57);
    seg[16] = 0;
    seg[17] = 0;
    const src = 0x0aff6303;
    const dst = 0x0aff8402;
    expect(foldChecksum(onesComplementSum(seg, 0, seg.length, pseudoHeaderSum(src, dst, 6, 57)))).toBe(0x0fc9);
    expect(referenceChecksum(seg, [0x0aff, 0x6303, 0x0aff, 0x8402, 6, 57])).toBe(0x0fc9);
  });

  it('is the same at a non-zero byteOffset (subarray of a larger buffer)', () => {
    const r = rng(7);
    const big = new Uint8Array(300);
    for (let i = 0; i < big.length; i++) big[i] = Math.floor(r() * 256);
    const sub = big.subarray(37, 37 + 101);
    expect(sub.byteOffset).toBe(37);
    expect(internetChecksum(sub, 0, 101)).toBe(referenceChecksum(big.slice(37, 138)));
    expect(internetChecksum(big, 37, 101)).toBe(referenceChecksum(big.slice(37, 138)));
  });

  it('fast sum equals the reference on 10k random buffers of random length and offset', () => {
    const r = rng(42);
    const buf = new Uint8Array(1600);
    for (let n = 0; n < 10_000; n++) {
      const len = Math.floor(r() * 1500);
      const off = Math.floor(r() * 64);
      for (let i = 0; i < off + len; i++) buf[i] = Math.floor(r() * 256);
      expect(internetChecksum(buf, off, len)).toBe(referenceChecksum(buf.subarray(off, off + len)));
    }
  });

  it('folds sums above 2^32 without losing carries', () => {
    // 0x1_0000_0000 ≡ 1 in one's complement arithmetic mod 0xffff.
    expect(foldChecksum(0x100000000)).toBe(~1 & 0xffff);
    expect(foldChecksum(0xffff)).toBe(0);
    expect(foldChecksum(0)).toBe(0xffff);
  });
});

describe('incremental update (RFC 1624)', () => {
  it('updateChecksum16 equals a full recomputation on 10k random headers', () => {
    const r = rng(1624);
    const h = new Uint8Array(20);
    for (let n = 0; n < 10_000; n++) {
      for (let i = 0; i < 20; i++) h[i] = Math.floor(r() * 256);
      h[10] = 0;
      h[11] = 0;
      const before = referenceChecksum(h);
      // change one random word other than the checksum itself
      let w = Math.floor(r() * 10);
      if (w === 5) w = 4;
      const oldWord = (h[2 * w]! << 8) | h[2 * w + 1]!;
      const newWord = n % 50 === 0 ? oldWord : Math.floor(r() * 0x10000);
      h[2 * w] = newWord >>> 8;
      h[2 * w + 1] = newWord & 0xff;
      expect(updateChecksum16(before, oldWord, newWord)).toBe(referenceChecksum(h));
    }
  });

  it('updateChecksum32 equals a full recomputation on 10k random address rewrites', () => {
    const r = rng(32);
    const h = new Uint8Array(20);
    for (let n = 0; n < 10_000; n++) {
      for (let i = 0; i < 20; i++) h[i] = Math.floor(r() * 256);
      h[10] = 0;
      h[11] = 0;
      const before = referenceChecksum(h);
      const at = r() < 0.5 ? 12 : 16;
      const oldVal = ((h[at]! << 24) | (h[at + 1]! << 16) | (h[at + 2]! << 8) | h[at + 3]!) >>> 0;
      const newVal = Math.floor(r() * 0x100000000) >>> 0;
      h[at] = newVal >>> 24;
      h[at + 1] = (newVal >>> 16) & 0xff;
      h[at + 2] = (newVal >>> 8) & 0xff;
      h[at + 3] = newVal & 0xff;
      expect(updateChecksum32(before, oldVal, newVal)).toBe(referenceChecksum(h));
    }
  });

  it('reproduces the seed: TTL 64 → 63 turns 0xa395 into 0xa495', () => {
    expect(updateChecksum16(0xa395, (64 << 8) | 6, (63 << 8) | 6)).toBe(0xa495);
    expect(updateChecksum16(0xa495, (63 << 8) | 6, (62 << 8) | 6)).toBe(0xa595);
  });
});
