// The two-cell fixture the whole-run differential tests share (test/unit/offload/whole-tso.test.ts,
// test/unit/dataplane/whole-rx.test.ts): cell A (10.255.99.0/24 on 10.0.16.16) and cell B
// (10.255.132.0/24 on 10.0.32.14), app "proxy" (tag 0001) allowed to itself on TCP 7777, seed 002's
// frame 10.255.99.3 → 10.255.132.2:7777 (TCP with timestamps) and its header geometry, and what the
// tests compare between a per-segment cell and a whole-run cell.
import { expect } from 'vitest';
import type { Dataplane, Port } from '../../src/dataplane/dataplane.js';
import { ipToU32 } from '../../src/util/ip.js';
import { seedBytes } from '../vectors/seed002.js';

export const U1 = ipToU32('10.0.16.16');
export const U2 = ipToU32('10.0.32.14');
export const L1 = ipToU32('10.255.99.0');
export const L2 = ipToU32('10.255.132.0');
export const SRC = ipToU32('10.255.99.3');
export const DST = ipToU32('10.255.132.2');
export const leases = [
  { underlayIp: U1, subnet: L1, prefixLen: 24 },
  { underlayIp: U2, subnet: L2, prefixLen: 24 },
];
export const policies = [
  { source: { id: 'proxy', tag: '0001' }, destination: { id: 'proxy', tag: '0001', protocol: 'tcp' as const, ports: { start: 7777, end: 7777 } } },
];

export const SEED = seedBytes('SRC_CONTAINER_ETH0'); // 10.255.99.3 → 10.255.132.2:7777, TCP with timestamps
export const IPHL = (SEED[14]! & 0x0f) * 4;
export const THL = (SEED[14 + IPHL + 12]! >>> 4) * 4;
/** Ethernet + IPv4 + TCP header bytes of the seed frame. */
export const HDR = 14 + IPHL + THL;
/** Where the TCP header starts in the seed frame. */
export const T = 14 + IPHL;
export const SPORT = (SEED[T]! << 8) | SEED[T + 1]!;

/** TCP flag bits. */
export const ACK = 0x10;
export const PSH = 0x08;
export const FIN = 0x01;
export const SYN = 0x02;

/** Everything of the conntrack table that a whole-run path must leave as the per-segment path does. */
export function conntrackState(dp: Dataplane): unknown {
  const ct = dp.conntrack as unknown as Record<string, unknown>;
  return {
    entries: dp.conntrack.entries(0),
    ent: Array.from(ct.ent as Int32Array),
    times: Array.from(ct.times as Float64Array),
    tdEnd: Array.from(ct.tdEnd as Int32Array),
    head: Array.from(ct.head as Int32Array),
    count: ct.count,
    evictions: dp.conntrack.evictions,
  };
}

/** A cell of either test: its data plane, its container's port and the verdicts/bytes collected. */
export interface PairCell {
  dp: Dataplane;
  port: Port;
  out: { action: number; target: number; bytes: string }[];
}

/** What both tests compare: verdicts and bytes per frame, counters, drops, port counts, the ident, conntrack. */
export function expectSameCells(a: PairCell, b: PairCell): void {
  expect(b.out.length).toBe(a.out.length);
  for (let i = 0; i < a.out.length; i++) expect(b.out[i], `frame ${i}`).toEqual(a.out[i]);
  expect(Array.from(b.dp.counters.stats)).toEqual(Array.from(a.dp.counters.stats));
  expect(Array.from(b.dp.counters.drops)).toEqual(Array.from(a.dp.counters.drops));
  expect(Array.from(b.port.packets)).toEqual(Array.from(a.port.packets));
  expect((b.dp as unknown as { live: { ident: number } }).live.ident).toBe((a.dp as unknown as { live: { ident: number } }).live.ident);
  expect(conntrackState(b.dp)).toEqual(conntrackState(a.dp));
}
