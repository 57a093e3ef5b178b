// `silkworm lab up | down | status`, as functions the CLI and the tests call.
//
// up:     plan → namespaces + underlay → controller → cells → containers → app
//         servers → state.json, recording every namespace and PID the moment it
//         exists; any failure tears down what was made and says why in one
//         sentence (the logs are kept for the post-mortem).
// down:   stop recorded PIDs (only while they are still ours), delete the
//         namespaces, remove /run/silkworm/P. Idempotent; works without state.
// status: what the state says, checked against what is alive.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fail } from './errors.js';
import { labDir, DEFAULT_LAB } from './paths.js';
import { buildTopology, deleteNamespaces, listNetns, netnsPids } from './netns.js';
import { cmdline, isAlive, isOurs, listeningIn, probeHttp, spawnDetached, stopProcesses, waitReady } from './procs.js';
import { cellCommand, labConflist, realRunner, type CellSpec, type LabRunner } from './runner.js';
import { emptyState, readState, recordedPids, writeState, type LabState } from './state.js';
import { labNamespaces, planLab, validatePrefix, type LabPlan, type PlanOptions } from './topology.js';
import { startPgCluster } from '../control/pg-cluster.js';

/** Where the controller keeps its state: a SQLite file, or a PostgreSQL server with two controller replicas. */
export type LabStore = 'sqlite' | 'postgres';
export const LAB_STORES: readonly LabStore[] = ['sqlite', 'postgres'];
import { createCerts, CertsError } from '../control/certs.js';
import { execFile } from 'node:child_process';

export interface UpOptions extends PlanOptions {
  /** Bound for each readiness wait (controller, each cell, each app). */
  timeoutMs?: number;
  runner?: LabRunner;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
  /** Default sqlite. */
  store?: LabStore;
}

export interface UpResult {
  plan: LabPlan;
  state: LabState;
  elapsedMs: number;
}

function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    fail(`${what} needs root to manage network namespaces: run it with sudo`);
  }
}

function readStateOrNull(prefix: string): LabState | null {
  try {
    return readState(prefix);
  } catch {
    return null; // damaged: treated as absent; down still removes the known names
  }
}

export async function labUp(opts: UpOptions = {}): Promise<UpResult> {
  const started = Date.now();
  const plan = planLab(opts);
  const runner = opts.runner ?? realRunner();
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const say = opts.progress ?? (() => {});
  requireRoot('lab up');

  const old = readStateOrNull(plan.prefix);
  if (old) {
    const alive = recordedPids(old).filter((p) => isOurs(p));
    if (alive.length > 0) {
      fail(`a lab with prefix "${plan.prefix}" is already up (PIDs ${alive.join(', ')}); take it down with "silkworm lab down --prefix ${plan.prefix}"`);
    }
    say(`cleaning up the remains of an earlier lab "${plan.prefix}"`);
    await labDown(plan.prefix);
  } else if (fs.existsSync(plan.state)) {
    // state.json present but unreadable: nothing trustworthy is recorded.
    fail(`${plan.state} is damaged; run "silkworm lab down --prefix ${plan.prefix}" first`);
  }
  // Leftover namespaces without a state file: not ours to delete silently.
  const present = new Set(listNetns());
  const leftover = plan.namespaces.find((n) => present.has(n));
  if (leftover) fail(`namespace ${leftover} already exists; remove what is left of that lab with "silkworm lab down --prefix ${plan.prefix}"`);
  // A fresh directory: old logs and an old controller store must not leak in.
  fs.rmSync(plan.dir, { recursive: true, force: true });
  fs.mkdirSync(plan.dir, { recursive: true, mode: 0o755 });

  const state = emptyState(plan.prefix);
  state.dataplane = plan.dataplane;
  const save = () => writeState(state, plan.state);
  save();
  try {
    say(`namespaces ${plan.namespaces.join(', ')}; underlay ${plan.underlay.cidr} on ${plan.underlay.netns}/${plan.underlay.bridge}`);
    buildTopology(plan, (ns) => {
      state.namespaces.push(ns);
      save();
    });
    // Kernel cells keep every offload at its default: the userspace cell
    // finishes the checksums they leave partial (wire/checksum.ts,
    // completePartialChecksum).

    const c = plan.controller;
    let store = c.store;
    if (opts.store === 'postgres') {
      // Our own server under the lab directory, on a unix socket only; lab down stops it.
      const dir = path.join(plan.dir, 'pg');
      const cluster = await startPgCluster(dir);
      state.postgres = { dir, pid: cluster.pid()! };
      save();
      store = cluster.url;
      say(`PostgreSQL up (pid ${state.postgres.pid}) on ${dir}`);
    }
    // The lab's TLS material: a CA, the controller's certificate for its underlay address, one client certificate per cell.
    try {
      createCerts({ dir: c.tlsDir, hosts: [c.ip], clients: plan.cells.map((x) => x.name) });
    } catch (e) {
      if (e instanceof CertsError) fail(`making the lab's certificates failed: ${e.message}`);
      throw e;
    }
    const tlsFile = (f: string) => path.join(c.tlsDir, f);
    const controllerPid = runner.spawnController({
      socket: c.socket,
      store,
      log: c.log,
      netns: c.netns,
      tcp: `${c.ip}:${c.port}`,
      tls: { cert: tlsFile('controller.pem'), key: tlsFile('controller-key.pem'), ca: tlsFile('ca.pem'), tokenKey: tlsFile('token-key.pub.pem') },
    });
    state.controller = { socket: c.socket, pid: controllerPid, log: c.log, url: c.url, netns: c.netns, tlsDir: c.tlsDir };
    save();
    await waitReady({ what: 'the controller', pid: controllerPid, log: c.log, timeoutMs, ready: async () => (await probeHttp(c.socket)) !== null });
    say(`controller up (pid ${controllerPid}) on ${c.socket} and ${c.url} (mutual TLS, material in ${c.tlsDir})`);
    const controllers = [c.url];
    if (opts.store === 'postgres') {
      // The second replica: the same namespace and address, the next port, the same certificate.
      const c2 = {
        socket: path.join(plan.dir, 'controller2.sock'),
        log: path.join(plan.dir, 'controller2.log'),
        url: `https://${c.ip}:${c.port + 1}`,
      };
      const pid2 = runner.spawnController({
        socket: c2.socket,
        store,
        log: c2.log,
        netns: c.netns,
        tcp: `${c.ip}:${c.port + 1}`,
        tls: { cert: tlsFile('controller.pem'), key: tlsFile('controller-key.pem'), ca: tlsFile('ca.pem'), tokenKey: tlsFile('token-key.pub.pem') },
      });
      state.controller2 = { socket: c2.socket, pid: pid2, log: c2.log, url: c2.url, netns: c.netns, tlsDir: c.tlsDir };
      save();
      await waitReady({ what: 'controller2', pid: pid2, log: c2.log, timeoutMs, ready: async () => (await probeHttp(c2.socket)) !== null });
      say(`controller2 up (pid ${pid2}) on ${c2.socket} and ${c2.url}`);
      controllers.push(c2.url);
    }

    // One cell at a time: a cell answers on its admin socket only after it
    // holds its lease, so cell1 always gets the first /24 (10.255.1.0/24) and
    // appA's address is the same in every lab, as the README and hints show.
    for (const cell of plan.cells) {
      const spec: CellSpec = {
        name: cell.name,
        netns: cell.netns,
        // Every replica: the cell uses the first that answers and moves on when it goes.
        controllerSocket: controllers.join(','),
        tls: { cert: tlsFile(`${cell.name}.pem`), key: tlsFile(`${cell.name}-key.pem`), ca: tlsFile('ca.pem') },
        underlayIp: cell.underlayIp,
        underlayDev: cell.dev,
        adminSocket: cell.socket,
        mtu: plan.mtu,
        log: cell.log,
        dataplane: cell.dataplane,
        capture: opts.capture,
        workers: opts.workers,
        stateDir: cell.stateDir,
      };
      const pid = runner.spawnCell(spec);
      state.cells.push({
        name: cell.name,
        underlayIp: cell.underlayIp,
        netns: cell.netns,
        socket: cell.socket,
        pid,
        log: cell.log,
        dataplane: cell.dataplane,
        command: cellCommand(spec),
      });
      save();
      await waitReady({ what: cell.name, pid, log: cell.log, timeoutMs, ready: async () => (await probeHttp(cell.socket)) !== null });
    }
    say(`cells up: ${state.cells.map((x) => `${x.name} ${x.underlayIp} ${x.dataplane ?? 'user'} (pid ${x.pid})`).join(', ')}`);

    // Containers are attached through silkworm-cni, as a runtime would: one
    // conflist per cell under the lab's directory.
    const cniDir = path.join(plan.dir, 'cni');
    fs.mkdirSync(cniDir, { recursive: true });
    for (const cell of plan.cells) {
      fs.writeFileSync(path.join(cniDir, `${cell.name}.conflist`), JSON.stringify(labConflist(`${plan.prefix}-${cell.name}`, cell.socket), null, 2) + '\n');
    }
    // allSettled: if one add fails, the other must finish before tear-down
    // starts, or it could attach a container to a namespace being deleted.
    const settled = await Promise.allSettled(
      plan.apps.map(async (a) => {
        const cell = plan.cells.find((x) => x.name === a.cell)!;
        const conflist = path.join(cniDir, `${a.cell}.conflist`);
        const info = await runner.addContainer({ app: a.app, cell: a.cell, cellSocket: cell.socket, netns: a.netns, conflist, containerId: a.netns });
        return {
          app: a.app,
          netns: a.netns,
          ip: info.ip,
          cell: a.cell,
          ...(info.mac ? { mac: info.mac } : {}),
          ...(info.handle ? { handle: info.handle } : {}),
          ...(info.containerId ? { containerId: info.containerId } : {}),
        };
      }),
    );
    const added = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    state.containers.push(...added);
    save();
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    say(`containers: ${added.map((x) => `${x.app} ${x.ip} on ${x.cell}`).join(', ')}`);

    for (const a of plan.apps) {
      const pid = runner.spawnApp({ app: a.app, netns: a.netns, port: a.port, log: a.log });
      state.apps.push({ pid, netns: a.netns, app: a.app, port: a.port, log: a.log });
      save();
    }
    await Promise.all(
      state.apps.map((a) =>
        waitReady({ what: `the ${a.app} app server`, pid: a.pid, log: a.log, timeoutMs, ready: () => listeningIn(a.netns, a.port) }),
      ),
    );
    state.complete = true;
    save();
    return { plan, state, elapsedMs: Date.now() - started };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    try {
      await teardown(plan.prefix, state, { keepLogs: true, onlyRecorded: true });
    } catch (e) {
      fail(`${why.replace(/\.$/, '')}; tearing the half-built lab down also failed: ${(e as Error).message}`);
    }
    fail(`${why.replace(/\.$/, '')} (the half-built lab was taken down; logs kept in ${plan.dir})`);
  }
}

export interface DownResult {
  prefix: string;
  stopped: number[];
  namespacesDeleted: string[];
  /** Processes that are not ours but still run in a lab namespace (e.g. a user's tcpdump). */
  foreign: { pid: number; netns: string; command: string }[];
}

/** Lab processes found without the state file: in our namespaces, or naming our lab directory. */
function discoverLabPids(prefix: string, namespaces: string[]): { ours: number[]; foreign: DownResult['foreign'] } {
  const ours: number[] = [];
  const foreign: DownResult['foreign'] = [];
  const present = new Set(listNetns());
  for (const ns of namespaces) {
    if (!present.has(ns)) continue;
    for (const pid of netnsPids(ns)) {
      if (isOurs(pid)) ours.push(pid);
      else if (isAlive(pid)) foreign.push({ pid, netns: ns, command: (cmdline(pid) ?? ['?']).join(' ') });
    }
  }
  // The controller runs in the root namespace; it is ours if its command line
  // names this lab's directory (its --listen/--store paths) and silkworm.
  const dirMark = labDir(prefix) + path.sep;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || pid === process.ppid) continue;
    const argv = cmdline(pid);
    if (argv && argv.some((a) => a.startsWith(dirMark)) && isOurs(pid)) ours.push(pid);
  }
  return { ours, foreign };
}

interface TeardownOptions {
  /** Keep *.log in the lab directory (a failed `up` keeps them for the post-mortem). */
  keepLogs: boolean;
  /**
   * Touch only what the state records (a failed `up` removes what *it* made,
   * nothing it found); otherwise also the known names and discovered PIDs.
   */
  onlyRecorded: boolean;
  graceMs?: number;
}

async function teardown(prefix: string, state: LabState | null, o: TeardownOptions): Promise<DownResult> {
  const known = o.onlyRecorded ? [] : labNamespaces(prefix);
  const recordedNs = (state?.namespaces ?? []).filter((n) => n.startsWith(`${prefix}-`));
  // Reverse creation order: containers, then cells, then the underlay.
  const namespaces = [...new Set([...recordedNs, ...known])].reverse();
  const found = o.onlyRecorded ? { ours: [], foreign: [] } : discoverLabPids(prefix, namespaces);
  const pids = [...new Set([...(state ? recordedPids(state) : []), ...found.ours])];
  const stubborn = await stopProcesses(pids, o.graceMs ?? 3000);
  // A cell's containers keep their TAPs when it stops (so a restart can
  // re-attach them). Those in the lab's namespaces go with the namespaces;
  // those in anyone else's are deleted here, as `container del` would.
  deleteContainerTaps(prefix, namespaces);
  await stopLabPostgres(prefix);
  const before = new Set(listNetns());
  // Namespaces go even if a process would not: a process keeps its network
  // alive but no longer holds the name, so a new lab can start.
  const errors = deleteNamespaces(namespaces);
  const dir = labDir(prefix);
  if (o.keepLogs && fs.existsSync(dir)) {
    for (const f of fs.readdirSync(dir)) if (!f.endsWith('.log')) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  } else {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (stubborn.length > 0) fail(`PIDs ${stubborn.join(', ')} of lab "${prefix}" would not stop even after SIGKILL`);
  if (errors.length > 0) fail(`could not delete every namespace of lab "${prefix}": ${errors[0]}`);
  return {
    prefix,
    stopped: pids.filter((p) => !isAlive(p)),
    namespacesDeleted: namespaces.filter((n) => before.has(n)),
    foreign: found.foreign,
  };
}

/**
 * Delete the container interface (eth0, or the CNI_IFNAME it was given) in
 * every namespace a cell of this lab recorded a container in (its state
 * directory's cell.json), except the namespaces about to be deleted — and
 * only when it is still a TAP, which is what the cell made.
 */
function deleteContainerTaps(prefix: string, deleting: string[]): void {
  const dir = labDir(prefix);
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  const present = new Set(listNetns());
  for (const e of entries) {
    let saved: { containers?: { netns?: unknown; ifname?: unknown }[] };
    try {
      saved = JSON.parse(fs.readFileSync(path.join(dir, e, 'cell.json'), 'utf8'));
    } catch {
      continue; // not a cell's state directory
    }
    for (const c of saved.containers ?? []) {
      const ns = c.netns;
      const dev = typeof c.ifname === 'string' && /^[A-Za-z0-9_.-]{1,15}$/.test(c.ifname) ? c.ifname : 'eth0';
      if (typeof ns !== 'string' || deleting.includes(ns)) continue;
      // A namespace by name (ip netns) or by path (CNI_NETNS), as the cell took it.
      let ipIn: (args: string[]) => [string, string[]];
      if (/^[A-Za-z0-9_.-]+$/.test(ns)) {
        if (!present.has(ns)) continue;
        ipIn = (args) => ['ip', ['-n', ns, ...args]];
      } else if (ns.startsWith('/') && fs.existsSync(ns)) {
        ipIn = (args) => ['nsenter', [`--net=${ns}`, 'ip', ...args]];
      } else {
        continue;
      }
      try {
        const [cmd, args] = ipIn(['-d', '-j', 'link', 'show', 'dev', dev]);
        const info = JSON.parse(execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }));
        if (info?.[0]?.linkinfo?.info_kind !== 'tun') continue;
        const [dcmd, dargs] = ipIn(['link', 'del', 'dev', dev]);
        execFileSync(dcmd, dargs, { stdio: 'ignore', timeout: 5000 });
      } catch {
        /* gone already */
      }
    }
  }
}

/**
 * Stop the lab's PostgreSQL server (lab up --store postgres) if it runs: the
 * postmaster named in its data directory's postmaster.pid, and only if its
 * command line names that directory. SIGINT is PostgreSQL's fast shutdown.
 */
async function stopLabPostgres(prefix: string): Promise<void> {
  const data = path.join(labDir(prefix), 'pg', 'data');
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return;
  }
  if (!(pid > 0) || !isAlive(pid) || !(cmdline(pid) ?? []).some((a) => a === data)) return;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 10_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

/** Take the lab down. Safe to run twice, and with no state file at all. */
export async function labDown(prefix: string = DEFAULT_LAB, opts: { graceMs?: number } = {}): Promise<DownResult> {
  validatePrefix(prefix);
  requireRoot('lab down');
  return teardown(prefix, readStateOrNull(prefix), { keepLogs: false, onlyRecorded: false, graceMs: opts.graceMs });
}

export interface RestartOptions {
  /** SIGKILL instead of SIGTERM (what a crash looks like). */
  kill?: boolean;
  /** Bound for the new process to answer on its admin socket. */
  timeoutMs?: number;
}

export interface RestartResult {
  cell: string;
  oldPid: number;
  pid: number;
  signal: 'SIGTERM' | 'SIGKILL' | null;
  /** From the old process's signal to the new one answering on its admin socket. */
  elapsedMs: number;
}

/**
 * `lab restart CELL`: stop one cell (SIGTERM, or SIGKILL with `kill`), start
 * it again with the command line it was started with, wait until it answers,
 * and record the new PID in state.json.
 */
export async function labRestart(prefix: string, name: string, o: RestartOptions = {}): Promise<RestartResult> {
  validatePrefix(prefix);
  requireRoot('lab restart');
  const state = readState(prefix) ?? fail(`no lab "${prefix}" is up; start one with "silkworm lab up${prefix === DEFAULT_LAB ? '' : ` --prefix ${prefix}`}"`);
  const cell = state.cells.find((c) => c.name === name) ?? fail(`lab "${prefix}" has no cell "${name}" (it has ${state.cells.map((c) => c.name).join(', ') || 'none'})`);
  const command = cell.command;
  if (!command || command.length === 0) fail(`the command line of ${name} was not recorded (a lab from an older silkworm); run "silkworm lab down --prefix ${prefix}" and up again`);
  // The cell running now: whoever holds its state directory's lock (it may
  // have been restarted by hand since state.json was written), else the recorded PID.
  const sd = command.indexOf('--state-dir');
  const stateDir = sd >= 0 && command[sd + 1] ? command[sd + 1]! : path.join(labDir(prefix), name);
  const holder = lockHolder(stateDir);
  const oldPid = holder !== undefined && isOurs(holder) ? holder : cell.pid;
  const alive = isOurs(oldPid);
  const started = Date.now();
  let sig: RestartResult['signal'] = null;
  let pid = 0;
  if (alive) {
    // The new process first, with --takeover: it loads everything, says so in
    // the state directory, and waits for the lock; only then is the old one
    // stopped, so the outage is the hand-over, not a Node start-up.
    const marker = path.join(stateDir, 'takeover');
    pid = spawnDetached(command[0]!, [...command.slice(1), '--takeover'], cell.log);
    await waitReady({ what: `${name} (taking over)`, pid, log: cell.log, timeoutMs: o.timeoutMs ?? 15_000, ready: () => readPid(marker) === pid });
    sig = o.kill ? 'SIGKILL' : 'SIGTERM';
    process.kill(oldPid, sig);
    const deadline = Date.now() + (o.kill ? 2000 : 10_000);
    while (isAlive(oldPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (isAlive(oldPid)) {
      if (isOurs(oldPid)) process.kill(oldPid, 'SIGKILL');
      const killDeadline = Date.now() + 2000;
      while (isAlive(oldPid) && Date.now() < killDeadline) await new Promise((r) => setTimeout(r, 20));
      if (isAlive(oldPid)) fail(`${name} (pid ${oldPid}) would not stop even after SIGKILL`);
    }
  }
  if (pid === 0) pid = spawnDetached(command[0]!, command.slice(1), cell.log);
  cell.pid = pid;
  cell.command = command;
  writeState(state);
  // Ready: the new process holds the lock and answers (an answer alone could come from a cell nobody stopped).
  await waitReady({
    what: name,
    pid,
    log: cell.log,
    timeoutMs: o.timeoutMs ?? 15_000,
    ready: async () => lockHolder(stateDir) === pid && isAlive(pid) && (await probeHttp(cell.socket)) !== null,
  });
  return { cell: name, oldPid, pid, signal: sig, elapsedMs: Date.now() - started };
}

/** The PID a cell wrote into its state directory's lock file (src/agent/state-dir.ts), if any. */
function lockHolder(stateDir: string): number | undefined {
  return readPid(path.join(stateDir, 'lock'));
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export interface ProcStatus {
  pid: number;
  alive: boolean;
}

export interface StatusReport {
  prefix: string;
  dir: string;
  /** True when state.json says up finished and every recorded process is alive. */
  up: boolean;
  complete: boolean;
  createdAt: string | null;
  /** user | kernel | mixed (user for labs started before the option existed); null with no state. */
  dataplane: 'user' | 'kernel' | 'mixed' | null;
  namespaces: { name: string; exists: boolean }[];
  controller:
    | ({
        socket: string;
        log: string;
        answers: boolean;
        /** The mutual-TLS listener on the underlay, and whether it answers (checked from its namespace's side, with cell1's certificate). */
        url?: string;
        netns?: string;
        tlsDir?: string;
        tlsAnswers?: boolean;
      } & ProcStatus)
    | null;
  cells: ({ name: string; netns: string; underlayIp: string; socket: string; log: string; dataplane: 'user' | 'kernel'; answers: boolean } & ProcStatus)[];
  containers: { app: string; netns: string; ip: string; cell: string; mac?: string; containerId?: string }[];
  apps: ({ app: string; netns: string; port: number; log: string; listening: boolean } & ProcStatus)[];
}

export async function labStatus(prefix: string = DEFAULT_LAB): Promise<StatusReport> {
  validatePrefix(prefix);
  const state = readState(prefix);
  const present = new Set(listNetns());
  const nsNames = [...new Set([...labNamespaces(prefix), ...(state?.namespaces ?? [])])];
  const answers = async (sock: string) => (await probeHttp(sock, '/', 500)) !== null;
  const controller = state?.controller
    ? {
        ...state.controller,
        alive: isOurs(state.controller.pid),
        answers: await answers(state.controller.socket),
        ...(state.controller.url
          ? { tlsAnswers: await tlsAnswers(state.controller.url, state.controller.netns, state.controller.tlsDir, state.cells[0]?.name) }
          : {}),
      }
    : null;
  const cells = await Promise.all(
    (state?.cells ?? []).map(async (c) => {
      // A cell restarted by hand (the same command line) holds its state directory's lock under a new PID.
      const sd = c.command?.indexOf('--state-dir') ?? -1;
      const holder = sd >= 0 && c.command![sd + 1] ? lockHolder(c.command![sd + 1]!) : undefined;
      const pid = !isOurs(c.pid) && holder !== undefined && isOurs(holder) ? holder : c.pid;
      return { ...c, pid, dataplane: c.dataplane ?? ('user' as const), alive: isOurs(pid), answers: await answers(c.socket) };
    }),
  );
  const apps = (state?.apps ?? []).map((a) => ({
    ...a,
    alive: isOurs(a.pid),
    listening: present.has(a.netns) && listeningIn(a.netns, a.port),
  }));
  const up =
    !!state &&
    state.complete &&
    !!controller?.alive &&
    cells.every((c) => c.alive) &&
    apps.every((a) => a.alive) &&
    nsNames.every((n) => present.has(n));
  return {
    prefix,
    dir: labDir(prefix),
    up,
    complete: state?.complete ?? false,
    createdAt: state?.createdAt ?? null,
    dataplane: state ? (state.dataplane ?? 'user') : null,
    namespaces: nsNames.map((name) => ({ name, exists: present.has(name) })),
    controller,
    cells,
    containers: state?.containers ?? [],
    apps,
  };
}

/**
 * Does the controller's TLS listener answer GET /health to a client with
 * cell1's certificate? The underlay address is reachable only inside the
 * lab's namespaces, so curl asks from the controller's namespace (bounded).
 */
function tlsAnswers(url: string, netns: string | undefined, tlsDir: string | undefined, cell: string | undefined): Promise<boolean> {
  if (!tlsDir || !cell || !netns) return Promise.resolve(false);
  const f = (n: string) => path.join(tlsDir, n);
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', netns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '2', '--cacert', f('ca.pem'),
        '--cert', f(`${cell}.pem`), '--key', f(`${cell}-key.pem`), `${url}/healthz`],
      { timeout: 5000, encoding: 'utf8' },
      (err, stdout) => resolve(!err && stdout.trim() === '200'),
    );
  });
}

/** The "what to try next" text printed after `lab up`, with the lab's real values. */
export function nextSteps(state: LabState): string {
  const p = state.prefix;
  const lab = p === DEFAULT_LAB ? '' : ` --lab ${p}`;
  const prefixOpt = p === DEFAULT_LAB ? '' : ` --prefix ${p}`;
  const appA = state.containers.find((c) => c.app === 'appA');
  const appB = state.containers.find((c) => c.app === 'appB');
  const port = state.apps.find((a) => a.app === 'appA')?.port ?? 8080;
  const cellOf = (app?: { cell: string }) => state.cells.find((c) => c.name === app?.cell);
  const srcCell = cellOf(appB);
  const dstCell = cellOf(appA);
  const url = `http://${appA?.ip ?? '?'}:${port}/`;
  const curl = `sudo ip netns exec ${appB?.netns ?? `${p}-appB-0`} curl -s --max-time 3 ${url}`;
  const lines = [
    `lab "${p}" is up:`,
    `  controller  ${state.controller?.socket ?? '-'}${state.controller?.url ? `  ${state.controller.url} (mutual TLS, ${state.controller.netns})` : ''}  pid ${state.controller?.pid ?? '-'}`,
    ...(state.controller2 ? [`  controller2 ${state.controller2.socket}${state.controller2.url ? `  ${state.controller2.url}` : ''}  pid ${state.controller2.pid}`] : []),
    ...(state.postgres ? [`  postgres    ${state.postgres.dir}  pid ${state.postgres.pid}`] : []),
    ...state.cells.map((c) => `  ${c.name.padEnd(10)}  ${c.netns}  underlay ${c.underlayIp}  ${c.dataplane ?? 'user'} data plane  ${c.socket}  pid ${c.pid}`),
    ...state.containers.map((c) => {
      const a = state.apps.find((x) => x.app === c.app);
      return `  ${c.app.padEnd(10)}  ${c.netns}  ${c.ip} on ${c.cell}  http :${a?.port ?? port}  pid ${a?.pid ?? '-'}`;
    }),
    '',
    'Try it:',
    `  # without a policy appB -> appA is refused: curl exits at once with code 7 (${dstCell?.name ?? 'cell1'} rejects with ICMP port unreachable), not a hang`,
    `  ${curl}`,
    '  # allow it; the same curl then prints appA\'s name and IP:',
    `  sudo silkworm policy add appB appA --protocol tcp --port ${port}${lab}`,
    `  ${curl}`,
    `  sudo silkworm tags${lab}`,
    '',
    'Watch each hop (each in its own terminal, then curl again):',
    `  sudo ip netns exec ${appB?.netns ?? '?'} tcpdump -nei eth0                         # 1 leaves appB's container`,
    `  sudo ip netns exec ${srcCell?.netns ?? '?'} tcpdump -ni eth0 udp port 4789            # 2 VXLAN out of ${srcCell?.name ?? '?'}`,
    `  sudo ip netns exec ${p}-underlay tcpdump -ni br0 udp port 4789         # 3 on the underlay bridge`,
    `  sudo ip netns exec ${dstCell?.netns ?? '?'} tshark -ni eth0 -f 'udp port 4789' -d udp.port==4789,vxlan -V   # 4 Group Policy ID = appB's tag`,
    `  sudo ip netns exec ${appA?.netns ?? '?'} tcpdump -nei eth0                         # 5 delivered: TTL 62, aa:aa:... > ee:ee:...`,
    '',
    'Tables and teardown:',
    `  sudo silkworm show routes --cell ${dstCell?.name ?? 'cell1'}${lab}    (also neigh, fdb, rules, conntrack, counters)`,
    `  sudo silkworm lab status${prefixOpt}`,
    `  sudo silkworm lab down${prefixOpt}`,
  ];
  return lines.join('\n') + '\n';
}
