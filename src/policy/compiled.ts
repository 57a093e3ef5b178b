// A Plan compiled for per-packet lookups. The data plane builds a new
// CompiledPolicy off the hot path whenever policies or containers change and
// swaps the reference in one assignment (silk's enforcer swaps a whole chain
// the same way: make before break).
//
// Cost per packet is flat in the number of policies (measured in
// scripts/bench-lookup.mjs at 10 / 1k / 100k rules):
// - tagFor: one probe of a u32 → tag hash (U32Map).
// - match: one probe of a hash keyed by (dstIp, tag, protocol) — the three
//   things an iptables accept rule matches exactly — giving that group's
//   port ranges, pre-flattened into disjoint segments; a binary search over
//   them finds the port. A group is usually one or two rules (one per
//   policy between two apps), and even 100k overlapping ranges in one group
//   cost ~17 comparisons, where an iptables chain walk would cost 100k.
// Keys are numbers in typed arrays: no strings, no objects, no allocation.
import { U32Map } from '../tables/u32map.js';
import type { AcceptRule, Plan } from './planner.js';

function checkRule(a: AcceptRule, i: number): void {
  const bad = (why: string) => new RangeError(`accept rule ${i}: ${why}`);
  if (!Number.isInteger(a.tag) || a.tag < 1 || a.tag > 0xffff) throw bad(`tag must be 1-65535, got ${a.tag}`);
  if (a.protocol !== 6 && a.protocol !== 17) throw bad(`protocol must be 6 or 17, got ${a.protocol}`);
  if (!Number.isInteger(a.portStart) || !Number.isInteger(a.portEnd) || a.portStart < 1 || a.portEnd > 65535 || a.portStart > a.portEnd) {
    throw bad(`ports must be 1 <= start <= end <= 65535, got ${a.portStart}-${a.portEnd}`);
  }
  if (!Number.isInteger(a.dstIp) || a.dstIp < 0 || a.dstIp > 0xffffffff) throw bad(`dstIp must be a u32, got ${a.dstIp}`);
}

function groupHash(ip: number, tp: number): number {
  let h = Math.imul(ip ^ Math.imul(tp, 0x85ebca6b), 0x9e3779b1);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Flatten possibly overlapping port ranges into disjoint segments, each
 * naming the lowest rule index that covers it (the first matching rule in
 * plan order, as iptables would hit it). Appends (start, rule) pairs to the
 * output arrays, ending with a sentinel (end+1, -1); returns how many.
 * Lowest index first + a "next unpainted" union-find makes it O(n log n).
 */
function flatten(rules: { start: number; end: number; idx: number }[], starts: number[], ruleOut: number[]): number {
  const bset = new Set<number>();
  for (const r of rules) {
    bset.add(r.start);
    bset.add(r.end + 1);
  }
  const b = [...bset].sort((x, y) => x - y);
  const pos = new Map<number, number>();
  b.forEach((v, i) => pos.set(v, i));
  const nSeg = b.length - 1;
  const paint = new Int32Array(nSeg).fill(-1);
  const next = new Int32Array(nSeg + 1);
  for (let i = 0; i <= nSeg; i++) next[i] = i;
  const find = (k: number): number => {
    let r = k;
    while (next[r] !== r) r = next[r]!;
    while (next[k] !== r) {
      const n = next[k]!;
      next[k] = r;
      k = n;
    }
    return r;
  };
  const byIdx = [...rules].sort((x, y) => x.idx - y.idx);
  for (const r of byIdx) {
    const k1 = pos.get(r.end + 1)!;
    for (let k = find(pos.get(r.start)!); k < k1; k = find(k)) {
      paint[k] = r.idx;
      next[k] = k + 1;
    }
  }
  let n = 0;
  let prev = -2;
  for (let k = 0; k < nSeg; k++) {
    if (paint[k] === prev) continue;
    starts.push(b[k]!);
    ruleOut.push(paint[k]!);
    prev = paint[k]!;
    n++;
  }
  if (prev !== -1) {
    starts.push(b[nSeg]!);
    ruleOut.push(-1);
    n++;
  }
  return n;
}

export class CompiledPolicy {
  readonly plan: Plan;
  private readonly tags: U32Map;
  // Group hash, 4 int32 per slot so one probe touches one cache line:
  // [dstIp, tag << 8 | protocol, first segment, segment count]; a tag/protocol
  // word of 0 marks an empty slot (tags are never 0 here).
  private readonly groups: Int32Array;
  private readonly gShift: number;
  private readonly gMask: number;
  // Concatenated segments of every group, 2 int32 each: [first port of the
  // segment, index in plan.accepts that covers it (-1 = none)].
  private readonly segs: Int32Array;

  private constructor(p: Plan) {
    this.plan = p;
    this.tags = new U32Map(Math.max(16, p.marks.length));
    for (const m of p.marks) {
      if (!Number.isInteger(m.tag) || m.tag < 1 || m.tag > 0xffff) {
        throw new RangeError(`mark rule for ${m.app}: tag must be 1-65535, got ${m.tag}`);
      }
      this.tags.set(m.ip >>> 0, m.tag);
    }

    const groups = new Map<string, { ip: number; tp: number; rules: { start: number; end: number; idx: number }[] }>();
    p.accepts.forEach((a, i) => {
      checkRule(a, i);
      const ip = a.dstIp >>> 0;
      const tp = (a.tag << 8) | a.protocol;
      const k = `${ip}/${tp}`;
      let g = groups.get(k);
      if (!g) {
        g = { ip, tp, rules: [] };
        groups.set(k, g);
      }
      g.rules.push({ start: a.portStart, end: a.portEnd, idx: i });
    });

    let cap = 16;
    while (cap < groups.size * 2) cap *= 2;
    this.groups = new Int32Array(cap * 4);
    this.gMask = cap - 1;
    this.gShift = 32 - Math.log2(cap);
    const starts: number[] = [];
    const ruleIdx: number[] = [];
    for (const g of groups.values()) {
      const off = starts.length;
      const cnt = flatten(g.rules, starts, ruleIdx);
      let i = groupHash(g.ip, g.tp) >>> this.gShift;
      while (this.groups[4 * i + 1] !== 0) i = (i + 1) & this.gMask;
      this.groups[4 * i] = g.ip | 0;
      this.groups[4 * i + 1] = g.tp;
      this.groups[4 * i + 2] = off;
      this.groups[4 * i + 3] = cnt;
    }
    this.segs = new Int32Array(starts.length * 2);
    for (let k = 0; k < starts.length; k++) {
      this.segs[2 * k] = starts[k]!;
      this.segs[2 * k + 1] = ruleIdx[k]!;
    }
  }

  static compile(p: Plan): CompiledPolicy {
    return new CompiledPolicy(p);
  }

  static empty(): CompiledPolicy {
    return new CompiledPolicy({ marks: [], accepts: [] });
  }

  /** The tag to stamp on packets from local container `srcIp`; 0 = none (send without the G flag). */
  tagFor(srcIp: number): number {
    const t = this.tags.get(srcIp);
    return t < 0 ? 0 : t;
  }

  /**
   * The index in plan.accepts of the first rule that admits a packet to
   * `dstIp` with IP `protocol`, destination `port` and GBP `tag`; -1 if none.
   * Tag 0 (an untagged packet) never matches. Allocation-free.
   */
  match(dstIp: number, protocol: number, port: number, tag: number): number {
    if (tag <= 0 || tag > 0xffff) return -1;
    const ip = dstIp | 0;
    const tp = (tag << 8) | (protocol & 0xff);
    const groups = this.groups;
    const mask = this.gMask;
    let i = groupHash(ip, tp) >>> this.gShift;
    for (;;) {
      const t = groups[4 * i + 1]!;
      if (t === 0) return -1;
      if (t === tp && groups[4 * i] === ip) break;
      i = (i + 1) & mask;
    }
    // Last segment whose start <= port.
    const segs = this.segs;
    let lo = groups[4 * i + 2]!;
    let hi = lo + groups[4 * i + 3]! - 1;
    if (port < segs[2 * lo]!) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (segs[2 * mid]! <= port) lo = mid;
      else hi = mid - 1;
    }
    return segs[2 * lo + 1]!;
  }

  /** Number of (destination, tag, protocol) groups — for `show rules` summaries and tests. */
  get groupCount(): number {
    let n = 0;
    for (let i = 1; i < this.groups.length; i += 4) if (this.groups[i] !== 0) n++;
    return n;
  }
}
