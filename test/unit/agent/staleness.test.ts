// Health you can alert on: staleness is the time since the last successful
// round-trip with the controller — a watch that returned, whether with a
// change or with the same version when the controller's hold ran out — not
// the time since the last change. Driven by a controller whose watch holds
// for HOLD ms and answers the same snapshot, as the real one does when
// nothing changes; and by one whose watch fails.
import { describe, expect, it } from 'vitest';
import { ControlLoop } from '../../../src/agent/control-loop.js';
import type { ControllerClient, Lease, Snapshot } from '../../../src/net/controller-client.js';
import { logger } from '../../../src/util/log.js';

const HOLD = 100;
const lease: Lease = { underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' };
const snap: Snapshot = { version: 7, leases: [lease], policies: [], tags: [] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An idle, healthy controller: every watch is held HOLD ms and answered with the unchanged snapshot. */
function idleController(): ControllerClient & { watches: number } {
  const c = {
    watches: 0,
    acquireLease: async () => lease,
    renewLease: async (l: Lease) => l,
    snapshot: async () => snap,
    watch: (_v: number, signal?: AbortSignal) => c.watchDelta(_v, signal),
    watchDelta: (_v: number, signal?: AbortSignal) =>
      new Promise<Snapshot>((resolve, reject) => {
        const t = setTimeout(() => {
          c.watches++;
          resolve(snap);
        }, HOLD);
        signal?.addEventListener('abort', () => {
          clearTimeout(t);
          reject(new Error('aborted'));
        });
      }),
  };
  return c as unknown as ControllerClient & { watches: number };
}

/** A controller that answers the first snapshot, then fails every watch. */
function failingController(): ControllerClient {
  return {
    acquireLease: async () => lease,
    renewLease: async (l: Lease) => l,
    snapshot: async () => snap,
    watch: async () => {
      await sleep(5);
      throw new Error('connect ECONNREFUSED');
    },
    watchDelta: async () => {
      await sleep(5);
      throw new Error('connect ECONNREFUSED');
    },
  } as unknown as ControllerClient;
}

function loop(client: ControllerClient): ControlLoop {
  return new ControlLoop({ client, underlayIp: lease.underlay_ip, log: logger('staleness-test'), onSnapshot: () => undefined, renewInterval: 3600 });
}

describe('watch staleness', () => {
  it('on an idle healthy controller stays under 2 × the watch hold, while the last change grows old', async () => {
    const c = idleController();
    const l = loop(c);
    await l.acquire();
    await l.start();
    try {
      const t0 = Date.now();
      expect(l.lastContactAt).toBeGreaterThanOrEqual(t0 - 50);
      let worst = 0;
      while (Date.now() - t0 < 10 * HOLD) {
        await sleep(HOLD / 4);
        worst = Math.max(worst, Date.now() - l.lastContactAt);
      }
      expect(c.watches).toBeGreaterThanOrEqual(4);
      // The watch came back unchanged every HOLD ms: each return counts as contact
      // (the bound leaves a loaded machine one HOLD of slack).
      expect(worst).toBeLessThan(2 * HOLD + HOLD);
      // The version never moved, so a change-based clock would read the whole run.
      expect(l.version).toBe(7);
      expect(Date.now() - l.lastSnapshotAt).toBeGreaterThanOrEqual(10 * HOLD - 5);
    } finally {
      l.stop();
    }
  });

  it('grows while every watch fails, and failures are counted', async () => {
    const l = loop(failingController());
    await l.acquire();
    await l.start();
    try {
      const first = l.lastContactAt;
      expect(first).toBeGreaterThan(0);
      await sleep(400);
      expect(l.lastContactAt).toBe(first);
      expect(l.watchErrors).toBeGreaterThanOrEqual(2);
      expect(Date.now() - l.lastContactAt).toBeGreaterThanOrEqual(390);
    } finally {
      l.stop();
    }
  });

  it('is 0 (never) before the first snapshot', () => {
    expect(loop(idleController()).lastContactAt).toBe(0);
  });
});
