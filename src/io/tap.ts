// A container's TAP as a FrameDevice. The fd is opened by the native addon;
// bringing the device up, setting its MTU and moving it into the container's
// namespace is the cell's job (`ip` commands) — the fd keeps working after the
// move (a TAP's fd is bound to the device, not to a namespace).
//
// Reads: the native TapReader polls the fd with libuv and read()s frames until
// EAGAIN straight into this device's FrameBatch slots (at the headroom offset),
// then calls back once per batch. Writes: one write() per frame in native code,
// one JS→C++ call per batch.
//
// With vnetHdr (the default, when gro or tso is on: the cell's tap-gro and
// tap-tso offloads, src/offload/options.ts) the TAP is opened with
// IFF_VNET_HDR: reads skip the 10-byte virtio_net_hdr (the native reader puts
// it in the headroom), and writes go through GroPlanner, which (with gro)
// merges runs of in-order TCP segments into one GSO super-frame written once
// (src/offload/gro.ts); every other frame is written as it is behind a 10-byte
// header.
//
// With tso (on by default) the TAP also gets TUNSETOFFLOAD(TUN_F_CSUM |
// TUN_F_TSO4): the container's stack sends up to 64 KiB TCP super-frames. The
// native reader then reads whole packets into a per-device scratch buffer
// (RAW_BYTES, allocated once) and GsoSegmenter (src/offload/gso.ts) cuts them
// into MTU-sized frames in the batch's slots. One native→JS call per read
// burst; when a super-frame does not fit the free slots, the full batch is
// delivered and segmentation continues in the same call, so nothing is
// dropped or reordered. When the kernel refuses TUNSETOFFLOAD the addon falls
// back to no offloads and `tsoRefusal` says why.
//
// Drops: with a `drops` table (the cell's drop-reason counters,
// src/dataplane/counters.ts) every frame this device drops is counted there
// under its reason as well as in `stats`, once.
//
// Several workers per cell: with multiQueue the TAP is opened with
// IFF_MULTI_QUEUE and every open of the same name attaches one more queue (its
// index = the order of attach). The thread that opened the N queues keeps them
// (closing one renumbers the others); a worker thread wraps one with
// TapDevice.adopt(queue.handle(), opts) — fds are process-wide — and
// steerQueues(fd, n) attaches the steering program (native/steer.cc) that
// sends each flow to the queue src/dataplane/steer.ts names.
import { endianness } from 'node:os';
import { FrameBatch, DEFAULT_HEADROOM } from '../dataplane/batch.js';
import { Drop } from '../dataplane/counters.js';
import { GroPlanner, VNET_HDR_LEN, type GroCounters } from '../offload/gro.js';
import { GsoSegmenter, type GsoCounters } from '../offload/gso.js';
import type { ByteOps } from '../offload/bytes.js';
import { BATCH_SIZE, type FrameDevice } from './types.js';
import { errnoError, errnoName, isDeviceGone, loadNative, type NativeAddon, type NativeTapReader, type ReaderCounters, type TapHandle } from './native.js';

/** Frames per batch unless told otherwise: the one batch size (src/io/types.ts). */
export const DEFAULT_BATCH = BATCH_SIZE;
/** Fits a 1500-byte-MTU frame plus headroom with room to spare; the cell passes slotSizeFor(mtu). */
export const DEFAULT_SLOT_SIZE = 2048;
/** TSO scratch: room for six 64 KiB super-frames per read burst (the native reader reserves 65600 bytes per read). */
export const RAW_BYTES = 6 * 65600 + 64;

export interface TapOptions {
  /** TUNSETPERSIST: the device outlives this fd (needed to re-attach after a cell restart). */
  persist?: boolean;
  /**
   * IFF_MULTI_QUEUE: this device is one queue of a multi-queue TAP; opening the same name again attaches
   * the next queue (default false). Every queue must be opened with the same vnetHdr/tso: the kernel
   * keeps those per device.
   */
  multiQueue?: boolean;
  /** Bytes per slot including headroom (default 2048). */
  slotSize?: number;
  /** Frames per batch (default BATCH_SIZE, at most 1024). */
  batch?: number;
  headroom?: number;
  /**
   * Open with IFF_VNET_HDR (default: gro || tso, and never on a big-endian host, where the TAP's header
   * byte order differs). Without it the TAP sees plain MTU-sized frames both ways.
   */
  vnetHdr?: boolean;
  /** With vnetHdr: merge in-order TCP segments into super-frames on write (tap-gro; default true). */
  gro?: boolean;
  /**
   * With vnetHdr: TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4), reading TCP super-frames and segmenting them in
   * user space (tap-tso; default true).
   */
  tso?: boolean;
  /** With vnetHdr: verify TCP checksums before merging / marking DATA_VALID (default true). */
  groVerify?: boolean;
  /** The cell's drop-reason table (indexed by Drop): this device's drops are counted there too. */
  drops?: Float64Array;
  /**
   * Segment (tso) and verify (gro) with the addon's copySum/sumRanges, once per batch (default true;
   * false keeps that byte work in TypeScript, for paired measurements).
   */
  nativeBytes?: boolean;
  /**
   * With tso and nativeBytes: cut super-frames without copying payloads when every segment's IP length
   * is at most this (the inner MTU): headers in the slots, payloads referenced in the read buffer
   * (FrameBatch.ext, src/offload/gso.ts). 0 or absent: segments are copied whole into the slots.
   */
  zeroCopyMtu?: number;
  /**
   * With zero-copy: a super-frame's segments go to the pipeline as a run (FrameBatch.run) it carries
   * whole — one decision, the followers' headers written by the segmenter from the first's
   * (src/offload/gso.ts, RunEmitter). Only for a consumer that runs Dataplane.egress on every batch
   * (the cell); default false.
   */
  wholeTso?: boolean;
}

export interface TapStats {
  rxBatches: number;
  rxFrames: number;
  txFrames: number;
  /** Frames not written because the TAP's queue was full (EAGAIN). */
  txDropFull: number;
  /** Frames the kernel refused one by one (EINVAL: shorter than an Ethernet header, bytes outside the slab). */
  txDropBad: number;
  /** Frames not written because the device is gone. */
  txDropGone: number;
  /** vnetHdr only: GSO super-frames written, and the frames they carried (counted in txFrames too). */
  txSuperFrames: number;
  txMergedFrames: number;
  lastErrno: number;
}

/** What another thread needs to take over a TAP queue fd (TapDevice.adopt). */
export interface TapQueueHandle {
  fd: number;
  name: string;
  /** TSO reads are on for this fd (TUNSETOFFLOAD was granted). */
  tso: boolean;
  /** The fd was opened with IFF_VNET_HDR. */
  vnetHdr: boolean;
}

/**
 * Attach the inner-flow steering program for n workers (2..64) to the multi-queue TAP whose queue `fd` is
 * (one call steers every queue of the device; it replaces a program a persistent TAP kept). Needs CAP_BPF
 * or CAP_SYS_ADMIN. Attach all n queues first: the kernel takes the result modulo the queues attached.
 */
export function steerQueues(fd: number, n: number): void {
  const native = loadNative();
  if (native.steerTap === undefined) throw new Error('the native addon predates TAP steering: run npm run build:native');
  native.steerTap(fd, n);
}

/**
 * Why the kernel refused to attach to an existing device (EINVAL), when the addon could tell
 * (native/tap.cc RefusalDetail): it is a TAP with the other queue mode — 'multi' or 'single' is
 * the mode it has — or it is no TAP at all. Undefined for any other error.
 */
export function tapRefusal(err: unknown): 'multi' | 'single' | 'not-tap' | undefined {
  const e = err as NodeJS.ErrnoException;
  if (e?.code !== 'EINVAL' || typeof e.message !== 'string') return undefined;
  if (e.message.includes('exists without multi-queue')) return 'single';
  if (e.message.includes('exists with multi-queue')) return 'multi';
  if (e.message.includes('exists and is not a TAP')) return 'not-tap';
  return undefined;
}

export class TapDevice implements FrameDevice {
  readonly name: string;
  readonly fd: number;
  /** The receive batch: the native reader fills `slab` and `len`. Valid only inside onBatch. */
  readonly batch: FrameBatch;
  readonly stats: TapStats = {
    rxBatches: 0,
    rxFrames: 0,
    txFrames: 0,
    txDropFull: 0,
    txDropBad: 0,
    txDropGone: 0,
    txSuperFrames: 0,
    txMergedFrames: 0,
    lastErrno: 0,
  };
  /** Whether the device was opened with IFF_VNET_HDR (writes coalesce TCP). */
  readonly vnetHdr: boolean;
  /** Whether TSO reads are on (super-frames segmented by `gso`). */
  readonly tso: boolean;
  /** Set when tso was asked for and not granted: why (an errno name). */
  readonly tsoRefusal: string | undefined;
  /** Set when IFF_VNET_HDR was asked for and refused (the TAP then carries plain frames). */
  readonly vnetRefusal: string | undefined;
  private readonly drops: Float64Array | undefined;
  /** The read-side segmenter (tso only). */
  private gsoSeg: GsoSegmenter | undefined;
  private raw: Uint8Array | undefined;
  private rawMeta: Uint32Array | undefined;
  /** The write-side planner (vnetHdr only). */
  readonly gro: GroPlanner | undefined;
  private readonly native: NativeAddon;
  private reader: NativeTapReader | undefined;
  private onGone: ((err: Error) => void) | undefined;
  private goneErr: Error | undefined;
  private closed = false;
  /** close() closes the fd (false for an adopted fd: its opener closes it). */
  private readonly ownsFd: boolean;

  /** Open (or create) TAP `name` in this process's namespace; "" lets the kernel pick a name. */
  static create(name: string, opts: TapOptions = {}): TapDevice {
    const native = loadNative();
    let vnetHdr = resolveVnet(opts);
    const tso = vnetHdr && (opts.tso ?? true);
    const persist = opts.persist ?? false;
    const multiQueue = opts.multiQueue ?? false;
    let h: TapHandle;
    let vnetRefusal: string | undefined;
    try {
      try {
        h = native.openTap(name, { persist, vnetHdr, tso, multiQueue });
      } catch (err) {
        // A kernel that refuses IFF_VNET_HDR (EINVAL): fall back to plain frames, as wireguard-go
        // falls back when the TUN refuses its offloads, and say so.
        // An existing device with the other queue mode (or not a TAP) says EINVAL too: no retry for that.
        const e = err as NodeJS.ErrnoException;
        if (!vnetHdr || e.code !== 'EINVAL' || tapRefusal(e) !== undefined) throw err;
        vnetRefusal = 'EINVAL';
        vnetHdr = false;
        h = native.openTap(name, { persist, vnetHdr: false, tso: false, multiQueue });
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') {
        throw new Error(`opening TAP ${name || '(any name)'} needs root (CAP_NET_ADMIN)`);
      }
      throw err;
    }
    const granted = tso && vnetHdr && h.tso === true;
    return new TapDevice(native, h, opts, vnetHdr, granted, tso ? refusal(h, vnetRefusal) : undefined, vnetRefusal);
  }

  /**
   * Re-attach the persistent TAP `name` living in the namespace at `netnsPath` (e.g.
   * /var/run/netns/sw-appA-0), as after a cell restart. Fails with ENODEV if it is not there.
   */
  static attach(netnsPath: string, name: string, opts: Omit<TapOptions, 'persist'> = {}): TapDevice {
    const native = loadNative();
    const vnetHdr = resolveVnet(opts);
    const tso = vnetHdr && (opts.tso ?? true);
    const h = native.openTapInNetns(netnsPath, name, { vnetHdr, tso, multiQueue: opts.multiQueue ?? false });
    return new TapDevice(native, h, opts, vnetHdr, tso && h.tso === true, tso ? refusal(h, undefined) : undefined, undefined);
  }

  /**
   * Wrap a TAP fd somebody else opened (another thread's queue: fds are process-wide), as
   * `other.handle()` describes it. vnetHdr and tso are what the opener got (opts.vnetHdr/tso/persist/
   * multiQueue are ignored); slots, batch, drops and the offload tuning come from `opts`. close() stops
   * reading and releases the poll handle but leaves the fd open: the opener closes it (closing one queue
   * of a multi-queue TAP renumbers the others).
   */
  static adopt(h: TapHandle & { vnetHdr: boolean }, opts: TapOptions = {}): TapDevice {
    const native = loadNative();
    const tso = h.vnetHdr && h.tso === true;
    return new TapDevice(native, h, opts, h.vnetHdr, tso, undefined, undefined, false);
  }

  private constructor(
    native: NativeAddon,
    h: TapHandle,
    opts: TapOptions,
    vnetHdr: boolean,
    tso: boolean,
    tsoRefusal: string | undefined,
    vnetRefusal: string | undefined,
    ownsFd = true,
  ) {
    this.native = native;
    this.ownsFd = ownsFd;
    this.fd = h.fd;
    this.name = h.name;
    this.vnetHdr = vnetHdr;
    this.tso = tso;
    this.tsoRefusal = tsoRefusal;
    this.vnetRefusal = vnetRefusal;
    this.drops = opts.drops;
    const batch = opts.batch ?? DEFAULT_BATCH;
    const slot = opts.slotSize ?? DEFAULT_SLOT_SIZE;
    if (!Number.isInteger(batch) || batch < 1 || batch > native.maxBatch) {
      if (ownsFd) native.closeFd(h.fd);
      throw new Error(`batch must be an integer from 1 to ${native.maxBatch}, not ${batch}`);
    }
    const headroom = opts.headroom ?? DEFAULT_HEADROOM;
    if (vnetHdr && headroom < VNET_HDR_LEN) {
      if (ownsFd) native.closeFd(h.fd);
      throw new Error(`a TAP with vnetHdr needs a headroom of at least ${VNET_HDR_LEN} bytes, not ${headroom}`);
    }
    try {
      this.batch = new FrameBatch(batch, slot, headroom);
    } catch (err) {
      if (ownsFd) native.closeFd(h.fd);
      throw err;
    }
    // `batch` packets / 4 × `batch` frames per plan: a whole cell batch in one native call.
    // An addon built before the byte primitives has no copySum: the TypeScript paths then do the work.
    const bytes: ByteOps | undefined =
      (opts.nativeBytes ?? true) && native.copySum !== undefined && native.sumRanges !== undefined
        ? { copySum: native.copySum, sumRanges: native.sumRanges }
        : undefined;
    this.gro = vnetHdr ? new GroPlanner(batch, 4 * batch, opts.groVerify ?? true, opts.gro ?? true, bytes) : undefined;
    if (tso) {
      this.raw = new Uint8Array(RAW_BYTES);
      this.rawMeta = new Uint32Array(2 * batch);
      this.gsoSeg = new GsoSegmenter(this.raw, this.batch, opts.drops, bytes, opts.zeroCopyMtu ?? 0, opts.wholeTso ?? false);
    }
  }

  /** Deliver received frames; `onGone` is called once when the device disappears. */
  start(onBatch: (batch: FrameBatch) => void, onGone?: (err: Error) => void): void {
    if (this.closed) throw new Error(`TAP ${this.name} is closed`);
    if (this.reader) throw new Error(`TAP ${this.name} is already started`);
    this.onGone = onGone;
    const batch = this.batch;
    const stats = this.stats;
    // One closure for the device's life; per batch the addon passes a small int.
    const seg = this.gsoSeg;
    const meta = this.rawMeta;
    const deliver =
      seg === undefined || meta === undefined
        ? (count: number): void => {
            batch.count = count;
            stats.rxBatches++;
            stats.rxFrames += count;
            onBatch(batch);
          }
        : (npkts: number): void => {
            batch.count = 0;
            for (let p = 0; p < npkts; p++) {
              if (!seg.begin(meta[2 * p]!, meta[2 * p + 1]!)) continue;
              for (;;) {
                seg.fill();
                if (seg.done) break;
                // The batch is full mid-packet: hand it on, then carry on into the emptied batch.
                stats.rxBatches++;
                stats.rxFrames += batch.count;
                onBatch(batch);
                batch.count = 0;
              }
            }
            if (batch.count === 0) return;
            stats.rxBatches++;
            stats.rxFrames += batch.count;
            onBatch(batch);
          };
    this.reader = new this.native.TapReader(
      this.fd,
      batch.slab,
      batch.slotSize,
      batch.headroom,
      batch.capacity,
      batch.len,
      deliver,
      (errno) => this.markGone(errno, 'read'),
      this.vnetHdr ? VNET_HDR_LEN : 0,
      this.raw,
      this.rawMeta,
      this.drops,
      Drop.TapRxOversize,
      Drop.TapRxBadVnet,
    );
    this.reader.start();
  }

  /** Stop reading for a while; frames queue in the kernel (up to the TAP's txqueuelen). */
  pause(): void {
    this.reader?.stop();
  }

  resume(): void {
    if (this.closed || this.goneErr) return;
    this.reader?.start();
  }

  /** Write `count` frames (bytes at slab[offs[k]], lens[k]). Returns how many were written. */
  write(slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): number {
    const stats = this.stats;
    if (this.closed || this.goneErr) {
      stats.txDropGone += count;
      this.count(Drop.TapTxGone, count);
      return 0;
    }
    if (this.gro !== undefined) return this.writeVnet(this.gro, slab, offs, lens, count);
    let i = 0;
    let written = 0;
    while (i < count) {
      const r = this.native.writeFrames(this.fd, slab, offs, lens, count, i);
      if (r > 0) {
        i += r;
        written += r;
        continue;
      }
      if (r === 0) {
        // EAGAIN: the device's queue is full. Dropping is what a full qdisc does.
        stats.txDropFull += count - i;
        this.count(Drop.TapTxFull, count - i);
        break;
      }
      stats.lastErrno = -r;
      if (isDeviceGone(-r)) {
        stats.txDropGone += count - i;
        this.count(Drop.TapTxGone, count - i);
        this.markGone(-r, 'write');
        break;
      }
      stats.txDropBad++;
      this.count(Drop.TapTxRefused, 1);
      i++;
    }
    stats.txFrames += written;
    return written;
  }

  private writeVnet(gro: GroPlanner, slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): number {
    const stats = this.stats;
    const frames = gro.pktFrames;
    let i = 0;
    let written = 0;
    while (i < count) {
      const planned = gro.plan(slab, offs, lens, i, count);
      const npkts = gro.npkts;
      let p = 0;
      while (p < npkts) {
        const r = this.native.writeVnet(this.fd, slab, gro.hdrs, gro.pkts, gro.iovs, npkts, p);
        if (r > 0) {
          for (const end = p + r; p < end; p++) {
            const f = frames[p]!;
            written += f;
            if (f > 1) {
              stats.txSuperFrames++;
              stats.txMergedFrames += f;
            }
          }
          continue;
        }
        if (r === 0) {
          // EAGAIN: the device's queue is full. Dropping is what a full qdisc does.
          const lost = count - i - framesBefore(frames, p);
          stats.txDropFull += lost;
          this.count(Drop.TapTxFull, lost);
          stats.txFrames += written;
          return written;
        }
        stats.lastErrno = -r;
        if (isDeviceGone(-r)) {
          const lost = count - i - framesBefore(frames, p);
          stats.txDropGone += lost;
          this.count(Drop.TapTxGone, lost);
          stats.txFrames += written;
          this.markGone(-r, 'write');
          return written;
        }
        stats.txDropBad += frames[p]!;
        this.count(Drop.TapTxRefused, frames[p]!);
        p++;
      }
      i += planned;
    }
    stats.txFrames += written;
    return written;
  }

  /** Count n frames dropped for `reason` in the cell's table (when the device has one). */
  private count(reason: Drop, n: number): void {
    const d = this.drops;
    if (d !== undefined) d[reason]! += n;
  }

  /** TSO segmentation counters (tso only): super-frames, segments, completed checksums, drops. */
  gsoCounters(): GsoCounters | undefined {
    return this.gsoSeg?.counters;
  }

  /** GRO counters (vnetHdr only): super-frames planned, frames merged, TCP checksum failures. */
  groCounters(): GroCounters | undefined {
    return this.gro?.counters;
  }

  /** What another thread needs to adopt this fd (TapDevice.adopt). */
  handle(): TapQueueHandle {
    return { fd: this.fd, name: this.name, tso: this.tso, vnetHdr: this.vnetHdr };
  }

  /** steerQueues(this.fd, n): steer the device's queues to n workers (see steerQueues). */
  steer(n: number): void {
    steerQueues(this.fd, n);
  }

  /** TUNSETPERSIST on or off (off lets the device vanish when the last fd closes). */
  setPersist(on: boolean): void {
    this.native.setPersist(this.fd, on);
  }

  /** The native reader's counters (wakeups, batches, frames, oversize drops). */
  readerCounters(): ReaderCounters | undefined {
    const c = this.reader?.counters();
    const g = this.gsoSeg?.counters;
    if (c !== undefined && g !== undefined) {
      // In TSO mode the size and header checks happen in the segmenter: fold its drops into the same
      // counters, so "oversize" and "badVnet" mean the same thing with TSO on or off.
      c.oversize += g.dropTooBig;
      c.badVnet = (c.badVnet ?? 0) + g.dropMalformed + g.dropUnsupported;
    }
    return c;
  }

  /** Set once the device disappeared (its namespace was deleted). */
  get gone(): Error | undefined {
    return this.goneErr;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Release the poll handle before the fd number can be reused.
    this.reader?.close();
    if (this.ownsFd) this.native.closeFd(this.fd);
  }

  private markGone(errno: number, op: string): void {
    if (this.goneErr) return;
    this.stats.lastErrno = errno;
    this.goneErr = errnoError(`TAP ${this.name} ${op} failed: the device is gone`, errno);
    this.reader?.stop();
    const cb = this.onGone;
    if (cb) cb(this.goneErr);
  }
}

function resolveVnet(opts: TapOptions): boolean {
  const v = opts.vnetHdr;
  if (v === true && endianness() !== 'LE') throw new Error('vnetHdr needs a little-endian host (the TAP header is in host order)');
  return v ?? (((opts.gro ?? true) || (opts.tso ?? true)) && endianness() === 'LE');
}

/** Why TSO was not granted: the refused IFF_VNET_HDR, or TUNSETOFFLOAD's errno; undefined when granted. */
function refusal(h: TapHandle, vnetRefusal: string | undefined): string | undefined {
  if (vnetRefusal !== undefined) return vnetRefusal;
  if (h.tso === true) return undefined;
  // An addon built before the fallback does not report an errno.
  return h.tsoErrno ? errnoName(h.tsoErrno) : 'refused';
}

/** Frames carried by packets 0..p-1 of the current plan. */
function framesBefore(frames: Uint32Array, p: number): number {
  let n = 0;
  for (let k = 0; k < p; k++) n += frames[k]!;
  return n;
}
