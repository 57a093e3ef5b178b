// A two-cell topology of in-memory Dataplanes, and the small tools the
// policy / ICMP / anti-spoof / fuzz tests share: run one frame through a
// pipeline the way the cell runtime would, snapshot and diff the counters,
// and build ICMP errors that quote a packet.
//
//   cell1  underlay 198.18.0.11  lease 10.255.1.0/24   appA-0 10.255.1.2, appB-1 10.255.1.3
//   cell2  underlay 198.18.0.12  lease 10.255.2.0/24   appB-0 10.255.2.2
//
// Underlay addresses come from 198.18.0.0/15 (docs/ARCHITECTURE.md, "Lab topology").
import { Action, FrameBatch, slotSizeFor } from '../../src/dataplane/batch.js';
import { DROP_NAMES, STAT_NAMES } from '../../src/dataplane/counters.js';
import { Dataplane, DEFAULT_CONFIG, type DataplaneConfig, type Port } from '../../src/dataplane/dataplane.js';
import type { PolicyRecord, PolicyProtocol } from '../../src/policy/types.js';
import { expect } from 'vitest';
import { internetChecksum } from '../../src/wire/checksum.js';
import { WireError } from '../../src/wire/errors.js';
import { IcmpView } from '../../src/wire/icmp.js';
import { Ipv4View } from '../../src/wire/ipv4.js';
import { ipToU32, u32ToIp, writeMacFromIp } from '../../src/util/ip.js';
import { ipPacket } from './packets.js';

export const U1 = ipToU32('198.18.0.11');
export const U2 = ipToU32('198.18.0.12');
/** An underlay address that holds no lease. */
export const STRANGER = ipToU32('198.18.0.99');
export const L1 = ipToU32('10.255.1.0');
export const L2 = ipToU32('10.255.2.0');
export const A0 = '10.255.1.2';
export const B0 = '10.255.2.2';
export const B1 = '10.255.1.3';
export const GATEWAY = ipToU32('169.254.0.1');
/** Outer IPv4 (20) + UDP (8): where the VXLAN payload starts in an Underlay output. */
export const OUTER_IP_UDP = 28;

/** Tags as the policy server would hand them out (lowest free first). */
export const TAG = { appA: 1, appB: 2, appC: 3 } as const;

function tagText(app: string): string | undefined {
  const t = (TAG as Record<string, number>)[app];
  return t === undefined ? undefined : t.toString(16).toUpperCase().padStart(4, '0');
}

/** A policy record in the internal API's shape, tags filled from TAG. */
export function policy(src: string, dst: string, protocol: PolicyProtocol, start: number, end = start): PolicyRecord {
  return {
    source: { id: src, tag: tagText(src) },
    destination: { id: dst, tag: tagText(dst), protocol, ports: { start, end } },
  };
}

export interface Topology {
  c1: Dataplane;
  c2: Dataplane;
  appA0: Port;
  appB0: Port;
  appB1: Port;
}

export function topology(policies: PolicyRecord[], cfg: Partial<DataplaneConfig> = {}): Topology {
  const leases = [
    { underlayIp: U1, subnet: L1, prefixLen: 24 },
    { underlayIp: U2, subnet: L2, prefixLen: 24 },
  ];
  const c1 = new Dataplane({ ...DEFAULT_CONFIG, ...cfg, underlayIp: U1, leaseSubnet: L1 });
  const c2 = new Dataplane({ ...DEFAULT_CONFIG, ...cfg, underlayIp: U2, leaseSubnet: L2 });
  for (const c of [c1, c2]) {
    c.setLeases(leases);
    c.setPolicies(policies);
  }
  const appA0 = c1.addPort('appA-0', 'appA', ipToU32(A0));
  const appB1 = c1.addPort('appB-1', 'appB', ipToU32(B1));
  const appB0 = c2.addPort('appB-0', 'appB', ipToU32(B0));
  return { c1, c2, appA0, appB0, appB1 };
}

/** One pipeline verdict, with a copy of the output bytes. */
export interface Out {
  action: Action;
  /** Drop reason, TAP index, or underlay IPv4, depending on action. */
  target: number;
  bytes: Uint8Array;
}

const SLOT = slotSizeFor(1500);

/** A container's frame through `cell`'s egress, as read from TAP `port`. */
export function runEgress(cell: Dataplane, port: Port | number, frame: Uint8Array, now: number): Out {
  const b = new FrameBatch(1, SLOT);
  if (!b.push(frame)) throw new Error(`test frame of ${frame.length} bytes does not fit a slot`);
  cell.egress(b, typeof port === 'number' ? port : port.index, now);
  return { action: b.action[0] as Action, target: b.outTarget[0]!, bytes: b.action[0] === Action.Drop ? new Uint8Array(0) : b.output(0) };
}

/** A VXLAN UDP payload through `cell`'s ingress, received from underlay `from`. */
export function runIngress(cell: Dataplane, payload: Uint8Array, from: number, now: number): Out {
  const b = new FrameBatch(1, SLOT);
  if (!b.push(payload, from, 40000)) throw new Error(`test datagram of ${payload.length} bytes does not fit a slot`);
  cell.ingress(b, now);
  return { action: b.action[0] as Action, target: b.outTarget[0]!, bytes: b.action[0] === Action.Drop ? new Uint8Array(0) : b.output(0) };
}

/** The UDP payload (VXLAN header onward) of an Underlay output, as the peer's socket receives it. */
export function wirePayload(out: Out): Uint8Array {
  if (out.action !== Action.Underlay) throw new Error(`expected an underlay send, got action ${out.action} target ${out.target}`);
  return out.bytes.subarray(OUTER_IP_UDP);
}

export interface Snap {
  drops: Float64Array;
  stats: Float64Array;
}

export function snap(cell: Dataplane): Snap {
  return { drops: cell.counters.drops.slice(), stats: cell.counters.stats.slice() };
}

/** Drop counters that moved since `before`, by name. */
export function dropDelta(cell: Dataplane, before: Snap): Record<string, number> {
  const out: Record<string, number> = {};
  const d = cell.counters.drops;
  for (let i = 0; i < d.length; i++) if (d[i] !== before.drops[i]) out[DROP_NAMES[i]!] = d[i]! - before.drops[i]!;
  return out;
}

/** Stats that moved since `before`, by name. */
export function statDelta(cell: Dataplane, before: Snap): Record<string, number> {
  const out: Record<string, number> = {};
  const s = cell.counters.stats;
  for (let i = 0; i < s.length; i++) if (s[i] !== before.stats[i]) out[STAT_NAMES[i]!] = s[i]! - before.stats[i]!;
  return out;
}

/** Stats that moved, without the per-direction packet/byte totals every frame moves. */
export function verdictStats(cell: Dataplane, before: Snap): Record<string, number> {
  const d = statDelta(cell, before);
  for (const k of ['egress-packets', 'egress-bytes', 'ingress-packets', 'ingress-bytes']) delete d[k];
  return d;
}

/**
 * An ICMP error (type/code) from `src` to `dst` as a host's kernel would send
 * it, quoting `quoted` (an IPv4 packet): its header + the first 8 payload bytes
 * (RFC 792).
 */
export function icmpErrorPacket(src: string, dst: string, type: number, code: number, quoted: Uint8Array): Uint8Array {
  const hl = (quoted[0]! & 0x0f) * 4;
  return ipPacket(src, dst, { proto: 'icmp', icmpType: type, icmpCode: code, payload: quoted.slice(0, hl + 8) });
}

/** Recompute the IPv4 header checksum at buf[off..] after a test edited the header. */
/** The same IPv4 packet (at offset 0) as a fragment: its flags/offset word set to `word` (0x2000 = MF, 0x0006 = offset 48). */
export function asFragment(p: Uint8Array, word: number): Uint8Array {
  const q = p.slice();
  q[6] = word >> 8;
  q[7] = word & 255;
  refreshIpChecksum(q, 0);
  return q;
}

export function refreshIpChecksum(buf: Uint8Array, off: number): void {
  const hl = (buf[off]! & 0x0f) * 4;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  const c = internetChecksum(buf, off, hl);
  buf[off + 10] = c >>> 8;
  buf[off + 11] = c & 0xff;
}

/** mulberry32: a small seeded PRNG, so a failing fuzz run can be replayed from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export interface IcmpErrorExpect {
  /** IPv4 source and destination of the error. */
  src: number;
  dst: number;
  type: number;
  code: number;
  /** Next-hop MTU (bytes 6-7) for Fragmentation Needed; 0 otherwise. */
  mtu?: number;
  /** IPv4 TTL of the error as it stands in `bytes`. */
  ttl: number;
  /** The offending IPv4 packet as the sender emitted it. */
  offending: Uint8Array;
  /**
   * The quote's TTL (and so its header checksum) may differ from the
   * offending packet's: a router may quote the header before or after its own
   * decrement. The quote's checksum must still match its own bytes.
   */
  quoteTtlMayDiffer?: boolean;
}

/**
 * Check an ICMP error (an IPv4 packet at bytes[off..]) with the wire views:
 * header and ICMP checksums, type/code/MTU, and the quote: the offending
 * header plus the first 8 bytes of its payload (RFC 792; RFC 1191 §4 for the MTU).
 */
export function expectIcmpError(bytes: Uint8Array, off: number, e: IcmpErrorExpect): void {
  const ip = new Ipv4View().wrap(bytes, off, bytes.length - off);
  expect(ip.check()).toBe(WireError.None);
  expect(ip.verifyChecksum()).toBe(true);
  expect(ip.protocol).toBe(1);
  expect(u32ToIp(ip.srcAddr)).toBe(u32ToIp(e.src));
  expect(u32ToIp(ip.dstAddr)).toBe(u32ToIp(e.dst));
  expect(ip.ttl).toBe(e.ttl);
  expect(ip.isFragment).toBe(false);
  const hl = (e.offending[0]! & 0x0f) * 4;
  const quoteLen = Math.min(e.offending.length, hl + 8);
  expect(ip.totalLen).toBe(ip.headerLen + 8 + quoteLen);
  const icmp = new IcmpView().wrap(bytes, ip.payloadOffset, ip.payloadLen);
  expect(icmp.check()).toBe(WireError.None);
  expect(icmp.verifyChecksum()).toBe(true);
  expect([icmp.type, icmp.code]).toEqual([e.type, e.code]);
  expect(bytes[icmp.off + 4]).toBe(0);
  expect(bytes[icmp.off + 5]).toBe(0);
  expect(icmp.nextHopMtu).toBe(e.mtu ?? 0);
  const quote = bytes.slice(icmp.quotedOffset, icmp.quotedOffset + quoteLen);
  const want = e.offending.slice(0, quoteLen);
  if (e.quoteTtlMayDiffer) {
    const q = new Ipv4View().wrap(quote, 0, hl);
    expect(q.verifyChecksum()).toBe(true);
    for (const i of [8, 10, 11]) quote[i] = want[i] = 0;
  }
  expect(hex(quote)).toBe(hex(want));
}

/** Check an Ethernet frame's MACs as silk delivers to container `ip`: dst ee:ee:<ip>, src aa:aa:<ip>, IPv4. */
export function expectContainerFrame(frame: Uint8Array, ip: string): void {
  const v = ipToU32(ip);
  const want = new Uint8Array(14);
  writeMacFromIp(want, 0, 0xeeee, v);
  writeMacFromIp(want, 6, 0xaaaa, v);
  want[12] = 0x08;
  expect(hex(frame.subarray(0, 14))).toBe(hex(want));
}

/**
 * Check an Underlay output: outer IPv4 from `from` to `to` (checksum, TTL 64,
 * UDP, total length), UDP to port 4789 with the right length, VXLAN VNI 1
 * with `flags` and `gpid`, inner MACs between the two cells' VTEPs. Returns
 * the offset of the inner IPv4 header in out.bytes.
 */
export function expectUnderlay(out: Out, from: number, to: number, flags: number, gpid: number): number {
  expect(out.action).toBe(Action.Underlay);
  expect(u32ToIp(out.target)).toBe(u32ToIp(to));
  const b = out.bytes;
  const ip = new Ipv4View().wrap(b, 0, b.length);
  expect(ip.check()).toBe(WireError.None);
  expect(ip.verifyChecksum()).toBe(true);
  expect(ip.totalLen).toBe(b.length);
  expect([u32ToIp(ip.srcAddr), u32ToIp(ip.dstAddr), ip.protocol, ip.ttl]).toEqual([u32ToIp(from), u32ToIp(to), 17, 64]);
  expect((b[22]! << 8) | b[23]!).toBe(4789);
  expect((b[24]! << 8) | b[25]!).toBe(b.length - 20);
  expect(hex(b.subarray(28, 36))).toBe(hex(Uint8Array.of(flags, 0, gpid >>> 8, gpid & 0xff, 0, 0, 1, 0)));
  const leaseOf = (u: number) => (u === U1 ? L1 : u === U2 ? L2 : -1);
  const mac = new Uint8Array(12);
  writeMacFromIp(mac, 0, 0xeeee, leaseOf(to));
  writeMacFromIp(mac, 6, 0xeeee, leaseOf(from));
  expect(hex(b.subarray(36, 48))).toBe(hex(mac));
  expect((b[48]! << 8) | b[49]!).toBe(0x0800);
  return 50;
}
