// GsoSegmenter: a TCP super-frame as a TSO-enabled TAP hands it to us
// (virtio_net_hdr NEEDS_CSUM + GSO_TCPV4, one big segment whose checksum field
// holds only the pseudo-header sum) must come out as exactly the frames the
// kernel's tcp_gso_segment() would put on the wire. Built from test/vectors/seed002.ts's
// source container frame (real Ethernet/IP/TCP headers with timestamps); the
// expected frames are assembled independently here and their checksums come
// from referenceChecksum (RFC 1071 folded every word).
import { describe, expect, it } from 'vitest';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { FrameBatch } from '../../../src/dataplane/batch.js';
import { GsoSegmenter } from '../../../src/offload/gso.js';
import { jsByteOps, type ByteOps } from '../../../src/offload/bytes.js';
import { loadNative, nativeAvailable } from '../../../src/io/native.js';
import { seedBytes } from '../../vectors/seed002.js';
import { put16, put32, u16 } from '../../helpers/bytes.js';

const SEED = seedBytes('SRC_CONTAINER_ETH0');
const IPHL = (SEED[14]! & 0x0f) * 4;
const THL = (SEED[14 + IPHL + 12]! >>> 4) * 4;
const HDR = 14 + IPHL + THL;
const T = 14 + IPHL; // TCP header offset in the frame
const SEQ0 = 0xfffff000; // wraps within the super-frame
const ID0 = 0xfffe; // wraps too
const MSS = 1448;
const ACK = 0x10;
const PSH = 0x08;
const FIN = 0x01;
const CWR = 0x80;

function payloadBytes(n: number): Uint8Array {
  const p = new Uint8Array(n);
  let x = 0x12345678;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    p[i] = x >>> 24;
  }
  return p;
}
function pseudoWords(frame: Uint8Array, tcpLen: number): number[] {
  const ip = 14;
  return [u16(frame, ip + 12), u16(frame, ip + 14), u16(frame, ip + 16), u16(frame, ip + 18), 6, tcpLen];
}

/** The frame on the wire: seed headers, given fields, both checksums from the reference. */
function wireFrame(seq: number, id: number, flags: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(HDR + payload.length);
  f.set(SEED.subarray(0, HDR));
  f.set(payload, HDR);
  put16(f, 16, IPHL + THL + payload.length);
  put16(f, 18, id);
  put16(f, 24, 0);
  put16(f, 24, referenceChecksum(f.subarray(14, 14 + IPHL)));
  put32(f, T + 4, seq);
  f[T + 13] = flags;
  put16(f, T + 16, 0);
  put16(f, T + 16, referenceChecksum(f.subarray(T), pseudoWords(f, THL + payload.length)));
  return f;
}

/**
 * What the TAP reads: virtio_net_hdr + one frame carrying the whole payload, TCP checksum field = the
 * folded pseudo-header sum only (tcp_v4_send_check with CHECKSUM_PARTIAL), IP header checksum complete.
 */
function superFrame(payload: Uint8Array, flags: number, gsoSize = MSS, hdrLen = HDR): Uint8Array {
  const f = wireFrame(SEQ0, ID0, flags, payload);
  put16(f, T + 16, 0xffff - referenceChecksum([], pseudoWords(f, THL + payload.length)));
  const raw = new Uint8Array(10 + f.length);
  raw[0] = 1; // NEEDS_CSUM
  raw[1] = 1; // GSO_TCPV4
  raw[2] = hdrLen & 0xff;
  raw[3] = hdrLen >>> 8;
  raw[4] = gsoSize & 0xff;
  raw[5] = gsoSize >>> 8;
  raw[6] = T;
  raw[8] = 16;
  raw.set(f, 10);
  return raw;
}

function setup(rawPkt: Uint8Array, at: number, capacity = 64, bytes?: ByteOps, zeroCopyMtu = 0): { seg: GsoSegmenter; batch: FrameBatch; raw: Uint8Array } {
  const raw = new Uint8Array(70000);
  raw.set(rawPkt, at);
  const batch = new FrameBatch(capacity, 1600, 64);
  return { seg: new GsoSegmenter(raw, batch, undefined, bytes, zeroCopyMtu), batch, raw };
}

const NATIVE = nativeAvailable() ? (loadNative() as unknown as ByteOps) : undefined;
// The same cases with the copy and sum in TypeScript (no ByteOps), through the ByteOps interface in
// TypeScript (src/offload/bytes.ts), through the addon's copySum (native/bytes.cc) when it is built, and
// zero-copy (headers copied, payloads summed in place and referenced: batch.ext) with either ByteOps.
const BYTE_PATHS: [string, ByteOps | undefined, number][] = [
  ['TypeScript copy', undefined, 0],
  ['jsByteOps', jsByteOps, 0],
  ['jsByteOps zero-copy', jsByteOps, 9000],
  ...(NATIVE !== undefined
    ? ([
        ['native copySum', NATIVE, 0],
        ['native zero-copy', NATIVE, 9000],
      ] as [string, ByteOps, number][])
    : []),
];

/** Each frame as the wire gets it: the slot's bytes, then its piece in batch.ext (zero-copy), if any. */
function frames(batch: FrameBatch): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < batch.count; i++) {
    const len = batch.len[i]!;
    const xl = batch.extLen[i]!;
    const f = new Uint8Array(len);
    f.set(batch.slab.subarray(batch.inOff(i), batch.inOff(i) + len - xl));
    if (xl > 0) f.set(batch.ext!.subarray(batch.extOff[i]!, batch.extOff[i]! + xl), len - xl);
    out.push(f);
  }
  return out;
}

for (const [path, bytes, zeroCopyMtu] of BYTE_PATHS) describe(`GsoSegmenter: TCPv4 super-frames (${path})`, () => {
  const payload = payloadBytes(3 * MSS + 517); // odd last segment
  const expected = [0, 1, 2, 3].map((i) =>
    wireFrame(
      (SEQ0 + i * MSS) >>> 0,
      (ID0 + i) & 0xffff,
      i === 3 ? ACK | PSH | FIN : i === 0 ? ACK | CWR : ACK,
      payload.subarray(i * MSS, Math.min((i + 1) * MSS, payload.length)),
    ),
  );

  // at 6: the frame starts 8-aligned like a slot's (the reader's placement: 32-bit fast path);
  // at 1: odd (byte path). Both must give the same bytes.
  for (const at of [6, 1, 3]) {
    it(`cuts 4 wire-exact segments (raw packet at offset ${at})`, () => {
      const { seg, batch } = setup(superFrame(payload, ACK | PSH | FIN | CWR), at, 64, bytes, zeroCopyMtu);
      expect(seg.begin(at, 10 + HDR + payload.length)).toBe(true);
      seg.fill();
      expect(seg.done).toBe(true);
      expect(batch.count).toBe(4);
      const got = frames(batch);
      for (let i = 0; i < 4; i++) {
        expect(got[i]).toEqual(expected[i]);
        // And they verify: IP header and TCP (with pseudo-header) sum to zero.
        expect(referenceChecksum(got[i]!.subarray(14, 14 + IPHL))).toBe(0);
        expect(referenceChecksum(got[i]!.subarray(T), pseudoWords(got[i]!, got[i]!.length - T))).toBe(0);
      }
      expect(u16(got[3]!, 16)).toBe(IPHL + THL + 517);
      // Zero-copy: only the headers are in the slots; the payloads stay in the read buffer, in place.
      for (let i = 0; i < 4; i++) {
        const plen = i === 3 ? 517 : MSS;
        expect(batch.extLen[i]).toBe(zeroCopyMtu > 0 ? plen : 0);
        if (zeroCopyMtu > 0) expect(batch.extOff[i]).toBe(at + 10 + HDR + i * MSS);
      }
      expect(u16(got[1]!, 18)).toBe(0xffff);
      expect(u16(got[2]!, 18)).toBe(0);
      expect(seg.counters).toMatchObject({ superFrames: 1, segments: 4, dropMalformed: 0 });
    });
  }

  // gso_size 1398 (MTU 1450 with timestamps) is 2 mod 4: consecutive segments' payloads alternate between
  // agreeing and disagreeing with the slot's alignment mod 4 (32-bit and 16-bit write paths).
  for (const at of [4, 6, 8, 10]) {
    it(`gso_size 1398, raw packet at offset ${at}: wire-exact segments on every copy path`, () => {
      const gso = 1398;
      const pay = payloadBytes(4 * gso + 333);
      const { seg, batch } = setup(superFrame(pay, ACK | PSH, gso), at, 64, bytes, zeroCopyMtu);
      expect(seg.begin(at, 10 + HDR + pay.length)).toBe(true);
      seg.fill();
      const got = frames(batch);
      expect(got).toHaveLength(5);
      for (let i = 0; i < 5; i++) {
        const p = pay.subarray(i * gso, Math.min((i + 1) * gso, pay.length));
        expect(got[i]).toEqual(wireFrame((SEQ0 + i * gso) >>> 0, (ID0 + i) & 0xffff, i === 4 ? ACK | PSH : ACK, p));
      }
    });
  }

  it('carries a super-frame across batches without loss or reordering', () => {
    const { seg, batch } = setup(superFrame(payload, ACK | PSH), 6, 3, bytes, zeroCopyMtu);
    expect(seg.begin(6, 10 + HDR + payload.length)).toBe(true);
    seg.fill();
    expect(seg.done).toBe(false);
    const first = frames(batch);
    expect(first).toHaveLength(3);
    batch.count = 0;
    seg.fill();
    expect(seg.done).toBe(true);
    const all = [...first, ...frames(batch)];
    expect(all).toHaveLength(4);
    for (let i = 0; i < 4; i++) {
      const want = wireFrame(
        (SEQ0 + i * MSS) >>> 0,
        (ID0 + i) & 0xffff,
        i === 3 ? ACK | PSH : ACK,
        payload.subarray(i * MSS, Math.min((i + 1) * MSS, payload.length)),
      );
      expect(all[i]).toEqual(want);
    }
  });

  it('takes hdr_len as a bound only (the kernel reports skb_headlen, which may include payload)', () => {
    const { seg, batch } = setup(superFrame(payload, ACK, MSS, HDR + 200), 6, 64, bytes, zeroCopyMtu);
    expect(seg.begin(6, 10 + HDR + payload.length)).toBe(true);
    seg.fill();
    expect(batch.count).toBe(4);
    const got = frames(batch);
    for (let i = 0; i < 4; i++) {
      const pay = payload.subarray(i * MSS, Math.min((i + 1) * MSS, payload.length));
      expect(got[i]).toEqual(wireFrame((SEQ0 + i * MSS) >>> 0, (ID0 + i) & 0xffff, ACK, pay));
    }
  });

  it('a payload no larger than gso_size gives one segment with a full checksum', () => {
    const small = payloadBytes(700);
    const { seg, batch } = setup(superFrame(small, ACK | PSH), 6, 64, bytes, zeroCopyMtu);
    expect(seg.begin(6, 10 + HDR + small.length)).toBe(true);
    seg.fill();
    expect(frames(batch)).toEqual([wireFrame(SEQ0, ID0, ACK | PSH, small)]);
  });
});

describe('GsoSegmenter: NEEDS_CSUM without GSO', () => {
  it('completes a partial TCP checksum', () => {
    const pay = payloadBytes(25);
    const want = wireFrame(SEQ0, ID0, ACK | PSH, pay);
    const raw = superFrame(pay, ACK | PSH);
    raw[1] = 0; // GSO_NONE
    raw[4] = 0;
    raw[5] = 0;
    const { seg, batch } = setup(raw, 6);
    expect(seg.begin(6, raw.length)).toBe(true);
    seg.fill();
    expect(frames(batch)).toEqual([want]);
    expect(seg.counters.csumCompleted).toBe(1);
  });

  it('completes a partial UDP checksum (csum_offset 6)', () => {
    // Seed headers re-labelled as UDP: eth + IPv4 (proto 17) + 8-byte UDP header + 11 bytes.
    const body = payloadBytes(11);
    const f = new Uint8Array(14 + IPHL + 8 + body.length);
    f.set(SEED.subarray(0, 14 + IPHL));
    f[14 + 9] = 17;
    put16(f, 16, IPHL + 8 + body.length);
    put16(f, 24, 0);
    put16(f, 24, referenceChecksum(f.subarray(14, 14 + IPHL)));
    put16(f, T, 40000);
    put16(f, T + 2, 53);
    put16(f, T + 4, 8 + body.length);
    f.set(body, T + 8);
    const words = [u16(f, 26), u16(f, 28), u16(f, 30), u16(f, 32), 17, 8 + body.length];
    const want = f.slice();
    put16(want, T + 6, referenceChecksum(want.subarray(T), words) || 0xffff);
    put16(f, T + 6, 0xffff - referenceChecksum([], words));
    const raw = new Uint8Array(10 + f.length);
    raw[0] = 1;
    raw[6] = T;
    raw[8] = 6;
    raw.set(f, 10);
    const { seg, batch } = setup(raw, 6);
    expect(seg.begin(6, raw.length)).toBe(true);
    seg.fill();
    expect(frames(batch)).toEqual([want]);
  });

  it('passes a plain frame (flags 0 or DATA_VALID) through unchanged', () => {
    const raw = new Uint8Array(10 + SEED.length);
    raw[0] = 2;
    raw.set(SEED, 10);
    const { seg, batch } = setup(raw, 1);
    expect(seg.begin(1, raw.length)).toBe(true);
    seg.fill();
    expect(frames(batch)).toEqual([SEED]);
    expect(seg.counters.csumCompleted).toBe(0);
  });
});

describe('GsoSegmenter: malformed and unsupported headers are dropped and counted', () => {
  const payload = payloadBytes(2 * MSS);
  const cases: [string, (r: Uint8Array) => Uint8Array | void, 'dropMalformed' | 'dropUnsupported' | 'dropTooBig'][] = [
    ['hdr_len beyond the frame', (r) => put16LE(r, 2, r.length), 'dropMalformed'],
    ['csum_start beyond the frame', (r) => put16LE(r, 6, r.length), 'dropMalformed'],
    ['csum_offset beyond the frame', (r) => put16LE(r, 8, r.length - 10 - T - 1), 'dropMalformed'],
    ['csum_start not the TCP header', (r) => put16LE(r, 6, 14), 'dropMalformed'],
    ['gso_size 0', (r) => put16LE(r, 4, 0), 'dropMalformed'],
    ['GSO without NEEDS_CSUM', (r) => void (r[0] = 0), 'dropMalformed'],
    ['unknown flag bits', (r) => void (r[0] = 0x81), 'dropMalformed'],
    ['TCP header length below 20', (r) => void (r[10 + T + 12] = 0x40), 'dropMalformed'],
    ['IP total length beyond the frame', (r) => put16(r, 10 + 16, 0xffff), 'dropMalformed'],
    ['only a virtio header', (r) => r.subarray(0, 10), 'dropMalformed'],
    ['GSO on UDP (gso_type UDP)', (r) => void (r[1] = 3), 'dropUnsupported'],
    ['GSO TCPV6', (r) => void (r[1] = 4), 'dropUnsupported'],
    ['GSO with ECN', (r) => void (r[1] = 0x81), 'dropUnsupported'],
    ['TCPV4 GSO on an IPv6 frame', (r) => put16(r, 10 + 12, 0x86dd), 'dropUnsupported'],
    ['TCPV4 GSO on a non-TCP IPv4 packet', (r) => void (r[10 + 23] = 17), 'dropUnsupported'],
    ['segments larger than a slot', (r) => put16LE(r, 4, 1600), 'dropTooBig'],
  ];
  for (const [name, mutate, counter] of cases) {
    it(name, () => {
      let raw = superFrame(payload, ACK);
      raw = mutate(raw) ?? raw;
      const { seg, batch } = setup(raw, 6);
      expect(seg.begin(6, raw.length)).toBe(false);
      expect(seg.done).toBe(true);
      seg.fill();
      expect(batch.count).toBe(0);
      expect(seg.counters[counter]).toBe(1);
      const total = seg.counters.dropMalformed + seg.counters.dropUnsupported + seg.counters.dropTooBig;
      expect(total).toBe(1);
      // The segmenter is still usable afterwards.
      const good = superFrame(payload, ACK);
      const s2 = setup(good, 6);
      expect(s2.seg.begin(6, good.length)).toBe(true);
    });
  }
});

function put16LE(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

describe.each(
  [['jsByteOps', jsByteOps] as const, ...(NATIVE !== undefined ? [['native', NATIVE] as const] : [])],
)('GsoSegmenter zero-copy (%s): when it applies, and the whole frame when a TAP needs it', (_name, bytes) => {
  const payload = payloadBytes(3 * MSS + 517);
  const want = (i: number, flags: number) =>
    wireFrame((SEQ0 + i * MSS) >>> 0, (ID0 + i) & 0xffff, flags, payload.subarray(i * MSS, Math.min((i + 1) * MSS, payload.length)));

  it('copies segments whose IP length is over the zero-copy MTU (they may take a path that reads the payload)', () => {
    const { seg, batch } = setup(superFrame(payload, ACK), 6, 64, bytes, IPHL + THL + MSS - 1);
    expect(seg.begin(6, 10 + HDR + payload.length)).toBe(true);
    seg.fill();
    expect(batch.count).toBe(4);
    for (let i = 0; i < 4; i++) expect(batch.extLen[i]).toBe(0);
    expect(frames(batch)[1]).toEqual(want(1, ACK));
  });

  it('zero-copy exactly at the MTU', () => {
    const { seg, batch } = setup(superFrame(payload, ACK), 6, 64, bytes, IPHL + THL + MSS);
    expect(seg.begin(6, 10 + HDR + payload.length)).toBe(true);
    seg.fill();
    expect(batch.extLen[0]).toBe(MSS);
  });

  it('copies a super-frame with MF set (a fragment: the pipeline would reassemble its payload)', () => {
    const raw = superFrame(payload, ACK);
    raw[10 + 14 + 6]! |= 0x20; // MF
    const { seg, batch } = setup(raw, 6, 64, bytes, 9000);
    expect(seg.begin(6, 10 + HDR + payload.length)).toBe(true);
    seg.fill();
    for (let i = 0; i < batch.count; i++) expect(batch.extLen[i]).toBe(0);
  });

  it('materialize() makes the frame whole in its slot: wire-exact, checksums verify', () => {
    const { seg, batch } = setup(superFrame(payload, ACK | PSH), 6, 64, bytes, 9000);
    expect(seg.begin(6, 10 + HDR + payload.length)).toBe(true);
    seg.fill();
    for (let i = 0; i < 4; i++) {
      batch.materialize(i);
      expect(batch.extLen[i]).toBe(0);
      const f = batch.slab.slice(batch.inOff(i), batch.inOff(i) + batch.len[i]!);
      expect(f).toEqual(want(i, i === 3 ? ACK | PSH : ACK));
      expect(referenceChecksum(f.subarray(T), pseudoWords(f, f.length - T))).toBe(0);
    }
  });

  it('a wrong payload sum would show: a changed payload byte no longer verifies', () => {
    const { seg, batch, raw } = setup(superFrame(payload, ACK), 6, 64, bytes, 9000);
    expect(seg.begin(6, 10 + HDR + payload.length)).toBe(true);
    seg.fill();
    raw[batch.extOff[1]! + 100]! ^= 0x01; // after the checksum was computed
    const f = frames(batch)[1]!;
    expect(referenceChecksum(f.subarray(T), pseudoWords(f, f.length - T))).not.toBe(0);
  });
});
