#!/usr/bin/env node
// Scale benchmark (issue 3): 10,000 apps and 60,000 policies (silk's validated
// scale is 20k apps / 60k policies). Spawns a real controller on a temp socket
// and SQLite file and reports: time to load the policies over the API, time
// for a restart to load them from the store, internal-policies response time
// (all, and filtered to 50 apps as a cell asks), watch snapshot time, and the
// controller's RSS.
//
//   node scripts/bench-scale.mjs [--apps 10000] [--policies 60000] [--batch 1000] [--json]
// Needs the compiled dist/ (npx tsc -p .).
import { spawn } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControllerClient } from '../dist/net/controller-client.js';
import { httpJson } from '../dist/net/http.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const APPS = opt('--apps', 10_000);
const POLICIES = opt('--policies', 60_000);
const BATCH = opt('--batch', 1000);
const JSON_OUT = args.includes('--json');

function entry() {
  const commands = path.join(ROOT, 'dist/cli/commands.js');
  return fs.existsSync(commands) && fs.readFileSync(commands, 'utf8').includes('controller.js')
    ? path.join(ROOT, 'bin/silkworm.js')
    : path.join(ROOT, 'test/e2e/controller-proc.mjs');
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swbench-scale-'));
const sock = path.join(dir, 'c.sock');
const db = path.join(dir, 'c.db');
const addr = { kind: 'unix', path: sock };
let child;

async function start() {
  const t0 = performance.now();
  child = spawn(process.execPath, [entry(), 'controller', '--listen', sock, '--store', db], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, SILKWORM_LOG_LEVEL: 'warn' },
  });
  for (let i = 0; ; i++) {
    try {
      if ((await httpJson(addr, 'GET', '/healthz', undefined, { timeoutMs: 2000 })).status === 200) break;
    } catch {
      if (i > 3000) throw new Error('controller did not start');
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  return performance.now() - t0;
}
async function stop() {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
const rssMiB = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
  return Math.round(Number(m[1]) / 102.4) / 10;
};
const appId = (i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`; // GUID-sized ids, as CF
async function timed(fn, reps) {
  const ts = [];
  let out;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    out = await fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return { p50: round(ts[Math.floor(ts.length / 2)]), max: round(ts[ts.length - 1]), out };
}
const round = (x) => Math.round(x * 10) / 10;
/** Time to the last byte of a response, body discarded: the controller's side, without client JSON parsing. */
function lastByte(p) {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: sock, path: p, agent: false }, (res) => {
        let n = 0;
        res.on('data', (d) => (n += d.length));
        res.on('end', () => resolve(n));
      })
      .on('error', reject);
  });
}

try {
  const startEmptyMs = await start();
  const client = new ControllerClient(addr, { timeoutMs: 120_000 });
  const rssEmpty = rssMiB();

  // Each policy: app i → app (i*7 + k*1237 + 1) mod APPS, ports varied, so every app appears.
  const all = [];
  for (let n = 0; n < POLICIES; n++) {
    const s = n % APPS;
    const k = Math.floor(n / APPS);
    const d = (s * 7 + k * 1237 + 1) % APPS;
    all.push({
      source: { id: appId(s) },
      destination: { id: appId(d), protocol: n % 5 === 0 ? 'udp' : 'tcp', ports: { start: 8080 + k, end: 8080 + k + (n % 3) } },
    });
  }
  const tLoad0 = performance.now();
  for (let i = 0; i < all.length; i += BATCH) await client.addPolicies(all.slice(i, i + BATCH));
  const loadMs = performance.now() - tLoad0;

  const tags = await client.tags();
  if (tags.length !== APPS) throw new Error(`expected ${APPS} tags, got ${tags.length}`);
  const full = await timed(() => httpJson(addr, 'GET', '/networking/v1/internal/policies', undefined, { timeoutMs: 60_000 }), 10);
  if (full.out.body.total_policies !== POLICIES) throw new Error(`internal API lists ${full.out.body.total_policies}`);
  const bytes = Buffer.byteLength(JSON.stringify(full.out.body));
  const fullBytes = await timed(() => lastByte('/networking/v1/internal/policies'), 10);
  const snapBytes = await timed(() => lastByte('/watch?since=-1'), 10);
  const ids = Array.from({ length: 50 }, (_, i) => appId(i * 97));
  const filtered = await timed(() => client.internalPolicies(ids), 20);
  const external = await timed(() => client.policies(), 5);
  const snapshot = await timed(() => client.watch(-1), 5);
  const rssLoaded = rssMiB();

  // a change with the full state held: one more policy, time to ack
  const oneAdd = await timed(
    () => client.addPolicies([{ source: { id: appId(1) }, destination: { id: appId(2), protocol: 'tcp', ports: { start: 1, end: 1 } } }]).then(() =>
      client.deletePolicies([{ source: { id: appId(1) }, destination: { id: appId(2), protocol: 'tcp', ports: { start: 1, end: 1 } } }]),
    ),
    10,
  );

  // Propagation with the full state held: a watch is waiting, one policy is
  // added; time from the POST returning to the watcher's last byte (body
  // discarded) — the controller's side: snapshot rebuild + transfer.
  const prop = [];
  for (let i = 0; i < 20; i++) {
    const v = (await httpJson(addr, 'GET', '/healthz')).body.version;
    let tEnd = 0;
    const w = lastByte(`/watch?since=${v}`).then(() => (tEnd = performance.now()));
    await new Promise((r) => setTimeout(r, 30));
    const pol = { source: { id: appId(3) }, destination: { id: appId(4), protocol: 'tcp', ports: { start: 2000 + i, end: 2000 + i } } };
    await client.addPolicies([pol]);
    const t1 = performance.now();
    await w;
    prop.push(tEnd - t1);
  }
  prop.sort((a, b) => a - b);
  const propagation = { p50: round(prop[10]), max: round(prop[19]) };

  await stop();
  const restartMs = await start();
  const afterRestart = await client.internalPolicies();
  if (afterRestart.length !== POLICIES + 20) throw new Error(`after restart: ${afterRestart.length} policies`);
  const rssRestarted = rssMiB();
  await stop();
  const dbMiB = round(fs.statSync(db).size / 1048576);

  const result = {
    apps: APPS,
    policies: POLICIES,
    batch: BATCH,
    loadOverApiMs: round(loadMs),
    loadPoliciesPerSecond: Math.round(POLICIES / (loadMs / 1000)),
    restartLoadFromStoreMs: round(restartMs),
    emptyStartMs: round(startEmptyMs),
    internalPoliciesAllMs: { p50: full.p50, max: full.max, bytes },
    internalPoliciesAllLastByteMs: { p50: fullBytes.p50, max: fullBytes.max },
    watchSnapshotLastByteMs: { p50: snapBytes.p50, max: snapBytes.max },
    internalPolicies50AppsMs: { p50: filtered.p50, max: filtered.max, policies: filtered.out.length },
    externalPoliciesAllMs: { p50: external.p50, max: external.max },
    watchSnapshotMs: { p50: snapshot.p50, max: snapshot.max },
    propagationAtScaleLastByteMs: propagation,
    addThenDeleteOnePolicyMs: { p50: oneAdd.p50, max: oneAdd.max },
    controllerRssMiB: { empty: rssEmpty, loaded: rssLoaded, afterRestart: rssRestarted },
    storeFileMiB: dbMiB,
  };
  if (JSON_OUT) console.log(JSON.stringify(result));
  else {
    console.log(`scale: ${APPS} apps, ${POLICIES} policies (batches of ${BATCH})`);
    console.log(`  load over the API:              ${result.loadOverApiMs} ms (${result.loadPoliciesPerSecond} policies/s)`);
    console.log(`  restart, load from SQLite:      ${result.restartLoadFromStoreMs} ms to healthy (empty store: ${result.emptyStartMs} ms)`);
    console.log(`  GET internal policies, all:     p50 ${full.p50} ms, max ${full.max} ms (${(bytes / 1048576).toFixed(1)} MiB, client parse included)`);
    console.log(`    (to last byte, no parsing:    p50 ${fullBytes.p50} ms, max ${fullBytes.max} ms)`);
    console.log(`  GET internal policies, 50 apps: p50 ${filtered.p50} ms, max ${filtered.max} ms (${filtered.out.length} policies)`);
    console.log(`  GET external policies, all:     p50 ${external.p50} ms, max ${external.max} ms`);
    console.log(`  GET /watch snapshot:            p50 ${snapshot.p50} ms, max ${snapshot.max} ms`);
    console.log(`    (to last byte, no parsing:    p50 ${snapBytes.p50} ms, max ${snapBytes.max} ms)`);
    console.log(`  propagation at scale:           p50 ${propagation.p50} ms, max ${propagation.max} ms (POST returned → watcher's last byte of the new snapshot)`);
    console.log(`  add+delete one policy (acked):  p50 ${oneAdd.p50} ms, max ${oneAdd.max} ms`);
    console.log(`  controller RSS:                 empty ${rssEmpty} MiB, loaded ${rssLoaded} MiB, after restart ${rssRestarted} MiB`);
    console.log(`  store file:                     ${dbMiB} MiB`);
  }
} finally {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
}
