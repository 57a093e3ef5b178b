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

  it('a schema 1 file is migrated in place: its tags become type "app", unpinned', () => {
    const file = path.join(dir, 'old.db');
    const db = new Database(file);
    db.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      CREATE TABLE tags (id TEXT PRIMARY KEY, tag INTEGER NOT NULL UNIQUE);
      CREATE TABLE policies (seq INTEGER PRIMARY KEY AUTOINCREMENT, source_id TEXT NOT NULL, dest_id TEXT NOT NULL,
        protocol TEXT NOT NULL, start_port INTEGER NOT NULL, end_port INTEGER NOT NULL,
        UNIQUE (source_id, dest_id, protocol, start_port, end_port));
      CREATE TABLE leases (underlay_ip TEXT PRIMARY KEY, overlay_subnet TEXT NOT NULL UNIQUE, expires_at INTEGER NOT NULL);
      INSERT INTO meta VALUES ('schema', 1), ('version', 3);
      INSERT INTO tags VALUES ('a', 1), ('b', 2);
      INSERT INTO policies (source_id, dest_id, protocol, start_port, end_port) VALUES ('a', 'b', 'tcp', 80, 80);
    `);
    db.close();
    const s = new SqliteStore(file);
    expect(s.load()).toMatchObject({ version: 3, tags: [{ id: 'a', tag: 1 }, { id: 'b', tag: 2 }] });
    s.commit({ version: 4, addTags: [{ id: 'space-1', tag: 3, type: 'space', pinned: true }] });
    s.close();
    const again = new SqliteStore(file);
    expect(again.load().tags).toEqual([{ id: 'a', tag: 1 }, { id: 'b', tag: 2 }, { id: 'space-1', tag: 3, type: 'space', pinned: true }]);
    again.close();
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare(`SELECT value FROM meta WHERE key = 'schema'`).get()).toEqual({ value: 2 });
    raw.close();
  });

  it('a tag made by PUT .../internal/tags survives a restart without policies; a leased subnet of an older network too', () => {
    const file = path.join(dir, 'c.db');
    const c1 = new Controller({ store: new SqliteStore(file) });
    expect(c1.createTag('space-1', 'space')).toEqual({ id: 'space-1', tag: '0001', type: 'space' });
    const old = c1.acquireLease('198.18.0.11');
    c1.close();
    const c2 = new Controller({ store: new SqliteStore(file), overlayNetwork: '10.254.0.0/16' });
    expect(c2.typedTags()).toEqual([{ id: 'space-1', tag: '0001', type: 'space' }]);
    expect(c2.leases()).toEqual([old]);
    expect(c2.renewLease(old)).toEqual(old);
    c2.close();
  });

  it('a bad path is one clear error', () => {
    expect(() => new SqliteStore(path.join(dir, 'missing-dir', 'c.db'))).toThrow(/cannot open the store/);
  });
});
