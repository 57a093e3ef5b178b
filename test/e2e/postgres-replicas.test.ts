// Several controller replicas on one PostgreSQL database (a server the test
// starts itself): concurrent allocation never hands out a tag or a subnet
// twice, a change through one replica reaches a watch held on another, lease
// sweeps respect renewals made through the other replica, and with the
// database down reads keep working while writes answer 503 in one sentence.
// Needs root (PostgreSQL runs as the postgres user) and the postgresql package.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Controller } from '../../src/control/controller.js';
import { PgStore } from '../../src/control/pg-store.js';
import { startController, type RunningController } from '../../src/control/server.js';
import { StoreUnavailableError } from '../../src/control/store.js';
import { ControllerClient, ControllerError } from '../../src/net/controller-client.js';
import type { WatchDelta } from '../../src/net/controller-types.js';
import type { PolicyKey } from '../../src/control/validate.js';
import { HAVE_POSTGRES, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let server: TestPostgres;
const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'swrep-'));

const pol = (source: string, dest: string, port = 8080): PolicyKey => ({ source, dest, protocol: 'tcp', start: port, end: port });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function settle(a: Controller, b: Controller): Promise<void> {
  const deadline = Date.now() + 3000;
  while (a.version !== b.version && Date.now() < deadline) await sleep(10);
}

describe.skipIf(!HAVE_POSTGRES)('controller replicas on PostgreSQL', () => {
  beforeAll(async () => {
    server = await startTestPostgres();
  });
  afterAll(async () => {
    await server?.stop();
    fs.rmSync(sockDir, { recursive: true, force: true });
  });

  it('two replicas allocating tags and leases at once never hand out the same one', async () => {
    const url = await server.database();
    // both start at once: the migrations run once, under the advisory lock
    const [a, b] = await Promise.all([Controller.open({ store: await PgStore.open(url) }), Controller.open({ store: await PgStore.open(url) })]);
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const c = i % 2 ? a : b;
      // every policy brings two new apps: 400 tags, handed out by both replicas interleaved
      work.push(c.addPoliciesAsync([pol(`src-${i}`, `dst-${i}`)]));
      if (i < 120) work.push((i % 3 ? b : a).acquireLeaseAsync(`198.18.2.${i}`));
    }
    await Promise.all(work);
    await settle(a, b);
    const stored = await (async () => {
      const s = await PgStore.open(url);
      try {
        return await s.load();
      } finally {
        await s.close();
      }
    })();
    const tags = stored.tags.map((t) => t.tag);
    expect(new Set(tags).size).toBe(400);
    expect(Math.max(...tags)).toBe(400); // lowest-free across replicas: dense 1..400
    const subnets = stored.leases.map((l) => l.subnet);
    expect(new Set(subnets).size).toBe(120);
    expect(stored.version).toBe(320);
    for (const c of [a, b]) {
      expect(c.version).toBe(320);
      expect(c.tags().length).toBe(400);
      expect(c.leases().length).toBe(120);
    }
    expect(a.snapshotJson().toString().replace(/"changed_at":\d+/, '')).toBe(b.snapshotJson().toString().replace(/"changed_at":\d+/, ''));
    await a.closeAsync();
    await b.closeAsync();
  });

  it('a change through replica A reaches a watch held on replica B (p99 within 100 ms)', async () => {
    const url = await server.database();
    const ra = await startController({ listen: path.join(sockDir, 'a.sock'), store: url });
    const rb = await startController({ listen: path.join(sockDir, 'b.sock'), store: url });
    try {
      const ca = new ControllerClient(ra.address);
      const cb = new ControllerClient(rb.address);
      const lat: number[] = [];
      const whole: number[] = [];
      for (let i = 0; i < 60; i++) {
        const since = rb.controller.version;
        const watch = cb.watchDelta(since);
        await sleep(2);
        const t0 = performance.now();
        await ca.addPolicies([{ source: { id: `w${i}` }, destination: { id: 'web', protocol: 'tcp', ports: { start: 80, end: 80 } } }]);
        const ans = (await watch) as WatchDelta;
        whole.push(performance.now() - t0);
        // changed_at is A's clock just before its COMMIT (same host): commit → B's watch answered
        lat.push(Date.now() - ans.changed_at!);
        expect(ans.since).toBe(since);
        expect(ans.changes.map((c) => c.add_policies?.[0]?.source.id)).toContain(`w${i}`);
      }
      lat.sort((x, y) => x - y);
      whole.sort((x, y) => x - y);
      const p50 = lat[Math.floor(lat.length * 0.5)]!;
      const p99 = lat[Math.floor(lat.length * 0.99)]!;
      console.log(
        `replica A commit → replica B watch answered: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms; ` +
          `from the POST to A: p50 ${whole[30]!.toFixed(1)} ms, p99 ${whole[59]!.toFixed(1)} ms (${lat.length} changes)`,
      );
      // The target is 100 ms; a box running several times more work than it
      // has cores delays every process's turn, so allow more there (and say so).
      const busy = os.loadavg()[0]! / os.cpus().length > 1.5;
      if (busy) console.log(`load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores: p99 bound 300 ms instead of 100 ms`);
      expect(p99).toBeLessThanOrEqual(busy ? 300 : 100);
    } finally {
      await ra.close();
      await rb.close();
    }
  });

  it('lease sweeps on either replica respect a renewal made through the other', async () => {
    const url = await server.database();
    let now = 5_000_000;
    const clock = () => now;
    const a = await Controller.open({ store: await PgStore.open(url), now: clock, leaseExpirySeconds: 10 });
    const b = await Controller.open({ store: await PgStore.open(url), now: clock, leaseExpirySeconds: 10 });
    const l = await a.acquireLeaseAsync('198.18.3.1');
    await b.acquireLeaseAsync('198.18.3.2');
    await settle(a, b);
    now += 8_000;
    await a.renewLeaseAsync(l); // B learns of it by notice, or reads it back from the database at sweep time
    now += 5_000; // 198.18.3.1 renewed 5 s ago; 198.18.3.2 13 s ago
    const [sa, sb] = await Promise.all([a.sweepExpiredLeasesAsync(), b.sweepExpiredLeasesAsync()]);
    expect(sa + sb).toBe(1); // one replica reclaims it, the other finds it gone
    await settle(a, b);
    expect(b.leases()).toEqual([l]);
    expect(a.leases()).toEqual([l]);
    now += 6_000;
    expect(await b.sweepExpiredLeasesAsync()).toBe(1);
    await settle(a, b);
    expect(a.leases()).toEqual([]);
    await a.closeAsync();
    await b.closeAsync();
  });

  it('database down: reads from memory, writes 503 in one sentence, nothing half-written; back when it returns', async () => {
    const url = await server.database();
    const ra = await startController({ listen: path.join(sockDir, 'fa.sock'), store: url });
    const rb = await startController({ listen: path.join(sockDir, 'fb.sock'), store: url });
    const ca = new ControllerClient(ra.address);
    const cb = new ControllerClient(rb.address);
    try {
      await ca.addPolicies([{ source: { id: 'x' }, destination: { id: 'y', protocol: 'tcp', ports: { start: 1, end: 1 } } }]);
      await server.cluster.stop();
      expect((await cb.policies()).length).toBe(1);
      expect((await cb.snapshot()).policies.length).toBe(1);
      const err = await ca
        .addPolicies([{ source: { id: 'p' }, destination: { id: 'q', protocol: 'tcp', ports: { start: 2, end: 2 } } }])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ControllerError);
      expect((err as ControllerError).status).toBe(503);
      expect((err as ControllerError).message).toMatch(/^the controller's database is unavailable \(.*\); the change was not made, try again$/);
      await expect(ra.controller.acquireLeaseAsync('198.18.4.1')).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(ra.controller.version).toBe(1);
      await server.cluster.start();
      // the pool reconnects on the next request; the listener within a couple of seconds
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          await ca.addPolicies([{ source: { id: 'p' }, destination: { id: 'q', protocol: 'tcp', ports: { start: 2, end: 2 } } }]);
          break;
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await sleep(100);
        }
      }
      await settle(ra.controller, rb.controller);
      expect(rb.controller.version).toBe(2);
      expect((await cb.policies()).map((p) => p.source.id)).toEqual(['x', 'p']);
      // a change after the restart still reaches the other replica by notice
      await sleep(2500);
      const since = rb.controller.version;
      const watch = cb.watchDelta(since);
      await ca.addPolicies([{ source: { id: 'r' }, destination: { id: 'q', protocol: 'tcp', ports: { start: 3, end: 3 } } }]);
      const t0 = Date.now();
      const ans = (await watch) as WatchDelta;
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(ans.version).toBe(3);
    } finally {
      await ra.close();
      await rb.close();
    }
  });
});
