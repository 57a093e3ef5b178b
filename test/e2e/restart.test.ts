// A cell an operator can restart, and only run once. On a lab of its own:
// - a long-lived TCP connection appB → appA (a counter every 50 ms, echoed)
//   survives kill -9 of cell1 followed by the same command line run by hand,
//   and `lab restart cell1` (SIGTERM): no reset, every counter echoed in
//   order; the pause around each restart is printed;
// - a connection whose policy was removed keeps flowing across a restart
//   (conntrack restored), while a new one is still refused;
// - a second `silkworm cell` for the same state directory, admin socket or
//   underlay address exits non-zero within 2 s with one sentence while curl
//   through the live cell keeps working;
// - a start that fails after the lease was acquired releases it and exits.
//
// Root only; prefix `e<pid>r`; every process bounded and stopped by PID.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  background,
  cellGet,
  cleanup,
  CLI,
  curl,
  inNetns,
  ipSync,
  isRoot,
  labUp,
  run,
  RUN_DIR,
  silkwormJson,
  silkwormOk,
  sleep,
  uniquePrefix,
  waitFor,
  type Lab,
  type LabStatusJson,
} from '../helpers/lab.js';
import { eventsAfter, expectSurvived, gapAt, labState as labStateOf, PEER, peerClient, withArg, type PeerResult } from '../helpers/peer.js';
import { isAlive } from '../../src/lab/procs.js';

// The cells this file starts log at info (a vitest run is silent by default): the tests read their events.
process.env.SILKWORM_LOG_LEVEL = 'info';

const P = uniquePrefix('r');
const EXTRA_NS = `${P}-x3`;
const DIR = path.join(RUN_DIR, P);

/** Milliseconds from `since` (epoch ms) to the first `cell-started` the cell logged after it. */
function startedMsAfter(log: string, since: number): number | string {
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    try {
      const o = JSON.parse(line) as { msg?: string; time?: number };
      if (o.msg === 'cell-started' && typeof o.time === 'number' && o.time >= since) return o.time - since;
    } catch {
      /* not a log line */
    }
  }
  return '?';
}

const labState = () => labStateOf(P);

describe.skipIf(!isRoot())(`cell restart and one instance per cell (prefix ${P})`, () => {
  let lab: Lab;

  /** The client in appB for `seconds`; resolves with its summary. */
  const connection = (port: number, seconds: number): Promise<PeerResult> => peerClient(lab.ns.appB, lab.appA.ip, port, seconds);

  /** No reset, nothing lost or reordered, echoes before and after `t`. */
  const survived = expectSurvived;

  const curlAppA = () => curl(lab.ns.appB, `http://${lab.appA.ip}:8080/`, 5);

  beforeAll(async () => {
    lab = await labUp(P);
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '9000', '--lab', P]);
    await background(lab.ns.appA, process.execPath, [PEER, 'server', '9000'], /listening/, 600_000);
    await waitFor('curl appB → appA', async () => ((await curlAppA()).code === 0 ? true : undefined), 15_000, 300);
  }, 120_000);

  afterAll(async () => {
    await cleanup(P, [EXTRA_NS]);
  }, 120_000);

  it('the lab gives each cell a state directory holding its containers and lease', () => {
    const saved = JSON.parse(fs.readFileSync(path.join(DIR, 'cell1', 'cell.json'), 'utf8'));
    expect(saved.cell).toBe('cell1');
    expect(saved.lease.underlay_ip).toBe(lab.cellIp.cell1);
    expect(saved.containers.map((c: { app: string; ip: string }) => [c.app, c.ip])).toEqual([['appA', lab.appA.ip]]);
    expect(labState().cells[0]!.command).toContain('--state-dir');
  });

  it('a connection survives kill -9 of cell1 and the same command line run again by hand', async () => {
    const cell = labState().cells.find((c) => c.name === 'cell1')!;
    const client = connection(9000, 9);
    await sleep(2500);
    process.kill(cell.pid, 'SIGKILL');
    const killedAt = Date.now();
    await waitFor('cell1 to die', () => (isAlive(cell.pid) ? undefined : true), 5000, 20);
    // The command as it was started, run again: what systemd or monit would do.
    const [cmd, ...args] = cell.command!;
    const log = fs.openSync(cell.log, 'a');
    const startedAt = Date.now();
    const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    fs.closeSync(log);
    const r = await client;
    survived(r, startedAt, 'kill -9');
    const gap = gapAt(r, startedAt);
    expect(gap, 'a pause while cell1 was down').not.toBeNull();
    console.log(
      `kill -9 + same command: last echo ${killedAt - gap![0]} ms before the kill, new process ${startedAt - killedAt} ms after it, ` +
        `cell started ${startedMsAfter(cell.log, startedAt)} ms after that; pause ${gap![1] - gap![0]} ms in all, ${gap![1] - startedAt} ms after the new process was started`,
    );
    // lab status finds the new process (it holds the state directory's lock).
    const st = await silkwormJson<LabStatusJson>(['lab', 'status', '--prefix', P]);
    expect(st.cells.find((c) => c.name === 'cell1')).toMatchObject({ pid: child.pid, alive: true });
    // The new process re-attached appA without anyone running `container add`.
    const cs = await cellGet<{ containers: { app: string; ip: string }[] }>(P, 'cell1', '/containers');
    expect(cs.containers.map((c) => [c.app, c.ip])).toEqual([['appA', lab.appA.ip]]);
  }, 60_000);

  it('a connection survives `lab restart cell1`; lab status shows the new PID', async () => {
    const client = connection(9000, 8);
    await sleep(2000);
    const t = Date.now();
    const out = await silkwormOk(['lab', 'restart', 'cell1', '--prefix', P], { timeoutMs: 40_000 });
    const m = /new pid (\d+)/.exec(out);
    expect(m, out).not.toBeNull();
    const r = await client;
    survived(r, t, 'lab restart');
    const longest = Math.max(0, ...r.gaps.filter(([, b]) => b > t).map(([a, b]) => b - a));
    console.log(`lab restart: ${out.trim()}; longest pause ${longest} ms; cell1 log after the command: ${eventsAfter(labState().cells[0]!.log, t, ['cell-stopped', 'conntrack-restored', 'cell-started'])}`);
    const st = await silkwormJson<LabStatusJson>(['lab', 'status', '--prefix', P]);
    const c1 = st.cells.find((c) => c.name === 'cell1')!;
    expect(c1.pid).toBe(Number(m![1]));
    expect(c1.alive).toBe(true);
  }, 60_000);

  it('a connection whose policy was removed keeps flowing across a restart; a new one is refused', async () => {
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '9002', '--lab', P]);
    await background(lab.ns.appA, process.execPath, [PEER, 'server', '9002'], /listening/, 120_000);
    const client = connection(9002, 10);
    await sleep(1500);
    await silkwormOk(['policy', 'remove', 'appB', 'appA', '--protocol', 'tcp', '--port', '9002', '--lab', P]);
    // Refused now: a fresh connection gets cell1's ICMP port unreachable.
    const refused = await waitFor(
      'a new connection to 9002 refused',
      async () => {
        const c = await connection(9002, 1);
        return c.error === 'ECONNREFUSED' ? c : undefined;
      },
      10_000,
      300,
    );
    expect(refused.echoed).toBe(0);
    // kill -9 keeps what the cell last saved: its conntrack is written every
    // few seconds, so wait until a save taken after the connection was made.
    const saved = path.join(DIR, 'cell1', 'conntrack.bin');
    const after = Date.now();
    await waitFor('a conntrack save after the policy was removed', async () => (fs.existsSync(saved) && fs.statSync(saved).mtimeMs > after ? true : undefined), 15_000, 200);
    const t = Date.now();
    await silkwormOk(['lab', 'restart', 'cell1', '--kill', '--prefix', P], { timeoutMs: 40_000 });
    const r = await client;
    survived(r, t, 'policy removed, kill -9 restart');
    const again = await connection(9002, 1);
    expect(again.error).toBe('ECONNREFUSED');
  }, 90_000);

  it('a second cell for the same state directory, admin socket or underlay address exits non-zero within 2 s; the live cell keeps working', async () => {
    const cell = labState().cells.find((c) => c.name === 'cell1')!;
    const cmd = cell.command!;
    const pidBefore = Number(fs.readFileSync(path.join(DIR, 'cell1', 'lock'), 'utf8'));
    const leasesBefore = await cellGet<{ leases: unknown[] }>(P, 'controller', '/leases');
    const variants: [string, string[], RegExp][] = [
      ['same command', cmd, /cell cell1 is already running: state directory .* is in use by another cell \(pid \d+\)/],
      ['same admin socket', withArg(cmd, '--state-dir', path.join(DIR, 'dup-a')), /admin socket .*cell1\.sock is in use by another running cell/],
      [
        'same underlay address',
        withArg(withArg(cmd, '--state-dir', path.join(DIR, 'dup-b')), '--admin', path.join(DIR, 'dup-b.sock')),
        /UDP port 4789 on [\d.]+ is in use \(another cell for this underlay address is running\)/,
      ],
    ];
    for (const [what, argv, message] of variants) {
      const [bin, ...args] = argv; // ip netns exec P-cell1 node silkworm.js cell …
      // curl through the live cell while the duplicate starts and fails.
      const [dup, during] = await Promise.all([run(bin!, args, { timeoutMs: 10_000 }), curlAppA()]);
      expect(dup.code, `${what}: ${dup.stderr}`).not.toBe(0);
      expect(dup.ms, `${what}: took ${Math.round(dup.ms)} ms`).toBeLessThan(2000);
      const lines = dup.stderr.trim().split('\n');
      expect(lines, `${what}: ${dup.stderr}`).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expect(during.code, `${what}: curl during`).toBe(0);
      expect((await curlAppA()).code, `${what}: curl after`).toBe(0);
      expect(fs.existsSync(path.join(DIR, 'cell1.sock'))).toBe(true);
      console.log(`duplicate cell (${what}): exit ${dup.code} after ${Math.round(dup.ms)} ms: ${lines[0]}`);
    }
    // Nothing of the live cell was touched: same holder, same leases, no leftovers.
    expect(Number(fs.readFileSync(path.join(DIR, 'cell1', 'lock'), 'utf8'))).toBe(pidBefore);
    expect((await cellGet<{ leases: unknown[] }>(P, 'controller', '/leases')).leases).toEqual(leasesBefore.leases);
    expect(fs.existsSync(path.join(DIR, 'dup-a'))).toBe(false);
    expect(fs.existsSync(path.join(DIR, 'dup-b'))).toBe(false);
    expect(fs.existsSync(path.join(DIR, 'dup-b.sock'))).toBe(false);
  }, 90_000);

  it('a start that fails after the lease was acquired releases it, exits non-zero and leaves nothing', async () => {
    // A cell namespace of our own with an underlay address, and a non-TAP
    // device already called silk-vtep, so --capture fails after the lease.
    const ip = '198.18.250.3';
    ipSync(['netns', 'add', EXTRA_NS]);
    ipSync(['-n', EXTRA_NS, 'link', 'set', 'lo', 'up']);
    // veths (this kernel may have no dummy driver), both ends inside the namespace.
    ipSync(['-n', EXTRA_NS, 'link', 'add', 'u0', 'type', 'veth', 'peer', 'name', 'u1']);
    ipSync(['-n', EXTRA_NS, 'link', 'set', 'u1', 'up']);
    ipSync(['-n', EXTRA_NS, 'addr', 'add', `${ip}/32`, 'dev', 'u0']);
    ipSync(['-n', EXTRA_NS, 'link', 'set', 'u0', 'up']);
    ipSync(['-n', EXTRA_NS, 'link', 'add', 'silk-vtep', 'type', 'veth', 'peer', 'name', 'sv-peer']);
    const stateDir = path.join(DIR, 'cell3');
    const admin = path.join(DIR, 'cell3.sock');
    const r = await inNetns(
      EXTRA_NS,
      process.execPath,
      [CLI, 'cell', '--name', 'cell3', '--underlay-ip', ip, '--controller', path.join(DIR, 'controller.sock'), '--admin', admin, '--state-dir', stateDir, '--capture'],
      { timeoutMs: 20_000 },
    );
    expect(r.timedOut, 'the failed cell hung').toBe(false);
    expect(r.code).toBe(1);
    // One sentence for the operator (log lines of the shutdown may come after it).
    expect(r.stderr).toMatch(/^silkworm: the cell could not start: .*silk-vtep/m);
    // The log shows the lease was acquired, then released.
    expect(r.stderr).toContain('"msg":"lease-acquired"');
    expect(r.stderr).toContain('"msg":"lease-released"');
    const leases = await cellGet<{ leases: { underlay_ip: string }[] }>(P, 'controller', '/leases');
    expect(leases.leases.map((l) => l.underlay_ip)).not.toContain(ip);
    expect(fs.existsSync(stateDir)).toBe(false);
    expect(fs.existsSync(admin)).toBe(false);
    ipSync(['netns', 'del', EXTRA_NS]);
  }, 60_000);
});
