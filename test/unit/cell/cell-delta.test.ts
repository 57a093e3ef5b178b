// A cell following the controller by delta watch: it applies only the
// changes, plans its rules again only when a change names one of its apps,
// and its rules are the same as planning from a full snapshot.
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
import { plan } from '../../../src/policy/planner.js';
import type { ControlState } from '../../../src/dataplane/state.js';
import { until } from '../../helpers/until.js';

let ctl: RunningController | undefined;
let cell: Cell | undefined;
let dir = '';

afterEach(async () => {
  await cell?.stop();
  await ctl?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const pol = (s: string, d: string, port: number) => ({ source: { id: s }, destination: { id: d, protocol: 'tcp' as const, ports: { start: port, end: port } } });

describe('cell on the delta watch', () => {
  it('applies deltas; replans only for changes that name its apps; same rules as a full plan', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swdelta-'));
    ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
    const client = new ControllerClient(ctl.address);
    cell = new Cell({
      name: 'cell1',
      controller: new ControllerClient(ctl.address),
      underlayIp: '198.18.0.11',
      io: memoryCellIo(new MemoryUnderlay({ delivery: 'microtask' })),
      containerNet: new FakeContainerNet(),
    });
    await cell.start();
    await cell.addContainer({ app: 'appA', netns: 'd-appA-0' });
    await client.addPolicies([pol('appB', 'appA', 8080)]);
    await until(() => cell!.loop.version === ctl!.controller.version);
    const swapped = cell.dp.converger.swapped;
    const unchanged = cell.dp.converger.unchanged;

    // 20 changes between other apps: held, never planned
    for (let i = 0; i < 20; i++) await client.addPolicies([pol(`x${i}`, `y${i}`, 9000 + i)]);
    await until(() => cell!.loop.version === ctl!.controller.version);
    expect(cell.dp.converger.swapped).toBe(swapped);
    expect(cell.dp.converger.unchanged).toBe(unchanged);
    expect(cell.loop.deltasApplied).toBeGreaterThan(0);

    // one naming appA: planned again, and the new rule is there
    await client.addPolicies([pol('y3', 'appA', 7070)]);
    await until(() => cell!.loop.version === ctl!.controller.version);
    expect(cell.dp.converger.swapped).toBe(swapped + 1);

    // what the cell holds and enforces equals a plan from the controller's full snapshot
    const snap = ctl.controller.snapshot();
    const st = (cell.dp as unknown as { state: ControlState }).state;
    const ports = st.listPorts().map((p) => ({ handle: p.handle, ip: p.ip, app: p.app }));
    expect(st.policies).toEqual(snap.policies);
    expect(st.policy.plan).toEqual(plan(snap.policies, ports));
    expect(st.policy.plan.accepts.map((a) => `${a.srcApp}:${a.portStart}`).sort()).toEqual(['appB:8080', 'y3:7070']);

    // deleting a policy of other apps frees their tags: still no plan
    await client.deletePolicies([pol('x1', 'y1', 9001)]);
    await until(() => cell!.loop.version === ctl!.controller.version);
    expect(cell.dp.converger.swapped).toBe(swapped + 1);
    expect(st.policies).toEqual(ctl.controller.snapshot().policies);
  });
});
