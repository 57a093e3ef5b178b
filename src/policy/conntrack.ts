// Connection tracking for ingress policy: "allow if the packet belongs to a
// tracked connection (reply / related ICMP error)" — what silk gets from the
// kernel with `-m state --state RELATED,ESTABLISHED -j ACCEPT` in its
// overlay chain.
//
// Layout: fixed capacity, everything in typed arrays, nothing allocated per
// packet. Each connection is one entry (id) holding its original-direction
// tuple; a hash index holds two references per entry, one per direction
// (ref = id * 2 + dir), so a packet from either side finds the entry with one
// probe sequence. Open addressing, linear probing, load <= 1/2, deletion by
// backward shift (no tombstones). The hash is seeded per table, because the
// tuples come from the wire and a fixed hash would let a sender aim every
// flow at one probe chain. At the default 262,144 entries the whole table is
// ~21 MB, allocated once (scripts/bench-conntrack.mjs measures it).
//
// Time is a parameter (seconds, float) — never read here. Expiry: an entry
// found expired during a lookup is dropped on the spot; `tick(now)`, called
// from one coarse timer, sweeps the rest (never a timer per flow).
//
// When the table is full a new flow evicts an old one, never fails. Like the
// kernel's early_drop (nf_conntrack_core.c), the victim is an entry that is
// not worth much yet: not ASSURED, or a TCP connection that is closing
// (tcp_can_early_drop in nf_conntrack_proto_tcp.c: FIN_WAIT, CLOSE_WAIT,
// LAST_ACK, TIME_WAIT, CLOSE). Unlike the kernel, which gives up and drops the
// packet when its bounded sample holds only assured entries, a full table of
// assured entries still gives way to a new flow: the least recently seen of
// them goes. To find victims in O(1), every entry sits on one of two
// intrusive doubly linked lists (prev/next in the entry itself), ordered by
// last-seen time: "evictable" (the classes above) and "protected" (ASSURED and
// not closing). A packet moves its entry to the tail of its list at most once
// per LRU_STEP seconds, so a busy flow does not pay the list update per packet
// and the lists stay sorted to within LRU_STEP. Eviction takes, in order: an
// expired entry among the first EVICT_SAMPLE of the evictable list, the
// protected head if expired, the evictable head, the protected head.
//
// Listing (`show conntrack`) walks entry ids in slices with a cursor
// (`list`), so a caller can yield to the event loop between slices and never
// holds the whole table as objects. Ids never move while an entry lives, so a
// walk sees every entry that lives throughout it exactly once, whatever
// expires or is created between slices.
//
// TCP follows the kernel's state names and default timeouts
// (nf_conntrack_proto_tcp.c: syn_sent 120 s, syn_recv 60 s, established 5
// days, fin_wait 120 s, close_wait 60 s, last_ack 30 s, time_wait 120 s, close
// 10 s) with a simplified transition table:
//   SYN (orig)               NONE → SYN_SENT; TIME_WAIT/CLOSE → SYN_SENT (reopen, fresh flags)
//   SYN or SYN+ACK (reply)   SYN_SENT → SYN_RECV (SYN alone = simultaneous open)
//   ACK (orig)               SYN_RECV → ESTABLISHED (+ ASSURED)
//   FIN (either)             SYN_RECV/ESTABLISHED → FIN_WAIT; once both sides sent FIN → LAST_ACK
//   ACK of the peer's FIN    FIN_WAIT → CLOSE_WAIT
//   ACK after last FIN       LAST_ACK → TIME_WAIT
//   RST (either)             → CLOSE; before any reply: the entry is deleted
//                            (see unreplied(): the kernel's window check first)
// What the kernel calls INVALID is never tracked and never changes an entry
// (process returns CtState.Invalid), as nf_conntrack_tcp_packet does:
// - tcp_error: a flag mix outside tcp_valid_flags (ECE, CWR and PSH
//   ignored: SYN, SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK,
//   ACK|URG are valid) is INVALID whether or not a connection exists — a FIN
//   without ACK, a packet with no flags, SYN|FIN, SYN|RST, URG or PSH alone;
// - tcp_new: without an entry, only a SYN (→ SYN_SENT) or an ACK (→
//   ESTABLISHED, picked up mid-stream: the kernel's default
//   nf_conntrack_tcp_loose=1, so connections survive a cell restart) opens
//   one; a first SYN+ACK, FIN+ACK or RST is INVALID (the NONE column of
//   tcp_conntracks).
// The kernel's rules then see no connection: `--state RELATED,ESTABLISHED`
// does not match, and an ICMP error quoting such a packet is not RELATED on
// the cell that forwarded it (docs/kernel-differences.md).
// TCP's window tracking (tcp_in_window) is kept only where it decides whether
// an entry lives: until the first reply (unreplied()), where a RST deletes
// the entry and a packet out of the opener's window is INVALID. After a
// reply no packet is INVALID for its sequence numbers here, as if every
// connection were tracked with nf_conntrack_tcp_be_liberal.
// UDP: 30 s until a reply is seen, then 120 s (ASSURED). ICMP echo: 30 s;
// the caller passes (id, 0) as the ports in both directions, so a request
// and its reply share one tuple with the addresses swapped.
import { u32ToIp } from '../util/ip.js';
// The protocol numbers as const enum members (wire/offsets.ts): written as numbers into the code.
import { Wire } from '../wire/offsets.js';

export const enum CtState {
  /** No entry, or the original direction of an entry that has not seen a reply yet. */
  New = 0,
  /** Original direction of an entry that has seen a reply (kernel IPS_SEEN_REPLY). */
  Established = 1,
  /** The reply direction of an entry. */
  Reply = 2,
  /**
   * A packet the kernel's conntrack calls INVALID (see the header): belongs
   * to no connection, creates none, changes none.
   */
  Invalid = 3,
}

/** Kernel TCP conntrack states (TCP_CONNTRACK_*), same numbering. */
export const TCP_NONE = 0;
export const TCP_SYN_SENT = 1;
export const TCP_SYN_RECV = 2;
export const TCP_ESTABLISHED = 3;
export const TCP_FIN_WAIT = 4;
export const TCP_CLOSE_WAIT = 5;
export const TCP_LAST_ACK = 6;
export const TCP_TIME_WAIT = 7;
export const TCP_CLOSE = 8;
export const TCP_STATE_NAMES = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
] as const;

/** TCP header flag bits (RFC 9293 §3.1). */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;

/** The flag bits tcp_error judges: FIN, SYN, RST, ACK, URG (ECE, CWR and PSH are ignored; so is NS, which is not in the flag byte). */
const TCP_JUDGED = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG;

/** nf_conntrack_proto_tcp.c tcp_valid_flags, indexed by flags & TCP_JUDGED: 1 = a mix conntrack accepts at all. */
const TCP_VALID_FLAGS = new Uint8Array(TCP_JUDGED + 1);
for (const f of [
  TCP_SYN,
  TCP_SYN | TCP_URG,
  TCP_SYN | TCP_ACK,
  TCP_RST,
  TCP_RST | TCP_ACK,
  TCP_FIN | TCP_ACK,
  TCP_FIN | TCP_ACK | TCP_URG,
  TCP_ACK,
  TCP_ACK | TCP_URG,
]) TCP_VALID_FLAGS[f] = 1;

/** Does the kernel's conntrack accept this TCP flag mix at all (tcp_error)? False: INVALID, connection or not. */
export function tcpFlagsValid(flags: number): boolean {
  return TCP_VALID_FLAGS[flags & TCP_JUDGED] === 1;
}

/** Seconds. */
export interface CtTimeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpCloseWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  udp: number;
  udpReplied: number;
  icmp: number;
}

/** The kernel's defaults (see the header comment). */
export const DEFAULT_CT_TIMEOUTS: Readonly<CtTimeouts> = Object.freeze({
  tcpSynSent: 120,
  tcpSynRecv: 60,
  tcpEstablished: 432000,
  tcpFinWait: 120,
  tcpCloseWait: 60,
  tcpLastAck: 30,
  tcpTimeWait: 120,
  tcpClose: 10,
  udp: 30,
  udpReplied: 120,
  icmp: 30,
});

export interface CtEntryInfo {
  proto: number;
  /** Original direction. */
  src: number;
  dst: number;
  sport: number;
  dport: number;
  /** Reply direction (as a packet from the responder would carry it). */
  replySrc: number;
  replyDst: number;
  replySport: number;
  replyDport: number;
  /** TCP state name, or undefined for UDP/ICMP. */
  tcpState: string | undefined;
  /** Absolute expiry time, seconds. */
  expires: number;
  seenReply: boolean;
  assured: boolean;
  mark: number;
}

/**
 * How many entries at the head of the evictable list eviction looks at for an
 * expired one (the kernel's early_drop looks at NF_CT_EVICTION_RANGE = 8).
 */
export const EVICT_SAMPLE = 8;

/** Seconds between two moves of an entry to the tail of its LRU list (see the header). */
export const LRU_STEP = 1;

/** The cell's default table size (`--conntrack-max`); the kernel's nf_conntrack_max is often the same. */
export const DEFAULT_CONNTRACK_MAX = 262_144;

/** `list` returns this cursor when the walk is complete. */
export const CT_LIST_DONE = -1;

/**
 * What `list` keeps, as `conntrack -L` filters: every given field must match
 * the original direction. Addresses are u32 with an optional prefix length
 * (`conntrack -L --src 10.255.1.0 --mask-src 255.255.255.0`).
 */
export interface CtFilter {
  proto?: number;
  src?: number;
  srcPrefixLen?: number;
  dst?: number;
  dstPrefixLen?: number;
  sport?: number;
  dport?: number;
  /** TCP state number (TCP_ESTABLISHED …); only TCP entries match. */
  tcpState?: number;
  mark?: number;
}

// Entry flag bits.
const F_SEEN_REPLY = 1;
const F_ASSURED = 2;
const F_FIN_ORIG = 4;
const F_FIN_REPLY = 8;
const F_LASTFIN_REPLY = 16;
/** Opened by an ACK, mid-stream (tcp_new's loose pickup): the kernel tracks its window liberally (IP_CT_TCP_FLAG_BE_LIBERAL). */
const F_LOOSE = 32;

// What the window check (see unreplied) makes of a TCP packet.
const W_OK = 0;
const W_INVALID = 1; // INVALID: nothing changes
const W_IGNORE = 2; // accepted as part of the connection, but nothing changes (NFCT_TCP_IGNORE)
const W_KILL = 3; // the connection is deleted (a RST before any reply)

/** tcp_in_window's MAXACKWINCONST: how far below the receiver's end an ACK may lag. */
const MAX_ACK_WINDOW = 66000;

/** Sequence-number order (RFC 1982, the kernel's before()): a comes before b. */
function seqBefore(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

// TCP packet kinds for the transition table.
const K_SYN = 0;
const K_SYNACK = 1;
const K_FIN = 2;
const K_ACK = 3;
const K_RST = 4;
const K_NONE = 5;

function tcpKind(flags: number): number {
  if (flags & TCP_RST) return K_RST;
  if (flags & TCP_SYN) return flags & TCP_ACK ? K_SYNACK : K_SYN;
  if (flags & TCP_FIN) return K_FIN;
  if (flags & TCP_ACK) return K_ACK;
  return K_NONE;
}

function fmix(h: number): number {
  // murmur3's 32-bit finalizer: every input bit affects every output bit.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mixIn(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

// Entry layout: 8 int32 per entry (two entries per 64-byte cache line) and 2
// float64 per entry, so checking a candidate costs one or two cache misses
// instead of one per field (separate arrays per field measured ~2x slower at
// 100k flows in scripts/bench-lookup.mjs on a busy 2-core machine). The LRU
// links live in the same line as the tuple, so moving an entry touches only
// its neighbours' lines.
const E_STRIDE = 8;
const E_SRC = 0;
const E_DST = 1;
const E_PORTS = 2; // sport << 16 | dport
const E_META = 3; // proto | tcpState << 8 | flags << 16
const E_MARK = 4;
const E_LIST = 5; // 0 = free, L_EVICTABLE or L_PROTECTED: the list the entry is on
const E_PREV = 6; // LRU links: entry id, -1 = none
const E_NEXT = 7;
const T_EXPIRES = 0;
const T_LAST = 1; // when the entry was last put at the tail of its list (to LRU_STEP)

const L_EVICTABLE = 1;
const L_PROTECTED = 2;

/** How far back `link` walks to keep a list sorted when the clock went back (see link). */
const LINK_WALK_MAX = 64;

/** Entries `list` examines per call at most, whatever the filter, so one call stays short. */
const LIST_SCAN_MAX = 65_536;

export class ConnTrack {
  readonly capacity: number;
  /** Entries evicted because the table was full. */
  evictions = 0;
  /** Of `evictions`, those that were ASSURED and not closing (the table is too small for the live load). */
  evictionsProtected = 0;
  /**
   * While set, process() answers as it would but changes nothing: no entry
   * created, updated, refreshed or deleted (`silkworm trace`'s dry run).
   */
  readOnly = false;

  private readonly t: CtTimeouts;
  private readonly seed: number;
  private readonly ent: Int32Array;
  private readonly times: Float64Array;
  // The index, 2 int32 per slot: [ref + 1 (0 = empty), full hash]. Keeping
  // the hash beside the ref lets a probe skip non-matching entries without
  // touching them, and lets backward-shift deletion find home slots.
  private readonly index: Int32Array;
  private readonly iMask: number;
  // Free entry ids (a stack).
  private readonly freeIds: Int32Array;
  // Per entry opened by a SYN: the end (sequence number after the last byte,
  // SYN counted) of what the opener has sent — the kernel's seen[0].td_end,
  // all of its window tracking this table keeps (see unreplied()).
  private readonly tdEnd: Int32Array;
  private freeTop = 0;
  private count = 0;
  // Heads and tails of the two LRU lists, indexed by list number (1, 2).
  private readonly head = new Int32Array(3).fill(-1);
  private readonly tail = new Int32Array(3).fill(-1);

  constructor(opts: { capacity?: number; timeouts?: Partial<CtTimeouts>; seed?: number } = {}) {
    // A bare table defaults to 65,536; the cell passes its own size (DEFAULT_CONNTRACK_MAX unless configured).
    const cap = opts.capacity ?? 65536;
    if (!Number.isInteger(cap) || cap < 1 || cap > 1 << 24) {
      throw new RangeError(`conntrack capacity must be an integer in 1..16777216, got ${cap}`);
    }
    this.capacity = cap;
    const t = { ...DEFAULT_CT_TIMEOUTS, ...(opts.timeouts ?? {}) };
    for (const [k, v] of Object.entries(t)) {
      if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new RangeError(`conntrack timeout ${k} must be a positive number of seconds, got ${v}`);
    }
    this.t = t;
    this.seed = (opts.seed ?? (Math.random() * 0x100000000) >>> 0) | 0;
    this.ent = new Int32Array(cap * E_STRIDE);
    // A free entry "expires" at +Infinity, so the expiry sweep reads only this array.
    this.times = new Float64Array(cap * 2).fill(Infinity);
    let size = 16;
    while (size < cap * 4) size *= 2; // 2 refs per entry at load <= 1/2
    this.index = new Int32Array(size * 2);
    this.iMask = size - 1;
    this.freeIds = new Int32Array(cap);
    this.tdEnd = new Int32Array(cap);
    this.resetFree();
  }

  private resetFree(): void {
    const cap = this.capacity;
    // Pop order 0, 1, 2, …: ids are handed out in order (listing order follows creation on a fresh table).
    for (let i = 0; i < cap; i++) this.freeIds[i] = cap - 1 - i;
    this.freeTop = cap;
  }

  get size(): number {
    return this.count;
  }

  /** Bytes of typed arrays this table holds (allocated once, whatever its fill). */
  get footprintBytes(): number {
    return this.ent.byteLength + this.times.byteLength + this.index.byteLength + this.freeIds.byteLength + this.tdEnd.byteLength;
  }

  private hash(src: number, dst: number, proto: number, sport: number, dport: number): number {
    let h = this.seed;
    h = mixIn(h, src);
    h = mixIn(h, dst);
    h = mixIn(h, ((sport & 0xffff) << 16) | (dport & 0xffff));
    h = mixIn(h, proto);
    return fmix(h) | 0;
  }

  private flags(id: number): number {
    return (this.ent[id * E_STRIDE + E_META]! >>> 16) & 0xff;
  }

  private setFlags(id: number, f: number): void {
    const o = id * E_STRIDE + E_META;
    this.ent[o] = (this.ent[o]! & 0xffff) | (f << 16);
  }

  private tcpState(id: number): number {
    return (this.ent[id * E_STRIDE + E_META]! >>> 8) & 0xff;
  }

  /** Does ref's directional tuple equal this one? (src/dst as int32, ports packed) */
  private refMatches(ref: number, src: number, dst: number, proto: number, ports: number): boolean {
    const o = (ref >>> 1) * E_STRIDE;
    const ent = this.ent;
    if ((ent[o + E_META]! & 0xff) !== proto) return false;
    if ((ref & 1) === 0) return ent[o + E_SRC] === src && ent[o + E_DST] === dst && ent[o + E_PORTS] === ports;
    if (ent[o + E_DST] !== src || ent[o + E_SRC] !== dst) return false;
    const p = ent[o + E_PORTS]!;
    // ICMP echo keeps (id, 0) in both directions; other protocols swap the ports.
    return proto === Wire.IPPROTO_ICMP ? p === ports : ((p << 16) | (p >>> 16)) === ports;
  }

  /** The ref for this directional tuple, or -1. */
  private find(src: number, dst: number, proto: number, sport: number, dport: number): number {
    const h = this.hash(src, dst, proto, sport, dport);
    const s = src | 0;
    const d = dst | 0;
    const ports = ((sport & 0xffff) << 16) | (dport & 0xffff);
    const index = this.index;
    const mask = this.iMask;
    let i = h & mask;
    for (;;) {
      const v = index[2 * i]!;
      if (v === 0) return -1;
      if (index[2 * i + 1] === h && this.refMatches(v - 1, s, d, proto, ports)) return v - 1;
      i = (i + 1) & mask;
    }
  }

  private indexInsert(ref: number, h: number): void {
    const mask = this.iMask;
    let i = h & mask;
    while (this.index[2 * i] !== 0) i = (i + 1) & mask;
    this.index[2 * i] = ref + 1;
    this.index[2 * i + 1] = h;
  }

  private indexRemove(ref: number, h: number): void {
    const index = this.index;
    const mask = this.iMask;
    let i = h & mask;
    while (index[2 * i] !== ref + 1) {
      if (index[2 * i] === 0) return; // not indexed (cannot happen; stay safe)
      i = (i + 1) & mask;
    }
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const v = index[2 * j]!;
      if (v === 0) break;
      const home = index[2 * j + 1]! & mask;
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        index[2 * hole] = v;
        index[2 * hole + 1] = index[2 * j + 1]!;
        hole = j;
      }
    }
    index[2 * hole] = 0;
  }

  /** Hashes of entry `id`'s two directions. */
  private origHash(id: number): number {
    const o = id * E_STRIDE;
    const p = this.ent[o + E_PORTS]!;
    return this.hash(this.ent[o + E_SRC]!, this.ent[o + E_DST]!, this.ent[o + E_META]! & 0xff, p >>> 16, p & 0xffff);
  }

  private replyHash(id: number): number {
    const o = id * E_STRIDE;
    const p = this.ent[o + E_PORTS]!;
    const proto = this.ent[o + E_META]! & 0xff;
    const icmp = proto === Wire.IPPROTO_ICMP;
    return this.hash(this.ent[o + E_DST]!, this.ent[o + E_SRC]!, proto, icmp ? p >>> 16 : p & 0xffff, icmp ? p & 0xffff : p >>> 16);
  }

  // --- LRU lists -----------------------------------------------------------

  /** The list entry `id` belongs on by its state: protected = ASSURED and not closing. */
  private listFor(id: number): number {
    const meta = this.ent[id * E_STRIDE + E_META]!;
    if (!((meta >>> 16) & F_ASSURED)) return L_EVICTABLE;
    if ((meta & 0xff) === Wire.IPPROTO_TCP && ((meta >>> 8) & 0xff) !== TCP_ESTABLISHED) return L_EVICTABLE;
    return L_PROTECTED;
  }

  private unlink(id: number): void {
    const ent = this.ent;
    const o = id * E_STRIDE;
    const l = ent[o + E_LIST]!;
    const prev = ent[o + E_PREV]!;
    const next = ent[o + E_NEXT]!;
    if (prev >= 0) ent[prev * E_STRIDE + E_NEXT] = next;
    else this.head[l] = next;
    if (next >= 0) ent[next * E_STRIDE + E_PREV] = prev;
    else this.tail[l] = prev;
    ent[o + E_LIST] = 0;
  }

  /**
   * Put `id` (unlinked) on list `l`, stamped `now`, keeping the list sorted by
   * stamp: at the tail when time only moves forward (the cell's clock is
   * monotonic), walking back from the tail otherwise — at most LINK_WALK_MAX
   * steps; further back it takes the stamp of where it stopped, so a clock
   * that jumped back costs O(1) per packet, not a walk over the table.
   */
  private link(id: number, l: number, now: number): void {
    const ent = this.ent;
    const times = this.times;
    const o = id * E_STRIDE;
    let after = this.tail[l]!;
    for (let k = 0; after >= 0 && times[after * 2 + T_LAST]! > now; k++) {
      if (k === LINK_WALK_MAX) {
        now = times[after * 2 + T_LAST]!;
        break;
      }
      after = ent[after * E_STRIDE + E_PREV]!;
    }
    times[id * 2 + T_LAST] = now;
    const next = after >= 0 ? ent[after * E_STRIDE + E_NEXT]! : this.head[l]!;
    ent[o + E_PREV] = after;
    ent[o + E_NEXT] = next;
    if (after >= 0) ent[after * E_STRIDE + E_NEXT] = id;
    else this.head[l] = id;
    if (next >= 0) ent[next * E_STRIDE + E_PREV] = id;
    else this.tail[l] = id;
    ent[o + E_LIST] = l;
  }

  /** After a packet: move `id` to the list its state calls for, or to its tail once per LRU_STEP. */
  private touch(id: number, now: number): void {
    const l = this.listFor(id);
    if (l === this.ent[id * E_STRIDE + E_LIST] && now - this.times[id * 2 + T_LAST]! < LRU_STEP) return;
    this.unlink(id);
    this.link(id, l, now);
  }

  private removeEntry(id: number): void {
    this.indexRemove(id * 2, this.origHash(id));
    this.indexRemove(id * 2 + 1, this.replyHash(id));
    this.unlink(id);
    this.times[id * 2 + T_EXPIRES] = Infinity;
    this.freeIds[this.freeTop++] = id;
    this.count--;
  }

  /** Which entry a full table gives up for a new flow (see the header). */
  private victim(now: number): number {
    const times = this.times;
    const ev = this.head[L_EVICTABLE]!;
    let id = ev;
    for (let k = 0; k < EVICT_SAMPLE && id >= 0; k++) {
      if (times[id * 2 + T_EXPIRES]! <= now) return id;
      id = this.ent[id * E_STRIDE + E_NEXT]!;
    }
    const pr = this.head[L_PROTECTED]!;
    if (pr >= 0 && times[pr * 2 + T_EXPIRES]! <= now) return pr;
    return ev >= 0 ? ev : pr;
  }

  /** A free entry id, evicting one when the table is full. */
  private alloc(now: number): number {
    if (this.freeTop === 0) {
      const v = this.victim(now);
      if (this.ent[v * E_STRIDE + E_LIST] === L_PROTECTED && this.times[v * 2 + T_EXPIRES]! > now) this.evictionsProtected++;
      this.removeEntry(v);
      this.evictions++;
    }
    return this.freeIds[--this.freeTop]!;
  }

  private timeoutFor(id: number): number {
    const meta = this.ent[id * E_STRIDE + E_META]!;
    const proto = meta & 0xff;
    const t = this.t;
    if (proto === Wire.IPPROTO_TCP) {
      switch ((meta >>> 8) & 0xff) {
        case TCP_SYN_SENT:
          return t.tcpSynSent;
        case TCP_SYN_RECV:
          return t.tcpSynRecv;
        case TCP_ESTABLISHED:
          return t.tcpEstablished;
        case TCP_FIN_WAIT:
          return t.tcpFinWait;
        case TCP_CLOSE_WAIT:
          return t.tcpCloseWait;
        case TCP_LAST_ACK:
          return t.tcpLastAck;
        case TCP_TIME_WAIT:
          return t.tcpTimeWait;
        default:
          return t.tcpClose;
      }
    }
    if (proto === Wire.IPPROTO_UDP) return (meta >>> 16) & F_SEEN_REPLY ? t.udpReplied : t.udp;
    return t.icmp;
  }

  /**
   * A TCP packet (valid flags) on entry `id` before the entry has seen a
   * reply, as nf_conntrack_tcp_packet and tcp_in_window (Linux 6.x) judge it:
   * - opened mid-stream by an ACK (loose pickup, liberal window): a RST from
   *   either side deletes it; anything else goes on (W_OK);
   * - opened by a SYN (SYN_SENT), from the opener: another SYN is in window
   *   if it ends after what was sent (it re-initialises the end) or starts
   *   at or before that end; a SYN+ACK, FIN+ACK or ACK is INVALID (the
   *   state table's sIV); a RST must start at or before the end (or at 0)
   *   and acknowledge nothing the silent peer could have sent (no ACK, ACK 0,
   *   or within MAX_ACK_WINDOW below 0: else INVALID or, below, ignored) —
   *   then it deletes the entry;
   * - opened by a SYN, the first reply is a RST: deletes the entry if its ACK
   *   (if any) lies within MAX_ACK_WINDOW at or below the opener's end (one
   *   past it after a keepalive); else INVALID (past it) or ignored.
   * Window scaling, SACK and the receive window are not tracked: they play
   * no part in these cases (the silent side's window is unknown, so the
   * kernel skips the receive-window check).
   */
  private unreplied(id: number, dir: number, flags: number, seq: number, ack: number, segLen: number): number {
    const kind = tcpKind(flags);
    if (this.flags(id) & F_LOOSE) return kind === K_RST ? W_KILL : W_OK;
    if (this.tcpState(id) !== TCP_SYN_SENT) return W_OK;
    const tdEnd = this.tdEnd[id]!;
    const acks = (flags & TCP_ACK) !== 0 && ack !== 0; // an RST|ACK with ACK 0 is a broken stack's: no ACK
    if (dir === 0) {
      if (kind === K_SYN) {
        const end = (seq + segLen + 1) | 0;
        if (seqBefore(tdEnd, end)) {
          if (!this.readOnly) this.tdEnd[id] = end;
          return W_OK;
        }
        return seqBefore(seq, tdEnd + 1) ? W_OK : W_INVALID;
      }
      if (kind !== K_RST) return W_INVALID;
      if (seq !== 0 && !seqBefore(seq, tdEnd + 1)) return W_INVALID;
      if (!acks) return W_KILL;
      // The peer has sent nothing: its end is 0.
      if (!seqBefore(ack, 1)) return W_INVALID;
      return seqBefore(-MAX_ACK_WINDOW - 1, ack) ? W_KILL : W_IGNORE;
    }
    if (kind !== K_RST) return W_OK;
    if (!acks) return W_KILL;
    const end = ack === ((tdEnd + 1) | 0) ? tdEnd + 1 : tdEnd;
    if (!seqBefore(ack, end + 1)) return W_INVALID;
    return seqBefore(end - MAX_ACK_WINDOW - 1, ack) ? W_KILL : W_IGNORE;
  }

  /** Apply one TCP packet (kind, direction) to entry `id`'s state. */
  private tcpUpdate(id: number, kind: number, dir: number): void {
    const s = this.tcpState(id);
    let f = this.flags(id);
    let n = s;
    switch (kind) {
      case K_RST:
        n = TCP_CLOSE;
        break;
      case K_SYN:
        if (dir === 0) {
          if (s === TCP_TIME_WAIT || s === TCP_CLOSE) {
            // The 4-tuple is reused for a new connection (RFC 9293 §3.6.1).
            n = TCP_SYN_SENT;
            f = 0;
          }
        } else if (s === TCP_SYN_SENT) {
          n = TCP_SYN_RECV; // simultaneous open
        }
        break;
      case K_SYNACK:
        if (dir === 1 && s === TCP_SYN_SENT) n = TCP_SYN_RECV;
        break;
      case K_FIN:
        f |= dir === 0 ? F_FIN_ORIG : F_FIN_REPLY;
        if ((f & (F_FIN_ORIG | F_FIN_REPLY)) === (F_FIN_ORIG | F_FIN_REPLY)) {
          if (s !== TCP_TIME_WAIT && s !== TCP_CLOSE && s !== TCP_LAST_ACK) {
            n = TCP_LAST_ACK;
            f = dir === 1 ? f | F_LASTFIN_REPLY : f & ~F_LASTFIN_REPLY;
          }
        } else if (s === TCP_SYN_RECV || s === TCP_ESTABLISHED) {
          n = TCP_FIN_WAIT;
        }
        break;
      case K_ACK:
        if (s === TCP_SYN_RECV) {
          if (dir === 0) n = TCP_ESTABLISHED;
        } else if (s === TCP_FIN_WAIT) {
          // The side that did not send the FIN acknowledges it.
          if (f & (dir === 0 ? F_FIN_REPLY : F_FIN_ORIG)) n = TCP_CLOSE_WAIT;
        } else if (s === TCP_LAST_ACK) {
          const lastFinDir = f & F_LASTFIN_REPLY ? 1 : 0;
          if (dir !== lastFinDir) n = TCP_TIME_WAIT;
        }
        break;
      default:
        break;
    }
    if (n === TCP_ESTABLISHED && f & F_SEEN_REPLY) f |= F_ASSURED;
    this.ent[id * E_STRIDE + E_META] = Wire.IPPROTO_TCP | (n << 8) | (f << 16);
  }

  /**
   * Track one packet. Finds the flow in either direction; when there is none
   * and `create` is set, creates it with this packet as the original
   * direction (`mark` is recorded for `show conntrack`). Updates TCP state and
   * the expiry. Returns Reply for the reply direction, Established for the
   * original direction after a reply was seen, Invalid for a TCP packet the
   * kernel's conntrack calls INVALID (see the header: then nothing is created
   * or changed, `create` or not), New otherwise.
   * TCP only: `seq`, `ack` (u32) and `segLen` (payload bytes; -1 for a data
   * offset below 5 or past the packet, which the kernel calls INVALID) feed
   * the check that deletes a connection on a RST before any reply (see
   * unreplied); left out, they describe a segment with no payload at
   * sequence 0 that acknowledges nothing.
   * Allocation-free.
   */
  process(
    src: number,
    dst: number,
    proto: number,
    sport: number,
    dport: number,
    tcpFlags: number,
    now: number,
    create: boolean,
    mark = 0,
    seq = 0,
    ack = 0,
    segLen = 0,
  ): CtState {
    // tcp_error: a malformed header or a flag mix the kernel never accepts touches no entry.
    if (proto === Wire.IPPROTO_TCP && (segLen < 0 || !tcpFlagsValid(tcpFlags))) return CtState.Invalid;
    let ref = this.find(src, dst, proto, sport, dport);
    if (ref >= 0 && this.times[(ref >>> 1) * 2 + T_EXPIRES]! <= now) {
      if (!this.readOnly) this.removeEntry(ref >>> 1);
      ref = -1;
    }
    if (ref < 0) {
      let tcpState = 0;
      if (proto === Wire.IPPROTO_TCP) {
        // tcp_new: only a SYN or (loose pickup) an ACK opens a connection.
        const kind = tcpKind(tcpFlags);
        if (kind === K_SYN) tcpState = TCP_SYN_SENT;
        else if (kind === K_ACK) tcpState = TCP_ESTABLISHED;
        else return CtState.Invalid;
      }
      if (!create || this.readOnly) return CtState.New;
      const id = this.alloc(now);
      const o = id * E_STRIDE;
      const ent = this.ent;
      ent[o + E_SRC] = src | 0;
      ent[o + E_DST] = dst | 0;
      ent[o + E_PORTS] = ((sport & 0xffff) << 16) | (dport & 0xffff);
      ent[o + E_META] = (proto & 0xff) | (tcpState << 8) | ((tcpState === TCP_ESTABLISHED ? F_LOOSE : 0) << 16);
      ent[o + E_MARK] = mark | 0;
      if (tcpState === TCP_SYN_SENT) this.tdEnd[id] = (seq + segLen + 1) | 0;
      this.link(id, L_EVICTABLE, now);
      this.times[id * 2 + T_EXPIRES] = now + this.timeoutFor(id);
      this.indexInsert(id * 2, this.origHash(id));
      this.indexInsert(id * 2 + 1, this.replyHash(id));
      this.count++;
      return CtState.New;
    }
    const id = ref >>> 1;
    const dir = ref & 1;
    if (proto === Wire.IPPROTO_TCP && !(this.flags(id) & F_SEEN_REPLY)) {
      const w = this.unreplied(id, dir, tcpFlags, seq, ack, segLen);
      if (w === W_INVALID) return CtState.Invalid;
      if (w === W_IGNORE) return dir === 1 ? CtState.Reply : CtState.New;
      if (w === W_KILL) {
        // "If only reply is a RST, we can consider ourselves not to have an
        // established connection [...] so we can delete the conntrack
        // immediately" — whichever side sent it. The RST itself still
        // belongs to the connection.
        if (!this.readOnly) this.removeEntry(id);
        return dir === 1 ? CtState.Reply : CtState.New;
      }
    }
    if (this.readOnly) return dir === 1 ? CtState.Reply : this.flags(id) & F_SEEN_REPLY ? CtState.Established : CtState.New;
    if (dir === 1) this.setFlags(id, this.flags(id) | F_SEEN_REPLY);
    if (proto === Wire.IPPROTO_TCP) {
      const was = this.tcpState(id);
      this.tcpUpdate(id, tcpKind(tcpFlags), dir);
      // A SYN reopening a closed connection starts a new opener's end.
      if (was !== TCP_SYN_SENT && this.tcpState(id) === TCP_SYN_SENT) this.tdEnd[id] = (seq + segLen + 1) | 0;
    } else if (proto === Wire.IPPROTO_UDP && this.flags(id) & F_SEEN_REPLY) {
      this.setFlags(id, this.flags(id) | F_ASSURED);
    }
    this.touch(id, now);
    this.times[id * 2 + T_EXPIRES] = now + this.timeoutFor(id);
    if (dir === 1) return CtState.Reply;
    return this.flags(id) & F_SEEN_REPLY ? CtState.Established : CtState.New;
  }

  /**
   * True when a live TCP entry for this tuple (either direction) has seen a reply and is ESTABLISHED,
   * and the table is writable: then process() for a plain ACK segment (no SYN, FIN or RST) answers
   * Reply or Established whatever its seq, ack and length (unreplied() is not consulted), leaves the
   * state ESTABLISHED and only touches the entry — so one call at `now` leaves the table exactly as n
   * such calls at `now` would (ingress.ts whole runs rely on this). Changes nothing.
   */
  settled(src: number, dst: number, sport: number, dport: number, now: number): boolean {
    if (this.readOnly) return false;
    const ref = this.find(src, dst, Wire.IPPROTO_TCP, sport, dport);
    if (ref < 0) return false;
    const id = ref >>> 1;
    if (this.times[id * 2 + T_EXPIRES]! <= now) return false;
    return (this.flags(id) & F_SEEN_REPLY) !== 0 && this.tcpState(id) === TCP_ESTABLISHED;
  }

  /**
   * For an ICMP error quoting a packet (qsrc → qdst, qproto, qsport, qdport):
   * true if that packet belongs to a tracked flow in either direction — the
   * kernel's RELATED. With `now`, an expired entry does not count.
   * Allocation-free.
   */
  related(qsrc: number, qdst: number, qproto: number, qsport: number, qdport: number, now = -Infinity): boolean {
    const ref = this.find(qsrc, qdst, qproto, qsport, qdport);
    return ref >= 0 && this.times[(ref >>> 1) * 2 + T_EXPIRES]! > now;
  }

  /**
   * Remove every entry expired at `now`; returns how many. Call from one
   * coarse timer. Reads one float per slot (free slots hold +Infinity).
   */
  tick(now: number): number {
    let removed = 0;
    const times = this.times;
    for (let id = 0; id < this.capacity; id++) {
      if (times[id * 2 + T_EXPIRES]! <= now) {
        this.removeEntry(id);
        removed++;
      }
    }
    return removed;
  }

  clear(): void {
    this.index.fill(0);
    this.ent.fill(0);
    this.times.fill(Infinity);
    this.resetFree();
    this.count = 0;
    this.head.fill(-1);
    this.tail.fill(-1);
  }

  /** Entry `id` as data. */
  private info(id: number): CtEntryInfo {
    const ent = this.ent;
    const o = id * E_STRIDE;
    const meta = ent[o + E_META]!;
    const proto = meta & 0xff;
    const f = (meta >>> 16) & 0xff;
    const icmp = proto === Wire.IPPROTO_ICMP;
    const p = ent[o + E_PORTS]!;
    const sport = p >>> 16;
    const dport = p & 0xffff;
    return {
      proto,
      src: ent[o + E_SRC]! >>> 0,
      dst: ent[o + E_DST]! >>> 0,
      sport,
      dport,
      replySrc: ent[o + E_DST]! >>> 0,
      replyDst: ent[o + E_SRC]! >>> 0,
      replySport: icmp ? sport : dport,
      replyDport: icmp ? dport : sport,
      tcpState: proto === Wire.IPPROTO_TCP ? TCP_STATE_NAMES[(meta >>> 8) & 0xff] : undefined,
      expires: this.times[id * 2 + T_EXPIRES]!,
      seenReply: (f & F_SEEN_REPLY) !== 0,
      assured: (f & F_ASSURED) !== 0,
      mark: ent[o + E_MARK]! >>> 0,
    };
  }

  /**
   * One slice of a listing: from `cursor` (0 to start), push at most `max`
   * entries live at `now` that match `filter` onto `out`, examining at most
   * `scanMax` entry slots; returns the cursor to pass next, or CT_LIST_DONE.
   * Entries come in id order (not sorted). An entry that lives from the first
   * call to the last is listed exactly once; one created or removed meanwhile
   * may or may not be.
   */
  list(cursor: number, max: number, now: number, filter: CtFilter = {}, out: CtEntryInfo[] = [], scanMax = LIST_SCAN_MAX): number {
    if (!Number.isInteger(cursor) || cursor < 0 || cursor > this.capacity) {
      throw new RangeError(`conntrack cursor must be an integer in 0..${this.capacity}, got ${cursor}`);
    }
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`conntrack slice size must be a positive integer, got ${max}`);
    if (!Number.isInteger(scanMax) || scanMax < 1) throw new RangeError(`conntrack scan bound must be a positive integer, got ${scanMax}`);
    const m = compileFilter(filter);
    const ent = this.ent;
    const times = this.times;
    const end = Math.min(this.capacity, cursor + scanMax);
    let n = 0;
    let id = cursor;
    for (; id < end && n < max; id++) {
      const o = id * E_STRIDE;
      if (!ent[o + E_LIST] || times[id * 2 + T_EXPIRES]! <= now) continue;
      const meta = ent[o + E_META]!;
      if (m.proto >= 0 && (meta & 0xff) !== m.proto) continue;
      if (((ent[o + E_SRC]! ^ m.src) & m.srcMask) !== 0) continue;
      if (((ent[o + E_DST]! ^ m.dst) & m.dstMask) !== 0) continue;
      const p = ent[o + E_PORTS]!;
      if (m.sport >= 0 && p >>> 16 !== m.sport) continue;
      if (m.dport >= 0 && (p & 0xffff) !== m.dport) continue;
      if (m.tcpState >= 0 && ((meta & 0xff) !== Wire.IPPROTO_TCP || ((meta >>> 8) & 0xff) !== m.tcpState)) continue;
      if (m.mark >= 0 && ent[o + E_MARK]! >>> 0 !== m.mark) continue;
      out.push(this.info(id));
      n++;
    }
    return id >= this.capacity ? CT_LIST_DONE : id;
  }

  /** Live entries at `now`, sorted by protocol then original tuple — for a small table's `show conntrack`. */
  entries(now: number, filter: CtFilter = {}): CtEntryInfo[] {
    const out: CtEntryInfo[] = [];
    for (let c = 0; c !== CT_LIST_DONE; ) c = this.list(c, this.capacity, now, filter, out);
    return out.sort(
      (a, b) => a.proto - b.proto || a.src - b.src || a.dst - b.dst || a.sport - b.sport || a.dport - b.dport,
    );
  }
}

interface CompiledFilter {
  proto: number;
  src: number;
  srcMask: number;
  dst: number;
  dstMask: number;
  sport: number;
  dport: number;
  tcpState: number;
  mark: number;
}

function maskOf(len: number | undefined, what: string): number {
  const l = len ?? 32;
  if (!Number.isInteger(l) || l < 0 || l > 32) throw new RangeError(`conntrack filter ${what} prefix length must be 0..32, got ${len}`);
  return l === 0 ? 0 : (0xffffffff << (32 - l)) | 0;
}

function intOr(v: number | undefined, lo: number, hi: number, what: string): number {
  if (v === undefined) return -1;
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`conntrack filter ${what} must be an integer in ${lo}..${hi}, got ${v}`);
  return v;
}

/** A filter as masks and numbers (-1 = any), checked once per slice, not per entry. */
function compileFilter(f: CtFilter): CompiledFilter {
  const srcMask = f.src === undefined ? 0 : maskOf(f.srcPrefixLen, 'src');
  const dstMask = f.dst === undefined ? 0 : maskOf(f.dstPrefixLen, 'dst');
  return {
    proto: intOr(f.proto, 0, 255, 'proto'),
    src: intOr(f.src, 0, 0xffffffff, 'src') | 0,
    srcMask,
    dst: intOr(f.dst, 0, 0xffffffff, 'dst') | 0,
    dstMask,
    sport: intOr(f.sport, 0, 65535, 'sport'),
    dport: intOr(f.dport, 0, 65535, 'dport'),
    tcpState: intOr(f.tcpState, 0, TCP_STATE_NAMES.length - 1, 'TCP state'),
    mark: intOr(f.mark, 0, 0xffffffff, 'mark'),
  };
}

const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };

function tupleText(proto: number, src: number, dst: number, sport: number, dport: number, reply: boolean): string {
  const addrs = `src=${u32ToIp(src)} dst=${u32ToIp(dst)}`;
  // conntrack prints ICMP echo as type/code/id: 8 for the request, 0 for the reply.
  if (proto === Wire.IPPROTO_ICMP) return `${addrs} type=${reply ? 0 : 8} code=0 id=${sport}`;
  return `${addrs} sport=${sport} dport=${dport}`;
}

/**
 * One line as `conntrack -L` prints it:
 * `tcp      6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED] mark=0 use=1`
 * (`[UNREPLIED]` after the original tuple until a reply is seen).
 */
export function formatConntrack(e: CtEntryInfo, now: number): string {
  const name = PROTO_NAMES[e.proto] ?? 'unknown';
  const left = Math.max(0, Math.floor(e.expires - now));
  let s = `${name.padEnd(8)} ${e.proto} ${left} `;
  if (e.tcpState !== undefined) s += `${e.tcpState} `;
  s += tupleText(e.proto, e.src, e.dst, e.sport, e.dport, false);
  if (!e.seenReply) s += ' [UNREPLIED]';
  s += ' ' + tupleText(e.proto, e.replySrc, e.replyDst, e.replySport, e.replyDport, true);
  if (e.assured) s += ' [ASSURED]';
  s += ` mark=${e.mark} use=1`;
  return s;
}

/** A JSON-friendly form for `show conntrack --json`. */
export function conntrackJson(e: CtEntryInfo, now: number) {
  return {
    proto: PROTO_NAMES[e.proto] ?? String(e.proto),
    state: e.tcpState ?? null,
    timeout: Math.max(0, Math.floor(e.expires - now)),
    src: u32ToIp(e.src),
    dst: u32ToIp(e.dst),
    sport: e.sport,
    dport: e.dport,
    replySrc: u32ToIp(e.replySrc),
    replyDst: u32ToIp(e.replyDst),
    replySport: e.replySport,
    replyDport: e.replyDport,
    seenReply: e.seenReply,
    assured: e.assured,
    mark: e.mark,
  };
}
