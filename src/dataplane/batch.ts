// A batch of frames in one preallocated slab. The native addon (or an
// in-memory fake) fills slot i with a frame starting at `inOff(i)`, leaving
// `headroom` bytes in front so the pipeline can write outer headers (IPv4 +
// UDP + VXLAN = 36 bytes) in place, without a copy (wireguard-go's trick).
//
// The pipeline never allocates: it reads the frames and writes its verdict for
// each into the result arrays below; the cell runtime then hands the outputs to
// the devices in one call per destination.
import { Wire } from '../wire/offsets.js';

export const enum Action {
  /** Dropped; `outTarget` holds the DropReason. */
  Drop = 0,
  /** Send `outLen` bytes at `outOff` (a full IPv4 packet) on the raw socket to underlay `outTarget`. */
  Underlay = 1,
  /** Write `outLen` bytes at `outOff` (an Ethernet frame) to local TAP index `outTarget`. */
  Tap = 2,
  /**
   * Consumed, nothing to send from this slot: a fragment held for
   * reassembly, or a packet whose output (its fragments) went to the
   * pipeline's side area (SideOut) instead.
   */
  Held = 3,
}

/**
 * Output frames that do not fit the one-slot-one-verdict layout of a batch:
 * the fragments of a reassembled or split datagram (one input frame, many
 * outputs). One per Dataplane, allocated once, emptied at the start of each
 * egress/ingress call; the cell sends what it holds right after the batch.
 */
export class SideOut {
  readonly slab: Uint8Array;
  readonly action: Uint8Array;
  readonly off: Uint32Array;
  readonly len: Uint32Array;
  readonly target: Uint32Array;
  count = 0;
  private used = 0;

  constructor(bytes = 1 << 20, maxFrames = 1024) {
    this.slab = new Uint8Array(bytes);
    this.action = new Uint8Array(maxFrames);
    this.off = new Uint32Array(maxFrames);
    this.len = new Uint32Array(maxFrames);
    this.target = new Uint32Array(maxFrames);
  }

  reset(): void {
    this.count = 0;
    this.used = 0;
  }

  /** Room for `frames` more frames of up to `each` bytes? */
  fits(frames: number, each: number): boolean {
    return this.count + frames <= this.action.length && this.used + frames * each <= this.slab.length;
  }

  /** Where the next frame starts (call fits() first). */
  get next(): number {
    return this.used;
  }

  /** Commit a frame of `len` bytes written at `next`. */
  commit(action: Action, len: number, target: number): void {
    const k = this.count++;
    this.action[k] = action;
    this.off[k] = this.used;
    this.len[k] = len;
    this.target[k] = target;
    this.used += (len + 7) & ~7;
  }

  /** Test helper: a copy of side frame k. */
  output(k: number): Uint8Array {
    return this.slab.slice(this.off[k]!, this.off[k]! + this.len[k]!);
  }
}

export const DEFAULT_HEADROOM = 64;

/**
 * The segments of one TSO super-frame carried through egress whole (src/offload/gso.ts implements it,
 * FrameBatch.run marks them): the pipeline decides once, on the run's first slot (its lead, whose
 * headers are in its slot), and the segmenter writes the others' headers from that decision.
 */
export interface RunEmitter {
  /**
   * Write the inner headers of slots [i, i+n) (followers of a run: until now only their payload pieces
   * are set) exactly as segmenting would have, so each can take the per-frame path. For a run the
   * pipeline does not carry whole (the lead was dropped, answered, delivered locally, traced).
   */
  inner(batch: FrameBatch, i: number, n: number): void;
  /** The lead `lead` was encapsulated: take its output headers (outer + inner, at outOff) as the run's template. */
  template(batch: FrameBatch, lead: number): void;
  /**
   * Write follower slot s's VXLAN packet headers in front of its payload piece, from the template with
   * the per-segment fix-ups (outer IPv4 total length, ident and checksum, UDP length; inner IPv4 total
   * length, ID and checksum; TCP sequence number, flags and checksum). Returns the offset of its outer
   * IPv4 header (inOff(s) - VXLAN_ENCAP_LEN).
   */
  vxlan(batch: FrameBatch, s: number, ident: number): number;
}

export class FrameBatch {
  readonly slab: Uint8Array;
  /**
   * The slab as 16-bit words in host order (slab[2k], slab[2k+1] = w16[k]), for comparing and summing
   * header bytes two at a time: equal words are equal byte pairs, and a one's complement sum of
   * byte-swapped words is the byte-swapped sum (RFC 1071 §2(B)), so "folds to 0xffff" reads the same.
   */
  readonly w16: Uint16Array;
  readonly capacity: number;
  readonly slotSize: number;
  readonly headroom: number;
  /** Number of frames currently in the batch. */
  count = 0;
  /** Input: length of frame i (its bytes start at inOff(i)). */
  readonly len: Uint32Array;
  /** Input (datagrams only): source underlay IPv4 and UDP port of frame i. */
  readonly srcIp: Uint32Array;
  readonly srcPort: Uint16Array;
  /** Input (datagrams only): the outer IPv4 DS byte of datagram i (IP_RECVTOS), for RFC 6040 decapsulation. */
  readonly tos: Uint8Array;
  /** Output, set by the pipeline for each frame i. */
  readonly action: Uint8Array;
  readonly outOff: Uint32Array;
  readonly outLen: Uint32Array;
  readonly outTarget: Uint32Array;
  /**
   * Zero-copy frames (TSO segments cut without copying, src/offload/gso.ts): when extLen[i] > 0 only
   * frame i's first len[i] - extLen[i] bytes (its headers) are in the slot, and the rest is
   * ext[extOff[i], +extLen[i]) — a payload slice of the super-frame the TAP read, valid while the batch
   * is. The pipeline reads and writes only headers, so it never notices; whoever sends the whole frame
   * gathers the two pieces (the underlay) or calls materialize(i) first. extLen is 0 for every other frame.
   */
  ext: Uint8Array | undefined = undefined;
  readonly extOff: Uint32Array;
  readonly extLen: Uint32Array;
  /**
   * Runs (whole TSO super-frames, see RunEmitter): run[i] = n > 1 when slots [i, i+n) are consecutive
   * zero-copy segments of one super-frame, slot i's headers written and the others' not yet (`runs`
   * writes them); 0 for every other slot. Only a TAP's segmenter sets it.
   */
  readonly run: Uint16Array;
  runs: RunEmitter | undefined = undefined;

  constructor(capacity: number, slotSize: number, headroom = DEFAULT_HEADROOM) {
    if (headroom >= slotSize) throw new Error('headroom must be smaller than the slot size');
    this.capacity = capacity;
    this.slotSize = slotSize;
    this.headroom = headroom;
    this.slab = new Uint8Array(capacity * slotSize);
    this.w16 = new Uint16Array(this.slab.buffer, 0, this.slab.length >>> 1);
    this.len = new Uint32Array(capacity);
    this.srcIp = new Uint32Array(capacity);
    this.srcPort = new Uint16Array(capacity);
    this.tos = new Uint8Array(capacity);
    this.action = new Uint8Array(capacity);
    this.outOff = new Uint32Array(capacity);
    this.outLen = new Uint32Array(capacity);
    this.outTarget = new Uint32Array(capacity);
    this.extOff = new Uint32Array(capacity);
    this.extLen = new Uint32Array(capacity);
    this.run = new Uint16Array(capacity);
  }

  /**
   * Copy frame i's piece outside the slab (extLen[i] > 0) into its slot behind its headers, so the frame
   * is whole at inOff(i) (for the paths that write it to a TAP). Off the hot path: same-cell delivery of
   * TSO traffic and the capture TAP.
   */
  materialize(i: number): void {
    const xl = this.extLen[i]!;
    const ext = this.ext;
    if (xl === 0 || ext === undefined) return;
    const xo = this.extOff[i]!;
    this.slab.set(ext.subarray(xo, xo + xl), this.inOff(i) + this.len[i]! - xl);
    this.extLen[i] = 0;
  }

  /** Set frame i's verdict: `action`, and `len` bytes at `off` for `target` (see Action). */
  verdict(i: number, action: Action, off: number, len: number, target: number): void {
    this.action[i] = action;
    this.outOff[i] = off;
    this.outLen[i] = len;
    this.outTarget[i] = target;
  }

  /** Where frame i's bytes start. */
  inOff(i: number): number {
    return i * this.slotSize + this.headroom;
  }

  /** Largest frame a slot can hold after the headroom. */
  get maxFrame(): number {
    return this.slotSize - this.headroom;
  }

  /** Test/fake helper: append a copy of `frame` (returns false when full or too big). */
  push(frame: Uint8Array, srcIp = 0, srcPort = 0, tos = 0): boolean {
    if (this.count >= this.capacity || frame.length > this.maxFrame) return false;
    const i = this.count++;
    this.slab.set(frame, this.inOff(i));
    this.len[i] = frame.length;
    this.srcIp[i] = srcIp;
    this.srcPort[i] = srcPort;
    this.tos[i] = tos;
    this.run[i] = 0;
    return true;
  }

  /** Test helper: a copy of output i's bytes. */
  output(i: number): Uint8Array {
    return this.slab.slice(this.outOff[i]!, this.outOff[i]! + this.outLen[i]!);
  }
}

/** Slot size for an underlay MTU: headroom + the largest Ethernet frame, rounded to 64. */
export function slotSizeFor(underlayMtu: number, headroom = DEFAULT_HEADROOM): number {
  return Math.ceil((headroom + underlayMtu + Wire.ETH_HEADER_LEN + 64) / 64) * 64;
}
