// Seed 002's packet, through two in-memory cells, byte for byte: the source
// container's frame → cell 1 egress → the underlay datagram the seed captured
// → cell 2 ingress → the frame the seed captured in the destination container.
import { describe, expect, it } from 'vitest';
import { Dataplane, DEFAULT_CONFIG } from '../../../src/dataplane/dataplane.js';
import { Action, FrameBatch, slotSizeFor } from '../../../src/dataplane/batch.js';
import { seedBytes } from '../../vectors/seed002.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { internetChecksum } from '../../../src/wire/checksum.js';

// The seed's cells: underlay 10.0.16.16 (lease 10.255.99.0/24) and 10.0.32.14 (10.255.132.0/24).
const U1 = ipToU32('10.0.16.16');
const U2 = ipToU32('10.0.32.14');
const L1 = ipToU32('10.255.99.0');
const L2 = ipToU32('10.255.132.0');
const leases = [
  { underlayIp: U1, subnet: L1, prefixLen: 24 },
  { underlayIp: U2, subnet: L2, prefixLen: 24 },
];
// `cf allow-access proxy proxy --protocol tcp --port 7777`: the app "proxy" has tag 0001.
const policies = [
  { source: { id: 'proxy', tag: '0001' }, destination: { id: 'proxy', tag: '0001', protocol: 'tcp' as const, ports: { start: 7777, end: 7777 } } },
];

function cells() {
  const c1 = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: U1, leaseSubnet: L1 });
  const c2 = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: U2, leaseSubnet: L2 });
  for (const c of [c1, c2]) {
    c.setLeases(leases);
    c.setPolicies(policies);
  }
  const src = c1.addPort('proxy-0', 'proxy', ipToU32('10.255.99.3'));
  const dst = c2.addPort('proxy-1', 'proxy', ipToU32('10.255.132.2'));
  return { c1, c2, src, dst };
}

/** The source container's frame with its TCP checksum filled (the capture predates offload). */
function sourceFrame(): Uint8Array {
  const f = seedBytes('SRC_CONTAINER_ETH0');
  expect([f[50], f[51]]).toEqual([0xfd, 0x42]);
  f[50] = 0x0f;
  f[51] = 0xc9;
  return f;
}

describe('seed 002 through two cells', () => {
  it('cell 1 egress emits the seed underlay packet (VXLAN payload byte for byte)', () => {
    const { c1, src } = cells();
    const b = new FrameBatch(4, slotSizeFor(1500));
    b.push(sourceFrame());
    c1.egress(b, src.index, 1);
    expect(b.action[0]).toBe(Action.Underlay);
    expect(b.outTarget[0]).toBe(U2);
    const out = b.output(0);
    const seed = seedBytes('SRC_HOST_ETH0').subarray(14); // outer IPv4 onward
    expect(out.length).toBe(seed.length);
    // VXLAN header + inner frame: identical, flags 0x88, GPID 1, VNI 1, VTEP MACs, TTL 63.
    expect(Buffer.from(out.subarray(28)).toString('hex')).toBe(Buffer.from(seed.subarray(28)).toString('hex'));
    // Outer IPv4: identical but the identification and hence the checksum.
    const ipA = Buffer.from(out.subarray(0, 20));
    const ipB = Buffer.from(seed.subarray(0, 20));
    for (const i of [4, 5, 10, 11]) ipA[i] = ipB[i] = 0;
    expect(ipA.toString('hex')).toBe(ipB.toString('hex'));
    expect(internetChecksum(out, 0, 20)).toBe(0);
    // Outer UDP: the source port is our flow hash (in range); the rest as the seed (dport 4789, len 107, csum 0).
    expect(Buffer.from(out.subarray(22, 28)).toString('hex')).toBe(Buffer.from(seed.subarray(22, 28)).toString('hex'));
    const sport = (out[20]! << 8) | out[21]!;
    expect(sport).toBeGreaterThanOrEqual(32768);
    expect(sport).toBeLessThanOrEqual(60999);
  });

  it('the UDP source port is stable per flow and differs across flows', () => {
    const { c1, src } = cells();
    const ports = new Set<number>();
    for (let k = 0; k < 2; k++) {
      const b = new FrameBatch(4, slotSizeFor(1500));
      b.push(sourceFrame());
      c1.egress(b, src.index, 1);
      const o = b.output(0);
      ports.add((o[20]! << 8) | o[21]!);
    }
    expect(ports.size).toBe(1);
    const f = sourceFrame();
    f[35] ^= 1; // another source port (TCP checksum now wrong, which egress does not check)
    const b = new FrameBatch(4, slotSizeFor(1500));
    b.push(f);
    c1.egress(b, src.index, 1);
    const o = b.output(0);
    expect(ports.has((o[20]! << 8) | o[21]!)).toBe(false);
  });

  it('cell 2 ingress turns the seed datagram into the seed destination-container frame', () => {
    const { c2, dst } = cells();
    const b = new FrameBatch(4, slotSizeFor(1500));
    const underlay = seedBytes('DST_HOST_ETH0');
    b.push(underlay.subarray(14 + 28), U1, 36821);
    c2.ingress(b, 1);
    expect(b.action[0]).toBe(Action.Tap);
    expect(b.outTarget[0]).toBe(dst.index);
    expect(Buffer.from(b.output(0)).toString('hex')).toBe(Buffer.from(seedBytes('DST_CONTAINER_ETH0')).toString('hex'));
  });

  it('end to end: what cell 1 sends, cell 2 delivers as the seed shows (TTL 64 → 63 → 62)', () => {
    const { c1, c2, dst } = cells();
    const eb = new FrameBatch(4, slotSizeFor(1500));
    eb.push(sourceFrame());
    c1.egress(eb, 0, 1);
    const ib = new FrameBatch(4, slotSizeFor(1500));
    ib.push(eb.output(0).subarray(28), U1, 40000);
    c2.ingress(ib, 1);
    expect(ib.action[0]).toBe(Action.Tap);
    expect(ib.outTarget[0]).toBe(dst.index);
    const got = ib.output(0);
    expect(got[14 + 8]).toBe(62);
    expect(Buffer.from(got).toString('hex')).toBe(Buffer.from(seedBytes('DST_CONTAINER_ETH0')).toString('hex'));
  });

  it('prints the seed tables in the kernel formats', async () => {
    const { formatRoute } = await import('../../../src/tables/route.js');
    const { formatNeighbor } = await import('../../../src/tables/neighbor.js');
    const { formatFdb } = await import('../../../src/tables/fdb.js');
    const { c1 } = cells();
    expect(c1.routes.entries().map(formatRoute)).toContain('10.255.132.0/24 via 10.255.132.0 dev silk-vtep src 10.255.99.0');
    expect(c1.neighbors.entries().map(formatNeighbor)).toEqual(['10.255.132.0 dev silk-vtep lladdr ee:ee:0a:ff:84:00 PERMANENT']);
    expect(c1.fdb.entries().map(formatFdb)).toEqual(['ee:ee:0a:ff:84:00 dev silk-vtep dst 10.0.32.14 self permanent']);
  });
});
