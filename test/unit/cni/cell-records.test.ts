// The cell side of silkworm-cni: interface names, fixed addresses from a
// delegated IPAM plugin, the CNI identity on each record, idempotent DEL by
// container id over the admin API, and concurrent adds that never share an
// address or a TAP name.
import { afterEach, describe, expect, it } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { startController, type RunningController } from '../../../src/control/server.js';
import { ControllerClient } from '../../../src/net/controller-client.js';
import { Cell } from '../../../src/cell/cell.js';
import { checkFixedIp } from '../../../src/agent/ipam.js';
import { memoryCellIo } from '../../../src/testing/cell-io.js';
import { FakeContainerNet } from '../../../src/testing/fake-container-net.js';
import { MemoryUnderlay } from '../../../src/testing/memory.js';
import { adminRouter } from '../../../src/cell/admin.js';
import type { JsonRequest } from '../../../src/net/http.js';
import { KernelCell } from '../../../src/kernel/kernel-cell.js';
import { FakeExec } from '../../../src/testing/fake-exec.js';
import { fakeController } from '../../../src/testing/fake-controller.js';
import type { Lease } from '../../../src/net/controller-client.js';

let ctl: RunningController | undefined;
const cells: Cell[] = [];
let dir = '';

afterEach(async () => {
  for (const c of cells.splice(0)) await c.stop();
  await ctl?.close();
  ctl = undefined;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function setup() {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swcni-'));
  ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
  const io = memoryCellIo(new MemoryUnderlay({ delivery: 'microtask' }));
  const net = new FakeContainerNet();
  const cell = new Cell({ name: 'cell1', controller: new ControllerClient(ctl.address), underlayIp: '198.18.0.11', io, containerNet: net });
  await cell.start();
  cells.push(cell);
  const router = adminRouter(cell);
  const call = async (method: string, p: string, body?: unknown) =>
    router.handle({ method, path: p, query: new URLSearchParams(), body, signal: new AbortController().signal } as JsonRequest);
  return { cell, net, io, call };
}

describe('cell records for CNI', () => {
  it('attaches under the runtime\'s interface name and records container id, ifname and netns path', async () => {
    const { cell, net } = await setup();
    const info = await cell.addContainer({ app: 'appA', netns: '/run/netns/cni-1234', ifname: 'net1', containerId: 'abc123' });
    expect(info).toMatchObject({ handle: 'abc123', ifname: 'net1', container_id: 'abc123', netns: '/run/netns/cni-1234', ip: '10.255.1.2' });
    expect(net.ifnames.get('/run/netns/cni-1234')).toBe('net1');
    expect(cell.listContainers()[0]).toMatchObject({ container_id: 'abc123', ifname: 'net1' });
    expect(cell.findContainer({ containerId: 'abc123', ifname: 'net1' })).toBe('abc123');
    expect(cell.findContainer({ containerId: 'abc123', ifname: 'eth0' })).toBeUndefined();
    // Plain `container add` keeps eth0 and no container id.
    const plain = await cell.addContainer({ app: 'appB', netns: 'ns2' });
    expect(plain.ifname).toBeUndefined(); // eth0, and the record keeps its old shape
    expect(plain.container_id).toBeUndefined();
  });

  it('a namespace is the same by name or by /run/netns path: found either way, never attached twice', async () => {
    const { cell } = await setup();
    await cell.addContainer({ app: 'appA', netns: '/run/netns/lab-appA-0', containerId: 'lab-appA-0' });
    expect(cell.findContainer({ netns: 'lab-appA-0' })).toBe('lab-appA-0');
    expect(cell.findContainer({ netns: '/run/netns/lab-appA-0' })).toBe('lab-appA-0');
    await expect(cell.addContainer({ app: 'appA', netns: 'lab-appA-0' })).rejects.toThrow(/already has a container/);
  });

  it('refuses bad interface names and container ids', async () => {
    const { cell } = await setup();
    await expect(cell.addContainer({ app: 'a', netns: 'n1', ifname: 'waytoolonginterface' })).rejects.toThrow(/interface name/);
    await expect(cell.addContainer({ app: 'a', netns: 'n1', ifname: 'a/b' })).rejects.toThrow(/interface name/);
    await expect(cell.addContainer({ app: 'a', netns: 'n1', containerId: '../x' })).rejects.toThrow(/container id/);
    expect(cell.listContainers()).toEqual([]);
  });

  it('takes a fixed address only inside its lease, not reserved and not in use', async () => {
    const { cell } = await setup();
    expect(() => checkFixedIp('10.255.2.5', '10.255.1.0/24')).toThrow(/outside the cell's lease/);
    expect(() => checkFixedIp('10.255.1.0', '10.255.1.0/24')).toThrow(/reserved/);
    expect(() => checkFixedIp('10.255.1.1', '10.255.1.0/24')).toThrow(/reserved/);
    expect(() => checkFixedIp('10.255.1.255', '10.255.1.0/24')).toThrow(/reserved/);
    expect(() => checkFixedIp('nope', '10.255.1.0/24')).toThrow(/not an IPv4/);
    const a = await cell.addContainer({ app: 'a', netns: 'n1', ip: '10.255.1.77' });
    expect(a.ip).toBe('10.255.1.77');
    await expect(cell.addContainer({ app: 'a', netns: 'n2', ip: '10.255.1.77' })).rejects.toThrow(/already in use/);
    await expect(cell.addContainer({ app: 'a', netns: 'n2', ip: '10.255.9.7' })).rejects.toThrow(/outside/);
  });

  it('20 concurrent adds get 20 distinct addresses and TAPs, even though attach awaits', async () => {
    const { cell, net, io } = await setup();
    net.delayMs = 20;
    const infos = await Promise.all(
      Array.from({ length: 20 }, (_, i) => cell.addContainer({ app: 'appC', netns: `/run/netns/c${i}`, containerId: `id${i}` })),
    );
    const ips = new Set(infos.map((x) => x.ip));
    expect(ips.size).toBe(20);
    expect(new Set([...net.attached.values()].map((a) => a.tap)).size).toBe(20);
    expect(io.taps.size).toBe(20);
    // The same namespace twice at once: one wins, one is refused.
    const two = await Promise.allSettled([cell.addContainer({ app: 'x', netns: 'same' }), cell.addContainer({ app: 'x', netns: 'same', handle: 'h2' })]);
    expect(two.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
  });

  it('admin API: ADD with ifname/ip/container_id, DEL by container id is idempotent, exhaustion answers 507', async () => {
    const { cell, call } = await setup();
    const add = await call('POST', '/containers', { app: 'appA', netns: '/run/netns/x', ifname: 'eth1', ip: '10.255.1.9', container_id: 'c1' });
    expect(add.status).toBe(201);
    expect(add.body).toMatchObject({ ip: '10.255.1.9', ifname: 'eth1', container_id: 'c1' });
    const list = await call('GET', '/containers');
    expect((list.body as { containers: unknown[] }).containers).toHaveLength(1);
    const del1 = await call('POST', '/containers/delete', { container_id: 'c1', ifname: 'eth1' });
    expect(del1).toMatchObject({ status: 200, body: { removed: true, ip: '10.255.1.9' } });
    const del2 = await call('POST', '/containers/delete', { container_id: 'c1', ifname: 'eth1' });
    expect(del2).toMatchObject({ status: 200, body: { removed: false } });
    expect(cell.listContainers()).toEqual([]);
    // Without container_id a missing container is still 404, as before.
    await expect(call('POST', '/containers/delete', { handle: 'nope' })).rejects.toMatchObject({ status: 404 });
    // Fill the /24 (253 usable addresses), then one more → 507.
    for (let i = 2; i < 255; i++) await cell.addContainer({ app: 'f', netns: `f${i}` });
    await expect(call('POST', '/containers', { app: 'f', netns: 'over' })).rejects.toMatchObject({ status: 507 });
  });

  it('two DELs of one container id at once both succeed: the second finds nothing (looked up in the queue)', async () => {
    const { cell, net, call } = await setup();
    await call('POST', '/containers', { app: 'appA', netns: '/run/netns/d', container_id: 'd1', cni_network: 'silkworm' });
    net.delayMs = 20;
    const [a, b] = await Promise.all([
      call('POST', '/containers/delete', { container_id: 'd1', ifname: 'eth0' }),
      call('POST', '/containers/delete', { container_id: 'd1', ifname: 'eth0' }),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([(a.body as { removed: boolean }).removed, (b.body as { removed: boolean }).removed].sort()).toEqual([false, true]);
    expect(cell.listContainers()).toEqual([]);
  });

  it('a CNI network name is recorded with its container id, and only with one', async () => {
    const { cell, call } = await setup();
    const add = await call('POST', '/containers', { app: 'appA', netns: '/run/netns/n', container_id: 'n1', cni_network: 'net-a' });
    expect(add.body).toMatchObject({ container_id: 'n1', ifname: 'eth0', cni_network: 'net-a' });
    expect(cell.listContainers()[0]).toMatchObject({ cni_network: 'net-a' });
    await expect(cell.addContainer({ app: 'a', netns: 'm', cniNetwork: 'net-a' })).rejects.toThrow(/comes with a container id/);
    await expect(cell.addContainer({ app: 'a', netns: 'm', containerId: 'm1', cniNetwork: 'has space' })).rejects.toThrow(/CNI network name/);
    const plain = await cell.addContainer({ app: 'b', netns: 'p' });
    expect(plain.cni_network).toBeUndefined();
  });

  it('the kernel backend gives the veth the same CNI identity: CNI_IFNAME, a fixed IP, DEL by container id', async () => {
    const ours: Lease = { underlay_ip: '198.18.0.12', overlay_subnet: '10.255.2.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:02:00' };
    const exec = new FakeExec();
    const net = new FakeContainerNet();
    const kc = new KernelCell({
      name: 'cell2',
      controller: fakeController(ours, { version: 1, leases: [ours], policies: [], tags: [] }),
      underlayIp: '198.18.0.12',
      underlayDev: 'eth0',
      containerNet: net,
      exec,
      nowSeconds: () => 1700000000,
      sysClassNet: '/nonexistent',
      reapInterval: 3600,
    });
    await kc.start();
    try {
      const info = await kc.addContainer({ app: 'appK', netns: '/run/netns/cni-k', ifname: 'net1', ip: '10.255.2.40', containerId: 'k1', cniNetwork: 'silkworm' });
      expect(info).toMatchObject({ handle: 'k1', ip: '10.255.2.40', ifname: 'net1', container_id: 'k1', cni_network: 'silkworm' });
      expect(net.ifnames.get('/run/netns/cni-k')).toBe('net1');
      expect(net.attached.get('/run/netns/cni-k')?.tap).toMatch(/^c-/); // the veth's container end
      await expect(kc.addContainer({ app: 'appK', netns: 'cni-k' })).rejects.toThrow(/already has a container/);
      expect(await kc.removeIfPresent({ containerId: 'k1', ifname: 'net1' })).toMatchObject({ ip: '10.255.2.40' });
      expect(net.attached.size).toBe(0);
      expect(exec.lines().some((l) => /^ip link del s-010255002040/.test(l))).toBe(true);
      expect(await kc.removeIfPresent({ containerId: 'k1', ifname: 'net1' })).toBeUndefined();
    } finally {
      await kc.stop();
    }
  });
});
