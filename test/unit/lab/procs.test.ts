import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isAlive, isLabProgram, isOurs, spawnDetached, stopProcesses, waitReady } from '../../../src/lab/procs.js';
import { parseContainerJson } from '../../../src/lab/runner.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-procs-'));
const started: number[] = [];
afterAll(() => {
  for (const p of started) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

// A process whose argv[1] is named like a lab helper; it ignores SIGTERM when asked to.
function helper(name: string, ignoreTerm: boolean): number {
  const script = path.join(tmp, name);
  fs.writeFileSync(script, `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} console.log('ready'); setInterval(() => {}, 1000);\n`);
  const pid = spawnDetached(process.execPath, [script], path.join(tmp, `${name}.log`));
  started.push(pid);
  return pid;
}

describe('lab process supervision', () => {
  it('recognises the lab programs and nothing that merely mentions the lab', () => {
    expect(isLabProgram(['node', '/work/main/bin/silkworm.js', 'cell', '--name', 'cell1'])).toBe(true);
    expect(isLabProgram(['node', '/x/dist/lab/app-server.js', '--name', 'appA'])).toBe(true);
    expect(isLabProgram(['node', '-e', '…', 'silkworm-fake-cell'])).toBe(true);
    expect(isLabProgram(['tail', '-f', '/run/silkworm/sw/cell1.log'])).toBe(false);
    expect(isLabProgram(['tcpdump', '-ni', 'eth0'])).toBe(false);
  });

  it('stops with SIGTERM, and with SIGKILL one that ignores it, only if ours', async () => {
    const polite = helper('silkworm-polite', false);
    const stubborn = helper('silkworm-stubborn', true);
    const stranger = helper('stranger.js', false);
    // Wait until each has exec'd node with its script (the SIGTERM handler is installed).
    await waitReady({ what: 'helpers', pid: stranger, log: '-', timeoutMs: 5000, ready: () =>
      ['silkworm-polite', 'silkworm-stubborn', 'stranger.js'].every((n) => fs.readFileSync(path.join(tmp, `${n}.log`), 'utf8').includes('ready')) });
    expect(isOurs(polite)).toBe(true);
    expect(isOurs(stranger)).toBe(false);
    const t0 = Date.now();
    const left = await stopProcesses([polite, stubborn, stranger], 300);
    expect(left).toEqual([]);
    expect(isAlive(polite)).toBe(false);
    expect(isAlive(stubborn)).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300); // the stubborn one used up the grace period
    expect(isAlive(stranger)).toBe(true); // never signalled: not a lab program
  });

  it('fails a readiness wait with the log file named, when the process dies or time runs out', async () => {
    const child = spawn(process.execPath, ['-e', 'process.exit(3)']);
    await new Promise((r) => child.on('exit', r));
    await expect(waitReady({ what: 'cell9', pid: child.pid!, log: '/run/x/cell9.log', timeoutMs: 5000, ready: () => false }))
      .rejects.toThrow('cell9 exited while starting: see /run/x/cell9.log');
    await expect(waitReady({ what: 'cell8', pid: process.pid, log: '/run/x/cell8.log', timeoutMs: 200, ready: () => false }))
      .rejects.toThrow('cell8 was not ready within 200 ms: see /run/x/cell8.log');
  });

  it('reads container add --json output', () => {
    expect(parseContainerJson('{"handle":"h1","app":"appA","ip":"10.255.1.2","mac":"ee:ee:0a:ff:01:02","netns":"sw-appA-0","cell":"cell1"}\n', 'x'))
      .toEqual({ ip: '10.255.1.2', mac: 'ee:ee:0a:ff:01:02', handle: 'h1' });
    expect(parseContainerJson('10.255.1.2\n', 'x')).toEqual({ ip: '10.255.1.2' });
    expect(() => parseContainerJson('{"app":"appA"}', 'container add appA')).toThrow(/container add appA printed no IPv4/);
    expect(() => parseContainerJson('oops', 'container add appA')).toThrow(/did not print JSON/);
    expect(() => parseContainerJson('{"ip":"10.255.1"}', 'c')).toThrow(/no IPv4/);
  });
});
