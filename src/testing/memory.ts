// In-memory FrameDevice and DatagramSocket for tests: two complete cells can
// talk to each other through a MemoryUnderlay without root or a kernel
// (wireguard-go tests its devices the same way, over channels).
//
// These are fakes, not the hot path: they copy and allocate freely. What they
// keep from the real thing is the contract — frames arrive in a FrameBatch at
// the headroom offset, the batch is reused after onBatch returns, a device can
// disappear, a send takes full IPv4 packets and the receiver sees only the UDP
// payload with the outer source address and port.
import { FrameBatch, DEFAULT_HEADROOM } from '../dataplane/batch.js';
import { Drop } from '../dataplane/counters.js';
import { u32ToIp } from '../util/ip.js';
import { readU16, readU32 } from '../wire/bytes.js';
import { Wire } from '../wire/offsets.js';
import { BATCH_SIZE, type DatagramSocket, type FrameDevice } from '../io/types.js';

const DEFAULT_CAPACITY = BATCH_SIZE;
const DEFAULT_SLOT = 2048;

export interface MemoryBatchOptions {
  capacity?: number;
  slotSize?: number;
  headroom?: number;
  /** The cell's drop-reason table: the device's drops are counted there too, as the real devices do. */
  drops?: Float64Array;
}

function makeBatch(opts: MemoryBatchOptions): FrameBatch {
  return new FrameBatch(opts.capacity ?? DEFAULT_CAPACITY, opts.slotSize ?? DEFAULT_SLOT, opts.headroom ?? DEFAULT_HEADROOM);
}

// ---------------------------------------------------------------------------

/** A fake TAP: `inject()` frames as if the container sent them; `written` holds what the cell wrote. */
export class MemoryFrameDevice implements FrameDevice {
  readonly name: string;
  readonly batch: FrameBatch;
  /** Copies of every frame written to the device, in order. */
  readonly written: Uint8Array[] = [];
  readonly stats = { rxBatches: 0, rxFrames: 0, rxOversize: 0, txFrames: 0, txDropFull: 0, txDropGone: 0 };
  /** Frames write() accepts before reporting a full queue (simulates EAGAIN); Infinity by default. */
  writeBudget = Infinity;
  private onBatch: ((batch: FrameBatch) => void) | undefined;
  private onGone: ((err: Error) => void) | undefined;
  private readonly pending: Uint8Array[] = [];
  /** Per pending frame: bytes kept in the slot when it arrives split (injectSplit), 0 = whole. */
  private readonly pendingHead: number[] = [];
  /** Where split frames' remaining bytes go (the batch's ext buffer), and how much of it is in use. */
  private ext: Uint8Array | undefined;
  private extUsed = 0;
  private delivering = false;
  private goneErr: Error | undefined;
  private closed = false;
  private readonly drops: Float64Array | undefined;

  constructor(name = 'mem0', opts: MemoryBatchOptions = {}) {
    this.name = name;
    this.batch = makeBatch(opts);
    this.drops = opts.drops;
  }

  start(onBatch: (batch: FrameBatch) => void, onGone?: (err: Error) => void): void {
    if (this.onBatch) throw new Error(`device ${this.name} is already started`);
    this.onBatch = onBatch;
    this.onGone = onGone;
    this.drain();
  }

  /**
   * The container sends frames: they are copied into the batch (up to `capacity` per onBatch call)
   * and delivered synchronously, or queued until start(). Frames larger than a slot are dropped and
   * counted, as the native reader does. Returns how many frames were accepted.
   */
  inject(...frames: Uint8Array[]): number {
    if (this.closed || this.goneErr) return 0;
    let accepted = 0;
    for (const f of frames) {
      if (f.length > this.batch.maxFrame) {
        this.stats.rxOversize++;
        if (this.drops) this.drops[Drop.TapRxOversize]!++;
        continue;
      }
      this.pending.push(f.slice());
      this.pendingHead.push(0);
      accepted++;
    }
    this.drain();
    return accepted;
  }

  /**
   * As a zero-copy TSO segment arrives (src/offload/gso.ts): only the first `head` bytes in the slot
   * (the rest of the slot poisoned with 0xa5), the remaining bytes in the batch's ext buffer
   * (FrameBatch.ext/extOff/extLen). For tests of the paths that must gather or materialize them.
   */
  injectSplit(frame: Uint8Array, head: number): number {
    if (this.closed || this.goneErr || frame.length > this.batch.maxFrame || head <= 0 || head >= frame.length) return 0;
    this.pending.push(frame.slice());
    this.pendingHead.push(head);
    this.drain();
    return 1;
  }

  /** Frames injected but not yet delivered (before start(), or while paused). */
  get queued(): number {
    return this.pending.length;
  }

  write(slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): number {
    if (this.closed || this.goneErr) {
      this.stats.txDropGone += count;
      if (this.drops) this.drops[Drop.TapTxGone]! += count;
      return 0;
    }
    let k = 0;
    for (; k < count; k++) {
      if (this.writeBudget <= 0) break;
      const off = offs[k]!;
      const len = lens[k]!;
      if (off + len > slab.length) throw new RangeError(`frame ${k} (offset ${off}, length ${len}) lies outside the slab`);
      this.written.push(slab.slice(off, off + len));
      this.writeBudget--;
    }
    this.stats.txFrames += k;
    this.stats.txDropFull += count - k;
    if (this.drops) this.drops[Drop.TapTxFull]! += count - k;
    return k;
  }

  /** Simulate the container's namespace being deleted: onGone fires once, I/O stops. */
  disappear(err: Error = Object.assign(new Error(`TAP ${this.name} read failed: the device is gone`), { code: 'EBADFD' })): void {
    if (this.goneErr || this.closed) return;
    this.goneErr = err;
    this.pending.length = 0;
    this.pendingHead.length = 0;
    this.onGone?.(err);
  }

  get gone(): Error | undefined {
    return this.goneErr;
  }

  close(): void {
    this.closed = true;
    this.pending.length = 0;
    this.pendingHead.length = 0;
  }

  private drain(): void {
    // Never re-enter onBatch: frames injected from inside it wait for the outer loop,
    // because the batch's slab is still being read.
    if (this.delivering || !this.onBatch) return;
    this.delivering = true;
    try {
      const b = this.batch;
      while (this.pending.length > 0 && !this.closed && !this.goneErr) {
        b.count = 0;
        this.extUsed = 0;
        while (b.count < b.capacity && this.pending.length > 0) {
          const f = this.pending.shift()!;
          const head = this.pendingHead.shift()!;
          if (head === 0) {
            b.push(f);
            b.extLen[b.count - 1] = 0;
            continue;
          }
          this.ext ??= new Uint8Array(b.capacity * b.maxFrame);
          b.ext = this.ext;
          b.push(f.subarray(0, head));
          const i = b.count - 1;
          b.slab.fill(0xa5, b.inOff(i) + head, b.inOff(i) + f.length);
          this.ext.set(f.subarray(head), this.extUsed);
          b.len[i] = f.length;
          b.extOff[i] = this.extUsed;
          b.extLen[i] = f.length - head;
          this.extUsed += f.length - head;
        }
        this.stats.rxBatches++;
        this.stats.rxFrames += b.count;
        this.onBatch(b);
      }
    } finally {
      this.delivering = false;
    }
  }
}

// ---------------------------------------------------------------------------

/** Why the fake underlay refused or could not deliver a packet. */
export type UnderlayDropReason =
  | 'short' // fewer than 28 bytes (IPv4 + UDP headers)
  | 'notIpv4' // version != 4 or IHL < 5
  | 'badLength' // IPv4 total length != bytes handed to send()
  | 'fragment' // MF set or a fragment offset: silkworm never fragments the outer packet
  | 'notUdp' // protocol != 17
  | 'badUdpLength' // UDP length != IPv4 payload length
  | 'badChecksum' // non-zero UDP checksum that does not verify (RFC 768); zero is allowed (RFC 7348 §5)
  | 'noListener'; // no socket joined with the destination IP and port

export interface SentPacket {
  /** Source IP from the header (or the sender's IP when the header says 0, as the kernel fills it in). */
  src: number;
  /** Destination IP from the header (where the packet is delivered). */
  dst: number;
  /** The next hop the sender asked for (dsts[k]). */
  nextHop: number;
  /** A copy of the full IPv4 packet. */
  bytes: Uint8Array;
}

export type Delivery = 'microtask' | 'sync' | 'manual';

export interface MemoryUnderlayOptions {
  /**
   * When datagrams reach the destination socket: 'microtask' (default; like a real socket, never
   * inside the sender's call), 'sync' (at the end of send(), unless the receiver is busy in its own
   * onBatch: then right after that returns) or 'manual' (only on flush()).
   */
  delivery?: Delivery;
}

interface Datagram {
  payload: Uint8Array;
  srcIp: number;
  srcPort: number;
}

/** A fake underlay network: sockets join with an IP; send() routes full IPv4/UDP packets between them. */
export class MemoryUnderlay {
  readonly delivery: Delivery;
  /** Every packet handed to send() that passed the header checks. */
  readonly sent: SentPacket[] = [];
  readonly drops: Record<UnderlayDropReason, number> = {
    short: 0,
    notIpv4: 0,
    badLength: 0,
    fragment: 0,
    notUdp: 0,
    badUdpLength: 0,
    badChecksum: 0,
    noListener: 0,
  };
  private readonly sockets = new Map<number, MemoryDatagramSocket>();
  private scheduled = false;

  constructor(opts: MemoryUnderlayOptions = {}) {
    this.delivery = opts.delivery ?? 'microtask';
  }

  /** Attach a socket with underlay address `ip` (host-order u32) listening on `port` (default 4789). */
  join(ip: number, opts: MemoryBatchOptions & { port?: number } = {}): MemoryDatagramSocket {
    ip >>>= 0;
    if (this.sockets.has(ip)) throw new Error(`underlay address ${u32ToIp(ip)} is already taken`);
    const s = new MemoryDatagramSocket(this, ip, opts.port ?? 4789, makeBatch(opts), opts.drops);
    this.sockets.set(ip, s);
    return s;
  }

  /** Deliver everything queued. Returns the number of datagrams delivered. */
  flush(): number {
    let n = 0;
    for (;;) {
      let progress = 0;
      for (const s of this.sockets.values()) progress += s.drain();
      if (progress === 0) return n;
      n += progress;
    }
  }

  /** Total dropped for any reason. */
  get dropped(): number {
    let n = 0;
    for (const v of Object.values(this.drops)) n += v;
    return n;
  }

  /** @internal */
  leave(s: MemoryDatagramSocket): void {
    if (this.sockets.get(s.ip) === s) this.sockets.delete(s.ip);
  }

  /** @internal Check one packet and queue its payload at the destination; false if refused. */
  route(from: MemoryDatagramSocket, slab: Uint8Array, off: number, len: number, nextHop: number): boolean {
    const reason = checkOuter(slab, off, len);
    if (reason !== undefined) {
      this.drops[reason]++;
      return false;
    }
    const ihl = (slab[off + Wire.IPV4_VER_IHL]! & 0x0f) * 4;
    let src = readU32(slab, off + Wire.IPV4_SRC);
    if (src === 0) src = from.ip;
    const dst = readU32(slab, off + Wire.IPV4_DST);
    this.sent.push({ src, dst, nextHop: nextHop >>> 0, bytes: slab.slice(off, off + len) });
    const udp = off + ihl;
    const dstPort = readU16(slab, udp + Wire.UDP_DST_PORT);
    const to = this.sockets.get(dst);
    if (!to || to.port !== dstPort || to.isClosed) {
      this.drops.noListener++;
      return true; // the sender's kernel took it; it is lost on the way, as on a real network
    }
    to.enqueue({ payload: slab.slice(udp + Wire.UDP_HEADER_LEN, off + len), srcIp: src, srcPort: readU16(slab, udp + Wire.UDP_SRC_PORT) });
    if (this.delivery === 'microtask' && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.flush();
      });
    }
    return true;
  }
}

/** A socket on a MemoryUnderlay. */
export class MemoryDatagramSocket implements DatagramSocket {
  readonly ip: number;
  readonly port: number;
  readonly batch: FrameBatch;
  readonly stats = { rxBatches: 0, rxDatagrams: 0, rxOversize: 0, txPackets: 0, txRefused: 0 };
  private readonly hub: MemoryUnderlay;
  private readonly inbox: Datagram[] = [];
  private onBatch: ((batch: FrameBatch) => void) | undefined;
  private delivering = false;
  private closed = false;
  private readonly drops: Float64Array | undefined;

  /** @internal use MemoryUnderlay.join() */
  constructor(hub: MemoryUnderlay, ip: number, port: number, batch: FrameBatch, drops?: Float64Array) {
    this.hub = hub;
    this.ip = ip;
    this.port = port;
    this.batch = batch;
    this.drops = drops;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Datagrams waiting for delivery. */
  get queued(): number {
    return this.inbox.length;
  }

  start(onBatch: (batch: FrameBatch) => void): void {
    if (this.onBatch) throw new Error('the socket is already started');
    this.onBatch = onBatch;
    if (this.hub.delivery === 'sync') this.drain();
    else if (this.hub.delivery === 'microtask' && this.inbox.length > 0) queueMicrotask(() => this.drain());
  }

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
    if (this.closed) return 0;
    let sent = 0;
    for (let k = 0; k < count; k++) {
      let buf = slab;
      let off = offs[k]!;
      const len = lens[k]!;
      const xl = ext !== undefined && extOffs !== undefined && extLens !== undefined ? extLens[k]! : 0;
      if (off + len - xl > slab.length) throw new RangeError(`packet ${k} (offset ${off}, length ${len}) lies outside the slab`);
      if (xl > 0) {
        // A packet in two pieces (zero-copy segments): gathered into one buffer, as the kernel does.
        const xo = extOffs![k]!;
        if (xl > len || xo + xl > ext!.length) throw new RangeError(`packet ${k}'s piece outside the slab (offset ${xo}, length ${xl}) lies outside ext`);
        buf = new Uint8Array(len);
        buf.set(slab.subarray(off, off + len - xl));
        buf.set(ext!.subarray(xo, xo + xl), len - xl);
        off = 0;
      }
      if (this.hub.route(this, buf, off, len, dsts[k]!)) sent++;
      else {
        this.stats.txRefused++;
        if (this.drops) this.drops[Drop.UnderlayTxRefused]!++;
      }
    }
    this.stats.txPackets += sent;
    // 'sync': the whole send() lands as one burst, so receivers see real batches.
    if (this.hub.delivery === 'sync') this.hub.flush();
    return sent;
  }

  close(): void {
    this.closed = true;
    this.inbox.length = 0;
    this.hub.leave(this);
  }

  /** @internal */
  enqueue(d: Datagram): void {
    this.inbox.push(d);
  }

  /** @internal Deliver queued datagrams in batches; returns how many were delivered. */
  drain(): number {
    if (this.delivering || !this.onBatch || this.closed) return 0;
    this.delivering = true;
    let n = 0;
    try {
      const b = this.batch;
      while (this.inbox.length > 0 && !this.closed) {
        b.count = 0;
        while (b.count < b.capacity && this.inbox.length > 0) {
          const d = this.inbox.shift()!;
          // A real socket truncates (MSG_TRUNC) and the native receiver drops such datagrams.
          if (!b.push(d.payload, d.srcIp, d.srcPort)) {
            this.stats.rxOversize++;
            if (this.drops) this.drops[Drop.UnderlayRxOversize]!++;
          }
        }
        if (b.count === 0) continue;
        this.stats.rxBatches++;
        this.stats.rxDatagrams += b.count;
        n += b.count;
        this.onBatch(b);
      }
    } finally {
      this.delivering = false;
    }
    return n;
  }
}

// ---------------------------------------------------------------------------
// Outer header checks (RFC 791 §3.1, RFC 768): field offsets by name, but the
// checks and the checksum are this file's own, independent of the views and
// checksum code in src/wire, so the fake can catch mistakes there.

function checkOuter(b: Uint8Array, off: number, len: number): UnderlayDropReason | undefined {
  if (len < Wire.IPV4_HEADER_LEN + Wire.UDP_HEADER_LEN) return 'short';
  const vihl = b[off + Wire.IPV4_VER_IHL]!;
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < Wire.IPV4_HEADER_LEN) return 'notIpv4';
  const total = readU16(b, off + Wire.IPV4_TOTAL_LEN);
  if (total !== len || ihl + Wire.UDP_HEADER_LEN > len) return 'badLength';
  if ((readU16(b, off + Wire.IPV4_FLAGS_FRAG) & (Wire.IPV4_FLAG_MF | Wire.IPV4_FRAG_OFFSET_MASK)) !== 0) return 'fragment';
  if (b[off + Wire.IPV4_PROTOCOL] !== Wire.IPPROTO_UDP) return 'notUdp';
  const udp = off + ihl;
  const udpLen = readU16(b, udp + Wire.UDP_LENGTH);
  if (udpLen !== len - ihl) return 'badUdpLength';
  const csum = readU16(b, udp + Wire.UDP_CHECKSUM);
  if (csum !== 0 && udpChecksum(b, off, ihl, udpLen) !== 0) return 'badChecksum';
  return undefined;
}

/** One's-complement sum over the pseudo-header and the UDP datagram; 0 when the checksum verifies. */
function udpChecksum(b: Uint8Array, off: number, ihl: number, udpLen: number): number {
  let sum = 0;
  for (let i = Wire.IPV4_SRC; i < Wire.IPV4_DST + 4; i += 2) sum += (b[off + i]! << 8) | b[off + i + 1]!;
  sum += Wire.IPPROTO_UDP + udpLen;
  const udp = off + ihl;
  for (let i = 0; i + 1 < udpLen; i += 2) sum += (b[udp + i]! << 8) | b[udp + i + 1]!;
  if (udpLen & 1) sum += b[udp + udpLen - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
