// The cell's real devices: container TAPs and the underlay socket over the
// native addon, opened with the offloads the cell was started with
// (src/offload/options.ts), each device negotiating them with the kernel.
import type { CellIo } from './cell.js';
import { steerQueues, tapRefusal, TapDevice } from '../io/tap.js';
import { UdpUnderlay } from '../io/underlay.js';
import { BATCH_SIZE } from '../io/types.js';
import { loadNative } from '../io/native.js';
import type { TapQueue } from './worker-protocol.js';
import { ALL_OFFLOADS, OffloadNegotiation, type OffloadOptions } from '../offload/options.js';

/** How the devices do their byte work: nativeBytes (default true) uses the addon's copy/checksum primitives. */
export interface IoTuning {
  nativeBytes?: boolean;
  /**
   * The containers' MTU: with nativeBytes, TSO segments that fit it are cut without copying their
   * payloads (TapOptions.zeroCopyMtu). 0 or absent: off.
   */
  zeroCopyMtu?: number;
  /** With zero-copy: TSO super-frames carried through egress whole (TapOptions.wholeTso); default true. */
  wholeTso?: boolean;
  /** Adaptive busy polling after traffic, µs (native setBusyPoll); 0 or absent: off. */
  busyPollUs?: number;
}

export function nativeCellIo(offload: OffloadOptions = ALL_OFFLOADS, tuning: IoTuning = {}): CellIo {
  const neg = new OffloadNegotiation(offload);
  const native = loadNative();
  // Off (the default) leaves the event loop exactly as it was: no idle handle at all.
  if ((tuning.busyPollUs ?? 0) > 0) native.setBusyPoll?.(tuning.busyPollUs!);
  const tapOptions = (slotSize: number, drops: Float64Array | undefined) => ({
    slotSize,
    batch: BATCH_SIZE,
    gro: offload.tapGro,
    tso: offload.tapTso,
    drops,
    nativeBytes: tuning.nativeBytes,
    zeroCopyMtu: tuning.zeroCopyMtu,
    wholeTso: tuning.wholeTso ?? true,
  });
  const record = (dev: TapDevice) => {
    if (offload.tapGro) neg.record('tap-gro', dev.vnetHdr, dev.vnetRefusal);
    if (offload.tapTso) neg.record('tap-tso', dev.tso, dev.tsoRefusal);
  };
  /**
   * Open `queues` queues in order (open(k)), steer them, hand out all but the first; undo on failure.
   * Every queue asks for the same offloads (the kernel keeps them per device, not per queue).
   */
  const queuesOf = (queues: number, open: (k: number) => TapDevice) => {
    const devs: TapDevice[] = [];
    try {
      for (let k = 0; k < queues; k++) devs.push(open(k));
      steerQueues(devs[0]!.fd, queues);
    } catch (err) {
      for (const d of devs.slice(1)) native.closeFd(d.fd);
      devs[0]?.close();
      throw err;
    }
    record(devs[0]!);
    return { dev: devs[0]!, others: devs.slice(1).map((d): TapQueue => d.handle()) };
  };
  return {
    busyPoll: () => native.busyPollCounters?.(),
    openTap: (name, slotSize, drops, persist) => {
      const dev = TapDevice.create(name, { ...tapOptions(slotSize, drops), persist });
      record(dev);
      return dev;
    },
    reattachTap: (netnsPath, name, slotSize, drops) => {
      try {
        return TapDevice.attach(netnsPath, name, tapOptions(slotSize, drops));
      } catch (err) {
        // A TAP a cell with several workers made is multi-queue: one worker takes it as one queue.
        if (tapRefusal(err) !== 'multi') throw err;
        return TapDevice.attach(netnsPath, name, { ...tapOptions(slotSize, drops), multiQueue: true });
      }
    },
    // Queue k > 0 is only opened here: the worker that adopts it reads and writes it.
    openTapQueues: (name, queues, slotSize, drops, persist) =>
      queuesOf(queues, (k) => TapDevice.create(name, { ...tapOptions(slotSize, k === 0 ? drops : undefined), persist, multiQueue: true })),
    reattachTapQueues: (netnsPath, name, queues, slotSize, drops) =>
      queuesOf(queues, (k) => TapDevice.attach(netnsPath, name, { ...tapOptions(slotSize, k === 0 ? drops : undefined), multiQueue: true })),
    adoptTap: (queue, slotSize, drops) => TapDevice.adopt(queue, tapOptions(slotSize, drops)),
    closeQueue: (queue) => native.closeFd(queue.fd),
    openUnderlay: (underlayIp, port, slotSize, drops, innerMtu, reusePort) => {
      const u = UdpUnderlay.open({ bindIp: underlayIp, port, slotSize, batch: BATCH_SIZE, gso: offload.udpGso, gro: offload.udpGro, drops, innerMtu, reusePort });
      if (offload.udpGso) neg.record('udp-gso', u.gso, u.gsoRefusal);
      if (offload.udpGro) neg.record('udp-gro', u.gro, u.groRefusal);
      return u;
    },
    steerUnderlay: (sock, n) => (sock as UdpUnderlay).steer(n),
    offloads: () => neg.status(),
  };
}
