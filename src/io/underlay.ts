// The underlay as a DatagramSocket: VXLAN datagrams in on a UDP socket bound
// to port 4789 (recvmmsg into this socket's FrameBatch), full IPv4 packets out
// on a raw socket (IP_HDRINCL, one sendmmsg per call). DESIGN.md "Wire format":
// the outer headers are built in user space, so the source port can hash the
// inner flow and the GBP bits are ours to set; receiving on a plain UDP socket
// lets the kernel check the outer IPv4/UDP for us.
import { FrameBatch, DEFAULT_HEADROOM } from '../dataplane/batch.js';
import { u32ToIp } from '../util/ip.js';
import type { DatagramSocket } from './types.js';
import { loadNative, type NativeAddon, type NativeUdpReceiver, type ReaderCounters } from './native.js';
import { DEFAULT_BATCH, DEFAULT_SLOT_SIZE } from './tap.js';

export const VXLAN_PORT = 4789;

export interface UnderlayOptions {
  /** Local address to bind (host-order u32); 0 = any. */
  bindIp?: number;
  /** UDP port to receive on (default 4789; 0 picks a free one, see `port`). */
  port?: number;
  slotSize?: number;
  batch?: number;
  headroom?: number;
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
      this.receiver = new native.UdpReceiver(this.bindIp, port, b.slab, b.slotSize, b.headroom, b.capacity, b.len, b.srcIp, b.srcPort, deliver);
    } catch (err) {
      native.closeFd(this.rawFd);
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE') {
        throw new Error(`UDP ${u32ToIp(this.bindIp)}:${port} is already in use (another cell or a kernel VXLAN device in this namespace?)`);
      }
      throw err;
    }
    this.port = this.receiver.port();
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
  send(slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, dsts: Uint32Array, count: number): number {
    const stats = this.stats;
    if (this.closed) {
      stats.txDropFull += count;
      return 0;
    }
    let i = 0;
    let sent = 0;
    while (i < count) {
      const r = this.native.sendBatch(this.rawFd, slab, offs, lens, dsts, count, i);
      if (r > 0) {
        i += r;
        sent += r;
        continue;
      }
      if (r === 0) {
        // EAGAIN: the send buffer is full. Drop (counted) rather than block the loop.
        stats.txDropFull += count - i;
        break;
      }
      stats.txDropRefused++;
      stats.lastErrno = -r;
      i++;
    }
    stats.txPackets += sent;
    return sent;
  }

  receiverCounters(): ReaderCounters {
    return this.receiver.counters();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.receiver.close();
    this.native.closeFd(this.rawFd);
  }
}
