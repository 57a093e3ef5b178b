// Faults with two controller processes on one PostgreSQL database (a server
// the test starts itself):
// - kill -9 one replica during 500 concurrent policy adds spread over both:
//   every add answered 200 is stored, and a cell's control loop pointed at
//   both moves its watch to the survivor within 2 s;
// - PostgreSQL restarted under load: writes answer 503 (one sentence) while
//   it is away, nothing answered 200 is lost, writes work again after.
// Needs root and the postgresql package. Runs the compiled dist/ (npx tsc -p . first).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpJson, type Address } from '../../src/net/http.js';
import { ControllerClient } from '../../src/net/controller-client.js';
import { ControlLoop } from '../../src/agent/control-loop.js';
import { logger } from '../../src/util/log.js';
import { HAVE_POSTGRES, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function entry(): string {
  const commands = path.join(ROOT, 'dist/cli/commands.js');
  return fs.existsSync(commands) && fs.readFileSync(commands, 'utf8').includes('controller.js')
    ? path.join(ROOT, 'bin/silkworm.js')
    : path.join(ROOT, 'test/e2e/controller-proc.mjs');
}

const children: ChildProcess[] = [];
let server: TestPostgres;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swfo-'));

async function startReplica(sock: string, url: string): Promise<{ child: ChildProcess; addr: Address }> {
  const c = spawn(process.execPath, [entry(), 'controller', '--listen', sock, '--store', url], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(c);
  let err = '';
  c.stderr!.on('data', (d) => (err += d.toString()));
  const addr: Address = { kind: 'unix', path: sock };
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (c.exitCode !== null) throw new Error(`controller exited: ${err}`);
    try {
      if ((await httpJson(addr, 'GET', '/healthz', undefined, { timeoutMs: 1000 })).status === 200) return { child: c, addr };
    } catch {
      /* not up yet */
    }
    await sleep(20);
  }
  throw new Error(`controller did not start: ${err}`);
}

// The load's own connections (one per request): the cell's watch in this
// process must not queue behind 500 adds in the shared keep-alive agent.
function post(addr: Address, body: unknown, timeoutMs = 30_000): Promise<{ status: number; body: { error?: string } | null }> {
  const payload = Buffer.from(JSON.stringify(body));
  const sock = addr.kind === 'unix' ? addr.path : '';
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: sock, method: 'POST', path: '/networking/v1/external/policies', agent: false, timeout: timeoutMs, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let parsed: { error?: string } | null = null;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = null;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(payload);
  });
}

const policy = (n: number) => ({
  source: { id: `app-${n % 11}` },
  destination: { id: `dst-${n}`, protocol: 'tcp' as const, ports: { start: 1000 + (n % 500), end: 1000 + (n % 500) } },
});
const key = (p: { source: { id: string }; destination: { id: string; ports: { start: number } } }) =>
  `${p.source.id}>${p.destination.id}:${p.destination.ports.start}`;

describe.skipIf(!HAVE_POSTGRES)('controller replicas: faults', () => {
  beforeAll(async () => {
    if (!fs.existsSync(path.join(ROOT, 'dist/control/pg-store.js'))) throw new Error('dist/ is missing or old: run npx tsc -p . first');
    server = await startTestPostgres();
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('kill -9 one replica during 500 concurrent adds: every 200 is stored; the cell re-watches the survivor within 2 s', async () => {
    const url = await server.database();
    const a = await startReplica(path.join(dir, 'a.sock'), url);
    const b = await startReplica(path.join(dir, 'b.sock'), url);

    // A cell's control loop, pointed at both (A first, so its watch is held on A).
    const client = new ControllerClient([a.addr, b.addr]);
    const applied: { at: number; addr: Address; version: number }[] = [];
    const loop = new ControlLoop({
      client,
      underlayIp: '198.18.5.1',
      log: logger('cell', { cell: 'fo' }),
      onSnapshot: (s) => {
        applied.push({ at: Date.now(), addr: client.addr, version: s.version });
      },
    });
    await loop.acquire();
    await loop.start();
    expect(client.addr).toEqual(a.addr);

    let answered = 0;
    let killedAt = 0;
    const results = await Promise.all(
      Array.from({ length: 500 }, async (_, n) => {
        const addr = n % 2 ? a.addr : b.addr;
        try {
          const r = await post(addr, { policies: [policy(n)] });
          if (r.status === 200 && ++answered === 100) {
            killedAt = Date.now();
            a.child.kill('SIGKILL');
          }
          return { n, status: r.status };
        } catch {
          return { n, status: 0 };
        }
      }),
    );
    expect(killedAt).toBeGreaterThan(0);
    const ok = results.filter((r) => r.status === 200).map((r) => key(policy(r.n)));
    const failedOnA = results.filter((r) => r.status !== 200);
    expect(ok.length).toBeGreaterThanOrEqual(250); // every add sent to B
    expect(failedOnA.every((r) => r.n % 2 === 1)).toBe(true);

    const stored = new Set(((await httpJson(b.addr, 'GET', '/networking/v1/external/policies')).body.policies as ReturnType<typeof policy>[]).map(key));
    const missing = ok.filter((k) => !stored.has(k));
    expect(missing).toEqual([]);

    // The loop's watch moved to B: the first state applied from B after the kill.
    const deadline = killedAt + 5000;
    while (!applied.some((x) => x.at >= killedAt && x.addr === b.addr) && Date.now() < deadline) await sleep(20);
    const first = applied.find((x) => x.at >= killedAt && x.addr === b.addr);
    expect(first).toBeDefined();
    console.log(`watch moved to the survivor ${first!.at - killedAt} ms after kill -9; ${ok.length} adds answered 200, all stored`);
    expect(first!.at - killedAt).toBeLessThan(2000);
    // and it keeps following B: one more change arrives
    await httpJson(b.addr, 'POST', '/networking/v1/external/policies', { policies: [policy(9999)] });
    const v = (await httpJson(b.addr, 'GET', '/healthz')).body.version as number;
    const until = Date.now() + 2000;
    while (loop.version < v && Date.now() < until) await sleep(10);
    expect(loop.version).toBe(v);
    loop.stop();
    b.child.kill('SIGTERM');
  });

  it('PostgreSQL restarted under load: 503 while it is away, nothing answered 200 lost, writes work after', async () => {
    const url = await server.database();
    const a = await startReplica(path.join(dir, 'ra.sock'), url);
    const b = await startReplica(path.join(dir, 'rb.sock'), url);
    const t0 = Date.now();
    const outcomes: { n: number; status: number; at: number; error?: string }[] = [];
    let n = 0;
    let stop = false;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      while (!stop) {
        const i = n++;
        const addr = (i + w) % 2 ? a.addr : b.addr;
        try {
          const r = await post(addr, { policies: [policy(i)] }, 15_000);
          outcomes.push({ n: i, status: r.status, at: Date.now() - t0, error: r.body?.error });
        } catch (e) {
          outcomes.push({ n: i, status: 0, at: Date.now() - t0, error: (e as Error).message });
        }
        if (outcomes[outcomes.length - 1]!.status !== 200) await sleep(20);
      }
    });
    await sleep(1000);
    await server.cluster.stop();
    const downAt = Date.now() - t0;
    await sleep(1500);
    await server.cluster.start();
    const upAt = Date.now() - t0;
    await sleep(3000);
    stop = true;
    await Promise.all(writers);

    const s503 = outcomes.filter((o) => o.status === 503);
    const ok = outcomes.filter((o) => o.status === 200);
    const other = outcomes.filter((o) => o.status !== 200 && o.status !== 503);
    console.log(`${outcomes.length} adds: ${ok.length} × 200, ${s503.length} × 503, ${other.length} other; database down ${downAt}–${upAt} ms`);
    expect(s503.length).toBeGreaterThan(0);
    expect(other).toEqual([]);
    for (const o of s503) expect(o.error).toMatch(/^the controller's database is unavailable \(.*\); the change was not made, try again$/);
    // writes work again after the restart, on both replicas
    const late = ok.filter((o) => o.at > upAt + 1500);
    expect(late.length).toBeGreaterThan(10);
    expect(new Set(late.map((o) => (o.n % 2 === 0 ? 'x' : 'y'))).size).toBeGreaterThan(0);
    // nothing answered 200 is missing, on either replica
    for (const addr of [a.addr, b.addr]) {
      const stored = new Set(((await httpJson(addr, 'GET', '/networking/v1/external/policies')).body.policies as ReturnType<typeof policy>[]).map(key));
      expect(ok.map((o) => key(policy(o.n))).filter((k) => !stored.has(k))).toEqual([]);
    }
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
  });
});
