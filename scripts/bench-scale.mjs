#!/usr/bin/env node
// Scale benchmark: 10,000 apps and 60,000 policies (silk's validated
// scale is 20k apps / 60k policies). Spawns a real controller on a temp socket
// and SQLite file and reports: time to load the policies over the API, time
// for a restart to load them from the store, internal-policies response time
// (all, and filtered to 50 apps as a cell asks), watch snapshot time, and the
// controller's RSS.
//
// It also measures the delta watch at that scale (GET /watch?since=V&delta=1):
// propagation of one change to a watching client, and the watching cell's CPU
// per change — parse the answer, update its copy of the snapshot
// (src/agent/watch-state.ts) and plan its rules for 50 local containers —
// next to the same for a full snapshot; and writes/s (one policy per POST).
// --store postgres runs the same against a PostgreSQL server of its own
// (root and the postgresql package needed).
//
//   node scripts/bench-scale.mjs [--apps 10000] [--policies 60000] [--batch 1000] [--store sqlite|postgres] [--json]
// Needs the compiled dist/ (npx tsc -p .).
import { spawn } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControllerClient } from '../dist/net/controller-client.js';
import { httpJson } from '../dist/net/http.js';
import { WatchState } from '../dist/agent/watch-state.js';
import { plan } from '../dist/policy/planner.js';

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
const STORE = args.includes('--store') ? args[args.indexOf('--store') + 1] : 'sqlite';
if (STORE !== 'sqlite' && STORE !== 'postgres') throw new Error('--store is sqlite or postgres');

function entry() {
  const commands = path.join(ROOT, 'dist/cli/commands.js');
  return fs.existsSync(commands) && fs.readFileSync(commands, 'utf8').includes('controller.js')
    ? path.join(ROOT, 'bin/silkworm.js')
    : path.join(ROOT, 'test/e2e/controller-proc.mjs');
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swbench-scale-'));
const sock = path.join(dir, 'c.sock');
let db = path.join(dir, 'c.db');
let cluster;
if (STORE === 'postgres') {
  const { startPgCluster } = await import('../dist/control/pg-cluster.js');
  fs.chmodSync(dir, 0o755); // the postgres user must reach pg/
  cluster = await startPgCluster(path.join(dir, 'pg'));
  db = cluster.url;
}
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

  // The delta watch at scale, as a cell does it: the cell holds the snapshot
  // in a WatchState; each change is one POST; the watcher's answer is parsed,
  // applied, and the rules planned for 50 local containers. CPU is this
  // process's (user + system) around that work.
  const containers = Array.from({ length: 50 }, (_, i) => ({ handle: `c${i}`, ip: (0x0aff0102 + i) >>> 0, app: appId(i * 197) }));
  const cellCpu = (fn) => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = fn();
    const c = process.cpuUsage(c0);
    return { out, cpuMs: (c.user + c.system) / 1000, wallMs: performance.now() - t0 };
  };
  const rawGet = (p) =>
    new Promise((resolve, reject) => {
      http
        .get({ socketPath: sock, path: p, agent: false }, (res) => {
          const chunks = [];
          res.on('data', (d) => chunks.push(d));
          res.on('end', () => resolve({ t: performance.now(), text: Buffer.concat(chunks).toString() }));
        })
        .on('error', reject);
    });
  const cell = new WatchState();
  const snapText = (await rawGet('/watch?since=-1')).text;
  const fullCell = cellCpu(() => {
    cell.reset(JSON.parse(snapText));
    return plan(cell.snapshot().policies, containers).accepts.length;
  });
  const deltaProp = [];
  const deltaCpu = [];
  const deltaCpuOther = [];
  const localApps = new Set(containers.map((c) => c.app));
  const deltaBytes = [];
  for (let i = 0; i < 40; i++) {
    const local = i < 20; // first changes name a local app (appId(0)); then apps with no container on this cell
    const w = rawGet(`/watch?since=${cell.version}&delta=1`);
    await new Promise((r) => setTimeout(r, 20));
    // alternately add a policy for a local app, and delete it again
    const pol = { source: { id: appId(5) }, destination: { id: appId(local ? 0 : 1), protocol: 'tcp', ports: { start: 3000 + (i >> 1), end: 3000 + (i >> 1) } } };
    if (i % 2 === 0) await client.addPolicies([pol]);
    else await client.deletePolicies([pol]);
    const t1 = performance.now();
    const got = await w;
    deltaProp.push(got.t - t1);
    deltaBytes.push(got.text.length);
    // As the cell does (src/cell/cell.ts apply): plan again only when the change names a local app.
    const r = cellCpu(() => {
      const d = JSON.parse(got.text);
      if (!d.changes || !cell.apply(d)) throw new Error('expected a delta that continues the cell');
      const snap = cell.snapshot();
      if (![...cell.lastTouched].some((a) => localApps.has(a))) return -1;
      return plan(snap.policies, containers).accepts.length;
    });
    (local ? deltaCpu : deltaCpuOther).push(r.cpuMs);
  }
  const p = (a, q) => round([...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.ceil(q * a.length) - 1)]);
  const writes = [];
  const tw0 = performance.now();
  for (let i = 0; i < 100; i++) {
    const t0 = performance.now();
    await client.addPolicies([{ source: { id: appId(6) }, destination: { id: appId(7), protocol: 'udp', ports: { start: 4000 + i, end: 4000 + i } } }]);
    writes.push(performance.now() - t0);
  }
  const writesPerSecond = Math.round(100 / ((performance.now() - tw0) / 1000));

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
  if (afterRestart.length !== POLICIES + 20 + 100) throw new Error(`after restart: ${afterRestart.length} policies`);
  const rssRestarted = rssMiB();
  await stop();
  const dbMiB = cluster ? null : round(fs.statSync(db).size / 1048576);

  const result = {
    store: STORE,
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
    deltaWatch: {
      propagationFromPostReturnMs: { p50: p(deltaProp, 0.5), p99: p(deltaProp, 0.99), max: p(deltaProp, 1) },
      answerBytes: { p50: p(deltaBytes, 0.5) },
      cellCpuPerChangeMs: { p50: p(deltaCpu, 0.5), p99: p(deltaCpu, 0.99) },
      cellCpuPerChangeOtherAppsMs: { p50: p(deltaCpuOther, 0.5), p99: p(deltaCpuOther, 0.99) },
      fullSnapshotCellCpuMs: round(fullCell.cpuMs),
      fullSnapshotBytes: snapText.length,
    },
    singlePolicyWrites: { perSecond: writesPerSecond, p50Ms: p(writes, 0.5), p99Ms: p(writes, 0.99) },
  };
  if (JSON_OUT) console.log(JSON.stringify(result));
  else {
    console.log(`scale: ${APPS} apps, ${POLICIES} policies (batches of ${BATCH}), ${STORE === 'postgres' ? 'PostgreSQL' : 'SQLite'}`);
    console.log(`  load over the API:              ${result.loadOverApiMs} ms (${result.loadPoliciesPerSecond} policies/s)`);
    console.log(`  restart, load from ${STORE === 'postgres' ? 'PostgreSQL' : 'SQLite'}:  ${result.restartLoadFromStoreMs} ms to healthy (empty store: ${result.emptyStartMs} ms)`);
    console.log(`  GET internal policies, all:     p50 ${full.p50} ms, max ${full.max} ms (${(bytes / 1048576).toFixed(1)} MiB, client parse included)`);
    console.log(`    (to last byte, no parsing:    p50 ${fullBytes.p50} ms, max ${fullBytes.max} ms)`);
    console.log(`  GET internal policies, 50 apps: p50 ${filtered.p50} ms, max ${filtered.max} ms (${filtered.out.length} policies)`);
    console.log(`  GET external policies, all:     p50 ${external.p50} ms, max ${external.max} ms`);
    console.log(`  GET /watch snapshot:            p50 ${snapshot.p50} ms, max ${snapshot.max} ms`);
    console.log(`    (to last byte, no parsing:    p50 ${snapBytes.p50} ms, max ${snapBytes.max} ms)`);
    console.log(`  propagation at scale:           p50 ${propagation.p50} ms, max ${propagation.max} ms (POST returned → watcher's last byte of the new snapshot)`);
    console.log(`  add+delete one policy (acked):  p50 ${oneAdd.p50} ms, max ${oneAdd.max} ms`);
    console.log(`  controller RSS:                 empty ${rssEmpty} MiB, loaded ${rssLoaded} MiB, after restart ${rssRestarted} MiB`);
    if (dbMiB !== null) console.log(`  store file:                     ${dbMiB} MiB`);
    const d = result.deltaWatch;
    console.log(`  delta watch, one change:        propagation p50 ${d.propagationFromPostReturnMs.p50} ms, p99 ${d.propagationFromPostReturnMs.p99} ms (POST returned → answer's last byte; ${d.answerBytes.p50} bytes)`);
    console.log(`    cell CPU, change to its apps: p50 ${d.cellCpuPerChangeMs.p50} ms, p99 ${d.cellCpuPerChangeMs.p99} ms (parse + apply + plan for 50 containers)`);
    console.log(`    cell CPU, other apps' change: p50 ${d.cellCpuPerChangeOtherAppsMs.p50} ms, p99 ${d.cellCpuPerChangeOtherAppsMs.p99} ms (parse + apply; the plan is kept)`);
    console.log(`    the same from a full snapshot: ${d.fullSnapshotCellCpuMs} ms CPU (${(d.fullSnapshotBytes / 1048576).toFixed(1)} MiB)`);
    console.log(`  writes, one policy per POST:    ${result.singlePolicyWrites.perSecond}/s (p50 ${result.singlePolicyWrites.p50Ms} ms, p99 ${result.singlePolicyWrites.p99Ms} ms)`);
  }
} finally {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  if (cluster) await cluster.stop().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
}
