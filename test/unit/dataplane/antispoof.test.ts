// Anti-spoofing and malformed input (docs/ARCHITECTURE.md, "Bad input and faults"):
// anything from the wire or a TAP is checked before use; VXLAN is accepted
// only from underlay IPs that hold a lease and only with an inner source
// inside that lease; a container may only send from its own IP. Every case is
// one counted drop under its reason (counters.ts DROP_NAMES) that changes
// nothing else: no other counter, no conntrack entry, no delivery — and the
// legitimate packet right after it still goes through.
import { describe, expect, it } from 'vitest';
import { Action } from '../../../src/dataplane/batch.js';
import { DROP_NAMES } from '../../../src/dataplane/counters.js';
import type { Dataplane } from '../../../src/dataplane/dataplane.js';
import { ipToU32, writeMacFromIp } from '../../../src/util/ip.js';
import { containerFrame, ipPacket, vxlanPayload } from '../../helpers/packets.js';
import {
  A0,
  B0,
  B1,
  STRANGER,
  TAG,
  U1,
  U2,
  dropDelta,
  policy,
  refreshIpChecksum,
  runEgress,
  runIngress,
  snap,
  topology,
  verdictStats,
  type Out,
  type Topology,
} from '../../helpers/packets-extra.js';

const POLICIES = [policy('appB', 'appA', 'tcp', 8080), policy('appA', 'appB', 'tcp', 8080)];
const IP = 22; // inner IPv4 offset in a VXLAN payload (VXLAN 8 + Ethernet 14)

/** A datagram cell 2 legitimately sends: appB-0 → appA-0 tcp 8080, tagged appB. */
function goodDatagram(opts: { src?: string; dst?: string } = {}): Uint8Array {
  const inner = ipPacket(opts.src ?? B0, opts.dst ?? A0, { proto: 'tcp', sport: 40001, dport: 8080, flags: 0x02, ttl: 63 });
  return vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner });
}

function expectOnlyDrop(cell: Dataplane, t: Topology, out: Out, reason: string, before: ReturnType<typeof snap>, ctBefore: number): void {
  expect(DROP_NAMES).toContain(reason);
  expect(out.action).toBe(Action.Drop);
  expect(DROP_NAMES[out.target]).toBe(reason);
  expect(dropDelta(cell, before)).toEqual({ [reason]: 1 });
  expect(verdictStats(cell, before)).toEqual({});
  expect(cell.conntrack.size).toBe(ctBefore);
  for (const p of [t.appA0, t.appB0, t.appB1]) expect(Array.from(p.packets.subarray(2))).toEqual([0, 0]);
}

interface IngressCase {
  name: string;
  reason: string;
  from?: number;
  make: () => Uint8Array;
}

function edit(f: (p: Uint8Array) => void, refresh = false): () => Uint8Array {
  return () => {
    const p = goodDatagram();
    f(p);
    if (refresh) refreshIpChecksum(p, IP);
    return p;
  };
}

const INGRESS_CASES: IngressCase[] = [
  // Who may send VXLAN at all.
  { name: 'VXLAN from an underlay IP with no lease', reason: 'unknown-underlay-source', from: STRANGER, make: goodDatagram },
  { name: 'a forged Group Policy ID (appB) from a non-cell address', reason: 'unknown-underlay-source', from: ipToU32('10.0.0.1'), make: goodDatagram },
  // Inner source must be inside the sender's lease.
  { name: 'inner source in no lease (10.255.3.2)', reason: 'spoofed-inner-source', make: () => goodDatagram({ src: '10.255.3.2' }) },
  { name: "inner source in the receiver's own lease (appB-1's 10.255.1.3)", reason: 'spoofed-inner-source', make: () => goodDatagram({ src: B1 }) },
  { name: 'inner source outside the overlay (192.0.2.1)', reason: 'spoofed-inner-source', make: () => goodDatagram({ src: '192.0.2.1' }) },
  // VXLAN header.
  { name: 'wrong VNI (2)', reason: 'wrong-vni', make: edit((p) => (p[6] = 2)) },
  { name: 'wrong VNI (0x010001)', reason: 'wrong-vni', make: edit((p) => (p[4] = 1)) },
  { name: 'flags 0x80: I clear', reason: 'bad-vxlan-flags', make: edit((p) => (p[0] = 0x80)) },
  { name: 'flags 0x00: I clear', reason: 'bad-vxlan-flags', make: edit((p) => (p[0] = 0x00)) },
  { name: 'flags 0x89: an unknown bit', reason: 'bad-vxlan-flags', make: edit((p) => (p[0] = 0x89)) },
  { name: 'flags 0x0c: an unknown bit', reason: 'bad-vxlan-flags', make: edit((p) => (p[0] = 0x0c)) },
  { name: 'flags 0xc8: an unknown bit', reason: 'bad-vxlan-flags', make: edit((p) => (p[0] = 0xc8)) },
  { name: 'truncated VXLAN: 0 bytes', reason: 'bad-vxlan', make: () => new Uint8Array(0) },
  { name: 'truncated VXLAN: 7 bytes', reason: 'bad-vxlan', make: () => goodDatagram().slice(0, 7) },
  { name: 'VXLAN header with no inner frame', reason: 'truncated', make: () => goodDatagram().slice(0, 8) },
  { name: 'inner Ethernet header cut at 13 bytes', reason: 'truncated', make: () => goodDatagram().slice(0, 21) },
  // Inner Ethernet.
  { name: "inner frame to cell 2's VTEP MAC", reason: 'wrong-inner-mac', make: edit((p) => writeMacFromIp(p, 8, 0xeeee, ipToU32('10.255.2.0'))) },
  { name: 'inner frame to the broadcast MAC', reason: 'wrong-inner-mac', make: edit((p) => p.fill(0xff, 8, 14)) },
  { name: "inner frame to appA-0's own MAC", reason: 'wrong-inner-mac', make: edit((p) => writeMacFromIp(p, 8, 0xeeee, ipToU32(A0))) },
  { name: 'EtherType ARP', reason: 'arp', make: edit((p) => (p[21] = 0x06)) },
  { name: 'EtherType IPv6', reason: 'not-ipv4', make: edit((p) => ((p[20] = 0x86), (p[21] = 0xdd))) },
  { name: 'EtherType 802.1Q', reason: 'not-ipv4', make: edit((p) => ((p[20] = 0x81), (p[21] = 0x00))) },
  // Inner IPv4.
  { name: 'IP version 6 in an IPv4 EtherType', reason: 'bad-ip-header', make: edit((p) => (p[IP] = 0x65), true) },
  { name: 'IHL 4 (16-byte header)', reason: 'bad-ip-header', make: edit((p) => (p[IP] = 0x44), true) },
  { name: 'total length longer than the frame', reason: 'bad-ip-header', make: edit((p) => (p[IP + 3] += 1), true) },
  { name: 'total length shorter than the header', reason: 'bad-ip-header', make: edit((p) => ((p[IP + 2] = 0), (p[IP + 3] = 19)), true) },
  { name: 'IP header cut at 12 bytes', reason: 'bad-ip-header', make: () => goodDatagram().slice(0, IP + 12) },
  { name: 'bad header checksum', reason: 'bad-ip-checksum', make: edit((p) => (p[IP + 11] ^= 0x01)) },
  { name: 'first fragment (MF set)', reason: 'fragment', make: edit((p) => (p[IP + 6] = 0x20), true) },
  { name: 'later fragment (offset 1480)', reason: 'fragment', make: edit((p) => ((p[IP + 6] = 0x00), (p[IP + 7] = 185)), true) },
  { name: 'TCP header cut at 10 bytes', reason: 'bad-l4-header', make: edit((p) => ((p[IP + 2] = 0), (p[IP + 3] = 30)), true) },
  // Destination.
  { name: 'to an address with no container (10.255.1.77)', reason: 'no-container', make: () => goodDatagram({ dst: '10.255.1.77' }) },
  { name: "to the cell's VTEP address (10.255.1.0)", reason: 'to-cell', make: () => goodDatagram({ dst: '10.255.1.0' }) },
];

describe('ingress: anti-spoof and malformed datagrams are counted drops that change nothing else', () => {
  it.each(INGRESS_CASES)('$name → $reason', (c) => {
    const t = topology(POLICIES);
    const before = snap(t.c1);
    const ct = t.c1.conntrack.size;
    const out = runIngress(t.c1, c.make(), c.from ?? U2, 10);
    expectOnlyDrop(t.c1, t, out, c.reason, before, ct);
    // The legitimate datagram still gets in afterwards.
    const ok = runIngress(t.c1, goodDatagram(), U2, 11);
    expect(ok.action).toBe(Action.Tap);
    expect(ok.target).toBe(t.appA0.index);
  });

  it('the same forged datagram from the leaseholder of 10.255.2.0/24 is accepted (the baseline the cases above break)', () => {
    const t = topology(POLICIES);
    const out = runIngress(t.c1, goodDatagram(), U2, 10);
    expect(out.action).toBe(Action.Tap);
    expect(out.target).toBe(t.appA0.index);
  });

  it('a lease taken away stops its old holder at once', () => {
    const t = topology(POLICIES);
    t.c1.setLeases([{ underlayIp: U1, subnet: ipToU32('10.255.1.0'), prefixLen: 24 }]);
    const before = snap(t.c1);
    const out = runIngress(t.c1, goodDatagram(), U2, 10);
    expectOnlyDrop(t.c1, t, out, 'unknown-underlay-source', before, 0);
  });

  it('a lease that moves to another underlay IP: the old IP is refused, the new one accepted', () => {
    const t = topology(POLICIES);
    const moved = ipToU32('198.18.0.13');
    t.c1.setLeases([
      { underlayIp: U1, subnet: ipToU32('10.255.1.0'), prefixLen: 24 },
      { underlayIp: moved, subnet: ipToU32('10.255.2.0'), prefixLen: 24 },
    ]);
    expect(runIngress(t.c1, goodDatagram(), U2, 10).action).toBe(Action.Drop);
    expect(runIngress(t.c1, goodDatagram(), moved, 10).action).toBe(Action.Tap);
  });
});

interface EgressCase {
  name: string;
  reason: string;
  make: () => Uint8Array;
}

const good = (): Uint8Array => containerFrame(A0, B0, { proto: 'tcp', sport: 40001, dport: 8080, flags: 0x02 });
function egEdit(f: (p: Uint8Array) => void, refresh = false): () => Uint8Array {
  return () => {
    const p = good();
    f(p);
    if (refresh) refreshIpChecksum(p, 14);
    return p;
  };
}
/** A frame with appA-0's MACs but another source address. */
const spoof = (src: string) => () => {
  const f = containerFrame(src, B0, { proto: 'tcp', sport: 40001, dport: 8080, flags: 0x02 });
  f.set(good().subarray(0, 12));
  return f;
};

const EGRESS_CASES: EgressCase[] = [
  { name: 'appA-0 sending from 10.255.1.9 (unused, same lease)', reason: 'spoofed-source', make: spoof('10.255.1.9') },
  { name: "appA-0 sending from appB-1's address (same cell)", reason: 'spoofed-source', make: spoof(B1) },
  { name: "appA-0 sending from appB-0's address (another cell)", reason: 'spoofed-source', make: spoof(B0) },
  { name: 'appA-0 sending from 0.0.0.0', reason: 'spoofed-source', make: spoof('0.0.0.0') },
  { name: 'appA-0 sending from the gateway 169.254.0.1', reason: 'spoofed-source', make: spoof('169.254.0.1') },
  { name: 'a 13-byte frame', reason: 'truncated', make: () => good().slice(0, 13) },
  { name: 'ARP (NOARP containers should send none)', reason: 'arp', make: egEdit((p) => (p[13] = 0x06)) },
  { name: 'IPv6', reason: 'not-ipv4', make: egEdit((p) => ((p[12] = 0x86), (p[13] = 0xdd))) },
  { name: 'IP version 5', reason: 'bad-ip-header', make: egEdit((p) => (p[14] = 0x55), true) },
  { name: 'IHL 15 past the packet end', reason: 'bad-ip-header', make: egEdit((p) => (p[14] = 0x4f), true) },
  { name: 'total length lying (longer than the frame)', reason: 'bad-ip-header', make: egEdit((p) => (p[17] += 40), true) },
  { name: 'bad header checksum', reason: 'bad-ip-checksum', make: egEdit((p) => (p[24] ^= 0x80)) },
  { name: 'a fragment (MF)', reason: 'fragment', make: egEdit((p) => (p[20] |= 0x20), true) },
  { name: 'a later fragment (offset 8)', reason: 'fragment', make: egEdit((p) => (p[21] = 1), true) },
  { name: 'UDP header cut at 4 bytes', reason: 'bad-l4-header', make: () => {
    const f = containerFrame(A0, B0, { proto: 'udp', sport: 1, dport: 5000 });
    f[17] = 24;
    refreshIpChecksum(f, 14);
    return f.slice(0, 14 + 24);
  } },
  { name: "to the cell's VTEP address", reason: 'to-cell', make: () => containerFrame(A0, '10.255.1.0', { proto: 'tcp', dport: 22 }) },
  { name: 'to the gateway 169.254.0.1', reason: 'to-cell', make: () => containerFrame(A0, '169.254.0.1', { proto: 'udp', dport: 53 }) },
];

describe('egress: what a container may send', () => {
  it.each(EGRESS_CASES)('$name → $reason', (c) => {
    const t = topology(POLICIES);
    const before = snap(t.c1);
    const ct = t.c1.conntrack.size;
    const out = runEgress(t.c1, t.appA0, c.make(), 10);
    expectOnlyDrop(t.c1, t, out, c.reason, before, ct);
    const ok = runEgress(t.c1, t.appA0, good(), 11);
    expect(ok.action).toBe(Action.Underlay);
    expect(ok.target).toBe(U2);
  });

  it('a frame read from a TAP whose container was removed is a counted drop (port-gone)', () => {
    const t = topology(POLICIES);
    const idx = t.appA0.index;
    t.c1.removePort(idx);
    const before = snap(t.c1);
    const out = runEgress(t.c1, idx, good(), 10);
    expect(out.action).toBe(Action.Drop);
    expect(DROP_NAMES[out.target]).toBe('port-gone');
    expect(dropDelta(t.c1, before)).toEqual({ 'port-gone': 1 });
    expect(verdictStats(t.c1, before)).toEqual({});
  });

  it('the spoof check uses the TAP the frame came from, not the frame: appB-1 cannot send as appA-0', () => {
    const t = topology(POLICIES);
    const before = snap(t.c1);
    const out = runEgress(t.c1, t.appB1, good(), 10);
    expect(DROP_NAMES[out.target]).toBe('spoofed-source');
    expect(dropDelta(t.c1, before)).toEqual({ 'spoofed-source': 1 });
  });
});
