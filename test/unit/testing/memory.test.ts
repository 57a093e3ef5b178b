import { describe, expect, it } from 'vitest';
import { MemoryFrameDevice, MemoryUnderlay } from '../../../src/testing/memory.js';
import type { FrameBatch } from '../../../src/dataplane/batch.js';
import { ipToU32 } from '../../../src/util/ip.js';

function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// Seed 002, "Source host eth0 device": the VXLAN packet as it left diego-cell-0
// (Ethernet + outer IPv4 10.0.16.16 -> 10.0.32.14 + UDP 36821 -> 4789 + VXLAN + inner frame).
const SEED_UNDERLAY_FRAME = hex(`
  4201 0a00 0001 4201 0a00 1010 0800 4500
  007f 93bf 0000 4011 a291 0a00 1010 0a00
  200e 8fd5 12b5 006b 0000 8800 0001 0000
  0100 eeee 0aff 8400 eeee 0aff 6300 0800
  4500 004d 9a12 4000 3f06 a495 0aff 6303
  0aff 8402 ddbe 1e61 8c78 3a6f 80d3 13ea
  8018 00d7 0fc9 0000 0101 080a 0008 18cf
  000a 5ccd 6366 2d6e 6574 776f 726b 696e
  6720 7769 7468 2073 696c 6b21 0a`);
const SEED_OUTER_IP = SEED_UNDERLAY_FRAME.subarray(14);

// Seed 002, "Source host VTEP device": the inner frame the VTEP encapsulated.
const SEED_VTEP_FRAME = hex(`
  eeee 0aff 8400 eeee 0aff 6300 0800 4500
  004d 9a12 4000 3f06 a495 0aff 6303 0aff
  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018
  00d7 fd42 0000 0101 080a 0008 18cf 000a
  5ccd 6366 2d6e 6574 776f 726b 696e 6720
  7769 7468 2073 696c 6b21 0a`);

// Seed 002, "Destination host VTEP device": the decapsulated frame. Identical to the source VTEP's
// except the TCP checksum, which the source captured before offload filled it in (0xfd42 "incorrect").
const SEED_DST_VTEP_FRAME = hex(`
  eeee 0aff 8400 eeee 0aff 6300 0800 4500
  004d 9a12 4000 3f06 a495 0aff 6303 0aff
  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018
  00d7 0fc9 0000 0101 080a 0008 18cf 000a
  5ccd 6366 2d6e 6574 776f 726b 696e 6720
  7769 7468 2073 696c 6b21 0a`);

// Seed 002, "Source container eth0 device": what the source app's TAP would deliver.
const SEED_CONTAINER_FRAME = hex(`
  aaaa 0aff 6303 eeee 0aff 6303 0800 4500
  004d 9a12 4000 4006 a395 0aff 6303 0aff
  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018
  00d7 fd42 0000 0101 080a 0008 18cf 000a
  5ccd 6366 2d6e 6574 776f 726b 696e 6720
  7769 7468 2073 696c 6b21 0a`);

const CELL0 = ipToU32('10.0.16.16');
const CELL1 = ipToU32('10.0.32.14');

function frames(b: FrameBatch): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < b.count; i++) out.push(b.slab.slice(b.inOff(i), b.inOff(i) + b.len[i]!));
  return out;
}

/** Naive RFC 768 checksum over pseudo-header + UDP, as a reference independent of memory.ts. */
function refUdpChecksum(ip: Uint8Array): number {
  const ihl = (ip[0]! & 15) * 4;
  const udp = ip.subarray(ihl);
  const words: number[] = [];
  const pseudo = [...ip.subarray(12, 20), 0, 17, udp.length >> 8, udp.length & 255];
  const all = [...pseudo, ...udp, ...(udp.length % 2 ? [0] : [])];
  for (let i = 0; i < all.length; i += 2) words.push((all[i]! << 8) + all[i + 1]!);
  let sum = words.reduce((a, w) => a + w, 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  const c = ~sum & 0xffff;
  return c === 0 ? 0xffff : c;
}

/** Put `packets` in a slab at a non-zero offset each, with gaps, and return send() arguments. */
function slabOf(packets: Uint8Array[]): { slab: Uint8Array; offs: Uint32Array; lens: Uint32Array } {
  const slot = 256;
  const slab = new Uint8Array(slot * packets.length).fill(0xa5);
  const offs = new Uint32Array(packets.length);
  const lens = new Uint32Array(packets.length);
  packets.forEach((p, i) => {
    offs[i] = i * slot + 28;
    lens[i] = p.length;
    slab.set(p, offs[i]!);
  });
  return { slab, offs, lens };
}

describe('MemoryFrameDevice', () => {
  it('delivers injected frames in batches of at most capacity, at the headroom offset', () => {
    const dev = new MemoryFrameDevice('tap0', { capacity: 2, slotSize: 256, headroom: 64 });
    const seen: { count: number; frames: Uint8Array[]; off0: number }[] = [];
    dev.start((b) => seen.push({ count: b.count, frames: frames(b), off0: b.inOff(0) }));
    const third = SEED_CONTAINER_FRAME.slice(0, 20);
    expect(dev.inject(SEED_CONTAINER_FRAME, SEED_VTEP_FRAME, third)).toBe(3);
    expect(seen.map((s) => s.count)).toEqual([2, 1]);
    expect(seen[0]!.off0).toBe(64);
    expect(seen[0]!.frames[0]).toEqual(SEED_CONTAINER_FRAME);
    expect(seen[0]!.frames[1]).toEqual(SEED_VTEP_FRAME);
    expect(seen[1]!.frames[0]).toEqual(third);
    expect(dev.batch.slab[64]).toBe(0xaa); // the container frame's dst MAC starts at the headroom
    expect(dev.stats).toMatchObject({ rxBatches: 2, rxFrames: 3 });
  });

  it('queues frames injected before start and never re-enters onBatch', () => {
    const dev = new MemoryFrameDevice('tap0', { capacity: 4, slotSize: 256 });
    dev.inject(SEED_CONTAINER_FRAME);
    expect(dev.queued).toBe(1);
    const counts: number[] = [];
    let depth = 0;
    let maxDepth = 0;
    dev.start((b) => {
      depth++;
      maxDepth = Math.max(maxDepth, depth);
      counts.push(b.count);
      if (counts.length === 1) dev.inject(SEED_VTEP_FRAME, SEED_VTEP_FRAME);
      depth--;
    });
    expect(counts).toEqual([1, 2]);
    expect(maxDepth).toBe(1);
    expect(dev.queued).toBe(0);
  });

  it('drops frames larger than a slot and counts them', () => {
    const dev = new MemoryFrameDevice('tap0', { capacity: 4, slotSize: 128, headroom: 64 });
    const got: number[] = [];
    dev.start((b) => got.push(b.count));
    expect(dev.inject(new Uint8Array(65), new Uint8Array(64))).toBe(1);
    expect(got).toEqual([1]);
    expect(dev.stats.rxOversize).toBe(1);
  });

  it('records written frames as copies and honours a write budget', () => {
    const dev = new MemoryFrameDevice();
    const { slab, offs, lens } = slabOf([SEED_CONTAINER_FRAME, SEED_VTEP_FRAME, SEED_VTEP_FRAME]);
    dev.writeBudget = 2;
    expect(dev.write(slab, offs, lens, 3)).toBe(2);
    slab.fill(0); // the slab is reused; the records must not change
    expect(dev.written).toEqual([SEED_CONTAINER_FRAME, SEED_VTEP_FRAME]);
    expect(dev.stats).toMatchObject({ txFrames: 2, txDropFull: 1 });
  });

  it('reports disappearance once and refuses I/O afterwards', () => {
    const dev = new MemoryFrameDevice('tap9');
    const gone: Error[] = [];
    dev.start(() => undefined, (e) => gone.push(e));
    dev.disappear();
    dev.disappear();
    expect(gone).toHaveLength(1);
    expect((gone[0] as NodeJS.ErrnoException).code).toBe('EBADFD');
    expect(dev.inject(SEED_CONTAINER_FRAME)).toBe(0);
    const { slab, offs, lens } = slabOf([SEED_CONTAINER_FRAME]);
    expect(dev.write(slab, offs, lens, 1)).toBe(0);
    expect(dev.stats.txDropGone).toBe(1);
  });

  it('rejects a write whose frame lies outside the slab', () => {
    const dev = new MemoryFrameDevice();
    expect(() => dev.write(new Uint8Array(10), Uint32Array.of(4), Uint32Array.of(7), 1)).toThrow(/outside the slab/);
  });
});

describe('MemoryUnderlay', () => {
  it("delivers the seed's VXLAN packet: payload from the VXLAN header on, outer source IP and port", async () => {
    const hub = new MemoryUnderlay();
    const a = hub.join(CELL0);
    const b = hub.join(CELL1);
    const got: { payload: Uint8Array; srcIp: number; srcPort: number; off: number }[] = [];
    b.start((batch) => {
      for (let i = 0; i < batch.count; i++) {
        got.push({ payload: batch.slab.slice(batch.inOff(i), batch.inOff(i) + batch.len[i]!), srcIp: batch.srcIp[i]!, srcPort: batch.srcPort[i]!, off: batch.inOff(i) });
      }
    });
    const { slab, offs, lens } = slabOf([SEED_OUTER_IP]);
    expect(a.send(slab, offs, lens, Uint32Array.of(CELL1), 1)).toBe(1);
    expect(got).toHaveLength(0); // microtask delivery: never inside send()
    await Promise.resolve();
    expect(got).toHaveLength(1);
    expect(got[0]!.srcIp).toBe(0x0a001010);
    expect(got[0]!.srcPort).toBe(36821);
    expect(got[0]!.off).toBe(64);
    expect(got[0]!.payload.length).toBe(99);
    expect(Array.from(got[0]!.payload.subarray(0, 8))).toEqual([0x88, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00]);
    expect(got[0]!.payload.subarray(8)).toEqual(SEED_DST_VTEP_FRAME);
    expect(hub.sent).toHaveLength(1);
    expect(hub.sent[0]).toMatchObject({ src: CELL0, dst: CELL1, nextHop: CELL1 });
    expect(hub.sent[0]!.bytes).toEqual(SEED_OUTER_IP);
  });

  it('fills in the source address when the header leaves it 0, as the kernel does for IP_HDRINCL', () => {
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const a = hub.join(ipToU32('198.18.0.1'));
    const b = hub.join(CELL1);
    const srcs: number[] = [];
    b.start((batch) => srcs.push(batch.srcIp[0]!));
    const p = SEED_OUTER_IP.slice();
    p.fill(0, 12, 16);
    const { slab, offs, lens } = slabOf([p]);
    a.send(slab, offs, lens, Uint32Array.of(CELL1), 1);
    expect(srcs).toEqual([ipToU32('198.18.0.1')]);
    expect(hub.sent[0]!.src).toBe(ipToU32('198.18.0.1'));
  });

  it('verifies a non-zero UDP checksum and drops a corrupted datagram', () => {
    const hub = new MemoryUnderlay({ delivery: 'manual' });
    const a = hub.join(CELL0);
    const b = hub.join(CELL1);
    const counts: number[] = [];
    b.start((batch) => counts.push(batch.count));
    const good = SEED_OUTER_IP.slice();
    const c = refUdpChecksum(good);
    good[26] = c >> 8;
    good[27] = c & 255;
    const bad = good.slice();
    bad[bad.length - 1] ^= 0x01;
    const { slab, offs, lens } = slabOf([good, bad]);
    expect(a.send(slab, offs, lens, Uint32Array.of(CELL1, CELL1), 2)).toBe(1);
    expect(hub.drops.badChecksum).toBe(1);
    expect(counts).toEqual([]);
    expect(hub.flush()).toBe(1);
    expect(counts).toEqual([1]);
  });

  it('refuses malformed outer headers with a counted reason', () => {
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const a = hub.join(CELL0);
    hub.join(CELL1).start(() => undefined);
    const mk = (edit: (p: Uint8Array) => Uint8Array) => edit(SEED_OUTER_IP.slice());
    const cases: [string, Uint8Array][] = [
      ['short', SEED_OUTER_IP.slice(0, 27)],
      ['notIpv4', mk((p) => ((p[0] = 0x65), p))],
      ['notIpv4', mk((p) => ((p[0] = 0x44), p))],
      ['badLength', SEED_OUTER_IP.slice(0, 126)],
      ['fragment', mk((p) => ((p[6] = 0x20), p))],
      ['notUdp', mk((p) => ((p[9] = 6), p))],
      ['badUdpLength', mk((p) => ((p[25] = 0x6a), p))],
    ];
    for (const [reason, p] of cases) {
      const before = hub.drops[reason as keyof typeof hub.drops];
      const { slab, offs, lens } = slabOf([p]);
      expect(a.send(slab, offs, lens, Uint32Array.of(CELL1), 1), reason).toBe(0);
      expect(hub.drops[reason as keyof typeof hub.drops], reason).toBe(before + 1);
    }
    expect(hub.sent).toHaveLength(0);
    expect(a.stats.txRefused).toBe(cases.length);
  });

  it('loses packets for an unknown address or port (sent, but noListener)', () => {
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const a = hub.join(CELL0);
    hub.join(CELL1, { port: 4790 }).start(() => expect.fail('wrong port must not deliver'));
    const other = SEED_OUTER_IP.slice();
    other[19] = 15; // 10.0.32.15: nobody
    const { slab, offs, lens } = slabOf([SEED_OUTER_IP, other]);
    expect(a.send(slab, offs, lens, Uint32Array.of(CELL1, CELL1 + 1), 2)).toBe(2);
    expect(hub.drops.noListener).toBe(2);
    expect(hub.sent.map((s) => s.dst)).toEqual([CELL1, CELL1 + 1]);
  });

  it('splits a burst into batches of the receiver capacity and never re-enters onBatch', () => {
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const a = hub.join(CELL0, { capacity: 3 });
    const b = hub.join(CELL1, { capacity: 3 });
    const counts: number[] = [];
    let inside = false;
    b.start((batch) => {
      expect(inside).toBe(false);
      inside = true;
      counts.push(batch.count);
      // Reply from inside the handler: delivered to `a`, which is not busy.
      if (counts.length === 1) {
        const back = SEED_OUTER_IP.slice();
        back.set(SEED_OUTER_IP.subarray(16, 20), 12);
        back.set(SEED_OUTER_IP.subarray(12, 16), 16);
        const s = slabOf([back]);
        b.send(s.slab, s.offs, s.lens, Uint32Array.of(CELL0), 1);
      }
      inside = false;
    });
    const back: number[] = [];
    a.start((batch) => back.push(batch.srcIp[0]!));
    const burst = Array.from({ length: 7 }, () => SEED_OUTER_IP);
    const { slab, offs, lens } = slabOf(burst);
    expect(a.send(slab, offs, lens, new Uint32Array(7).fill(CELL1), 7)).toBe(7);
    expect(counts).toEqual([3, 3, 1]);
    expect(back).toEqual([CELL1]);
    expect(b.stats).toMatchObject({ rxBatches: 3, rxDatagrams: 7 });
  });

  it('refuses a second socket on the same address and frees it on close', () => {
    const hub = new MemoryUnderlay();
    const s = hub.join(CELL0);
    expect(() => hub.join(CELL0)).toThrow(/already taken/);
    s.close();
    expect(() => hub.join(CELL0)).not.toThrow();
  });
});
