// Typed loader for the native addon (native/*.cc, built by `node-gyp rebuild`
// from binding.gyp into build/Release/silkworm_native.node). The addon makes
// syscalls and does byte work (copies, splitting UDP_GRO messages, counting);
// the few header fields it reads are listed in native/common.h. Every
// forwarding and policy decision is made in TypeScript; which worker a flow's
// packets reach (several workers per cell) is picked in the kernel by the two
// steering programs of native/steer.cc, whose hash src/dataplane/steer.ts
// restates.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';

export interface TapHandle {
  fd: number;
  /** The kernel's name for the device (filled in when "" or a pattern like "tap%d" was asked for). */
  name: string;
  /** TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4) is on (asked for with tso; absent from addons built before TSO). */
  tso?: boolean;
  /** When tso was asked for and TUNSETOFFLOAD refused it: the errno (the TAP then has no offloads); else 0. */
  tsoErrno?: number;
}

/** Counters kept by the native readers (cheap to read; never per-packet JS). */
export interface ReaderCounters {
  wakeups: number;
  batches: number;
  frames: number;
  /** Frames/datagrams longer than slotSize - headroom, dropped. */
  oversize: number;
  errors: number;
  lastErrno: number;
  /** TapReader with vnetHdrLen only: frames dropped for a virtio_net_hdr with GSO or NEEDS_CSUM set. */
  badVnet?: number;
  /** TapReader in raw (TSO) mode only: packets read with a GSO type (super-frames). */
  superFrames?: number;
}

export interface NativeTapReader {
  start(): void;
  stop(): void;
  /** Stop for good and release the poll handle. Call before closing the fd. */
  close(): void;
  counters(): ReaderCounters;
}

export interface NativeUdpReceiver {
  start(): void;
  stop(): void;
  /** Stop polling and close the socket. */
  close(): void;
  /** The bound UDP port (useful after binding port 0). */
  port(): number;
  counters(): UdpReceiverCounters;
  /**
   * SO_ATTACH_REUSEPORT_CBPF: the inner-flow steering program for n workers (2..64) on this socket's
   * SO_REUSEPORT group (one call covers the group; call it once all n sockets are bound, in worker
   * order). EINVAL when the socket was not opened with reusePort. Absent from addons built before it.
   */
  steer?(n: number): void;
}

/** UdpReceiver counters: the reader's, plus what UDP_GRO did. */
export interface UdpReceiverCounters extends ReaderCounters {
  /** UDP_GRO is on for this socket. */
  gro: boolean;
  /** When UDP_GRO was asked for and setsockopt refused it: the errno; else 0 (absent from older addons). */
  groErrno?: number;
  /** Messages that carried a UDP_GRO cmsg (several datagrams in one). */
  groMessages: number;
  /** Datagrams inside those messages. */
  groSegments: number;
  /** Times a batch filled mid-message and the rest waited for the next batch. */
  carried: number;
  /** UDP-tunnel super-packets (inner TCP with TSO) cut into segments (absent from older addons). */
  tsoMessages?: number;
}

/** Counters of the UDP GSO sender. */
export interface GsoSenderCounters {
  /** Messages sent on pool sockets (each one UDP_SEGMENT group or a lone datagram). */
  gsoGroups: number;
  /** Packets inside those messages. */
  gsoPackets: number;
  /** Packets sent on the raw socket (not eligible, lone, no socket, or fallback). */
  rawPackets: number;
  /** Groups the kernel refused with GSO, retried as separate raw datagrams. */
  fallbacks: number;
  /** Pool sockets open. */
  sockets: number;
  /** socket()/bind() failures (such a source port stays on the raw path). */
  socketFailures: number;
  lastErrno: number;
}

export interface NativeUdpGsoSender {
  /**
   * Send packets start..count-1 (full IPv4 packets, as sendBatch) with one syscall: returns packets sent
   * (> 0), 0 on EAGAIN, or -errno when packet `start` itself was refused.
   */
  send(
    slab: Uint8Array,
    offs: Uint32Array,
    lens: Uint32Array,
    dsts: Uint32Array,
    count: number,
    start?: number,
    ext?: Uint8Array,
    extOffs?: Uint32Array,
    extLens?: Uint32Array,
  ): number;
  counters(): GsoSenderCounters;
  /** Close the pool sockets (not the raw fd, which the caller owns). */
  close(): void;
}

export interface NativeAddon {
  /**
   * open /dev/net/tun, TUNSETIFF IFF_TAP|IFF_NO_PI (|IFF_VNET_HDR with vnetHdr, |IFF_MULTI_QUEUE with
   * multiQueue), O_NONBLOCK|O_CLOEXEC; optionally TUNSETPERSIST. With multiQueue each call with the same
   * name attaches one more queue (queue index = order of attach); EINVAL "TAP x exists with(out)
   * multi-queue" when the device has the other mode. An addon built before multi-queue throws for it.
   */
  openTap(name: string, flags?: { persist?: boolean; multiQueue?: boolean; vnetHdr?: boolean; tso?: boolean }): TapHandle;
  /** Re-attach the persistent TAP `name` that lives in the netns at `netnsPath` (setns on a helper thread). */
  openTapInNetns(netnsPath: string, name: string, flags?: { vnetHdr?: boolean; tso?: boolean; multiQueue?: boolean }): TapHandle;
  /**
   * Load the TAP steering program for n workers (2..64; BPF_PROG_LOAD, needs CAP_BPF or CAP_SYS_ADMIN)
   * and attach it with TUNSETSTEERINGEBPF to the device of queue fd `fd` (it then steers every queue of
   * the device). Absent from addons built before it.
   */
  steerTap?: (fd: number, n: number) => void;
  setPersist(fd: number, on: boolean): void;
  /** open(path, O_RDWR|O_CREAT) and flock(LOCK_EX|LOCK_NB); returns the fd that holds the lock (EAGAIN: held elsewhere). */
  lockFile(path: string): number;
  closeFd(fd: number): void;
  /** if_nametoindex(3) in this process's namespace; 0 when there is no such interface. */
  ifNameToIndex(name: string): number;
  /**
   * write() frames start..count-1 (bytes slab[offs[k]] .. +lens[k]). Returns how many went (stops at
   * EAGAIN), or -errno when frame `start` itself failed.
   */
  writeFrames(fd: number, slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number, start?: number): number;
  /**
   * For a TAP opened with vnetHdr: packet p = pkts[4p..4p+3] = [hdrOff, hdrLen, iovFirst, iovCount] is one
   * writev() of hdrs[hdrOff, +hdrLen) then slab pieces iovs[2k], iovs[2k+1] (offset, length) for
   * k = iovFirst.. (see src/offload/gro.ts). Returns packets written from `start` (stops at EAGAIN), or -errno when
   * packet `start` itself failed.
   */
  writeVnet(
    fd: number,
    slab: Uint8Array,
    hdrs: Uint8Array,
    pkts: Uint32Array,
    iovs: Uint32Array,
    npkts: number,
    start?: number,
  ): number;
  /** socket(AF_INET, SOCK_RAW, IPPROTO_RAW), non-blocking, large SO_SNDBUF. */
  openRawSocket(): number;
  /**
   * One sendmmsg() of packets start.. (at most maxBatch) to host-order u32 `dsts`. Returns how many the
   * kernel took (0 on EAGAIN), or -errno when packet `start` itself was refused.
   */
  sendBatch(
    fd: number,
    slab: Uint8Array,
    offs: Uint32Array,
    lens: Uint32Array,
    dsts: Uint32Array,
    count: number,
    start?: number,
    /** Payload pieces outside the slab (see DatagramSocket.send). */
    ext?: Uint8Array,
    extOffs?: Uint32Array,
    extLens?: Uint32Array,
  ): number;
  TapReader: new (
    fd: number,
    slab: Uint8Array,
    slotSize: number,
    headroom: number,
    maxFrames: number,
    lengths: Uint32Array,
    onBatch: (count: number) => void,
    onError: (errno: number) => void,
    /** 10 when the TAP was opened with vnetHdr: each frame's virtio_net_hdr is read into the headroom's last bytes. */
    vnetHdrLen?: number,
    /**
     * Raw (TSO) mode: whole packets (virtio_net_hdr + frame, up to 64 KiB) are read into rawBuf instead of
     * the slab; onBatch gets the packet count and rawMeta[2k], [2k+1] = offset, length (header included).
     */
    rawBuf?: Uint8Array,
    rawMeta?: Uint32Array,
    /** The cell's drop-reason table: the reader adds 1 at drops[oversizeIdx] / drops[badVnetIdx] per frame it drops. */
    drops?: Float64Array,
    oversizeIdx?: number,
    badVnetIdx?: number,
  ) => NativeTapReader;
  UdpReceiver: new (
    bindIp: number,
    port: number,
    slab: Uint8Array,
    slotSize: number,
    headroom: number,
    maxFrames: number,
    lengths: Uint32Array,
    srcIps: Uint32Array,
    srcPorts: Uint16Array,
    onBatch: (count: number) => void,
    gro?: boolean,
    /** The cell's drop-reason table: the receiver adds 1 at drops[oversizeIdx] per datagram it drops. */
    drops?: Float64Array,
    oversizeIdx?: number,
    /** When given (maxFrames entries): IP_RECVTOS, and each datagram's outer DS byte written here. */
    tos?: Uint8Array,
    /** The containers' MTU: UDP-tunnel super-packets are cut into inner packets of at most this size (0 = drop them as oversize). */
    maxInnerIp?: number,
    /** SO_REUSEPORT before bind (one socket per worker of a cell; default false). */
    reusePort?: boolean,
  ) => NativeUdpReceiver;
  /** getsockopt(UDP_SEGMENT) on a fresh UDP socket: 0 when the kernel has UDP GSO, else the errno. */
  probeUdpSegment?: () => number;
  /** UDP GSO sender: pool of UDP sockets bound to (srcIp, sport), up to maxSockets; rawFd for the rest. */
  UdpGsoSender: new (srcIp: number, rawFd: number, maxSockets: number) => NativeUdpGsoSender;
  /**
   * Byte primitives (native/bytes.cc; absent from addons built before them): desc[3k..3k+2] =
   * [srcOff, dstOff, len] copied src → dst, sums[k] = the folded one's complement sum of the bytes.
   */
  copySum?: (src: Uint8Array, dst: Uint8Array, desc: Uint32Array, n: number, sums: Uint32Array) => void;
  /** desc[2k..2k+1] = [off, len]: sums[k] = the folded one's complement sum of buf[off, +len). */
  sumRanges?: (buf: Uint8Array, desc: Uint32Array, n: number, sums: Uint32Array) => void;
  /**
   * Adaptive busy polling of this process's event loop (native/common.cc): after a reader drained
   * traffic the loop polls without sleeping for windowUs µs; 0 turns it off (the default). Absent from
   * addons built before it.
   */
  setBusyPoll?: (windowUs: number) => void;
  busyPollCounters?: () => { windowUs: number; kicks: number; spins: number; windows: number };
  /** Largest batch one sendBatch call or reader accepts (1024). */
  maxBatch: number;
}

/** EBADFD (77 on Linux: "file descriptor in bad state", what a TAP fd returns once its device is gone) is not in os.constants.errno. */
export const EBADFD = 77;

export const NOT_BUILT_MESSAGE = 'the native addon is not built: run npm install (or npm run build:native)';

/** The repository root: src/io/ (or dist/io/) is two levels below it. */
function packageRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export function nativeAddonPath(): string {
  return process.env.SILKWORM_NATIVE ?? join(packageRoot(), 'build', 'Release', 'silkworm_native.node');
}

let cached: NativeAddon | undefined;

/** Load (once) and return the addon; throws a clear Error when it was never built. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const path = nativeAddonPath();
  if (!existsSync(path)) throw new Error(NOT_BUILT_MESSAGE);
  const require = createRequire(import.meta.url);
  try {
    cached = require(path) as NativeAddon;
  } catch (err) {
    throw new Error(`${NOT_BUILT_MESSAGE} (loading ${path} failed: ${(err as Error).message})`);
  }
  return cached;
}

/** True when the addon can be loaded (for tests and `lab status`). */
export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}

/** An Error for a negative return value `-errno` from the addon, with Node-style code/errno. */
export function errnoError(what: string, errno: number): NodeJS.ErrnoException {
  const name = errnoName(errno);
  const err: NodeJS.ErrnoException = new Error(`${what}: ${name}`);
  err.code = name;
  err.errno = errno;
  return err;
}

// First name wins: EAGAIN before its alias EWOULDBLOCK, as strerrorname_np() says.
const ERRNO_NAMES = new Map<number, string>();
for (const [k, v] of Object.entries(constants.errno)) if (!ERRNO_NAMES.has(v)) ERRNO_NAMES.set(v, k);

export function errnoName(errno: number): string {
  if (errno === EBADFD) return 'EBADFD';
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/** Errors on a TAP fd that mean the device itself is gone (its namespace was deleted). */
export function isDeviceGone(errno: number): boolean {
  const e = constants.errno;
  return errno === EBADFD || errno === e.ENODEV || errno === e.EIO || errno === e.EBADF || errno === e.ENXIO;
}
