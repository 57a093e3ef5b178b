import { describe, expect, it } from 'vitest';
import { copyBytes, fragmentCount, fragmentPayloadStep, nopUncopiedOptions, writeFragment } from '../../../src/dataplane/fragment-out.js';
import { Ipv4View, emitIpv4 } from '../../../src/wire/ipv4.js';
import { WireError } from '../../../src/wire/errors.js';
import { foldChecksum, onesComplementSum, pseudoHeaderSum, referenceChecksum } from '../../../src/wire/checksum.js';
import { inputs, outputs, ROUTER_MTU } from '../../vectors/kernel-fragments.js';

/**
 * What the router does before fragmenting a forwarded packet: TTL - 1, and —
 * for a whole UDP datagram that crossed the sender's veth with a partial
 * checksum (CHECKSUM_PARTIAL: tcpdump saw only the pseudo-header sum) —
 * complete the UDP checksum (skb_checksum_help in ip_do_fragment).
 */
function forwarded(p: Uint8Array): Uint8Array {
  const c = p.slice();
  const v = new Ipv4View().wrap(c, 0, c.length);
  v.decrementTtl();
  if (!v.isFragment && v.protocol === 17) {
    const u = v.payloadOffset;
    c[u + 6] = 0;
    c[u + 7] = 0;
    const sum = onesComplementSum(c, u, v.payloadLen, pseudoHeaderSum(v.srcAddr, v.dstAddr, 17, v.payloadLen));
    const k = foldChecksum(sum) || 0xffff;
    c[u + 6] = k >>> 8;
    c[u + 7] = k & 0xff;
  }
  return c;
}

function fragmentAll(p: Uint8Array, mtu: number, outOff = 0): Uint8Array[] {
  const n = fragmentCount(p, 0, mtu);
  const res: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const out = new Uint8Array(outOff + mtu).fill(0xa5);
    const len = writeFragment(p, 0, mtu, i, out, outOff);
    res.push(out.slice(outOff, outOff + len));
  }
  return res;
}

describe('fragment-out: byte for byte what a Linux 6.18 router sends (ip_do_fragment)', () => {
  it('every captured input fragments into exactly the captured outputs, in order (ids included)', () => {
    const ours: Uint8Array[] = [];
    for (const p of inputs) ours.push(...fragmentAll(forwarded(p), ROUTER_MTU));
    expect(ours.length).toBe(outputs.length);
    for (let i = 0; i < outputs.length; i++) {
      expect(Buffer.from(ours[i]!).toString('hex'), `fragment ${i}`).toBe(Buffer.from(outputs[i]!).toString('hex'));
    }
  });

  it('counts: 3,000-byte datagram → 3 fragments, 8,996-byte first fragment with MF → 7, the 52-byte last one fits', () => {
    expect(inputs.map((p) => fragmentCount(p, 0, ROUTER_MTU))).toEqual([3, 7, 1, 3, 7, 1]);
  });

  it('writes at a non-zero offset inside a reused, dirty slab', () => {
    const p = forwarded(inputs[3]!);
    const got = fragmentAll(p, ROUTER_MTU, 37);
    expect(got.map((f) => Buffer.from(f).toString('hex'))).toEqual(outputs.slice(11, 14).map((f) => Buffer.from(f).toString('hex')));
  });

  it('every fragment is a valid IPv4 packet with a correct checksum, offsets a multiple of 8, payload reassembling to the original', () => {
    const p = forwarded(inputs[0]!);
    const frags = fragmentAll(p, 600);
    const v = new Ipv4View();
    const payload = new Uint8Array(p.length - 20);
    let covered = 0;
    for (const [i, f] of frags.entries()) {
      v.wrap(f, 0, f.length);
      expect(v.check()).toBe(WireError.None);
      expect(referenceChecksum(f.subarray(0, 20))).toBe(0);
      expect(v.fragOffset % 8).toBe(0);
      expect(f.length).toBeLessThanOrEqual(600);
      expect(v.moreFrags).toBe(i < frags.length - 1);
      payload.set(f.subarray(20), v.fragOffset);
      covered += f.length - 20;
    }
    expect(covered).toBe(p.length - 20);
    expect(Buffer.from(payload).equals(Buffer.from(p.subarray(20)))).toBe(true);
  });

  it('keeps DF when asked to fragment a DF packet (the caller decides; ip_frag_next copies DF)', () => {
    const p = new Uint8Array(1000);
    emitIpv4({ src: 1, dst: 2, protocol: 17, ttl: 9, payloadLen: 980, dscpEcn: 0, ident: 7, dontFrag: true, moreFrags: false, fragOffset: 0, options: new Uint8Array(0) }, p, 0);
    const frags = fragmentAll(p, 576);
    const v = new Ipv4View();
    expect(frags.every((f) => v.wrap(f, 0, f.length).dontFrag)).toBe(true);
  });

  it('refuses an MTU with less than 8 bytes of room after the header', () => {
    const p = forwarded(inputs[3]!); // 32-byte header
    expect(fragmentPayloadStep(32, 39)).toBe(0);
    expect(fragmentCount(p, 0, 39)).toBe(0);
    expect(fragmentCount(p, 0, 40)).toBe(Math.ceil((p.length - 32) / 8));
  });

  it('ip_options_fragment: non-copied options become NOPs, copied ones stay, stops at EOL or a bad length', () => {
    const opts = Uint8Array.from([0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 1, 0x44, 4, 5, 0]);
    nopUncopiedOptions(opts, 0, opts.length);
    expect([...opts]).toEqual([0x94, 4, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    const eol = Uint8Array.from([0x07, 3, 4, 0, 0x44, 4, 5, 0]);
    nopUncopiedOptions(eol, 0, eol.length);
    expect([...eol]).toEqual([1, 1, 1, 0, 0x44, 4, 5, 0]);
    const bad = Uint8Array.from([0x44, 9, 5, 0]);
    nopUncopiedOptions(bad, 0, bad.length);
    expect([...bad]).toEqual([0x44, 9, 5, 0]);
  });

  it('copyBytes honours byteOffset on both sides (pooled Buffers, subarrays) and copies nothing for n <= 0', () => {
    const pool = Buffer.alloc(64);
    for (let i = 0; i < 64; i++) pool[i] = i;
    const src = pool.subarray(10, 40); // byteOffset 10
    const backing = new Uint8Array(50).fill(0xa5);
    const dst = backing.subarray(5); // byteOffset 5
    copyBytes(dst, 3, src, 2, 4);
    expect(backing[7]).toBe(0xa5);
    expect([...backing.subarray(8, 12)]).toEqual([12, 13, 14, 15]);
    expect(backing[12]).toBe(0xa5);
    copyBytes(dst, 0, src, 0, 0);
    expect(backing[5]).toBe(0xa5);
  });
});
