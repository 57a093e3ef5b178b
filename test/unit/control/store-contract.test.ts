// One suite, two stores: the controller over SQLite (one process) and over
// PostgreSQL (PgStore, which several replicas share) must give the same
// answers to the same requests — policies, tags lowest-free, leases, the
// delta watch — and come back with the same state after a restart.
// The PostgreSQL half starts its own server (needs root and the postgresql
// package; skipped otherwise).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller, ConflictError, type ControllerOptions } from '../../../src/control/controller.js';
import { SqliteStore } from '../../../src/control/store.js';
import { PgStore } from '../../../src/control/pg-store.js';
import { WatchState } from '../../../src/agent/watch-state.js';
import type { PolicyKey } from '../../../src/control/validate.js';
import type { Snapshot, WatchDelta } from '../../../src/net/controller-types.js';
import { HAVE_POSTGRES, startTestPostgres, type TestPostgres } from '../../helpers/postgres.js';

interface Backend {
  /** A fresh, empty store; returns a function that opens a controller on it (again and again). */
  fresh(): Promise<(o?: Partial<ControllerOptions>) => Promise<Controller>>;
}

const sqlite: Backend = {
  async fresh() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swcontract-'));
    dirs.push(dir);
    const file = path.join(dir, 'c.db');
    return async (o = {}) => Controller.open({ ...o, store: new SqliteStore(file) });
  },
};

let pgServer: TestPostgres | undefined;
const postgres: Backend = {
  async fresh() {
    const url = await pgServer!.database();
    return async (o = {}) => Controller.open({ ...o, store: await PgStore.open(url) });
  },
};

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const pol = (source: string, dest: string, port = 8080): PolicyKey => ({ source, dest, protocol: 'tcp', start: port, end: port });
const stripTime = (s: Snapshot) => ({ ...s, changed_at: 0 });

function contract(name: string, backend: () => Backend) {
  describe(`controller store contract: ${name}`, () => {
    it('policies, tags lowest-free, pinned tags; the same state after a restart', async () => {
      const open = await backend().fresh();
      const c = await open();
      expect(await c.addPoliciesAsync([pol('a', 'b'), pol('a', 'c')])).toBe(2);
      expect(await c.addPoliciesAsync([pol('a', 'b')])).toBe(0);
      expect(c.tags()).toEqual([
        { id: 'a', tag: '0001' },
        { id: 'b', tag: '0002' },
        { id: 'c', tag: '0003' },
      ]);
      expect(await c.deletePoliciesAsync([pol('a', 'b'), pol('x', 'y')])).toBe(1);
      // b's tag 2 is free again and is the next one handed out
      await c.addPoliciesAsync([pol('d', 'a', 53)]);
      expect(c.tagFor('d')).toBe('0002');
      expect(await c.createTagAsync('space-1', 'space')).toEqual({ id: 'space-1', tag: '0004', type: 'space' });
      expect(await c.createTagAsync('space-1', 'space')).toEqual({ id: 'space-1', tag: '0004', type: 'space' });
      expect(c.listPolicies().map((p) => `${p.source.id}>${p.destination.id}`)).toEqual(['a>c', 'd>a']);
      const snap = c.snapshot();
      const typed = c.typedTags();
      expect(c.version).toBe(4);
      await c.closeAsync();

      const again = await open();
      expect(stripTime(again.snapshot())).toEqual(stripTime(snap));
      expect(again.typedTags()).toEqual(typed);
      expect(again.version).toBe(4);
      // the pinned tag stays after its app's only policy goes
      await again.addPoliciesAsync([pol('space-1', 'c')]);
      await again.deletePoliciesAsync([pol('space-1', 'c')]);
      expect(again.tagFor('space-1')).toBeUndefined();
      await again.closeAsync();
    });

    it('leases: lowest free, the same one again, release, mismatch, expiry sweep; kept across a restart', async () => {
      const open = await backend().fresh();
      let now = 1_000_000;
      const c = await open({ now: () => now, leaseExpirySeconds: 60 });
      const l1 = await c.acquireLeaseAsync('198.18.0.11');
      const l2 = await c.acquireLeaseAsync('198.18.0.12');
      const l3 = await c.acquireLeaseAsync('198.18.0.13');
      expect([l1, l2, l3].map((l) => l.overlay_subnet)).toEqual(['10.255.1.0/24', '10.255.2.0/24', '10.255.3.0/24']);
      expect(await c.acquireLeaseAsync('198.18.0.12')).toEqual(l2);
      expect(await c.releaseLeaseAsync({ underlay_ip: '198.18.0.12' })).toBe(true);
      expect((await c.acquireLeaseAsync('198.18.0.14')).overlay_subnet).toBe('10.255.2.0/24');
      await expect(c.renewLeaseAsync({ ...l1, overlay_subnet: '10.255.9.0/24', overlay_hardware_addr: undefined } as never)).rejects.toBeInstanceOf(
        ConflictError,
      );
      const single = await c.acquireLeaseAsync('198.18.0.20', true);
      expect(single.overlay_subnet).toBe('10.255.0.1/32');
      now += 40_000;
      await c.renewLeaseAsync(l1);
      now += 30_000; // l1 renewed 30 s ago; the others 70 s ago
      expect(await c.sweepExpiredLeasesAsync()).toBe(3);
      expect(c.leases()).toEqual([l1]);
      const v = c.version;
      await c.closeAsync();
      const again = await open({ now: () => now, leaseExpirySeconds: 60 });
      expect(again.version).toBe(v);
      expect(again.leases()).toEqual([l1]);
      expect(await again.sweepExpiredLeasesAsync()).toBe(0);
      now += 31_000;
      expect(await again.sweepExpiredLeasesAsync()).toBe(1);
      await again.closeAsync();
    });

    it('delta watch: the changes since any kept version rebuild the snapshot exactly', async () => {
      const open = await backend().fresh();
      const c = await open();
      const cell = new WatchState();
      cell.reset(c.snapshot());
      const seen: number[] = [];
      for (let i = 0; i < 30; i++) {
        if (i % 3 === 0) await c.acquireLeaseAsync(`198.18.1.${i}`);
        else await c.addPoliciesAsync([pol(`s${i % 4}`, `d${i}`, 1000 + i)]);
        if (i % 5 === 4) await c.deletePoliciesAsync([pol(`s${(i - 1) % 4}`, `d${i - 1}`, 1000 + i - 1)]);
        if (i % 7 === 6) await c.releaseLeaseAsync({ underlay_ip: `198.18.1.${i - 6}` });
        const d = JSON.parse(c.deltaJson(cell.version)!.toString()) as WatchDelta;
        expect(d.since).toBe(cell.version);
        expect(cell.apply(d)).toBe(true);
        seen.push(d.changes.length);
        const want = c.snapshot();
        const got = cell.snapshot();
        expect(got.version).toBe(want.version);
        expect(got.policies).toEqual(want.policies);
        expect([...got.leases].sort((a, b) => a.underlay_ip.localeCompare(b.underlay_ip))).toEqual(
          [...want.leases].sort((a, b) => a.underlay_ip.localeCompare(b.underlay_ip)),
        );
        expect([...got.tags].sort((a, b) => a.tag.localeCompare(b.tag))).toEqual(want.tags);
      }
      expect(Math.max(...seen)).toBeGreaterThanOrEqual(2);
      // from the start, too; and an unknown version gets no delta (the caller sends the snapshot)
      expect(JSON.parse(c.deltaJson(0)!.toString()).changes).toHaveLength(c.version);
      expect(c.deltaJson(c.version + 1)).toBeUndefined();
      expect(c.deltaJson(-1)).toBeUndefined();
      await c.closeAsync();
    });
  });
}

contract('SQLite', () => sqlite);

describe.skipIf(!HAVE_POSTGRES)('PostgreSQL', () => {
  beforeAll(async () => {
    pgServer = await startTestPostgres();
  });
  afterAll(async () => {
    await pgServer?.stop();
  });
  contract('PostgreSQL', () => postgres);
});
