#!/usr/bin/env node
// Fan-out as a foundation sees it: N simulated cells on two
// controller replicas over one PostgreSQL server (its own, started here; root
// and the postgresql package needed). Each simulated cell is a light watcher
// in this process: it acquires a lease from its replica (cell i → replica
// i % 2), holds GET /watch?since=V&delta=1 on its own keep-alive connection,
// and renews its lease every --renew seconds (jittered). Policy changes are
// POSTed to replica 0, one every --every ms; for each change the time from
// the POST returning to the LAST of the N watchers holding it is recorded.
// Reports that p50/p99, and each replica's CPU (over the change phase) and
// RSS, for every N in --cells (default 100,1000), so growth shows.
//
//   node scripts/bench-fanout.mjs [--cells 100,1000] [--changes 30] [--every 300] [--renew 30] [--json]
// Needs the compiled dist/ (npx tsc -p .).
import { spawn } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpJson } from '../dist/net/http.js';
import { startPgCluster } from '../dist/control/pg-cluster.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const CELLS = arg('--cells', '100,1000').split(',').map(Number);
const CHANGES = Number(arg('--changes', 30));
const EVERY = Number(arg('--every', 300));
const RENEW_S = Number(arg('--renew', 30));
const JSON_OUT = args.includes('--json');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x) => Math.round(x * 10) / 10;
const pct = (a, q) => round([...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1))]);
const TICK = 100 / 1000; // clock ticks are 1/100 s on Linux

function entry() {
  const commands = path.join(ROOT, 'dist/cli/commands.js');
  return fs.existsSync(commands) && fs.readFileSync(commands, 'utf8').includes('controller.js')
    ? path.join(ROOT, 'bin/silkworm.js')
    : path.join(ROOT, 'test/e2e/controller-proc.mjs');
}
const cpuTicks = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]); // utime + stime
};
const rssMiB = (pid) => round(Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024);

function request(agent, sock, method, p, body) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: sock, method, path: p, agent, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} },
      (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function runOnce(n) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swfan-'));
  fs.chmodSync(dir, 0o755);
  const cluster = await startPgCluster(path.join(dir, 'pg'));
  const socks = [path.join(dir, 'c0.sock'), path.join(dir, 'c1.sock')];
  const children = socks.map((sock) =>
    spawn(
      process.execPath,
      [entry(), 'controller', '--listen', sock, '--store', cluster.url, '--overlay-network', '10.0.0.0/12', '--lease-expiry', '10m'],
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, SILKWORM_LOG_LEVEL: 'warn' } },
    ),
  );
  let running = true;
  try {
    for (const sock of socks) {
      for (let i = 0; ; i++) {
        try {
          if ((await httpJson({ kind: 'unix', path: sock }, 'GET', '/healthz', undefined, { timeoutMs: 1000 })).status === 200) break;
        } catch {
          if (i > 1000) throw new Error('controller did not start');
          await sleep(20);
        }
      }
    }
    // seen[v] = how many watchers hold version v, and when the last one got it
    const seen = new Map();
    const watchers = [];
    let renewals = 0;
    let renewFailures = 0;
    // Leases first (each is a change every watcher would see), then the watches.
    const cells = [];
    for (let i = 0; i < n; i++) {
      const sock = socks[i % 2];
      const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
      const ip = `198.18.${100 + (i >> 8)}.${i & 255}`;
      const lease = JSON.parse((await request(agent, sock, 'PUT', '/leases/acquire', { underlay_ip: ip })).text);
      if (!lease.overlay_subnet) throw new Error(`cell ${i}: no lease: ${JSON.stringify(lease)}`);
      cells.push({ sock, agent, lease });
    }
    await sleep(500);
    for (const { sock, agent, lease } of cells) {
      const w = { agent, sock, version: -1 };
      watchers.push(w);
      const first = JSON.parse((await request(agent, sock, 'GET', '/watch?since=-1')).text);
      w.version = first.version;
      void (async () => {
        while (running) {
          let ans;
          try {
            ans = JSON.parse((await request(agent, sock, 'GET', `/watch?since=${w.version}&delta=1`)).text);
          } catch {
            if (running) await sleep(100);
            continue;
          }
          const t = performance.now();
          const wall = Date.now();
          if (ans.version === w.version) continue;
          for (let v = w.version + 1; v <= ans.version; v++) {
            const s = seen.get(v) ?? { count: 0, last: 0, lastWall: 0, changedAt: 0 };
            s.count++;
            s.last = t;
            s.lastWall = wall;
            if (v === ans.version && ans.changed_at) s.changedAt = ans.changed_at;
            seen.set(v, s);
          }
          w.version = ans.version;
        }
      })();
      void (async () => {
        await sleep(Math.random() * RENEW_S * 1000);
        while (running) {
          try {
            const r = await request(agent, sock, 'PUT', '/leases/renew', lease);
            if (r.status === 200) renewals++;
            else renewFailures++;
          } catch {
            renewFailures++;
          }
          await sleep(RENEW_S * 1000 * (0.9 + Math.random() * 0.2));
        }
      })();
    }
    await sleep(1000);
    const poster = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const cpu0 = children.map((c) => cpuTicks(c.pid));
    const t0 = performance.now();
    const toLast = [];
    const fromSent = [];
    const fromCommit = [];
    for (let k = 0; k < CHANGES; k++) {
      const tSent = performance.now();
      const r = await request(poster, socks[0], 'POST', '/networking/v1/external/policies', {
        policies: [{ source: { id: `fan-src-${k % 7}` }, destination: { id: `fan-dst-${k}`, protocol: 'tcp', ports: { start: 8080, end: 8080 } } }],
      });
      const t1 = performance.now();
      if (r.status !== 200) throw new Error(`POST answered ${r.status}: ${r.text}`);
      const v = JSON.parse((await request(poster, socks[0], 'GET', '/healthz')).text).version;
      const deadline = t1 + 10_000;
      while ((seen.get(v)?.count ?? 0) < n && performance.now() < deadline) await sleep(1);
      const s = seen.get(v);
      if (!s || s.count < n) throw new Error(`change ${k}: only ${s?.count ?? 0} of ${n} watchers got version ${v} within 10 s`);
      toLast.push(s.last - t1);
      fromSent.push(s.last - tSent);
      if (s.changedAt) fromCommit.push(s.lastWall - s.changedAt);
      await sleep(Math.max(0, EVERY - (performance.now() - t1)));
    }
    const wall = (performance.now() - t0) / 1000;
    const cpu = children.map((c, i) => round(((cpuTicks(c.pid) - cpu0[i]) * TICK * 100) / wall)); // percent of one core
    const rss = children.map((c) => rssMiB(c.pid));
    return {
      cells: n,
      changes: CHANGES,
      toLastWatcherMs: { p50: pct(toLast, 0.5), p99: pct(toLast, 0.99), max: pct(toLast, 1) },
      // The watchers and the POST share this process's event loop, so "from the POST returning" can be
      // negative; from the POST being sent (the write included) and from the commit (the controller's
      // changed_at, same host clock) are the honest ones.
      fromPostSentMs: { p50: pct(fromSent, 0.5), p99: pct(fromSent, 0.99) },
      fromCommitMs: { p50: pct(fromCommit, 0.5), p99: pct(fromCommit, 0.99) },
      replicaCpuPercent: cpu,
      replicaRssMiB: rss,
      renewals,
      renewFailures,
    };
  } finally {
    running = false;
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await sleep(200);
    await cluster.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
if (!JSON_OUT) console.log(`fan-out: 2 controller replicas on PostgreSQL, cells split over both, a change every ${EVERY} ms to replica 0, leases renewed every ${RENEW_S} s`);
for (const n of CELLS) {
  const r = await runOnce(n);
  results.push(r);
  if (!JSON_OUT) {
    console.log(
      `  ${String(r.cells).padStart(5)} cells: commit → last watcher p50 ${r.fromCommitMs.p50} ms, p99 ${r.fromCommitMs.p99} ms` +
        ` (POST sent → last: p50 ${r.fromPostSentMs.p50}, p99 ${r.fromPostSentMs.p99}; POST returned → last: p99 ${r.toLastWatcherMs.p99});` +
        ` replica CPU ${r.replicaCpuPercent.join(' / ')} % of a core, RSS ${r.replicaRssMiB.join(' / ')} MiB; renewals ${r.renewals} (${r.renewFailures} failed)`,
    );
  }
}
if (JSON_OUT) console.log(JSON.stringify(results));
process.exit(0);
