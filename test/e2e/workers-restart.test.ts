// Restarts of a cell with several workers lose nothing (docs/ARCHITECTURE.md,
// "Several cores per cell" and "Bad input and faults"), written from the
// contract alone. On a lab of its own with 2 workers per cell:
// - 8 TCP connections appB → appA, open and sending (a counter every 50 ms,
//   echoed), come through `lab restart cell1 --kill` without a reset, a loss
//   or a reordering; the new process runs the same command line (--workers 2),
//   has 2 workers and 2 queues per TAP, and steers new flows consistently;
// - 8 connections whose policy was removed come through the same (each
//   worker's connection tracking saved and restored), a new one is still
//   refused, and the summed counters are not set back;
// - 8 connections whose policy was removed come through `lab restart cell1`
//   (SIGTERM) started at once, with no periodic save to help: every worker
//   saves its table as the cell stops; no counter goes back;
// - 8 connections come through a kill -9 restart of cell2, the sending side
//   (the replies pass on cell2's restored conntrack only);
// - 6 connections whose policy was removed, one in each worker for 2 and for
//   3 workers, come through kill -9 and the command line run again by hand
//   with --workers 3, then again with --workers 1 (every worker's saved
//   connections re-read into their new owners; the TAP takes 3 queues, then 1).
// - a container added under one worker (a TAP of one queue) is kept by a
//   restart with 2: its TAP replaced by a 2-queue one with the same MAC,
//   address and route, its connections carried on, new ones answered.
// The connections use local ports the steering hash (as ARCHITECTURE.md
// writes it) spreads over the workers, so each restart has connections of
// every worker to lose.
// The one-worker version of these is restart.test.ts; its peer and checks are
// shared through test/helpers/peer.ts.
//
// Root only; lab prefix `e<pid>wr`, underlay 198.18.15.0/24; every process
// bounded in time and stopped by PID.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanup,
  curl,
  inNetns,
  ipSync,
  isRoot,
  labUp,
  pidAlive,
  RUN_DIR,
  silkwormJson,
  silkwormOk,
  sleep,
  uniquePrefix,
  waitFor,
  type Background,
  type Lab,
  type LabStatusJson,
} from '../helpers/lab.js';
import { eventsAfter, expectSurvived, labState, peerClient, peerServer, untilAnswered, untilRefused, withArg, type PeerResult } from '../helpers/peer.js';
import { conntrackOf, countersOf, curlFromPorts, portsPerWorker, queueNames, tapQueues, workerFrames } from '../helpers/workers.js';

// The cells log at info (a vitest run is silent by default): the log lines below read their events.
process.env.SILKWORM_LOG_LEVEL = 'info';

const N = 2;
const P = uniquePrefix('wr');
const BASE = '198.18.15.11/24';
const DIR = path.join(RUN_DIR, P);
const EXTRA_NS = `${P}-appB-1`;
const CONNS = 8;
const PORT_BASE = 20000 + (process.pid % 100) * 120;
const ports = (from: number, n = 8) => Array.from({ length: n }, (_, i) => PORT_BASE + from + i);

/** The argv a process runs with (/proc/PID/cmdline). */
const cmdlineOf = (pid: number): string[] => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.length > 0);

describe.skipIf(!isRoot())(`restarts of cells with ${N} workers (prefix ${P})`, () => {
  let lab: Lab;
  const servers: Background[] = [];
  const url = () => `http://${lab.appA.ip}:8080/`;

  /**
   * CONNS client connections appB → appA:port, each for `seconds`, from
   * local ports (scanned from PORT_BASE + from) the steering hash gives
   * CONNS / N to each worker: every worker holds some of them.
   */
  const connections = (port: number, seconds: number, from: number): Promise<PeerResult[]> =>
    Promise.all(portsPerWorker(lab.appB.ip, lab.appA.ip, port, N, CONNS / N, PORT_BASE + from).map((lp) => peerClient(lab.ns.appB, lab.appA.ip, port, seconds, lp)));

  /** All `count` connections to `port` are open: ESTABLISHED in `cell`'s table. */
  const allOpen = (cell: string, port: number, count = CONNS) =>
    waitFor(
      `${count} connections to ${port} ESTABLISHED on ${cell}`,
      async () => {
        const est = (await conntrackOf(P, cell, ['--dport', String(port)])).filter((e) => e.state === 'ESTABLISHED' && e.src === lab.appB.ip);
        return new Set(est.map((e) => e.sport)).size >= count ? true : undefined;
      },
      5000,
      200,
    );

  /** kill -9 keeps what the cell last saved (every 5 s): wait until every conntrack file in its state directory was written after `since`. */
  const conntrackSavedAfter = (cell: string, since: number) => {
    const stateDir = path.join(DIR, cell);
    return waitFor(
      `a save of ${cell}'s connections`,
      () => {
        const files = fs.readdirSync(stateDir).filter((f) => /^conntrack/.test(f) && !f.endsWith('.tmp'));
        return files.length > 0 && files.every((f) => fs.statSync(path.join(stateDir, f)).mtimeMs > since) ? files : undefined;
      },
      15_000,
      200,
    );
  };

  /** PIDs of cells this file started by hand (lab down ends them; afterAll makes sure). */
  const handStarted: number[] = [];

  /**
   * kill -9 the cell, then run its recorded command line by hand with
   * `--workers workers` (what an operator changing N does); resolves once
   * the new process answers with that many workers.
   */
  const handRestart = async (cell: string, workers: number) => {
    const st = await silkwormJson<LabStatusJson>(['lab', 'status', '--prefix', P]);
    const pid = st.cells.find((c) => c.name === cell)!.pid;
    const rec = labState(P).cells.find((c) => c.name === cell)!;
    const t = Date.now();
    process.kill(pid, 'SIGKILL');
    await waitFor(`${cell} (pid ${pid}) to die`, () => (pidAlive(pid) ? undefined : true), 5000, 20);
    const argv = withArg(rec.command!, '--workers', String(workers));
    const log = fs.openSync(rec.log, 'a');
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    fs.closeSync(log);
    handStarted.push(child.pid!);
    await waitFor(`${cell} to answer with ${workers} workers`, async () => (((await countersOf(P, cell)).workers ?? 1) === workers ? true : undefined), 20_000, 200);
    return { t, pid: child.pid!, log: rec.log };
  };

  /** `lab restart CELL --kill`; returns when it did and the new PID. */
  const killRestart = async (cell: string) => {
    const t = Date.now();
    const out = await silkwormOk(['lab', 'restart', cell, '--kill', '--prefix', P], { timeoutMs: 40_000 });
    const m = /new pid (\d+)/.exec(out);
    expect(m, out).not.toBeNull();
    return { t, pid: Number(m![1]), out: out.trim() };
  };

  /**
   * curl appA → appB from local ports the hash gives 3 to each of `workers`
   * workers: appA's SYN takes the worker its TAP's steering program picks,
   * the reply the one cell1's socket group picks; they must agree for the
   * reply to find the connection (there is no policy appB → appA for it).
   */
  const curlsFromA = async (workers: number, from: number, what: string) => {
    const rs = await curlFromPorts(lab.ns.appA, `http://${lab.appB.ip}:8080/`, portsPerWorker(lab.appA.ip, lab.appB.ip, 8080, workers, 3, PORT_BASE + from));
    for (const r of rs) expect([r.code, r.body.trim()], `${what}: appA → appB from local port ${r.port}: ${r.stderr}`).toEqual([0, `appB ${lab.appB.ip}`]);
  };

  const report = (what: string, rs: PeerResult[], t: number, log: string) => {
    const longest = rs.map((r) => Math.max(0, ...r.gaps.filter(([, b]) => b > t).map(([a, b]) => b - a)));
    console.log(`${what}: longest pause per connection ${longest.join(' / ')} ms; log after the restart: ${eventsAfter(log, t, ['cell-stopped', 'conntrack-restored', 'cell-started'])}`);
  };

  beforeAll(async () => {
    await cleanup(P, [EXTRA_NS]);
    lab = await labUp(P, ['--underlay-base', BASE, '--workers', String(N)]);
    for (const port of [8080, 9000, 9002]) await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', String(port), '--lab', P]);
    // appA as a client too: then its own TAP's steering decides which worker tracks the connection.
    await silkwormOk(['policy', 'add', 'appA', 'appB', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    servers.push(await peerServer(lab.ns.appA, 9000, 600_000));
    servers.push(await peerServer(lab.ns.appA, 9002, 600_000));
    await waitFor('curl appB → appA', async () => ((await curl(lab.ns.appB, url(), 5)).code === 0 ? true : undefined), 15_000, 300);
  }, 120_000);

  afterAll(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    await cleanup(P, [EXTRA_NS]);
    for (const pid of handStarted) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  }, 120_000);

  it(`${CONNS} connections survive \`lab restart cell1 --kill\`; the new cell runs the same command line with ${N} workers and steers new flows consistently`, async () => {
    const cell = labState(P).cells.find((c) => c.name === 'cell1')!;
    expect(cell.command).toEqual(expect.arrayContaining(['--workers', String(N)]));
    const before = await countersOf(P, 'cell1');
    const clients = connections(9000, 12, 20);
    await allOpen('cell1', 9000);
    await sleep(500);
    const mid = await countersOf(P, 'cell1');
    const { t, pid, out } = await killRestart('cell1');
    const rs = await clients;
    rs.forEach((r, i) => expectSurvived(r, t, `connection ${i} across kill -9 of cell1`));
    const fb = workerFrames(before);
    const fm = workerFrames(mid);
    const d = fb && fm ? fm.map((v, j) => v - (fb[j] ?? 0)) : undefined;
    console.log(`${out}; frames per worker on cell1 while the connections ran: ${d ? d.join(' / ') : 'n/a'}`);
    // The premise: the connections lived in every worker when cell1 was killed.
    if (d) for (let w = 0; w < N; w++) expect(d[w], `worker ${w}'s frames while the connections ran (per worker ${d.join(' / ')})`).toBeGreaterThan(20);
    report('kill -9 of cell1', rs, t, cell.log);

    // The same command line, --workers included, and what it means.
    const argv = cmdlineOf(pid);
    const i = argv.indexOf('--workers');
    expect(i, argv.join(' ')).toBeGreaterThan(0);
    expect(argv[i + 1]).toBe(String(N));
    expect((await countersOf(P, 'cell1')).workers).toBe(N);
    expect(await tapQueues(lab.ns.appA)).toEqual(queueNames(N));
    // Steering re-attached for the new process: 8 new connections from 8 source ports all answered, both ways.
    const ok = await curlFromPorts(lab.ns.appB, url(), ports(0));
    for (const r of ok) expect(r.code, `local port ${r.port}: ${r.stderr}`).toBe(0);
    await curlsFromA(N, 0, 'after kill -9 of cell1');
  }, 90_000);

  it(`${CONNS} connections whose policy was removed keep flowing across \`lab restart cell1 --kill\` (every worker's conntrack restored); a new one is refused; counters are not set back`, async () => {
    const clients = connections(9002, 18, 50);
    await allOpen('cell1', 9002);
    await silkwormOk(['policy', 'remove', 'appB', 'appA', '--protocol', 'tcp', '--port', '9002', '--lab', P]);
    await untilRefused(lab.ns.appB, lab.appA.ip, 9002);
    // kill -9 keeps what the cell last saved (every 5 s): wait for a save of
    // its connections and counters — every file of them, one per worker or
    // one in all — taken after this point.
    const snap = await countersOf(P, 'cell1');
    const since = Date.now();
    const stateDir = path.join(DIR, 'cell1');
    const saves = () => fs.readdirSync(stateDir).filter((f) => /^(conntrack|counters)/.test(f) && !f.endsWith('.tmp'));
    await waitFor(
      'a save of conntrack and counters after the policy was removed',
      () => {
        const files = saves();
        const fresh = files.every((f) => fs.statSync(path.join(stateDir, f)).mtimeMs > since);
        return files.some((f) => f.startsWith('conntrack')) && files.some((f) => f.startsWith('counters')) && fresh ? files : undefined;
      },
      15_000,
      200,
    );
    console.log(`state directory files saved: ${saves().join(', ')}`);
    const cell = labState(P).cells.find((c) => c.name === 'cell1')!;
    const { t } = await killRestart('cell1');
    const rs = await clients;
    rs.forEach((r, i) => expectSurvived(r, t, `connection ${i}, policy removed, across kill -9 of cell1`));
    report('policy removed, kill -9 of cell1', rs, t, cell.log);
    const again = await peerClient(lab.ns.appB, lab.appA.ip, 9002, 1);
    expect(again.error, 'a new connection after the restart').toBe('ECONNREFUSED');
    // Every worker's counters came back: none of the sums is below what the cell showed before the save.
    const after = await countersOf(P, 'cell1');
    for (const k of Object.keys(snap.stats)) expect(after.stats[k] ?? 0, `stat ${k} after the restart`).toBeGreaterThanOrEqual(snap.stats[k]!);
    for (const k of Object.keys(snap.drops)) expect(after.drops[k] ?? 0, `drop ${k} after the restart`).toBeGreaterThanOrEqual(snap.drops[k]!);
  }, 90_000);

  it(`${CONNS} connections whose policy was removed keep flowing across \`lab restart cell1\` (SIGTERM: every worker saves at stop); every counter is kept`, async () => {
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '9006', '--lab', P]);
    servers.push(await peerServer(lab.ns.appA, 9006, 600_000));
    await untilAnswered(lab.ns.appB, lab.appA.ip, 9006, 'the policy for 9006 to reach cell1');
    const clients = connections(9006, 12, 110);
    await allOpen('cell1', 9006);
    await silkwormOk(['policy', 'remove', 'appB', 'appA', '--protocol', 'tcp', '--port', '9006', '--lab', P]);
    await untilRefused(lab.ns.appB, lab.appA.ip, 9006);
    // No waiting for a periodic save: a SIGTERM'd cell saves every worker's table and the counters as it stops.
    const snap = await countersOf(P, 'cell1');
    const cell = labState(P).cells.find((c) => c.name === 'cell1')!;
    const t = Date.now();
    const out = await silkwormOk(['lab', 'restart', 'cell1', '--prefix', P], { timeoutMs: 40_000 });
    const rs = await clients;
    rs.forEach((r, i) => expectSurvived(r, t, `connection ${i}, policy removed, across lab restart cell1 (SIGTERM)`));
    report(`SIGTERM restart of cell1 (${out.trim()})`, rs, t, cell.log);
    expect((await peerClient(lab.ns.appB, lab.appA.ip, 9006, 1)).error, 'a new connection after the restart').toBe('ECONNREFUSED');
    const after = await countersOf(P, 'cell1');
    expect(after.workers).toBe(N);
    for (const k of Object.keys(snap.stats)) expect(after.stats[k] ?? 0, `stat ${k} after the restart`).toBeGreaterThanOrEqual(snap.stats[k]!);
    for (const k of Object.keys(snap.drops)) expect(after.drops[k] ?? 0, `drop ${k} after the restart`).toBeGreaterThanOrEqual(snap.drops[k]!);
  }, 90_000);

  it(`${CONNS} connections survive \`lab restart cell2 --kill\` (the sending side: replies pass on its restored conntrack)`, async () => {
    const clients = connections(9000, 16, 80);
    await allOpen('cell2', 9000);
    await conntrackSavedAfter('cell2', Date.now());
    const cell = labState(P).cells.find((c) => c.name === 'cell2')!;
    const { t, out } = await killRestart('cell2');
    const rs = await clients;
    rs.forEach((r, i) => expectSurvived(r, t, `connection ${i} across kill -9 of cell2`));
    report(`kill -9 of cell2 (${out})`, rs, t, cell.log);
    expect((await countersOf(P, 'cell2')).workers).toBe(N);
    expect(await tapQueues(lab.ns.appB)).toEqual(queueNames(N));
  }, 90_000);
  it('connections whose policy was removed keep flowing across restarts that change the number of workers, 2 → 3 → 1 (each connection re-read into its new owner)', async () => {
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '9004', '--lab', P]);
    servers.push(await peerServer(lab.ns.appA, 9004, 600_000));
    await untilAnswered(lab.ns.appB, lab.appA.ip, 9004, 'the policy for 9004 to reach cell1');
    // One port per value of the hash mod 6: with 2 workers and with 3, every worker holds one of them.
    const local = portsPerWorker(lab.appB.ip, lab.appA.ip, 9004, 6, 1, PORT_BASE + 100);
    const clients = Promise.all(local.map((lp) => peerClient(lab.ns.appB, lab.appA.ip, 9004, 30, lp)));
    await allOpen('cell1', 9004, local.length);
    await silkwormOk(['policy', 'remove', 'appB', 'appA', '--protocol', 'tcp', '--port', '9004', '--lab', P]);
    await untilRefused(lab.ns.appB, lab.appA.ip, 9004);
    const saved2 = await conntrackSavedAfter('cell1', Date.now());
    const to3 = await handRestart('cell1', 3);
    expect(await tapQueues(lab.ns.appA), 'appA\'s TAP after the restart with 3 workers').toEqual(queueNames(3));
    // The persistent TAP's steering program is the new one, for 3 queues.
    await curlsFromA(3, 30, 'after the restart with 3 workers');
    await sleep(1000);
    const saved3 = await conntrackSavedAfter('cell1', Date.now());
    const to1 = await handRestart('cell1', 1);
    expect(await tapQueues(lab.ns.appA), 'appA\'s TAP after the restart with 1 worker').toEqual(queueNames(1));
    const rs = await clients;
    console.log(`2 → 3 → 1 workers: local ports ${local.join(',')}; saved before each restart: [${saved2.join(', ')}], [${saved3.join(', ')}]`);
    report('restart 2 → 3 workers', rs, to3.t, to3.log);
    report('restart 3 → 1 worker', rs, to1.t, to1.log);
    rs.forEach((r, i) => {
      expectSurvived(r, to3.t, `connection ${i} (local port ${local[i]}), policy removed, across 2 → 3 workers`);
      expect(r.lastEchoAt, `connection ${i} (local port ${local[i]}): no echo after the restart with 1 worker`).toBeGreaterThan(to1.t + 1000);
    });
    const again = await peerClient(lab.ns.appB, lab.appA.ip, 9004, 1);
    expect(again.error, 'a new connection after the restarts').toBe('ECONNREFUSED');
    // curl (policy in place) works with the new N too.
    const ok = await curlFromPorts(lab.ns.appB, url(), ports(10));
    for (const r of ok) expect(r.code, `local port ${r.port}: ${r.stderr}`).toBe(0);
  }, 120_000);
  it('a container added while cell1 ran one worker (a TAP of one queue) is kept by the restart with 2: its TAP replaced by one of 2 queues, same address and MAC, its connections carry on', async () => {
    // cell1 runs one worker now (the test before left it so): a container added now gets a TAP of one queue.
    expect((await countersOf(P, 'cell1')).workers ?? 1).toBe(1);
    ipSync(['netns', 'add', EXTRA_NS]);
    const added = JSON.parse(await silkwormOk(['container', 'add', '--cell', 'cell1', '--app', 'appB', '--netns', EXTRA_NS, '--lab', P, '--json'])) as { ip: string };
    expect(await tapQueues(EXTRA_NS)).toEqual(queueNames(1));
    const link = async () => (await inNetns(EXTRA_NS, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0'])).stdout.trim();
    const mac = async () => (await inNetns(EXTRA_NS, 'cat', ['/sys/class/net/eth0/address'])).stdout.trim();
    const route = async () => (await inNetns(EXTRA_NS, 'ip', ['route', 'show', 'default'])).stdout.trim();
    const [addr0, mac0, route0] = [await link(), await mac(), await route()];
    expect(addr0).toContain(added.ip);
    // One connection from the container per worker-to-be, open across the restart (policy appB → appA on 9000).
    const local = portsPerWorker(added.ip, lab.appA.ip, 9000, 2, 1, PORT_BASE + 30);
    const clients = Promise.all(local.map((lp) => peerClient(EXTRA_NS, lab.appA.ip, 9000, 18, lp)));
    await sleep(1000);
    // appA's replies to them pass on cell1's conntrack only: kill -9 keeps what was last saved.
    await conntrackSavedAfter('cell1', Date.now());
    const restarted = await handRestart('cell1', 2);
    // ARCHITECTURE.md: the cell replaces the TAP (container-tap-replaced) with a multi-queue one of the same name, MAC, address and routes.
    expect(await tapQueues(EXTRA_NS), 'the container\'s TAP after the restart with 2 workers').toEqual(queueNames(2));
    expect(await mac()).toBe(mac0);
    expect(await link()).toContain(added.ip);
    expect(await route()).toBe(route0);
    expect((await countersOf(P, 'cell1')).containers.map((c) => c.ip).sort()).toEqual([lab.appA.ip, added.ip].sort());
    const rs = await clients;
    report('restart 1 → 2 workers (container from a one-worker cell)', rs, restarted.t, restarted.log);
    rs.forEach((r, i) => expectSurvived(r, restarted.t, `connection ${i} from the replaced TAP (local port ${local[i]})`));
    expect(eventsAfter(restarted.log, restarted.t, ['container-tap-replaced'])).not.toContain('+? ms');
    // And new connections from it, through both workers.
    const ok = await curlFromPorts(EXTRA_NS, url(), ports(40));
    for (const r of ok) expect([r.code, r.body.trim()], `from ${added.ip}, local port ${r.port}: ${r.stderr}`).toEqual([0, `appA ${lab.appA.ip}`]);
  }, 90_000);
});
