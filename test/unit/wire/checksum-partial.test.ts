// Checksums a Linux sender left for the NIC (CHECKSUM_PARTIAL): the field
// holds only fold16(pseudo-header sum), as __tcp_v4_send_check and
// udp4_hwcsum write it. completePartialChecksum finishes those and leaves
// every other packet alone; the ingress pipeline does it before delivering,
// and a packet with a genuinely wrong checksum is delivered unchanged (the
// container's stack drops it).
import { describe, expect, it } from 'vitest';
import { Action } from '../../../src/dataplane/batch.js';
import { STAT_NAMES } from '../../../src/dataplane/counters.js';
import { completePartialChecksum, onesComplementSum, pseudoHeaderSum, referenceChecksum } from '../../../src/wire/checksum.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { ipPacket, vxlanPayload, type L4 } from '../../helpers/packets.js';
import { A0, B0, L1, L2, TAG, U2, policy, runIngress, snap, statDelta, topology } from '../../helpers/packets-extra.js';

const SRC = '10.255.2.2';
const DST = '10.255.1.2';

/** Offset of the L4 checksum field in an IPv4 packet with a 20-byte header. */
const FIELD = { tcp: 20 + 16, udp: 20 + 6 } as const;

function fold16(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The packet as a kernel with TX checksum offload hands it on: the field holds fold16(pseudo-header). */
function partial(pkt: Uint8Array, proto: 'tcp' | 'udp'): Uint8Array {
  const p = pkt.slice();
  const len = p.length - 20;
  const v = fold16(pseudoHeaderSum(ipToU32(SRC), ipToU32(DST), proto === 'tcp' ? 6 : 17, len));
  p[FIELD[proto]] = v >>> 8;
  p[FIELD[proto] + 1] = v & 0xff;
  return p;
}

/** Does the L4 checksum of an IPv4 packet (20-byte header) verify? Checked with the slow reference. */
function l4Valid(pkt: Uint8Array, proto: 'tcp' | 'udp'): boolean {
  const s = ipToU32(SRC);
  const d = ipToU32(DST);
  const len = pkt.length - 20;
  const words = [s >>> 16, s & 0xffff, d >>> 16, d & 0xffff, proto === 'tcp' ? 6 : 17, len];
  return referenceChecksum(pkt.subarray(20), words) === 0;
}

const field = (p: Uint8Array, proto: 'tcp' | 'udp') => (p[FIELD[proto]]! << 8) | p[FIELD[proto] + 1]!;
const payload = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('completePartialChecksum', () => {
  const cases: [string, 'tcp' | 'udp', L4][] = [
    ['TCP SYN', 'tcp', { proto: 'tcp', sport: 40000, dport: 8080, flags: 0x02 }],
    ['TCP with 1000 bytes', 'tcp', { proto: 'tcp', sport: 40001, dport: 8080, flags: 0x18, payload: payload(1000, 7) }],
    ['TCP with an odd length', 'tcp', { proto: 'tcp', sport: 40002, dport: 8080, flags: 0x18, payload: payload(333, 3) }],
    ['UDP with 100 bytes', 'udp', { proto: 'udp', sport: 5353, dport: 5000, payload: payload(100, 1) }],
    ['UDP with an odd length', 'udp', { proto: 'udp', sport: 5354, dport: 5000, payload: payload(77, 9) }],
  ];

  it.each(cases)('%s: a partial checksum is finished to the value the sender would have computed', (_n, proto, l4) => {
    const good = ipPacket(SRC, DST, l4);
    expect(l4Valid(good, proto)).toBe(true);
    const p = partial(good, proto);
    expect(l4Valid(p, proto)).toBe(false); // what tcpdump calls "incorrect"
    expect(completePartialChecksum(p, 20, p.length - 20, proto === 'tcp' ? 6 : 17, ipToU32(SRC), ipToU32(DST))).toBe(true);
    expect(l4Valid(p, proto)).toBe(true);
    expect(Array.from(p)).toEqual(Array.from(good));
  });

  it.each(cases)('%s: a correct checksum is left as it is', (_n, proto, l4) => {
    const good = ipPacket(SRC, DST, l4);
    const p = good.slice();
    completePartialChecksum(p, 20, p.length - 20, proto === 'tcp' ? 6 : 17, ipToU32(SRC), ipToU32(DST));
    expect(Array.from(p)).toEqual(Array.from(good));
  });

  it.each(cases)('%s: a wrong checksum (not the pseudo-header sum) stays wrong', (_n, proto, l4) => {
    const bad = ipPacket(SRC, DST, l4);
    bad[FIELD[proto] + 1] ^= 0x5a;
    const p = bad.slice();
    expect(completePartialChecksum(p, 20, p.length - 20, proto === 'tcp' ? 6 : 17, ipToU32(SRC), ipToU32(DST))).toBe(false);
    expect(Array.from(p)).toEqual(Array.from(bad));
    expect(l4Valid(p, proto)).toBe(false);
  });

  it('a damaged payload under a partial field is finished over the damaged bytes (only the bytes tell; the outer UDP checksum guards the wire)', () => {
    const good = ipPacket(SRC, DST, cases[1]![2]);
    const p = partial(good, 'tcp');
    p[100] ^= 0xff;
    expect(completePartialChecksum(p, 20, p.length - 20, 6, ipToU32(SRC), ipToU32(DST))).toBe(true);
    expect(l4Valid(p, 'tcp')).toBe(true);
  });

  it('a correct checksum that happens to equal the pseudo-header sum is rewritten to itself', () => {
    // Find a payload whose correct checksum equals fold16(pseudo): vary two bytes until it does.
    const s = ipToU32(SRC);
    const d = ipToU32(DST);
    const base = ipPacket(SRC, DST, { proto: 'udp', sport: 1, dport: 2, payload: new Uint8Array(16) });
    const target = fold16(pseudoHeaderSum(s, d, 17, base.length - 20));
    let found: Uint8Array | undefined;
    for (let w = 0; w < 0x10000 && !found; w++) {
      const p = base.slice();
      p[28] = w >>> 8;
      p[29] = w & 0xff;
      p[26] = 0;
      p[27] = 0;
      const c = ~fold16(onesComplementSum(p, 20, p.length - 20, pseudoHeaderSum(s, d, 17, p.length - 20))) & 0xffff;
      if (c === target) {
        p[26] = c >>> 8;
        p[27] = c & 0xff;
        found = p;
      }
    }
    expect(found).toBeDefined();
    expect(l4Valid(found!, 'udp')).toBe(true);
    const p = found!.slice();
    completePartialChecksum(p, 20, p.length - 20, 17, s, d);
    expect(Array.from(p)).toEqual(Array.from(found!));
  });

  it('UDP without a checksum (0) is left alone; ICMP and short headers are not touched', () => {
    const p = ipPacket(SRC, DST, { proto: 'udp', payload: payload(10, 2) });
    p[26] = 0;
    p[27] = 0;
    expect(completePartialChecksum(p, 20, p.length - 20, 17, ipToU32(SRC), ipToU32(DST))).toBe(false);
    expect(field(p, 'udp')).toBe(0);
    const icmp = ipPacket(SRC, DST, { proto: 'icmp' });
    const copy = icmp.slice();
    expect(completePartialChecksum(icmp, 20, icmp.length - 20, 1, ipToU32(SRC), ipToU32(DST))).toBe(false);
    expect(Array.from(icmp)).toEqual(Array.from(copy));
    expect(completePartialChecksum(new Uint8Array(30), 20, 10, 6, 1, 2)).toBe(false);
  });

  it('works on a subarray at a non-zero byteOffset', () => {
    const good = ipPacket(SRC, DST, cases[3]![2]);
    const big = new Uint8Array(good.length + 13);
    big.set(partial(good, 'udp'), 13);
    const view = big.subarray(5);
    expect(completePartialChecksum(view, 8 + 20, good.length - 20, 17, ipToU32(SRC), ipToU32(DST))).toBe(true);
    expect(Array.from(big.subarray(13))).toEqual(Array.from(good));
  });
});

describe('ingress from a kernel peer with TX checksum offload', () => {
  const POLICIES = [policy('appB', 'appA', 'tcp', 8080), policy('appB', 'appA', 'udp', 5000)];
  const fromB = (inner: Uint8Array) => vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner });
  const innerIp = (out: Uint8Array) => out.subarray(14);

  it.each([
    ['TCP SYN', 'tcp' as const, { proto: 'tcp' as const, sport: 40000, dport: 8080, flags: 0x02 }],
    ['UDP', 'udp' as const, { proto: 'udp' as const, sport: 5353, dport: 5000, payload: payload(200, 5) }],
  ])('%s with a partial checksum is delivered finished, and counted as checksum-completed', (_n, proto, l4) => {
    const t = topology(POLICIES);
    expect(SRC).toBe(B0);
    expect(DST).toBe(A0);
    const good = ipPacket(SRC, DST, l4);
    const before = snap(t.c1);
    const out = runIngress(t.c1, fromB(partial(good, proto)), U2, 1);
    expect(out.action).toBe(Action.Tap);
    expect(out.target).toBe(t.appA0.index);
    const ip = innerIp(out.bytes);
    expect(l4Valid(ip, proto)).toBe(true);
    expect(field(ip, proto)).toBe(field(good, proto));
    expect(statDelta(t.c1, before)['checksum-completed']).toBe(1);
    expect(STAT_NAMES).toContain('checksum-completed');
  });

  it.each([
    ['TCP SYN', 'tcp' as const, { proto: 'tcp' as const, sport: 40000, dport: 8080, flags: 0x02 }],
    ['UDP', 'udp' as const, { proto: 'udp' as const, sport: 5353, dport: 5000, payload: payload(200, 5) }],
  ])('%s with a wrong checksum is delivered unchanged (the container drops it), not "completed"', (_n, proto, l4) => {
    const t = topology(POLICIES);
    const bad = ipPacket(SRC, DST, l4);
    bad[FIELD[proto]] ^= 0x11;
    const before = snap(t.c1);
    const out = runIngress(t.c1, fromB(bad), U2, 1);
    expect(out.action).toBe(Action.Tap);
    const ip = innerIp(out.bytes);
    expect(field(ip, proto)).toBe(field(bad, proto));
    expect(l4Valid(ip, proto)).toBe(false);
    expect(statDelta(t.c1, before)['checksum-completed']).toBeUndefined();
  });

  it('the leases in the topology are the ones these addresses belong to', () => {
    expect((ipToU32(SRC) & 0xffffff00) >>> 0).toBe(L2);
    expect((ipToU32(DST) & 0xffffff00) >>> 0).toBe(L1);
  });
});
