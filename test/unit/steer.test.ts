// The steering hash's TypeScript reference (src/dataplane/steer.ts) on real
// packet bytes built with the wire emitters: symmetric, TCP ports count, UDP
// ports do not, fragments go by addresses, ICMP errors go where the flow they
// quote goes, not IPv4 -> 0, the tuple variant agrees with the frame variant.
// The kernel programs are held to the same function by test/e2e/steer.test.ts.
import { describe, expect, it } from 'vitest';
import { steerFold, steerHashOfIpv4, steerWorkerOfFlow, steerWorkerOfFrame } from '../../src/dataplane/steer.js';
import { ipToU32, u32ToIp } from '../../src/util/ip.js';
import { ipPacket, type L4 } from '../helpers/packets.js';
import { asFragment, icmpErrorPacket, rng } from '../helpers/packets-extra.js';

const TCP = 6;
const UDP = 17;
const ICMP = 1;

/** An Ethernet frame around an IPv4 packet (any MACs: the hash never reads them). */
function frame(ip: Uint8Array, etherType = 0x0800): Uint8Array {
  const f = new Uint8Array(14 + ip.length);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, etherType >> 8, etherType & 255], 0);
  f.set(ip, 14);
  return f;
}
function worker(ip: Uint8Array, n: number): number {
  const f = frame(ip);
  return steerWorkerOfFrame(f, 0, f.length, n);
}
function hashOf(ip: Uint8Array): number {
  return steerHashOfIpv4(ip, 0, ip.length);
}
const tcp = (sport: number, dport: number, flags = 0x02): L4 => ({ proto: 'tcp', sport, dport, flags });
const udp = (sport: number, dport: number): L4 => ({ proto: 'udp', sport, dport, payload: new Uint8Array(12) });

const C = '10.255.0.1';
const R = '10.255.1.2';
const ROUTER = '10.255.254.1';

describe('steerHashOfIpv4 / steerWorkerOfFrame', () => {
  it('known answers: h = saddr ^ daddr ^ sport ^ dport for TCP; worker = (h * 0x9E3779B1 >>> 16) % n', () => {
    const p = ipPacket(C, R, tcp(1234, 80));
    expect(hashOf(p)).toBe(0x0aff0001 ^ 0x0aff0102 ^ 1234 ^ 80); // 0x581
    expect([2, 3, 7, 64].map((n) => worker(p, n))).toEqual([0, 0, 2, 20]);
    const u = ipPacket(C, R, udp(1234, 80));
    expect(hashOf(u)).toBe(0x103);
    expect([2, 3, 7, 64].map((n) => worker(u, n))).toEqual([0, 2, 6, 32]);
    expect(steerFold(0x581, 64)).toBe(20);
    // Big values: every bit of the multiply and the shift count.
    const big = ipPacket('192.168.7.9', '10.255.3.200', tcp(51234, 443));
    expect(hashOf(big)).toBe(0xca57cd58);
    expect(steerFold(0xca57cd58, 65536)).toBe(54443);
    expect([2, 3, 7, 64].map((n) => worker(big, n))).toEqual([1, 2, 4, 43]);
    const bigUdp = ipPacket('192.168.7.9', '10.255.3.200', udp(51234, 443));
    expect(hashOf(bigUdp)).toBe(0xca5704c1);
    expect([2, 3, 7, 64].map((n) => worker(bigUdp, n))).toEqual([0, 2, 0, 32]);
  });

  it('is symmetric: a reply (addresses and ports swapped) goes to the same worker, for TCP, UDP and ICMP echo', () => {
    const r = rng(1);
    for (let i = 0; i < 300; i++) {
      const a = (0x0aff0000 | Math.floor(r() * 65536)) >>> 0;
      const b = (0x0aff0000 | Math.floor(r() * 65536)) >>> 0;
      const sp = 1 + Math.floor(r() * 65535);
      const dp = 1 + Math.floor(r() * 65535);
      for (const n of [2, 3, 7]) {
        expect(worker(ipPacket(b, a, tcp(dp, sp, 0x12)), n)).toBe(worker(ipPacket(a, b, tcp(sp, dp)), n));
        expect(worker(ipPacket(b, a, udp(dp, sp)), n)).toBe(worker(ipPacket(a, b, udp(sp, dp)), n));
        expect(worker(ipPacket(b, a, { proto: 'icmp', icmpType: 0 }), n)).toBe(worker(ipPacket(a, b, { proto: 'icmp', icmpType: 8 }), n));
      }
    }
  });

  it('TCP ports count: same addresses, other ports -> another h, and over many ports every worker is used', () => {
    const seen = new Set<number>();
    for (let port = 1000; port < 1100; port++) {
      const p = ipPacket(C, R, tcp(port, 443));
      expect(hashOf(p)).toBe((ipToU32(C) ^ ipToU32(R) ^ port ^ 443) >>> 0);
      seen.add(worker(p, 7));
    }
    expect(seen.size).toBe(7);
  });

  it('UDP ports do not count: every port pair of one address pair has h = saddr ^ daddr and one worker', () => {
    const want = worker(ipPacket(C, R, udp(1, 1)), 7);
    for (let port = 1000; port < 1100; port++) {
      const p = ipPacket(C, R, udp(port, 53 + port));
      expect(hashOf(p)).toBe((ipToU32(C) ^ ipToU32(R)) >>> 0);
      expect(worker(p, 7)).toBe(want);
    }
  });

  it('fragments (MF set or an offset) go by addresses only, for TCP too; a UDP flow stays on one worker', () => {
    const addrOnly = (ipToU32(C) ^ ipToU32(R)) >>> 0;
    const t = ipPacket(C, R, tcp(5555, 80));
    expect(hashOf(t)).not.toBe(addrOnly);
    expect(hashOf(asFragment(t, 0x2000))).toBe(addrOnly); // first fragment: has ports, still by addresses
    expect(hashOf(asFragment(t, 0x0006))).toBe(addrOnly); // a later one
    expect(hashOf(asFragment(t, 0x4000))).toBe(hashOf(t)); // DF alone is not a fragment
    const u = ipPacket(C, R, udp(5555, 80));
    for (const n of [2, 3, 7, 64]) {
      expect(worker(asFragment(u, 0x2000), n)).toBe(worker(u, n));
      expect(worker(asFragment(u, 0x00b9), n)).toBe(worker(u, n));
      expect(worker(asFragment(t, 0x2000), n)).toBe(steerFold(addrOnly, n));
    }
  });

  it('an ICMP error quoting a TCP segment goes to that TCP flow (from the peer or from a router on the way)', () => {
    const r = rng(2);
    for (let i = 0; i < 200; i++) {
      const sp = 1 + Math.floor(r() * 65535);
      const dp = 1 + Math.floor(r() * 65535);
      const seg = ipPacket(C, R, tcp(sp, dp)); // the container's segment
      const fromPeer = icmpErrorPacket(R, C, 3, 3, seg); // port unreachable
      const fromRouter = icmpErrorPacket(ROUTER, C, 11, 0, seg); // time exceeded
      const paramProblem = icmpErrorPacket(ROUTER, C, 12, 0, seg);
      expect(hashOf(fromPeer)).toBe(hashOf(seg));
      expect(hashOf(fromRouter)).toBe(hashOf(seg));
      for (const n of [2, 3, 7]) {
        const w = worker(seg, n);
        expect(worker(fromPeer, n)).toBe(w);
        expect(worker(fromRouter, n)).toBe(w);
        expect(worker(paramProblem, n)).toBe(w);
        // and the reply direction of the flow agrees
        expect(worker(ipPacket(R, C, tcp(dp, sp, 0x12)), n)).toBe(w);
      }
    }
  });

  it('an ICMP error quoting UDP goes to the UDP flow (addresses of the quoted header, no ports)', () => {
    const dgram = ipPacket(R, C, udp(53, 40000)); // the peer's datagram to the container
    const err = icmpErrorPacket(C, R, 3, 3, dgram); // the container's port unreachable
    const fromRouter = icmpErrorPacket(ROUTER, R, 11, 0, dgram);
    expect(hashOf(err)).toBe((ipToU32(R) ^ ipToU32(C)) >>> 0);
    expect(hashOf(fromRouter)).toBe((ipToU32(R) ^ ipToU32(C)) >>> 0);
    for (const n of [2, 3, 7]) expect(worker(fromRouter, n)).toBe(worker(dgram, n));
  });

  it('an ICMP error quoting a TCP fragment goes by the quoted addresses only; other ICMP by the outer addresses', () => {
    const frag = asFragment(ipPacket(C, R, tcp(7777, 80)), 0x2000);
    expect(hashOf(icmpErrorPacket(ROUTER, C, 11, 1, frag))).toBe((ipToU32(C) ^ ipToU32(R)) >>> 0);
    const echo = ipPacket(ROUTER, C, { proto: 'icmp', icmpType: 8 });
    expect(hashOf(echo)).toBe((ipToU32(ROUTER) ^ ipToU32(C)) >>> 0);
    // An ICMP error that is itself a fragment is not looked into.
    const err = asFragment(icmpErrorPacket(ROUTER, C, 3, 4, ipPacket(C, R, tcp(1, 2))), 0x2000);
    expect(hashOf(err)).toBe((ipToU32(ROUTER) ^ ipToU32(C)) >>> 0);
  });

  it('not IPv4 (ARP, IPv6) -> worker 0; cut short where the kernel programs would read -> worker 0', () => {
    const p = ipPacket(C, R, tcp(1234, 80));
    const arp = frame(p, 0x0806);
    const v6 = frame(p, 0x86dd);
    for (const n of [2, 3, 7, 64]) {
      expect(steerWorkerOfFrame(arp, 0, arp.length, n)).toBe(0);
      expect(steerWorkerOfFrame(v6, 0, v6.length, n)).toBe(0);
    }
    // Pick a flow whose worker is not 0, then cut its frame before the ports.
    let q = p;
    for (let port = 1; worker(q, 7) === 0; port++) q = ipPacket(C, R, tcp(port, 80));
    const f = frame(q);
    expect(steerWorkerOfFrame(f, 0, f.length, 7)).not.toBe(0);
    expect(steerWorkerOfFrame(f, 0, 14 + 20 + 3, 7)).toBe(0);
    expect(steerWorkerOfFrame(f, 0, 13, 7)).toBe(0);
    expect(steerHashOfIpv4(q, 0, 19)).toBe(-1);
    // A frame at an offset in a bigger buffer reads the same.
    const big = new Uint8Array(f.length + 100);
    big.set(f, 37);
    expect(steerWorkerOfFrame(big, 37, f.length, 7)).toBe(worker(q, 7));
  });

  it('n = 1 -> 0 always; results are < n (n = 2, 3, 7) and every worker is used', () => {
    const r = rng(3);
    const used = new Map<number, Set<number>>([[2, new Set()], [3, new Set()], [7, new Set()]]);
    for (let i = 0; i < 500; i++) {
      const a = Math.floor(r() * 2 ** 32) >>> 0;
      const b = Math.floor(r() * 2 ** 32) >>> 0;
      const p = ipPacket(a, b, i % 2 ? tcp(1 + (i % 60000), 443) : udp(i, 53));
      expect(worker(p, 1)).toBe(0);
      expect(steerWorkerOfFlow(a, b, TCP, 1, 2, 1)).toBe(0);
      for (const [n, set] of used) {
        const w = worker(p, n);
        expect(w).toBeGreaterThanOrEqual(0);
        expect(w).toBeLessThan(n);
        set.add(w);
      }
    }
    for (const [n, set] of used) expect(set.size).toBe(n);
  });
});

describe('steerWorkerOfFlow', () => {
  it('equals the frame variant for unfragmented packets of the flow, in both directions, over many random flows', () => {
    const r = rng(4);
    for (let i = 0; i < 2000; i++) {
      const a = Math.floor(r() * 2 ** 32) >>> 0;
      const b = Math.floor(r() * 2 ** 32) >>> 0;
      const sp = Math.floor(r() * 65536);
      const dp = Math.floor(r() * 65536);
      const n = 2 + Math.floor(r() * 63);
      const kind = i % 3;
      const proto = kind === 0 ? TCP : kind === 1 ? UDP : ICMP;
      const fwd = kind === 0 ? ipPacket(a, b, tcp(sp, dp)) : kind === 1 ? ipPacket(a, b, udp(sp, dp)) : ipPacket(a, b, { proto: 'icmp', icmpType: 8 });
      const rev = kind === 0 ? ipPacket(b, a, tcp(dp, sp, 0x12)) : kind === 1 ? ipPacket(b, a, udp(dp, sp)) : ipPacket(b, a, { proto: 'icmp', icmpType: 0 });
      const want = steerWorkerOfFlow(a, b, proto, sp, dp, n);
      expect(worker(fwd, n), `${u32ToIp(a)}:${sp} -> ${u32ToIp(b)}:${dp} proto ${proto} n ${n}`).toBe(want);
      expect(worker(rev, n)).toBe(want);
      expect(steerWorkerOfFlow(b, a, proto, dp, sp, n)).toBe(want);
    }
  });

  it('ignores the ports of UDP and ICMP tuples, not of TCP ones', () => {
    const a = ipToU32(C);
    const b = ipToU32(R);
    for (const n of [3, 7, 64]) {
      expect(steerWorkerOfFlow(a, b, UDP, 1, 2, n)).toBe(steerWorkerOfFlow(a, b, UDP, 40000, 53, n));
      expect(steerWorkerOfFlow(a, b, ICMP, 1, 2, n)).toBe(steerWorkerOfFlow(a, b, UDP, 0, 0, n));
    }
    const ws = new Set<number>();
    for (let p = 1; p < 200; p++) ws.add(steerWorkerOfFlow(a, b, TCP, p, 80, 7));
    expect(ws.size).toBe(7);
  });
});
