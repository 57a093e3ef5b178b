// CNI 1.1.0 in silkworm-cni, against a real cell (in memory) over its admin
// socket, driven as a runtime drives a plugin: STATUS (ready, cell gone →
// 51, lease full → 50, a delegated IPAM plugin asked only if it speaks
// 1.1.0), GC (only this network's CNI attachments that are not in
// cni.dev/valid-attachments go; IPAM gets GC, or a DEL per removed attachment
// when it does not speak 1.1.0), the 1.1.0 result's interface MTU, and the
// version a 1.0.0-only IPAM plugin is spoken to in.
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
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swcni11-'));
  ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
  const net = new FakeContainerNet();
  const cell = new Cell({ name: 'cell1', controller: new ControllerClient(ctl.address), underlayIp: '198.18.0.11', io: memoryCellIo(new MemoryUnderlay({ delivery: 'microtask' })), containerNet: net });
  await cell.start();
  cells.push(cell);
  const sock = path.join(dir, 'cell1.sock');
  admin = await serveAdmin(cell, { kind: 'unix', path: sock });
  const ns = (name: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, '');
    return p;
  };
  return { cell, net, sock, ns };
}

/**
 * An IPAM plugin in a CNI_PATH directory: logs "COMMAND CONTAINERID IFNAME <stdin>"
 * per call, lists `versions` in VERSION, hands out 10.255.1.100 upwards, and
 * fails STATUS with code 50 while `<dir>/ipam-down` exists.
 */
function fakeIpam(versions: string[]): { bin: string; calls: () => { cmd: string; id: string; ifname: string; conf: Record<string, unknown> }[] } {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const log = path.join(dir, 'ipam.log');
  const cnt = path.join(dir, 'ipam.cnt');
  fs.writeFileSync(
    path.join(bin, 'fake-ipam'),
    [
      '#!/bin/sh',
      'read -r conf',
      `printf '%s %s %s %s\\n' "$CNI_COMMAND" "\${CNI_CONTAINERID:--}" "\${CNI_IFNAME:--}" "$conf" >> ${log}`,
      'case "$CNI_COMMAND" in',
      `VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":${JSON.stringify(versions)}}' ;;`,
      `ADD) n=$(cat ${cnt} 2>/dev/null || echo 100); echo $((n+1)) > ${cnt}; echo "{\\"cniVersion\\":\\"1.0.0\\",\\"ips\\":[{\\"address\\":\\"10.255.1.$n/24\\"}]}" ;;`,
      `STATUS) if [ -e ${path.join(dir, 'ipam-down')} ]; then echo '{"cniVersion":"1.1.0","code":50,"msg":"pool empty"}'; exit 1; fi ;;`,
      'esac',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const calls = () =>
    fs.existsSync(log)
      ? fs
          .readFileSync(log, 'utf8')
          .trim()
          .split('\n')
          .map((l) => {
            const [cmd, id, ifname, ...rest] = l.split(' ');
            return { cmd: cmd!, id: id!, ifname: ifname!, conf: JSON.parse(rest.join(' ') || '{}') as Record<string, unknown> };
          })
      : [];
  return { bin, calls };
}

const env = (o: Record<string, string>) => ({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent', ...o });
const conf = (sock: string, extra: object = {}) => JSON.stringify({ cniVersion: '1.1.0', name: 'silkworm', type: 'silkworm-cni', cell: sock, ...extra });
const err = (stdout: string) => JSON.parse(stdout) as { cniVersion: string; code: number; msg: string };

describe('silkworm-cni STATUS (CNI 1.1.0)', () => {
  it('ready: exit 0, nothing on stdout; a 1.0.0 configuration does not allow STATUS (code 1)', async () => {
    const { sock } = await setup();
    expect(await runPlugin({ CNI_COMMAND: 'STATUS' }, conf(sock))).toMatchObject({ exitCode: 0, stdout: '' });
    const old = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf(sock, { cniVersion: '1.0.0' }));
    expect(old.exitCode).not.toBe(0);
    expect(err(old.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 1 });
  });

  it('the cell gone is 51 (its containers lost their data plane too); a full lease is 50', async () => {
    const { cell, sock } = await setup();
    for (let i = 2; i < 255; i++) await cell.addContainer({ app: 'f', netns: `f${i}` });
    const full = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf(sock));
    expect(full.exitCode).not.toBe(0);
    expect(err(full.stdout)).toMatchObject({ cniVersion: '1.1.0', code: 50, msg: expect.stringMatching(/no free address left in the cell's lease 10\.255\.1\.0\/24/) });
    await admin!.close();
    admin = undefined;
    const gone = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf(sock));
    expect(gone.exitCode).not.toBe(0);
    expect(err(gone.stdout)).toMatchObject({ code: 51, msg: expect.stringMatching(/is not running/) });
  });

  it('asks a delegated IPAM plugin that speaks 1.1.0, and its error is 50; one that stops at 1.0.0 is not asked', async () => {
    const { sock } = await setup();
    const ipam = fakeIpam(['0.4.0', '1.0.0', '1.1.0']);
    const c = conf(sock, { ipam: { type: 'fake-ipam' } });
    expect((await runPlugin({ CNI_COMMAND: 'STATUS', CNI_PATH: ipam.bin }, c)).exitCode).toBe(0);
    expect(ipam.calls().map((x) => x.cmd)).toEqual(['VERSION', 'STATUS']);
    expect(ipam.calls()[1]!.conf.cniVersion).toBe('1.1.0');
    fs.writeFileSync(path.join(dir, 'ipam-down'), '');
    const down = await runPlugin({ CNI_COMMAND: 'STATUS', CNI_PATH: ipam.bin }, c);
    expect(err(down.stdout)).toMatchObject({ code: 50, msg: expect.stringMatching(/pool empty/) });

    fs.rmSync(path.join(dir, 'bin'), { recursive: true });
    fs.rmSync(path.join(dir, 'ipam.log'));
    const old = fakeIpam(['0.4.0', '1.0.0']);
    const out = await runPlugin({ CNI_COMMAND: 'STATUS', CNI_PATH: old.bin }, c);
    expect(out).toMatchObject({ exitCode: 0, stdout: '' });
    expect(old.calls().map((x) => x.cmd)).toEqual(['VERSION']);
    expect(out.notes.join('\n')).toMatch(/speaks CNI 1\.0\.0, which has no STATUS/);
    // An IPAM plugin that is not in CNI_PATH: not available.
    expect(err((await runPlugin({ CNI_COMMAND: 'STATUS', CNI_PATH: '/nonexistent' }, c)).stdout)).toMatchObject({ code: 50 });
  });
});

describe('silkworm-cni ADD in 1.1.0', () => {
  it("the result's interface carries the MTU; a 1.0.0-only IPAM plugin is spoken to in 1.0.0", async () => {
    const { cell, sock, ns } = await setup();
    const ipam = fakeIpam(['0.4.0', '1.0.0']);
    const netns = ns('a');
    const out = await runPlugin(env({ CNI_NETNS: netns, CNI_PATH: ipam.bin }), conf(sock, { app: 'appA', ipam: { type: 'fake-ipam' } }));
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'eth0', mac: 'ee:ee:0a:ff:01:64', mtu: cell.dp.innerMtu, sandbox: netns }],
      ips: [{ address: '10.255.1.100/32', gateway: '169.254.0.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: '169.254.0.1' }],
      dns: {},
    });
    expect(ipam.calls().map((x) => `${x.cmd} ${x.conf.cniVersion}`)).toEqual(['VERSION 1.1.0', 'ADD 1.0.0']);
    expect(cell.listContainers()).toMatchObject([{ container_id: 'c1', cni_network: 'silkworm', ip: '10.255.1.100' }]);
  });
});

describe('silkworm-cni GC (CNI 1.1.0)', () => {
  it("removes only this network's CNI attachments that are not valid; others and plain adds stay", async () => {
    const { cell, net, sock, ns } = await setup();
    for (const id of ['k1', 'k2', 'k3']) {
      expect((await runPlugin(env({ CNI_NETNS: ns(id), CNI_CONTAINERID: id }), conf(sock, { app: 'appK' }))).exitCode).toBe(0);
    }
    // The valid list names (container id, ifname): k4 is valid only as net1, so its eth0 attachment is stale.
    expect((await runPlugin(env({ CNI_NETNS: ns('k4'), CNI_CONTAINERID: 'k4' }), conf(sock, { app: 'appK' }))).exitCode).toBe(0);
    expect((await runPlugin(env({ CNI_NETNS: ns('o1'), CNI_CONTAINERID: 'o1' }), conf(sock, { app: 'appO', name: 'other' }))).exitCode).toBe(0);
    await cell.addContainer({ app: 'plain', netns: 'plain-ns' });
    const before = cell.listContainers().length;

    // No list of valid attachments: refused, nothing removed (an empty list would mean "remove all").
    const noList = await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: '/nonexistent' }, conf(sock));
    expect(err(noList.stdout)).toMatchObject({ code: 7 });
    // GC needs 1.1.0.
    const old = await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: '/nonexistent' }, conf(sock, { cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] }));
    expect(err(old.stdout)).toMatchObject({ code: 1 });
    expect(cell.listContainers()).toHaveLength(before);

    const gc = await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: '/nonexistent' }, conf(sock, { 'cni.dev/valid-attachments': [{ containerID: 'k1', ifname: 'eth0' }, { containerID: 'k4', ifname: 'net1' }] }));
    expect(gc).toMatchObject({ exitCode: 0, stdout: '' });
    const left = cell.listContainers().map((c) => `${c.container_id ?? '-'}/${c.ifname ?? 'eth0'}/${c.cni_network ?? '-'}`);
    expect(left.sort()).toEqual(['-/eth0/-', 'k1/eth0/silkworm', 'o1/eth0/other']);
    expect([...net.attached.keys()].sort()).toEqual([path.join(dir, 'k1'), path.join(dir, 'o1'), 'plain-ns'].sort());
    expect(gc.notes.filter((n) => n.includes('GC: removed'))).toHaveLength(3);
    // Again: nothing more to do.
    expect((await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: '/nonexistent' }, conf(sock, { 'cni.dev/valid-attachments': [{ containerID: 'k1', ifname: 'eth0' }] }))).notes).toEqual([]);
  });

  it('hands GC to an IPAM plugin that speaks 1.1.0; one that does not gets a DEL per removed attachment', async () => {
    const { cell, sock, ns } = await setup();
    const ipam = fakeIpam(['1.0.0', '1.1.0']);
    const c = (extra: object = {}) => conf(sock, { app: 'appI', ipam: { type: 'fake-ipam' }, ...extra });
    for (const id of ['i1', 'i2']) expect((await runPlugin(env({ CNI_NETNS: ns(id), CNI_CONTAINERID: id, CNI_PATH: ipam.bin }), c())).exitCode).toBe(0);
    const valid = { 'cni.dev/valid-attachments': [{ containerID: 'i1', ifname: 'eth0' }] };
    expect((await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: ipam.bin }, c(valid))).exitCode).toBe(0);
    const gcCall = ipam.calls().find((x) => x.cmd === 'GC')!;
    expect(gcCall.conf['cni.dev/valid-attachments']).toEqual(valid['cni.dev/valid-attachments']);
    expect(gcCall.conf.cniVersion).toBe('1.1.0');
    expect(ipam.calls().filter((x) => x.cmd === 'DEL')).toEqual([]);
    expect(cell.listContainers().map((x) => x.container_id)).toEqual(['i1']);

    fs.rmSync(path.join(dir, 'bin'), { recursive: true });
    fs.rmSync(path.join(dir, 'ipam.log'));
    const old = fakeIpam(['0.4.0', '1.0.0']);
    expect((await runPlugin(env({ CNI_NETNS: ns('i3'), CNI_CONTAINERID: 'i3', CNI_PATH: old.bin }), c())).exitCode).toBe(0);
    expect((await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: old.bin }, c(valid))).exitCode).toBe(0);
    const dels = old.calls().filter((x) => x.cmd === 'DEL');
    expect(dels.map((x) => `${x.id} ${x.ifname} ${x.conf.cniVersion}`)).toEqual(['i3 eth0 1.0.0']);
    expect(old.calls().some((x) => x.cmd === 'GC')).toBe(false);
    expect(cell.listContainers().map((x) => x.container_id)).toEqual(['i1']);
  });
});
