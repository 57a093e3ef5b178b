import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../../src/control/store.js';
import { Controller } from '../../../src/control/controller.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swstore-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('SqliteStore', () => {
  it('starts empty at version 0 in WAL mode with synchronous=FULL', () => {
    const file = path.join(dir, 'c.db');
    const s = new SqliteStore(file);
    expect(s.load()).toEqual({ version: 0, policies: [], tags: [], leases: [] });
    s.close();
    const db = new Database(file);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('commits atomically and reloads the same state after reopening', () => {
    const file = path.join(dir, 'c.db');
    const s = new SqliteStore(file);
    s.commit({
      version: 1,
      addPolicies: [{ source: 'a', dest: 'b', protocol: 'tcp', start: 80, end: 90 }],
      addTags: [
        { id: 'a', tag: 1 },
        { id: 'b', tag: 2 },
      ],
      putLeases: [{ underlayIp: '198.18.0.11', subnet: '10.255.1.0/24', expiresAt: 12345 }],
    });
    s.commit({ version: 2, addPolicies: [{ source: 'b', dest: 'a', protocol: 'udp', start: 53, end: 53 }] });
    s.close();
    const again = new SqliteStore(file);
    expect(again.load()).toEqual({
      version: 2,
      policies: [
        { source: 'a', dest: 'b', protocol: 'tcp', start: 80, end: 90 },
        { source: 'b', dest: 'a', protocol: 'udp', start: 53, end: 53 },
      ],
      tags: [
        { id: 'a', tag: 1 },
        { id: 'b', tag: 2 },
      ],
      leases: [{ underlayIp: '198.18.0.11', subnet: '10.255.1.0/24', expiresAt: 12345 }],
    });
    again.close();
  });

  it('a commit that fails half way writes nothing (one transaction)', () => {
    const s = new SqliteStore(path.join(dir, 'c.db'));
    s.commit({ version: 1, addTags: [{ id: 'a', tag: 1 }] });
    // tag 1 is UNIQUE: the second tag row fails after the policy row was written
    expect(() =>
      s.commit({
        version: 2,
        addPolicies: [{ source: 'x', dest: 'y', protocol: 'tcp', start: 1, end: 1 }],
        addTags: [
          { id: 'x', tag: 5 },
          { id: 'y', tag: 1 },
        ],
      }),
    ).toThrow(/UNIQUE/);
    expect(s.load()).toEqual({ version: 1, policies: [], tags: [{ id: 'a', tag: 1 }], leases: [] });
    s.close();
  });

  it('a controller over SQLite restarts with the same tags, leases and version', () => {
    const file = path.join(dir, 'c.db');
    const c1 = new Controller({ store: new SqliteStore(file) });
    c1.addPolicies([{ source: 'appA', dest: 'appB', protocol: 'tcp', start: 8080, end: 8080 }]);
    const lease = c1.acquireLease('198.18.0.11');
    const snap = c1.snapshot();
    c1.close();
    const c2 = new Controller({ store: new SqliteStore(file) });
    // changed_at is the wall clock of the change as this process saw it; the state itself must match.
    expect({ ...c2.snapshot(), changed_at: 0 }).toEqual({ ...snap, changed_at: 0 });
    expect(c2.version).toBe(2);
    expect(c2.acquireLease('198.18.0.11')).toEqual(lease);
    c2.close();
  });

  it('a bad path is one clear error', () => {
    expect(() => new SqliteStore(path.join(dir, 'missing-dir', 'c.db'))).toThrow(/cannot open the store/);
  });
});
