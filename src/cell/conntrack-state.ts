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
  CT_LIST_DONE,
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

/** The given entries as the file's bytes (ConntrackWriter walks a live table). */
export function encodeConntrack(entries: readonly CtEntryInfo[]): Uint8Array {
  const words = new Uint32Array(HEADER_WORDS + entries.length * ENTRY_WORDS);
  words[0] = MAGIC;
  words[1] = VERSION;
  words[2] = entries.length;
  let o = HEADER_WORDS;
  for (const info of entries) {
    writeEntry(words, o, info);
    o += ENTRY_WORDS;
  }
  return new Uint8Array(words.buffer);
}

/**
 * Encodes a live table into the file's bytes by walking it with
 * ConnTrack.list, a time budget per `step`, so a big table can be saved
 * between packet batches. Entries created or removed during the walk may or
 * may not be in the file; one that lives throughout is in it exactly once.
 */
export class ConntrackWriter {
  private words: Uint32Array;
  private n = 0;
  private cursor = 0;
  private readonly batch: CtEntryInfo[] = [];

  constructor(
    private readonly ct: ConnTrack,
    private readonly now: number,
  ) {
    this.words = new Uint32Array(HEADER_WORDS + Math.min(ct.size + 16, ct.capacity) * ENTRY_WORDS);
  }

  /** Walk for up to `budgetMs`; true when the walk is complete. */
  step(budgetMs: number): boolean {
    const t0 = performance.now();
    while (this.cursor !== CT_LIST_DONE) {
      this.cursor = this.ct.list(this.cursor, 64, this.now, {}, this.batch, 1024);
      for (const e of this.batch) this.put(e);
      this.batch.length = 0;
      if (performance.now() - t0 >= budgetMs) break;
    }
    return this.cursor === CT_LIST_DONE;
  }

  private put(info: CtEntryInfo): void {
    const o = HEADER_WORDS + this.n * ENTRY_WORDS;
    if (o + ENTRY_WORDS > this.words.length) {
      const bigger = new Uint32Array(this.words.length * 2 + ENTRY_WORDS);
      bigger.set(this.words);
      this.words = bigger;
    }
    writeEntry(this.words, o, info);
    this.n++;
  }

  bytes(): Uint8Array {
    const w = this.words.subarray(0, HEADER_WORDS + this.n * ENTRY_WORDS);
    w[0] = MAGIC;
    w[1] = VERSION;
    w[2] = this.n;
    return new Uint8Array(w.buffer, 0, w.byteLength);
  }
}

function writeEntry(words: Uint32Array, o: number, info: CtEntryInfo): void {
  const e = savedFromInfo(info);
  words[o] = e.src;
  words[o + 1] = e.dst;
  words[o + 2] = ((e.sport & 0xffff) << 16) | (e.dport & 0xffff);
  words[o + 3] = (e.proto & 0xff) | ((e.tcpState & 0xff) << 8) | ((e.seenReply ? 1 : 0) << 16) | ((e.assured ? 2 : 0) << 16);
  words[o + 4] = e.mark;
}

/** A file's bytes as checked u32 words and the entry count; throws one sentence when they are not such a file. */
function checkedWords(bytes: Uint8Array): { w: Uint32Array; n: number } {
  if (bytes.byteLength < HEADER_WORDS * 4 || bytes.byteLength % 4 !== 0) throw new Error('conntrack state is truncated');
  const copy = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes); // aligned
  const w = new Uint32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
  if (w[0] !== MAGIC) throw new Error('conntrack state has the wrong magic number');
  if (w[1] !== VERSION) throw new Error(`conntrack state has version ${w[1]}, not ${VERSION}`);
  const n = w[2]!;
  if (w.length !== HEADER_WORDS + n * ENTRY_WORDS) throw new Error(`conntrack state says ${n} entries but holds ${Math.floor((w.length - HEADER_WORDS) / ENTRY_WORDS)}`);
  return { w, n };
}

/** Entry `i` of checked words. */
function entryAt(w: Uint32Array, i: number, into: SavedCt): SavedCt {
  const o = HEADER_WORDS + i * ENTRY_WORDS;
  const ports = w[o + 2]!;
  const meta = w[o + 3]!;
  into.src = w[o]!;
  into.dst = w[o + 1]!;
  into.sport = ports >>> 16;
  into.dport = ports & 0xffff;
  into.proto = meta & 0xff;
  into.tcpState = (meta >>> 8) & 0xff;
  into.seenReply = ((meta >>> 16) & 1) !== 0;
  into.assured = ((meta >>> 16) & 2) !== 0;
  into.mark = w[o + 4]!;
  return into;
}

const blank = (): SavedCt => ({ src: 0, dst: 0, sport: 0, dport: 0, proto: 0, tcpState: 0, seenReply: false, assured: false, mark: 0 });

/** The entries in a file's bytes; throws one sentence when the bytes are not such a file. */
export function decodeConntrack(bytes: Uint8Array): SavedCt[] {
  const { w, n } = checkedWords(bytes);
  const out: SavedCt[] = [];
  for (let i = 0; i < n; i++) out.push(entryAt(w, i, blank()));
  return out;
}

/** Restore straight from a file's bytes (one scratch entry, no list of objects); returns the entries restored. */
export function restoreConntrackBytes(ct: ConnTrack, bytes: Uint8Array, now: number, keep?: (e: SavedCt) => boolean): number {
  const { w, n } = checkedWords(bytes);
  const e = blank();
  let restored = 0;
  for (let i = 0; i < n; i++) {
    entryAt(w, i, e);
    // With several workers each keeps the entries of the flows the kernel steers to it.
    if (keep !== undefined && !keep(e)) continue;
    restored += restoreOne(ct, e, now) ? 1 : 0;
  }
  return restored;
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

/** tcpSteps for every state, without and with a reply seen (built once). */
const TCP_STEPS: [number, number][][][] = TCP_STATE_NAMES.map((_, st) => [tcpSteps(st, false), tcpSteps(st, true)]);

/**
 * Put `saved` into `ct` at `now` (normally an empty table, before any packet).
 * Returns how many entries were restored; unknown protocols are skipped.
 */
export function restoreConntrack(ct: ConnTrack, saved: readonly SavedCt[], now: number): number {
  let n = 0;
  for (const e of saved) if (restoreOne(ct, e, now)) n++;
  return n;
}

function restoreOne(ct: ConnTrack, e: SavedCt, now: number): boolean {
  const icmp = e.proto === IPPROTO_ICMP;
  // The reply direction as a packet from the responder carries it (ICMP echo keeps (id, 0)).
  const rs = icmp ? e.sport : e.dport;
  const rd = icmp ? e.dport : e.sport;
  const pkt = (dir: number, flags: number, create: boolean) =>
    dir === 0
      ? ct.process(e.src, e.dst, e.proto, e.sport, e.dport, flags, now, create, e.mark)
      : ct.process(e.dst, e.src, e.proto, rs, rd, flags, now, false);
  if (e.proto === IPPROTO_TCP) {
    const steps = TCP_STEPS[e.tcpState]?.[e.seenReply ? 1 : 0];
    if (steps === undefined || steps.length === 0) return false;
    for (let i = 0; i < steps.length; i++) pkt(steps[i]![0], steps[i]![1], i === 0);
    return true;
  }
  if (e.proto === IPPROTO_UDP || icmp) {
    pkt(0, 0, true);
    if (e.seenReply) pkt(1, 0, false);
    return true;
  }
  return false;
}
