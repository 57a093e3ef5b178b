// The data plane's edges, as small interfaces with a real (native addon)
// implementation and an in-memory one for tests (wireguard-go's pattern of
// testing two complete devices against each other over channels).
import type { FrameBatch } from '../dataplane/batch.js';

/**
 * Frames per batch: at most this many per device callback and per cell send/write call. The one
 * place the number lives; the cell passes it down to the devices it opens (wireguard-go's
 * IdealBatchSize is 128). 128 rather than 64: a TSO super-frame is ~45 segments and a UDP-GRO
 * message ~44 datagrams, so 64 slots held one whole and cut the next (and its whole run); 128 hold
 * two (paired in the README's performance section: the cells' CPU per GB 0.79–0.94 ×). Each TAP's
 * slab is 128 slots of slotSizeFor(MTU) bytes (~200 KiB; its TSO read buffer is ~400 KiB).
 */
export const BATCH_SIZE = 128;

/** A container's TAP: Ethernet frames in and out. */
export interface FrameDevice {
  readonly name: string;
  /**
   * Start delivering received frames. `onBatch` is called with a batch whose
   * contents are valid only until it returns (the slab is reused). `onGone` is
   * called once if the device disappears (e.g. its namespace was deleted).
   */
  start(onBatch: (batch: FrameBatch) => void, onGone?: (err: Error) => void): void;
  /** Write `count` frames: bytes at slab[offs[k]] of length lens[k]. Returns frames written. */
  write(slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): number;
  close(): void;
}

/** The underlay: full IPv4 packets out (raw socket, IP_HDRINCL), VXLAN datagrams in (UDP 4789). */
export interface DatagramSocket {
  /** Start delivering received UDP payloads (the VXLAN header first) with srcIp/srcPort set. */
  start(onBatch: (batch: FrameBatch) => void): void;
  /**
   * Send `count` IPv4 packets (outer header included) to dsts[k]. Returns packets sent. With `ext`,
   * packet k's last extLens[k] bytes are ext[extOffs[k], +extLens[k]) instead of following its first
   * lens[k] - extLens[k] bytes in the slab (zero-copy TSO segments, FrameBatch.ext).
   */
  send(
    slab: Uint8Array,
    offs: Uint32Array,
    lens: Uint32Array,
    dsts: Uint32Array,
    count: number,
    ext?: Uint8Array,
    extOffs?: Uint32Array,
    extLens?: Uint32Array,
  ): number;
  close(): void;
}
