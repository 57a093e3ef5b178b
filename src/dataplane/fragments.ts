// IPv4 fragments under policy: reassemble for the decision, forward the
// original fragments — what Linux does for silk.
//
// Why this design. On a kernel silk cell the fragments of a datagram meet
// conntrack in PREROUTING, and nf_defrag_ipv4 (net/ipv4/netfilter/
// nf_defrag_ipv4.c ipv4_conntrack_defrag → ip_defrag with user
// IP_DEFRAG_CONNTRACK_IN) holds them until the datagram is complete. Policy
// (silk's FORWARD rules: conntrack state, the GBP mark, -p udp --dport) then
// judges the *whole* datagram, and on the way out ip_do_fragment's fast path
// re-splits it along the original fragment boundaries (the reassembled skb
// keeps the fragments on its frag_list; IPCB(skb)->frag_max_size forces the
// split). So every fragment of an allowed datagram is delivered, none of a
// denied one, and nothing is delivered before the last fragment arrives. The
// alternative — remember the first fragment's verdict by (src, dst, id,
// protocol) and pass later fragments on it — would deliver fragments of
// datagrams that never complete and would let a non-first fragment through
// on a verdict it was never judged by (RFC 1858's tiny/overlapping fragment
// attacks); it is also not what the container would see from the kernel.
//
// What is copied from the kernel (net/ipv4/ip_fragment.c, inet_fragment.c):
// - The key is (src, dst, id, protocol); a queue lives `timeoutMs` from its
//   first fragment (ipfrag_time, 30 s; not extended by later fragments:
//   "RFC791 is wrong proposing to prolongate timer each fragment arrival").
//   An expired queue is dropped silently: a forwarding conntrack user sends no
//   Time Exceeded (ip_expire, frag_expire_skip_icmp).
// - Memory: when the fragments held reach the budget (ipfrag_high_thresh,
//   4 MiB), new fragments are dropped until queues complete or expire
//   (inet_frag_find returns NULL; since Linux 4.17 there is no evictor and
//   ipfrag_low_thresh is unused).
// - ip_frag_queue: an MF fragment's end is rounded down to 8 bytes; a last
//   fragment ending before data already held, or a second different last
//   fragment, or data beyond a known end, or a zero-length fragment drops the
//   whole queue; inet_frag_queue_insert: a fragment overlapping held data
//   drops the whole queue (RFC 5722 for IPv6, applied to IPv4 too), an exact
//   or contained duplicate of a "run" of held data is dropped alone.
// - ip_frag_reasm: a datagram longer than 65,535 bytes is dropped; the ECN
//   bits of the fragments combine per RFC 3168 §5.3 (ip_frag_ecn_table): any
//   CE among ECT fragments marks the datagram CE, Not-ECT mixed with ECT drops it.
// - Output (ip_fraglist_init / ip_fraglist_prepare): each fragment leaves with
//   the first fragment's header (TTL, DS byte | the combined ECN, options —
//   non-copied ones turned to NOPs after the first, ip_options_fragment),
//   offset and MF from its place, DF clear, checksum recomputed.
//
// Not copied (written down as differences): ipfrag_max_dist (a queue reset
// when 64 other fragments from the same source arrive in between) is not
// tracked; memory is counted in 2 KiB blocks (a fragment from a 1500-byte
// link takes one; the kernel counts skb truesize, about 2.9 KiB for it, so the
// same budget holds about 1.4 times the kernel's fragments); a queue holds at most `maxFragmentsPerQueue` fragments (the
// kernel has no such cap, only the memory one) so that a queue of thousands
// of 8-byte fragments cannot make each insert walk a long list.
//
// Memory and time: everything lives in typed arrays sized once in the
// constructor — a slab of `budgetBytes` cut into blocks, fragment and queue
// records, an open-addressing hash — so add() allocates nothing and a flood
// of never-completed fragments can at most fill the slab and then is counted.
// Time is a parameter (`now`, milliseconds); expire(now) is driven by the
// cell's coarse tick.
import { internetChecksum } from '../wire/checksum.js';
import { copyBytes, finishFragmentHeader, nopUncopiedOptions } from './fragment-out.js';

/** What add() did with the fragment it was given. */
export const enum FragOutcome {
  /** Held; the datagram is not complete yet. */
  Held = 0,
  /** Held and the datagram is now complete: `completed` names its queue. */
  Complete = 1,
  /** Dropped; the reason was counted in `drops` (see FragDrop). */
  Dropped = 2,
}

/** Why fragments were dropped. Counted in frames (every fragment dropped, held ones included). */
export const enum FragDrop {
  /** Overlaps data already held: the whole queue is dropped (IPFRAG_OVERLAP). */
  Overlap = 0,
  /** Repeats data already held (or arrives after its datagram completed): dropped alone (IPFRAG_DUP). */
  Duplicate,
  /** Inconsistent: zero length, a second different last fragment, data past the end (ip_frag_queue discard_qp). */
  Invalid,
  /** Reassembled datagram would exceed 65,535 bytes (ip_frag_reasm out_oversize). */
  Oversize,
  /** Not-ECT mixed with ECT fragments (ip_frag_ecn_table: 0xff). */
  EcnMix,
  /** No room: the byte budget (ipfrag_high_thresh) or the queue table is full. */
  NoMemory,
  /** Never completed within the timeout (ipfrag_time). */
  Timeout,
  /** More fragments in one datagram than maxFragmentsPerQueue. */
  TooMany,
  Count,
}

/** Stable names for counters and metrics. */
export const FRAG_DROP_NAMES: readonly string[] = [
  'fragment-overlap',
  'fragment-duplicate',
  'fragment-invalid',
  'fragment-oversize',
  'fragment-ecn',
  'fragment-memory',
  'fragment-timeout',
  'fragment-too-many',
];

/** One-line help per FragDrop, for `show counters` and metrics. */
export const FRAG_DROP_HELP: readonly string[] = [
  'IPv4 fragment overlapping data already held; the whole datagram was dropped',
  'IPv4 fragment repeating data already held, or arriving after its datagram completed',
  'IPv4 fragment inconsistent with the others (zero length, two different ends, data past the end); the datagram was dropped',
  'IPv4 fragments adding up to more than 65535 bytes; the datagram was dropped',
  'IPv4 fragments mixing Not-ECT and ECT codepoints (RFC 3168 5.3); the datagram was dropped',
  'IPv4 fragment dropped: the reassembly memory budget or queue table was full',
  'IPv4 fragments of a datagram that did not complete within the reassembly timeout',
  'IPv4 fragments of a datagram with more fragments than the per-datagram limit',
];

export interface FragmentTableOptions {
  /** Bytes of fragment data held at most (ipfrag_high_thresh). Default 4 MiB. */
  budgetBytes?: number;
  /** Lifetime of a queue from its first fragment, ms (ipfrag_time). Default 30,000. */
  timeoutMs?: number;
  /** Datagrams being reassembled at once. Default 4,096. */
  maxQueues?: number;
  /** Fragments one datagram may have. Default 1,024. */
  maxFragmentsPerQueue?: number;
  /** Slab block size in bytes. Default 2,048: one block per fragment of a 1500-byte link, one native copy per block. */
  blockSize?: number;
  /** Hash seed (random by default so that ids cannot be chosen to collide). */
  seed?: number;
  /** Count drops into this array (FragDrop.Count entries; e.g. a subarray of the pipeline's drop table). */
  drops?: Float64Array;
}

const MAX_IP_LEN = 65535;
const ECN_NOT_ECT = 1;
const ECN_ECT_1 = 2;
const ECN_ECT_0 = 4;
const ECN_CE = 8;
const F_FIRST_IN = 1;
const F_LAST_IN = 2;
const NONE = -1;

/** ip_frag_ecn_table: the ECN bits to OR into the datagram, or -1 to drop it. */
function ecnCombine(bits: number): number {
  if (bits & ECN_NOT_ECT) return bits === ECN_NOT_ECT ? 0 : -1;
  if (bits & ECN_CE && bits & (ECN_ECT_0 | ECN_ECT_1)) return 3;
  return 0;
}

export class FragmentTable {
  readonly timeoutMs: number;
  readonly maxFragmentsPerQueue: number;
  readonly blockSize: number;
  readonly budgetBytes: number;
  /** Frames dropped, by FragDrop. */
  readonly drops: Float64Array;
  /** Datagrams completed (add() returned Complete). */
  reassembled = 0;
  /** After add() returns Complete: the queue handle to read, forward and release. */
  completed = NONE;

  // Slab of blocks; a fragment's bytes (its whole IP packet) live in a chain of blocks.
  private readonly slab: Uint8Array;
  private readonly blockNext: Int32Array;
  private freeBlock: number;
  private blocksUsed = 0;

  // Fragment records (one per held fragment), free list through fNext.
  private readonly fBlock: Int32Array;
  private readonly fLen: Int32Array; // bytes stored: header + trimmed payload
  private readonly fOff: Int32Array; // payload offset in the datagram
  private readonly fDataLen: Int32Array; // payload bytes (end - offset)
  private readonly fNext: Int32Array; // next fragment by offset within the queue
  private readonly fRunLen: Int32Array; // > 0 on a run head: bytes of the run
  private freeFrag: number;

  // Queue records.
  private readonly qSrc: Uint32Array;
  private readonly qDst: Uint32Array;
  private readonly qIdProto: Uint32Array; // id << 8 | protocol
  private readonly qCreated: Float64Array;
  private readonly qFlags: Uint8Array;
  private readonly qLen: Int32Array; // known datagram payload length so far
  private readonly qMeat: Int32Array; // payload bytes held
  private readonly qEcn: Uint8Array;
  private readonly qMaxSize: Int32Array; // largest fragment (header + payload)
  private readonly qMaxDfSize: Int32Array; // largest fragment with DF
  private readonly qCount: Int32Array;
  private readonly qMeta: Uint32Array; // the caller's word for the first fragment (add()'s meta)
  private readonly qFirst: Int32Array; // lowest-offset fragment
  private readonly qTail: Int32Array; // fragments_tail: the highest-offset fragment
  private readonly qRunHead: Int32Array; // last_run_head
  private readonly qHashed: Uint8Array;
  private readonly qInUse: Uint8Array;
  private readonly qLiveNext: Int32Array; // doubly linked list of live queues, oldest first
  private readonly qLivePrev: Int32Array;
  private liveHead = NONE;
  private liveTail = NONE;
  private readonly freeQueues: Int32Array;
  private freeQueueCount: number;

  private cursorQ = NONE;
  private cursorI = 0;
  private cursorF = NONE;

  // Open-addressing hash (linear probing, backward-shift delete): slot → queue + 1.
  private readonly hash: Int32Array;
  private readonly hashMask: number;
  private readonly seed: number;

  constructor(opts: FragmentTableOptions = {}) {
    this.drops = opts.drops ?? new Float64Array(FragDrop.Count);
    this.budgetBytes = opts.budgetBytes ?? 4 * 1024 * 1024;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.maxFragmentsPerQueue = opts.maxFragmentsPerQueue ?? 1024;
    this.blockSize = opts.blockSize ?? 2048;
    const maxQueues = opts.maxQueues ?? 4096;
    if (this.blockSize < 64 || this.budgetBytes < this.blockSize || maxQueues < 1) {
      throw new Error('fragment table: budget must hold at least one block of 64+ bytes, and at least one queue');
    }
    const blocks = Math.floor(this.budgetBytes / this.blockSize);
    this.slab = new Uint8Array(blocks * this.blockSize);
    this.blockNext = new Int32Array(blocks);
    for (let i = 0; i < blocks; i++) this.blockNext[i] = i + 1 < blocks ? i + 1 : NONE;
    this.freeBlock = 0;

    // Every held fragment takes at least one block.
    this.fBlock = new Int32Array(blocks);
    this.fLen = new Int32Array(blocks);
    this.fOff = new Int32Array(blocks);
    this.fDataLen = new Int32Array(blocks);
    this.fNext = new Int32Array(blocks);
    this.fRunLen = new Int32Array(blocks);
    for (let i = 0; i < blocks; i++) this.fNext[i] = i + 1 < blocks ? i + 1 : NONE;
    this.freeFrag = 0;

    this.qSrc = new Uint32Array(maxQueues);
    this.qDst = new Uint32Array(maxQueues);
    this.qIdProto = new Uint32Array(maxQueues);
    this.qCreated = new Float64Array(maxQueues);
    this.qFlags = new Uint8Array(maxQueues);
    this.qLen = new Int32Array(maxQueues);
    this.qMeat = new Int32Array(maxQueues);
    this.qEcn = new Uint8Array(maxQueues);
    this.qMaxSize = new Int32Array(maxQueues);
    this.qMaxDfSize = new Int32Array(maxQueues);
    this.qCount = new Int32Array(maxQueues);
    this.qMeta = new Uint32Array(maxQueues);
    this.qFirst = new Int32Array(maxQueues);
    this.qTail = new Int32Array(maxQueues);
    this.qRunHead = new Int32Array(maxQueues);
    this.qHashed = new Uint8Array(maxQueues);
    this.qInUse = new Uint8Array(maxQueues);
    this.qLiveNext = new Int32Array(maxQueues);
    this.qLivePrev = new Int32Array(maxQueues);
    this.freeQueues = new Int32Array(maxQueues);
    for (let i = 0; i < maxQueues; i++) this.freeQueues[i] = maxQueues - 1 - i;
    this.freeQueueCount = maxQueues;

    let size = 1;
    while (size < maxQueues * 2) size <<= 1;
    this.hash = new Int32Array(size);
    this.hashMask = size - 1;
    this.seed = (opts.seed ?? Math.floor(Math.random() * 0x100000000)) >>> 0;
  }

  /** Datagrams being reassembled (or completed and not yet released). */
  get queues(): number {
    return this.qLivePrev.length - this.freeQueueCount;
  }
  /** Bytes of the slab in use (blocks × block size). */
  get bytesUsed(): number {
    return this.blocksUsed * this.blockSize;
  }
  /** Frames dropped, all reasons. */
  get dropped(): number {
    let n = 0;
    for (let i = 0; i < FragDrop.Count; i++) n += this.drops[i]!;
    return n;
  }

  /**
   * Offer the IPv4 fragment at buf[off..]: the caller has checked the header
   * (Ipv4View.check: total length within the bytes present) and that it is a
   * fragment (MF or a non-zero offset). The bytes are copied; buf can be
   * reused at once. On Complete, `completed` is the queue to read with
   * writeReassembled()/writeFragment() and then release(). Drops are counted
   * here, in `drops` — the caller must not count the frame again.
   */
  add(buf: Uint8Array, off: number, now: number, meta = 0): FragOutcome {
    this.completed = NONE;
    const hl = (buf[off]! & 0x0f) << 2;
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    const ff = (buf[off + 6]! << 8) | buf[off + 7]!;
    const offset = (ff & 0x1fff) << 3;
    const mf = (ff & 0x2000) !== 0;
    const src = ((buf[off + 12]! << 24) | (buf[off + 13]! << 16) | (buf[off + 14]! << 8) | buf[off + 15]!) >>> 0;
    const dst = ((buf[off + 16]! << 24) | (buf[off + 17]! << 16) | (buf[off + 18]! << 8) | buf[off + 19]!) >>> 0;
    const idProto = (((buf[off + 4]! << 8) | buf[off + 5]!) << 8) | buf[off + 9]!;

    let q = this.find(src, dst, idProto);
    if (q === NONE) {
      q = this.create(src, dst, idProto, now);
      if (q === NONE) return this.dropFrame(FragDrop.NoMemory);
    }

    let end = offset + total - hl;
    if (!mf) {
      // The last fragment: it fixes the length, which must agree with what is held.
      if (end < this.qLen[q]! || (this.qFlags[q]! & F_LAST_IN && end !== this.qLen[q]!)) return this.killWith(q, FragDrop.Invalid);
      this.qFlags[q] = this.qFlags[q]! | F_LAST_IN;
      this.qLen[q] = end;
    } else {
      end &= ~7;
      if (end > this.qLen[q]!) {
        if (this.qFlags[q]! & F_LAST_IN) return this.killWith(q, FragDrop.Invalid);
        this.qLen[q] = end;
      }
    }
    if (end === offset) return this.killWith(q, FragDrop.Invalid);
    const dataLen = end - offset;

    // inet_frag_queue_insert: where does [offset, end) go among the runs held?
    const tail = this.qTail[q]!;
    let prev = NONE; // insert after this fragment (NONE: at the front)
    let appendToRun = false;
    if (tail === NONE) {
      prev = NONE;
    } else {
      const tailEnd = this.fOff[tail]! + this.fDataLen[tail]!;
      if (tailEnd < end) {
        if (offset < tailEnd) return this.killWith(q, FragDrop.Overlap);
        prev = tail;
        appendToRun = offset === tailEnd;
      } else {
        // Walk the runs in offset order (the kernel's rb-tree of run heads).
        let f = this.qFirst[q]!;
        let before = NONE;
        while (f !== NONE) {
          const runStart = this.fOff[f]!;
          const runEnd = runStart + this.fRunLen[f]!;
          if (end <= runStart) break;
          if (offset < runEnd) {
            if (offset >= runStart && end <= runEnd) return this.dropFrame(FragDrop.Duplicate);
            return this.killWith(q, FragDrop.Overlap);
          }
          // Skip to the last fragment of this run.
          let last = f;
          let acc = this.fDataLen[f]!;
          while (acc < this.fRunLen[f]!) {
            last = this.fNext[last]!;
            acc += this.fDataLen[last]!;
          }
          before = last;
          f = this.fNext[last]!;
        }
        prev = before;
      }
    }

    if (this.qCount[q]! >= this.maxFragmentsPerQueue) return this.killWith(q, FragDrop.TooMany);
    const stored = hl + dataLen;
    const fr = this.store(buf, off, stored);
    if (fr === NONE) {
      // Do not leave an empty queue behind to sit out its timeout.
      if (this.qCount[q] === 0) this.freeQueue(q);
      return this.dropFrame(FragDrop.NoMemory);
    }
    this.fOff[fr] = offset;
    this.fDataLen[fr] = dataLen;
    // The stored copy's total length is the trimmed one.
    this.fRunLen[fr] = appendToRun ? 0 : dataLen;
    if (appendToRun) {
      const head = this.qRunHead[q]!;
      this.fRunLen[head] = this.fRunLen[head]! + dataLen;
    }
    if (prev === NONE) {
      this.fNext[fr] = this.qFirst[q]!;
      this.qFirst[q] = fr;
    } else {
      this.fNext[fr] = this.fNext[prev]!;
      this.fNext[prev] = fr;
    }
    if (tail === NONE || prev === tail) {
      this.qTail[q] = fr;
      if (!appendToRun) this.qRunHead[q] = fr;
    }
    this.qCount[q] = this.qCount[q]! + 1;
    this.qMeat[q] = this.qMeat[q]! + dataLen;
    this.qEcn[q] = this.qEcn[q]! | (1 << (buf[off + 1]! & 3));
    if (stored > this.qMaxSize[q]!) this.qMaxSize[q] = stored;
    if (ff & 0x4000 && stored > this.qMaxDfSize[q]!) this.qMaxDfSize[q] = stored;
    if (offset === 0) {
      this.qFlags[q] = this.qFlags[q]! | F_FIRST_IN;
      this.qMeta[q] = meta >>> 0;
    }

    if (this.qFlags[q] === (F_FIRST_IN | F_LAST_IN) && this.qMeat[q] === this.qLen[q]) {
      // ip_frag_reasm: the queue leaves the hash whatever happens next.
      this.unhash(q);
      const first = this.qFirst[q]!;
      const headerLen = (this.slab[this.fBlock[first]! * this.blockSize]! & 0x0f) << 2;
      if (headerLen + this.qLen[q]! > MAX_IP_LEN) return this.killWith(q, FragDrop.Oversize, true);
      if (ecnCombine(this.qEcn[q]!) < 0) return this.killWith(q, FragDrop.EcnMix, true);
      this.reassembled++;
      this.completed = q;
      return FragOutcome.Complete;
    }
    return FragOutcome.Held;
  }

  /**
   * The `meta` word add() was given with the first fragment (offset 0) of
   * queue q: what the kernel's reassembled skb keeps of its head fragment
   * (ip_frag_reasm → skb_morph copies the head's mark, the GBP ID on a VXLAN
   * cell).
   */
  meta(q: number): number {
    return this.qMeta[q]!;
  }

  /** Fragments a completed queue holds (and writeFragment emits). */
  fragmentCount(q: number): number {
    return this.qCount[q]!;
  }

  /**
   * Whether every fragment, under the first one's header, fits a link of
   * `mtu` bytes — ip_do_fragment's condition for its fast path, which
   * forwards the original fragments (writeFragment). When not (fragments from
   * a peer with a larger MTU), the kernel's slow path splits the reassembled
   * datagram afresh at the MTU: writeReassembled() into a scratch buffer, then
   * fragment-out.ts's writeFragment() — or, if reassembledDf(), answers
   * Fragmentation Needed.
   */
  fitsMtu(q: number, mtu: number): boolean {
    const room = mtu - this.headerLen(q);
    for (let f = this.qFirst[q]!; f !== NONE; f = this.fNext[f]!) if (this.fDataLen[f]! > room) return false;
    return true;
  }

  /**
   * Whether ip_frag_reasm marks the datagram DF (its largest fragment had DF).
   * Then, when !fitsMtu, the kernel answers Fragmentation Needed (ip_fragment)
   * instead of splitting it again.
   */
  reassembledDf(q: number): boolean {
    return this.qMaxDfSize[q]! !== 0 && this.qMaxDfSize[q] === this.qMaxSize[q];
  }

  /** Bytes of the reassembled datagram: the first fragment's header + every payload byte. */
  reassembledLength(q: number): number {
    return this.headerLen(q) + this.qLen[q]!;
  }

  /**
   * Write the start of the reassembled datagram into out[outOff..], at most
   * `maxLen` bytes: the header as ip_frag_reasm leaves it (first fragment's,
   * total length of the whole datagram, offset zero, DF only if the largest
   * fragment had it, DS byte ORed with the combined ECN, checksum
   * recomputed) and then the payload. This is
   * what policy and conntrack judge, and what an ICMP error about the
   * datagram quotes. Returns the bytes written.
   */
  writeReassembled(q: number, out: Uint8Array, outOff: number, maxLen: number): number {
    if (!this.qInUse[q]) return 0;
    const first = this.qFirst[q]!;
    const hl = this.headerLen(q);
    if (maxLen < hl) return 0;
    this.copyOut(first, 0, hl, out, outOff);
    const total = hl + this.qLen[q]!;
    out[outOff + 1] = out[outOff + 1]! | ecnCombine(this.qEcn[q]!);
    out[outOff + 2] = total >>> 8;
    out[outOff + 3] = total & 0xff;
    // ip_frag_reasm: DF (and IPSKB_FRAG_PMTU) only when the largest fragment
    // carried DF, so a datagram is not forwarded whole where its sender sent
    // smaller pieces.
    out[outOff + 6] = this.reassembledDf(q) ? 0x40 : 0;
    out[outOff + 7] = 0;
    out[outOff + 10] = 0;
    out[outOff + 11] = 0;
    const c = internetChecksum(out, outOff, hl);
    out[outOff + 10] = c >>> 8;
    out[outOff + 11] = c & 0xff;
    let w = hl;
    for (let f = first; f !== NONE && w < maxLen; f = this.fNext[f]!) {
      const n = Math.min(this.fDataLen[f]!, maxLen - w);
      this.copyOut(f, this.storedHeaderLen(f), n, out, outOff + w);
      w += n;
    }
    return w;
  }

  /**
   * Write fragment `i` (in offset order) of a completed queue into
   * out[outOff..] as the kernel forwards it after reassembly
   * (ip_fraglist_init / ip_fraglist_prepare): the first fragment's header with
   * this fragment's offset and MF, DF clear, the combined ECN ORed in,
   * non-copied options turned to NOPs after the first, checksum recomputed.
   * TTL is the first fragment's; the caller decrements it as for any
   * forwarded packet. Returns the bytes written.
   */
  writeFragment(q: number, i: number, out: Uint8Array, outOff: number): number {
    if (!this.qInUse[q]) return 0;
    // Forwarding walks i = 0, 1, 2…: keep a cursor so that is linear, not quadratic.
    let f: number;
    let k: number;
    if (this.cursorQ === q && this.cursorI <= i) {
      f = this.cursorF;
      k = this.cursorI;
    } else {
      f = this.qFirst[q]!;
      k = 0;
    }
    for (; k < i && f !== NONE; k++) f = this.fNext[f]!;
    if (f === NONE) return 0;
    this.cursorQ = q;
    this.cursorI = i;
    this.cursorF = f;
    const first = this.qFirst[q]!;
    const hl = this.headerLen(q);
    this.copyOut(first, 0, hl, out, outOff);
    const dataLen = this.fDataLen[f]!;
    this.copyOut(f, this.storedHeaderLen(f), dataLen, out, outOff + hl);
    if (i > 0 && hl > 20) nopUncopiedOptions(out, outOff + 20, hl - 20);
    const tot = hl + dataLen;
    let ff = this.fOff[f]! >>> 3;
    if (this.fNext[f] !== NONE) ff |= 0x2000;
    out[outOff + 1] = out[outOff + 1]! | ecnCombine(this.qEcn[q]!);
    finishFragmentHeader(out, outOff, hl, tot, ff);
    return tot;
  }

  /** Free a completed queue (after forwarding or dropping its fragments). */
  release(q: number): void {
    if (q < 0 || q >= this.qLivePrev.length || !this.qInUse[q]) return;
    this.freeQueue(q);
    if (this.completed === q) this.completed = NONE;
  }

  /**
   * Drop every queue older than the timeout (one coarse tick drives this).
   * Returns the fragments dropped, counted as FragDrop.Timeout.
   */
  expire(now: number): number {
    let n = 0;
    // The live list is in creation order, so stop at the first young queue.
    while (this.liveHead !== NONE && now - this.qCreated[this.liveHead]! >= this.timeoutMs) {
      const q = this.liveHead;
      if (!this.qHashed[q]) {
        // Completed but never released: the caller's bug; reclaim it quietly.
        this.freeQueue(q);
        continue;
      }
      n += this.qCount[q]!;
      this.drops[FragDrop.Timeout] = this.drops[FragDrop.Timeout]! + this.qCount[q]!;
      this.freeQueue(q);
    }
    return n;
  }

  // --- internals -------------------------------------------------------------

  private headerLen(q: number): number {
    return this.storedHeaderLen(this.qFirst[q]!);
  }

  private storedHeaderLen(f: number): number {
    return (this.slab[this.fBlock[f]! * this.blockSize]! & 0x0f) << 2;
  }

  private dropFrame(reason: FragDrop): FragOutcome {
    this.drops[reason] = this.drops[reason]! + 1;
    return FragOutcome.Dropped;
  }

  /** Drop the whole queue and the frame being offered (unless it is already held: `held`). */
  private killWith(q: number, reason: FragDrop, held = false): FragOutcome {
    this.drops[reason] = this.drops[reason]! + this.qCount[q]! + (held ? 0 : 1);
    this.freeQueue(q);
    return FragOutcome.Dropped;
  }

  private hashOf(src: number, dst: number, idProto: number): number {
    let h = Math.imul(src ^ this.seed, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ dst, 0x85ebca77);
    h = Math.imul(h ^ (h >>> 13) ^ idProto, 0xc2b2ae3d);
    return (h ^ (h >>> 16)) & this.hashMask;
  }

  private find(src: number, dst: number, idProto: number): number {
    let i = this.hashOf(src, dst, idProto);
    for (;;) {
      const e = this.hash[i]!;
      if (e === 0) return NONE;
      const q = e - 1;
      if (this.qSrc[q] === src && this.qDst[q] === dst && this.qIdProto[q] === idProto) return q;
      i = (i + 1) & this.hashMask;
    }
  }

  private create(src: number, dst: number, idProto: number, now: number): number {
    if (this.freeQueueCount === 0) return NONE;
    const q = this.freeQueues[--this.freeQueueCount]!;
    this.qSrc[q] = src;
    this.qDst[q] = dst;
    this.qIdProto[q] = idProto;
    this.qCreated[q] = now;
    this.qFlags[q] = 0;
    this.qLen[q] = 0;
    this.qMeat[q] = 0;
    this.qEcn[q] = 0;
    this.qMaxSize[q] = 0;
    this.qMaxDfSize[q] = 0;
    this.qCount[q] = 0;
    this.qFirst[q] = NONE;
    this.qTail[q] = NONE;
    this.qRunHead[q] = NONE;
    let i = this.hashOf(src, dst, idProto);
    while (this.hash[i] !== 0) i = (i + 1) & this.hashMask;
    this.hash[i] = q + 1;
    this.qHashed[q] = 1;
    this.qInUse[q] = 1;
    // Append to the live list (creation order = expiry order).
    this.qLivePrev[q] = this.liveTail;
    this.qLiveNext[q] = NONE;
    if (this.liveTail === NONE) this.liveHead = q;
    else this.qLiveNext[this.liveTail] = q;
    this.liveTail = q;
    return q;
  }

  private unhash(q: number): void {
    if (!this.qHashed[q]) return;
    this.qHashed[q] = 0;
    let i = this.hashOf(this.qSrc[q]!, this.qDst[q]!, this.qIdProto[q]!);
    while (this.hash[i] !== q + 1) i = (i + 1) & this.hashMask;
    // Backward-shift deletion keeps probe chains unbroken without tombstones.
    let j = i;
    for (;;) {
      j = (j + 1) & this.hashMask;
      const e = this.hash[j]!;
      if (e === 0) break;
      const k = e - 1;
      const home = this.hashOf(this.qSrc[k]!, this.qDst[k]!, this.qIdProto[k]!);
      // Move e into the hole at i unless its home lies cyclically in (i, j].
      const inRange = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!inRange) {
        this.hash[i] = e;
        i = j;
      }
    }
    this.hash[i] = 0;
  }

  private freeQueue(q: number): void {
    this.unhash(q);
    this.qInUse[q] = 0;
    if (this.cursorQ === q) this.cursorQ = NONE;
    let f = this.qFirst[q]!;
    while (f !== NONE) {
      const next = this.fNext[f]!;
      this.freeFragment(f);
      f = next;
    }
    this.qFirst[q] = NONE;
    this.qTail[q] = NONE;
    this.qCount[q] = 0;
    const p = this.qLivePrev[q]!;
    const n = this.qLiveNext[q]!;
    if (p === NONE) this.liveHead = n;
    else this.qLiveNext[p] = n;
    if (n === NONE) this.liveTail = p;
    else this.qLivePrev[n] = p;
    this.freeQueues[this.freeQueueCount++] = q;
  }

  /** Copy `len` bytes of the packet at buf[off..] into a new fragment record; NONE when out of blocks. */
  private store(buf: Uint8Array, off: number, len: number): number {
    const need = Math.ceil(len / this.blockSize);
    if (this.freeFrag === NONE || this.blocksUsed + need > this.blockNext.length) return NONE;
    const f = this.freeFrag;
    this.freeFrag = this.fNext[f]!;
    let b = this.freeBlock;
    this.fBlock[f] = b;
    this.fLen[f] = len;
    let done = 0;
    for (;;) {
      const n = Math.min(this.blockSize, len - done);
      copyBytes(this.slab, b * this.blockSize, buf, off + done, n);
      done += n;
      if (done >= len) break;
      b = this.blockNext[b]!;
    }
    this.freeBlock = this.blockNext[b]!;
    this.blockNext[b] = NONE;
    this.blocksUsed += need;
    return f;
  }

  private freeFragment(f: number): void {
    let b = this.fBlock[f]!;
    let n = 1;
    while (this.blockNext[b] !== NONE) {
      b = this.blockNext[b]!;
      n++;
    }
    this.blockNext[b] = this.freeBlock;
    this.freeBlock = this.fBlock[f]!;
    this.blocksUsed -= n;
    this.fNext[f] = this.freeFrag;
    this.freeFrag = f;
  }

  /** Copy bytes [from, from+len) of stored fragment f into out[outOff..]. */
  private copyOut(f: number, from: number, len: number, out: Uint8Array, outOff: number): void {
    const bs = this.blockSize;
    let b = this.fBlock[f]!;
    let skip = from;
    while (skip >= bs) {
      b = this.blockNext[b]!;
      skip -= bs;
    }
    let done = 0;
    while (done < len) {
      const n = Math.min(bs - skip, len - done);
      const s = b * bs + skip;
      copyBytes(out, outOff + done, this.slab, s, n);
      done += n;
      skip = 0;
      b = this.blockNext[b]!;
    }
  }
}
