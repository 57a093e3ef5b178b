// Fuzz: 100k random and mutated inputs — truncated,
// bit-flipped, length fields lying — through ingress and 100k through egress,
// in batches of 1..32 frames, with time moving (conntrack expiry, the ICMP
// token bucket). Nothing may throw, and every frame ends in exactly one
// accounted outcome:
//   - a delivery (Tap) to a live port, a well-formed frame inside its slot,
//     counted as a delivery (or as an ICMP error sent back to a container);
//   - an underlay send to a cell that holds a lease, a well-formed VXLAN
//     datagram inside its slot, counted as encapsulated (or as an ICMP error);
//   - a drop whose reason's counter moved.
// Accounting per batch: Σ drop counters moved == drops + ICMP errors sent.
// (A reject is both a counted drop of the offending packet and an output, so
// "drops + outputs == inputs" is checked in this form: outputs
// that are generated ICMP errors are subtracted. An error suppressed by the
// rate limit is the stat icmp-rate-limited, never a second drop.)
// The PRNG is seeded; a violation reports the seed, the iteration and the
// input in hex, so it replays.
import { describe, expect, it } from 'vitest';
import { Action, FrameBatch, slotSizeFor } from '../../../src/dataplane/batch.js';
import { DROP_NAMES, STAT_NAMES } from '../../../src/dataplane/counters.js';
import type { Dataplane } from '../../../src/dataplane/dataplane.js';
import { WireError } from '../../../src/wire/errors.js';
import { Ipv4View } from '../../../src/wire/ipv4.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { containerFrame, ipPacket, vxlanPayload, type L4 } from '../../helpers/packets.js';
import {
  A0,
  B0,
  B1,
  L1,
  L2,
  STRANGER,
  TAG,
  U1,
  U2,
  hex,
  icmpErrorPacket,
  policy,
  refreshIpChecksum,
  rng,
  runEgress,
  topology,
  wirePayload,
  type Topology,
} from '../../helpers/packets-extra.js';

const SEED = 0x51_1c_40_02;
const N = 100_000;
const POLICIES = [policy('appB', 'appA', 'tcp', 8080), policy('appB', 'appA', 'udp', 5000, 5010), policy('appA', 'appB', 'tcp', 9000, 9010)];
const SLOT = slotSizeFor(1500);
const STAT = (name: string) => STAT_NAMES.indexOf(name);
const DROPS = DROP_NAMES.length;

function frameFromIp(ip: string, pkt: Uint8Array): Uint8Array {
  const f = containerFrame(ip, ip, { proto: 'udp' });
  const out = new Uint8Array(14 + pkt.length);
  out.set(f.subarray(0, 14));
  out.set(pkt, 14);
  return out;
}

/** Valid container frames (appA-0's and appB-1's) covering each egress path. */
function egressCorpus(): { port: 'appA0' | 'appB1'; frame: Uint8Array }[] {
  const big = new Uint8Array(1400).fill(7);
  const a = (dst: string, l4: L4) => ({ port: 'appA0' as const, frame: containerFrame(A0, dst, l4) });
  const b1 = (dst: string, l4: L4) => ({ port: 'appB1' as const, frame: containerFrame(B1, dst, l4) });
  const quoted = ipPacket(B0, A0, { proto: 'udp', sport: 41000, dport: 5005, ttl: 62 });
  return [
    a(B0, { proto: 'tcp', sport: 40000, dport: 9000, flags: 0x02 }),
    a(B0, { proto: 'tcp', sport: 40000, dport: 9005, flags: 0x10, payload: new Uint8Array(64).fill(1) }),
    a(B0, { proto: 'udp', sport: 5005, dport: 41000, payload: big }),
    a(B0, { proto: 'udp', sport: 5005, dport: 41000, payload: new Uint8Array(1423), dontFrag: true }),
    a(B0, { proto: 'icmp', icmpType: 8, echoId: 3 }),
    a(B0, { proto: 'udp', ttl: 1 }),
    a(B1, { proto: 'tcp', sport: 40000, dport: 9000, flags: 0x02 }),
    a('8.8.8.8', { proto: 'udp', dport: 53 }),
    a('10.255.1.0', { proto: 'tcp', dport: 22 }),
    { port: 'appA0', frame: frameFromIp(A0, icmpErrorPacket(A0, B0, 3, 3, quoted)) },
    b1(A0, { proto: 'tcp', sport: 40001, dport: 8080, flags: 0x02 }),
    b1(A0, { proto: 'udp', sport: 40001, dport: 5003 }),
    b1(B0, { proto: 'tcp', sport: 40002, dport: 443, flags: 0x02 }),
    { port: 'appB1', frame: frameFromIp(B1, icmpErrorPacket(B1, A0, 3, 3, ipPacket(A0, B1, { proto: 'udp', sport: 5000, dport: 41000 }))) },
  ];
}

/** Valid VXLAN payloads from cell 2 (via its own egress where possible) covering each ingress path. */
function ingressCorpus(t: Topology): Uint8Array[] {
  const viaC2 = (l4: L4, dst = A0) => wirePayload(runEgress(t.c2, t.appB0, containerFrame(B0, dst, l4), 0));
  const raw = (inner: Uint8Array, gpid: number) => vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid, inner });
  const quoted = ipPacket(A0, B0, { proto: 'tcp', sport: 9000, dport: 40000, ttl: 62 });
  return [
    viaC2({ proto: 'tcp', sport: 40000, dport: 8080, flags: 0x02 }),
    viaC2({ proto: 'tcp', sport: 40000, dport: 8080, flags: 0x10, payload: new Uint8Array(100).fill(2) }),
    viaC2({ proto: 'tcp', sport: 9000, dport: 40000, flags: 0x12 }),
    viaC2({ proto: 'udp', sport: 41000, dport: 5005, payload: new Uint8Array(1300).fill(3) }),
    viaC2({ proto: 'udp', sport: 41000, dport: 6000 }),
    viaC2({ proto: 'icmp', icmpType: 8, echoId: 5 }),
    viaC2({ proto: 'udp', sport: 41000, dport: 5005, ttl: 2 }),
    viaC2({ proto: 'tcp', sport: 40000, dport: 8080, flags: 0x02 }, B1),
    viaC2({ proto: 'tcp', sport: 40000, dport: 8080, flags: 0x02 }, '10.255.1.77'),
    raw(icmpErrorPacket(B0, A0, 3, 3, quoted), TAG.appB),
    raw(ipPacket(B0, A0, { proto: 'tcp', sport: 40000, dport: 8080, ttl: 63 }), 0),
  ];
}

/** Mutate a copy of `base`; `ipOff` is where its (inner) IPv4 header starts. */
function mutate(r: () => number, base: Uint8Array, ipOff: number): Uint8Array {
  const kind = Math.floor(r() * 8);
  if (kind === 0) {
    const b = new Uint8Array(Math.floor(r() * 200));
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
    return b;
  }
  let b = base.slice();
  if (kind === 7) return b; // unmodified: the deep paths must be reached too
  if (kind === 1 || r() < 0.15) b = b.slice(0, Math.floor(r() * (b.length + 1)));
  if (kind === 2 || r() < 0.2) {
    const flips = 1 + Math.floor(r() * 4);
    for (let k = 0; k < flips && b.length; k++) b[Math.floor(r() * b.length)]! ^= 1 << Math.floor(r() * 8);
  }
  if (kind === 3 || r() < 0.2) {
    // Length-ish fields: IHL, total length, flags/fragment, TTL, protocol; L4 ports, UDP length, TCP data offset.
    const fields = [0, 2, 3, 6, 7, 8, 9, 20, 22, 24, 25, 32];
    const at = ipOff + fields[Math.floor(r() * fields.length)]!;
    if (at < b.length) b[at] = Math.floor(r() * 256);
  }
  if (kind === 4) for (let k = 0; k < 6 && b.length; k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
  if (kind === 5) {
    const extra = new Uint8Array(Math.floor(r() * 64));
    for (let i = 0; i < extra.length; i++) extra[i] = Math.floor(r() * 256);
    const c = new Uint8Array(b.length + extra.length);
    c.set(b);
    c.set(extra, b.length);
    b = c;
  }
  if (kind === 6 && b.length > ipOff + 20) {
    // A header that passes the checksum but lies inside: make the fuzz reach past the IP checks.
    b[ipOff + 2 + Math.floor(r() * 8)] = Math.floor(r() * 256);
  }
  // Most mutated headers fail the checksum at once; repair it half the time so later checks are reached.
  if (r() < 0.5 && b.length >= ipOff + 20 && (b[ipOff]! & 0x0f) >= 5 && b.length >= ipOff + (b[ipOff]! & 0x0f) * 4) refreshIpChecksum(b, ipOff);
  return b;
}

interface Violations {
  add(kind: string, detail: string): void;
  list(): string[];
}

function violations(): Violations {
  const m = new Map<string, { n: number; first: string }>();
  return {
    add(kind, detail) {
      const v = m.get(kind);
      if (v) v.n++;
      else m.set(kind, { n: 1, first: detail });
    },
    // Details are cut so a failure stays readable; the seed replays the whole run.
    list: () => [...m.entries()].map(([k, v]) => `${k} — ${v.n} batches; first: ${v.first.slice(0, 1500)}`),
  };
}

const ipv = new Ipv4View();
const leaseByUnderlay = new Map([
  [U1, L1],
  [U2, L2],
]);

function mac(b: Uint8Array, off: number, prefix: number, ip: number): boolean {
  return (
    b[off] === prefix >>> 8 && b[off + 1] === (prefix & 255) && b[off + 2] === ip >>> 24 && b[off + 3] === ((ip >>> 16) & 255) && b[off + 4] === ((ip >>> 8) & 255) && b[off + 5] === (ip & 255)
  );
}

/** Why a Tap output is malformed, or null. */
function badTap(cell: Dataplane, b: FrameBatch, i: number): string | null {
  const port = cell.port(b.outTarget[i]!);
  if (!port) return `tap to missing port ${b.outTarget[i]}`;
  const off = b.outOff[i]!;
  const len = b.outLen[i]!;
  if (off < i * b.slotSize || off + len > (i + 1) * b.slotSize) return `tap output [${off}, ${off + len}) outside slot ${i}`;
  if (len < 34) return `tap frame of ${len} bytes`;
  const s = b.slab;
  if (!mac(s, off, 0xeeee, port.ip) || !mac(s, off + 6, 0xaaaa, port.ip)) return 'tap frame MACs are not ee:ee/aa:aa of the port';
  if (s[off + 12] !== 8 || s[off + 13] !== 0) return 'tap frame not IPv4';
  ipv.wrap(s, off + 14, len - 14);
  if (ipv.check() !== WireError.None) return `tap frame IPv4 header invalid (${ipv.check()})`;
  if (!ipv.verifyChecksum()) return 'tap frame IPv4 checksum wrong';
  if (ipv.totalLen !== len - 14) return 'tap frame length != IPv4 total length';
  if (ipv.dstAddr !== port.ip) return 'tap frame not addressed to the port';
  return null;
}

/** Why an Underlay output is malformed, or null. */
function badUnderlay(cell: Dataplane, b: FrameBatch, i: number): string | null {
  const to = b.outTarget[i]! >>> 0;
  const lease = leaseByUnderlay.get(to);
  if (lease === undefined || to === cell.cfg.underlayIp) return `underlay send to ${to}, not a peer cell`;
  const off = b.outOff[i]!;
  const len = b.outLen[i]!;
  if (off < i * b.slotSize || off + len > (i + 1) * b.slotSize) return `underlay output [${off}, ${off + len}) outside slot ${i}`;
  const s = b.slab;
  ipv.wrap(s, off, len);
  if (ipv.check() !== WireError.None || !ipv.verifyChecksum()) return 'outer IPv4 invalid';
  if (ipv.totalLen !== len || ipv.srcAddr !== cell.cfg.underlayIp || ipv.dstAddr !== to || ipv.protocol !== 17) return 'outer IPv4 fields wrong';
  if (((s[off + 22]! << 8) | s[off + 23]!) !== 4789 || ((s[off + 24]! << 8) | s[off + 25]!) !== len - 20) return 'outer UDP wrong';
  const fl = s[off + 28]!;
  if (fl !== 0x08 && fl !== 0x88) return `VXLAN flags ${fl}`;
  if (fl === 0x08 && (s[off + 30] !== 0 || s[off + 31] !== 0)) return 'GBP field set without G';
  if (s[off + 32] !== 0 || s[off + 33] !== 0 || s[off + 34] !== 1 || s[off + 35] !== 0) return 'VNI wrong';
  if (!mac(s, off + 36, 0xeeee, lease) || !mac(s, off + 42, 0xeeee, cell.vtepIp)) return 'inner MACs are not the VTEPs';
  if (s[off + 48] !== 8 || s[off + 49] !== 0) return 'inner frame not IPv4';
  ipv.wrap(s, off + 50, len - 50);
  if (ipv.check() !== WireError.None || !ipv.verifyChecksum()) return 'inner IPv4 invalid';
  if (ipv.totalLen !== len - 50) return 'inner length != inner IPv4 total length';
  return null;
}

/**
 * Run one batch and check every frame's outcome and the batch's accounting.
 * `inputs` is for the report only.
 */
function checkBatch(cell: Dataplane, b: FrameBatch, run: () => void, dir: 'ingress' | 'egress', inputs: string[], v: Violations, tally: Float64Array): void {
  const drops0 = cell.counters.drops.slice();
  const stats0 = cell.counters.stats.slice();
  b.action.fill(255, 0, b.count);
  try {
    run();
  } catch (e) {
    v.add(`${dir} threw ${(e as Error).name}: ${(e as Error).message}`, inputs.join(' | '));
    return;
  }
  let nDrop = 0;
  let nTap = 0;
  let nUnderlay = 0;
  // Held: a fragment waiting for its datagram, or a frame whose outputs (its
  // fragments, or an answer about a reassembled datagram) went to the side area.
  let nHeld = 0;
  const byReason = new Float64Array(DROPS);
  for (let i = 0; i < b.count; i++) {
    const a = b.action[i]!;
    if (a === Action.Drop) {
      const r = b.outTarget[i]!;
      if (r >= DROPS) v.add(`${dir} drop with unknown reason`, `reason ${r}: ${inputs[i]}`);
      else byReason[r]!++;
      nDrop++;
      tally[r]!++;
    } else if (a === Action.Tap) {
      nTap++;
      tally[DROPS]!++;
      const bad = badTap(cell, b, i);
      if (bad) v.add(`${dir} ${bad}`, inputs[i]!);
    } else if (a === Action.Underlay) {
      nUnderlay++;
      tally[DROPS + 1]!++;
      const bad = badUnderlay(cell, b, i);
      if (bad) v.add(`${dir} ${bad}`, inputs[i]!);
    } else if (a === Action.Held) {
      nHeld++;
    } else {
      v.add(`${dir} frame left without a verdict (action ${a})`, inputs[i]!);
    }
  }
  // Fragment reasons count every fragment a dead queue held, not only the
  // frame in hand: they may move by more than the verdicts naming them.
  const fragFrom = DROP_NAMES.indexOf('fragment-overlap');
  const isFrag = (r: number) => r >= fragFrom && r < fragFrom + 8;
  let fragVerdicts = 0;
  for (let r = fragFrom; r < fragFrom + 8; r++) fragVerdicts += byReason[r]!;
  const dStat = (name: string) => cell.counters.stats[STAT(name)]! - stats0[STAT(name)]!;
  let dDrops = 0;
  for (let r = 0; r < DROPS; r++) {
    const d = cell.counters.drops[r]! - drops0[r]!;
    if (!isFrag(r)) dDrops += d;
    if (d < byReason[r]!) v.add(`${dir} drop reason ${DROP_NAMES[r]} reported but its counter did not move`, inputs.join(' | '));
  }
  const icmp = dStat('icmp-sent');
  const limited = dStat('icmp-rate-limited');
  if (dDrops !== nDrop - fragVerdicts + icmp) {
    const moved = DROP_NAMES.map((n, r) => [n, cell.counters.drops[r]! - drops0[r]!] as const).filter(([, d]) => d !== 0);
    v.add(
      `${dir}: drop counters moved more than once per frame (Σ drop counters != drops + ICMP errors sent)` +
        (moved.some(([n]) => n === 'unrelated-icmp-error') ? ', in batches with an unrelated ICMP error' : ', in batches without an unrelated ICMP error'),
      `moved ${dDrops}, expected ${nDrop} + ${icmp} (${limited} suppressed by the rate limit); counters ${JSON.stringify(moved)}; batch: ${inputs.join(' | ')}`,
    );
  }
  // A reassembled datagram's outputs are in the side area, one stat per datagram: per-slot equalities hold without them.
  if (nHeld > 0) return;
  if (dir === 'ingress') {
    if (nTap !== dStat('delivered-from-remote')) v.add('ingress deliveries != delivered-from-remote', inputs.join(' | '));
    if (nUnderlay !== icmp) v.add('ingress underlay sends != icmp-sent', inputs.join(' | '));
    if (dStat('ingress-packets') !== b.count) v.add('ingress-packets != batch size', '');
  } else {
    if (nUnderlay !== dStat('encapsulated')) v.add('egress underlay sends != encapsulated', inputs.join(' | '));
    if (nTap !== dStat('delivered-same-cell') + icmp) v.add('egress deliveries != delivered-same-cell + icmp-sent', inputs.join(' | '));
    if (dStat('egress-packets') !== b.count) v.add('egress-packets != batch size', '');
  }
}

function summary(tally: Float64Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (let r = 0; r < DROPS; r++) if (tally[r]) out[DROP_NAMES[r]!] = tally[r]!;
  out.TAP = tally[DROPS]!;
  out.UNDERLAY = tally[DROPS + 1]!;
  return out;
}

describe(`pipeline fuzz (seed ${SEED.toString(16)}, ${N} inputs per direction)`, () => {
  it('ingress: never throws; every datagram is delivered, answered, or a counted drop', () => {
    const r = rng(SEED);
    const t = topology(POLICIES, { conntrackCapacity: 1024 });
    const corpus = ingressCorpus(t);
    const senders = [U2, U2, U2, U2, U2, U2, U2, U2, U1, STRANGER, ipToU32('203.0.113.9')];
    const b = new FrameBatch(32, SLOT);
    const v = violations();
    const tally = new Float64Array(DROPS + 2);
    const inputs: string[] = [];
    let now = 1;
    for (let done = 0; done < N; ) {
      const n = Math.min(N - done, 1 + Math.floor(r() * 32));
      b.count = 0;
      inputs.length = 0;
      for (let k = 0; k < n; k++) {
        const p = mutate(r, corpus[Math.floor(r() * corpus.length)]!, 22);
        const from = senders[Math.floor(r() * senders.length)]!;
        if (!b.push(p.length > b.maxFrame ? p.subarray(0, b.maxFrame) : p, from, 40000)) throw new Error('push failed');
        inputs.push(`#${done + k} from ${from >>> 0}: ${hex(p)}`);
      }
      checkBatch(t.c1, b, () => t.c1.ingress(b, now), 'ingress', inputs, v, tally);
      done += n;
      now += r() < 0.01 ? 40 : 0.002;
      if (r() < 0.02) t.c1.tick(now);
    }
    const s = summary(tally);
    expect(v.list()).toEqual([]);
    // The fuzz reached the deep paths, not just the first length check.
    expect(s.TAP).toBeGreaterThan(1000);
    expect(s.UNDERLAY).toBeGreaterThan(1000);
    expect(Object.keys(s).length).toBeGreaterThan(15);
  });

  it('egress: never throws; every frame is encapsulated, delivered, answered, or a counted drop', () => {
    const r = rng(SEED ^ 0xe9e55);
    const t = topology(POLICIES, { conntrackCapacity: 1024 });
    const corpus = egressCorpus();
    const b = new FrameBatch(32, SLOT);
    const v = violations();
    const tally = new Float64Array(DROPS + 2);
    const inputs: string[] = [];
    let now = 1;
    for (let done = 0; done < N; ) {
      // One batch comes from one TAP: pick the port, then frames from the corpus (its own or the other's, to exercise the spoof check).
      const portName = r() < 0.7 ? 'appA0' : 'appB1';
      const port = portName === 'appA0' ? t.appA0 : t.appB1;
      const n = Math.min(N - done, 1 + Math.floor(r() * 32));
      b.count = 0;
      inputs.length = 0;
      for (let k = 0; k < n; k++) {
        const c = corpus[Math.floor(r() * corpus.length)]!;
        const f = mutate(r, c.frame, 14);
        if (!b.push(f.length > b.maxFrame ? f.subarray(0, b.maxFrame) : f)) throw new Error('push failed');
        inputs.push(`#${done + k} on ${portName}: ${hex(f)}`);
      }
      checkBatch(t.c1, b, () => t.c1.egress(b, port.index, now), 'egress', inputs, v, tally);
      done += n;
      now += r() < 0.01 ? 40 : 0.002;
      if (r() < 0.02) t.c1.tick(now);
    }
    const s = summary(tally);
    expect(v.list()).toEqual([]);
    expect(s.TAP).toBeGreaterThan(1000);
    expect(s.UNDERLAY).toBeGreaterThan(1000);
    expect(Object.keys(s).length).toBeGreaterThan(10);
  });

  it('a batch mixing good and bad frames gives each its own verdict (no state leaks between slots)', () => {
    const t = topology(POLICIES);
    const good = containerFrame(A0, B0, { proto: 'tcp', sport: 40000, dport: 9000, flags: 0x02 });
    const bad = good.slice();
    bad[24] ^= 0xff; // IP checksum
    const b = new FrameBatch(4, SLOT);
    b.push(good);
    b.push(bad);
    b.push(good.slice(0, 20));
    b.push(good);
    t.c1.egress(b, t.appA0.index, 1);
    expect(Array.from(b.action.subarray(0, 4))).toEqual([Action.Underlay, Action.Drop, Action.Drop, Action.Underlay]);
    expect([DROP_NAMES[b.outTarget[1]!], DROP_NAMES[b.outTarget[2]!]]).toEqual(['bad-ip-checksum', 'bad-ip-header']);
    expect(hex(b.output(0).subarray(28))).toBe(hex(b.output(3).subarray(28)));
    expect(b.outOff[3]! - b.outOff[0]!).toBe(3 * SLOT);
  });
});
