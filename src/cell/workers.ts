// The main thread's side of a cell's worker threads (--workers N, N > 1).
// The main thread is worker 0: it keeps the agent (lease, watch, admin,
// state) and moves the frames of its own queue and socket; workers 1..N-1
// run src/cell/worker.ts. Everything that changes a data plane is posted to
// every worker in the order it happens on the main thread, so port indices
// and tables agree; what is asked of them (conntrack saves, stats) is
// answered by id.
import { Worker } from 'node:worker_threads';
import { Counters } from '../dataplane/counters.js';
import type { Logger } from '../util/log.js';
import { CT_LIST_DONE } from '../policy/conntrack.js';
import type { ConntrackQuery, ConntrackSource } from './conntrack-stream.js';
import type { FromWorker, ToWorker, WorkerInit, WorkerStats } from './worker-protocol.js';

/** How long a worker may take to answer a question before the main thread goes on without it. */
const ANSWER_MS = 10_000;

interface Pending {
  resolve(m: FromWorker): void;
  timer: NodeJS.Timeout;
}

class Link {
  readonly counters: Counters;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  exited = false;

  constructor(
    readonly index: number,
    readonly worker: Worker,
    buffer: SharedArrayBuffer,
  ) {
    this.counters = new Counters(buffer);
  }

  post(m: ToWorker): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  /** Ask, and wait for the answer with the same id (null when the worker is gone or too slow). */
  ask<T extends FromWorker>(make: (id: number) => ToWorker): Promise<T | null> {
    if (this.exited) return Promise.resolve(null);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(null);
      }, ANSWER_MS);
      timer.unref();
      this.pending.set(id, { resolve: (m) => resolve(m as T), timer });
      this.worker.postMessage(make(id));
    });
  }

  answer(m: FromWorker): boolean {
    if (!('id' in m)) return false;
    const p = this.pending.get(m.id);
    if (!p) return true;
    clearTimeout(p.timer);
    this.pending.delete(m.id);
    p.resolve(m);
    return true;
  }

  fail(): void {
    this.exited = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.resolve({ t: 'closed', id: -1 });
    }
    this.pending.clear();
  }
}

export interface PoolEvents {
  /** A worker's queue of a container's TAP reports the device gone. */
  gone(handle: string, err: string): void;
  /** A worker died: the cell cannot forward that worker's flows any more. */
  died(index: number, err: string): void;
}

export class WorkerPool {
  private readonly links: Link[] = [];
  private closing = false;

  private constructor(
    private readonly log: Logger,
    private readonly events: PoolEvents,
  ) {}

  /**
   * Start workers 1..n-1, one after the other: each binds its socket of the
   * UDP group before the next starts, so socket positions are worker indices.
   */
  static async start(init: Omit<WorkerInit, 'index' | 'counters'>, log: Logger, events: PoolEvents): Promise<WorkerPool> {
    const pool = new WorkerPool(log, events);
    try {
      for (let index = 1; index < init.n; index++) await pool.spawn({ ...init, index, counters: new SharedArrayBuffer(Counters.BYTES) });
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private spawn(init: WorkerInit): Promise<void> {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    const link = new Link(init.index, worker, init.counters);
    return new Promise((resolve, reject) => {
      let bound = false;
      worker.on('message', (m: FromWorker) => {
        if (link.answer(m)) return;
        switch (m.t) {
          case 'bound':
            bound = true;
            this.links.push(link);
            resolve();
            return;
          case 'failed': {
            const err: NodeJS.ErrnoException = new Error(m.message);
            if (m.code !== undefined) err.code = m.code;
            reject(err);
            return;
          }
          case 'gone':
          case 'port-failed':
            this.events.gone(m.handle, m.err);
            return;
          default:
            return;
        }
      });
      worker.on('error', (err) => {
        link.fail();
        if (!bound) reject(err);
        else if (!this.closing) this.events.died(init.index, err.message);
      });
      worker.on('exit', (code) => {
        link.fail();
        if (!bound) reject(new Error(`worker ${init.index} exited (${code}) before binding its socket`));
        else if (!this.closing) this.events.died(init.index, `exited with code ${code}`);
      });
    });
  }

  get size(): number {
    return this.links.length;
  }

  /** Post to every worker, in order. */
  post(m: ToWorker): void {
    for (const l of this.links) l.post(m);
  }

  /** Post a message made per worker (e.g. each its own TAP queue): make(index) with index 1..n-1. */
  postEach(make: (index: number) => ToWorker): void {
    for (const l of this.links) l.post(make(l.index));
  }

  /** Every worker's counters (shared buffers, read as they are now). */
  counters(): Counters[] {
    return this.links.map((l) => l.counters);
  }

  /** Every worker's conntrack, saved (index order; an empty array for a worker that did not answer). */
  async save(final: boolean): Promise<Uint8Array[]> {
    const answers = await Promise.all(this.links.map((l) => l.ask<FromWorker & { t: 'saved' }>((id) => ({ t: 'save', id, final }))));
    return answers.map((a, i) => {
      if (a?.t === 'saved') return a.bytes;
      this.log.warn({ worker: this.links[i]!.index }, 'worker-save-unanswered');
      return new Uint8Array(0);
    });
  }

  async stats(): Promise<(WorkerStats | null)[]> {
    const answers = await Promise.all(this.links.map((l) => l.ask<FromWorker & { t: 'stats' }>((id) => ({ t: 'stats', id }))));
    return answers.map((a) => (a?.t === 'stats' ? a.stats : null));
  }

  /** Each worker's table as a source for `show conntrack` (src/cell/conntrack-stream.ts). */
  conntrackSources(query: ConntrackQuery): ConntrackSource[] {
    return this.links.map((l) => ({
      slice: async (cursor: number, left: number) => {
        const a = await l.ask<FromWorker & { t: 'conntrack' }>((id) => ({ t: 'conntrack', id, cursor, left, query }));
        // A worker that does not answer ends its part of the listing.
        return a?.t === 'conntrack' ? a.slice : { cursor: CT_LIST_DONE, text: '', entries: 0 };
      },
    }));
  }

  /** Close every worker's devices and let it end (terminated when it does not answer). */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.links.map(async (l) => {
        const a = await l.ask((id) => ({ t: 'close', id }));
        if (a === null || !l.exited) await l.worker.terminate().catch(() => undefined);
      }),
    );
  }
}
