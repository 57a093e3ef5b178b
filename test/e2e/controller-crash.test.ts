// Durability: SIGKILL the controller process at random moments while clients
// add policies. Every policy the controller acknowledged (HTTP 200) must be
// there after the restart, and every tag a client saw must be unchanged.
// Needs no root. Runs the compiled dist/ (npx tsc -p . first).
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpJson } from '../../src/net/http.js';
import { ControllerClient } from '../../src/net/controller-client.js';
import type { Address } from '../../src/cli/util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function entry(): string {
  const commands = path.join(ROOT, 'dist/cli/commands.js');
  return fs.existsSync(commands) && fs.readFileSync(commands, 'utf8').includes('controller.js')
    ? path.join(ROOT, 'bin/silkworm.js')
    : path.join(ROOT, 'test/e2e/controller-proc.mjs');
}

const ROUNDS = 5;
const WRITERS = 4;

let child: ChildProcess | undefined;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swcrash-'));
afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

async function startController(sock: string, db: string): Promise<ChildProcess> {
  if (!fs.existsSync(path.join(ROOT, 'dist/control/server.js'))) throw new Error('dist/ is missing: run npx tsc -p . first');
  const c = spawn(process.execPath, [entry(), 'controller', '--listen', sock, '--store', db], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  c.stderr!.on('data', (d) => (err += d.toString()));
  const addr: Address = { kind: 'unix', path: sock };
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (c.exitCode !== null) throw new Error(`controller exited: ${err}`);
    try {
      if ((await httpJson(addr, 'GET', '/healthz', undefined, { timeoutMs: 1000 })).status === 200) return c;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`controller did not start: ${err}`);
}

const policy = (n: number) => ({
  // each policy brings one new app (its destination) so tags keep being allocated
  source: { id: `app-${n % 7}` },
  destination: { id: `app-${n + 7}`, protocol: 'tcp' as const, ports: { start: 1000 + (n % 100), end: 1000 + (n % 100) } },
});

describe('controller durability under SIGKILL', () => {
  it(`keeps every acknowledged policy and every seen tag across ${ROUNDS} kill -9s`, async () => {
    const sock = path.join(dir, 'c.sock');
    const db = path.join(dir, 'c.db');
    const addr: Address = { kind: 'unix', path: sock };
    const client = new ControllerClient(addr, { timeoutMs: 5000 });
    const acked = new Set<number>();
    const seenTags = new Map<string, string>();
    let next = 0;
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);

    for (let round = 0; round < ROUNDS; round++) {
      child = await startController(sock, db);

      // After each restart: everything acknowledged before is there, tags unchanged.
      const have = new Set((await client.policies()).map((p) => Number(p.destination.id.slice(4)) - 7));
      for (const n of acked) if (!have.has(n)) throw new Error(`round ${round}: acknowledged policy ${n} is missing`);
      const tags = new Map((await client.tags()).map((t) => [t.id, t.tag]));
      for (const [id, tag] of seenTags) {
        if (tags.get(id) !== tag) throw new Error(`round ${round}: ${id} had tag ${tag}, now ${tags.get(id)}`);
      }

      let alive = true;
      const writer = async () => {
        while (alive) {
          const n = next++;
          try {
            await client.addPolicies([policy(n)]);
            acked.add(n);
            if (n % 5 === 0) for (const t of await client.tags()) seenTags.set(t.id, t.tag);
          } catch {
            return; // the controller died under us: this request may or may not have landed
          }
        }
      };
      const writers = Array.from({ length: WRITERS }, writer);
      await new Promise((r) => setTimeout(r, 150 + rnd() * 350));
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      alive = false;
      await Promise.all(writers);
    }

    // Final restart: the complete check.
    child = await startController(sock, db);
    const final = await client.internalPolicies();
    const have = new Set(final.map((p) => Number(p.destination.id.slice(4)) - 7));
    const missing = [...acked].filter((n) => !have.has(n));
    expect(missing).toEqual([]);
    expect(acked.size).toBeGreaterThan(ROUNDS * 10); // the test really wrote under load
    const tags = await client.tags();
    for (const [id, tag] of seenTags) expect(tags.find((t) => t.id === id)?.tag, id).toBe(tag);
    expect(seenTags.size).toBeGreaterThan(10);
    // No deletes happened, so tags are exactly 1..N with no gap or duplicate,
    // and every policy names apps that hold tags.
    const nums = tags.map((t) => parseInt(t.tag, 16)).sort((a, b) => a - b);
    expect(nums).toEqual(Array.from({ length: nums.length }, (_, i) => i + 1));
    const tagOf = new Map(tags.map((t) => [t.id, t.tag]));
    for (const p of final) {
      expect(p.source.tag).toBe(tagOf.get(p.source.id));
      expect(p.destination.tag).toBe(tagOf.get(p.destination.id));
    }
    child.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
  });
});
