// Health you can alert on: on an idle, healthy lab (no policy or lease
// changes for a minute) every cell's silkworm_watch_staleness_seconds stays
// under 2 × the controller's watch hold (DEFAULT_WATCH_HOLD_MS, 25 s), because
// staleness counts from the last successful round-trip with the controller —
// a held watch that returned unchanged is one — not from the last change.
// Before, it grew with the lab's idle time (45–208 s read on healthy cells).
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_WATCH_HOLD_MS } from '../../src/control/server.js';
import { cleanup, isRoot, labUp, RUN_DIR, sleep, uniquePrefix } from '../helpers/lab.js';

const prefix = uniquePrefix('st');
/** Longer than 2 × the hold, so a clock that only moves on change would exceed the bound. */
const IDLE_MS = 2 * DEFAULT_WATCH_HOLD_MS + 8_000;

function metrics(cell: string): Promise<Map<string, number>> {
  const socketPath = path.join(RUN_DIR, prefix, `${cell}.sock`);
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: '/metrics', method: 'GET', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        const out = new Map<string, number>();
        for (const line of body.split('\n')) {
          const m = /^(silkworm_[a-z_]+)(?:\{[^}]*\})? (\S+)$/.exec(line);
          if (m) out.set(m[1]!, Number(m[2]));
        }
        resolve(out);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET /metrics on ${cell}: no answer`)));
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(!isRoot())(`watch staleness on an idle lab (prefix ${prefix})`, () => {
  beforeAll(async () => {
    await cleanup(prefix);
    await labUp(prefix);
  }, 90_000);
  afterAll(async () => {
    await cleanup(prefix);
  }, 60_000);

  it(
    `stays under 2 × the ${DEFAULT_WATCH_HOLD_MS / 1000} s watch hold on both cells for ${IDLE_MS / 1000} s with nothing changing`,
    async () => {
      const bound = (2 * DEFAULT_WATCH_HOLD_MS) / 1000;
      const samples: Record<string, number[]> = { cell1: [], cell2: [] };
      const versions = new Set<number>();
      const t0 = Date.now();
      while (Date.now() - t0 < IDLE_MS) {
        for (const cell of ['cell1', 'cell2']) {
          const m = await metrics(cell);
          samples[cell]!.push(m.get('silkworm_watch_staleness_seconds')!);
          versions.add(m.get('silkworm_state_version')!);
        }
        await sleep(4000);
      }
      const report = JSON.stringify(samples);
      // Idle: the controller's version did not move during the run.
      expect(versions.size, report).toBe(1);
      for (const cell of ['cell1', 'cell2']) {
        const s = samples[cell]!;
        expect(s.length, report).toBeGreaterThanOrEqual(10);
        for (const v of s) {
          expect(v, report).toBeGreaterThanOrEqual(0);
          expect(v, report).toBeLessThan(bound);
        }
      }
    },
    IDLE_MS + 60_000,
  );
});
