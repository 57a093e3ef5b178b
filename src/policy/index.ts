// Policy: shapes, the planner (policies → rules), the compiled per-packet
// lookup, and connection tracking. (Tag allocation lives in tags.ts.)
export * from './types.js';
export { plan, validatePolicy, renderIptables } from './planner.js';
export type { MarkRule, AcceptRule, Plan } from './planner.js';
export { CompiledPolicy } from './compiled.js';
export {
  ConnTrack,
  CtState,
  formatConntrack,
  conntrackJson,
  DEFAULT_CT_TIMEOUTS,
  EVICT_SAMPLE,
  TCP_STATE_NAMES,
  TCP_FIN,
  TCP_SYN,
  TCP_RST,
  TCP_ACK,
} from './conntrack.js';
export type { CtTimeouts, CtEntryInfo } from './conntrack.js';
