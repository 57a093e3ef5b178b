// The cell's devices in memory: every TAP the cell opens is a MemoryFrameDevice
// kept by name, and the underlay is a socket on a shared MemoryUnderlay, so two
// complete cells run against each other without root or a kernel.
import type { CellIo } from '../cell/cell.js';
import { MemoryFrameDevice, type MemoryUnderlay } from './memory.js';
import { BATCH_SIZE } from '../io/types.js';

/** In-memory: every TAP the cell opens is kept in `taps` by name so a test can inject and read frames. */
export function memoryCellIo(hub: MemoryUnderlay): CellIo & { taps: Map<string, MemoryFrameDevice> } {
  const taps = new Map<string, MemoryFrameDevice>();
  return {
    taps,
    openTap: (name, slotSize, drops) => {
      const dev = new MemoryFrameDevice(name, { capacity: BATCH_SIZE, slotSize, drops });
      taps.set(name, dev);
      return dev;
    },
    openUnderlay: (underlayIp, port, slotSize, drops) => hub.join(underlayIp, { port, capacity: BATCH_SIZE, slotSize, drops }),
  };
}
