import { describe, expect, it } from 'vitest';
import { WireError } from '../../../src/wire/errors.js';
import { UDP_HEADER_LEN, UdpView, emitUdp, parseUdp, udpBufferLen } from '../../../src/wire/udp.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { seedBytes } from '../../vectors/seed002.js';

// The outer UDP datagram of seed 002: 36821 → 4789, length 107, checksum 0 (kernel of the time sent none).
const FRAME = seedBytes('SRC_HOST_ETH0');
const DGRAM = FRAME.slice(34, 141);
const HEADER = DGRAM.slice(0, 8);
const SRC = ipToU32('10.0.16.16');
const DST = ipToU32('10.0.32.14');
const REPR = { srcPort: 36821, dstPort: 4789, payloadLen: 99 };

describe('udp', () => {
  it('deconstruct', () => {
    const big = new Uint8Array(DGRAM.length + 40);
    big.set(DGRAM, 30);
    const v = new UdpView().wrap(big.subarray(10), 20, DGRAM.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.srcPort).toBe(36821);
    expect(v.dstPort).toBe(4789);
    expect(v.length).toBe(107);
    expect(v.checksum).toBe(0);
    expect(v.payloadOffset).toBe(28);
    expect(v.payloadLen).toBe(99);
    expect(v.verifyChecksum(SRC, DST)).toBe(true); // 0 = none sent (RFC 768)
  });

  it('construct', () => {
    const buf = new Uint8Array(12).fill(0xa5);
    const v = new UdpView().wrap(buf, 2, 8);
    v.srcPort = 36821;
    v.dstPort = 4789;
    v.length = 107;
    v.checksum = 0;
    expect(Array.from(buf.subarray(2, 10))).toEqual(Array.from(HEADER));
    expect([buf[0], buf[1], buf[10], buf[11]]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
  });

  it('parse', () => {
    expect(parseUdp(new UdpView().wrap(DGRAM, 0, DGRAM.length))).toEqual(REPR);
  });

  it('emit (without checksum, as the seed’s kernel did)', () => {
    const buf = DGRAM.slice();
    buf.fill(0xa5, 0, 8);
    expect(emitUdp(REPR, buf, 0, SRC, DST, false)).toBe(UDP_HEADER_LEN);
    expect(buf).toEqual(DGRAM);
    expect(udpBufferLen(REPR)).toBe(107);
  });

  it('emit with checksum: fillChecksum, verifyChecksum and emitUdp agree; a flipped bit fails', () => {
    const buf = DGRAM.slice();
    emitUdp(REPR, buf, 0, SRC, DST);
    const v = new UdpView().wrap(buf, 0, buf.length);
    const c = v.checksum;
    expect(c).not.toBe(0);
    expect(v.verifyChecksum(SRC, DST)).toBe(true);
    expect(v.verifyChecksum(SRC, DST + 1)).toBe(false);
    v.checksum = 0x1234;
    v.fillChecksum(SRC, DST);
    expect(v.checksum).toBe(c);
    buf[50] ^= 1;
    expect(v.verifyChecksum(SRC, DST)).toBe(false);
  });

  it('a computed checksum of 0 is sent as 0xffff (RFC 768)', () => {
    // Choose the last data word so that the sum folds to 0xffff → checksum 0.
    const buf = new Uint8Array(10);
    const v = new UdpView().wrap(buf, 0, 10);
    v.srcPort = 1;
    v.dstPort = 2;
    v.length = 10;
    const c = v.computeChecksum(SRC, DST);
    // Adding the computed checksum as the data word makes the complement 0.
    buf[8] = c >>> 8;
    buf[9] = c & 0xff;
    v.fillChecksum(SRC, DST);
    expect(v.checksum).toBe(0xffff);
    expect(v.verifyChecksum(SRC, DST)).toBe(true);
  });

  describe('malformed', () => {
    const v = new UdpView();
    it('truncated', () => {
      expect(v.wrap(DGRAM, 0, 7).check()).toBe(WireError.Truncated);
    });
    it('length field longer than the datagram', () => {
      expect(v.wrap(DGRAM, 0, 106).check()).toBe(WireError.BadLength);
    });
    it('length field below 8', () => {
      const b = DGRAM.slice();
      b[4] = 0;
      b[5] = 7;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.BadLength);
      expect(() => parseUdp(v)).toThrow(/UDP: UDP length field/);
    });
  });
});
