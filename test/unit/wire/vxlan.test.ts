import { describe, expect, it } from 'vitest';
import { WireError } from '../../../src/wire/errors.js';
import {
  VXLAN_HEADER_LEN,
  VXLAN_PORT,
  VxlanFlags,
  VxlanGbpFlags,
  VxlanView,
  emitVxlan,
  parseVxlan,
  vxlanBufferLen,
  writeVxlanHeader,
} from '../../../src/wire/vxlan.js';
import { seedBytes } from '../../vectors/seed002.js';

// Seed 002, outer UDP payload: `8800 0001 0000 0100` = flags 0x88 (G|I), GPID 1, VNI 1, then the inner frame.
const FRAME = seedBytes('DST_HOST_ETH0');
const PAYLOAD = FRAME.slice(42);
const HEADER = PAYLOAD.slice(0, 8);
const REPR = { flags: 0x88, gbpFlags: 0, groupPolicyId: 1, vni: 1 };

describe('vxlan-gbp', () => {
  it('the seed header is the bytes 8800 0001 0000 0100', () => {
    expect(Array.from(HEADER)).toEqual([0x88, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00]);
  });

  it('deconstruct', () => {
    const big = new Uint8Array(PAYLOAD.length + 11);
    big.set(PAYLOAD, 11);
    const v = new VxlanView().wrap(big.subarray(5), 6, PAYLOAD.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.flags).toBe(0x88);
    expect(v.hasGbp).toBe(true);
    expect(v.hasVni).toBe(true);
    expect(v.gbpFlags).toBe(0);
    expect(v.groupPolicyId).toBe(1);
    expect(v.vni).toBe(1);
    expect(v.reserved).toBe(0);
    expect(v.payloadOffset).toBe(14);
    expect(v.payloadLen).toBe(PAYLOAD.length - 8);
    // the inner frame starts with the destination VTEP's MAC ee:ee:0a:ff:84:00
    expect(Array.from(big.subarray(5 + 14, 5 + 20))).toEqual([0xee, 0xee, 0x0a, 0xff, 0x84, 0x00]);
  });

  it('construct', () => {
    const buf = new Uint8Array(10).fill(0xa5);
    const v = new VxlanView().wrap(buf, 1, 8);
    v.flags = VxlanFlags.G | VxlanFlags.I;
    v.gbpFlags = 0;
    v.groupPolicyId = 1;
    v.vni = 1;
    buf[8] = 0;
    expect(Array.from(buf.subarray(1, 9))).toEqual(Array.from(HEADER));
    expect([buf[0], buf[9]]).toEqual([0xa5, 0xa5]);
  });

  it('parse', () => {
    expect(parseVxlan(new VxlanView().wrap(PAYLOAD, 0, PAYLOAD.length))).toEqual(REPR);
  });

  it('emit', () => {
    const buf = new Uint8Array(8).fill(0xa5);
    expect(emitVxlan(REPR, buf, 0)).toBe(VXLAN_HEADER_LEN);
    expect(buf).toEqual(HEADER);
    expect(vxlanBufferLen(REPR)).toBe(8);
  });

  it('writeVxlanHeader: a tag gives 0x88 + GBP id; no tag gives 0x08 and zeros, as the kernel sends', () => {
    const buf = new Uint8Array(10).fill(0xa5);
    writeVxlanHeader(buf, 1, 1, 1);
    expect(Array.from(buf.subarray(1, 9))).toEqual(Array.from(HEADER));
    writeVxlanHeader(buf, 1, 0xabcdef, 0);
    expect(Array.from(buf.subarray(1, 9))).toEqual([0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
    writeVxlanHeader(buf, 1, 1, 0xfffe);
    expect(Array.from(buf.subarray(1, 9))).toEqual([0x88, 0, 0xff, 0xfe, 0, 0, 1, 0]);
    expect([buf[0], buf[9]]).toEqual([0xa5, 0xa5]);
    const v = new VxlanView().wrap(buf, 1, 8);
    expect(v.check()).toBe(WireError.None);
    expect(v.groupPolicyId).toBe(0xfffe);
  });

  it('GBP D and A flags (kernel marks 0x400000 / 0x80000)', () => {
    const buf = Uint8Array.of(0x88, 0x48, 0x12, 0x34, 0, 0, 7, 0);
    const v = new VxlanView().wrap(buf, 0, 8);
    expect(v.gbpFlags & VxlanGbpFlags.D).toBe(0x40);
    expect(v.gbpFlags & VxlanGbpFlags.A).toBe(0x08);
    expect(parseVxlan(v)).toEqual({ flags: 0x88, gbpFlags: 0x48, groupPolicyId: 0x1234, vni: 7 });
    const out = new Uint8Array(8).fill(0xa5);
    emitVxlan(parseVxlan(v), out, 0);
    expect(out).toEqual(buf);
  });

  it('without G the policy bytes are reserved: parsed as 0', () => {
    const buf = Uint8Array.of(0x08, 0x40, 0x12, 0x34, 0, 0, 1, 0);
    const v = new VxlanView().wrap(buf, 0, 8);
    expect(v.hasGbp).toBe(false);
    expect(parseVxlan(v)).toEqual({ flags: 0x08, gbpFlags: 0, groupPolicyId: 0, vni: 1 });
  });

  describe('malformed', () => {
    const v = new VxlanView();
    it('truncated', () => {
      expect(v.wrap(HEADER, 0, 7).check()).toBe(WireError.Truncated);
    });
    it('I flag clear', () => {
      const b = HEADER.slice();
      b[0] = 0x80;
      expect(v.wrap(b, 0, 8).check()).toBe(WireError.BadFlags);
      expect(() => parseVxlan(v)).toThrow(/VXLAN: VXLAN I flag is not set/);
    });
  });

  it('VXLAN_PORT is the IANA port 4789 (RFC 7348 §5)', () => {
    expect(VXLAN_PORT).toBe(4789);
  });
});
