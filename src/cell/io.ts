// The cell's two ways to reach devices: the native addon (TAPs, raw socket,
// UDP 4789) in a real cell, and the in-memory devices in tests.
import type { CellIo } from './cell.js';
import { TapDevice } from '../io/tap.js';
import { UdpUnderlay } from '../io/underlay.js';
import { MemoryFrameDevice, MemoryUnderlay } from '../io/memory.js';

const BATCH = 64;

export function nativeCellIo(): CellIo {
  return {
    openTap: (name, slotSize, persist) => TapDevice.create(name, { slotSize, batch: BATCH, persist }),
    reattachTap: (netnsPath, name, slotSize) => TapDevice.attach(netnsPath, name, { slotSize, batch: BATCH }),
    openUnderlay: (underlayIp, port, slotSize) => UdpUnderlay.open({ bindIp: underlayIp, port, slotSize, batch: BATCH }),
  };
}

/** In-memory: every TAP the cell opens is kept in `taps` by name so a test can inject and read frames. */
export function memoryCellIo(hub: MemoryUnderlay): CellIo & { taps: Map<string, MemoryFrameDevice> } {
  const taps = new Map<string, MemoryFrameDevice>();
  return {
    taps,
    openTap: (name, slotSize) => {
      const dev = new MemoryFrameDevice(name, { capacity: BATCH, slotSize });
      taps.set(name, dev);
      return dev;
    },
    openUnderlay: (underlayIp, port, slotSize) => hub.join(underlayIp, { port, capacity: BATCH, slotSize }),
  };
}
