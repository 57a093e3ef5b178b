// IPv4 fragments through the pipeline (defrag.ts): held, reassembled for the
// decision, the original fragments sent on under the first fragment's header
// — across two cells, same-cell, allowed and denied — and oversize non-DF
// packets cut at the MTU; floods bounded and counted; the outer DS byte from
// the inner ECN; the VXLAN reserved byte.
import { describe, expect, it } from 'vitest';
import { Action, FrameBatch, slotSizeFor } from '../../../src/dataplane/batch.js';
import { Drop, DROP_NAMES } from '../../../src/dataplane/counters.js';
import type { Dataplane } from '../../../src/dataplane/dataplane.js';
import { fragmentCount, writeFragment } from '../../../src/dataplane/fragment-out.js';
import { FRAG_DROP_NAMES } from '../../../src/dataplane/fragments.js';
import { internetChecksum } from '../../../src/wire/checksum.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { ipPacket, vxlanPayload } from '../../helpers/packets.js';
import { A0, B0, B1, OUTER_IP_UDP, TAG, U1, U2, dropDelta, policy, snap, topology } from '../../helpers/packets-extra.js';

const MTU = 1450;
const BIG = slotSizeFor(9000);

function payloadOf(n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 7 + 3) & 0xff;
  return p;
}

/** A UDP datagram of `size` payload bytes, DF clear, as a container's kernel builds it before fragmenting. */
function udpDatagram(src: string, dst: string, size: number, id = 0x4242, tos = 0): Uint8Array {
  const p = ipPacket(src, dst, { proto: 'udp', sport: 40000, dport: 5000, payload: payloadOf(size), dontFrag: false });
  p[4] = id >>> 8;
  p[5] = id & 0xff;
  p[1] = tos;
  p[10] = 0;
  p[11] = 0;
  const c = internetChecksum(p, 0, 20);
  p[10] = c >>> 8;
  p[11] = c & 0xff;
  return p;
}

/** The fragments the container's kernel sends at `mtu` (fragment-out.ts matches the kernel's). */
function fragmentsOf(ip: Uint8Array, mtu = MTU): Uint8Array[] {
  const n = fragmentCount(ip, 0, mtu);
  const out: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    const b = new Uint8Array(mtu);
    const len = writeFragment(ip, 0, mtu, k, b, 0);
    out.push(b.slice(0, len));
  }
  return out;
}

function frameOf(src: string, ip: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + ip.length);
  const s = ipToU32(src);
  f.set([0xaa, 0xaa, s >>> 24, (s >>> 16) & 0xff, (s >>> 8) & 0xff, s & 0xff, 0xee, 0xee, s >>> 24, (s >>> 16) & 0xff, (s >>> 8) & 0xff, s & 0xff, 0x08, 0x00]);
  f.set(ip, 14);
  return f;
}

interface Sent {
  action: Action;
  target: number;
  bytes: Uint8Array;
}

/** Run frames through one egress (or ingress) call; returns every slot verdict and every side output. */
function run(cell: Dataplane, dir: 'egress' | 'ingress', frames: Uint8Array[], now: number, port = 0, from = U2): { slots: Sent[]; side: Sent[] } {
  const b = new FrameBatch(frames.length, BIG);
  for (const f of frames) if (!b.push(f, from, 40000)) throw new Error('frame does not fit');
  if (dir === 'egress') cell.egress(b, port, now);
  else cell.ingress(b, now);
  const slots: Sent[] = [];
  for (let i = 0; i < b.count; i++) {
    const a = b.action[i] as Action;
    slots.push({ action: a, target: b.outTarget[i]!, bytes: a === Action.Tap || a === Action.Underlay ? b.output(i) : new Uint8Array(0) });
  }
  const side: Sent[] = [];
  for (let k = 0; k < cell.side.count; k++) side.push({ action: cell.side.action[k] as Action, target: cell.side.target[k]!, bytes: cell.side.output(k) });
  return { slots, side };
}

/** Reassemble IPv4 fragments (test reference: by offset, no checks) → the payload. */
function joinPayload(frags: Uint8Array[]): Uint8Array {
  let end = 0;
  for (const f of frags) {
    const hl = (f[0]! & 15) * 4;
    const off = (((f[6]! << 8) | f[7]!) & 0x1fff) * 8;
    end = Math.max(end, off + ((f[2]! << 8) | f[3]!) - hl);
  }
  const out = new Uint8Array(end);
  for (const f of frags) {
    const hl = (f[0]! & 15) * 4;
    const off = (((f[6]! << 8) | f[7]!) & 0x1fff) * 8;
    out.set(f.subarray(hl, (f[2]! << 8) | f[3]!), off);
  }
  return out;
}

const POL = [policy('appA', 'appB', 'udp', 5000)];

describe.each([3000, 9000])('a %i-byte UDP datagram in fragments', (size) => {
  it('crosses under a UDP policy: held until whole, then every fragment as it came (first header, TTL 63 on the wire, 62 delivered)', () => {
    const t = topology(POL);
    const dgram = udpDatagram(A0, B0, size);
    const frags = fragmentsOf(dgram);
    expect(frags.length).toBe(Math.ceil((size + 8) / 1424));
    // All but the last: held, nothing sent, nothing dropped.
    const before = snap(t.c1);
    for (const f of frags.slice(0, -1)) {
      const r = run(t.c1, 'egress', [frameOf(A0, f)], 10, t.appA0.index);
      expect(r.slots[0]!.action).toBe(Action.Held);
      expect(r.side).toEqual([]);
    }
    const last = run(t.c1, 'egress', [frameOf(A0, frags.at(-1)!)], 10, t.appA0.index);
    expect(last.slots[0]!.action).toBe(Action.Held);
    expect(dropDelta(t.c1, before)).toEqual({});
    expect(last.side.length).toBe(frags.length);
    const wire = last.side.map((s) => {
      expect(s.action).toBe(Action.Underlay);
      expect(s.target).toBe(U2);
      const o = s.bytes;
      expect(internetChecksum(o, 0, 20)).toBe(0);
      expect((o[2]! << 8) | o[3]!).toBe(o.length);
      expect((o[24]! << 8) | o[25]!).toBe(o.length - 20); // UDP length
      expect(o[28]).toBe(0x88); // G I
      expect((o[30]! << 8) | o[31]!).toBe(TAG.appA);
      const inner = o.subarray(50);
      expect(inner[8]).toBe(63);
      expect(internetChecksum(inner, 0, 20)).toBe(0);
      return inner;
    });
    // Same boundaries as the container sent.
    expect(wire.map((w) => w.length)).toEqual(frags.map((f) => f.length));
    expect(joinPayload(wire)).toEqual(dgram.subarray(20));
    // The receiving cell: held, then delivered as the same fragments.
    const b2 = snap(t.c2);
    const got = run(t.c2, 'ingress', last.side.map((s) => s.bytes.subarray(OUTER_IP_UDP)), 11, 0, U1);
    expect(got.slots.every((s) => s.action === Action.Held)).toBe(true);
    expect(dropDelta(t.c2, b2)).toEqual({});
    expect(got.side.length).toBe(frags.length);
    const delivered = got.side.map((s) => {
      expect(s.action).toBe(Action.Tap);
      expect(s.target).toBe(t.appB0.index);
      expect(s.bytes[13]).toBe(0x00);
      const ip = s.bytes.subarray(14);
      expect(ip[8]).toBe(62);
      expect(internetChecksum(ip, 0, 20)).toBe(0);
      return ip;
    });
    expect(joinPayload(delivered)).toEqual(dgram.subarray(20));
    expect(t.c2.fragments.queues).toBe(0);
    expect(t.c1.fragments.queues).toBe(0);
  });

  it('without the policy: no fragment is delivered, the sender gets one port unreachable quoting the datagram', () => {
    const t = topology([]);
    const dgram = udpDatagram(A0, B0, size);
    const frags = fragmentsOf(dgram);
    const sent = run(t.c1, 'egress', frags.map((f) => frameOf(A0, f)), 10, t.appA0.index);
    expect(sent.side.length).toBe(frags.length);
    expect(sent.side[0]!.bytes[28]).toBe(0x08); // no tag: no G
    const b2 = snap(t.c2);
    const got = run(t.c2, 'ingress', sent.side.map((s) => s.bytes.subarray(OUTER_IP_UDP)), 11, 0, U1);
    expect(got.side.length).toBe(1);
    const err = got.side[0]!;
    expect(err.action).toBe(Action.Underlay);
    expect(err.target).toBe(U1);
    const icmp = err.bytes.subarray(50);
    expect(icmp[9]).toBe(1);
    expect(icmp[20]).toBe(3); // destination unreachable
    expect(icmp[21]).toBe(3); // port
    // The quoted header is the reassembled one: total length of the whole datagram, no MF.
    const q = icmp.subarray(28);
    expect((q[2]! << 8) | q[3]!).toBe(dgram.length);
    expect(q[6]! & 0x3f).toBe(0);
    expect(dropDelta(t.c2, b2)).toEqual({ 'policy-denied': 1 });
  });

  it('same cell: allowed fragments reach the neighbour container, denied ones are answered from 169.254.0.1', () => {
    const t = topology(POL);
    const dgram = udpDatagram(A0, B1, size);
    const frags = fragmentsOf(dgram);
    const r = run(t.c1, 'egress', frags.map((f) => frameOf(A0, f)).reverse(), 10, t.appA0.index);
    expect(r.side.length).toBe(frags.length);
    expect(r.side.every((s) => s.action === Action.Tap && s.target === t.appB1.index)).toBe(true);
    expect(joinPayload(r.side.map((s) => s.bytes.subarray(14)))).toEqual(dgram.subarray(20));
    expect(r.side.every((s) => s.bytes[14 + 8] === 63)).toBe(true);

    const d = topology([]);
    const denied = run(d.c1, 'egress', frags.map((f) => frameOf(A0, f)), 10, d.appA0.index);
    expect(denied.side.length).toBe(1);
    expect(denied.side[0]!.target).toBe(d.appA0.index);
    const ip = denied.side[0]!.bytes.subarray(14);
    expect(Array.from(ip.subarray(12, 16))).toEqual([169, 254, 0, 1]);
    expect([ip[20], ip[21]]).toEqual([3, 3]);
  });
});

describe('oversize packets without DF', () => {
  it('from a peer with a larger MTU: cut at the container MTU, as ip_fragment does; with DF: fragmentation needed back', () => {
    const t = topology(POL);
    const dgram = udpDatagram(A0, B0, 3000);
    dgram[8] = 63;
    dgram[10] = 0;
    dgram[11] = 0;
    const c = internetChecksum(dgram, 0, 20);
    dgram[10] = c >>> 8;
    dgram[11] = c & 0xff;
    const vx = vxlanPayload({ fromVtep: '10.255.1.0', toVtep: '10.255.2.0', gpid: TAG.appA, inner: dgram });
    const r = run(t.c2, 'ingress', [vx], 10, 0, U1);
    expect(r.slots[0]!.action).toBe(Action.Held);
    const want = fragmentsOf(dgram.slice(), MTU).map((f) => {
      f[8] = 62;
      f[10] = 0;
      f[11] = 0;
      const k = internetChecksum(f, 0, 20);
      f[10] = k >>> 8;
      f[11] = k & 0xff;
      return f;
    });
    expect(r.side.map((s) => Array.from(s.bytes.subarray(14)))).toEqual(want.map((w) => Array.from(w)));

    const df = ipPacket(A0, B0, { proto: 'udp', dport: 5000, payload: payloadOf(3000), dontFrag: true, ttl: 63 });
    const r2 = run(t.c2, 'ingress', [vxlanPayload({ fromVtep: '10.255.1.0', toVtep: '10.255.2.0', gpid: TAG.appA, inner: df })], 11, 0, U1);
    expect(r2.slots[0]!.action).toBe(Action.Underlay);
    const icmp = r2.slots[0]!.bytes.subarray(50);
    expect([icmp[20], icmp[21]]).toEqual([3, 4]);
    expect((icmp[26]! << 8) | icmp[27]!).toBe(MTU);
  });
});

describe('fragment limits', () => {
  it('a flood of never-completed fragments (random ids) holds at most the budget, is counted, and expires', () => {
    const t = topology(POL);
    const before = snap(t.c2);
    let seed = 7;
    const frames: Uint8Array[] = [];
    for (let k = 0; k < 3000; k++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const f = fragmentsOf(udpDatagram(B0, A0, 3000, seed >>> 16))[0]!;
      frames.push(vxlanPayload({ fromVtep: '10.255.1.0', toVtep: '10.255.2.0', gpid: TAG.appA, inner: fixSrc(f, A0, B0) }));
    }
    for (let k = 0; k < frames.length; k += 64) run(t.c2, 'ingress', frames.slice(k, k + 64), 10, 0, U1);
    const fr = t.c2.fragments;
    expect(fr.bytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    const d = dropDelta(t.c2, before);
    // 2,048 blocks of 2 KiB: the rest counted as fragment-memory (or a repeated id as duplicate).
    expect(fr.queues + (d['fragment-memory'] ?? 0) + (d['fragment-duplicate'] ?? 0)).toBe(3000);
    expect(d['fragment-memory']).toBeGreaterThan(800);
    t.c2.tick(10 + 31);
    expect(t.c2.fragments.queues).toBe(0);
    expect(t.c2.fragments.bytes).toBe(0);
    expect(dropDelta(t.c2, before)['fragment-timeout']).toBe(fr.queues);
  });

  it('fragment reasons in the drop table follow FragDrop', () => {
    const at = DROP_NAMES.indexOf('fragment-overlap');
    expect(at).toBe(Drop.FragmentOverlap);
    expect(DROP_NAMES.slice(at, at + FRAG_DROP_NAMES.length)).toEqual(FRAG_DROP_NAMES);
  });
});

/** Rewrite a fragment's source/destination (and checksum). */
function fixSrc(f: Uint8Array, src: string, dst: string): Uint8Array {
  const s = ipToU32(src);
  const d = ipToU32(dst);
  f.set([s >>> 24, (s >>> 16) & 0xff, (s >>> 8) & 0xff, s & 0xff, d >>> 24, (d >>> 16) & 0xff, (d >>> 8) & 0xff, d & 0xff], 12);
  f[10] = 0;
  f[11] = 0;
  const c = internetChecksum(f, 0, 20);
  f[10] = c >>> 8;
  f[11] = c & 0xff;
  return f;
}

describe('the outer header and the VXLAN header, as the kernel', () => {
  it('outer DS byte: the inner ECN bits, CE as ECT(0), no DSCP (ip_tunnel_ecn_encap)', () => {
    const t = topology(POL);
    const inner = [0x00, 0x01, 0x02, 0x03, 0xb8, 0xb9, 0xba, 0xbb];
    const outer = inner.map((tos) => {
      const p = ipPacket(A0, B0, { proto: 'udp', dport: 5000, payload: payloadOf(10) });
      p[1] = tos;
      p[10] = 0;
      p[11] = 0;
      const c = internetChecksum(p, 0, 20);
      p[10] = c >>> 8;
      p[11] = c & 0xff;
      const r = run(t.c1, 'egress', [frameOf(A0, p)], 10, t.appA0.index);
      expect(r.slots[0]!.action).toBe(Action.Underlay);
      expect(internetChecksum(r.slots[0]!.bytes, 0, 20)).toBe(0);
      return r.slots[0]!.bytes[1];
    });
    expect(outer).toEqual([0x00, 0x01, 0x02, 0x02, 0x00, 0x01, 0x02, 0x02]);
  });

  it('RFC 6040 at decapsulation, with the outer DS byte the socket reported: CE reaches ECT inner packets, CE over Not-ECT is dropped, ECT(1) over ECT(0) gives ECT(1)', () => {
    const t = topology(POL);
    const cases: [number, number, number | 'drop'][] = [
      [0x03, 0x02, 0x03],
      [0x03, 0xba, 0xbb],
      [0x03, 0x01, 0x03],
      [0x03, 0x00, 'drop'],
      [0x03, 0xb8, 'drop'],
      [0x01, 0x02, 0x01],
      [0x02, 0x00, 0x00],
      [0x00, 0x03, 0x03],
    ];
    for (const [outer, inner, want] of cases) {
      const p = ipPacket(A0, B0, { proto: 'udp', dport: 5000, payload: payloadOf(20), ttl: 63 });
      p[1] = inner;
      p[10] = 0;
      p[11] = 0;
      const c = internetChecksum(p, 0, 20);
      p[10] = c >>> 8;
      p[11] = c & 0xff;
      const b = new FrameBatch(1, BIG);
      b.push(vxlanPayload({ fromVtep: '10.255.1.0', toVtep: '10.255.2.0', gpid: TAG.appA, inner: p }), U1, 40000, outer);
      const before = snap(t.c2);
      t.c2.ingress(b, 10);
      if (want === 'drop') {
        expect(b.action[0], `outer ${outer} inner ${inner}`).toBe(Action.Drop);
        expect(dropDelta(t.c2, before)).toEqual({ 'ecn-ce-on-not-ect': 1 });
      } else {
        expect(b.action[0], `outer ${outer} inner ${inner}`).toBe(Action.Tap);
        const ip = b.output(0).subarray(14);
        expect(ip[1], `outer ${outer} inner ${inner}`).toBe(want);
        expect(internetChecksum(ip, 0, 20)).toBe(0);
      }
    }
  });

  it('a non-zero reserved byte after the VNI is dropped (vxlan_rcv), counted as bad-vxlan-reserved', () => {
    const t = topology(POL);
    const vx = vxlanPayload({ fromVtep: '10.255.1.0', toVtep: '10.255.2.0', gpid: TAG.appA, inner: ipPacket(A0, B0, { proto: 'udp', dport: 5000 }) });
    vx[7] = 1;
    const before = snap(t.c2);
    const r = run(t.c2, 'ingress', [vx], 10, 0, U1);
    expect(r.slots[0]!.action).toBe(Action.Drop);
    expect(dropDelta(t.c2, before)).toEqual({ 'bad-vxlan-reserved': 1 });
  });

  it('trace shows a fragment held for reassembly and holds nothing', () => {
    const t = topology(POL);
    const f = fragmentsOf(udpDatagram(A0, B0, 3000))[0]!;
    const r = t.c1.trace('egress', frameOf(A0, f), { port: t.appA0.index, now: 10 });
    expect(r.action).toBe('held');
    expect(r.steps.find((s) => s.kind === 'fragment')).toMatchObject({ kind: 'fragment', offset: 0, more: true, outcome: 'held' });
    expect(t.c1.fragments.queues).toBe(0);
  });
});
