// Whole runs on ingress (src/dataplane/ingress.ts runLength/whole, ConnTrack.settled): the same VXLAN
// datagrams through the ingress of a cell that decides runs once (wholeRx) and of one that decides every
// datagram (wholeRx: false) must give the same verdicts, the same bytes in every slot, the same bytes
// written to the TAPs (each batch's TAP frames through the GRO planner, as the cell writes them), the
// same counters, drop counters, port counts, rule hits and the same conntrack arrays — for runs of a
// settled flow (with partial checksums to complete, PSH on the last segment, across batch boundaries),
// runs cut short by any header field that differs (another flow, another tag, TTL, DS byte, a bad IPv4
// checksum, a FIN, a SYN, an ack number, another peer), runs of a flow not settled (new, unreplied,
// expired), runs whose lead is dropped (no container, TTL 1, ECN), and over-MTU followers.
import { describe, expect, it } from 'vitest';
import { Dataplane, DEFAULT_CONFIG, type Port } from '../../../src/dataplane/dataplane.js';
import { Action, FrameBatch, slotSizeFor } from '../../../src/dataplane/batch.js';
import { Stat } from '../../../src/dataplane/counters.js';
import { GroPlanner, packetBytes } from '../../../src/offload/gro.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { put16, put32, u16 } from '../../helpers/bytes.js';
import { ACK, DST, FIN, HDR, IPHL, L1, L2, PSH, SEED, SPORT, SRC, SYN, T, THL, U1, U2, expectSameCells, leases, policies } from '../../helpers/proxy-pair.js';

const U3 = ipToU32('10.0.48.1');
const MSS = 1398;


interface Seg {
  seq: number;
  payload?: number;
  flags?: number;
  ack?: number;
  sport?: number;
  id?: number;
  ttl?: number;
  tos?: number;
  dst?: number;
  gpid?: number;
  /** TCP checksum left partial (the pseudo-header sum), as a kernel peer on this host may send it. */
  partial?: boolean;
  badIpCsum?: boolean;
  /** Outer DS byte. */
  outerTos?: number;
  from?: number;
  /** TCP data offset (words) written over the seed's. */
  doff?: number;
  /** Four bytes of IPv4 options (NOPs): IHL 6. */
  ihl6?: boolean;
  /** IPv4 flags/fragment word. */
  frag?: number;
  /** These bytes instead (see fragments). */
  raw?: Uint8Array;
  /** An IPv4 total length this many bytes past the datagram's end (a bad header the per-segment path drops). */
  longIp?: number;
  /** Inner IPv4 source address. */
  src?: number;
  /** TCP destination port. */
  dport?: number;
  /** VNI. */
  vni?: number;
  /** XORed into the last byte of the inner destination MAC. */
  macXor?: number;
}

/** The datagram of `o` with its inner IPv4 packet cut in two fragments (the first 512 payload bytes, MF; the rest). */
function fragments(o: Seg): [Uint8Array, Uint8Array] {
  const d = datagram(o);
  const ip = 22;
  const body = d.subarray(ip + 20);
  const cut = (from: number, to: number, word: number): Uint8Array => {
    const f = new Uint8Array(ip + 20 + to - from);
    f.set(d.subarray(0, ip + 20));
    f.set(body.subarray(from, to), ip + 20);
    put16(f, ip + 2, 20 + to - from);
    put16(f, ip + 6, word);
    put16(f, ip + 10, 0);
    put16(f, ip + 10, referenceChecksum(f.subarray(ip, ip + 20)));
    return f;
  };
  return [cut(0, 512, 0x2000), cut(512, body.length, 512 / 8)];
}

/** A VXLAN payload as the underlay socket hands it over: VXLAN-GBP header, inner Ethernet, IPv4, TCP, payload. */
function datagram(o: Seg): Uint8Array {
  if (o.raw !== undefined) return o.raw;
  if (o.ihl6) {
    // The same datagram with four bytes of options: IHL 6, everything after moved on.
    const d = datagram({ ...o, ihl6: false });
    const f = new Uint8Array(d.length + 4);
    f.set(d.subarray(0, 22 + 20));
    f.fill(1, 42, 46);
    f.set(d.subarray(42), 46);
    f[22] = 0x46;
    put16(f, 24, u16(d, 24) + 4);
    put16(f, 32, 0);
    put16(f, 32, referenceChecksum(f.subarray(22, 46)));
    return f;
  }
  const payload = o.payload ?? MSS;
  const f = new Uint8Array(8 + HDR + payload);
  f[0] = 0x88;
  put16(f, 2, o.gpid ?? 1);
  f[6] = o.vni ?? 1; // VNI 1
  const e = 8;
  f.set([0xee, 0xee, 10, 255, 132, 0, 0xee, 0xee, 10, 255, 99, 0, 0x08, 0x00], e);
  f.set(SEED.subarray(14, HDR), e + 14);
  let x = (o.seq ^ 0x9e3779b9) >>> 0;
  for (let i = e + HDR; i < f.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    f[i] = x >>> 24;
  }
  const ip = e + 14;
  put16(f, ip + 2, IPHL + THL + payload + (o.longIp ?? 0));
  put16(f, ip + 4, o.id ?? 0x1234);
  if (o.frag !== undefined) put16(f, ip + 6, o.frag);
  f[ip + 1] = o.tos ?? 0;
  f[ip + 8] = o.ttl ?? 63;
  if (o.dst !== undefined) put32(f, ip + 16, o.dst);
  if (o.src !== undefined) put32(f, ip + 12, o.src);
  if (o.macXor !== undefined) f[e + 5] = f[e + 5]! ^ o.macXor;
  put16(f, ip + 10, 0);
  put16(f, ip + 10, referenceChecksum(f.subarray(ip, ip + IPHL)) ^ (o.badIpCsum ? 0x5a : 0));
  const t = e + T;
  put16(f, t, o.sport ?? SPORT);
  if (o.dport !== undefined) put16(f, t + 2, o.dport);
  put32(f, t + 4, o.seq);
  put32(f, t + 8, o.ack ?? 0x01020304);
  f[t + 13] = o.flags ?? ACK;
  if (o.doff !== undefined) f[t + 12] = (o.doff << 4) | (f[t + 12]! & 0x0f);
  const pseudo = [u16(f, ip + 12), u16(f, ip + 14), u16(f, ip + 16), u16(f, ip + 18), 6, THL + payload];
  put16(f, t + 16, 0);
  put16(f, t + 16, o.partial ? 0xffff - referenceChecksum([], pseudo) : referenceChecksum(f.subarray(t), pseudo));
  return f;
}

interface Cell {
  dp: Dataplane;
  port: Port;
  batch: FrameBatch;
  gro: GroPlanner;
  out: { action: number; target: number; bytes: string }[];
  tap: string[];
}

function cell(whole: boolean, capacity: number, slot = slotSizeFor(1500)): Cell {
  const dp = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: U2, leaseSubnet: L2, conntrackCapacity: 256, wholeRx: whole });
  dp.setLeases(leases);
  dp.setPolicies(policies);
  const port = dp.addPort('proxy-0', 'proxy', DST);
  dp.addPort('proxy-1', 'proxy', ipToU32('10.255.132.3'));
  return { dp, port, batch: new FrameBatch(capacity, slot), gro: new GroPlanner(64, 256), out: [], tap: [] };
}

const FRAGS = fragments({ seq: 1 + 48 * MSS, payload: 1000, id: 4848 });

/** The verdicts and output bytes, and what the cell writes to each TAP (GRO planned per destination, in order). */
function collect(c: Cell): void {
  const b = c.batch;
  const byTap = new Map<number, number[]>();
  for (let i = 0; i < b.count; i++) {
    const a = b.action[i]!;
    c.out.push({ action: a, target: b.outTarget[i]!, bytes: a === Action.Drop ? '' : Buffer.from(b.output(i)).toString('hex') });
    if (a === Action.Tap) byTap.set(b.outTarget[i]!, [...(byTap.get(b.outTarget[i]!) ?? []), i]);
  }
  for (const [target, slots] of byTap) {
    const offs = Uint32Array.from(slots.map((i) => b.outOff[i]!));
    const lens = Uint32Array.from(slots.map((i) => b.outLen[i]!));
    for (let s = 0; s < slots.length; ) {
      const k = c.gro.plan(b.slab, offs, lens, s, slots.length);
      for (let p = 0; p < c.gro.npkts; p++) c.tap.push(`${target}:${Buffer.from(packetBytes(c.gro, b.slab, p)).toString('hex')}`);
      s += k;
    }
  }
}

/** These datagrams through ingress in batches of the cell's capacity. */
function recv(c: Cell, segs: Seg[], now: number): void {
  const b = c.batch;
  b.count = 0;
  for (const s of segs) {
    if (b.count === b.capacity) {
      c.dp.ingress(b, now);
      collect(c);
      b.count = 0;
    }
    expect(b.push(datagram(s), s.from ?? U1, 40000, s.outerTos ?? 0)).toBe(true);
  }
  if (b.count > 0) {
    c.dp.ingress(b, now);
    collect(c);
  }
  b.count = 0;
}

/** The reply direction seen (the container's answer through egress would do this): the flow settles. */
function reply(c: Cell, now: number, sport = SPORT): void {
  c.dp.conntrack.process(DST, SRC, 6, 7777, sport, ACK, now, false, 0, 0x01020304, 1, 0);
}

function expectSame(a: Cell, b: Cell): void {
  expectSameCells(a, b);
  expect(b.tap).toEqual(a.tap);
  expect(Array.from(b.dp.ruleHits)).toEqual(Array.from(a.dp.ruleHits));
}

/** A bulk stream: n segments from seq on, the last shorter and with PSH. */
function stream(seq: number, n: number, o: Partial<Seg> = {}): Seg[] {
  const out: Seg[] = [];
  for (let k = 0; k < n; k++) out.push({ seq: (seq + k * MSS) >>> 0, id: (0x100 + k) & 0xffff, ...o, ...(k === n - 1 ? { payload: 311, flags: ACK | PSH } : {}) });
  return out;
}

describe('whole runs vs per-segment ingress', () => {
  function both(capacity: number, steps: (c: Cell) => void, slot?: number): [Cell, Cell] {
    const old = cell(false, capacity, slot);
    const whole = cell(true, capacity, slot);
    steps(old);
    steps(whole);
    expectSame(old, whole);
    return [old, whole];
  }

  it('a settled flow: runs decided once, byte for byte, across batch boundaries; the TAP gets super-frames', () => {
    for (const capacity of [64, 5, 2]) {
      const [old, whole] = both(capacity, (c) => {
        // New (picked up by policy), then unreplied: the per-segment way.
        recv(c, stream(0xffffe000, 4), 10);
        reply(c, 11);
        recv(c, stream(0xffffe000 + 3 * MSS + 311, 9, { partial: true }), 12);
        recv(c, [...stream(5000, 6), ...stream(0x7fffffff, 7, { partial: true, id: 7 })], 13);
      });
      expect(whole.out.every((o) => o.action === Action.Tap)).toBe(true);
      expect(whole.dp.counters.stats[Stat.ChecksumCompleted]).toBe(16);
      expect(whole.dp.conntrack.entries(0).map((e) => e.tcpState)).toEqual(['ESTABLISHED']);
      if (capacity === 64) expect(whole.tap.length).toBeLessThan(whole.out.length);
      // Runs were decided whole (the per-segment cell has none): 9, then 6 + 7 as one (sequence
      // numbers and PSH do not cut a run: conntrack's decision does not depend on them once settled).
      expect(old.dp.rxRuns.runs).toBe(0);
      if (capacity === 64) expect(whole.dp.rxRuns).toEqual({ runs: 2, segments: 22 });
      else expect(whole.dp.rxRuns.segments).toBeGreaterThan(capacity === 5 ? 15 : 8);
    }
  });

  it('slots at odd offsets (an odd slot size): no runs, the per-segment path, the same bytes', () => {
    const [, whole] = both(
      64,
      (c) => {
        recv(c, stream(5000, 3), 10);
        reply(c, 11);
        recv(c, stream(5000 + 2 * MSS + 311, 12), 12);
      },
      slotSizeFor(1500) + 1,
    );
    expect(whole.dp.rxRuns.runs).toBe(0);
    expect(whole.out.every((o) => o.action === Action.Tap)).toBe(true);
  });

  it('runs cut by any field that differs: flow, tag, TTL, DS, ack, flags, peer, IPv4 checksum, addresses, port, VNI, MAC', () => {
    for (const capacity of [64, 3]) {
      const [, whole] = both(capacity, (c) => {
        recv(c, [{ seq: 1 }, { seq: 1, sport: 40001 }], 20);
        reply(c, 20);
        reply(c, 20, 40001);
        const s = (k: number, o: Partial<Seg> = {}): Seg => ({ seq: 1 + k * MSS, id: k, ...o });
        recv(
          c,
          [
            s(1), s(2), s(3, { sport: 40001 }), s(4, { sport: 40001 }), s(5), s(6, { gpid: 2 }), s(7, { gpid: 2 }), s(8),
            s(9, { ttl: 1 }), s(10, { ttl: 1 }), s(11), s(12, { tos: 4 }), s(13, { tos: 4 }), s(14), s(15, { ack: 9 }),
            s(16), s(17, { badIpCsum: true }), s(18), s(19), s(20), s(21), s(22),
            s(23, { from: U3 }), s(24), s(25, { outerTos: 1 }), s(26, { outerTos: 1 }), s(27, { outerTos: 3, tos: 0 }),
            s(28, { outerTos: 2 }), s(29, { outerTos: 2 }), s(30, { flags: ACK | 0x20 }), s(31), s(32, { partial: true }), s(33),
            // Data offsets the per-segment path calls INVALID (below 5; past the packet for a follower).
            s(40, { doff: 4 }), s(41, { doff: 4 }), s(42, { doff: 15, payload: 1000 }), s(43, { doff: 15, payload: 10 }),
            // IPv4 options: the follower is another (new) flow whose sequence number matches the lead's.
            s(44, { ihl6: true, ack: 0x50100000, payload: 1000 }), { seq: 1 + 44 * MSS, id: 45, ihl6: true, ack: 0x50100000, sport: 40002, payload: 1000 }, s(46),
            // Fragments (MF set) of one datagram: never runs.
            s(47, { frag: 0x2000 }), s(47, { frag: 0x2000 }), s(48),
            // Only the ack number's high half differs; an IPv4 total length past the datagram.
            s(50), s(51, { ack: 0x0a0b0304 }), s(52), s(53, { longIp: 2, payload: 1000 }), s(54),
            // Another container, another source in the peer's lease, another port, VNI, inner MAC.
            s(55), s(56, { dst: ipToU32('10.255.132.3') }), s(57), s(58, { src: ipToU32('10.255.99.4') }), s(59),
            s(60, { dport: 7778 }), s(61), s(62, { vni: 2 }), s(63), s(64, { macXor: 1 }), s(65),
            // The last fragment twice: the first completes the datagram (delivered), the second is held alone.
            { seq: 0, raw: FRAGS[0] }, { seq: 0, raw: FRAGS[1] }, { seq: 0, raw: FRAGS[1] }, s(49),
            // A FIN: the flow is no longer settled (FIN_WAIT), runs after it walk per segment.
            s(34, { flags: ACK | FIN }), s(35), s(36), s(37, { flags: SYN }), s(38), s(39),
          ],
          21,
        );
      });
      if (capacity === 64) expect(whole.dp.rxRuns).toEqual({ runs: 8, segments: 20 });
      else expect(whole.dp.rxRuns.runs).toBeGreaterThan(2);
    }
  });

  it('leads dropped or answered: no container, TTL 1 (ICMP back), a tag with no rule on a new flow, over the MTU', () => {
    both(64, (c) => {
      recv(c, stream(100, 4, { dst: ipToU32('10.255.132.77') }), 30);
      recv(c, stream(100, 4, { ttl: 1 }), 31);
      recv(c, stream(100, 4, { gpid: 2 }), 32);
      recv(c, stream(100, 4), 33);
      reply(c, 33);
      recv(c, [{ seq: 100 }, { seq: 100 + MSS, payload: 1500 - 8 - HDR - 20 }, { seq: 200 }, { seq: 200 + MSS }], 34);
      // Another container on this cell, a settled flow to it.
      c.dp.conntrack.process(ipToU32('10.255.132.3'), SRC, 6, 7777, SPORT, ACK, 35, true, 0, 0, 0, 0);
      recv(c, stream(300, 5, { dst: ipToU32('10.255.132.3') }), 35);
    });
  });

  it('an expired entry is not settled: the run walks per segment and the flow is picked up again', () => {
    const [, whole] = both(64, (c) => {
      recv(c, stream(1, 3), 40);
      reply(c, 40);
      recv(c, stream(1 + 3 * MSS, 3), 41);
      recv(c, stream(1 + 6 * MSS, 5), 41 + 10 * 24 * 3600 * 1000);
    });
    expect(whole.dp.conntrack.entries(0).length).toBe(1);
  });

  it('SILKWORM_WHOLE_RX off is the per-segment path itself (cfg.wholeRx false)', () => {
    const a = cell(false, 64);
    const b = cell(false, 64);
    for (const c of [a, b]) {
      recv(c, stream(1, 3), 50);
      reply(c, 50);
      recv(c, stream(1 + 3 * MSS, 8), 51);
    }
    expectSame(a, b);
  });
});
