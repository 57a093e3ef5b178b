import { describe, expect, it } from 'vitest';
import { Fdb, fdbJson, formatFdb, macKey } from '../../../src/tables/fdb.js';
import { NeighborTable, formatNeighbor, neighborJson } from '../../../src/tables/neighbor.js';
import { RouteTable } from '../../../src/tables/route.js';
import { ipToU32 as ip, macFromIp, parseMac } from '../../../src/util/ip.js';

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  return Uint8Array.from(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}

// Seed 002, "Source container eth0 device": the frame the app sent (TCP 10.255.99.3:56766 → 10.255.132.2:7777).
const containerFrame = hex(`
  aaaa 0aff 6303 eeee 0aff 6303 0800 4500 004d 9a12 4000 4006 a395 0aff 6303 0aff
  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018 00d7 fd42 0000 0101 080a 0008 18cf 000a
  5ccd 6366 2d6e 6574 776f 726b 696e 6720 7769 7468 2073 696c 6b21 0a`);
// Seed 002, "Source host eth0 device": the VXLAN datagram on the underlay (outer IPv4 first).
const underlayPacket = hex(`
  4201 0a00 0001 4201 0a00 1010 0800 4500 007f 93bf 0000 4011 a291 0a00 1010 0a00
  200e 8fd5 12b5 006b 0000 8800 0001 0000 0100 eeee 0aff 8400 eeee 0aff 6300 0800
  4500 004d 9a12 4000 3f06 a495 0aff 6303 0aff 8402 ddbe 1e61 8c78 3a6f 80d3 13ea`);

const be32 = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

describe('route → neighbor → FDB along the seed 002 path', () => {
  // The source cell's tables as silk installs them (seed 002 "Route/ARP/FDB rule").
  const routes = new RouteTable();
  routes.add({ prefix: ip('10.255.132.0'), len: 24, via: ip('10.255.132.0'), dev: 'silk-vtep', src: ip('10.255.99.0') });
  const neigh = new NeighborTable();
  neigh.set(ip('10.255.132.0'), macFromIp(0xeeee, ip('10.255.132.0')), 'silk-vtep');
  const fdb = new Fdb();
  fdb.set(macFromIp(0xeeee, ip('10.255.132.0')), ip('10.0.32.14'), 'silk-vtep');

  it('resolves the inner destination MAC and the underlay destination the capture shows', () => {
    const dstIp = be32(containerFrame, 14 + 16);
    expect(dstIp).toBe(ip('10.255.132.2'));
    const r = routes.lookup(dstIp)!;
    expect(r.via).toBe(ip('10.255.132.0'));
    const n = neigh.get(r.via)!;
    // The inner frame on the wire starts with that MAC (after 14 outer Ethernet + 20 IP + 8 UDP + 8 VXLAN).
    const innerOff = 14 + 20 + 8 + 8;
    expect(Array.from(n.mac)).toEqual(Array.from(underlayPacket.subarray(innerOff, innerOff + 6)));
    // FDB lookup straight from the packet bytes, at a non-zero offset.
    const f = fdb.getByMac(underlayPacket, innerOff)!;
    expect(f.dst).toBe(be32(underlayPacket, 14 + 16)); // outer IPv4 destination 10.0.32.14
    expect(fdb.getByKey(macKey(underlayPacket, innerOff))).toBe(f);
    expect(formatNeighbor(n)).toBe('10.255.132.0 dev silk-vtep lladdr ee:ee:0a:ff:84:00 PERMANENT');
    expect(formatFdb(f)).toBe('ee:ee:0a:ff:84:00 dev silk-vtep dst 10.0.32.14 self permanent');
  });

  it('does not resolve the source VTEP MAC, which has no FDB entry', () => {
    expect(fdb.getByMac(underlayPacket, 14 + 20 + 8 + 8 + 6)).toBeUndefined();
  });
});

describe('macKey', () => {
  it.each([
    ['ee:ee:0a:ff:2b:00', 0xeeee * 2 ** 32 + 0x0aff2b00],
    ['00:00:00:00:00:00', 0],
    ['ff:ff:ff:ff:ff:ff', 2 ** 48 - 1],
    ['aa:aa:0a:ff:6c:b8', 0xaaaa * 2 ** 32 + 0x0aff6cb8],
  ])('%s → %d', (mac, key) => {
    expect(macKey(parseMac(mac), 0)).toBe(key);
  });

  it('reads at the offset of a subarray view into a pooled buffer', () => {
    const pool = new Uint8Array(64).fill(0xa5);
    pool.set(parseMac('ee:ee:0a:ff:2b:00'), 20);
    const view = pool.subarray(16, 40);
    expect(macKey(view, 4)).toBe(0xeeee * 2 ** 32 + 0x0aff2b00);
  });
});

describe('NeighborTable', () => {
  it('sets, replaces, copies the MAC, deletes, and lists sorted', () => {
    const t = new NeighborTable();
    const mac = parseMac('ee:ee:0a:ff:2b:00');
    t.set(ip('10.255.43.0'), mac, 'silk-vtep');
    mac[5] = 0x99; // the table keeps its own copy
    t.set(ip('10.255.7.0'), parseMac('ee:ee:0a:ff:07:00'), 'silk-vtep');
    t.set(ip('198.18.0.1'), parseMac('02:00:00:00:00:01'), 'eth0');
    expect(t.entries().map(formatNeighbor)).toEqual([
      '10.255.7.0 dev silk-vtep lladdr ee:ee:0a:ff:07:00 PERMANENT',
      '10.255.43.0 dev silk-vtep lladdr ee:ee:0a:ff:2b:00 PERMANENT',
      '198.18.0.1 dev eth0 lladdr 02:00:00:00:00:01 PERMANENT',
    ]);
    t.set(ip('10.255.7.0'), parseMac('ee:ee:0a:ff:07:01'), 'silk-vtep');
    expect(t.size).toBe(3);
    expect(formatNeighbor(t.get(ip('10.255.7.0'))!)).toBe('10.255.7.0 dev silk-vtep lladdr ee:ee:0a:ff:07:01 PERMANENT');
    expect(t.delete(ip('10.255.7.0'))).toBe(true);
    expect(t.delete(ip('10.255.7.0'))).toBe(false);
    expect(t.get(ip('10.255.7.0'))).toBeUndefined();
    expect(t.get(ip('198.18.0.1'))!.dev).toBe('eth0');
    expect(neighborJson(t.get(ip('10.255.43.0'))!)).toEqual({
      dst: '10.255.43.0',
      dev: 'silk-vtep',
      lladdr: 'ee:ee:0a:ff:2b:00',
      state: ['PERMANENT'],
    });
    t.clear();
    expect(t.size).toBe(0);
    expect(t.entries()).toEqual([]);
  });

  it('rejects bad input clearly', () => {
    const t = new NeighborTable();
    expect(() => t.set(ip('10.0.0.1'), new Uint8Array(5), 'x')).toThrow('a MAC address is 6 bytes');
    expect(() => t.set(2 ** 32, new Uint8Array(6), 'x')).toThrow('neighbor address must be an IPv4 address as u32');
    expect(() => t.set(1, new Uint8Array(6), '')).toThrow('neighbor needs a device name');
  });
});

describe('Fdb', () => {
  it('holds many entries through growth and deletion, finding each by key', () => {
    const fdb = new Fdb();
    const n = 5000;
    for (let i = 0; i < n; i++) fdb.set(macFromIp(0xeeee, ip('10.255.0.0') + i * 256), ip('198.18.0.0') + i, 'silk-vtep');
    expect(fdb.size).toBe(n);
    for (let i = 0; i < n; i += 2) expect(fdb.delete(macFromIp(0xeeee, ip('10.255.0.0') + i * 256))).toBe(true);
    expect(fdb.size).toBe(n / 2);
    for (let i = 0; i < n; i++) {
      const got = fdb.getByMac(macFromIp(0xeeee, ip('10.255.0.0') + i * 256), 0);
      if (i % 2 === 0) expect(got).toBeUndefined();
      else expect(got?.dst).toBe(ip('198.18.0.0') + i);
    }
  });

  it('replaces, lists sorted by MAC, and gives bridge -j fdb shapes', () => {
    const fdb = new Fdb();
    fdb.set(parseMac('ee:ee:0a:ff:2b:00'), ip('10.0.16.14'), 'silk-vtep');
    fdb.set(parseMac('ee:ee:0a:ff:07:00'), ip('10.0.16.7'), 'silk-vtep');
    fdb.set(parseMac('ee:ee:0a:ff:2b:00'), ip('10.0.16.15'), 'silk-vtep');
    expect(fdb.size).toBe(2);
    expect(fdb.entries().map(formatFdb)).toEqual([
      'ee:ee:0a:ff:07:00 dev silk-vtep dst 10.0.16.7 self permanent',
      'ee:ee:0a:ff:2b:00 dev silk-vtep dst 10.0.16.15 self permanent',
    ]);
    expect(fdbJson(fdb.entries()[0]!)).toEqual({
      mac: 'ee:ee:0a:ff:07:00',
      dev: 'silk-vtep',
      dst: '10.0.16.7',
      flags: ['self'],
      state: 'permanent',
    });
    expect(fdb.delete(new Uint8Array(3))).toBe(false);
    expect(() => fdb.set(new Uint8Array(7), 1, 'x')).toThrow('a MAC address is 6 bytes');
    fdb.clear();
    expect(fdb.getByKey(macKey(parseMac('ee:ee:0a:ff:07:00'), 0))).toBeUndefined();
  });
});
