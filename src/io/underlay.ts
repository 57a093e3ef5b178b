// The underlay as a DatagramSocket: VXLAN datagrams in on a UDP socket bound
// to port 4789 (recvmmsg into this socket's FrameBatch), full IPv4 packets out
// on a raw socket (IP_HDRINCL, one sendmmsg per call). The outer headers are
// built in user space (src/dataplane/encap.ts), so the source port can hash the
// inner flow and the GBP bits are ours to set; receiving on a plain UDP socket
// lets the kernel check the outer IPv4/UDP for us.
//
// With `gso` (udp-gso, the default), runs of same-flow packets leave through a
// pool of UDP sockets bound to (underlay IP, source port) as one UDP_SEGMENT
// message each; with `gro` (udp-gro, the default) the receive socket sets
// UDP_GRO so a coalesced message comes up whole and is split into batch slots
// in the addon: fewer, larger kernel crossings. The wire carries the same
// VXLAN datagrams, except that GSO datagrams have a real UDP checksum (Linux
// refuses GSO with SO_NO_CHECK; RFC 7348 section 5 allows either). What the
// kernel refuses falls back (gsoRefusal, groRefusal say why), as
// wireguard-go does.
//
// Several workers per cell: with `reusePort` the receive socket joins a
// SO_REUSEPORT group (each worker binds one, in worker order: the kernel's
// socket index is the bind order), and steer(n) on any of them attaches the
// steering program (native/steer.cc) that sends each inner flow to the socket
// src/dataplane/steer.ts names. The GSO pool sockets stay without it.
//
// Drops: with a `drops` table (the cell's drop-reason counters) every packet
// this socket drops is counted there under its reason as well as in `stats`.
import { FrameBatch, DEFAULT_HEADROOM } from '../dataplane/batch.js';
import { Drop } from '../dataplane/counters.js';
import { u32ToIp } from '../util/ip.js';
import type { DatagramSocket } from './types.js';
import {
  errnoName,
  loadNative,
  type GsoSenderCounters,
  type NativeAddon,
  type NativeUdpGsoSender,
  type NativeUdpReceiver,
  type UdpReceiverCounters,
} from './native.js';
import { DEFAULT_BATCH, DEFAULT_SLOT_SIZE } from './tap.js';

export const VXLAN_PORT = 4789;

/**
 * Most pool sockets (one per outer source port in use); flows beyond it take the raw path. Node raises
 * its RLIMIT_NOFILE soft limit to the hard limit at start-up; should socket() still fail (EMFILE) the
 * addon counts it and uses the raw path for that packet run.
 */
export const GSO_MAX_SOCKETS = 1024;

export interface UnderlayOptions {
  /** Local address to bind (host-order u32); 0 = any. */
  bindIp?: number;
  /** UDP port to receive on (default 4789; 0 picks a free one, see `port`). */
  port?: number;
  slotSize?: number;
  batch?: number;
  headroom?: number;
  /**
   * UDP GSO on send (udp-gso; default true). Sending with GSO needs a bindIp (the pool binds to it);
   * with bindIp 0 it is not used.
   */
  gso?: boolean;
  /** UDP_GRO on receive (udp-gro; default: the value of `gso`, so `gso: false` alone turns both off). */
  gro?: boolean;
  /** The cell's drop-reason table (indexed by Drop): this socket's drops are counted there too. */
  drops?: Float64Array;
  /**
   * The containers' MTU (largest inner IPv4 packet). With it and udp-gro, a UDP-tunnel super-packet
   * (inner TCP with TSO, which a kernel VXLAN sender on the same host hands over whole) is cut into
   * segments of at most this size instead of being dropped as underlay-rx-oversize.
   */
  innerMtu?: number;
  /**
   * SO_REUSEPORT on the receive socket (default false): one socket per worker of a cell, all bound to the
   * same address and port. Without it a second bind fails (EADDRINUSE), which keeps a second cell from
   * quietly sharing this one's inbound VXLAN.
   */
  reusePort?: boolean;
}

export interface UnderlayStats {
  rxBatches: number;
  rxDatagrams: number;
  txPackets: number;
  /** Not sent: the socket's send buffer was full (EAGAIN). */
  txDropFull: number;
  /** Refused by the kernel one by one (EMSGSIZE, EINVAL, ENETUNREACH…); errno in lastErrno. */
  txDropRefused: number;
  lastErrno: number;
}

export class UdpUnderlay implements DatagramSocket {
  /** The receive batch: payloads (VXLAN header first) with srcIp/srcPort. Valid only inside onBatch. */
  readonly batch: FrameBatch;
  /** The bound UDP port. */
  readonly port: number;
  readonly bindIp: number;
  readonly stats: UnderlayStats = { rxBatches: 0, rxDatagrams: 0, txPackets: 0, txDropFull: 0, txDropRefused: 0, lastErrno: 0 };
  private readonly native: NativeAddon;
  private readonly rawFd: number;
  private readonly receiver: NativeUdpReceiver;
  private readonly gsoSender: NativeUdpGsoSender | undefined;
  /** UDP GSO in use for sending (asked for, a bindIp, and the kernel has UDP_SEGMENT). */
  readonly gso: boolean;
  /** UDP_GRO in use on the receive socket. */
  readonly gro: boolean;
  /** Why GSO was asked for and is not used (an errno name, or "no bind address"). */
  readonly gsoRefusal: string | undefined;
  /** Why UDP_GRO was asked for and refused (an errno name). */
  readonly groRefusal: string | undefined;
  private readonly drops: Float64Array | undefined;
  private onBatch: ((batch: FrameBatch) => void) | undefined;
  private started = false;
  private closed = false;

  /** Open the raw sender and bind the receiver (in this process's namespace). */
  static open(opts: UnderlayOptions = {}): UdpUnderlay {
    return new UdpUnderlay(loadNative(), opts);
  }

  private constructor(native: NativeAddon, opts: UnderlayOptions) {
    this.native = native;
    const batch = opts.batch ?? DEFAULT_BATCH;
    if (!Number.isInteger(batch) || batch < 1 || batch > native.maxBatch) {
      throw new Error(`batch must be an integer from 1 to ${native.maxBatch}, not ${batch}`);
    }
    const port = opts.port ?? VXLAN_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`port must be 0-65535, not ${port}`);
    this.bindIp = (opts.bindIp ?? 0) >>> 0;
    this.drops = opts.drops;
    const wantGso = opts.gso ?? true;
    const wantGro = opts.gro ?? wantGso;
    const b = new FrameBatch(batch, opts.slotSize ?? DEFAULT_SLOT_SIZE, opts.headroom ?? DEFAULT_HEADROOM);
    this.batch = b;
    try {
      this.rawFd = native.openRawSocket();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') {
        throw new Error('opening the raw underlay socket needs root (CAP_NET_RAW)');
      }
      throw err;
    }
    const stats = this.stats;
    // One closure for the socket's life; per batch the addon passes a small int.
    const deliver = (count: number): void => {
      b.count = count;
      stats.rxBatches++;
      stats.rxDatagrams += count;
      const cb = this.onBatch;
      if (cb) cb(b);
    };
    try {
      this.receiver = new native.UdpReceiver(
        this.bindIp,
        port,
        b.slab,
        b.slotSize,
        b.headroom,
        b.capacity,
        b.len,
        b.srcIp,
        b.srcPort,
        deliver,
        wantGro,
        opts.drops,
        Drop.UnderlayRxOversize,
        b.tos,
        opts.innerMtu ?? 0,
        opts.reusePort ?? false,
      );
    } catch (err) {
      native.closeFd(this.rawFd);
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE') {
        throw new Error(`UDP ${u32ToIp(this.bindIp)}:${port} is already in use (another cell or a kernel VXLAN device in this namespace?)`);
      }
      throw err;
    }
    this.port = this.receiver.port();
    const rc = this.receiver.counters();
    this.gro = rc.gro;
    this.groRefusal = wantGro && !rc.gro ? (rc.groErrno ? errnoName(rc.groErrno) : 'refused') : undefined;
    // Ask the kernel once whether it has UDP_SEGMENT (an addon without the probe: assume it has, as before).
    const probe = wantGso && this.bindIp !== 0 ? (native.probeUdpSegment?.() ?? 0) : 0;
    this.gsoRefusal = !wantGso ? undefined : this.bindIp === 0 ? 'no bind address' : probe !== 0 ? errnoName(probe) : undefined;
    this.gso = wantGso && this.gsoRefusal === undefined;
    this.gsoSender = this.gso ? new native.UdpGsoSender(this.bindIp, this.rawFd, GSO_MAX_SOCKETS) : undefined;
  }

  start(onBatch: (batch: FrameBatch) => void): void {
    if (this.closed) throw new Error('the underlay socket is closed');
    if (this.started) throw new Error('the underlay socket is already started');
    this.started = true;
    this.onBatch = onBatch;
    this.receiver.start();
  }

  /** Stop receiving for a while; datagrams queue in the socket's receive buffer. */
  pause(): void {
    if (this.started && !this.closed) this.receiver.stop();
  }

  resume(): void {
    if (this.started && !this.closed) this.receiver.start();
  }

  /** Send `count` full IPv4 packets (outer headers included) to next hops dsts[k]. Returns packets sent. */
  send(
    slab: Uint8Array,
    offs: Uint32Array,
    lens: Uint32Array,
    dsts: Uint32Array,
    count: number,
    ext?: Uint8Array,
    extOffs?: Uint32Array,
    extLens?: Uint32Array,
  ): number {
    const stats = this.stats;
    if (this.closed) {
      stats.txDropFull += count;
      this.count(Drop.UnderlayTxFull, count);
      return 0;
    }
    let i = 0;
    let sent = 0;
    const gso = this.gsoSender;
    while (i < count) {
      // The GSO sender makes one syscall per call (a run of groups or of raw packets) with the same
      // return contract as sendBatch, so this loop is the same for both.
      const r =
        gso !== undefined
          ? gso.send(slab, offs, lens, dsts, count, i, ext, extOffs, extLens)
          : this.native.sendBatch(this.rawFd, slab, offs, lens, dsts, count, i, ext, extOffs, extLens);
      if (r > 0) {
        i += r;
        sent += r;
        continue;
      }
      if (r === 0) {
        // EAGAIN: the send buffer is full. Drop (counted) rather than block the loop.
        stats.txDropFull += count - i;
        this.count(Drop.UnderlayTxFull, count - i);
        break;
      }
      stats.txDropRefused++;
      this.count(Drop.UnderlayTxRefused, 1);
      stats.lastErrno = -r;
      i++;
    }
    stats.txPackets += sent;
    return sent;
  }

  private count(reason: Drop, n: number): void {
    const d = this.drops;
    if (d !== undefined) d[reason]! += n;
  }

  /**
   * Attach the inner-flow steering program for n workers (2..64) to the receive socket's SO_REUSEPORT
   * group (needs reusePort; one call covers the group). Call it once all n sockets are bound, in worker
   * order: the program's result is a socket index, and an index the group does not have makes the kernel
   * fall back to hashing the outer header.
   */
  steer(n: number): void {
    if (this.closed) throw new Error('the underlay socket is closed');
    const r = this.receiver;
    if (r.steer === undefined) throw new Error('the native addon predates reuseport steering: run npm run build:native');
    r.steer(n);
  }

  receiverCounters(): UdpReceiverCounters {
    return this.receiver.counters();
  }

  /** The GSO sender's counters, or undefined when sending uses the raw socket only. */
  senderCounters(): GsoSenderCounters | undefined {
    return this.gsoSender?.counters();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.receiver.close();
    this.gsoSender?.close();
    this.native.closeFd(this.rawFd);
  }
}
