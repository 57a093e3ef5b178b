// The data plane's I/O edges: real devices over the native addon, and
// in-memory fakes with the same interfaces for tests.
export type { FrameDevice, DatagramSocket } from './types.js';
export {
  loadNative,
  nativeAvailable,
  nativeAddonPath,
  errnoError,
  errnoName,
  isDeviceGone,
  EBADFD,
  NOT_BUILT_MESSAGE,
  type NativeAddon,
  type NativeTapReader,
  type NativeUdpReceiver,
  type ReaderCounters,
  type TapHandle,
} from './native.js';
export { TapDevice, DEFAULT_BATCH, DEFAULT_SLOT_SIZE, type TapOptions, type TapStats } from './tap.js';
export { UdpUnderlay, VXLAN_PORT, type UnderlayOptions, type UnderlayStats } from './underlay.js';
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
