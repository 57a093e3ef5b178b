// A PostgreSQL server for tests: our own cluster under /tmp (unix socket
// only), one fresh database per test, stopped and removed at the end.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { findPostgresBin, startPgCluster, type PgCluster } from '../../src/control/pg-cluster.js';

/** initdb and pg_ctl run as the postgres user: needs root and the postgresql package. */
export const HAVE_POSTGRES = findPostgresBin() !== undefined && process.getuid?.() === 0;

export interface TestPostgres {
  cluster: PgCluster;
  /** A new empty database; its URL. */
  database(): Promise<string>;
  stop(): Promise<void>;
}

let counter = 0;

export async function startTestPostgres(): Promise<TestPostgres> {
  // Short: the socket path must fit in sun_path.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swpg-'));
  const cluster = await startPgCluster(dir);
  const admin = `postgres:///postgres?host=${encodeURIComponent(dir)}&user=postgres`;
  return {
    cluster,
    async database() {
      const name = `t${process.pid}_${++counter}`;
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return `postgres:///${name}?host=${encodeURIComponent(dir)}&user=postgres`;
    },
    async stop() {
      await cluster.stop().catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
