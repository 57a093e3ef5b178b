import { describe, expect, it } from 'vitest';
import { LinearRouteTable, RouteTable, formatRoute, routeJson, type RouteEntry } from '../../../src/tables/route.js';
import { ipToU32 as ip } from '../../../src/util/ip.js';

// Deterministic PRNG (mulberry32) so a failure reproduces.
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

function route(dst: string, len: number, via: string | 0, dev: string, src: string | 0 = 0): RouteEntry {
  return { prefix: ip(dst), len, via: via === 0 ? 0 : ip(via), dev, src: src === 0 ? 0 : ip(src) };
}

describe('RouteTable: the seed 002 cell', () => {
  // Source cell of seed 002: lease 10.255.99.0/24, a remote cell's lease 10.255.132.0/24.
  const t = new RouteTable();
  t.add(route('10.255.132.0', 24, '10.255.132.0', 'silk-vtep', '10.255.99.0'));
  t.add(route('10.255.43.0', 24, '10.255.43.0', 'silk-vtep', '10.255.99.0'));
  t.add(route('10.255.99.3', 32, 0, 's-010255099003'));
  t.add(route('0.0.0.0', 0, '10.0.16.1', 'eth0'));

  const cases: [string, string | undefined][] = [
    ['10.255.132.2', '10.255.132.0/24 via 10.255.132.0 dev silk-vtep src 10.255.99.0'],
    ['10.255.43.6', '10.255.43.0/24 via 10.255.43.0 dev silk-vtep src 10.255.99.0'],
    ['10.255.99.3', '10.255.99.3 dev s-010255099003 scope link'],
    ['10.255.99.4', 'default via 10.0.16.1 dev eth0'],
    ['8.8.8.8', 'default via 10.0.16.1 dev eth0'],
  ];
  it.each(cases)('lookup %s → %s', (dst, want) => {
    const r = t.lookup(ip(dst));
    expect(r && formatRoute(r)).toBe(want);
  });

  it('lists routes as ip route does (default first, by prefix, longer first)', () => {
    expect(t.entries().map(formatRoute)).toEqual([
      'default via 10.0.16.1 dev eth0',
      '10.255.43.0/24 via 10.255.43.0 dev silk-vtep src 10.255.99.0',
      '10.255.99.3 dev s-010255099003 scope link',
      '10.255.132.0/24 via 10.255.132.0 dev silk-vtep src 10.255.99.0',
    ]);
    expect(t.size).toBe(4);
  });

  it('gives ip -j route shapes', () => {
    expect(t.entries().map(routeJson)).toEqual([
      { dst: 'default', gateway: '10.0.16.1', dev: 'eth0', flags: [] },
      { dst: '10.255.43.0/24', gateway: '10.255.43.0', dev: 'silk-vtep', prefsrc: '10.255.99.0', flags: [] },
      { dst: '10.255.99.3', dev: 's-010255099003', scope: 'link', flags: [] },
      { dst: '10.255.132.0/24', gateway: '10.255.132.0', dev: 'silk-vtep', prefsrc: '10.255.99.0', flags: [] },
    ]);
    expect(Object.keys(routeJson(t.entries()[1]!))).toEqual(['dst', 'gateway', 'dev', 'prefsrc', 'flags']);
  });

  it('returns the same stored object on every lookup (no allocation)', () => {
    expect(t.lookup(ip('10.255.132.9'))).toBe(t.lookup(ip('10.255.132.200')));
  });
});

describe('RouteTable: add / replace / remove', () => {
  it('masks the prefix, replaces the same prefix/len, and removes exactly', () => {
    const t = new RouteTable();
    t.add(route('10.255.7.9', 24, '10.255.7.0', 'silk-vtep'));
    expect(t.entries()).toEqual([route('10.255.7.0', 24, '10.255.7.0', 'silk-vtep')]);
    t.add(route('10.255.7.0', 24, '10.255.7.1', 'silk-vtep'));
    expect(t.size).toBe(1);
    expect(formatRoute(t.lookup(ip('10.255.7.20'))!)).toBe('10.255.7.0/24 via 10.255.7.1 dev silk-vtep');
    t.add(route('10.255.0.0', 16, 0, 'silk-vtep', '10.255.1.0'));
    expect(formatRoute(t.lookup(ip('10.255.8.1'))!)).toBe('10.255.0.0/16 dev silk-vtep scope link src 10.255.1.0');
    expect(t.remove(ip('10.255.7.0'), 23)).toBe(false);
    expect(t.remove(ip('10.255.7.0'), 24)).toBe(true);
    expect(t.remove(ip('10.255.7.0'), 24)).toBe(false);
    expect(formatRoute(t.lookup(ip('10.255.7.20'))!)).toBe('10.255.0.0/16 dev silk-vtep scope link src 10.255.1.0');
    expect(t.remove(ip('10.255.0.0'), 16)).toBe(true);
    expect(t.lookup(ip('10.255.7.20'))).toBeUndefined();
    expect(t.size).toBe(0);
  });

  it('copies the entry it is given', () => {
    const t = new RouteTable();
    const e = route('10.1.0.0', 16, 0, 'x');
    t.add(e);
    e.dev = 'changed';
    expect(t.lookup(ip('10.1.2.3'))!.dev).toBe('x');
  });

  it('handles /0 and /32 including addresses above 2^31', () => {
    const t = new RouteTable();
    t.add(route('198.18.0.1', 32, 0, 'eth0'));
    t.add(route('255.255.255.255', 32, 0, 'bcast'));
    t.add(route('0.0.0.0', 0, '198.18.0.254', 'eth0'));
    expect(t.lookup(ip('198.18.0.1'))!.len).toBe(32);
    expect(t.lookup(ip('255.255.255.255'))!.dev).toBe('bcast');
    expect(t.lookup(ip('198.18.0.2'))!.len).toBe(0);
    expect(t.lookup(0)!.len).toBe(0);
  });

  it('rejects bad entries with a clear error', () => {
    const t = new RouteTable();
    expect(() => t.add(route('10.0.0.0', 33, 0, 'x'))).toThrow('route prefix length must be 0-32, got 33');
    expect(() => t.add({ prefix: -1, len: 8, via: 0, dev: 'x', src: 0 })).toThrow('route prefix must be an IPv4 address as u32, got -1');
    expect(() => t.add(route('10.0.0.0', 8, 0, ''))).toThrow('route needs a device name');
    expect(t.remove(0, 40)).toBe(false);
    expect(t.size).toBe(0);
  });

  it('clear empties it', () => {
    const t = new RouteTable();
    t.add(route('10.0.0.0', 8, 0, 'x'));
    t.clear();
    expect(t.size).toBe(0);
    expect(t.lookup(ip('10.0.0.1'))).toBeUndefined();
    t.add(route('10.0.0.0', 8, 0, 'y'));
    expect(t.lookup(ip('10.0.0.1'))!.dev).toBe('y');
  });
});

describe('RouteTable agrees with LinearRouteTable', () => {
  it('on 100,000 random lookups over random prefixes (incl. /0 and /32), through adds and removes', () => {
    const r = rng(0x5eed);
    const fast = new RouteTable();
    const slow = new LinearRouteTable();
    const added: RouteEntry[] = [];
    const u32 = () => Math.floor(r() * 4294967296) >>> 0;
    const add = (e: RouteEntry) => {
      fast.add(e);
      slow.add(e);
      added.push(e);
    };
    add({ prefix: 0, len: 0, via: ip('198.18.0.1'), dev: 'eth0', src: 0 });
    for (let i = 0; i < 400; i++) {
      // Cluster half the prefixes under 10.0.0.0/8 so that nested prefixes are common.
      const base = r() < 0.5 ? ((ip('10.0.0.0') | (u32() & 0x00ffffff)) >>> 0) : u32();
      const len = i % 10 === 0 ? 32 : Math.floor(r() * 33);
      add({ prefix: base, len, via: r() < 0.5 ? 0 : u32(), dev: `d${i}`, src: 0 });
    }
    expect(fast.size).toBe(slow.size);
    expect(fast.entries()).toEqual(slow.entries());

    const check = (n: number) => {
      let hits = 0;
      for (let i = 0; i < n; i++) {
        let a: number;
        if (r() < 0.6) {
          // An address inside a random added prefix (exercises the nesting).
          const e = added[Math.floor(r() * added.length)]!;
          const hostBits = e.len === 32 ? 0 : e.len === 0 ? u32() : u32() & (0xffffffff >>> e.len);
          a = (e.prefix | hostBits) >>> 0;
        } else a = u32();
        const want = slow.lookup(a);
        const got = fast.lookup(a);
        if (got?.prefix !== want?.prefix || got?.len !== want?.len || got?.dev !== want?.dev) {
          throw new Error(`mismatch for ${a}: got ${got && formatRoute(got)}, want ${want && formatRoute(want)}`);
        }
        if (want && want.len > 0) hits++;
      }
      return hits;
    };
    const hits = check(50_000);
    expect(hits).toBeGreaterThan(25_000); // most lookups land in a specific prefix, not just the default

    // Remove a third (including the default route) and check again.
    for (let i = 0; i < added.length; i += 3) {
      const e = added[i]!;
      expect(fast.remove(e.prefix, e.len)).toBe(slow.remove(e.prefix, e.len));
    }
    expect(fast.size).toBe(slow.size);
    expect(fast.lookup(ip('203.0.113.1'))?.len).toBe(slow.lookup(ip('203.0.113.1'))?.len);
    check(50_000);
  });
});
