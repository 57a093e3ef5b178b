// Fakes for tests: in-memory devices with the real devices' contracts. Only
// test/ imports this room; nothing under src/ outside src/testing may.
export {
  MemoryFrameDevice,
  MemoryUnderlay,
  MemoryDatagramSocket,
  type MemoryBatchOptions,
  type MemoryUnderlayOptions,
  type SentPacket,
  type UnderlayDropReason,
  type Delivery,
} from './memory.js';
export { memoryCellIo } from './cell-io.js';
