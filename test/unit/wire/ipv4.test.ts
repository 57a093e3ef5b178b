import { describe, expect, it } from 'vitest';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { WireError } from '../../../src/wire/errors.js';
import { IPV4_HEADER_LEN, IpProtocol, Ipv4View, emitIpv4, ipv4BufferLen, parseIpv4 } from '../../../src/wire/ipv4.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { seedBytes } from '../../vectors/seed002.js';

// The source container's packet (seed 002): 10.255.99.3 > 10.255.132.2, TCP, TTL 64, id 39442, DF, length 77.
const FRAME = seedBytes('SRC_CONTAINER_ETH0');
const PACKET = FRAME.slice(14);
const HEADER = PACKET.slice(0, 20);
const REPR = {
  src: ipToU32('10.255.99.3'),
  dst: ipToU32('10.255.132.2'),
  protocol: IpProtocol.Tcp,
  ttl: 64,
  payloadLen: 57,
  dscpEcn: 0,
  ident: 39442,
  dontFrag: true,
  moreFrags: false,
  fragOffset: 0,
  options: new Uint8Array(0),
};

function at(bytes: Uint8Array, off: number, pad = 5): Uint8Array {
  // copy into a subarray with a non-zero byteOffset, `off` bytes into it
  const big = new Uint8Array(bytes.length + off + pad + 3);
  big.set(bytes, 3 + off);
  return big.subarray(3);
}

describe('ipv4', () => {
  it('deconstruct', () => {
    const buf = at(PACKET, 14);
    const v = new Ipv4View().wrap(buf, 14, PACKET.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.version).toBe(4);
    expect(v.headerLen).toBe(20);
    expect(v.dscpEcn).toBe(0);
    expect(v.totalLen).toBe(77);
    expect(v.ident).toBe(39442);
    expect(v.dontFrag).toBe(true);
    expect(v.moreFrags).toBe(false);
    expect(v.fragOffset).toBe(0);
    expect(v.isFragment).toBe(false);
    expect(v.ttl).toBe(64);
    expect(v.protocol).toBe(6);
    expect(v.checksum).toBe(0xa395);
    expect(v.srcAddr).toBe(0x0aff6303);
    expect(v.dstAddr).toBe(0x0aff8402);
    expect(v.payloadOffset).toBe(34);
    expect(v.payloadLen).toBe(57);
    expect(v.optionsLen).toBe(0);
    expect(v.verifyChecksum()).toBe(true);
  });

  it('construct', () => {
    const buf = new Uint8Array(26).fill(0xa5);
    const v = new Ipv4View().wrap(buf, 3, 20);
    v.version = 4;
    v.headerLen = 20;
    v.dscpEcn = 0;
    v.totalLen = 77;
    v.ident = 39442;
    v.clearFlags(); // the 0xa5 fill set the reserved flag bit
    expect(v.reservedFlag).toBe(false);
    v.dontFrag = true;
    v.moreFrags = false;
    v.fragOffset = 0;
    v.ttl = 64;
    v.protocol = IpProtocol.Tcp;
    v.srcAddr = ipToU32('10.255.99.3');
    v.dstAddr = ipToU32('10.255.132.2');
    v.fillChecksum();
    expect(Array.from(buf.subarray(3, 23))).toEqual(Array.from(HEADER));
    expect([buf[0], buf[1], buf[2], buf[23], buf[24], buf[25]]).toEqual([0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5]);
  });

  it('parse', () => {
    expect(parseIpv4(new Ipv4View().wrap(PACKET, 0, PACKET.length))).toEqual(REPR);
  });

  it('emit', () => {
    const buf = new Uint8Array(20).fill(0xa5);
    expect(emitIpv4(REPR, buf, 0)).toBe(IPV4_HEADER_LEN);
    expect(buf).toEqual(HEADER);
    expect(ipv4BufferLen(REPR)).toBe(77);
  });

  it('decrementTtl updates the checksum as the seed shows: 64/0xa395 → 63/0xa495 → 62/0xa595', () => {
    const buf = at(PACKET, 0);
    const v = new Ipv4View().wrap(buf, 0, PACKET.length);
    v.decrementTtl();
    expect(Array.from(buf.subarray(0, 20))).toEqual(Array.from(seedBytes('SRC_HOST_VTEP').subarray(14, 34)));
    v.decrementTtl();
    expect(Array.from(buf.subarray(0, 20))).toEqual(Array.from(seedBytes('DST_CONTAINER_ETH0').subarray(14, 34)));
    expect(v.verifyChecksum()).toBe(true);
  });

  it('rewriteSrcAddr / rewriteDstAddr keep the checksum correct', () => {
    const buf = PACKET.slice();
    const v = new Ipv4View().wrap(buf, 0, buf.length);
    v.rewriteSrcAddr(ipToU32('198.18.0.1'));
    v.rewriteDstAddr(ipToU32('255.255.255.255'));
    expect(v.srcAddr).toBe(ipToU32('198.18.0.1'));
    expect(v.dstAddr).toBe(0xffffffff);
    expect(v.verifyChecksum()).toBe(true);
    expect(referenceChecksum(buf.subarray(0, 20))).toBe(0);
  });

  it('verifyChecksum spots a flipped bit', () => {
    const buf = PACKET.slice();
    buf[15] ^= 0x10;
    expect(new Ipv4View().wrap(buf, 0, buf.length).verifyChecksum()).toBe(false);
  });

  it('fragments: MF and offset in bytes', () => {
    const buf = PACKET.slice();
    const v = new Ipv4View().wrap(buf, 0, buf.length);
    v.dontFrag = false;
    v.moreFrags = true;
    v.fragOffset = 1480;
    expect([buf[6], buf[7]]).toEqual([0x20, 0xb9]);
    expect(v.isFragment).toBe(true);
    v.moreFrags = false;
    expect(v.isFragment).toBe(true);
    expect(v.fragOffset).toBe(1480);
    v.fragOffset = 0;
    expect(v.isFragment).toBe(false);
  });

  it('options are read and emitted', () => {
    // IHL 6 with a 4-byte Router Alert option (RFC 2113: 94 04 00 00)
    const repr = { ...REPR, options: Uint8Array.of(0x94, 0x04, 0, 0), payloadLen: 4 };
    const buf = new Uint8Array(28).fill(0xa5);
    expect(emitIpv4(repr, buf, 0)).toBe(24);
    buf.fill(0, 24);
    expect(buf[0]).toBe(0x46);
    expect((buf[2]! << 8) | buf[3]!).toBe(28);
    const v = new Ipv4View().wrap(buf, 0, 28);
    expect(v.check()).toBe(WireError.None);
    expect(v.verifyChecksum()).toBe(true);
    expect(v.optionsLen).toBe(4);
    expect(parseIpv4(v)).toEqual(repr);
    expect(() => emitIpv4({ ...REPR, options: new Uint8Array(3) }, buf, 0)).toThrow(/multiple of 4/);
  });

  it('trailing Ethernet padding after total length is allowed and excluded from payloadLen', () => {
    const padded = new Uint8Array(PACKET.length + 9);
    padded.set(PACKET);
    const v = new Ipv4View().wrap(padded, 0, padded.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.payloadLen).toBe(57);
  });

  describe('malformed', () => {
    const v = new Ipv4View();
    it('truncated', () => {
      expect(v.wrap(PACKET, 0, 19).check()).toBe(WireError.Truncated);
      expect(v.wrap(PACKET, 0, PACKET.length + 1).check()).toBe(WireError.Truncated);
      expect(() => parseIpv4(v.wrap(PACKET, 0, 10))).toThrow(/IPv4: truncated/);
    });
    it('bad version', () => {
      const b = PACKET.slice();
      b[0] = 0x65;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.BadVersion);
    });
    it('IHL below 5', () => {
      const b = PACKET.slice();
      b[0] = 0x44;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.BadHeaderLength);
    });
    it('IHL longer than the packet', () => {
      const b = PACKET.slice(0, 24);
      b[0] = 0x47; // 28-byte header in 24 bytes
      b[3] = 24;
      b[2] = 0;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.BadHeaderLength);
    });
    it('total length larger than the bytes present (truncated capture)', () => {
      expect(v.wrap(PACKET, 0, 60).check()).toBe(WireError.BadTotalLength);
    });
    it('total length smaller than the header', () => {
      const b = PACKET.slice();
      b[2] = 0;
      b[3] = 19;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.BadTotalLength);
    });
    it('a bad checksum is not a check() error', () => {
      const b = PACKET.slice();
      b[10] ^= 0xff;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.None);
      expect(v.verifyChecksum()).toBe(false);
    });
  });
});
