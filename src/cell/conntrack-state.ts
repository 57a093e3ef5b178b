// The userspace cell's tracked connections across a restart: saved as
// fixed-size binary records, restored by replaying packets into a fresh
// table. silk keeps its connections across an agent restart because the
// kernel's conntrack outlives the agent; a silkworm cell's table lives in its
// process, so it is written to the state directory and read back, and an
// established connection whose policy was removed keeps flowing.
//
// Restoring goes through ConnTrack.process, the same call packets make, with
// the packets that lead to each saved state (the transition table is in
// src/policy/conntrack.ts): no back door into the table's layout. What is
// not kept: the time left — every restored entry gets its state's full
// timeout from the moment of the restore (for an established TCP connection,
// five days either way) — and which side sent a FIN first.
//
// File layout (little-endian u32s): magic "SWCT", version 1, count, then per
// entry: src, dst, sport << 16 | dport, proto | tcpState << 8 | flags << 16
// (1 = seen reply, 2 = assured), mark.
import {
  ConnTrack,
  TCP_ACK,
  TCP_CLOSE,
  TCP_CLOSE_WAIT,
  TCP_ESTABLISHED,
  TCP_FIN,
  TCP_FIN_WAIT,
  TCP_LAST_ACK,
  TCP_NONE,
  TCP_RST,
  TCP_STATE_NAMES,
  TCP_SYN,
  TCP_SYN_RECV,
  TCP_SYN_SENT,
  TCP_TIME_WAIT,
  type CtEntryInfo,
} from '../policy/conntrack.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from '../policy/types.js';

const MAGIC = 0x54435753; // "SWCT" read as a little-endian u32
const VERSION = 1;
const HEADER_WORDS = 3;
const ENTRY_WORDS = 5;

/** A saved entry: the original tuple, the TCP state number, and the flags that matter to policy. */
export interface SavedCt {
  proto: number;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  tcpState: number;
  seenReply: boolean;
  assured: boolean;
  mark: number;
}

export function savedFromInfo(e: CtEntryInfo): SavedCt {
  const st = e.tcpState === undefined ? TCP_NONE : (TCP_STATE_NAMES as readonly string[]).indexOf(e.tcpState);
  return {
    proto: e.proto,
    src: e.src >>> 0,
    dst: e.dst >>> 0,
    sport: e.sport,
    dport: e.dport,
    tcpState: st < 0 ? TCP_NONE : st,
    seenReply: e.seenReply,
    assured: e.assured,
    mark: e.mark >>> 0,
  };
}

/** The table's live entries as the file's bytes. */
export function encodeConntrack(entries: readonly CtEntryInfo[]): Uint8Array {
  const words = new Uint32Array(HEADER_WORDS + entries.length * ENTRY_WORDS);
  words[0] = MAGIC;
  words[1] = VERSION;
  words[2] = entries.length;
  let o = HEADER_WORDS;
  for (const info of entries) {
    const e = savedFromInfo(info);
    words[o] = e.src;
    words[o + 1] = e.dst;
    words[o + 2] = ((e.sport & 0xffff) << 16) | (e.dport & 0xffff);
    words[o + 3] = (e.proto & 0xff) | ((e.tcpState & 0xff) << 8) | ((e.seenReply ? 1 : 0) << 16) | ((e.assured ? 2 : 0) << 16);
    words[o + 4] = e.mark;
    o += ENTRY_WORDS;
  }
  return new Uint8Array(words.buffer);
}

/** The entries in a file's bytes; throws one sentence when the bytes are not such a file. */
export function decodeConntrack(bytes: Uint8Array): SavedCt[] {
  if (bytes.byteLength < HEADER_WORDS * 4 || bytes.byteLength % 4 !== 0) throw new Error('conntrack state is truncated');
  const copy = new Uint8Array(bytes); // aligned
  const w = new Uint32Array(copy.buffer, 0, copy.byteLength / 4);
  if (w[0] !== MAGIC) throw new Error('conntrack state has the wrong magic number');
  if (w[1] !== VERSION) throw new Error(`conntrack state has version ${w[1]}, not ${VERSION}`);
  const n = w[2]!;
  if (w.length !== HEADER_WORDS + n * ENTRY_WORDS) throw new Error(`conntrack state says ${n} entries but holds ${Math.floor((w.length - HEADER_WORDS) / ENTRY_WORDS)}`);
  const out: SavedCt[] = [];
  for (let i = 0, o = HEADER_WORDS; i < n; i++, o += ENTRY_WORDS) {
    const ports = w[o + 2]!;
    const meta = w[o + 3]!;
    out.push({
      src: w[o]!,
      dst: w[o + 1]!,
      sport: ports >>> 16,
      dport: ports & 0xffff,
      proto: meta & 0xff,
      tcpState: (meta >>> 8) & 0xff,
      seenReply: ((meta >>> 16) & 1) !== 0,
      assured: ((meta >>> 16) & 2) !== 0,
      mark: w[o + 4]!,
    });
  }
  return out;
}

/** The TCP packets (direction 0 = original, 1 = reply; flags) that take a fresh entry to `state`. */
function tcpSteps(state: number, seenReply: boolean): [number, number][] {
  const est: [number, number][] = seenReply ? [[0, TCP_ACK], [1, TCP_ACK]] : [[0, TCP_ACK]];
  switch (state) {
    case TCP_SYN_SENT:
      return [[0, TCP_SYN]];
    case TCP_SYN_RECV:
      return [[0, TCP_SYN], [1, TCP_SYN | TCP_ACK]];
    case TCP_ESTABLISHED:
      return est;
    case TCP_FIN_WAIT:
      return [...est, [0, TCP_FIN | TCP_ACK]];
    case TCP_CLOSE_WAIT:
      return [...est, [0, TCP_FIN | TCP_ACK], [1, TCP_ACK]];
    case TCP_LAST_ACK:
      return [...est, [0, TCP_FIN | TCP_ACK], [1, TCP_FIN | TCP_ACK]];
    case TCP_TIME_WAIT:
      return [...est, [0, TCP_FIN | TCP_ACK], [1, TCP_FIN | TCP_ACK], [0, TCP_ACK]];
    case TCP_CLOSE:
      return [...est, [0, TCP_RST]];
    default:
      return [];
  }
}

/**
 * Put `saved` into `ct` at `now` (normally an empty table, before any packet).
 * Returns how many entries were restored; unknown protocols are skipped.
 */
export function restoreConntrack(ct: ConnTrack, saved: readonly SavedCt[], now: number): number {
  let n = 0;
  for (const e of saved) {
    const icmp = e.proto === IPPROTO_ICMP;
    // The reply direction as a packet from the responder carries it (ICMP echo keeps (id, 0)).
    const rs = icmp ? e.sport : e.dport;
    const rd = icmp ? e.dport : e.sport;
    const pkt = (dir: number, flags: number, create: boolean) =>
      dir === 0
        ? ct.process(e.src, e.dst, e.proto, e.sport, e.dport, flags, now, create, e.mark)
        : ct.process(e.dst, e.src, e.proto, rs, rd, flags, now, false);
    if (e.proto === IPPROTO_TCP) {
      const steps = tcpSteps(e.tcpState, e.seenReply);
      if (steps.length === 0) continue;
      steps.forEach(([dir, flags], i) => pkt(dir, flags, i === 0));
    } else if (e.proto === IPPROTO_UDP || icmp) {
      pkt(0, 0, true);
      if (e.seenReply) pkt(1, 0, false);
    } else {
      continue;
    }
    n++;
  }
  return n;
}
