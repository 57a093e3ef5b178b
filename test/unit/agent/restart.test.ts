// A cell's restart without a data plane: the state directory (atomic files,
// the lock), the agent writing its records on every change and reading them
// back — re-attaching what is still there, dropping the rest — and a start
// that fails after the lease releasing it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import type { AgentHooks, Backend, DesiredState } from '../../../src/agent/backend.js';
import type { ContainerRecord } from '../../../src/agent/containers.js';
import { StateDir, validateSaved, writeFileAtomic } from '../../../src/agent/state-dir.js';
import { loadNative, nativeAvailable } from '../../../src/io/native.js';
import type { Lease, Snapshot } from '../../../src/net/controller-client.js';
import { fakeController } from '../../../src/testing/fake-controller.js';
import { logger } from '../../../src/util/log.js';

const log = logger('restart-test');
const ours: Lease = { underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' };
const snap: Snapshot = { version: 1, leases: [ours], policies: [], tags: [] };

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'silkworm-restart-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A backend that re-attaches the handles in `present` and records what it was asked. */
class RestartBackend implements Backend {
  readonly kind = 'user';
  readonly log = log;
  readonly calls: string[] = [];
  present = new Set<string>();
  failRun = false;
  saved = 0;
  loaded = 0;
  async open(lease: Lease, _hooks: AgentHooks): Promise<void> {
    this.calls.push(`open ${lease.overlay_subnet}`);
  }
  async run(): Promise<void> {
    this.calls.push('run');
    if (this.failRun) throw new Error('UDP port 4789 on 198.18.0.11 is in use');
  }
  apply(_s: DesiredState): void {}
  async attach(c: ContainerRecord): Promise<void> {
    this.calls.push(`attach ${c.handle}`);
  }
  async detach(c: ContainerRecord): Promise<void> {
    this.calls.push(`detach ${c.handle}`);
  }
  async reattach(c: ContainerRecord): Promise<boolean> {
    this.calls.push(`reattach ${c.handle}`);
    return this.present.has(c.handle);
  }
  loadState(): void {
    this.loaded++;
  }
  saveState(): void {
    this.saved++;
  }
  tagOf(): number {
    return 0;
  }
  async close(): Promise<void> {
    this.calls.push('close');
  }
}

function makeAgent(dir: StateDir, backend: Backend, opts: { namespaces?: Set<string>; released?: Lease[] } = {}) {
  const controller = fakeController(ours, snap) as unknown as Record<string, unknown>;
  controller.releaseLease = async (l: Lease) => void opts.released?.push(l);
  return new Agent({
    name: 'cell1',
    controller: controller as never,
    underlayIp: '198.18.0.11',
    netnsExists: (ns) => (opts.namespaces ? opts.namespaces.has(ns) : true),
    backend,
    state: dir,
  });
}

describe('StateDir', () => {
  it('writes a file atomically: the new content whole, no temporary file left', () => {
    const d = tmpDir();
    const f = path.join(d, 'x.json');
    writeFileAtomic(f, 'old');
    writeFileAtomic(f, new Uint8Array([0x6e, 0x65, 0x77]));
    expect(fs.readFileSync(f, 'utf8')).toBe('new');
    expect(fs.readdirSync(d)).toEqual(['x.json']);
  });

  it('refuses a file that is not a cell state file, with one sentence naming it', () => {
    expect(() => validateSaved({ version: 2 }, '/x/cell.json')).toThrow('/x/cell.json is not a silkworm cell state file (version 2)');
    expect(() => validateSaved({ version: 1, cell: 'c', underlayIp: '1.2.3.4', containers: [{ handle: 'h' }] }, 'f')).toThrow(
      'container 0 lacks handle, app, ip or netns',
    );
    const ok = validateSaved({ version: 1, cell: 'c', underlayIp: '1.2.3.4', containers: [{ handle: 'h', app: 'a', ip: '10.0.0.2', netns: 'n', cni: { id: 'x' } }] }, 'f');
    expect(ok.containers[0]).toEqual({ handle: 'h', app: 'a', ip: '10.0.0.2', netns: 'n', cni: { id: 'x' } });
  });

  it.skipIf(!nativeAvailable())('lets one holder lock a directory; a second is refused naming the holder, and gets it once released', () => {
    const d = path.join(tmpDir(), 'cell1');
    const native = loadNative();
    const a = new StateDir(d);
    expect(a.lock((p) => native.lockFile(p))).toBe(true); // created the directory
    expect(fs.statSync(d).mode & 0o777).toBe(0o700);
    const b = new StateDir(d);
    expect(() => b.lock((p) => native.lockFile(p))).toThrow(`state directory ${d} is in use by another cell (pid ${process.pid})`);
    a.unlock((fd) => native.closeFd(fd));
    expect(b.lock((p) => native.lockFile(p))).toBe(false);
    b.unlock((fd) => native.closeFd(fd));
  });
});

describe('Agent across a restart', () => {
  it('writes its containers on every add and delete (a kill -9 loses nothing), and on stop', async () => {
    const dir = new StateDir(tmpDir());
    const backend = new RestartBackend();
    const agent = makeAgent(dir, backend);
    await agent.start();
    await agent.addContainer({ app: 'appA', netns: 'ns1' });
    await agent.addContainer({ app: 'appB', netns: 'ns2', handle: 'h2' });
    // No stop: what is on disk now is what a kill -9 would leave.
    let saved = dir.load()!;
    expect(saved.lease).toEqual(ours);
    expect(saved.containers).toEqual([
      { handle: 'ns1', app: 'appA', ip: '10.255.1.2', netns: 'ns1' },
      { handle: 'h2', app: 'appB', ip: '10.255.1.3', netns: 'ns2' },
    ]);
    await agent.removeContainer('ns1');
    saved = dir.load()!;
    expect(saved.containers.map((c) => c.handle)).toEqual(['h2']);
    const before = backend.saved;
    await agent.stop();
    expect(backend.saved).toBe(before + 1);
    expect(backend.calls).not.toContain('detach h2'); // stopping keeps the container's device
  });

  it('re-attaches what is still there and drops the rest: namespace gone, device gone, address outside the lease', async () => {
    const dir = new StateDir(tmpDir());
    dir.save({
      version: 1,
      cell: 'cell1',
      underlayIp: '198.18.0.11',
      dataplane: 'user',
      lease: ours,
      pid: 1,
      savedAt: '',
      containers: [
        { handle: 'a', app: 'appA', ip: '10.255.1.2', netns: 'ns-a', cni: { containerId: 'abc' } },
        { handle: 'b', app: 'appB', ip: '10.255.1.3', netns: 'ns-b' },
        { handle: 'c', app: 'appC', ip: '10.255.1.4', netns: 'ns-gone' },
        { handle: 'd', app: 'appD', ip: '10.255.9.4', netns: 'ns-d' },
      ],
    });
    const backend = new RestartBackend();
    backend.present = new Set(['a']);
    const agent = makeAgent(dir, backend, { namespaces: new Set(['ns-a', 'ns-b', 'ns-d', 'ns-new']) });
    await agent.start();
    expect(backend.loaded).toBe(1);
    expect(backend.calls).toEqual(['open 10.255.1.0/24', 'reattach a', 'reattach b', 'run']);
    expect(agent.listContainers().map((c) => [c.handle, c.ip])).toEqual([['a', '10.255.1.2']]);
    // The re-attached address is taken; the next container gets the next one, and the CNI identity is kept.
    expect((await agent.addContainer({ app: 'appE', netns: 'ns-new' })).ip).toBe('10.255.1.3');
    expect(dir.load()!.containers[0]).toEqual({ handle: 'a', app: 'appA', ip: '10.255.1.2', netns: 'ns-a', cni: { containerId: 'abc' } });
    await agent.stop();
  });

  it('moves a damaged state file aside and starts empty', async () => {
    const d = tmpDir();
    const dir = new StateDir(d);
    fs.writeFileSync(dir.file, '{"version": 1, "cell": ');
    const agent = makeAgent(dir, new RestartBackend());
    await agent.start();
    expect(agent.listContainers()).toEqual([]);
    expect(fs.existsSync(`${dir.file}.bad`)).toBe(true);
    expect(dir.load()!.containers).toEqual([]);
    await agent.stop();
  });

  it('a start that fails after the lease releases it, closes the backend and rethrows', async () => {
    const dir = new StateDir(tmpDir());
    const backend = new RestartBackend();
    backend.failRun = true;
    const released: Lease[] = [];
    const agent = makeAgent(dir, backend, { released });
    await expect(agent.start()).rejects.toThrow('UDP port 4789 on 198.18.0.11 is in use');
    expect(released).toEqual([ours]);
    expect(backend.calls).toEqual(['open 10.255.1.0/24', 'run', 'close']);
    // Nothing was written: a failed start leaves the last good state alone.
    expect(dir.load()).toBeNull();
  });
});
