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
}

export const DEFAULT_HEADROOM = 64;

export class FrameBatch {
  readonly slab: Uint8Array;
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
  /** Output, set by the pipeline for each frame i. */
  readonly action: Uint8Array;
  readonly outOff: Uint32Array;
  readonly outLen: Uint32Array;
  readonly outTarget: Uint32Array;

  constructor(capacity: number, slotSize: number, headroom = DEFAULT_HEADROOM) {
    if (headroom >= slotSize) throw new Error('headroom must be smaller than the slot size');
    this.capacity = capacity;
    this.slotSize = slotSize;
    this.headroom = headroom;
    this.slab = new Uint8Array(capacity * slotSize);
    this.len = new Uint32Array(capacity);
    this.srcIp = new Uint32Array(capacity);
    this.srcPort = new Uint16Array(capacity);
    this.action = new Uint8Array(capacity);
    this.outOff = new Uint32Array(capacity);
    this.outLen = new Uint32Array(capacity);
    this.outTarget = new Uint32Array(capacity);
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
  push(frame: Uint8Array, srcIp = 0, srcPort = 0): boolean {
    if (this.count >= this.capacity || frame.length > this.maxFrame) return false;
    const i = this.count++;
    this.slab.set(frame, this.inOff(i));
    this.len[i] = frame.length;
    this.srcIp[i] = srcIp;
    this.srcPort[i] = srcPort;
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
