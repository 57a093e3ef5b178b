// Two whole cells (agent + data plane) against a real in-process controller,
// over in-memory TAPs and an in-memory underlay: leases become routes, a
// policy added through the API reaches both cells by watch, and a container's
// frame crosses only when the policy allows it.
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
import { formatRoute } from '../../../src/tables/route.js';
import { containerFrame } from '../../helpers/packets.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { until } from '../../helpers/until.js';

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
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swcell-'));
  ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
  const client = new ControllerClient(ctl.address);
  const hub = new MemoryUnderlay({ delivery: 'microtask' });
  const mk = async (name: string, ip: string) => {
    const io = memoryCellIo(hub);
    const net = new FakeContainerNet();
    const cell = new Cell({ name, controller: new ControllerClient(ctl!.address), underlayIp: ip, io, containerNet: net });
    await cell.start();
    cells.push(cell);
    return { cell, io, net };
  };
  const c1 = await mk('cell1', '198.18.0.11');
  const c2 = await mk('cell2', '198.18.0.12');
  return { client, c1, c2, hub };
}

describe('cell agent', () => {
  it('acquires distinct leases and builds routes, neighbors and FDB from them', async () => {
    const { c1, c2 } = await setup();
    expect(c1.cell.lease.overlay_subnet).toBe('10.255.1.0/24');
    expect(c2.cell.lease.overlay_subnet).toBe('10.255.2.0/24');
    await until(() => c1.cell.dp.routes.entries().length === 1);
    expect(c1.cell.dp.routes.entries().map(formatRoute)).toEqual(['10.255.2.0/24 via 10.255.2.0 dev silk-vtep src 10.255.1.0']);
  });

  it('a frame crosses only under a policy added through the API, then replies flow back', async () => {
    const { client, c1, c2 } = await setup();
    const a = await c1.cell.addContainer({ app: 'appA', netns: 't-appA-0' });
    const b = await c2.cell.addContainer({ app: 'appB', netns: 't-appB-0' });
    expect(a.ip).toBe('10.255.1.2');
    expect(b.ip).toBe('10.255.2.2');
    expect(c1.net.attached.get('t-appA-0')).toEqual({ tap: 's-010255001002', ip: ipToU32('10.255.1.2'), mtu: 1450 });
    const tapA = c1.io.taps.get('s-010255001002')!;
    const tapB = c2.io.taps.get('s-010255002002')!;
    await until(() => c2.cell.dp.routes.lookup(ipToU32('10.255.1.2')) !== undefined);

    // No policy: the SYN is rejected; appB gets ICMP port unreachable back.
    tapB.inject(containerFrame('10.255.2.2', '10.255.1.2', { proto: 'tcp', sport: 40000, dport: 8080, flags: 0x02 }));
    await until(() => tapB.written.length === 1);
    expect(tapA.written.length).toBe(0);
    const rej = tapB.written[0]!;
    expect(rej[14 + 9]).toBe(1); // ICMP
    expect([rej[34], rej[35]]).toEqual([3, 3]); // destination unreachable, port unreachable

    await client.addPolicies([{ source: { id: 'appB' }, destination: { id: 'appA', protocol: 'tcp', ports: { start: 8080, end: 8080 } } }]);
    await until(() => c2.cell.dp.port(0)?.tag === 1 && c1.cell.dp.plan.accepts.length === 1);
    tapB.inject(containerFrame('10.255.2.2', '10.255.1.2', { proto: 'tcp', sport: 40001, dport: 8080, flags: 0x02 }));
    await until(() => tapA.written.length === 1);
    const syn = tapA.written[0]!;
    expect(syn[14 + 8]).toBe(62); // TTL: 64 - one per cell
    expect(Buffer.from(syn.subarray(0, 12)).toString('hex')).toBe('eeee0aff0102aaaa0aff0102');

    // The SYN-ACK from appA (no policy appA → appB) is let back in by conntrack.
    tapA.inject(containerFrame('10.255.1.2', '10.255.2.2', { proto: 'tcp', sport: 8080, dport: 40001, flags: 0x12 }));
    await until(() => tapB.written.length === 2);
    expect(tapB.written[1]![14 + 9]).toBe(6);

    // Removing the policy frees the tag: appB's packets leave untagged.
    await client.deletePolicies([{ source: { id: 'appB' }, destination: { id: 'appA', protocol: 'tcp', ports: { start: 8080, end: 8080 } } }]);
    await until(() => c2.cell.dp.port(0)?.tag === 0);
    expect(await client.tags()).toEqual([]);
  });

  it('container add refuses a missing namespace and a second container in one namespace', async () => {
    const { c1 } = await setup();
    await c1.cell.addContainer({ app: 'appA', netns: 'ns1' });
    await expect(c1.cell.addContainer({ app: 'appA', netns: 'ns1' })).rejects.toThrow(/already has a container/);
    await expect(c1.cell.addContainer({ app: 'bad app!', netns: 'ns2' })).rejects.toThrow(/app must be/);
    expect(c1.cell.listContainers().length).toBe(1);
  });

  it('a snapshot that changes no policy keeps the compiled rules and their hit counts', async () => {
    const { client, c1, c2 } = await setup();
    await c1.cell.addContainer({ app: 'appA', netns: 't-appA-0' });
    await c2.cell.addContainer({ app: 'appB', netns: 't-appB-0' });
    const tapA = c1.io.taps.get('s-010255001002')!;
    const tapB = c2.io.taps.get('s-010255002002')!;
    await client.addPolicies([{ source: { id: 'appB' }, destination: { id: 'appA', protocol: 'tcp', ports: { start: 8080, end: 8080 } } }]);
    await until(() => c2.cell.dp.port(0)?.tag === 1 && c1.cell.dp.plan.accepts.length === 1 && c2.cell.dp.routes.lookup(ipToU32('10.255.1.2')) !== undefined);
    tapB.inject(containerFrame('10.255.2.2', '10.255.1.2', { proto: 'tcp', sport: 40002, dport: 8080, flags: 0x02 }));
    await until(() => tapA.written.length === 1);
    expect(c1.cell.dp.ruleHits[0]).toBe(1);
    const plan = c1.cell.dp.plan;
    // The same policies again (a lease renewal or any other change bumps the version).
    await c1.cell.applySnapshot({ ...(await client.snapshot()), version: 1000 });
    expect(c1.cell.dp.plan).toBe(plan);
    expect(c1.cell.dp.ruleHits[0]).toBe(1);
    // A real change replans.
    await client.addPolicies([{ source: { id: 'appB' }, destination: { id: 'appA', protocol: 'udp', ports: { start: 53, end: 53 } } }]);
    await until(() => c1.cell.dp.plan.accepts.length === 2);
    expect(c1.cell.dp.plan).not.toBe(plan);
  });

  it('zero-copy segments (headers in the slot, payload in batch.ext) arrive whole: to another cell, to a container on the same cell, and an ICMP error built in place is not overwritten', async () => {
    const { client, c1, c2 } = await setup();
    await c1.cell.addContainer({ app: 'appA', netns: 't-appA-0' });
    await c2.cell.addContainer({ app: 'appB', netns: 't-appB-0' });
    await c2.cell.addContainer({ app: 'appC', netns: 't-appC-0' });
    const tapA = c1.io.taps.get('s-010255001002')!;
    const tapB = c2.io.taps.get('s-010255002002')!;
    const tapC = c2.io.taps.get('s-010255002003')!;
    const tcp8080 = { protocol: 'tcp', ports: { start: 8080, end: 8080 } };
    await client.addPolicies([
      { source: { id: 'appB' }, destination: { id: 'appA', ...tcp8080 } },
      { source: { id: 'appB' }, destination: { id: 'appC', ...tcp8080 } },
    ]);
    await until(
      () =>
        c2.cell.dp.port(0)?.tag !== 0 &&
        c1.cell.dp.plan.accepts.length === 1 &&
        c2.cell.dp.plan.accepts.length === 1 &&
        c2.cell.dp.routes.lookup(ipToU32('10.255.1.2')) !== undefined,
    );
    const payload = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff);
    const HEAD = 14 + 20 + 20;
    const seg = (dst: string, ttl = 64) => containerFrame('10.255.2.2', dst, { proto: 'tcp', sport: 40010, dport: 8080, flags: 0x18, payload, ttl });

    // To another cell: the underlay gathers slot + piece.
    const f1 = seg('10.255.1.2');
    expect(tapB.injectSplit(f1, HEAD)).toBe(1);
    await until(() => tapA.written.length === 1);
    const got1 = tapA.written[0]!;
    expect(got1.length).toBe(f1.length);
    expect(got1[14 + 8]).toBe(62);
    expect(got1.subarray(34)).toEqual(f1.subarray(34)); // TCP header and payload unchanged
    expect(referenceChecksum(got1.subarray(14, 34))).toBe(0);

    // To a container on the same cell: the piece is copied into the slot before the TAP write.
    const f2 = seg('10.255.2.3');
    expect(tapB.injectSplit(f2, HEAD)).toBe(1);
    await until(() => tapC.written.length === 1);
    const got2 = tapC.written[0]!;
    expect(got2.length).toBe(f2.length);
    expect(got2.subarray(34)).toEqual(f2.subarray(34));

    // TTL 1: time exceeded, built in place in the slot and sent back to appB, whole and verifying.
    expect(tapB.injectSplit(seg('10.255.1.2', 1), HEAD)).toBe(1);
    await until(() => tapB.written.length === 1);
    const icmp = tapB.written[0]!;
    expect(icmp[14 + 9]).toBe(1);
    expect(icmp[34]).toBe(11);
    const ipLen = (icmp[16]! << 8) | icmp[17]!;
    expect(icmp.length).toBe(14 + ipLen);
    expect(referenceChecksum(icmp.subarray(34, 14 + ipLen))).toBe(0);

    // The same with a 16-byte payload: the segment is exactly as long as the reply (14 + 20 + 8 + 20 + 8),
    // so only the reference the egress drops with the reply keeps its last 16 bytes from being overwritten.
    const small = containerFrame('10.255.2.2', '10.255.1.2', { proto: 'tcp', sport: 40011, dport: 8080, flags: 0x18, payload: payload.subarray(0, 16), ttl: 1 });
    expect(small.length).toBe(70);
    expect(tapB.injectSplit(small, HEAD)).toBe(1);
    await until(() => tapB.written.length === 2);
    const icmp2 = tapB.written[1]!;
    expect(icmp2.length).toBe(70);
    expect(referenceChecksum(icmp2.subarray(34, 70))).toBe(0);
    expect(icmp2.subarray(42 + 20, 70)).toEqual(small.subarray(34, 42)); // the quoted first 8 bytes of TCP
    expect(c2.cell.dp.counters.drops.reduce((a, b) => a + b, 0)).toBe(2); // the two ttl-exceeded ones only
  });
});
