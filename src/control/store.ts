// Where the controller's state lives between restarts. The controller keeps
// the working state in memory (reads never touch the store) and hands every
// change to the store as one commit; the change is acknowledged to the client
// only after commit() returned, and applied in memory only after that, so a
// failed write changes nothing anywhere.
//
// SqliteStore uses better-sqlite3: SQLite is an embedded, single-file,
// transactional store with a well-kept synchronous Node binding (no event loop
// hop, so a commit is one fsync'd transaction and nothing can interleave with
// it). WAL with synchronous=FULL fsyncs the WAL at every commit, so an
// acknowledged change survives SIGKILL and power loss (sqlite.org/pragma.html
// #pragma_synchronous). Tag allocation is in the same transaction as the
// policies that caused it, so tags and policies can never disagree on disk.
import Database from 'better-sqlite3';
import type { PolicyKey } from './validate.js';

export interface StoredLease {
  underlayIp: string;
  /** e.g. "10.255.1.0/24" */
  subnet: string;
  /** Epoch milliseconds after which the lease may be reclaimed. */
  expiresAt: number;
}

/**
 * One app's (or group's) tag. `type` is the policy server's group type ("app"
 * for every tag a policy made); `pinned` marks a tag made by PUT
 * /networking/v1/internal/tags that no policy has named yet, so it outlives
 * having no policies, as the policy server's groups table does.
 */
export interface StoredTag {
  id: string;
  tag: number;
  type?: string;
  pinned?: boolean;
}

export interface StoreState {
  version: number;
  /** In creation order. */
  policies: PolicyKey[];
  tags: StoredTag[];
  leases: StoredLease[];
}

/** One atomic change. Deletions are applied before additions. */
export interface StoreCommit {
  version: number;
  addPolicies?: PolicyKey[];
  deletePolicies?: PolicyKey[];
  addTags?: StoredTag[];
  deleteTags?: string[];
  /** Tags whose pin is dropped (a policy now names them). */
  unpinTags?: string[];
  putLeases?: StoredLease[];
  /** Underlay IPs. */
  deleteLeases?: string[];
  /** Wall-clock ms when the change was made (a shared store carries it to the other replicas). */
  changedAt?: number;
}

/** A store one process owns: synchronous, so a commit cannot interleave with anything. */
export interface ControllerStore {
  readonly shared?: false;
  load(): StoreState;
  commit(c: StoreCommit): void;
  close(): void;
}

/**
 * A store several controller replicas share (src/control/pg-store.ts). Every
 * write runs in a transaction that first takes the store's one write lock,
 * so the replica plans its change on the latest state: it reads the commits
 * made since its own version (`changesSince`), applies them, plans, and
 * commits version + 1. Each commit is also kept in a change log, which other
 * replicas read when told (`onNotice`) and which serves delta watches.
 */
export interface SharedStore {
  readonly shared: true;
  /** What the store is, for logs ("postgres://host/db"), without a password. */
  readonly description: string;
  load(): Promise<StoreState>;
  /** Begin a write: the transaction holds the write lock until commit or rollback. */
  begin(): Promise<StoreTx>;
  /** Commits after `version` in order, or undefined when the log no longer reaches back that far. */
  changesSince(version: number): Promise<StoreCommit[] | undefined>;
  /** Every stored lease (expiry times are what other replicas' renewals moved). */
  leases(): Promise<StoredLease[]>;
  /** Called when another replica committed (or, with `lease`, refreshed a lease without a new version). */
  onNotice(cb: (n: StoreNotice) => void): void;
  close(): Promise<void>;
}

export type StoreNotice =
  /** A commit made `version`; small commits come with the notice. */
  | { kind: 'version'; version: number; commit?: StoreCommit }
  | { kind: 'lease'; lease: StoredLease }
  /** The connection that listens came back after a loss: notices may have been missed. */
  | { kind: 'reconnected' };

export interface StoreTx {
  /** The store's version, read under the lock. */
  readonly version: number;
  changesSince(version: number): Promise<StoreCommit[] | undefined>;
  load(): Promise<StoreState>;
  /** The stored leases of these underlay IPs (absent ones are not returned). */
  leases(underlayIps: string[]): Promise<StoredLease[]>;
  /** Write the commit, log it, tell the other replicas, and COMMIT. */
  commit(c: StoreCommit): Promise<void>;
  rollback(): Promise<void>;
}

/**
 * The store cannot be reached (or failed mid-write): the change was not made.
 * The HTTP API answers 503 with this message.
 */
export class StoreUnavailableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'StoreUnavailableError';
  }
}

/** For unit tests: the same contract, in memory, with a failure switch to test rollback. */
export class MemoryStore implements ControllerStore {
  private version = 0;
  private readonly policies = new Map<string, PolicyKey>();
  private readonly tags = new Map<string, StoredTag>();
  private readonly leases = new Map<string, StoredLease>();
  /** When set, the next commit throws this (and changes nothing). */
  failNext: Error | undefined;
  commits = 0;

  load(): StoreState {
    return {
      version: this.version,
      policies: [...this.policies.values()].map((p) => ({ ...p })),
      tags: [...this.tags.values()].map((t) => ({ ...t })),
      leases: [...this.leases.values()].map((l) => ({ ...l })),
    };
  }

  commit(c: StoreCommit): void {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    const k = (p: PolicyKey) => `${p.source}\0${p.dest}\0${p.protocol}\0${p.start}\0${p.end}`;
    for (const p of c.deletePolicies ?? []) this.policies.delete(k(p));
    for (const p of c.addPolicies ?? []) this.policies.set(k(p), { ...p });
    for (const id of c.deleteTags ?? []) this.tags.delete(id);
    for (const t of c.addTags ?? []) this.tags.set(t.id, { ...t });
    for (const id of c.unpinTags ?? []) {
      const t = this.tags.get(id);
      if (t) delete t.pinned;
    }
    for (const ip of c.deleteLeases ?? []) this.leases.delete(ip);
    for (const l of c.putLeases ?? []) this.leases.set(l.underlayIp, { ...l });
    this.version = c.version;
    this.commits++;
  }

  close(): void {}
}

// Schema 2 added tags.type and tags.pinned (PUT /networking/v1/internal/tags);
// a schema 1 file is migrated in place.
const SCHEMA_VERSION = 2;

export class SqliteStore implements ControllerStore {
  private readonly db: Database.Database;
  private readonly commitTx: (c: StoreCommit) => void;

  constructor(readonly file: string) {
    try {
      this.db = new Database(file);
    } catch (e) {
      throw new Error(`cannot open the store ${file}: ${(e as Error).message}`);
    }
    const db = this.db;
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // Another process (a second controller by mistake) holding the write lock:
    // wait a little rather than fail at once.
    db.pragma('busy_timeout = 2000');
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS tags (id TEXT PRIMARY KEY, tag INTEGER NOT NULL UNIQUE,
        type TEXT NOT NULL DEFAULT 'app', pinned INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE IF NOT EXISTS policies (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        source_id TEXT NOT NULL, dest_id TEXT NOT NULL, protocol TEXT NOT NULL,
        start_port INTEGER NOT NULL, end_port INTEGER NOT NULL,
        UNIQUE (source_id, dest_id, protocol, start_port, end_port));
      CREATE TABLE IF NOT EXISTS leases (
        underlay_ip TEXT PRIMARY KEY, overlay_subnet TEXT NOT NULL UNIQUE, expires_at INTEGER NOT NULL);
    `);
    const schema = db.prepare(`SELECT value FROM meta WHERE key = 'schema'`).get() as { value: number } | undefined;
    if (!schema) db.prepare(`INSERT INTO meta (key, value) VALUES ('schema', ?), ('version', 0)`).run(SCHEMA_VERSION);
    else if (schema.value === 1) {
      db.transaction(() => {
        db.exec(`ALTER TABLE tags ADD COLUMN type TEXT NOT NULL DEFAULT 'app'`);
        db.exec(`ALTER TABLE tags ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0`);
        db.prepare(`UPDATE meta SET value = ? WHERE key = 'schema'`).run(SCHEMA_VERSION);
      })();
    } else if (schema.value !== SCHEMA_VERSION) {
      throw new Error(`the store ${file} has schema ${schema.value}; this silkworm reads schema ${SCHEMA_VERSION}`);
    }

    const insPolicy = db.prepare(
      `INSERT OR IGNORE INTO policies (source_id, dest_id, protocol, start_port, end_port) VALUES (?, ?, ?, ?, ?)`,
    );
    const delPolicy = db.prepare(
      `DELETE FROM policies WHERE source_id = ? AND dest_id = ? AND protocol = ? AND start_port = ? AND end_port = ?`,
    );
    // Plain INSERT: a tag already held by another app must fail the commit, never be taken over.
    const insTag = db.prepare(`INSERT INTO tags (id, tag, type, pinned) VALUES (?, ?, ?, ?)`);
    const unpinTag = db.prepare(`UPDATE tags SET pinned = 0 WHERE id = ?`);
    const delTag = db.prepare(`DELETE FROM tags WHERE id = ?`);
    const putLease = db.prepare(
      `INSERT OR REPLACE INTO leases (underlay_ip, overlay_subnet, expires_at) VALUES (?, ?, ?)`,
    );
    const delLease = db.prepare(`DELETE FROM leases WHERE underlay_ip = ?`);
    const setVersion = db.prepare(`UPDATE meta SET value = ? WHERE key = 'version'`);

    this.commitTx = db.transaction((c: StoreCommit) => {
      for (const p of c.deletePolicies ?? []) delPolicy.run(p.source, p.dest, p.protocol, p.start, p.end);
      // Tags before policies' additions: a freed tag can be reused by an add in the same commit.
      for (const id of c.deleteTags ?? []) delTag.run(id);
      for (const t of c.addTags ?? []) insTag.run(t.id, t.tag, t.type ?? 'app', t.pinned ? 1 : 0);
      for (const id of c.unpinTags ?? []) unpinTag.run(id);
      for (const p of c.addPolicies ?? []) insPolicy.run(p.source, p.dest, p.protocol, p.start, p.end);
      for (const ip of c.deleteLeases ?? []) delLease.run(ip);
      for (const l of c.putLeases ?? []) putLease.run(l.underlayIp, l.subnet, l.expiresAt);
      setVersion.run(c.version);
    });
  }

  load(): StoreState {
    const db = this.db;
    const version = (db.prepare(`SELECT value FROM meta WHERE key = 'version'`).get() as { value: number }).value;
    const policies = (
      db
        .prepare(`SELECT source_id, dest_id, protocol, start_port, end_port FROM policies ORDER BY seq`)
        .raw()
        .all() as [string, string, 'tcp' | 'udp', number, number][]
    ).map(([source, dest, protocol, start, end]) => ({ source, dest, protocol, start, end }));
    const tags = (
      db.prepare(`SELECT id, tag, type, pinned FROM tags ORDER BY tag`).all() as { id: string; tag: number; type: string; pinned: number }[]
    ).map((t) => {
      // Only what differs from a policy's plain app tag, so the common case stays { id, tag }.
      const out: StoredTag = { id: t.id, tag: t.tag };
      if (t.type !== 'app') out.type = t.type;
      if (t.pinned === 1) out.pinned = true;
      return out;
    });
    const leases = (
      db.prepare(`SELECT underlay_ip, overlay_subnet, expires_at FROM leases ORDER BY underlay_ip`).all() as {
        underlay_ip: string;
        overlay_subnet: string;
        expires_at: number;
      }[]
    ).map((r) => ({ underlayIp: r.underlay_ip, subnet: r.overlay_subnet, expiresAt: r.expires_at }));
    return { version, policies, tags, leases };
  }

  commit(c: StoreCommit): void {
    this.commitTx(c);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
