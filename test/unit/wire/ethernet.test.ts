import { describe, expect, it } from 'vitest';
import { WireError } from '../../../src/wire/errors.js';
import {
  ETH_HEADER_LEN,
  EtherType,
  EthernetView,
  emitEthernet,
  ethernetBufferLen,
  formatMacKey,
  macKeyAt,
  macKeyFromString,
  parseEthernet,
  writeMacKey,
} from '../../../src/wire/ethernet.js';
import { seedBytes } from '../../vectors/seed002.js';

// Destination container frame (seed 002): ee:ee:0a:ff:84:02 <- aa:aa:0a:ff:84:02, IPv4.
const FRAME = seedBytes('DST_CONTAINER_ETH0');
const HEADER = FRAME.slice(0, 14);
const REPR = { dst: 'ee:ee:0a:ff:84:02', src: 'aa:aa:0a:ff:84:02', etherType: EtherType.Ipv4 };

describe('ethernet', () => {
  it('deconstruct', () => {
    // at a non-zero offset inside a subarray with its own byteOffset
    const big = new Uint8Array(FRAME.length + 20);
    big.set(FRAME, 13);
    const sub = big.subarray(3);
    const v = new EthernetView().wrap(sub, 10, FRAME.length);
    expect(v.check()).toBe(WireError.None);
    const mac = new Uint8Array(8);
    v.dstMac(mac, 2);
    expect(Array.from(mac.subarray(2))).toEqual([0xee, 0xee, 0x0a, 0xff, 0x84, 0x02]);
    v.srcMac(mac);
    expect(Array.from(mac.subarray(0, 6))).toEqual([0xaa, 0xaa, 0x0a, 0xff, 0x84, 0x02]);
    expect(v.etherType).toBe(0x0800);
    expect(v.payloadOffset).toBe(24);
    expect(v.payloadLen).toBe(FRAME.length - 14);
    expect(v.dstKey).toBe(0xeeee0aff8402);
    expect(v.srcKey).toBe(0xaaaa0aff8402);
  });

  it('construct', () => {
    const buf = new Uint8Array(20).fill(0xa5);
    const v = new EthernetView().wrap(buf, 2, 14);
    v.setDstMac(Uint8Array.of(0, 0xee, 0xee, 0x0a, 0xff, 0x84, 0x02), 1);
    v.setSrcMac(Uint8Array.of(0xaa, 0xaa, 0x0a, 0xff, 0x84, 0x02));
    v.etherType = EtherType.Ipv4;
    expect(Array.from(buf.subarray(2, 16))).toEqual(Array.from(HEADER));
    expect(buf[0]).toBe(0xa5);
    expect(buf[1]).toBe(0xa5);
    expect(buf[16]).toBe(0xa5);
  });

  it('parse', () => {
    expect(parseEthernet(new EthernetView().wrap(FRAME, 0, FRAME.length))).toEqual(REPR);
  });

  it('emit', () => {
    const buf = new Uint8Array(14).fill(0xa5);
    expect(emitEthernet(REPR, buf, 0)).toBe(ETH_HEADER_LEN);
    expect(buf).toEqual(HEADER);
    expect(ethernetBufferLen(REPR)).toBe(14);
  });

  it('malformed: truncated, or a view past the end of its buffer', () => {
    const v = new EthernetView();
    expect(v.wrap(FRAME, 0, 13).check()).toBe(WireError.Truncated);
    expect(v.wrap(FRAME, 0, 0).check()).toBe(WireError.Truncated);
    expect(v.wrap(FRAME, FRAME.length - 10, 14).check()).toBe(WireError.Truncated);
    expect(v.wrap(FRAME, -1, 14).check()).toBe(WireError.Truncated);
    expect(() => parseEthernet(v.wrap(FRAME, 0, 5))).toThrow(/Ethernet: truncated/);
  });

  it('unknown EtherTypes are plain numbers', () => {
    const f = FRAME.slice();
    f[12] = 0x88;
    f[13] = 0xcc; // LLDP
    const v = new EthernetView().wrap(f, 0, f.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.etherType).toBe(0x88cc);
  });

  it('MAC keys round-trip through integers and text', () => {
    expect(macKeyAt(FRAME, 0)).toBe(0xeeee0aff8402);
    expect(formatMacKey(0xeeee0aff8402)).toBe('ee:ee:0a:ff:84:02');
    expect(formatMacKey(0x000000000001)).toBe('00:00:00:00:00:01');
    expect(formatMacKey(0xffffffffffff)).toBe('ff:ff:ff:ff:ff:ff');
    expect(macKeyFromString('FF:ff:00:01:02:03')).toBe(0xffff00010203);
    expect(() => macKeyFromString('ee:ee:0a:ff:84')).toThrow(/not a MAC address/);
    const b = new Uint8Array(8).fill(0xa5);
    writeMacKey(b, 1, 0xffffffffffff);
    expect(Array.from(b)).toEqual([0xa5, 255, 255, 255, 255, 255, 255, 0xa5]);
  });
});
