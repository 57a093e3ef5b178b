import { describe, expect, it } from 'vitest';
import { CompiledPolicy } from '../../../src/policy/compiled.js';
import { plan, type AcceptRule, type Plan } from '../../../src/policy/planner.js';
import { ipToU32 as ip } from '../../../src/util/ip.js';

const B = ip('10.255.2.2');
const C = ip('10.255.2.3');

// appA (tag 4) → appB (container B): tcp 8080 and tcp 9000-9010; appA → appB udp 53; appC (tag 7) → appB tcp 8080.
const p = plan(
  [
    { source: { id: 'appA', tag: '0004' }, destination: { id: 'appB', tag: '0005', protocol: 'tcp', ports: { start: 8080, end: 8080 } } },
    { source: { id: 'appA', tag: '0004' }, destination: { id: 'appB', tag: '0005', protocol: 'tcp', ports: { start: 9000, end: 9010 } } },
    { source: { id: 'appA', tag: '0004' }, destination: { id: 'appB', tag: '0005', protocol: 'udp', ports: { start: 53, end: 53 } } },
    { source: { id: 'appC', tag: '0007' }, destination: { id: 'appB', tag: '0005', protocol: 'tcp', ports: { start: 8080, end: 8080 } } },
  ],
  [
    { handle: 'a0', ip: ip('10.255.2.9'), app: 'appA' },
    { handle: 'b0', ip: B, app: 'appB' },
    { handle: 'x0', ip: C, app: 'appX' },
  ],
);
const cp = CompiledPolicy.compile(p);

describe('CompiledPolicy.match', () => {
  // [name, dstIp, protocol, port, tag, expected rule as "srcApp proto start-end" or null]
  const cases: [string, number, number, number, number, string | null][] = [
    ['allowed port', B, 6, 8080, 4, 'appA 6 8080-8080'],
    ['allowed port, other source app', B, 6, 8080, 7, 'appC 6 8080-8080'],
    ['range start', B, 6, 9000, 4, 'appA 6 9000-9010'],
    ['range inside', B, 6, 9005, 4, 'appA 6 9000-9010'],
    ['range end', B, 6, 9010, 4, 'appA 6 9000-9010'],
    ['port just above range', B, 6, 9011, 4, null],
    ['port just below range', B, 6, 8999, 4, null],
    ['port between single port and range', B, 6, 8081, 4, null],
    ['wrong mark', B, 6, 8080, 5, null],
    ['mark of an app with policies, but not for this port', B, 6, 9000, 7, null],
    ['tag 0 never matches', B, 6, 8080, 0, null],
    ['tag above 16 bits', B, 6, 8080, 0x10004, null],
    ['other protocol (udp to a tcp port)', B, 17, 8080, 4, null],
    ['udp policy', B, 17, 53, 4, 'appA 17 53-53'],
    ['tcp to the udp port', B, 6, 53, 4, null],
    ['icmp', B, 1, 8080, 4, null],
    ['other destination container', C, 6, 8080, 4, null],
    ['port 0', B, 6, 0, 4, null],
    ['port 65535', B, 6, 65535, 4, null],
  ];
  it.each(cases)('%s', (_name, dst, proto, port, tag, want) => {
    const i = cp.match(dst, proto, port, tag);
    if (want === null) expect(i).toBe(-1);
    else {
      const r = p.accepts[i]!;
      expect(`${r.srcApp} ${r.protocol} ${r.portStart}-${r.portEnd}`).toBe(want);
      expect(r.dstIp).toBe(dst);
    }
  });

  it('groups by destination, tag and protocol', () => {
    expect(cp.groupCount).toBe(3);
  });

  it('empty() matches nothing and tags nothing', () => {
    const e = CompiledPolicy.empty();
    expect(e.match(B, 6, 8080, 4)).toBe(-1);
    expect(e.tagFor(ip('10.255.2.9'))).toBe(0);
    expect(e.plan).toEqual({ marks: [], accepts: [] });
  });
});

describe('CompiledPolicy.tagFor', () => {
  it.each([
    ['10.255.2.9', 4], // appA
    ['10.255.2.2', 5], // appB
    ['10.255.2.3', 0], // appX: no policy, no tag
    ['198.18.0.1', 0],
  ])('%s → %d', (addr, tag) => expect(cp.tagFor(ip(addr))).toBe(tag));
});

describe('CompiledPolicy against a linear scan', () => {
  it('returns the first matching rule in plan order for overlapping ranges', () => {
    const rules: AcceptRule[] = [];
    // mulberry32: the low bits of a plain LCG repeat with a short period, which would correlate the fields.
    let s = 99;
    const next = (n: number) => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = Math.imul(s ^ (s >>> 15), s | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    for (let i = 0; i < 3000; i++) {
      const start = 1 + next(2000);
      const end = Math.min(65535, start + next(i % 7 === 0 ? 500 : 5));
      rules.push({ dstIp: ip('10.255.3.0') + next(4), dstApp: 'd', srcApp: 's', tag: 1 + next(3), protocol: next(2) ? 6 : 17, portStart: start, portEnd: end });
    }
    const plan_: Plan = { marks: [], accepts: rules };
    const c = CompiledPolicy.compile(plan_);
    const linear = (d: number, pr: number, port: number, tag: number) =>
      rules.findIndex((r) => r.dstIp === d && r.protocol === pr && r.tag === tag && port >= r.portStart && port <= r.portEnd);
    let matched = 0;
    for (let k = 0; k < 20_000; k++) {
      const d = ip('10.255.3.0') + next(5);
      const pr = next(2) ? 6 : 17;
      const port = next(2600);
      const tag = next(4);
      const want = linear(d, pr, port, tag);
      expect(c.match(d, pr, port, tag)).toBe(want);
      if (want >= 0) matched++;
    }
    expect(matched).toBeGreaterThan(5000);
  });

  it('rejects a malformed plan with a clear error', () => {
    const bad = (a: Partial<AcceptRule>) => ({ marks: [], accepts: [{ dstIp: B, dstApp: 'b', srcApp: 'a', tag: 1, protocol: 6, portStart: 1, portEnd: 1, ...a } as AcceptRule] });
    expect(() => CompiledPolicy.compile(bad({ tag: 0 }))).toThrow('accept rule 0: tag must be 1-65535, got 0');
    expect(() => CompiledPolicy.compile(bad({ protocol: 1 as 6 }))).toThrow('accept rule 0: protocol must be 6 or 17, got 1');
    expect(() => CompiledPolicy.compile(bad({ portStart: 10, portEnd: 9 }))).toThrow('ports must be 1 <= start <= end <= 65535, got 10-9');
  });
});
