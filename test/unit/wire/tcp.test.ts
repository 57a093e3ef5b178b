import { describe, expect, it } from 'vitest';
import { WireError } from '../../../src/wire/errors.js';
import { TCP_HEADER_LEN, TcpFlags, TcpView, emitTcp, parseTcp, tcpBufferLen } from '../../../src/wire/tcp.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { seedBytes } from '../../vectors/seed002.js';

// Seed 002's segment as delivered: 56766 → 7777, [P.], seq 2356689519, ack 2161316842, win 215,
// options [nop,nop,TS val 530639 ecr 679117], 25 bytes, checksum 0x0fc9.
const FRAME = seedBytes('DST_CONTAINER_ETH0');
const SEG = FRAME.slice(34);
const HEADER = SEG.slice(0, 32);
const SRC = ipToU32('10.255.99.3');
const DST = ipToU32('10.255.132.2');
const OPTIONS = Uint8Array.of(1, 1, 8, 10, 0x00, 0x08, 0x18, 0xcf, 0x00, 0x0a, 0x5c, 0xcd);
const REPR = {
  srcPort: 56766,
  dstPort: 7777,
  seq: 2356689519,
  ack: 2161316842,
  flags: TcpFlags.Psh | TcpFlags.Ack,
  window: 215,
  urgent: 0,
  options: OPTIONS,
  payloadLen: 25,
};

describe('tcp', () => {
  it('deconstruct', () => {
    const big = new Uint8Array(SEG.length + 9);
    big.set(SEG, 9);
    const v = new TcpView().wrap(big.subarray(4), 5, SEG.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.srcPort).toBe(56766);
    expect(v.dstPort).toBe(7777);
    expect(v.seq).toBe(2356689519);
    expect(v.ack).toBe(2161316842);
    expect(v.headerLen).toBe(32);
    expect(v.optionsLen).toBe(12);
    expect(v.flags).toBe(0x018);
    expect(v.window).toBe(215);
    expect(v.checksum).toBe(0x0fc9);
    expect(v.urgent).toBe(0);
    expect(v.payloadOffset).toBe(5 + 32);
    expect(v.payloadLen).toBe(25);
    expect(v.verifyChecksum(SRC, DST)).toBe(true);
    expect(new TextDecoder().decode(big.subarray(4 + 5 + 32))).toBe('cf-networking with silk!\n');
  });

  it('construct', () => {
    const buf = SEG.slice();
    buf.fill(0xa5, 0, 32);
    const v = new TcpView().wrap(buf, 0, buf.length);
    v.srcPort = 56766;
    v.dstPort = 7777;
    v.seq = 2356689519;
    v.ack = 2161316842;
    v.headerLen = 32;
    v.flags = TcpFlags.Psh | TcpFlags.Ack;
    v.window = 215;
    v.urgent = 0;
    buf.set(OPTIONS, 20);
    // the flags setter also zeroes the 3 reserved bits the 0xa5 fill left in byte 12
    v.fillChecksum(SRC, DST);
    expect(buf).toEqual(SEG);
  });

  it('parse', () => {
    expect(parseTcp(new TcpView().wrap(SEG, 0, SEG.length))).toEqual(REPR);
  });

  it('emit', () => {
    const buf = SEG.slice();
    buf.fill(0xa5, 0, 32);
    expect(emitTcp(REPR, buf, 0, SRC, DST)).toBe(32);
    expect(Array.from(buf.subarray(0, 32))).toEqual(Array.from(HEADER));
    expect(tcpBufferLen(REPR)).toBe(57);
  });

  it('the seed’s sending container had not filled the checksum: 0xfd42 is wrong, 0x0fc9 right', () => {
    const src = seedBytes('SRC_CONTAINER_ETH0').slice(34);
    const v = new TcpView().wrap(src, 0, src.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.checksum).toBe(0xfd42);
    expect(v.verifyChecksum(SRC, DST)).toBe(false);
    expect(v.computeChecksum(SRC, DST)).toBe(0x0fc9);
    v.fillChecksum(SRC, DST);
    expect(src).toEqual(SEG);
  });

  it('all nine flag bits, NS included', () => {
    const b = SEG.slice();
    const v = new TcpView().wrap(b, 0, b.length);
    v.flags = 0x1ff;
    expect(v.flags).toBe(0x1ff);
    expect(v.headerLen).toBe(32);
    expect(b[12]).toBe(0x81);
    v.flags = TcpFlags.Syn;
    expect(v.flags).toBe(2);
    expect(b[12]).toBe(0x80);
  });

  describe('malformed', () => {
    const v = new TcpView();
    it('truncated', () => {
      expect(v.wrap(SEG, 0, 19).check()).toBe(WireError.Truncated);
    });
    it('data offset longer than the segment', () => {
      expect(v.wrap(SEG, 0, 31).check()).toBe(WireError.BadHeaderLength);
      expect(() => parseTcp(v)).toThrow(/TCP: header length/);
    });
    it('data offset below 5', () => {
      const b = SEG.slice();
      b[12] = 0x40;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.BadHeaderLength);
    });
  });

  it('TCP_HEADER_LEN is 20', () => {
    expect(TCP_HEADER_LEN).toBe(20);
  });
});
