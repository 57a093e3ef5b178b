// A worker thread of a cell started with --workers N (N > 1): a whole data
// plane of its own — a Dataplane with its own connection tracking, its queue
// of every container's TAP, its socket of the SO_REUSEPORT group on UDP 4789
// — fed by the main thread (src/cell/workers.ts) with every snapshot and
// container change, in order. The kernel steers each inner flow, both ways,
// to one worker (src/dataplane/steer.ts), so no table is shared and nothing
// is locked. Counters go to a shared buffer the main thread sums.
import { parentPort, workerData } from 'node:worker_threads';
import { Counters } from '../dataplane/counters.js';
import { Dataplane } from '../dataplane/dataplane.js';
import { steerWorkerOfFlow } from '../dataplane/steer.js';
import type { DatagramSocket, FrameDevice } from '../io/types.js';
import { logger } from '../util/log.js';
import { ConntrackWriter, restoreConntrackBytes } from './conntrack-state.js';
import { conntrackSlice } from './conntrack-stream.js';
import { deviceStats, Forwarder } from './forwarder.js';
import { nativeCellIo } from './io.js';
import type { FromWorker, TapQueue, ToWorker, WorkerInit, WorkerStats } from './worker-protocol.js';

/** Milliseconds of conntrack walking per event-loop turn during a periodic save. */
const CT_SAVE_SLICE_MS = 2;
/** Milliseconds of walking per `show conntrack` slice (the main thread asks for the next). */
const CT_SHOW_SLICE_MS = 5;

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('src/cell/worker.ts runs as a worker thread of a cell');
  const init = workerData as WorkerInit;
  const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);
  const log = logger('cell-worker', { worker: init.index });
  const counters = new Counters(init.counters);
  const io = nativeCellIo(init.offload, init.tuning);
  const now = () => performance.now() / 1000;
  let underlay: DatagramSocket;
  try {
    underlay = io.openUnderlay(init.underlayIp, init.port, init.slotSize, counters.drops, init.innerMtu, true);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    post({ t: 'failed', message: e.message, code: e.code });
    return;
  }
  post({ t: 'bound' });

  let dp: Dataplane | null = null;
  let fw: Forwarder | null = null;
  const devs = new Map<number, FrameDevice>();
  const fds = new Map<number, TapQueue>();
  let tick: NodeJS.Timeout | null = null;
  const mine = (e: { src: number; dst: number; proto: number; sport: number; dport: number }) =>
    steerWorkerOfFlow(e.src, e.dst, e.proto, e.sport, e.dport, init.n) === init.index;

  const stats = (): WorkerStats => {
    const out = deviceStats(underlay, devs.values());
    return {
      io: out,
      evictions: dp?.conntrack.evictions ?? 0,
      conntrack: dp?.conntrack.size ?? 0,
      capacity: dp?.conntrack.capacity ?? 0,
      ports: Object.fromEntries((dp?.listPorts() ?? []).map((p) => [p.index, [...p.packets]])),
      fragments: dp?.fragments ?? { queues: 0, bytes: 0, reassembled: 0 },
      ruleHits: dp ? Float64Array.from(dp.ruleHits) : new Float64Array(0),
    };
  };

  const close = () => {
    if (tick !== null) clearInterval(tick);
    for (const d of devs.values()) d.close();
    for (const q of fds.values()) io.closeQueue!(q);
    devs.clear();
    fds.clear();
    underlay.close();
  };

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'open':
        dp = new Dataplane(m.cfg, counters);
        fw = new Forwarder(dp, underlay, now);
        return;
      case 'restore': {
        let restored = 0;
        for (const bytes of m.files) {
          try {
            restored += restoreConntrackBytes(dp!.conntrack, bytes, now(), mine);
          } catch (err) {
            log.warn({ err: (err as Error).message }, 'conntrack-unreadable');
          }
        }
        if (restored > 0) log.info({ entries: restored }, 'conntrack-restored');
        return;
      }
      case 'run':
        fw!.startUnderlay();
        tick = setInterval(() => dp!.tick(now()), 1000);
        post({ t: 'ready' });
        return;
      case 'leases':
        dp!.setLeases(m.leases);
        return;
      case 'policies':
        if (m.hold) dp!.holdPolicies(m.policies);
        else dp!.setPolicies(m.policies);
        return;
      case 'port': {
        const p = dp!.addPort(m.handle, m.app, m.ip);
        let dev: FrameDevice;
        try {
          if (p.index !== m.index) throw new Error(`port index ${p.index} where the main thread has ${m.index}`);
          dev = io.adoptTap!(m.queue, init.slotSize, counters.drops);
        } catch (err) {
          dp!.removePort(p.index);
          post({ t: 'port-failed', index: m.index, handle: m.handle, err: (err as Error).message });
          return;
        }
        devs.set(p.index, dev);
        fds.set(p.index, m.queue);
        fw!.startDevice(p.index, dev, (err) => post({ t: 'gone', index: p.index, handle: m.handle, err: err.message }));
        return;
      }
      case 'unport': {
        fw?.dropDevice(m.index);
        dp?.removePort(m.index);
        // The queue's fd is this worker's once adopted: closed here, after the reader stopped.
        const dev = devs.get(m.index);
        if (dev !== undefined) {
          dev.close();
          io.closeQueue!(fds.get(m.index)!);
        }
        devs.delete(m.index);
        fds.delete(m.index);
        return;
      }
      case 'save': {
        if (dp === null) {
          post({ t: 'saved', id: m.id, bytes: new Uint8Array(0) });
          return;
        }
        const w = new ConntrackWriter(dp.conntrack, now());
        const slice = () => {
          if (!w.step(m.final ? Infinity : CT_SAVE_SLICE_MS)) {
            setImmediate(slice);
            return;
          }
          const bytes = w.bytes().slice();
          post({ t: 'saved', id: m.id, bytes }, [bytes.buffer as ArrayBuffer]);
        };
        slice();
        return;
      }
      case 'stats':
        post({ t: 'stats', id: m.id, stats: stats() });
        return;
      case 'conntrack':
        post({ t: 'conntrack', id: m.id, slice: conntrackSlice(dp!.conntrack, m.cursor, now(), m.query, m.left, CT_SHOW_SLICE_MS) });
        return;
      case 'close':
        close();
        post({ t: 'closed', id: m.id });
        port.close();
        return;
    }
  });
}

main();
