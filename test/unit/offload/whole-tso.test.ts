// Whole TSO super-frames (FrameBatch.run, src/offload/gso.ts RunEmitter, src/dataplane/egress.ts whole()):
// the same super-frames cut by a segmenter with runs and by one without, each batch through the egress of
// its own (identically configured) cell, must give the same output bytes for every segment (outer and
// inner headers gathered with the payload piece), the same verdicts, the same counters and port counts,
// the same outer identifications and the same conntrack table — for runs carried whole (a new flow picked
// up mid-stream, one in SYN_SENT whose ACKs are INVALID, one becoming ESTABLISHED), for runs split across
// batches, and for runs whose lead is not encapsulated (no route, TTL 1, a port gone), where the
// followers take the per-frame path.
import { describe, expect, it } from 'vitest';
import { Dataplane, DEFAULT_CONFIG, type Port } from '../../../src/dataplane/dataplane.js';
import { Action, FrameBatch, slotSizeFor } from '../../../src/dataplane/batch.js';
import { Stat } from '../../../src/dataplane/counters.js';
import { GsoSegmenter } from '../../../src/offload/gso.js';
import { jsByteOps, type ByteOps } from '../../../src/offload/bytes.js';
import { loadNative, nativeAvailable } from '../../../src/io/native.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { put16, put32, u16 } from '../../helpers/bytes.js';
import { ACK, FIN, HDR, IPHL, L1, L2, PSH, SEED, SRC, SYN, T, THL, U1, U2, expectSameCells, leases, policies } from '../../helpers/proxy-pair.js';

const INNER_MTU = 1450;
const CWR = 0x80;


interface Sf {
  payload: number;
  flags: number;
  seq: number;
  ack?: number;
  sport?: number;
  id?: number;
  gso?: number;
  ttl?: number;
  dst?: number;
}

/** What the TAP reads: virtio_net_hdr (NEEDS_CSUM, GSO_TCPV4 unless no payload) + the super-frame, TCP checksum = pseudo-header sum. */
function superFrame(o: Sf): Uint8Array {
  const f = new Uint8Array(HDR + o.payload);
  f.set(SEED.subarray(0, HDR));
  let x = (o.seq ^ 0x9e3779b9) >>> 0;
  for (let i = HDR; i < f.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    f[i] = x >>> 24;
  }
  put16(f, 16, IPHL + THL + o.payload);
  put16(f, 18, o.id ?? 0x1234);
  if (o.ttl !== undefined) f[22] = o.ttl;
  if (o.dst !== undefined) put32(f, 30, o.dst);
  put16(f, 24, 0);
  put16(f, 24, referenceChecksum(f.subarray(14, 14 + IPHL)));
  if (o.sport !== undefined) put16(f, T, o.sport);
  put32(f, T + 4, o.seq);
  if (o.ack !== undefined) put32(f, T + 8, o.ack);
  f[T + 13] = o.flags;
  const pseudo = [u16(f, 26), u16(f, 28), u16(f, 30), u16(f, 32), 6, THL + o.payload];
  put16(f, T + 16, 0);
  put16(f, T + 16, 0xffff - referenceChecksum([], pseudo));
  const gso = o.gso ?? INNER_MTU - IPHL - THL;
  const raw = new Uint8Array(10 + f.length);
  raw[0] = 1; // NEEDS_CSUM
  raw[1] = o.payload > gso ? 1 : 0; // GSO_TCPV4
  raw[2] = HDR & 0xff;
  raw[4] = gso & 0xff;
  raw[5] = gso >>> 8;
  raw[6] = T;
  raw[8] = 16;
  raw.set(f, 10);
  return raw;
}

interface Cell {
  dp: Dataplane;
  port: Port;
  batch: FrameBatch;
  seg: GsoSegmenter;
  raw: Uint8Array;
  out: { action: number; target: number; bytes: string }[];
}

function cell(bytes: ByteOps, whole: boolean, capacity: number): Cell {
  const dp = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: U1, leaseSubnet: L1, conntrackCapacity: 256 });
  dp.setLeases(leases);
  dp.setPolicies(policies);
  const port = dp.addPort('proxy-0', 'proxy', SRC);
  const batch = new FrameBatch(capacity, slotSizeFor(1500));
  const raw = new Uint8Array(1 << 18);
  const seg = new GsoSegmenter(raw, batch, dp.counters.drops, bytes, INNER_MTU, whole);
  return { dp, port, batch, seg, raw, out: [] };
}

/** Each verdict as the devices would carry it out: the output bytes, gathered with the payload piece. */
function collect(c: Cell): void {
  const b = c.batch;
  for (let i = 0; i < b.count; i++) {
    const a = b.action[i]!;
    let bytes = '';
    if (a !== Action.Drop) {
      const xl = b.extLen[i]!;
      const head = b.slab.subarray(b.outOff[i]!, b.outOff[i]! + b.outLen[i]! - xl);
      bytes = Buffer.from(head).toString('hex') + (xl > 0 ? Buffer.from(b.ext!.subarray(b.extOff[i]!, b.extOff[i]! + xl)).toString('hex') : '');
    }
    c.out.push({ action: a, target: b.outTarget[i]!, bytes });
  }
}

/** One TAP read of these super-frames (laid out in the raw buffer as the reader does), through egress. */
function read(c: Cell, pkts: Uint8Array[], now: number, portIndex = c.port.index): void {
  let at = 6;
  const meta: [number, number][] = [];
  for (const p of pkts) {
    c.raw.set(p, at);
    meta.push([at, p.length]);
    at += (p.length + 7) & ~7;
  }
  const b = c.batch;
  const flush = (): void => {
    c.dp.egress(b, portIndex, now);
    collect(c);
    b.count = 0;
  };
  b.count = 0;
  for (const [o, l] of meta) {
    if (!c.seg.begin(o, l)) continue;
    for (;;) {
      c.seg.fill();
      if (c.seg.done) break;
      flush();
    }
  }
  if (b.count > 0) flush();
}

function expectSame(a: Cell, b: Cell): void {
  expectSameCells(a, b);
  expect({ ...b.seg.counters, runs: 0, runSegments: 0 }).toEqual({ ...a.seg.counters, runs: 0, runSegments: 0 });
  expect(a.seg.counters.runs).toBe(0);
}

const NATIVE = nativeAvailable() ? (loadNative() as unknown as ByteOps) : undefined;
const PATHS: [string, ByteOps][] = [['jsByteOps', jsByteOps], ...(NATIVE !== undefined ? ([['native', NATIVE]] as [string, ByteOps][]) : [])];

for (const [name, bytes] of PATHS) describe(`whole TSO super-frames vs per-segment egress (${name})`, () => {
  /** The same reads through both; returns the two cells for further checks. */
  function both(capacity: number, steps: (c: Cell) => void): [Cell, Cell] {
    const old = cell(bytes, false, capacity);
    const whole = cell(bytes, true, capacity);
    steps(old);
    steps(whole);
    expectSame(old, whole);
    return [old, whole];
  }

  it('a flow picked up mid-stream: runs carried whole, byte for byte, across batch boundaries', () => {
    for (const capacity of [64, 5, 2]) {
      const [old, whole] = both(capacity, (c) => {
        read(c, [superFrame({ payload: 7 * 1398 + 311, flags: ACK | PSH | CWR, seq: 0xffffe000, id: 0xfffd })], 10);
        read(c, [superFrame({ payload: 3 * 1398, flags: ACK | PSH, seq: 0xffffe000 + 7 * 1398 + 311, id: 0x0005 }), superFrame({ payload: 2 * 1000 + 1, flags: ACK, seq: 77, gso: 1000, sport: 40001 })], 11);
      });
      expect(whole.out.length).toBe(8 + 3 + 3);
      expect(whole.out.every((o) => o.action === Action.Underlay && o.target === U2)).toBe(true);
      expect(whole.dp.counters.stats[Stat.Encapsulated]).toBe(14);
      expect(whole.dp.conntrack.entries(0).map((e) => e.tcpState)).toEqual(['ESTABLISHED', 'ESTABLISHED']);
      // The runs were formed (the per-segment cell never has one).
      if (capacity === 64) expect(whole.batch.run[0]).toBe(3);
      // Runs end at batch boundaries; a lone segment left in a batch is no run.
      const [runs, inRuns] = capacity === 64 ? [3, 14] : capacity === 5 ? [4, 13] : [6, 12];
      expect(whole.seg.counters.runs).toBe(runs);
      expect(whole.seg.counters.runSegments).toBe(inRuns);
      expect(Array.from(old.batch.run).every((n) => n === 0)).toBe(true);
    }
  });

  it('SYN_SENT: every segment of a run is INVALID and counted; then a reply, and the run makes it ESTABLISHED', () => {
    const [, whole] = both(64, (c) => {
      read(c, [superFrame({ payload: 0, flags: SYN, seq: 1000 })], 20);
      read(c, [superFrame({ payload: 4 * 1398, flags: ACK | PSH, seq: 1001, ack: 5 })], 21);
      // The peer's SYN+ACK, as ingress would track it.
      c.dp.conntrack.process(ipToU32('10.255.132.2'), SRC, 6, 7777, u16(SEED, T), SYN | ACK, 22, false, 0, 4, 1001, 0);
      read(c, [superFrame({ payload: 4 * 1398, flags: ACK | PSH, seq: 1001, ack: 5 })], 23);
      read(c, [superFrame({ payload: 2 * 1398, flags: ACK | PSH | FIN, seq: 1001 + 4 * 1398, ack: 5 })], 24);
    });
    expect(whole.dp.counters.stats[Stat.ConntrackInvalid]).toBe(4);
    expect(whole.dp.conntrack.entries(0)[0]!.tcpState).toBe('FIN_WAIT');
    expect(whole.dp.conntrack.entries(0)[0]!.assured).toBe(true);
  });

  it('leads not encapsulated: no route, TTL 1 (ICMP errors back to the container), a port gone', () => {
    const [, whole] = both(64, (c) => {
      read(c, [superFrame({ payload: 3 * 1398 + 5, flags: ACK | PSH, seq: 9, dst: ipToU32('10.255.200.7') })], 30);
      read(c, [superFrame({ payload: 3 * 1398 + 5, flags: ACK | PSH, seq: 9, ttl: 1 })], 31);
      read(c, [superFrame({ payload: 3 * 1398 + 5, flags: ACK | PSH, seq: 9 })], 32, 7);
      read(c, [superFrame({ payload: 3 * 1398 + 5, flags: ACK | PSH, seq: 9 })], 33);
    });
    const actions = whole.out.map((o) => o.action);
    expect(actions).toEqual([...Array(4).fill(Action.Tap), ...Array(4).fill(Action.Tap), ...Array(4).fill(Action.Drop), ...Array(4).fill(Action.Underlay)]);
  });

  it('a destination on this cell: the followers written whole and delivered frame by frame', () => {
    const local = ipToU32('10.255.99.7');
    const [, whole] = both(64, (c) => {
      c.dp.addPort('proxy-2', 'proxy', local);
      read(c, [superFrame({ payload: 5 * 1398 + 77, flags: ACK | PSH | CWR, seq: 0xfffffff0, id: 0xffff, dst: local })], 40);
    });
    expect(whole.out.map((o) => o.action)).toEqual(Array(6).fill(Action.Tap));
    expect(whole.out.every((o) => o.bytes.length === 2 * (HDR + (o === whole.out[5] ? 77 : 1398)))).toBe(true);
  });
});
