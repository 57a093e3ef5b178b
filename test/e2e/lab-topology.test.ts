// `silkworm lab` topology end to end, as root, WITHOUT the rest of silkworm:
// the LabRunner seam swaps the controller, cells and `container add` for
// small fakes, while namespaces, the underlay bridge and veths, the app
// servers, process supervision, state.json, `status` and `down` are real.
// Every name carries a per-run prefix, so a running lab is never touched.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { register } from '../../src/cli/lab.js';
import { labDir } from '../../src/cli/util.js';
import { labDown, labStatus, labUp, nextSteps, type StatusReport } from '../../src/lab/lab.js';
import { listAddrs, listLinks, listNetns } from '../../src/lab/netns.js';
import { isAlive, spawnDetached } from '../../src/lab/procs.js';
import { realRunner, type LabRunner } from '../../src/lab/runner.js';
import { readState, recordedPids } from '../../src/lab/state.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const P = `t${process.pid}`; // ≤ 9 chars: namespaces P-cell1, bridge ports P-cell1 (≤ 15)
const Q = `u${process.pid}`; // a lab whose start-up fails
const R = `v${process.pid}`; // a lab whose state file disappears
const PREFIXES = [P, Q, R];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-lab-e2e-'));
const everyPid = new Set<number>();

// A stand-in for the controller / a cell: an HTTP server on the unix socket
// given as the last argument. "silkworm-fake-*" marks it as a lab program.
const FAKE =
  "const s=process.argv[process.argv.length-1];try{require('fs').unlinkSync(s)}catch{}" +
  ";require('http').createServer((q,r)=>r.end('{}\\n')).listen(s)";

/** Transpile the app server on its own (it imports only node builtins) so the test needs no build. */
function appServerScript(): string {
  const src = fs.readFileSync(new URL('../../src/lab/app-server.ts', import.meta.url), 'utf8');
  const out = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } });
  fs.writeFileSync(path.join(tmp, 'package.json'), '{"type":"module"}\n');
  const file = path.join(tmp, 'app-server.js');
  fs.writeFileSync(file, out.outputText);
  return file;
}

function ipn(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

/** Real app servers, fake everything else. Container i of a cell N gets 10.255.N.2 on a veth. */
function fakeRunner(over: Partial<LabRunner> = {}): LabRunner {
  const real = realRunner({ appServer: appServerScript() });
  const track = (pid: number) => (everyPid.add(pid), pid);
  return {
    spawnController: (s) => track(spawnDetached(process.execPath, ['-e', FAKE, 'silkworm-fake-controller', s.socket], s.log)),
    spawnCell: (s) =>
      track(spawnDetached('ip', ['netns', 'exec', s.netns, process.execPath, '-e', FAKE, 'silkworm-fake-cell', s.adminSocket], s.log)),
    addContainer: async (s) => {
      const n = Number(s.cell.replace('cell', ''));
      const cellNs = s.netns.replace(/-app[AB]-0$/, `-${s.cell}`);
      // The fake "cell side" of the container: a veth, created inside the cell's namespace.
      ipn(['-n', cellNs, 'link', 'add', s.app, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', s.netns]);
      ipn(['-n', cellNs, 'addr', 'add', `10.255.${n}.1/24`, 'dev', s.app]);
      ipn(['-n', cellNs, 'link', 'set', s.app, 'up']);
      ipn(['-n', s.netns, 'addr', 'add', `10.255.${n}.2/24`, 'dev', 'eth0']);
      ipn(['-n', s.netns, 'link', 'set', 'eth0', 'up']);
      return { ip: `10.255.${n}.2`, mac: `ee:ee:0a:ff:0${n}:02` };
    },
    spawnApp: (s) => track(real.spawnApp(s)),
    ...over,
  };
}

function ourNamespaces(prefix: string): string[] {
  return listNetns().filter((n) => n.startsWith(`${prefix}-`));
}

function rootLinksMentioning(prefix: string): string[] {
  return listLinks().filter((l) => l.includes(prefix));
}

async function cli(args: string[]): Promise<{ out: string; exitCode: number | undefined }> {
  const program = new Command().exitOverride();
  register(program);
  let out = '';
  const saved = process.exitCode;
  process.exitCode = undefined;
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  const exitCode = typeof process.exitCode === 'number' ? process.exitCode : undefined;
  process.exitCode = saved;
  return { out, exitCode };
}

function curlIn(netns: string, url: string): string {
  return execFileSync('ip', ['netns', 'exec', netns, 'curl', '-s', '--max-time', '3', url], { encoding: 'utf8', timeout: 10_000 });
}

describe.skipIf(!isRoot)('lab topology (root, namespaces)', () => {
  beforeAll(() => {
    for (const p of PREFIXES) {
      if (ourNamespaces(p).length > 0) throw new Error(`namespaces ${p}-* already exist; refusing to touch them`);
    }
  });

  afterAll(async () => {
    // Clean up no matter what happened above: lab down, then belt and braces.
    for (const p of PREFIXES) {
      try {
        await labDown(p, { graceMs: 1000 });
      } catch {
        /* fall through to the manual sweep */
      }
    }
    for (const pid of everyPid) {
      try {
        if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const p of PREFIXES) {
      for (const ns of ourNamespaces(p)) {
        try {
          ipn(['netns', 'del', ns]);
        } catch {
          /* best effort */
        }
      }
      fs.rmSync(labDir(p), { recursive: true, force: true });
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('brings the topology up, reports it, refuses a second up, and down leaves nothing', async () => {
    const { state, elapsedMs } = await labUp({ prefix: P, runner: fakeRunner(), timeoutMs: 10_000 });
    expect(elapsedMs).toBeLessThan(30_000);

    // Namespaces, exactly the five.
    expect(ourNamespaces(P).sort()).toEqual([`${P}-appA-0`, `${P}-appB-0`, `${P}-cell1`, `${P}-cell2`, `${P}-underlay`]);
    // Underlay: br0 with both cells' ports enslaved and up; the root namespace holds none of it.
    const under = ipn(['-n', `${P}-underlay`, '-o', 'link', 'show']);
    expect(under).toMatch(/: br0: <[^>]*UP[^>]*> mtu 1500/);
    expect(under).toMatch(new RegExp(`: ${P}-cell1@[^:]+: <[^>]*UP[^>]*> mtu 1500 .* master br0`));
    expect(under).toMatch(new RegExp(`: ${P}-cell2@[^:]+: <[^>]*UP[^>]*> mtu 1500 .* master br0`));
    expect(rootLinksMentioning(P)).toEqual([]);
    expect(listAddrs(`${P}-cell1`, 'eth0')).toEqual(['198.18.0.11/24']);
    expect(listAddrs(`${P}-cell2`, 'eth0')).toEqual(['198.18.0.12/24']);
    expect(ipn(['-n', `${P}-cell1`, '-o', 'link', 'show', 'dev', 'eth0'])).toMatch(/mtu 1500 /);
    expect(ipn(['-n', `${P}-cell1`, '-o', 'link', 'show', 'dev', 'lo'])).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
    expect(ipn(['-n', `${P}-appA-0`, '-o', 'link', 'show', 'dev', 'lo'])).toMatch(/<LOOPBACK,UP,LOWER_UP>/);

    // The cells reach each other over the underlay bridge, both ways.
    const ping = (ns: string, dst: string) =>
      execFileSync('ip', ['netns', 'exec', ns, 'ping', '-c', '2', '-i', '0.2', '-W', '2', dst], { encoding: 'utf8', timeout: 10_000 });
    expect(ping(`${P}-cell1`, '198.18.0.12')).toMatch(/2 packets transmitted, 2 received/);
    expect(ping(`${P}-cell2`, '198.18.0.11')).toMatch(/2 packets transmitted, 2 received/);

    // The app servers answer with their name and the address they were reached on.
    expect(curlIn(`${P}-cell1`, 'http://10.255.1.2:8080/')).toBe('appA 10.255.1.2\n');
    expect(curlIn(`${P}-cell2`, 'http://10.255.2.2:8080/anything')).toBe('appB 10.255.2.2\n');

    // state.json is what up returned, with live PIDs.
    const onDisk = readState(P)!;
    expect(onDisk).toEqual(state);
    expect(onDisk.complete).toBe(true);
    expect(onDisk.namespaces).toEqual([`${P}-underlay`, `${P}-cell1`, `${P}-cell2`, `${P}-appA-0`, `${P}-appB-0`]);
    expect(onDisk.cells.map((c) => [c.name, c.underlayIp, c.netns, c.socket])).toEqual([
      ['cell1', '198.18.0.11', `${P}-cell1`, `${labDir(P)}/cell1.sock`],
      ['cell2', '198.18.0.12', `${P}-cell2`, `${labDir(P)}/cell2.sock`],
    ]);
    expect(onDisk.containers).toEqual([
      { app: 'appA', netns: `${P}-appA-0`, ip: '10.255.1.2', cell: 'cell1', mac: 'ee:ee:0a:ff:01:02' },
      { app: 'appB', netns: `${P}-appB-0`, ip: '10.255.2.2', cell: 'cell2', mac: 'ee:ee:0a:ff:02:02' },
    ]);
    const pids = recordedPids(onDisk);
    expect(pids).toHaveLength(5);
    for (const pid of pids) expect(isAlive(pid)).toBe(true);

    // status --json through the CLI.
    const st = await cli(['lab', 'status', '--prefix', P, '--json']);
    expect(st.exitCode).toBeUndefined();
    const report = JSON.parse(st.out) as StatusReport;
    expect(report.up).toBe(true);
    expect(report.namespaces.every((n) => n.exists)).toBe(true);
    expect(report.controller).toMatchObject({ pid: onDisk.controller!.pid, alive: true, answers: true, socket: `${labDir(P)}/controller.sock` });
    expect(report.cells.map((c) => [c.name, c.underlayIp, c.pid, c.alive, c.answers])).toEqual(
      onDisk.cells.map((c) => [c.name, c.underlayIp, c.pid, true, true]),
    );
    expect(report.apps.map((a) => [a.app, a.netns, a.port, a.alive, a.listening])).toEqual([
      ['appA', `${P}-appA-0`, 8080, true, true],
      ['appB', `${P}-appB-0`, 8080, true, true],
    ]);
    // The text form names the same things.
    const text = await cli(['lab', 'status', '--prefix', P]);
    expect(text.out).toContain(`lab "${P}" is up`);
    expect(text.out).toMatch(new RegExp(`cell2 \\(user\\) +${P}-cell2 +198\\.18\\.0\\.12 +${onDisk.cells[1]!.pid} +yes`));

    // The hints carry the real values.
    const hints = nextSteps(onDisk);
    expect(hints).toContain(`sudo ip netns exec ${P}-appB-0 curl -s --max-time 3 http://10.255.1.2:8080/`);
    expect(hints).toContain(`sudo silkworm policy add appB appA --protocol tcp --port 8080 --lab ${P}`);
    expect(hints).toContain(`sudo ip netns exec ${P}-cell2 tcpdump -ni eth0 udp port 4789`);
    expect(hints).toContain(`sudo silkworm lab down --prefix ${P}`);

    // A second up with the same prefix is refused and changes nothing.
    await expect(labUp({ prefix: P, runner: fakeRunner() })).rejects.toThrow(/already up/);
    for (const pid of pids) expect(isAlive(pid)).toBe(true);

    // down: no namespace, link, process or file left.
    const down = await labDown(P);
    expect(down.stopped.sort()).toEqual([...pids].sort());
    expect(down.namespacesDeleted.sort()).toEqual([`${P}-appA-0`, `${P}-appB-0`, `${P}-cell1`, `${P}-cell2`, `${P}-underlay`]);
    expect(ourNamespaces(P)).toEqual([]);
    expect(rootLinksMentioning(P)).toEqual([]);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(fs.existsSync(labDir(P))).toBe(false);

    // Idempotent, and status agrees.
    const again = await labDown(P);
    expect(again.stopped).toEqual([]);
    expect(again.namespacesDeleted).toEqual([]);
    const after = await labStatus(P);
    expect(after.up).toBe(false);
    expect(after.namespaces.filter((n) => n.exists)).toEqual([]);
    expect((await cli(['lab', 'status', '--prefix', P, '--json'])).exitCode).toBe(1);
  });

  it('a failing start-up says which log to read and takes everything down again', async () => {
    // A leftover namespace with no state: up refuses and deletes nothing it did not make.
    ipn(['netns', 'add', `${Q}-cell2`]);
    await expect(labUp({ prefix: Q, runner: fakeRunner() })).rejects.toThrow(
      `namespace ${Q}-cell2 already exists; remove what is left of that lab with "silkworm lab down --prefix ${Q}"`,
    );
    expect(ourNamespaces(Q)).toEqual([`${Q}-cell2`]);
    ipn(['netns', 'del', `${Q}-cell2`]);

    // A cell that dies at once.
    const runner = fakeRunner({
      spawnCell: (s) => {
        const pid = spawnDetached('ip', ['netns', 'exec', s.netns, process.execPath, '-e', 'console.error("no lease for you");process.exit(4)', 'silkworm-fake-cell'], s.log);
        everyPid.add(pid);
        return pid;
      },
    });
    const log = `${labDir(Q)}/cell1.log`;
    await expect(labUp({ prefix: Q, runner, timeoutMs: 5000 })).rejects.toThrow(
      new RegExp(`^cell[12] exited while starting: see ${labDir(Q)}/cell[12]\\.log \\(the half-built lab was taken down; logs kept in ${labDir(Q)}\\)$`),
    );
    expect(ourNamespaces(Q)).toEqual([]);
    expect(rootLinksMentioning(Q)).toEqual([]);
    expect(fs.readFileSync(log, 'utf8')).toContain('no lease for you');
    expect(fs.readdirSync(labDir(Q)).filter((f) => !f.endsWith('.log'))).toEqual([]);
    for (const pid of everyPid) expect(isAlive(pid)).toBe(false);
    await labDown(Q);
    expect(fs.existsSync(labDir(Q))).toBe(false);
  });

  it('down without a state file still finds the lab processes and namespaces', async () => {
    const { state } = await labUp({ prefix: R, runner: fakeRunner(), timeoutMs: 10_000 });
    const pids = recordedPids(state);
    fs.rmSync(`${labDir(R)}/state.json`);
    expect((await labStatus(R)).up).toBe(false);
    const down = await labDown(R);
    expect(down.stopped.sort()).toEqual([...pids].sort());
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(ourNamespaces(R)).toEqual([]);
    expect(rootLinksMentioning(R)).toEqual([]);
    expect(fs.existsSync(labDir(R))).toBe(false);
  });
});
