// Messages between a cell's main thread (src/cell/workers.ts) and its worker
// threads (src/cell/worker.ts). Plain data only: structured clone carries
// them; fds are numbers (one process, one fd table).
import type { DataplaneConfig } from '../dataplane/dataplane.js';
import type { LeaseInfo } from '../dataplane/state.js';
import type { PolicyRecord } from '../net/controller-client.js';
import type { OffloadOptions } from '../offload/options.js';
import type { IoTuning } from './io.js';
import type { TapQueueHandle } from '../io/tap.js';
import type { ConntrackQuery, ConntrackSlice } from './conntrack-stream.js';

/** Worker threads a cell may have (--workers; the main thread is one of them). */
export const MAX_WORKERS = 16;

/** A TAP queue a worker takes over: the fd the main thread opened, and what the kernel granted on it. */
export type TapQueue = TapQueueHandle;

/** What a worker starts with (workerData). */
export interface WorkerInit {
  /** 1..n-1: the main thread is worker 0. Also the worker's queue and socket position. */
  index: number;
  n: number;
  underlayIp: number;
  port: number;
  slotSize: number;
  innerMtu: number;
  offload: OffloadOptions;
  tuning: IoTuning;
  /** Counters.BYTES, shared: the worker counts, the main thread sums. */
  counters: SharedArrayBuffer;
}

export type ToWorker =
  | { t: 'open'; cfg: DataplaneConfig }
  | { t: 'restore'; files: Uint8Array[] }
  | { t: 'run' }
  | { t: 'leases'; leases: LeaseInfo[] }
  | { t: 'policies'; policies: PolicyRecord[]; hold: boolean }
  | { t: 'port'; index: number; handle: string; app: string; ip: number; queue: TapQueue }
  | { t: 'unport'; index: number }
  | { t: 'save'; id: number; final: boolean }
  | { t: 'stats'; id: number }
  | { t: 'conntrack'; id: number; cursor: number; left: number; query: ConntrackQuery }
  | { t: 'close'; id: number };

/** What a worker reports of itself for `show counters` and the metrics. */
export interface WorkerStats {
  io: Record<string, unknown>;
  evictions: number;
  conntrack: number;
  capacity: number;
  /** Per port index: [tx packets, tx bytes, rx packets, rx bytes] of the worker's share. */
  ports: Record<number, number[]>;
  fragments: { queues: number; bytes: number; reassembled: number };
  ruleHits: Float64Array;
}

export type FromWorker =
  | { t: 'bound' }
  | { t: 'failed'; message: string; code?: string }
  | { t: 'ready' }
  | { t: 'gone'; index: number; handle: string; err: string }
  | { t: 'port-failed'; index: number; handle: string; err: string }
  | { t: 'saved'; id: number; bytes: Uint8Array; restored?: number }
  | { t: 'stats'; id: number; stats: WorkerStats }
  | { t: 'conntrack'; id: number; slice: ConntrackSlice }
  | { t: 'closed'; id: number };
