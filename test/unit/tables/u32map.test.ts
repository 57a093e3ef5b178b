import { describe, expect, it } from 'vitest';
import { U32Map } from '../../../src/tables/u32map.js';

describe('U32Map', () => {
  it('matches a Map through random sets and deletes (backward-shift deletion keeps chains intact)', () => {
    let s = 12345;
    const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
    const m = new U32Map(4);
    const ref = new Map<number, number>();
    for (let i = 0; i < 50_000; i++) {
      // Keys from a small range so that sets and deletes hit the same keys often.
      const k = (next() % 4000) * 0x01000193 >>> 0;
      if (next() % 3 === 0) expect(m.delete(k)).toBe(ref.delete(k));
      else {
        const v = next() & 0x7fffffff;
        m.set(k, v);
        ref.set(k, v);
      }
    }
    expect(m.size).toBe(ref.size);
    for (let k = 0; k < 4000; k++) {
      const key = (k * 0x01000193) >>> 0;
      expect(m.get(key)).toBe(ref.get(key) ?? -1);
    }
  });

  it('stores keys 0 and 0xffffffff and rejects negative values', () => {
    const m = new U32Map();
    m.set(0, 7);
    m.set(0xffffffff, 9);
    expect(m.get(0)).toBe(7);
    expect(m.get(-1)).toBe(9); // -1 >>> 0 === 0xffffffff
    expect(m.get(1)).toBe(-1);
    expect(() => m.set(1, -2)).toThrow('U32Map values must be non-negative int32, got -2');
    const seen: [number, number][] = [];
    m.forEach((v, k) => seen.push([k, v]));
    expect(seen.sort((a, b) => a[0] - b[0])).toEqual([[0, 7], [0xffffffff, 9]]);
    m.clear();
    expect(m.size).toBe(0);
    expect(m.get(0)).toBe(-1);
  });
});
