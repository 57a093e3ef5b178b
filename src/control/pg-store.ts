// The controller's state in PostgreSQL, shared by several controller
// replicas (what cf-networking's policy server and silk-controller do with
// their SQL databases, so that losing one VM loses neither state nor
// service).
//
// - One write at a time across all replicas: every write transaction first
//   locks the `version` row of `meta` (SELECT … FOR UPDATE). The replica then
//   reads the change log past its own version, applies it, plans its change
//   on that latest state and commits version + 1. So tags and subnets are
//   handed out lowest-free as with one controller, and two replicas can never
//   pick the same one (the UNIQUE constraints on tags.tag and
//   leases.overlay_subnet would refuse it anyway).
// - Every commit is logged in `changes` (version → the commit as JSON) and
//   announced with NOTIFY silkworm_changes 'v:<version>'; the other replicas
//   LISTEN and read the log. A lease renewal changes no version: it is
//   announced as 'l:<lease JSON>' only, and a replica that lost its LISTEN
//   connection re-reads every expiry when it is back.
// - Schema migrations are numbered and applied under a session advisory lock,
//   so two controllers starting at once apply each exactly once.
import pg from 'pg';
import { logger, type Logger } from '../util/log.js';
import {
  StoreUnavailableError,
  type SharedStore,
  type StoreCommit,
  type StoredLease,
  type StoredTag,
  type StoreNotice,
  type StoreState,
  type StoreTx,
} from './store.js';

const CHANNEL = 'silkworm_changes';
/** pg_advisory_lock key held while migrating ("silkworm" in ASCII, folded to 63 bits). */
const MIGRATION_LOCK = 0x73696c6b776f726dn & 0x7fffffffffffffffn;
/** Versions of change log kept in the database (a replica further behind reloads everything). */
export const CHANGES_KEPT = 10_000;

interface Migration {
  version: number;
  sql: string;
}

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
      INSERT INTO meta (key, value) VALUES ('version', 0);
      CREATE TABLE tags (
        id text PRIMARY KEY,
        tag integer NOT NULL UNIQUE CHECK (tag BETWEEN 1 AND 65535),
        type text NOT NULL DEFAULT 'app',
        pinned boolean NOT NULL DEFAULT false);
      CREATE TABLE policies (
        seq bigserial PRIMARY KEY,
        source_id text NOT NULL, dest_id text NOT NULL, protocol text NOT NULL,
        start_port integer NOT NULL, end_port integer NOT NULL,
        UNIQUE (source_id, dest_id, protocol, start_port, end_port));
      CREATE TABLE leases (
        underlay_ip text PRIMARY KEY,
        overlay_subnet text NOT NULL UNIQUE,
        expires_at bigint NOT NULL);
      CREATE TABLE changes (version bigint PRIMARY KEY, body text NOT NULL);
    `,
  },
  {
    // One commit in one statement: each statement is a round trip to the
    // server, and on a busy machine every round trip waits for a turn on a
    // CPU. BEGIN + lock, this, COMMIT: three in all.
    version: 2,
    sql: `
      CREATE FUNCTION silkworm_commit(body text, bump boolean, kept bigint) RETURNS void LANGUAGE plpgsql AS $f$
      DECLARE
        c jsonb := body::jsonb;
        v bigint := (c->>'version')::bigint;
      BEGIN
        DELETE FROM policies p
          USING jsonb_to_recordset(coalesce(c->'deletePolicies', '[]')) AS d(source text, dest text, protocol text, start int, "end" int)
          WHERE p.source_id = d.source AND p.dest_id = d.dest AND p.protocol = d.protocol AND p.start_port = d.start AND p.end_port = d."end";
        -- Tags before policies' additions: a freed tag can be reused by an add in the same commit.
        DELETE FROM tags WHERE id IN (SELECT jsonb_array_elements_text(coalesce(c->'deleteTags', '[]')));
        -- Plain INSERT: a tag already held by another app must fail the commit, never be taken over.
        INSERT INTO tags (id, tag, type, pinned)
          SELECT t.id, t.tag, coalesce(t.type, 'app'), coalesce(t.pinned, false)
          FROM jsonb_to_recordset(coalesce(c->'addTags', '[]')) AS t(id text, tag int, type text, pinned boolean);
        UPDATE tags SET pinned = false WHERE id IN (SELECT jsonb_array_elements_text(coalesce(c->'unpinTags', '[]')));
        INSERT INTO policies (source_id, dest_id, protocol, start_port, end_port)
          SELECT d.source, d.dest, d.protocol, d.start, d."end"
          FROM ROWS FROM (jsonb_to_recordset(coalesce(c->'addPolicies', '[]')) AS (source text, dest text, protocol text, start int, "end" int))
            WITH ORDINALITY AS d(source, dest, protocol, start, "end", n)
          ORDER BY d.n
          ON CONFLICT DO NOTHING;
        DELETE FROM leases WHERE underlay_ip IN (SELECT jsonb_array_elements_text(coalesce(c->'deleteLeases', '[]')));
        INSERT INTO leases (underlay_ip, overlay_subnet, expires_at)
          SELECT l."underlayIp", l.subnet, l."expiresAt"
          FROM jsonb_to_recordset(coalesce(c->'putLeases', '[]')) AS l("underlayIp" text, subnet text, "expiresAt" bigint)
          ON CONFLICT (underlay_ip) DO UPDATE SET overlay_subnet = EXCLUDED.overlay_subnet, expires_at = EXCLUDED.expires_at;
        IF bump THEN
          UPDATE meta SET value = v WHERE key = 'version';
          INSERT INTO changes (version, body) VALUES (v, body);
          IF v % 256 = 0 THEN
            DELETE FROM changes WHERE version <= v - kept;
          END IF;
          -- A small commit rides in the notice itself (payloads stop at 8000 bytes): no read-back.
          IF octet_length(body) < 7900 THEN
            PERFORM pg_notify('silkworm_changes', 'c:' || body);
          ELSE
            PERFORM pg_notify('silkworm_changes', 'v:' || v);
          END IF;
        ELSE
          PERFORM pg_notify('silkworm_changes', 'l:' || l::text)
            FROM jsonb_array_elements(coalesce(c->'putLeases', '[]')) AS l;
        END IF;
      END
      $f$;
    `,
  },
];
export const PG_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Whether `s` names a PostgreSQL store rather than a SQLite file. */
export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//.test(s);
}

/** The URL without its password, for logs and messages. */
export function describePostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** SQLSTATE classes that mean "the request was wrong", not "the database is not there". */
function isDataError(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && /^(22|23|42)/.test(code);
}

function unavailable(what: string, e: unknown): Error {
  if (e instanceof StoreUnavailableError || isDataError(e)) return e as Error;
  const reason = (e as Error).message || String(e);
  return new StoreUnavailableError(`the controller's database is unavailable (${what}: ${reason}); the change was not made, try again`, e);
}

export interface PgStoreOptions {
  log?: Logger;
  /** Connections per replica. Default 8. */
  poolSize?: number;
  /** Give up connecting after this long. Default 2000 ms. */
  connectTimeoutMs?: number;
}

type Query = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;

export class PgStore implements SharedStore {
  readonly shared = true as const;
  readonly description: string;
  private readonly pool: pg.Pool;
  private readonly log: Logger;
  private listener: pg.Client | null = null;
  private readonly callbacks: ((n: StoreNotice) => void)[] = [];
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly url: string,
    opts: PgStoreOptions,
  ) {
    this.description = describePostgresUrl(url);
    this.log = opts.log ?? logger('controller');
    this.pool = new pg.Pool({
      connectionString: url,
      max: opts.poolSize ?? 8,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 2000,
      idleTimeoutMillis: 30_000,
      // A statement (a lock wait included) that takes this long fails; the request answers 503.
      statement_timeout: 10_000,
      query_timeout: 12_000,
    });
    // An idle connection the server closed (restart, failover): the pool drops it; nothing to do.
    this.pool.on('error', (err) => this.log.warn({ err: err.message }, 'store-connection-lost'));
    // A connection lost while checked out (mid-transaction) errors its query
    // too; this keeps the client's own 'error' event from being unhandled.
    this.pool.on('connect', (client) => client.on('error', () => undefined));
  }

  /** Connect, migrate the schema (safe when several controllers start at once) and start listening. */
  static async open(url: string, opts: PgStoreOptions = {}): Promise<PgStore> {
    const store = new PgStore(url, opts);
    try {
      await store.migrate();
      await store.listen(false);
    } catch (e) {
      await store.close();
      if (e instanceof StoreUnavailableError) throw e;
      throw new Error(`cannot open the store ${store.description}: ${(e as Error).message}`);
    }
    return store;
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
      try {
        await client.query(
          'CREATE TABLE IF NOT EXISTS silkworm_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
        );
        const r = await client.query('SELECT coalesce(max(version), 0) AS v FROM silkworm_migrations');
        const have = Number(r.rows[0].v);
        if (have > PG_SCHEMA_VERSION) {
          throw new Error(`the database has schema ${have}; this silkworm knows schema ${PG_SCHEMA_VERSION} at most`);
        }
        for (const m of MIGRATIONS) {
          if (m.version <= have) continue;
          await client.query('BEGIN');
          try {
            await client.query(m.sql);
            await client.query('INSERT INTO silkworm_migrations (version) VALUES ($1)', [m.version]);
            await client.query('COMMIT');
          } catch (e) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw e;
          }
          this.log.info({ store: this.description, schema: m.version }, 'store-migrated');
        }
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]).catch(() => undefined);
      }
    } finally {
      client.release();
    }
  }

  /** The LISTEN connection; on loss it reconnects with backoff and says so ('reconnected'). */
  private async listen(again: boolean): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 2000 });
    client.on('notification', (m) => {
      if (m.channel !== CHANNEL || !m.payload) return;
      const p = m.payload;
      let n: StoreNotice | undefined;
      if (p.startsWith('v:')) n = { kind: 'version', version: Number(p.slice(2)) };
      else if (p.startsWith('c:')) {
        try {
          const commit = JSON.parse(p.slice(2)) as StoreCommit;
          n = { kind: 'version', version: commit.version, commit };
        } catch {
          n = undefined;
        }
      }
      else if (p.startsWith('l:')) {
        try {
          n = { kind: 'lease', lease: JSON.parse(p.slice(2)) as StoredLease };
        } catch {
          n = undefined;
        }
      }
      if (n) this.emit(n);
    });
    const lost = (err?: Error) => {
      if (this.listener !== client) return;
      this.listener = null;
      client.removeAllListeners('end');
      client.end().catch(() => undefined);
      if (this.closed) return;
      this.log.warn({ err: err?.message }, 'store-listen-lost');
      this.scheduleListen(250);
    };
    client.on('error', lost);
    client.on('end', () => lost());
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    if (again) {
      this.log.info({ store: this.description }, 'store-listen-restored');
      this.emit({ kind: 'reconnected' });
    }
  }

  private scheduleListen(delayMs: number): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.listen(true).catch(() => this.scheduleListen(Math.min(delayMs * 2, 2000)));
    }, delayMs);
    this.reconnectTimer.unref();
  }

  private emit(n: StoreNotice): void {
    for (const cb of this.callbacks) {
      try {
        cb(n);
      } catch (err) {
        this.log.error({ err }, 'store-notice-failed');
      }
    }
  }

  onNotice(cb: (n: StoreNotice) => void): void {
    this.callbacks.push(cb);
  }

  async load(): Promise<StoreState> {
    const client = await this.connect('load');
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const state = await readState((t, v) => client.query(t, v));
      await client.query('COMMIT');
      client.release();
      return state;
    } catch (e) {
      client.release(true);
      throw unavailable('load', e);
    }
  }

  async leases(): Promise<StoredLease[]> {
    try {
      return readLeases((await this.pool.query('SELECT underlay_ip, overlay_subnet, expires_at FROM leases')).rows);
    } catch (e) {
      throw unavailable('read leases', e);
    }
  }

  async changesSince(version: number): Promise<StoreCommit[] | undefined> {
    try {
      return await readChanges((t, v) => this.pool.query(t, v), version);
    } catch (e) {
      throw unavailable('read changes', e);
    }
  }

  async begin(): Promise<StoreTx> {
    const client = await this.connect('begin');
    let version: number;
    try {
      const rs = (await client.query(
        `BEGIN; SET LOCAL lock_timeout = '5s'; SELECT value FROM meta WHERE key = 'version' FOR UPDATE`,
      )) as unknown as pg.QueryResult[];
      version = Number(rs[2]!.rows[0].value);
    } catch (e) {
      client.release(true);
      throw unavailable('begin', e);
    }
    return new PgTx(client, version);
  }

  private async connect(what: string): Promise<pg.PoolClient> {
    if (this.closed) throw new StoreUnavailableError('the controller is shutting down; the change was not made');
    try {
      return await this.pool.connect();
    } catch (e) {
      throw unavailable(what, e);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const l = this.listener;
    this.listener = null;
    if (l) await l.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}

class PgTx implements StoreTx {
  private done = false;
  constructor(
    private readonly client: pg.PoolClient,
    readonly version: number,
  ) {}

  private q: Query = (t, v) => this.client.query(t, v);

  async changesSince(version: number): Promise<StoreCommit[] | undefined> {
    try {
      return await readChanges(this.q, version);
    } catch (e) {
      throw unavailable('read changes', e);
    }
  }

  async load(): Promise<StoreState> {
    try {
      return await readState(this.q);
    } catch (e) {
      throw unavailable('load', e);
    }
  }

  async leases(underlayIps: string[]): Promise<StoredLease[]> {
    try {
      const r = await this.q('SELECT underlay_ip, overlay_subnet, expires_at FROM leases WHERE underlay_ip = ANY($1::text[])', [underlayIps]);
      return readLeases(r.rows);
    } catch (e) {
      throw unavailable('read leases', e);
    }
  }

  async commit(c: StoreCommit): Promise<void> {
    if (this.done) throw new Error('transaction already finished');
    const q = this.q;
    const bumps = c.version !== this.version;
    if (bumps && c.version !== this.version + 1) {
      throw new Error(`commit of version ${c.version} planned on a store at version ${this.version}`);
    }
    try {
      await q('SELECT silkworm_commit($1, $2, $3)', [JSON.stringify(c), bumps, CHANGES_KEPT]);
      await q('COMMIT');
    } catch (e) {
      this.done = true;
      await q('ROLLBACK').catch(() => undefined);
      this.client.release(true);
      throw unavailable('commit', e);
    }
    this.done = true;
    this.client.release();
  }

  async rollback(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.q('ROLLBACK');
      this.client.release();
    } catch {
      this.client.release(true);
    }
  }
}

function readLeases(rows: { underlay_ip: string; overlay_subnet: string; expires_at: string }[]): StoredLease[] {
  return rows.map((r) => ({ underlayIp: r.underlay_ip, subnet: r.overlay_subnet, expiresAt: Number(r.expires_at) }));
}

async function readChanges(q: Query, version: number): Promise<StoreCommit[] | undefined> {
  const r = await q('SELECT version, body FROM changes WHERE version > $1 ORDER BY version', [version]);
  const out: StoreCommit[] = [];
  for (const row of r.rows as { version: string; body: string }[]) out.push(JSON.parse(row.body) as StoreCommit);
  // The log is trimmed from the old end: a first row past version + 1 means the changes in between are gone.
  if (out.length && out[0]!.version !== version + 1) return undefined;
  return out;
}

async function readState(q: Query): Promise<StoreState> {
  const v = await q(`SELECT value FROM meta WHERE key = 'version'`);
  const version = Number(v.rows[0].value);
  const pr = await q({ text: 'SELECT source_id, dest_id, protocol, start_port, end_port FROM policies ORDER BY seq', rowMode: 'array' } as never);
  const policies = (pr.rows as unknown as [string, string, 'tcp' | 'udp', number, number][]).map(([source, dest, protocol, start, end]) => ({
    source,
    dest,
    protocol,
    start,
    end,
  }));
  const tr = await q('SELECT id, tag, type, pinned FROM tags ORDER BY tag');
  const tags = (tr.rows as { id: string; tag: number; type: string; pinned: boolean }[]).map((t) => {
    const out: StoredTag = { id: t.id, tag: t.tag };
    if (t.type !== 'app') out.type = t.type;
    if (t.pinned) out.pinned = true;
    return out;
  });
  const lr = await q('SELECT underlay_ip, overlay_subnet, expires_at FROM leases ORDER BY underlay_ip');
  return { version, policies, tags, leases: readLeases(lr.rows) };
}
