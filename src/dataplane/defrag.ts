// IPv4 fragments in the pipeline, as a kernel silk cell handles them: held
// and reassembled for the decision (nf_defrag_ipv4 in PREROUTING, before any
// rule looks at them), the whole datagram run through the ordinary path
// (route, TTL, policy, conntrack), and then the *original* fragments sent on
// under the first fragment's header (ip_do_fragment's fast path), or — when
// one of them does not fit the next link — the datagram cut afresh at the
// MTU (its slow path). A packet that is not a fragment but is larger than
// the MTU and has no DF is cut the same way (ip_forward → ip_fragment)
// instead of being dropped.
//
// One input frame then yields several output frames, which a batch's
// one-slot-one-verdict layout cannot hold: the fragments go to the
// Dataplane's SideOut (batch.ts) and the input slot is marked Held.
//
// The reassembly itself, its limits and its drop reasons are fragments.ts;
// cutting a packet at an MTU is fragment-out.ts. Each direction (egress from
// containers, ingress from the underlay) has its own Defrag, so a datagram's
// fragments only ever complete on the path they arrived on.
import { ETH_HEADER_LEN } from '../wire/offsets.js';
import { Action, FrameBatch, type SideOut } from './batch.js';
import { Drop } from './counters.js';
import { OUTER_LEN, patchOuterHeaders } from './encap.js';
import { fragmentCount, writeFragment } from './fragment-out.js';
import { FragDrop, FragmentTable, FragOutcome, type FragmentTableOptions } from './fragments.js';
import { internetChecksum } from '../wire/checksum.js';
import type { Run } from './state.js';

const NONE = -1;
/** Identification, protocol, source and destination: the reassembly key's bytes in an IPv4 header. */
const KEY_BYTES = [4, 5, 9, 12, 13, 14, 15, 16, 17, 18, 19];
const MAX_IP = 65535;
/** Room in front of the reassembled datagram: outer headers, VXLAN and Ethernet, as a batch slot has. */
const REASM_HEADROOM = 128;

export class Defrag {
  readonly table: FragmentTable;
  /** One slot holding a reassembled datagram (with its frame's prefix) while the ordinary path runs over it. */
  readonly reasm: FrameBatch;
  /** The queue whose datagram is in `reasm` while the path runs over it, else NONE. */
  current = NONE;
  /** Set by the path: its output is larger than the MTU and has no DF, so it must be cut (slow path). */
  split = false;

  constructor(
    drops: Float64Array,
    private readonly side: SideOut,
    private readonly mtu: number,
    opts: FragmentTableOptions = {},
  ) {
    // The table counts its reasons straight into the pipeline's drop table (counters.ts keeps FragDrop's order).
    this.table = new FragmentTable({ ...opts, drops: drops.subarray(Drop.FragmentOverlap, Drop.FragmentOverlap + FragDrop.Count) });
    this.reasm = new FrameBatch(1, REASM_HEADROOM + 64 + MAX_IP + 64, REASM_HEADROOM);
  }

  /**
   * Offer the fragment at buf[ipOff..] of slot i: held (verdict Held), dropped
   * (counted by the table, verdict Drop), or complete: returns its queue, and
   * the caller runs the datagram through its path (load, then finish).
   * `meta` is kept for the first fragment (the VXLAN GBP word on ingress).
   * A dry run (trace) holds nothing: it reports the step and stops.
   */
  offer(batch: FrameBatch, i: number, ipOff: number, nowSec: number, run: Run, meta: number): number {
    const buf = batch.slab;
    const ff = (buf[ipOff + 6]! << 8) | buf[ipOff + 7]!;
    const id = (buf[ipOff + 4]! << 8) | buf[ipOff + 5]!;
    run.steps.fragment(id, (ff & 0x1fff) << 3, (ff & 0x2000) !== 0, 'held', 0);
    if (run.dry) {
      batch.verdict(i, Action.Held, 0, 0, 0);
      return NONE;
    }
    const drops = this.table.drops;
    this.before.set(drops);
    const r = this.table.add(buf, ipOff, nowSec * 1000, meta);
    if (r === FragOutcome.Held) {
      batch.verdict(i, Action.Held, 0, 0, 0);
      return NONE;
    }
    if (r === FragOutcome.Dropped) {
      // Counted by the table (held fragments of a killed queue too); the
      // verdict names the reason whose counter moved.
      let reason = 0;
      while (reason < FragDrop.Count - 1 && drops[reason] === this.before[reason]) reason++;
      batch.verdict(i, Action.Drop, 0, 0, Drop.FragmentOverlap + reason);
      run.steps.drop(Drop.FragmentOverlap + reason);
      return NONE;
    }
    return this.table.completed;
  }

  /**
   * Put `prefixLen` bytes of slot i (from `start`: the VXLAN header and inner
   * Ethernet header, or the Ethernet header) followed by the reassembled
   * datagram of queue q into `reasm` slot 0. Returns the frame's length.
   */
  load(q: number, buf: Uint8Array, start: number, prefixLen: number): number {
    const rb = this.reasm;
    const o = rb.inOff(0);
    rb.slab.set(buf.subarray(start, start + prefixLen), o);
    const n = this.table.writeReassembled(q, rb.slab, o + prefixLen, MAX_IP);
    rb.len[0] = prefixLen + n;
    rb.count = 1;
    return prefixLen + n;
  }

  /** Whether every fragment of the current datagram fits `mtu` under the first one's header (the fast path). */
  fitsCurrent(mtu: number): boolean {
    return this.current !== NONE && this.table.fitsMtu(this.current, mtu);
  }

  /**
   * The path has run over the reassembled datagram of queue q in `reasm`:
   * carry its verdict over to slot i of `batch`. A drop stays a drop (the
   * path counted it once, for the datagram); an answer the path wrote (an
   * ICMP error) goes out as it is; the datagram itself goes out as its
   * fragments. Releases q.
   */
  finish(batch: FrameBatch, i: number, q: number, run: Run): void {
    const rb = this.reasm;
    this.current = NONE;
    const act = rb.action[0]!;
    if (act === Action.Drop || act === Action.Held) {
      batch.verdict(i, Action.Drop, 0, 0, rb.outTarget[0]!);
      this.split = false;
      this.table.release(q);
      return;
    }
    const prefix = act === Action.Underlay ? OUTER_LEN + ETH_HEADER_LEN : ETH_HEADER_LEN;
    const o = rb.outOff[0]!;
    const ip = o + prefix;
    if (!this.isDatagram(rb.slab, ip, q)) {
      // An ICMP error about the datagram: one small frame.
      this.split = false;
      this.copyOut(batch, i, rb.slab, o, rb.outLen[0]!, act, rb.outTarget[0]!, run);
      this.table.release(q);
      return;
    }
    if (this.table.fitsMtu(q, this.mtu)) this.forwardFragments(batch, i, q, rb.slab, o, prefix, act, rb.outTarget[0]!, run);
    else this.cut(batch, i, rb.slab, o, rb.outLen[0]!, prefix, act, rb.outTarget[0]!, run);
    this.split = false;
    this.table.release(q);
  }

  /** The path left a packet larger than the MTU, without DF, in slot i: cut it (ip_forward → ip_fragment, slow path). */
  splitSlot(batch: FrameBatch, i: number, run: Run): void {
    this.split = false;
    const act = batch.action[i]!;
    if (act !== Action.Underlay && act !== Action.Tap) return;
    const prefix = act === Action.Underlay ? OUTER_LEN + ETH_HEADER_LEN : ETH_HEADER_LEN;
    this.cut(batch, i, batch.slab, batch.outOff[i]!, batch.outLen[i]!, prefix, act, batch.outTarget[i]!, run);
  }

  /** Expire queues older than the timeout (the cell's coarse tick); counted as fragment-timeout. */
  expire(nowSec: number): void {
    this.table.expire(nowSec * 1000);
  }

  // --- internals -------------------------------------------------------------

  /** Is the IPv4 packet at buf[ip..] the datagram of queue q (same source, destination, id and protocol)? */
  private isDatagram(buf: Uint8Array, ip: number, q: number): boolean {
    const t = this.table;
    const first = this.probe;
    t.writeReassembled(q, first, 0, 60); // the header, options included (up to 60 bytes)
    for (let k = 0; k < KEY_BYTES.length; k++) if (buf[ip + KEY_BYTES[k]!] !== first[KEY_BYTES[k]!]) return false;
    return true;
  }
  private readonly probe = new Uint8Array(64);
  private readonly before = new Float64Array(FragDrop.Count);

  /** Fast path: each original fragment under the processed header (TTL, DS byte), with the path's prefix. */
  private forwardFragments(
    batch: FrameBatch,
    i: number,
    q: number,
    src: Uint8Array,
    o: number,
    prefix: number,
    act: Action,
    target: number,
    run: Run,
  ): void {
    const t = this.table;
    const n = t.fragmentCount(q);
    const side = this.side;
    const each = prefix + this.mtu + 8;
    if (!side.fits(n, each)) return this.noRoom(batch, i, n, run);
    const ip = o + prefix;
    const ttl = src[ip + 8]!;
    const tos = src[ip + 1]!;
    for (let k = 0; k < n; k++) {
      const at = side.next;
      const out = side.slab;
      out.set(src.subarray(o, ip), at);
      const fip = at + prefix;
      const len = t.writeFragment(q, k, out, fip);
      out[fip + 1] = tos;
      out[fip + 8] = ttl;
      reChecksum(out, fip);
      if (act === Action.Underlay) patchOuterHeaders(out, at, ETH_HEADER_LEN + len, run.nextIdent());
      side.commit(act, prefix + len, target);
    }
    run.steps.fragment((src[ip + 4]! << 8) | src[ip + 5]!, 0, false, 'forward', n);
    batch.verdict(i, Action.Held, 0, 0, 0);
  }

  /** Slow path: the packet at src[o + prefix..] cut at the MTU (fragment-out.ts), each piece with the prefix. */
  private cut(batch: FrameBatch, i: number, src: Uint8Array, o: number, _len: number, prefix: number, act: Action, target: number, run: Run): void {
    const ip = o + prefix;
    const n = fragmentCount(src, ip, this.mtu);
    if (n === 0) {
      batch.verdict(i, Action.Drop, 0, 0, Drop.Fragment);
      run.counters.drop(Drop.Fragment);
      run.steps.drop(Drop.Fragment);
      return;
    }
    const side = this.side;
    const each = prefix + this.mtu + 8;
    if (!side.fits(n, each)) return this.noRoom(batch, i, n, run);
    for (let k = 0; k < n; k++) {
      const at = side.next;
      const out = side.slab;
      out.set(src.subarray(o, ip), at);
      const len = writeFragment(src, ip, this.mtu, k, out, at + prefix);
      if (act === Action.Underlay) patchOuterHeaders(out, at, ETH_HEADER_LEN + len, run.nextIdent());
      side.commit(act, prefix + len, target);
    }
    run.steps.fragment((src[ip + 4]! << 8) | src[ip + 5]!, 0, false, 'split', n);
    batch.verdict(i, Action.Held, 0, 0, 0);
  }

  private copyOut(batch: FrameBatch, i: number, src: Uint8Array, o: number, len: number, act: Action, target: number, run: Run): void {
    const side = this.side;
    if (!side.fits(1, len)) return this.noRoom(batch, i, 1, run);
    side.slab.set(src.subarray(o, o + len), side.next);
    side.commit(act, len, target);
    batch.verdict(i, Action.Held, 0, 0, 0);
  }

  private noRoom(batch: FrameBatch, i: number, frames: number, run: Run): void {
    run.counters.drops[Drop.FragmentNoRoom]! += frames;
    batch.verdict(i, Action.Drop, 0, 0, Drop.FragmentNoRoom);
    run.steps.drop(Drop.FragmentNoRoom);
  }
}

function reChecksum(buf: Uint8Array, ip: number): void {
  const hl = (buf[ip]! & 0x0f) << 2;
  buf[ip + 10] = 0;
  buf[ip + 11] = 0;
  const c = internetChecksum(buf, ip, hl);
  buf[ip + 10] = c >>> 8;
  buf[ip + 11] = c & 0xff;
}
