// GroPlanner: which TCP segments are merged into one GSO super-frame, and the
// exact bytes the TAP gets. Built from the delivered frame in
// test/vectors/seed002.ts (the real bytes tcpdump saw on the destination
// container's eth0), re-cut into
// segments with independently computed checksums (referenceChecksum, the
// fold-every-word RFC 1071 reference). A super-frame is checked byte for byte
// and also by re-segmenting it the way the kernel's tcp_gso_segment() would:
// that must give back the original frames exactly.
import { describe, expect, it } from 'vitest';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { fastSum, GroPlanner, packetBytes, PKT_WORDS, VNET_HDR_LEN } from '../../../src/offload/gro.js';
import { jsByteOps, type ByteOps } from '../../../src/offload/bytes.js';
import { loadNative, nativeAvailable } from '../../../src/io/native.js';
import { foldChecksum } from '../../../src/wire/checksum.js';
import { vnetDefault } from '../../../src/offload/options.js';
import { seedBytes } from '../../vectors/seed002.js';
import { put16, put32, u16 } from '../../helpers/bytes.js';

const SEED = seedBytes('DST_CONTAINER_ETH0'); // 91 bytes: eth 14 + ip 20 + tcp 32 (nop,nop,TS) + 25 payload
const THL = 32;
const HDR = 14 + 20 + THL; // 66
const SEQ0 = 2356689519;
const ID0 = 0x9a12;
const ACK = 0x10;
const PSH = 0x08;

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
function le16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

/** IPv4 header checksum and TCP checksum recomputed with the reference implementation. */
function fixChecksums(f: Uint8Array): Uint8Array {
  put16(f, 24, 0);
  put16(f, 24, referenceChecksum(f.subarray(14, 34)));
  const tcpLen = u16(f, 16) - 20;
  put16(f, 34 + 16, 0);
  const pseudo = [u16(f, 26), u16(f, 28), u16(f, 30), u16(f, 32), 6, tcpLen];
  put16(f, 34 + 16, referenceChecksum(f.subarray(34, 34 + tcpLen), pseudo));
  return f;
}

interface SegOpts {
  seq?: number;
  id?: number;
  flags?: number;
  tsval?: number;
  ttl?: number;
  srcPort?: number;
  /** Bytes set at frame offsets (before the checksums are recomputed). */
  poke?: [number, number][];
}

/** Seed 002's frame with `payload` in place of its 25 bytes. */
function segment(payload: Uint8Array, o: SegOpts = {}): Uint8Array {
  const f = new Uint8Array(HDR + payload.length);
  f.set(SEED.subarray(0, HDR));
  f.set(payload, HDR);
  put16(f, 16, 20 + THL + payload.length);
  if (o.id !== undefined) put16(f, 18, o.id);
  if (o.ttl !== undefined) f[22] = o.ttl;
  if (o.srcPort !== undefined) put16(f, 34, o.srcPort);
  if (o.seq !== undefined) put32(f, 38, o.seq);
  f[47] = o.flags ?? ACK;
  if (o.tsval !== undefined) put32(f, 58, o.tsval);
  for (const [off, v] of o.poke ?? []) f[off] = v;
  return fixChecksums(f);
}

function payloadOf(n: number, salt: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 7 + salt * 13 + (i >>> 8)) & 0xff;
  return p;
}

/** N in-order segments of `mss` bytes (the last `lastLen`, PSH on the last when asked). */
function stream(n: number, mss: number, lastLen = mss, lastPsh = false): Uint8Array[] {
  const out: Uint8Array[] = [];
  let seq = SEQ0;
  for (let k = 0; k < n; k++) {
    const len = k === n - 1 ? lastLen : mss;
    out.push(segment(payloadOf(len, k), { seq, id: (ID0 + k) & 0xffff, flags: k === n - 1 && lastPsh ? ACK | PSH : ACK }));
    seq = (seq + len) >>> 0;
  }
  return out;
}

/** Frames in a slab the way the cell hands them over: each at a slot, with 64 bytes (`front`) in front. */
function layout(frames: Uint8Array[], slot = 2048, front = 64): { slab: Uint8Array; offs: Uint32Array; lens: Uint32Array } {
  const slab = new Uint8Array(frames.length * slot);
  const offs = new Uint32Array(frames.length);
  const lens = new Uint32Array(frames.length);
  frames.forEach((f, k) => {
    offs[k] = k * slot + front;
    lens[k] = f.length;
    slab.set(f, offs[k]!);
  });
  return { slab, offs, lens };
}

function plan(frames: Uint8Array[], g = new GroPlanner(), front = 64): { g: GroPlanner; pkts: Uint8Array[]; frames: number[]; planned: number } {
  const { slab, offs, lens } = layout(frames, 2048, front);
  const planned = g.plan(slab, offs, lens, 0, frames.length);
  const pkts: Uint8Array[] = [];
  const fr: number[] = [];
  for (let p = 0; p < g.npkts; p++) {
    pkts.push(packetBytes(g, slab, p));
    fr.push(g.pktFrames[p]!);
  }
  return { g, pkts, frames: fr, planned };
}

// The merging cases with each segment summed in TypeScript as it is classified, through the ByteOps
// interface in TypeScript, and through the addon's sumRanges once per plan (when it is built).
const BYTE_PATHS: [string, ByteOps | undefined][] = [
  ['TypeScript sum', undefined],
  ['jsByteOps', jsByteOps],
  ...(nativeAvailable() ? ([['native sumRanges', loadNative() as unknown as ByteOps]] as [string, ByteOps][]) : []),
];

/** What tcp_gso_segment() makes of a super-frame: MSS-sized segments, seq/id advanced, PSH only on the last. */
function resegment(frame: Uint8Array, gsoSize: number): Uint8Array[] {
  const thl = (frame[46]! >>> 4) * 4;
  const hdr = 34 + thl;
  const payload = frame.subarray(hdr, 14 + u16(frame, 16));
  const out: Uint8Array[] = [];
  for (let o = 0, k = 0; o < payload.length; o += gsoSize, k++) {
    const chunk = payload.subarray(o, Math.min(o + gsoSize, payload.length));
    const f = new Uint8Array(hdr + chunk.length);
    f.set(frame.subarray(0, hdr));
    f.set(chunk, hdr);
    put16(f, 16, 20 + thl + chunk.length);
    put16(f, 18, (u16(frame, 18) + k) & 0xffff);
    put32(f, 38, (u32(frame, 38) + o) >>> 0);
    if (o + gsoSize < payload.length) f[47] = f[47]! & ~PSH;
    out.push(fixChecksums(f));
  }
  return out;
}

for (const [path, bytes] of BYTE_PATHS) describe(`GroPlanner: merging (${path})`, () => {
  const mk = (maxPkts = 64, maxFrames = 256, verify = true, merge = true): GroPlanner => new GroPlanner(maxPkts, maxFrames, verify, merge, bytes);
  const planB = (frames: Uint8Array[], g = mk()): ReturnType<typeof plan> => plan(frames, g);

  it('the seed frame verifies (real checksum 0x0fc9) and goes out alone with DATA_VALID', () => {
    expect(u16(SEED, 50)).toBe(0x0fc9);
    const { g, pkts, frames } = planB([SEED]);
    expect(frames).toEqual([1]);
    expect(Array.from(pkts[0]!.subarray(0, VNET_HDR_LEN))).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(pkts[0]!.subarray(VNET_HDR_LEN))).toEqual(Array.from(SEED));
    expect(g.counters).toEqual({ superFrames: 0, mergedFrames: 0, badChecksum: 0 });
  });

  it('merges 20 equal in-order segments into one super-frame with exact headers and payload', () => {
    const mss = 1348;
    const segs = stream(20, mss, mss, true);
    const { g, pkts, frames } = planB(segs);
    expect(frames).toEqual([20]);
    const p = pkts[0]!;
    const total = 20 * mss;
    expect(p.length).toBe(VNET_HDR_LEN + HDR + total);
    // struct virtio_net_hdr: flags NEEDS_CSUM, gso_type TCPV4, hdr_len, gso_size, csum_start, csum_offset (LE).
    expect(p[0]).toBe(1);
    expect(p[1]).toBe(1);
    expect(le16(p, 2)).toBe(HDR);
    expect(le16(p, 4)).toBe(mss);
    expect(le16(p, 6)).toBe(34);
    expect(le16(p, 8)).toBe(16);
    const f = p.subarray(VNET_HDR_LEN);
    // Ethernet and the unchanged IP/TCP fields are the first segment's.
    expect(Array.from(f.subarray(0, 16))).toEqual(Array.from(segs[0]!.subarray(0, 16)));
    expect(u16(f, 16)).toBe(20 + THL + total);
    expect(u16(f, 18)).toBe(ID0);
    expect(referenceChecksum(f.subarray(14, 34))).toBe(0); // IP header checksum valid
    expect(u32(f, 38)).toBe(SEQ0);
    expect(u32(f, 42)).toBe(u32(SEED, 42));
    expect(f[47]).toBe(ACK | PSH); // PSH from the last segment
    expect(Array.from(f.subarray(54, 66))).toEqual(Array.from(SEED.subarray(54, 66))); // nop,nop,TS
    // Payload: every segment's bytes, in order.
    for (let k = 0; k < 20; k++) {
      expect(Array.from(f.subarray(HDR + k * mss, HDR + (k + 1) * mss))).toEqual(Array.from(payloadOf(mss, k)));
    }
    // TCP checksum field: the uncomplemented pseudo-header sum over the super-segment's length
    // (10.255.99.3 -> 10.255.132.2, proto 6, len 32 + 26960): computed by hand.
    const pseudo = 0x0aff + 0x6303 + 0x0aff + 0x8402 + 6 + ((THL + total) & 0xffff);
    const folded = (pseudo & 0xffff) + (pseudo >>> 16);
    expect(u16(f, 50)).toBe(folded);
    // Finishing it the way the kernel does (csum over csum_start..end, field included) gives the
    // true TCP checksum of the super-segment.
    const finished = referenceChecksum(f.subarray(34));
    const g2 = f.slice();
    put16(g2, 50, 0);
    expect(finished).toBe(referenceChecksum(g2.subarray(34), [0x0aff, 0x6303, 0x0aff, 0x8402, 6, THL + total]));
    expect(g.counters).toEqual({ superFrames: 1, mergedFrames: 20, badChecksum: 0 });
  });

  it('with merging off (tap-tso without tap-gro) the same run goes out frame by frame, each with DATA_VALID', () => {
    const frames = stream(20, 1000);
    const on = planB(frames);
    expect(on.frames).toEqual([20]);
    const { pkts, frames: fr } = planB(frames, mk(64, 256, true, false));
    expect(fr).toEqual(new Array(20).fill(1));
    pkts.forEach((p, k) => {
      expect(Array.from(p.subarray(0, VNET_HDR_LEN))).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      expect(Buffer.from(p.subarray(VNET_HDR_LEN)).equals(Buffer.from(frames[k]!))).toBe(true);
    });
  });

  it('re-segmenting the super-frame at gso_size gives back the original frames exactly', () => {
    const segs = stream(7, 1000, 333, true);
    const { pkts, frames } = planB(segs);
    expect(frames).toEqual([7]);
    const p = pkts[0]!;
    const back = resegment(p.subarray(VNET_HDR_LEN), le16(p, 4));
    expect(back.map((b) => Array.from(b))).toEqual(segs.map((s) => Array.from(s)));
  });

  it('a shorter segment ends the run; the next one starts a new run', () => {
    const a = stream(3, 1000, 500); // 1000, 1000, 500
    const seq = SEQ0 + 2500;
    const b = [0, 1, 2].map((k) => segment(payloadOf(1000, 10 + k), { seq: seq + k * 1000, id: ID0 + 3 + k }));
    const { pkts, frames } = planB([...a, ...b]);
    expect(frames).toEqual([3, 3]);
    expect(le16(pkts[0]!, 4)).toBe(1000);
    expect(u16(pkts[0]!, VNET_HDR_LEN + 16)).toBe(20 + THL + 2500);
    expect(u32(pkts[1]!, VNET_HDR_LEN + 38)).toBe(seq);
  });

  it('a longer segment after the first is not merged (all but the last must equal gso_size)', () => {
    const s0 = segment(payloadOf(500, 0), { seq: SEQ0, id: ID0 });
    const s1 = segment(payloadOf(1000, 1), { seq: SEQ0 + 500, id: ID0 + 1 });
    expect(planB([s0, s1]).frames).toEqual([1, 1]);
  });

  it('does not merge across flows, seq gaps, differing options, TTL or IP ID jumps', () => {
    const base = stream(2, 800);
    const cases: [string, Uint8Array][] = [
      ['other flow', segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1, srcPort: 40000 })],
      ['seq gap', segment(payloadOf(800, 1), { seq: SEQ0 + 801, id: ID0 + 1 })],
      ['retransmission', segment(payloadOf(800, 1), { seq: SEQ0, id: ID0 + 1 })],
      ['TS value', segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1, tsval: 530640 })],
      ['TTL', segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1, ttl: 61 })],
      ['IP ID jump', segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 5 })],
    ];
    // Every other byte the rule compares, one at a time (headers are compared two bytes at a time
    // where the slab allows: each byte of each compared word).
    const pokes: [string, number][] = [
      ['Ethernet destination', 0], ['Ethernet destination', 5], ['Ethernet source', 6], ['Ethernet source', 11],
      ['IPv4 DS', 15], ['IPv4 source', 26], ['IPv4 source', 29], ['IPv4 destination', 30], ['IPv4 destination', 33],
      ['TCP source port', 35], ['TCP destination port', 36], ['TCP destination port', 37],
      ['acknowledgment', 42], ['acknowledgment', 43], ['acknowledgment', 44], ['acknowledgment', 45],
      ['first option byte', 54], ['last option byte', 65],
    ];
    for (const [field, off] of pokes) {
      const f = segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1 });
      cases.push([`${field} (byte ${off})`, segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1, poke: [[off, f[off]! ^ 0x11]] })]);
    }
    // DF: set on the first, cleared on the second.
    cases.push(['DF', segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1, poke: [[20, base[0]![20]! ^ 0x40]] })]);
    expect(planB(base).frames).toEqual([2]); // the control: these two do merge
    for (const [name, second] of cases) {
      expect(planB([base[0]!, second]).frames, name).toEqual([1, 1]);
      // Frames at odd offsets: the byte-at-a-time comparison.
      expect(plan([base[0]!, second], mk(), 65).frames, `${name}, odd offsets`).toEqual([1, 1]);
    }
    expect(plan(base, mk(), 65).frames).toEqual([2]);
  });

  it('merges a fixed IP ID when DF is set (as Linux GRO does) but not without DF', () => {
    const s0 = segment(payloadOf(800, 0), { seq: SEQ0, id: ID0 });
    const s1 = segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 });
    expect(planB([s0, s1]).frames).toEqual([2]);
    const noDf = [s0.slice(), s1.slice()].map((f) => {
      f[20] = 0;
      return fixChecksums(f);
    });
    expect(planB(noDf).frames).toEqual([1, 1]);
  });

  it('never merges SYN, FIN, RST, URG, ECE, CWR segments, pure ACKs, or after a PSH', () => {
    for (const flags of [0x02 | ACK, 0x01 | ACK, 0x04 | ACK, 0x20 | ACK, 0x40 | ACK, 0x80 | ACK]) {
      const s0 = segment(payloadOf(800, 0), { seq: SEQ0, id: ID0 });
      const s1 = segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1, flags });
      expect(planB([s0, s1]).frames, `flags ${flags.toString(16)} second`).toEqual([1, 1]);
      const t0 = segment(payloadOf(800, 0), { seq: SEQ0, id: ID0, flags });
      const t1 = segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1 });
      expect(planB([t0, t1]).frames, `flags ${flags.toString(16)} first`).toEqual([1, 1]);
    }
    const pureAck = segment(new Uint8Array(0), { seq: SEQ0, id: ID0 });
    expect(planB([pureAck, segment(payloadOf(800, 1), { seq: SEQ0, id: ID0 + 1 })]).frames).toEqual([1, 1]);
    const psh = segment(payloadOf(800, 0), { seq: SEQ0, id: ID0, flags: ACK | PSH });
    expect(planB([psh, segment(payloadOf(800, 1), { seq: SEQ0 + 800, id: ID0 + 1 })]).frames).toEqual([1, 1]);
  });

  it('keeps a super-frame within 64 KiB of IP length and MAX_SEGS segments', () => {
    // 50 x 1400 = 70000 bytes cannot go in one: 46 segments (64400 + 52 <= 65535) then 4.
    const { pkts, frames } = planB(stream(50, 1400));
    expect(frames).toEqual([46, 4]);
    expect(u16(pkts[0]!, VNET_HDR_LEN + 16)).toBe(20 + THL + 46 * 1400);
    // 70 small segments: 64 then 6.
    expect(planB(stream(70, 100)).frames).toEqual([64, 6]);
  });

  it('passes non-TCP and corrupted frames through unmerged, without DATA_VALID for the corrupt one', () => {
    const segs = stream(3, 800);
    const bad = segs[1]!.slice();
    bad[HDR + 5] = bad[HDR + 5]! ^ 0x40; // one payload bit flipped, checksum left alone
    const arp = new Uint8Array(42);
    arp.set(SEED.subarray(0, 12));
    arp[12] = 0x08;
    arp[13] = 0x06;
    const { g, pkts, frames } = planB([segs[0]!, bad, segs[2]!, arp]);
    expect(frames).toEqual([1, 1, 1, 1]);
    expect(pkts.map((p) => p[0])).toEqual([2, 0, 2, 0]);
    expect(Array.from(pkts[1]!.subarray(VNET_HDR_LEN))).toEqual(Array.from(bad));
    expect(Array.from(pkts[3]!.subarray(VNET_HDR_LEN))).toEqual(Array.from(arp));
    expect(g.counters.badChecksum).toBe(1);
  });

  it('with verify off merges without checking and claims nothing for single frames', () => {
    const segs = stream(3, 800);
    segs[1]![HDR] = segs[1]![HDR]! ^ 1; // corrupt, unnoticed
    const { g, pkts, frames } = planB([...segs, SEED], mk(64, 256, false));
    expect(frames).toEqual([3, 1]);
    expect(pkts[1]![0]).toBe(0);
    expect(g.counters.badChecksum).toBe(0);
  });

  it('ignores truncated frames and frames that run past the slab', () => {
    const segs = stream(2, 800);
    const { slab, offs, lens } = layout(segs);
    lens[1] = 100; // the IP total length says 852 + 14 bytes
    const g = mk();
    expect(g.plan(slab, offs, lens, 0, 2)).toBe(2);
    expect(Array.from(g.pktFrames.subarray(0, g.npkts))).toEqual([1, 1]);
    offs[1] = slab.length - 10;
    lens[1] = 800;
    expect(g.plan(slab, offs, lens, 0, 2)).toBe(2);
    expect(g.npkts).toBe(2);
    // The native writer rejects that piece (EINVAL); the planner only passes it on.
    expect(g.iovs[g.pkts[1 * PKT_WORDS + 2]! * 2]).toBe(slab.length - 10);
  });

  it('splits a long batch into plans that fit the arrays, losing nothing', () => {
    const g = mk(4, 8);
    const segs = [...stream(10, 500), SEED, SEED, SEED];
    const { slab, offs, lens } = layout(segs);
    const seen: number[] = [];
    for (let i = 0; i < segs.length; ) {
      const n = g.plan(slab, offs, lens, i, segs.length);
      expect(n).toBeGreaterThan(0);
      for (let p = 0; p < g.npkts; p++) seen.push(g.pktFrames[p]!);
      i += n;
    }
    expect(seen).toEqual([8, 2, 1, 1, 1]);
  });

  it('reuses its preallocated arrays across plans', () => {
    const g = mk();
    const { slab, offs, lens } = layout(stream(40, 1400));
    const arrays = [g.hdrs, g.pkts, g.iovs, g.pktFrames];
    for (let k = 0; k < 1000; k++) g.plan(slab, offs, lens, 0, 40);
    [g.hdrs, g.pkts, g.iovs, g.pktFrames].forEach((a, k) => expect(a).toBe(arrays[k]));
    expect(g.counters.mergedFrames).toBe(40_000);
  });
});

describe('fastSum (word-at-a-time one\'s complement sum)', () => {
  it('agrees with the RFC 1071 reference at every alignment and length, odd ones included', () => {
    const buf = new Uint8Array(4096);
    let x = 0x2545f491;
    for (let i = 0; i < buf.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      buf[i] = x >>> 24;
    }
    for (let off = 0; off < 8; off++) {
      for (const len of [0, 1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 63, 64, 65, 1398, 1399, 1400, 4000]) {
        expect(foldChecksum(fastSum(buf, off, len)), `off ${off} len ${len}`).toBe(referenceChecksum(buf.subarray(off, off + len)));
      }
    }
    // All 0xff bytes: the largest words, where a lost carry would show.
    const ff = new Uint8Array(65536).fill(0xff);
    expect(foldChecksum(fastSum(ff, 2, 65534))).toBe(referenceChecksum(ff.subarray(2)));
    // A subarray that does not start on a 4-byte boundary of its buffer takes the byte-wise path.
    const sub = buf.subarray(3, 1003);
    expect(foldChecksum(fastSum(sub, 0, 1000))).toBe(referenceChecksum(sub));
  });
});

describe('TapDevice vnetHdr default', () => {
  it('is on unless SILKWORM_TAP_VNET=0', () => {
    const saved = process.env.SILKWORM_TAP_VNET;
    try {
      delete process.env.SILKWORM_TAP_VNET;
      expect(vnetDefault()).toBe(true);
      process.env.SILKWORM_TAP_VNET = '0';
      expect(vnetDefault()).toBe(false);
      process.env.SILKWORM_TAP_VNET = '1';
      expect(vnetDefault()).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.SILKWORM_TAP_VNET;
      else process.env.SILKWORM_TAP_VNET = saved;
    }
  });
});
