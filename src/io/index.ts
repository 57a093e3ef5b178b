// The data plane's device edges over the native addon: container TAPs and the
// underlay socket. Device syscalls only; the offload logic lives in
// src/offload, the in-memory fakes in src/testing.
export { BATCH_SIZE, type FrameDevice, type DatagramSocket } from './types.js';
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
export { TapDevice, DEFAULT_BATCH, DEFAULT_SLOT_SIZE, steerQueues, type TapOptions, type TapStats, type TapQueueHandle } from './tap.js';
export { UdpUnderlay, VXLAN_PORT, type UnderlayOptions, type UnderlayStats } from './underlay.js';
