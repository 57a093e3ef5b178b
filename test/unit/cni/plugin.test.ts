// silkworm-cni's commands against a real cell (in memory: TAPs, underlay and
// namespaces faked) over its real admin socket, driven as a runtime drives a
// plugin: an environment and stdin in, stdout and an exit code out. The IPAM
// plugin is a small script in a CNI_PATH directory that records what it got.
import { afterEach, describe, expect, it } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { startController, type RunningController } from '../../../src/control/server.js';
import { ControllerClient } from '../../../src/net/controller-client.js';
import { Cell } from '../../../src/cell/cell.js';
import { memoryCellIo } from '../../../src/testing/cell-io.js';
import { FakeContainerNet } from '../../../src/testing/fake-container-net.js';
import { MemoryUnderlay } from '../../../src/testing/memory.js';
import { serveAdmin } from '../../../src/cell/admin.js';
import type { JsonServer } from '../../../src/net/http.js';
import { runPlugin } from '../../../src/cni/plugin.js';

let ctl: RunningController | undefined;
let admin: JsonServer | undefined;
const cells: Cell[] = [];
let dir = '';

afterEach(async () => {
  await admin?.close();
  admin = undefined;
  for (const c of cells.splice(0)) await c.stop();
  await ctl?.close();
  ctl = undefined;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function setup() {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swcnip-'));
  ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
  const net = new FakeContainerNet();
  const cell = new Cell({ name: 'cell1', controller: new ControllerClient(ctl.address), underlayIp: '198.18.0.11', io: memoryCellIo(new MemoryUnderlay({ delivery: 'microtask' })), containerNet: net });
  await cell.start();
  cells.push(cell);
  const sock = path.join(dir, 'cell1.sock');
  admin = await serveAdmin(cell, { kind: 'unix', path: sock });
  // Namespace "paths": plain files, so the plugin's existence check passes (the fake net does the rest).
  const ns = (name: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, '');
    return p;
  };
  return { cell, net, sock, ns };
}

const env = (o: Record<string, string>) => ({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent', ...o });
const conf = (sock: string, extra: object = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'silkworm', type: 'silkworm-cni', cell: sock, ...extra });

describe('silkworm-cni against a cell', () => {
  it('ADD prints the 1.0.0 result and the cell records the CNI identity; DEL twice succeeds', async () => {
    const { cell, net, sock, ns } = await setup();
    const netns = ns('a');
    const out = await runPlugin(env({ CNI_NETNS: netns, CNI_IFNAME: 'net1' }), conf(sock, { app: 'appA' }));
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'net1', mac: 'ee:ee:0a:ff:01:02', sandbox: netns }],
      ips: [{ address: '10.255.1.2/32', gateway: '169.254.0.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: '169.254.0.1' }],
      dns: {},
    });
    expect(net.ifnames.get(netns)).toBe('net1');
    expect(cell.listContainers()).toMatchObject([{ container_id: 'c1', ifname: 'net1', netns, app: 'appA' }]);
    for (let i = 0; i < 2; i++) {
      const d = await runPlugin(env({ CNI_COMMAND: 'DEL', CNI_NETNS: netns, CNI_IFNAME: 'net1' }), conf(sock));
      expect(d).toMatchObject({ exitCode: 0, stdout: '' });
    }
    expect(cell.listContainers()).toEqual([]);
    // DEL without CNI_NETNS (the runtime lost it) is success too.
    expect((await runPlugin(env({ CNI_COMMAND: 'DEL', CNI_NETNS: '' }), conf(sock))).exitCode).toBe(0);
  });

  it('the app id comes from runtimeConfig, CNI_ARGS or the config', async () => {
    const { cell, sock, ns } = await setup();
    await runPlugin(env({ CNI_NETNS: ns('m'), CNI_CONTAINERID: 'm' }), conf(sock, { app: 'cfg', runtimeConfig: { metadata: { policy_group_id: 'meta' } } }));
    await runPlugin(env({ CNI_NETNS: ns('a'), CNI_CONTAINERID: 'a', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p;SILKWORM_APP=args' }), conf(sock, { app: 'cfg' }));
    await runPlugin(env({ CNI_NETNS: ns('c'), CNI_CONTAINERID: 'c' }), conf(sock, { app: 'cfg' }));
    expect(Object.fromEntries(cell.listContainers().map((c) => [c.container_id, c.app]))).toEqual({ m: 'meta', a: 'args', c: 'cfg' });
  });

  it('each error path prints the spec error shape, exits non-zero and changes nothing', async () => {
    const { cell, sock, ns } = await setup();
    const netns = ns('e');
    const cases: [string, Record<string, string>, string, number][] = [
      ['bad JSON', env({ CNI_NETNS: netns }), '{"cniVersion": "1.0.0", ', 6],
      ['missing CNI_CONTAINERID', env({ CNI_NETNS: netns, CNI_CONTAINERID: '' }), conf(sock, { app: 'a' }), 4],
      ['missing CNI_NETNS', env({}), conf(sock, { app: 'a' }), 4],
      ['unknown cell', env({ CNI_NETNS: netns }), conf(path.join(dir, 'nope.sock'), { app: 'a' }), 100],
      ['no app id', env({ CNI_NETNS: netns }), conf(sock), 103],
      ['unknown CNI_ARGS key', env({ CNI_NETNS: netns, CNI_ARGS: 'FOO=bar' }), conf(sock, { app: 'a' }), 4],
      ['unsupported version', env({ CNI_NETNS: netns }), JSON.stringify({ cniVersion: '0.2.0', name: 'n', type: 't', cell: sock, app: 'a' }), 1],
      ['missing namespace', env({ CNI_NETNS: path.join(dir, 'gone') }), conf(sock, { app: 'a' }), 4],
      ['mtu above the cell\'s', env({ CNI_NETNS: netns }), conf(sock, { app: 'a', mtu: 9000 }), 7],
      ['IPAM plugin not in CNI_PATH', env({ CNI_NETNS: netns }), conf(sock, { app: 'a', ipam: { type: 'host-local' } }), 104],
    ];
    for (const [what, e, stdin, code] of cases) {
      const out = await runPlugin(e, stdin);
      expect(out.exitCode, what).not.toBe(0);
      const j = JSON.parse(out.stdout);
      expect(Object.keys(j).sort(), what).toEqual(expect.arrayContaining(['cniVersion', 'code', 'msg']));
      expect(j.code, what).toBe(code);
      expect(typeof j.msg).toBe('string');
      expect(cell.listContainers(), what).toEqual([]);
    }
  });

  it('after a cell restart (no record) or with the cell gone, DEL succeeds, CHECK says unknown, the list agrees', async () => {
    const { sock, ns } = await setup();
    const netns = ns('r');
    expect((await runPlugin(env({ CNI_NETNS: netns, CNI_CONTAINERID: 'r1' }), conf(sock, { app: 'a' }))).exitCode).toBe(0);
    // The cell restarts: a new process with no records, on the same socket.
    await admin!.close();
    await cells[0]!.stop();
    const net2 = new FakeContainerNet();
    const cell2 = new Cell({ name: 'cell1', controller: new ControllerClient(ctl!.address), underlayIp: '198.18.0.11', io: memoryCellIo(new MemoryUnderlay({ delivery: 'microtask' })), containerNet: net2 });
    await cell2.start();
    cells.push(cell2);
    admin = await serveAdmin(cell2, { kind: 'unix', path: sock });
    expect(cell2.listContainers()).toEqual([]);
    const chk = await runPlugin(env({ CNI_COMMAND: 'CHECK', CNI_NETNS: netns, CNI_CONTAINERID: 'r1' }), conf(sock, { app: 'a', prevResult: {} }));
    expect(JSON.parse(chk.stdout)).toMatchObject({ code: 3 });
    expect((await runPlugin(env({ CNI_COMMAND: 'DEL', CNI_NETNS: netns, CNI_CONTAINERID: 'r1' }), conf(sock))).exitCode).toBe(0);
    // The cell is gone altogether: DEL still succeeds (its TAPs went with it) and says why on stderr.
    await admin!.close();
    admin = undefined;
    const gone = await runPlugin(env({ CNI_COMMAND: 'DEL', CNI_NETNS: netns, CNI_CONTAINERID: 'r1' }), conf(sock));
    expect(gone).toMatchObject({ exitCode: 0, stdout: '' });
    expect(gone.notes.join('\n')).toMatch(/the cell at .*cleaning up without it/);
  });

  it('VERSION lists 0.4.0, 1.0.0 and 1.1.0', async () => {
    const out = await runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}');
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  it('20 concurrent ADDs: 20 distinct addresses; 20 DELs leave nothing', async () => {
    const { cell, net, sock, ns } = await setup();
    net.delayMs = 10;
    const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => runPlugin(env({ CNI_NETNS: ns(`n${i}`), CNI_CONTAINERID: `k${i}` }), conf(sock, { app: 'appC' }))));
    expect(outs.map((o) => o.exitCode)).toEqual(Array(20).fill(0));
    expect(new Set(outs.map((o) => JSON.parse(o.stdout).ips[0].address)).size).toBe(20);
    const dels = await Promise.all(Array.from({ length: 20 }, (_, i) => runPlugin(env({ CNI_COMMAND: 'DEL', CNI_NETNS: path.join(dir, `n${i}`), CNI_CONTAINERID: `k${i}` }), conf(sock))));
    expect(dels.map((o) => o.exitCode)).toEqual(Array(20).fill(0));
    expect(cell.listContainers()).toEqual([]);
    expect(net.attached.size).toBe(0);
  });

  it('delegates IPAM: runs the plugin from CNI_PATH with the lease as its range, uses its address, DEL releases it', async () => {
    const { cell, sock, ns } = await setup();
    await cell.addContainer({ app: 'x', netns: 'taken' }); // 10.255.1.2, handed out by the cell itself
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    const log = path.join(dir, 'ipam.log');
    fs.writeFileSync(
      path.join(bin, 'fake-ipam'),
      `#!/bin/sh\nread -r conf\necho "$CNI_COMMAND $CNI_CONTAINERID $conf" >> ${log}\n` +
        `if [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","ips":[{"address":"10.255.1.77/24","gateway":"10.255.1.1"}]}'; fi\n`,
      { mode: 0o755 },
    );
    const netns = ns('i');
    const c = conf(sock, { app: 'appI', ipam: { type: 'fake-ipam' } });
    const out = await runPlugin(env({ CNI_NETNS: netns, CNI_CONTAINERID: 'ipam1', CNI_PATH: `/nonexistent:${bin}` }), c);
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout).ips[0].address).toBe('10.255.1.77/32');
    expect(cell.listContainers().find((x) => x.container_id === 'ipam1')?.ip).toBe('10.255.1.77');
    const del = await runPlugin(env({ CNI_COMMAND: 'DEL', CNI_NETNS: netns, CNI_CONTAINERID: 'ipam1', CNI_PATH: bin }), c);
    expect(del.exitCode).toBe(0);
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['ADD ipam1', 'DEL ipam1']);
    expect(JSON.parse(lines[0]!.split(' ').slice(2).join(' ')).ipam).toEqual({ type: 'fake-ipam' });
    // An address outside the lease from IPAM: the cell refuses and IPAM is told to release it.
    fs.writeFileSync(path.join(bin, 'fake-ipam'), `#!/bin/sh\nread -r conf\necho "$CNI_COMMAND" >> ${log}\nif [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.9/24"}]}'; fi\n`, { mode: 0o755 });
    const bad = await runPlugin(env({ CNI_NETNS: netns, CNI_CONTAINERID: 'ipam2', CNI_PATH: bin }), c);
    expect(JSON.parse(bad.stdout)).toMatchObject({ code: 101 });
    expect(fs.readFileSync(log, 'utf8').trim().split('\n').slice(-2)).toEqual(['ADD', 'DEL']);
    expect(cell.listContainers().map((x) => x.container_id ?? '-')).toEqual(['-']);
  });
});
