// A PostgreSQL server of our own, for the lab and the tests: Debian's
// postgresql package (initdb, pg_ctl under /usr/lib/postgresql/<major>/bin),
// a data directory under a directory we own, run as the `postgres` user,
// listening only on a unix socket in that directory (no TCP). Never the
// system's cluster.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The newest installed PostgreSQL's bin directory, or undefined. */
export function findPostgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  let majors: string[];
  try {
    majors = fs.readdirSync(root).filter((d) => /^\d+$/.test(d) && fs.existsSync(path.join(root, d, 'bin', 'pg_ctl')));
  } catch {
    return undefined;
  }
  majors.sort((a, b) => Number(b) - Number(a));
  return majors.length ? path.join(root, majors[0]!, 'bin') : undefined;
}

export interface PgCluster {
  /** The directory holding data/, the socket and the log. */
  readonly dir: string;
  readonly socketDir: string;
  readonly log: string;
  /** postgres:///silkworm?host=<socketDir>&user=postgres */
  readonly url: string;
  /** PID of the postmaster while it runs. */
  pid(): number | undefined;
  start(): Promise<void>;
  /** pg_ctl stop -m fast. */
  stop(): Promise<void>;
}

async function asPostgres(bin: string, args: string[], cwd: string): Promise<void> {
  try {
    await run('runuser', ['-u', 'postgres', '--', bin, ...args], { cwd, timeout: 60_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${path.basename(bin)} failed: ${(err.stderr || err.message).trim().split('\n').slice(-2).join(' ')}`);
  }
}

/**
 * Make (if needed) and start a cluster in `dir`, with a database `silkworm`.
 * `dir` must be short enough for a unix socket path (under ~90 characters).
 */
export async function startPgCluster(dir: string): Promise<PgCluster> {
  const bin = findPostgresBin();
  if (!bin) throw new Error('PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/pg_ctl); install the postgresql package');
  let uid: number;
  let gid: number;
  try {
    uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  } catch {
    throw new Error('there is no postgres user: install the postgresql package');
  }
  fs.mkdirSync(dir, { recursive: true });
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'postgres.log');
  fs.chownSync(dir, uid, gid);
  fs.chmodSync(dir, 0o755);
  if (!fs.existsSync(path.join(data, 'PG_VERSION'))) {
    await asPostgres(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync'], dir);
  }
  const cluster: PgCluster = {
    dir,
    socketDir: dir,
    log,
    url: `postgres:///silkworm?host=${encodeURIComponent(dir)}&user=postgres`,
    pid() {
      try {
        const n = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
        return n > 0 ? n : undefined;
      } catch {
        return undefined;
      }
    },
    async start() {
      await asPostgres(
        path.join(bin, 'pg_ctl'),
        ['-D', data, '-l', log, '-w', '-t', '30', '-o', `-k ${dir} -c listen_addresses='' -c max_connections=200`, 'start'],
        dir,
      );
    },
    async stop() {
      if (!fs.existsSync(path.join(data, 'postmaster.pid'))) return;
      await asPostgres(path.join(bin, 'pg_ctl'), ['-D', data, '-w', '-t', '30', '-m', 'fast', 'stop'], dir);
    },
  };
  await cluster.start();
  const psql = path.join(bin, 'psql');
  try {
    await run('runuser', ['-u', 'postgres', '--', psql, '-h', dir, '-d', 'postgres', '-tAc', "SELECT 1 FROM pg_database WHERE datname = 'silkworm'"], {
      cwd: dir,
    }).then(async (r) => {
      if (r.stdout.trim() !== '1') await asPostgres(psql, ['-h', dir, '-d', 'postgres', '-c', 'CREATE DATABASE silkworm'], dir);
    });
  } catch (e) {
    await cluster.stop().catch(() => undefined);
    throw e;
  }
  return cluster;
}
