// The cell's real devices: container TAPs and the underlay socket over the
// native addon, opened with the offloads the cell was started with
// (src/offload/options.ts), each device negotiating them with the kernel.
import type { CellIo } from './cell.js';
import { TapDevice } from '../io/tap.js';
import { UdpUnderlay } from '../io/underlay.js';
import { BATCH_SIZE } from '../io/types.js';
import { loadNative } from '../io/native.js';
import { ALL_OFFLOADS, OffloadNegotiation, type OffloadOptions } from '../offload/options.js';

/** How the devices do their byte work: nativeBytes (default true) uses the addon's copy/checksum primitives. */
export interface IoTuning {
  nativeBytes?: boolean;
  /**
   * The containers' MTU: with nativeBytes, TSO segments that fit it are cut without copying their
   * payloads (TapOptions.zeroCopyMtu). 0 or absent: off.
   */
  zeroCopyMtu?: number;
  /** Adaptive busy polling after traffic, µs (native setBusyPoll); 0 or absent: off. */
  busyPollUs?: number;
}

export function nativeCellIo(offload: OffloadOptions = ALL_OFFLOADS, tuning: IoTuning = {}): CellIo {
  const neg = new OffloadNegotiation(offload);
  const native = loadNative();
  // Off (the default) leaves the event loop exactly as it was: no idle handle at all.
  if ((tuning.busyPollUs ?? 0) > 0) native.setBusyPoll?.(tuning.busyPollUs!);
  return {
    busyPoll: () => native.busyPollCounters?.(),
    openTap: (name, slotSize, drops, persist) => {
      const dev = TapDevice.create(name, { slotSize, batch: BATCH_SIZE, gro: offload.tapGro, tso: offload.tapTso, drops, persist, nativeBytes: tuning.nativeBytes, zeroCopyMtu: tuning.zeroCopyMtu });
      if (offload.tapGro) neg.record('tap-gro', dev.vnetHdr, dev.vnetRefusal);
      if (offload.tapTso) neg.record('tap-tso', dev.tso, dev.tsoRefusal);
      return dev;
    },
    reattachTap: (netnsPath, name, slotSize, drops) =>
      TapDevice.attach(netnsPath, name, { slotSize, batch: BATCH_SIZE, gro: offload.tapGro, tso: offload.tapTso, drops, nativeBytes: tuning.nativeBytes, zeroCopyMtu: tuning.zeroCopyMtu }),
    openUnderlay: (underlayIp, port, slotSize, drops, innerMtu) => {
      const u = UdpUnderlay.open({ bindIp: underlayIp, port, slotSize, batch: BATCH_SIZE, gso: offload.udpGso, gro: offload.udpGro, drops, innerMtu });
      if (offload.udpGso) neg.record('udp-gso', u.gso, u.gsoRefusal);
      if (offload.udpGro) neg.record('udp-gro', u.gro, u.groRefusal);
      return u;
    },
    offloads: () => neg.status(),
  };
}
