// Offloads: TAP GRO (merge TCP segments on write) and TSO (segment TCP
// super-frames on read), and the options that choose them and the underlay's
// UDP GSO/GRO, decided once and negotiated with the kernel per device.
export { GroPlanner, fastSum, packetBytes, VNET_HDR_LEN, MAX_SEGS, PKT_WORDS, type GroCounters } from './gro.js';
export { GsoSegmenter, type GsoCounters } from './gso.js';
export {
  OFFLOAD_NAMES,
  ALL_OFFLOADS,
  NO_OFFLOADS,
  OffloadNegotiation,
  resolveOffloads,
  parseOffloadList,
  formatOffloads,
  offloadEnabled,
  vnetDefault,
  tsoDefault,
  gsoDefault,
  type OffloadName,
  type OffloadOptions,
  type OffloadState,
  type OffloadStatus,
  type ResolvedOffloads,
} from './options.js';
