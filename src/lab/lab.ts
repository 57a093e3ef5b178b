// `silkworm lab up | down | status`, as functions the CLI and the tests call.
//
// up:     plan → namespaces + underlay → controller → cells → containers → app
//         servers → state.json, recording every namespace and PID the moment it
//         exists; any failure tears down what was made and says why in one
//         sentence (the logs are kept for the post-mortem).
// down:   stop recorded PIDs (only while they are still ours), delete the
//         namespaces, remove /run/silkworm/P. Idempotent; works without state.
// status: what the state says, checked against what is alive.
import fs from 'node:fs';
import path from 'node:path';
import { fail } from './errors.js';
import { labDir, DEFAULT_LAB } from './paths.js';
import { buildTopology, deleteNamespaces, listNetns, netnsPids } from './netns.js';
import { cmdline, isAlive, isOurs, listeningIn, probeHttp, stopProcesses, waitReady } from './procs.js';
import { labConflist, realRunner, type LabRunner } from './runner.js';
import { emptyState, readState, recordedPids, writeState, type LabState } from './state.js';
import { labNamespaces, planLab, validatePrefix, type LabPlan, type PlanOptions } from './topology.js';

export interface UpOptions extends PlanOptions {
  /** Bound for each readiness wait (controller, each cell, each app). */
  timeoutMs?: number;
  runner?: LabRunner;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
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
    const controllerPid = runner.spawnController({ socket: c.socket, store: c.store, log: c.log });
    state.controller = { socket: c.socket, pid: controllerPid, log: c.log };
    save();
    await waitReady({ what: 'the controller', pid: controllerPid, log: c.log, timeoutMs, ready: async () => (await probeHttp(c.socket)) !== null });
    say(`controller up (pid ${controllerPid}) on ${c.socket}`);

    // One cell at a time: a cell answers on its admin socket only after it
    // holds its lease, so cell1 always gets the first /24 (10.255.1.0/24) and
    // appA's address is the same in every lab, as the README and hints show.
    for (const cell of plan.cells) {
      const pid = runner.spawnCell({
        name: cell.name,
        netns: cell.netns,
        controllerSocket: c.socket,
        underlayIp: cell.underlayIp,
        underlayDev: cell.dev,
        adminSocket: cell.socket,
        mtu: plan.mtu,
        log: cell.log,
        dataplane: cell.dataplane,
        capture: opts.capture,
      });
      state.cells.push({ name: cell.name, underlayIp: cell.underlayIp, netns: cell.netns, socket: cell.socket, pid, log: cell.log, dataplane: cell.dataplane });
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

/** Take the lab down. Safe to run twice, and with no state file at all. */
export async function labDown(prefix: string = DEFAULT_LAB, opts: { graceMs?: number } = {}): Promise<DownResult> {
  validatePrefix(prefix);
  requireRoot('lab down');
  return teardown(prefix, readStateOrNull(prefix), { keepLogs: false, onlyRecorded: false, graceMs: opts.graceMs });
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
  controller: ({ socket: string; log: string; answers: boolean } & ProcStatus) | null;
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
    ? { ...state.controller, alive: isOurs(state.controller.pid), answers: await answers(state.controller.socket) }
    : null;
  const cells = await Promise.all(
    (state?.cells ?? []).map(async (c) => ({ ...c, dataplane: c.dataplane ?? ('user' as const), alive: isOurs(c.pid), answers: await answers(c.socket) })),
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
    `  controller  ${state.controller?.socket ?? '-'}  pid ${state.controller?.pid ?? '-'}`,
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
