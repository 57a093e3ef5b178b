// One data plane's frame mover: the Dataplane, the devices it reads and
// writes, and the dispatch that carries out the pipeline's verdicts with one
// send/write call per destination. A cell has one (its main thread); with
// --workers N each worker thread (src/cell/worker.ts) has its own, over its
// own queue of every container's TAP and its own socket on UDP 4789.
import { Action, FrameBatch } from '../dataplane/batch.js';
import { Wire } from '../wire/offsets.js';
import { Drop, Stat } from '../dataplane/counters.js';
import type { Dataplane } from '../dataplane/dataplane.js';
import { BATCH_SIZE, type DatagramSocket, type FrameDevice } from '../io/types.js';

const BATCH = BATCH_SIZE;

/** The devices' own counters (syscall-level drops: full queues, EAGAIN; GSO/GRO and TSO work), where they keep any. */
export function deviceStats(underlay: DatagramSocket, devs: Iterable<FrameDevice>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const statsOf = (d: unknown) => (d && typeof d === 'object' && 'stats' in d ? (d as { stats: unknown }).stats : undefined);
  out.underlay = statsOf(underlay);
  // GSO sender and GRO receiver counters, where the underlay has them.
  const u = underlay as unknown as { senderCounters?: () => unknown; receiverCounters?: () => unknown };
  if (typeof u?.senderCounters === 'function') out.underlay_gso = u.senderCounters();
  if (typeof u?.receiverCounters === 'function') out.underlay_rx = u.receiverCounters();
  for (const d of devs) {
    out[d.name] = statsOf(d);
    // TSO segmentation (super-frames, segments, runs carried whole), where the TAP has it.
    const g = (d as unknown as { gsoCounters?: () => unknown }).gsoCounters?.();
    if (g !== undefined) out[`${d.name}.tso`] = g;
  }
  return out;
}

export class Forwarder {
  /** Devices by port index. */
  private readonly devByIndex: (FrameDevice | undefined)[] = [];
  /** The silk-vtep capture point, when enabled: written, never read. */
  capture: FrameDevice | null = null;
  // Scratch for dispatch: one set per forwarder, reused for every batch.
  private readonly sOff = new Uint32Array(BATCH);
  private readonly sLen = new Uint32Array(BATCH);
  private readonly sDst = new Uint32Array(BATCH);
  /** Zero-copy segments' payload pieces (FrameBatch.ext), per underlay packet of a dispatch. */
  private readonly sXOff = new Uint32Array(BATCH);
  private readonly sXLen = new Uint32Array(BATCH);
  private readonly tOff = new Uint32Array(BATCH);
  private readonly tLen = new Uint32Array(BATCH);
  private readonly cOff = new Uint32Array(BATCH);
  private readonly cLen = new Uint32Array(BATCH);

  constructor(
    readonly dp: Dataplane,
    private readonly underlay: DatagramSocket,
    private readonly now: () => number,
  ) {}

  /** Move the underlay's batches through ingress. */
  startUnderlay(): void {
    this.underlay.start((batch) => {
      if (this.capture !== null) this.captureIngress(batch);
      this.dp.ingress(batch, this.now());
      this.dispatch(batch);
      this.dispatchSide();
    });
  }

  /** Move a container's TAP batches through egress as port `index`; `onGone` when its device vanishes. */
  startDevice(index: number, dev: FrameDevice, onGone: (err: Error) => void): void {
    this.devByIndex[index] = dev;
    dev.start((batch) => {
      this.dp.egress(batch, index, this.now());
      this.dispatch(batch);
      this.dispatchSide();
    }, onGone);
  }

  /** Forget port `index`'s device (the caller closes it). */
  dropDevice(index: number): void {
    this.devByIndex[index] = undefined;
  }

  /** What the kernel's silk-vtep receives: each decapsulated inner frame, before policy. */
  private captureIngress(batch: FrameBatch): void {
    let n = 0;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.len[i]!;
      if (len < 8 + 14) continue;
      this.cOff[n] = batch.inOff(i) + 8;
      this.cLen[n] = len - 8;
      n++;
    }
    if (n > 0) this.capture!.write(batch.slab, this.cOff, this.cLen, n);
  }

  /**
   * Send what the pipeline put in its side area (the fragments of datagrams),
   * in chunks of a batch: one underlay send, one write per TAP, per chunk.
   */
  private dispatchSide(): void {
    const side = this.dp.side;
    const total = side.count;
    for (let base = 0; base < total; base += BATCH) {
      const end = Math.min(total, base + BATCH);
      let nu = 0;
      for (let k = base; k < end; k++) {
        if (side.action[k] !== Action.Underlay) continue;
        this.sOff[nu] = side.off[k]!;
        this.sLen[nu] = side.len[k]!;
        this.sDst[nu] = side.target[k]!;
        nu++;
      }
      if (nu > 0) {
        this.underlay.send(side.slab, this.sOff, this.sLen, this.sDst, nu);
        if (this.capture !== null) {
          for (let k = 0; k < nu; k++) {
            this.cOff[k] = this.sOff[k]! + 36;
            this.cLen[k] = this.sLen[k]! - 36;
          }
          this.capture.write(side.slab, this.cOff, this.cLen, nu);
        }
      }
      for (let k = base; k < end; k++) {
        if (side.action[k] !== Action.Tap) continue;
        const target = side.target[k]!;
        let nt = 0;
        for (let j = k; j < end; j++) {
          if (side.action[j] === Action.Tap && side.target[j] === target) {
            this.tOff[nt] = side.off[j]!;
            this.tLen[nt] = side.len[j]!;
            nt++;
            side.action[j] = Action.Drop; // handled
          }
        }
        const dev = this.devByIndex[target];
        if (dev !== undefined) dev.write(side.slab, this.tOff, this.tLen, nt);
      }
    }
    side.reset();
  }

  /**
   * Carry out the pipeline's verdicts: one underlay send, one write per TAP. Zero-copy segments
   * (batch.extLen[i] > 0) encapsulated whole go to the underlay in two pieces (headers in the slot,
   * payload in batch.ext); one delivered whole to a TAP, or any with the capture on, is made whole
   * in its slot first; any other output of such a slot (an ICMP error built in place) lies in the slot.
   */
  private dispatch(batch: FrameBatch): void {
    const n = batch.count;
    const action = batch.action;
    const ext = batch.ext;
    if (ext !== undefined && this.capture !== null) for (let i = 0; i < n; i++) batch.materialize(i);
    let nu = 0;
    let nx = 0;
    for (let i = 0; i < n; i++) {
      if (action[i] === Action.Underlay) {
        const len = batch.outLen[i]!;
        this.sOff[nu] = batch.outOff[i]!;
        this.sLen[nu] = len;
        this.sDst[nu] = batch.outTarget[i]!;
        let xl = 0;
        if (ext !== undefined) {
          xl = batch.extLen[i]!;
          // Only the whole frame behind the outer headers carries the piece outside the slot.
          if (xl !== 0 && len !== batch.len[i]! + Wire.VXLAN_ENCAP_LEN) {
            batch.materialize(i);
            xl = 0;
          }
          this.sXOff[nu] = batch.extOff[i]!;
          this.sXLen[nu] = xl;
          if (xl !== 0) nx++;
        }
        nu++;
      }
    }
    // Final outcomes: what the devices took is delivered or sent; what they
    // refused they count under their own drop reasons (never both).
    const stats = this.dp.counters.stats;
    if (nu > 0) {
      stats[Stat.Sent]! +=
        nx > 0
          ? this.underlay.send(batch.slab, this.sOff, this.sLen, this.sDst, nu, ext, this.sXOff, this.sXLen)
          : this.underlay.send(batch.slab, this.sOff, this.sLen, this.sDst, nu);
      if (this.capture !== null) {
        // What the kernel's silk-vtep transmits: the inner frame, VTEP MACs, TTL already decremented.
        for (let k = 0; k < nu; k++) {
          this.cOff[k] = this.sOff[k]! + 36;
          this.cLen[k] = this.sLen[k]! - 36;
        }
        this.capture.write(batch.slab, this.cOff, this.cLen, nu);
      }
    }
    for (let i = 0; i < n; i++) {
      if (action[i] !== Action.Tap) continue;
      const target = batch.outTarget[i]!;
      let nt = 0;
      for (let j = i; j < n; j++) {
        if (action[j] === Action.Tap && batch.outTarget[j] === target) {
          if (ext !== undefined && batch.extLen[j]! !== 0 && batch.outLen[j]! === batch.len[j]!) batch.materialize(j);
          this.tOff[nt] = batch.outOff[j]!;
          this.tLen[nt] = batch.outLen[j]!;
          nt++;
          action[j] = Action.Drop; // handled
        }
      }
      const dev = this.devByIndex[target];
      if (dev !== undefined) stats[Stat.Delivered]! += dev.write(batch.slab, this.tOff, this.tLen, nt);
      else this.dp.counters.drops[Drop.TapTxGone]! += nt;
    }
  }
}
