import { describe, expect, it } from 'vitest';
import { TagAllocator, TagExhaustedError, formatTag, parseTag, MAX_TAG } from '../../../src/policy/tags.js';

describe('formatTag / parseTag', () => {
  it('prints %04X as the policy server does (appA 0004, appB 0005)', () => {
    expect(formatTag(4)).toBe('0004');
    expect(formatTag(5)).toBe('0005');
    expect(formatTag(0xabc)).toBe('0ABC');
    expect(formatTag(0xffff)).toBe('FFFF');
    expect(formatTag(0)).toBe('0000');
  });
  it('parses four hex digits in either case', () => {
    expect(parseTag('0004')).toBe(4);
    expect(parseTag('0abc')).toBe(0xabc);
    expect(parseTag('FFFF')).toBe(65535);
  });
  it('round-trips every 16-bit value', () => {
    for (let n = 0; n <= 0xffff; n++) if (parseTag(formatTag(n)) !== n) throw new Error(`round trip failed at ${n}`);
    expect(parseTag(formatTag(0x1234))).toBe(0x1234);
  });
  it('rejects what is not a tag', () => {
    for (const bad of ['4', '00004', '0x04', 'zzzz', '', ' 004', '-001']) {
      expect(() => parseTag(bad), bad).toThrow(/not a tag/);
    }
    expect(() => formatTag(65536)).toThrow(RangeError);
    expect(() => formatTag(-1)).toThrow(RangeError);
    expect(() => formatTag(1.5)).toThrow(RangeError);
  });
});

describe('TagAllocator', () => {
  it('hands out the lowest free tag first, starting at 1', () => {
    const a = new TagAllocator();
    expect([a.allocate(), a.allocate(), a.allocate()]).toEqual([1, 2, 3]);
    expect(a.size).toBe(3);
  });

  it('reuses freed tags lowest first', () => {
    const a = new TagAllocator();
    for (let i = 0; i < 10; i++) a.allocate();
    a.free(7);
    a.free(3);
    a.free(9);
    expect(a.allocate()).toBe(3);
    expect(a.allocate()).toBe(7);
    expect(a.allocate()).toBe(9);
    expect(a.allocate()).toBe(11);
  });

  it('freeing a free tag changes nothing', () => {
    const a = new TagAllocator();
    a.allocate();
    a.free(5);
    a.free(1);
    a.free(1);
    expect(a.size).toBe(0);
    expect(a.allocate()).toBe(1);
  });

  it('reserve() marks loaded tags and allocation goes around them', () => {
    const a = new TagAllocator();
    a.reserve(1);
    a.reserve(3);
    expect(a.allocate()).toBe(2);
    expect(a.allocate()).toBe(4);
    expect(() => a.reserve(3)).toThrow(/already taken/);
    expect(() => a.reserve(0)).toThrow(RangeError);
    expect(() => a.reserve(65536)).toThrow(RangeError);
  });

  it('exhausts all 65,535 tags with a clear error, then recovers after a free', () => {
    const a = new TagAllocator();
    let last = 0;
    for (let i = 0; i < MAX_TAG; i++) last = a.allocate();
    expect(last).toBe(65535);
    expect(a.size).toBe(65535);
    expect(() => a.allocate()).toThrow(TagExhaustedError);
    expect(() => a.allocate()).toThrow(/all 65535 policy tags are in use/);
    a.free(40000);
    expect(a.allocate()).toBe(40000);
    expect(() => a.allocate()).toThrow(TagExhaustedError);
  });

  it('a small allocator exhausts at its max', () => {
    const a = new TagAllocator(3);
    expect([a.allocate(), a.allocate(), a.allocate()]).toEqual([1, 2, 3]);
    expect(() => a.allocate()).toThrow(/all 3 policy tags/);
  });

  it('agrees with a slow reference over random allocate/free', () => {
    const a = new TagAllocator(300);
    const ref = new Set<number>();
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let step = 0; step < 20000; step++) {
      if (rnd() < 0.55) {
        let want = -1;
        for (let t = 1; t <= 300; t++) if (!ref.has(t)) { want = t; break; }
        if (want < 0) {
          expect(() => a.allocate()).toThrow(TagExhaustedError);
        } else {
          const got = a.allocate();
          if (got !== want) throw new Error(`step ${step}: allocate() gave ${got}, reference ${want}`);
          ref.add(got);
        }
      } else {
        const t = 1 + Math.floor(rnd() * 300);
        a.free(t);
        ref.delete(t);
      }
      if (a.size !== ref.size) throw new Error(`step ${step}: size ${a.size}, reference ${ref.size}`);
    }
    expect(a.size).toBe(ref.size);
  });
});
