// io-layer drops reach the one drop-reason table: a cell over in-memory
// devices whose TAP queue is full counts `tap-tx-full` in its counters, in
// `show counters`' snapshot and in Prometheus' silkworm_drops_total, and each
// frame ends in exactly one outcome.
import { afterEach, describe, expect, it } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { startController, type RunningController } from '../../../src/control/server.js';
import { ControllerClient } from '../../../src/net/controller-client.js';
import { Cell } from '../../../src/cell/cell.js';
import { cellRegistry } from '../../../src/cell/metrics.js';
import { FakeContainerNet } from '../../../src/testing/fake-container-net.js';
import { Drop, DROP_NAMES, Stat } from '../../../src/dataplane/counters.js';
import { memoryCellIo } from '../../../src/testing/cell-io.js';
import { MemoryFrameDevice, MemoryUnderlay } from '../../../src/testing/memory.js';
import { containerFrame } from '../../helpers/packets.js';
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

describe('io drops in the drop-reason table', () => {
  it('has a name for every reason, the io block last', () => {
    expect(DROP_NAMES).toHaveLength(Drop.Count);
    expect(DROP_NAMES[Drop.TapTxFull]).toBe('tap-tx-full');
    expect(DROP_NAMES[Drop.UnderlayTxRefused]).toBe('underlay-tx-refused');
    expect(new Set(DROP_NAMES).size).toBe(DROP_NAMES.length);
  });

  it('a full container TAP queue is counted as tap-tx-full, once per frame, and reaches show counters and Prometheus', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swdrops-'));
    ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
    const client = new ControllerClient(ctl.address);
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const io = memoryCellIo(hub);
    const cell = new Cell({ name: 'cell1', controller: new ControllerClient(ctl.address), underlayIp: '198.18.0.11', io, containerNet: new FakeContainerNet() });
    await cell.start();
    cells.push(cell);
    await cell.addContainer({ app: 'appA', netns: 'ns-a' });
    await cell.addContainer({ app: 'appB', netns: 'ns-b' });
    await client.addPolicies([{ source: { id: 'appA' }, destination: { id: 'appB', protocol: 'tcp', ports: { start: 8080, end: 8080 } } }]);
    await until(() => cell.dp.plan.accepts.length === 1 && cell.dp.port(0)?.tag === 1);
    const a = io.taps.get('s-010255001002')!;
    const b = io.taps.get('s-010255001003')!;
    b.writeBudget = 1; // the second and third frames find the queue full
    a.inject(...[0, 1, 2].map((i) => containerFrame('10.255.1.2', '10.255.1.3', { proto: 'tcp', sport: 40000 + i, dport: 8080, flags: 0x02 })));

    const c = cell.dp.counters;
    expect(b.written).toHaveLength(1);
    expect(c.drops[Drop.TapTxFull]).toBe(2);
    // Every frame the pipeline handed to the device was written or dropped under one reason, never both.
    expect(c.stats[Stat.DeliveredLocal]).toBe(3);
    expect(b.stats.txFrames + c.drops[Drop.TapTxFull]!).toBe(c.stats[Stat.DeliveredLocal]);
    const others = Array.from(c.drops).reduce((s, v, i) => (i === Drop.TapTxFull ? s : s + v), 0);
    expect(others).toBe(0);

    // What `show counters` reads (GET /counters: the snapshot) and what Prometheus scrapes.
    expect(c.snapshot().drops['tap-tx-full']).toBe(2);
    const text = await cellRegistry(cell).metrics();
    expect(text).toMatch(/^silkworm_drops_total\{reason="tap-tx-full",cell="cell1"\} 2$/m);
    expect(text).toMatch(/^silkworm_drops_total\{reason="underlay-rx-oversize",cell="cell1"\} 0$/m);
  });

  it('an oversize frame from a container and a refused underlay packet are counted by the fakes too', async () => {
    const drops = new Float64Array(Drop.Count);
    const dev = new MemoryFrameDevice('m0', { slotSize: 256, drops });
    dev.start(() => undefined);
    expect(dev.inject(new Uint8Array(1000), new Uint8Array(60))).toBe(1);
    expect(drops[Drop.TapRxOversize]).toBe(1);
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const s = hub.join(0xc612000b, { drops });
    // Not an IPv4/UDP packet: the fake network refuses it, as a kernel would with EINVAL.
    expect(s.send(new Uint8Array(40), Uint32Array.of(0), Uint32Array.of(40), Uint32Array.of(0xc612000c), 1)).toBe(0);
    expect(drops[Drop.UnderlayTxRefused]).toBe(1);
  });
});
