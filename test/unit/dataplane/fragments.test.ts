import { describe, expect, it } from 'vitest';
import { FRAG_DROP_NAMES, FragDrop, FragOutcome, FragmentTable } from '../../../src/dataplane/fragments.js';
import { fragmentCount, writeFragment } from '../../../src/dataplane/fragment-out.js';
import { Ipv4View } from '../../../src/wire/ipv4.js';
import { WireError } from '../../../src/wire/errors.js';
import { foldChecksum, onesComplementSum, pseudoHeaderSum, referenceChecksum } from '../../../src/wire/checksum.js';
import { ipPacket } from '../../helpers/packets.js';
import { inputs, outputs } from '../../vectors/kernel-fragments.js';
import { inputs as defragIn, outputs as defragOut, OUT_MTU } from '../../vectors/kernel-defrag.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A UDP datagram of `size` payload bytes from appB to appA, DF clear. */
function datagram(size: number, ident = 0x1234, tos = 0): Uint8Array {
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 13 + size) & 0xff;
  const p = ipPacket('10.255.2.2', '10.255.1.2', { proto: 'udp', sport: 5353, dport: 9999, payload, dontFrag: false });
  const v = new Ipv4View().wrap(p, 0, p.length);
  v.ident = ident;
  v.dscpEcn = tos;
  v.fillChecksum();
  return p;
}

/** The fragments a sender with this MTU makes (fragment-out, itself checked against the kernel). */
function fragments(p: Uint8Array, mtu: number): Uint8Array[] {
  const n = fragmentCount(p, 0, mtu);
  return Array.from({ length: n }, (_, i) => {
    const out = new Uint8Array(mtu);
    return out.slice(0, writeFragment(p, 0, mtu, i, out, 0));
  });
}

/** Set the DS byte of a fragment (checksum recomputed). */
function withTos(f: Uint8Array, tos: number): Uint8Array {
  const c = f.slice();
  const v = new Ipv4View().wrap(c, 0, c.length);
  v.dscpEcn = tos;
  v.fillChecksum();
  return c;
}

/** A fragment with explicit offset, MF and payload bytes (header from `like`). */
function frag(like: Uint8Array, offset: number, mf: boolean, data: Uint8Array): Uint8Array {
  const hl = (like[0]! & 15) * 4;
  const c = new Uint8Array(hl + data.length);
  c.set(like.subarray(0, hl));
  c.set(data, hl);
  const v = new Ipv4View().wrap(c, 0, c.length);
  v.totalLen = c.length;
  v.clearFlags();
  v.fragOffset = offset;
  v.moreFrags = mf;
  v.fillChecksum();
  return c;
}

function reassembled(t: FragmentTable, q: number): Uint8Array {
  const out = new Uint8Array(70000).fill(0xa5);
  const n = t.writeReassembled(q, out, 3, 70000);
  return out.slice(3, 3 + n);
}

function forwardAll(t: FragmentTable, q: number): Uint8Array[] {
  return Array.from({ length: t.fragmentCount(q) }, (_, i) => {
    const out = new Uint8Array(10000).fill(0x5a);
    const n = t.writeFragment(q, i, out, 7);
    return out.slice(7, 7 + n);
  });
}

/** A small deterministic PRNG (mulberry32) so a failing case can be replayed. */
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

function shuffle<T>(a: T[], r: () => number): T[] {
  const c = a.slice();
  for (let i = c.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [c[i], c[j]] = [c[j]!, c[i]!];
  }
  return c;
}

/** The 3,000-byte datagram as the router forwarded it (TTL 63, UDP checksum completed). */
function routerDatagram(p: Uint8Array): Uint8Array {
  const c = p.slice();
  const v = new Ipv4View().wrap(c, 0, c.length);
  v.decrementTtl();
  const u = v.payloadOffset;
  c[u + 6] = 0;
  c[u + 7] = 0;
  const k = foldChecksum(onesComplementSum(c, u, v.payloadLen, pseudoHeaderSum(v.srcAddr, v.dstAddr, 17, v.payloadLen))) || 0xffff;
  c[u + 6] = k >>> 8;
  c[u + 7] = k & 0xff;
  return c;
}

describe('fragments: reassemble for the decision, forward the originals (nf_defrag + ip_do_fragment fast path)', () => {
  it('kernel fragments of a 3,000-byte UDP datagram: held, held, complete; reassembly is the datagram; forwarding gives back the same bytes', () => {
    const t = new FragmentTable({ seed: 1 });
    const fr = outputs.slice(0, 3);
    expect(t.add(fr[0]!, 0, 0)).toBe(FragOutcome.Held);
    expect(t.add(fr[1]!, 0, 1)).toBe(FragOutcome.Held);
    expect(t.add(fr[2]!, 0, 2)).toBe(FragOutcome.Complete);
    const q = t.completed;
    expect(t.reassembledLength(q)).toBe(3028);
    expect(hex(reassembled(t, q))).toBe(hex(routerDatagram(inputs[0]!)));
    expect(forwardAll(t, q).map(hex)).toEqual(fr.map(hex));
    t.release(q);
    expect(t.queues).toBe(0);
    expect(t.bytesUsed).toBe(0);
    expect(t.dropped).toBe(0);
  });

  it('a 9,000-byte datagram with IP options, fragments in random order: completes on the last one, forwards in offset order with non-copied options as NOPs', () => {
    const fr = outputs.slice(14, 22); // 8,972-byte UDP with Router Alert + option 30, fragmented twice
    for (const seed of [1, 2, 3, 4, 5]) {
      const t = new FragmentTable({ seed });
      const order = shuffle(fr, rng(seed));
      order.forEach((f, i) => expect(t.add(f, 0, 0)).toBe(i < order.length - 1 ? FragOutcome.Held : FragOutcome.Complete));
      const q = t.completed;
      const r = reassembled(t, q);
      expect(r.length).toBe(32 + 8 + 8972);
      const v = new Ipv4View().wrap(r, 0, r.length);
      expect(v.check()).toBe(WireError.None);
      expect(referenceChecksum(r.subarray(0, 32))).toBe(0);
      expect(v.isFragment).toBe(false);
      expect(hex(r.subarray(20, 32))).toBe('940400001e06abcdef010101');
      for (let i = 0; i < 8972; i++) if (r[40 + i] !== ((i * 7 + 8972) & 0xff)) throw new Error(`payload byte ${i}`);
      expect(forwardAll(t, q).map(hex)).toEqual(fr.map(hex));
      t.release(q);
    }
  });

  it('3,000- and 9,000-byte datagrams made here at MTU 1450 and 576, out of order, at a non-zero buffer offset', () => {
    const t = new FragmentTable({ seed: 9 });
    for (const [size, mtu] of [[3000, 1450], [9000, 1450], [9000, 576], [3000, 576]] as const) {
      const d = datagram(size, size + mtu);
      const fr = shuffle(fragments(d, mtu), rng(size * mtu));
      let q = -1;
      for (const f of fr) {
        const slab = new Uint8Array(f.length + 100).fill(0xee);
        slab.set(f, 41);
        if (t.add(slab, 41, 5) === FragOutcome.Complete) q = t.completed;
      }
      expect(q).toBeGreaterThanOrEqual(0);
      expect(hex(reassembled(t, q))).toBe(hex(d));
      expect(forwardAll(t, q).map(hex)).toEqual(fragments(d, mtu).map(hex));
      t.release(q);
    }
    expect(t.reassembled).toBe(4);
    expect(t.bytesUsed).toBe(0);
  });

  it('duplicates are dropped alone (counted), the datagram still completes', () => {
    const t = new FragmentTable({ seed: 2 });
    const fr = fragments(datagram(3000), 1450);
    expect(t.add(fr[1]!, 0, 0)).toBe(FragOutcome.Held);
    expect(t.add(fr[1]!, 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.add(fr[0]!, 0, 0)).toBe(FragOutcome.Held);
    expect(t.add(fr[0]!, 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.add(fr[2]!, 0, 0)).toBe(FragOutcome.Complete);
    expect(t.drops[FragDrop.Duplicate]).toBe(2);
    const q = t.completed;
    t.release(q);
    // After completion the queue is gone: a late duplicate starts a new queue, which times out.
    expect(t.add(fr[2]!, 0, 1)).toBe(FragOutcome.Held);
    expect(t.expire(30_001)).toBe(1);
    expect(t.drops[FragDrop.Timeout]).toBe(1);
  });

  it('an overlapping fragment drops the whole datagram (RFC 5722 as Linux applies it to IPv4)', () => {
    const t = new FragmentTable({ seed: 3 });
    const d = datagram(3000);
    const fr = fragments(d, 1450);
    expect(t.add(fr[0]!, 0, 0)).toBe(FragOutcome.Held);
    expect(t.add(fr[2]!, 0, 0)).toBe(FragOutcome.Held);
    // Bytes 1416..1424 overlap the end of fragment 0 (payload 0..1424).
    const bad = frag(fr[1]!, 1416, true, d.subarray(20 + 1416, 20 + 1416 + 1432));
    expect(t.add(bad, 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.drops[FragDrop.Overlap]).toBe(3);
    expect(t.queues).toBe(0);
    expect(t.bytesUsed).toBe(0);
    // The honest middle fragment now starts a new queue that can never complete.
    expect(t.add(fr[1]!, 0, 0)).toBe(FragOutcome.Held);
    expect(t.expire(30_000)).toBe(1);
    // Overlapping the tail while extending past it (the in-order path of inet_frag_queue_insert).
    const e = datagram(3000, 0x4242);
    const ef = fragments(e, 1450);
    expect(t.add(ef[0]!, 0, 0)).toBe(FragOutcome.Held);
    expect(t.add(frag(ef[1]!, 1416, true, e.subarray(20 + 1416, 20 + 1416 + 16)), 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.drops[FragDrop.Overlap]).toBe(5);
  });

  it('runs as the kernel keeps them: inside one run is a duplicate, across two separately inserted runs is an overlap', () => {
    const d = datagram(64);
    const data = (o: number, n: number) => d.subarray(20 + o, 20 + o + n);
    const t = new FragmentTable({ seed: 4 });
    // In order 0, 16, 32: one run [0, 48).
    t.add(frag(d, 0, true, data(0, 16)), 0, 0);
    t.add(frag(d, 16, true, data(16, 16)), 0, 0);
    t.add(frag(d, 32, true, data(32, 16)), 0, 0);
    expect(t.add(frag(d, 8, true, data(8, 32)), 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.drops[FragDrop.Duplicate]).toBe(1);
    expect(t.queues).toBe(1);
    // Another datagram: 32 first, then 0, then 16 — three runs; [8, 40) spans two of them.
    const e = datagram(64, 0x999);
    const t2 = new FragmentTable({ seed: 4 });
    t2.add(frag(e, 32, true, e.subarray(52, 68)), 0, 0);
    t2.add(frag(e, 0, true, e.subarray(20, 36)), 0, 0);
    t2.add(frag(e, 16, true, e.subarray(36, 52)), 0, 0);
    expect(t2.add(frag(e, 8, true, e.subarray(28, 60)), 0, 0)).toBe(FragOutcome.Dropped);
    expect(t2.drops[FragDrop.Overlap]).toBe(4);
  });

  it('inconsistent fragments drop the datagram: zero length, two different ends, data past the end', () => {
    const d = datagram(100);
    const t = new FragmentTable({ seed: 5 });
    t.add(frag(d, 0, true, d.subarray(20, 36)), 0, 0);
    expect(t.add(frag(d, 16, true, new Uint8Array(0)), 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.drops[FragDrop.Invalid]).toBe(2);
    t.add(frag(d, 64, false, d.subarray(84, 128)), 0, 0); // end 108
    expect(t.add(frag(d, 64, false, d.subarray(84, 120)), 0, 0)).toBe(FragOutcome.Dropped); // end 100 ≠ 108
    expect(t.drops[FragDrop.Invalid]).toBe(4);
    t.add(frag(d, 32, false, d.subarray(52, 60)), 0, 0); // last fragment: end 40
    expect(t.add(frag(d, 40, true, d.subarray(60, 76)), 0, 0)).toBe(FragOutcome.Dropped); // past the end
    expect(t.drops[FragDrop.Invalid]).toBe(6);
    expect(t.queues).toBe(0);
  });

  it('an MF fragment whose length is not a multiple of 8 is cut to 8 bytes (ip_frag_queue), so the datagram still adds up', () => {
    const d = datagram(40);
    const t = new FragmentTable({ seed: 6 });
    expect(t.add(frag(d, 0, true, d.subarray(20, 20 + 21)), 0, 0)).toBe(FragOutcome.Held); // keeps 16
    expect(t.add(frag(d, 16, false, d.subarray(36, 68)), 0, 0)).toBe(FragOutcome.Complete);
    expect(hex(reassembled(t, t.completed))).toBe(hex(d));
  });

  it('more than 65,535 bytes reassembled is dropped (ip_frag_reasm oversize)', () => {
    const big = new Uint8Array(20 + 65000);
    big.set(datagram(8).subarray(0, 20));
    const t = new FragmentTable({ seed: 7 });
    expect(t.add(frag(big, 0, true, big.subarray(20)), 0, 0)).toBe(FragOutcome.Held);
    expect(t.add(frag(big, 65000, false, new Uint8Array(600)), 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.drops[FragDrop.Oversize]).toBe(2);
    expect(t.bytesUsed).toBe(0);
  });

  it('ECN across fragments (RFC 3168 5.3): CE among ECT marks every forwarded fragment CE; Not-ECT mixed with ECT drops the datagram', () => {
    const d = datagram(3000, 0x77, 0x2a);
    const fr = fragments(d, 1450);
    const t = new FragmentTable({ seed: 8 });
    t.add(fr[0]!, 0, 0);
    t.add(withTos(fr[1]!, 0x2b), 0, 0);
    expect(t.add(fr[2]!, 0, 0)).toBe(FragOutcome.Complete);
    const q = t.completed;
    expect(reassembled(t, q)[1]).toBe(0x2b);
    for (const f of forwardAll(t, q)) {
      expect(f[1]).toBe(0x2b);
      expect(referenceChecksum(f.subarray(0, 20))).toBe(0);
    }
    t.release(q);
    const e = fragments(datagram(3000, 0x78, 0x2a), 1450);
    t.add(e[0]!, 0, 0);
    t.add(withTos(e[1]!, 0x28), 0, 0);
    expect(t.add(e[2]!, 0, 0)).toBe(FragOutcome.Dropped);
    expect(t.drops[FragDrop.EcnMix]).toBe(3);
  });

  it('timeouts: a queue lives timeoutMs from its first fragment, later fragments do not extend it', () => {
    const t = new FragmentTable({ seed: 10, timeoutMs: 30_000 });
    const fr = fragments(datagram(9000), 1450);
    t.add(fr[0]!, 0, 0);
    t.add(fr[3]!, 0, 20_000);
    expect(t.expire(29_999)).toBe(0);
    expect(t.queues).toBe(1);
    expect(t.expire(30_000)).toBe(2);
    expect(t.drops[FragDrop.Timeout]).toBe(2);
    expect(t.queues).toBe(0);
    expect(t.bytesUsed).toBe(0);
  });

  it('a flood of random ids never completed: memory stays within the budget, the excess is counted, expiry frees everything', () => {
    const budget = 256 * 1024;
    const t = new FragmentTable({ seed: 11, budgetBytes: budget, maxQueues: 4096 });
    const r = rng(11);
    const base = fragments(datagram(3000), 1450)[0]!;
    let held = 0;
    for (let i = 0; i < 20_000; i++) {
      const f = base.slice();
      const v = new Ipv4View().wrap(f, 0, f.length);
      v.ident = Math.floor(r() * 65536);
      v.srcAddr = (0x0aff0000 | Math.floor(r() * 65536)) >>> 0;
      v.fillChecksum();
      const o = t.add(f, 0, i);
      if (o === FragOutcome.Held) held++;
      expect(t.bytesUsed).toBeLessThanOrEqual(budget);
    }
    expect(held).toBeGreaterThan(100);
    expect(t.drops[FragDrop.NoMemory]).toBeGreaterThan(0);
    expect(held + t.dropped).toBe(20_000);
    expect(t.queues).toBe(held); // refused fragments leave no empty queue behind
    // A legitimate datagram cannot get in while the budget is full (the kernel's behaviour too) …
    const ok = fragments(datagram(3000, 0xbeef), 1450);
    expect(t.add(ok[0]!, 0, 20_000)).toBe(FragOutcome.Dropped);
    // … and can once the flood has expired.
    expect(t.expire(20_000 + 30_000)).toBe(held);
    expect(t.bytesUsed).toBe(0);
    expect(t.queues).toBe(0);
    ok.forEach((f, i) => expect(t.add(f, 0, 60_000)).toBe(i < ok.length - 1 ? FragOutcome.Held : FragOutcome.Complete));
  });

  it('the queue table is bounded too, and a queue has at most maxFragmentsPerQueue fragments', () => {
    const t = new FragmentTable({ seed: 12, maxQueues: 8 });
    const base = fragments(datagram(3000), 1450)[1]!;
    for (let id = 0; id < 10; id++) {
      const f = base.slice();
      new Ipv4View().wrap(f, 0, f.length).ident = id;
      expect(t.add(f, 0, 0)).toBe(id < 8 ? FragOutcome.Held : FragOutcome.Dropped);
    }
    expect(t.drops[FragDrop.NoMemory]).toBe(2);
    const t2 = new FragmentTable({ seed: 12, maxFragmentsPerQueue: 4 });
    const fr = fragments(datagram(3000), 576);
    expect(fr.length).toBe(6);
    for (let i = 0; i < 4; i++) expect(t2.add(fr[i]!, 0, 0)).toBe(FragOutcome.Held);
    expect(t2.add(fr[4]!, 0, 0)).toBe(FragOutcome.Dropped);
    expect(t2.drops[FragDrop.TooMany]).toBe(5);
  });

  it('many interleaved datagrams with colliding queues (tiny table): each one reassembles to its own bytes', () => {
    const t = new FragmentTable({ seed: 13, maxQueues: 16 });
    const r = rng(13);
    for (let round = 0; round < 40; round++) {
      const ds = Array.from({ length: 12 }, (_, k) => datagram(500 + Math.floor(r() * 4000), round * 100 + k));
      const all = shuffle(ds.flatMap((d) => fragments(d, 576 + 8 * Math.floor(r() * 100))), r);
      const got = new Map<number, string>();
      for (const f of all) {
        if (t.add(f, 0, round) === FragOutcome.Complete) {
          const q = t.completed;
          const re = reassembled(t, q);
          got.set(new Ipv4View().wrap(re, 0, re.length).ident, hex(re));
          t.release(q);
        }
      }
      expect(got.size).toBe(12);
      for (const d of ds) expect(got.get(new Ipv4View().wrap(d, 0, d.length).ident)).toBe(hex(d));
      expect(t.queues).toBe(0);
    }
    expect(t.dropped).toBe(0);
  });

  it('every drop reason has a stable name', () => {
    expect(FRAG_DROP_NAMES.length).toBe(FragDrop.Count);
    expect(new Set(FRAG_DROP_NAMES).size).toBe(FragDrop.Count);
  });
});

describe('fragments: differential against a Linux router with conntrack (nf_defrag_ipv4 → ip_do_fragment)', () => {
  it('forwards byte for byte what the kernel forwarded: order, one header for all (TTL, CE, options), DF cleared, jumbo fragments split again; drops what it dropped', () => {
    const t = new FragmentTable({ seed: 21 });
    const ours: Uint8Array[] = [];
    const scratch = new Uint8Array(65535);
    let slowPath = 0;
    defragIn.forEach((p, i) => {
      if (t.add(p, 0, i) !== FragOutcome.Complete) return;
      const q = t.completed;
      if (t.fitsMtu(q, OUT_MTU)) {
        for (let k = 0; k < t.fragmentCount(q); k++) {
          const out = new Uint8Array(OUT_MTU);
          const n = t.writeFragment(q, k, out, 0);
          new Ipv4View().wrap(out, 0, n).decrementTtl(); // ip_forward
          ours.push(out.slice(0, n));
        }
      } else {
        slowPath++;
        const n = t.writeReassembled(q, scratch, 0, scratch.length);
        new Ipv4View().wrap(scratch, 0, n).decrementTtl();
        for (let k = 0; k < fragmentCount(scratch, 0, OUT_MTU); k++) {
          const out = new Uint8Array(OUT_MTU);
          ours.push(out.slice(0, writeFragment(scratch, 0, OUT_MTU, k, out, 0)));
        }
      }
      t.release(q);
    });
    expect(slowPath).toBe(1);
    // The DF datagram (0x1003) is judged with DF, as ip_frag_reasm leaves it; the others without.
    const t2 = new FragmentTable({ seed: 22 });
    const df: number[] = [];
    defragIn.forEach((p) => {
      if (t2.add(p, 0, 0) !== FragOutcome.Complete) return;
      const r = new Uint8Array(64);
      t2.writeReassembled(t2.completed, r, 0, 64);
      if (t2.reassembledDf(t2.completed)) df.push((r[4]! << 8) | r[5]!);
      expect(t2.reassembledDf(t2.completed)).toBe((r[6]! & 0x40) !== 0);
      t2.release(t2.completed);
    });
    expect(df).toEqual([0x1003]);
    expect(ours.length).toBe(defragOut.length);
    ours.forEach((f, i) => expect(hex(f), `output ${i}`).toBe(hex(defragOut[i]!)));
    expect(t.drops[FragDrop.Duplicate]).toBe(1);
    expect(t.drops[FragDrop.Overlap]).toBe(2);
    expect(t.drops[FragDrop.EcnMix]).toBe(3);
    // The overlap left its last fragment in a queue of its own, which times out.
    expect(t.expire(60_000)).toBe(1);
  });
});
