// A cell's state directory (`--state-dir`, default /var/lib/silkworm/<cell>):
//   lock          flock'd for the life of the process: one cell per directory
//                 (the kernel drops the lock when the process dies, however)
//   cell.json     what a restarted cell needs to carry on where the last one
//                 stopped: the lease it held, its containers (handle, app,
//                 address, namespace and whatever else the record carries)
//   conntrack.bin the userspace data plane's tracked connections (see
//                 src/cell/conntrack-state.ts), binary so a full table is a
//                 few MB written in one call
// Every file is written atomically: a temporary file in the same directory,
// fsync, rename over the old one, fsync of the directory — a crash (or kill
// -9) at any moment leaves either the old file or the new one, never half.
import fs from 'node:fs';
import path from 'node:path';
import type { Lease } from '../net/controller-types.js';

/** cell.json, version 1. */
export interface SavedCell {
  version: 1;
  cell: string;
  underlayIp: string;
  dataplane: 'user' | 'kernel';
  /** The lease held when the file was written (a restart must get the same subnet to keep its containers). */
  lease: Lease | null;
  pid: number;
  savedAt: string;
  /** Containers in attach order; `ip` as a dotted quad; extra fields a record carries (CNI identity) are kept. */
  containers: SavedContainer[];
  /** Counters the backend chose to keep across a restart (name → value). */
  counters?: Record<string, number>;
}

export interface SavedContainer {
  handle: string;
  app: string;
  ip: string;
  netns: string;
  [extra: string]: unknown;
}

export const STATE_FILE = 'cell.json';
export const LOCK_FILE = 'lock';

/** The default state directory for a cell name. */
export function defaultStateDir(name: string): string {
  return path.join('/var/lib/silkworm', name);
}

/** Write `data` to `file` atomically and durably (temp + fsync + rename + directory fsync). */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  try {
    const d = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(d);
    } finally {
      fs.closeSync(d);
    }
  } catch {
    /* a directory that cannot be opened for fsync: the rename still happened */
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string';

/** Check a parsed cell.json; throws one sentence naming the file when it is not one. */
export function validateSaved(v: unknown, file: string): SavedCell {
  const bad = (what: string): never => {
    throw new Error(`${file} is not a silkworm cell state file (${what})`);
  };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad('not an object');
  const o = v as Record<string, unknown>;
  if (o.version !== 1) bad(`version ${JSON.stringify(o.version)}`);
  if (!isStr(o.cell) || !isStr(o.underlayIp)) bad('cell or underlayIp missing');
  if (!Array.isArray(o.containers)) return bad('containers is not a list');
  const containers = o.containers.map((c, i): SavedContainer => {
    if (typeof c !== 'object' || c === null) return bad(`container ${i} is not an object`);
    const r = c as Record<string, unknown>;
    if (!isStr(r.handle) || !isStr(r.app) || !isStr(r.ip) || !isStr(r.netns)) return bad(`container ${i} lacks handle, app, ip or netns`);
    return { ...r, handle: r.handle, app: r.app, ip: r.ip, netns: r.netns };
  });
  const lease = o.lease as Lease | null | undefined;
  const leaseOk = lease === null || lease === undefined || (typeof lease === 'object' && isStr(lease.underlay_ip) && isStr(lease.overlay_subnet));
  if (!leaseOk) bad('lease is malformed');
  const counters: Record<string, number> = {};
  if (typeof o.counters === 'object' && o.counters !== null) {
    for (const [k, n] of Object.entries(o.counters)) if (typeof n === 'number' && Number.isFinite(n) && n >= 0) counters[k] = n;
  }
  return {
    version: 1,
    cell: o.cell as string,
    underlayIp: o.underlayIp as string,
    dataplane: o.dataplane === 'kernel' ? 'kernel' : 'user',
    lease: lease ?? null,
    pid: typeof o.pid === 'number' ? o.pid : 0,
    savedAt: isStr(o.savedAt) ? o.savedAt : '',
    containers,
    counters,
  };
}

/**
 * A cell's state directory. `lock()` must come first (it creates the
 * directory); the other calls assume the lock is held.
 */
export class StateDir {
  readonly dir: string;
  /** `lock` made the directory (a start that fails may take it away again). */
  created = false;
  private lockFd = -1;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  get file(): string {
    return path.join(this.dir, STATE_FILE);
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }

  /**
   * Create the directory (mode 0700) if needed and take its lock with
   * `lockFile` (flock in the native addon). Throws one sentence when another
   * process holds it. Returns whether the directory was created by this call.
   */
  lock(lockFile: (p: string) => number): boolean {
    const created = !fs.existsSync(this.dir);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.created = created;
    try {
      this.lockFd = lockFile(this.path(LOCK_FILE));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EAGAIN' || e.code === 'EWOULDBLOCK') {
        const holder = this.holderPid();
        throw new Error(`state directory ${this.dir} is in use by another cell${holder ? ` (pid ${holder})` : ''}`);
      }
      throw new Error(`cannot lock state directory ${this.dir}: ${e.message}`);
    }
    // The lock file says who holds it (for the message above); the flock is what counts.
    fs.writeFileSync(this.path(LOCK_FILE), `${process.pid}\n`);
    return created;
  }

  /** Remove the directory if `lock` made it and no state was written since (a first start that failed). */
  removeIfCreated(): void {
    if (!this.created || fs.existsSync(this.file)) return;
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Release the lock (the process exiting does the same). */
  unlock(close: (fd: number) => void): void {
    if (this.lockFd < 0) return;
    close(this.lockFd);
    this.lockFd = -1;
  }

  private holderPid(): number | undefined {
    try {
      const n = Number(fs.readFileSync(this.path(LOCK_FILE), 'utf8').trim());
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** cell.json, or null when there is none. Throws one sentence when it is unreadable or damaged. */
  load(): SavedCell | null {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new Error(`cannot read ${this.file}: ${(err as Error).message}`);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new Error(`${this.file} is not valid JSON`);
    }
    return validateSaved(v, this.file);
  }

  save(s: SavedCell): void {
    writeFileAtomic(this.file, JSON.stringify(s, null, 1) + '\n');
  }

  /** A binary side file (null when absent). */
  readBinary(name: string): Buffer | null {
    try {
      return fs.readFileSync(this.path(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  writeBinary(name: string, data: Uint8Array): void {
    writeFileAtomic(this.path(name), data);
  }

  rename(from: string, to: string): void {
    fs.renameSync(from, to);
  }

  remove(name: string): void {
    fs.rmSync(this.path(name), { force: true });
  }
}
