// /run/silkworm/P/state.json: what a running lab is made of, so `down` removes
// exactly that and `status` can report on it. It is written step by step
// during `up` (each namespace and PID recorded as soon as it exists), so even
// an interrupted `up` leaves a file `down` can clean up after.
import fs from 'node:fs';
import path from 'node:path';
import { fail } from './errors.js';
import { labStateFile } from './topology.js';
import { labDir } from './paths.js';

export interface ProcRecord {
  socket: string;
  pid: number;
  log: string;
}

/** The controller: its unix socket (the local CLI) and, in labs since TLS, its https:// URL on the underlay. */
export interface ControllerRecord extends ProcRecord {
  url?: string;
  netns?: string;
  tlsDir?: string;
}

export interface CellRecord extends ProcRecord {
  name: string;
  underlayIp: string;
  netns: string;
  /** user or kernel; absent in state files written before the option existed (= user). */
  dataplane?: 'user' | 'kernel';
  /** The command line that started it (what `lab restart` runs again). */
  command?: string[];
}

export interface ContainerRecord {
  app: string;
  netns: string;
  ip: string;
  cell: string;
  mac?: string;
  handle?: string;
  /** CNI_CONTAINERID when attached through silkworm-cni. */
  containerId?: string;
}

export interface AppRecord {
  pid: number;
  netns: string;
  app: string;
  port: number;
  log: string;
}

export interface LabState {
  prefix: string;
  namespaces: string[];
  cells: CellRecord[];
  controller: ControllerRecord | null;
  /** The second controller replica (lab up --store postgres). */
  controller2?: ControllerRecord | null;
  /** The lab's PostgreSQL server (lab up --store postgres): its directory and postmaster PID. */
  postgres?: { dir: string; pid: number } | null;
  containers: ContainerRecord[];
  apps: AppRecord[];
  /** user | kernel | mixed (absent = user, for older state files). */
  dataplane?: 'user' | 'kernel' | 'mixed';
  createdAt: string;
  /** Set once every step of `up` has finished. */
  complete: boolean;
}

export function emptyState(prefix: string, now: Date = new Date()): LabState {
  return { prefix, namespaces: [], cells: [], controller: null, containers: [], apps: [], createdAt: now.toISOString(), complete: false };
}

/** Write atomically (temp file + rename) so a reader never sees half a file. */
export function writeState(state: LabState, file: string = labStateFile(state.prefix)): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o644 });
  fs.renameSync(tmp, file);
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isPid = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

/**
 * Check a parsed state file. Every namespace must start with "P-": `down`
 * deletes what is listed here, so a tampered or foreign file must not be able
 * to make it delete anyone else's namespace.
 */
export function validateState(v: unknown, prefix: string): LabState {
  const bad = (what: string): never => fail(`lab state for "${prefix}" is damaged (${what}); run "silkworm lab down --prefix ${prefix}"`);
  if (!isObj(v)) return bad('not an object');
  if (v.prefix !== prefix) bad(`prefix is ${JSON.stringify(v.prefix)}`);
  const arr = (k: string): unknown[] => (Array.isArray(v[k]) ? (v[k] as unknown[]) : bad(`${k} is not a list`));
  const namespaces = arr('namespaces');
  for (const ns of namespaces) if (!isStr(ns) || !ns.startsWith(`${prefix}-`)) bad(`namespace ${JSON.stringify(ns)} is not ${prefix}-*`);
  const proc = (o: unknown, what: string): ProcRecord => {
    if (!isObj(o) || !isStr(o.socket) || !isPid(o.pid) || !isStr(o.log)) return bad(`${what} is malformed`);
    return { socket: o.socket, pid: o.pid, log: o.log };
  };
  const cells = arr('cells').map((c, i): CellRecord => {
    const p = proc(c, `cell ${i}`);
    const o = c as Record<string, unknown>;
    if (!isStr(o.name) || !isStr(o.underlayIp) || !isStr(o.netns)) return bad(`cell ${i} is malformed`);
    const rec: CellRecord = { name: o.name, underlayIp: o.underlayIp, netns: o.netns, ...p };
    if (o.dataplane === 'user' || o.dataplane === 'kernel') rec.dataplane = o.dataplane;
    if (Array.isArray(o.command) && o.command.length > 0 && o.command.every(isStr)) rec.command = o.command as string[];
    return rec;
  });
  const controllerRec = (raw: unknown, what: string): ControllerRecord => {
    const rec: ControllerRecord = proc(raw, what);
    const o = raw as Record<string, unknown>;
    if (isStr(o.url)) rec.url = o.url;
    if (isStr(o.netns)) {
      if (!o.netns.startsWith(`${prefix}-`)) bad(`${what} namespace ${JSON.stringify(o.netns)} is not ${prefix}-*`);
      rec.netns = o.netns;
    }
    if (isStr(o.tlsDir)) rec.tlsDir = o.tlsDir;
    return rec;
  };
  const controller = v.controller === null || v.controller === undefined ? null : controllerRec(v.controller, 'controller');
  const controller2 = v.controller2 === null || v.controller2 === undefined ? null : controllerRec(v.controller2, 'controller2');
  let postgres: { dir: string; pid: number } | null = null;
  if (v.postgres !== null && v.postgres !== undefined) {
    const pg = v.postgres;
    if (!isObj(pg) || !isStr(pg.dir) || !isPid(pg.pid) || !pg.dir.startsWith(labDir(prefix) + path.sep)) bad('postgres is malformed');
    postgres = { dir: (pg as { dir: string }).dir, pid: (pg as { pid: number }).pid };
  }
  const containers = arr('containers').map((c, i): ContainerRecord => {
    if (!isObj(c) || !isStr(c.app) || !isStr(c.netns) || !isStr(c.ip) || !isStr(c.cell)) return bad(`container ${i} is malformed`);
    const r: ContainerRecord = { app: c.app, netns: c.netns, ip: c.ip, cell: c.cell };
    if (isStr(c.mac)) r.mac = c.mac;
    if (isStr(c.handle)) r.handle = c.handle;
    if (isStr(c.containerId)) r.containerId = c.containerId;
    return r;
  });
  const apps = arr('apps').map((a, i): AppRecord => {
    if (!isObj(a) || !isPid(a.pid) || !isStr(a.netns)) return bad(`app ${i} is malformed`);
    return {
      pid: a.pid,
      netns: a.netns,
      app: isStr(a.app) ? a.app : '',
      port: typeof a.port === 'number' ? a.port : 0,
      log: isStr(a.log) ? a.log : '',
    };
  });
  const dataplane = v.dataplane === 'user' || v.dataplane === 'kernel' || v.dataplane === 'mixed' ? v.dataplane : undefined;
  return {
    prefix,
    ...(dataplane ? { dataplane } : {}),
    namespaces: namespaces as string[],
    cells,
    controller,
    ...(controller2 ? { controller2 } : {}),
    ...(postgres ? { postgres } : {}),
    containers,
    apps,
    createdAt: isStr(v.createdAt) ? v.createdAt : '',
    complete: v.complete === true,
  };
}

/** The lab's state, or null if there is no state file. Throws one sentence if it is unreadable. */
export function readState(prefix: string, file: string = labStateFile(prefix)): LabState | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return fail(`cannot read ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return fail(`${file} is not valid JSON; run "silkworm lab down --prefix ${prefix}" to clean up`);
  }
  return validateState(parsed, prefix);
}

/** Every PID the state records, apps first (they depend on cells, cells on the controller). */
export function recordedPids(s: LabState): number[] {
  return [
    ...s.apps.map((a) => a.pid),
    ...s.cells.map((c) => c.pid),
    ...(s.controller ? [s.controller.pid] : []),
    ...(s.controller2 ? [s.controller2.pid] : []),
  ];
}
