#!/usr/bin/env node
// Conntrack at scale, on the compiled table (no root, no namespaces):
// - memory: RSS and heap of a bare Node process before the table, with the
//   empty table at the cell's default size (262,144), and holding 100,000
//   flows (half of them established TCP, a quarter UDP, a quarter SYN_SENT);
// - lookup: ConnTrack.process on existing flows at 100k entries, hot (64
//   flows in turn, as a batch) and cold (4096 random flows: cache misses);
// - a full table: a SYN flood of new flows on a table full of established
//   connections — ns per new flow (eviction included), evictions, and how
//   many established entries were given up (should be 0);
// - tick: one expiry sweep over the full table;
// - listing: `show conntrack` streamed over loopback HTTP in slices
//   (src/cell/conntrack-stream.ts), text and NDJSON: per-slice time, the
//   event loop's longest stall meanwhile (perf_hooks monitorEventLoopDelay),
//   RSS growth; and, for comparison, the old way (every entry as an object,
//   then one JSON body) with its stall and RSS growth.
//
// `npx tsc -p . && node --expose-gc scripts/bench-conntrack.mjs` (--quick: fewer rounds;
// SILKWORM_DIST=/other/dist to point elsewhere).
import http from 'node:http';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.SILKWORM_DIST ?? path.join(here, '..', 'dist');
const load = (p) => import(pathToFileURL(path.join(dist, p)).href);
const { ConnTrack, DEFAULT_CONNTRACK_MAX, conntrackJson, formatConntrack } = await load('policy/conntrack.js');
const { streamConntrack } = await load('cell/conntrack-stream.js');

const quick = process.argv.includes('--quick');
const FLOWS = 100_000;
const TCP = 6;
const UDP = 17;
const SYN = 0x02;
const ACK = 0x10;
const MB = 1024 * 1024;
const gc = globalThis.gc ?? (() => undefined);
const mem = () => {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss / MB, heap: m.heapUsed / MB, external: m.external / MB, arrayBuffers: m.arrayBuffers / MB };
};
const fmtMem = (m) => `RSS ${m.rss.toFixed(1)} MB, heap ${m.heap.toFixed(1)} MB, array buffers ${m.arrayBuffers.toFixed(1)} MB`;

// Deterministic PRNG (mulberry32).
let seed = 0x5eed;
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const SERVER = (10 << 24) | (255 << 16) | (2 << 8) | 2;
/** Flow i: client 10.128.0.0 + i (one flow per client) to the server. */
const flow = (i) => ({ src: (((10 << 24) | (128 << 16)) + i) >>> 0, sport: 1024 + (i % 60000), proto: i % 4 === 1 ? UDP : TCP });

function fill(ct, n, t) {
  const fs = [];
  for (let i = 0; i < n; i++) {
    const f = flow(i);
    const src = f.src;
    const dport = f.proto === UDP ? 53 : 8080;
    fs.push([src, f.proto, f.sport, dport]);
    if (f.proto === UDP) {
      ct.process(src, SERVER, UDP, f.sport, dport, 0, t, true);
    } else {
      ct.process(src, SERVER, TCP, f.sport, dport, SYN, t, true);
      if (i % 4 !== 3) {
        ct.process(SERVER, src, TCP, dport, f.sport, SYN | ACK, t, false);
        ct.process(src, SERVER, TCP, f.sport, dport, ACK, t, true);
      }
    }
  }
  return fs;
}

function nsPerOp(ops, body) {
  let best = Infinity;
  for (let r = 0; r < (quick ? 5 : 15); r++) {
    const t0 = process.hrtime.bigint();
    body();
    const ns = Number(process.hrtime.bigint() - t0) / ops;
    if (ns < best) best = ns;
  }
  return best;
}

const out = [];
const say = (s) => {
  out.push(s);
  console.log(s);
};
say(`load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs`);
say(`node ${process.version}, table size ${DEFAULT_CONNTRACK_MAX.toLocaleString('en-US')}, ${FLOWS.toLocaleString('en-US')} flows${globalThis.gc ? '' : ' (run with --expose-gc for steadier memory figures)'}`);

// --- memory ------------------------------------------------------------------
const m0 = mem();
const ct = new ConnTrack({ capacity: DEFAULT_CONNTRACK_MAX, seed: 1 });
const m1 = mem();
const flows = fill(ct, FLOWS, 0);
const m2 = mem();
say(`memory: bare process ${fmtMem(m0)}`);
say(`        empty table    ${fmtMem(m1)} (table's typed arrays: ${(ct.footprintBytes / MB).toFixed(1)} MB)`);
say(`        100k flows     ${fmtMem(m2)}; size ${ct.size}, evictions ${ct.evictions}`);

// --- lookup ------------------------------------------------------------------
const N = flows.length;
const cold = new Int32Array(4096);
for (let i = 0; i < cold.length; i++) cold[i] = Math.floor(rand() * N);
const OPS = quick ? 250_000 : 1_000_000;
let sink = 0;
const lookup = (set, mask) => () => {
  for (let i = 0; i < OPS; i++) {
    const f = flows[set[i & mask]];
    // Alternate directions, as data and acks do.
    sink += i & 1 ? ct.process(SERVER, f[0], f[1], f[3], f[2], ACK, 1, false) : ct.process(f[0], SERVER, f[1], f[2], f[3], ACK, 1, true);
  }
};
const hotSet = cold.subarray(0, 64);
lookup(hotSet, 63)(); // warm up
const hot = nsPerOp(OPS, lookup(hotSet, 63));
const coldNs = nsPerOp(OPS, lookup(cold, 4095));
say(`lookup at 100k (process, existing flows): hot ${hot.toFixed(1)} ns/op, cold ${coldNs.toFixed(1)} ns/op`);

// --- tick ----------------------------------------------------------------------
{
  const t0 = performance.now();
  const removed = ct.tick(2);
  say(`tick (expiry sweep over ${DEFAULT_CONNTRACK_MAX.toLocaleString('en-US')} slots, ${ct.size.toLocaleString('en-US')} live): ${(performance.now() - t0).toFixed(2)} ms, ${removed} removed`);
}

// --- full table --------------------------------------------------------------
{
  const full = new ConnTrack({ capacity: FLOWS, seed: 2 });
  let est = 0;
  for (let i = 0; i < FLOWS; i++) {
    const src = (((10 << 24) | (255 << 16) | (50 << 8)) + i) >>> 0;
    full.process(src, SERVER, TCP, 40000, 8080, SYN, 0, true);
    full.process(SERVER, src, TCP, 8080, 40000, SYN | ACK, 0, false);
    full.process(src, SERVER, TCP, 40000, 8080, ACK, 0, true);
    est++;
  }
  // Then: 1/2 of the table churned by unreplied UDP (clients that never hear back),
  // and a flood of SYNs from spoofed sources, 3x the table.
  const FLOOD = 3 * FLOWS;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < FLOOD; i++) {
    const src = (((10 << 24) | (255 << 16) | (200 << 8)) + (i & 0xffff)) >>> 0;
    full.process(src, SERVER, TCP, 1024 + (i >>> 16), 8080, SYN, 1 + i / 1e6, true);
  }
  const nsNew = Number(process.hrtime.bigint() - t0) / FLOOD;
  // A new legitimate connection on the full table: handshake, then data.
  const me = (((10 << 24) | (255 << 16) | (99 << 8)) + 7) >>> 0;
  const tNow = 2;
  const a = full.process(me, SERVER, TCP, 50000, 8080, SYN, tNow, true);
  const b = full.process(SERVER, me, TCP, 8080, 50000, SYN | ACK, tNow, false);
  const c = full.process(me, SERVER, TCP, 50000, 8080, ACK, tNow, true);
  let alive = 0;
  for (let i = 0; i < FLOWS; i++) {
    const src = (((10 << 24) | (255 << 16) | (50 << 8)) + i) >>> 0;
    if (full.process(SERVER, src, TCP, 8080, 40000, ACK, tNow, false) === 2) alive++;
  }
  say(
    `full table (${FLOWS.toLocaleString('en-US')} established, then ${FLOOD.toLocaleString('en-US')} new SYNs): ` +
      `${nsNew.toFixed(0)} ns per new flow incl. eviction; evictions ${full.evictions.toLocaleString('en-US')}, ` +
      `of established ${full.evictionsProtected}; established still answering ${alive}/${est}; ` +
      `a new connection: ${[a, b, c].join(',')} (0 new, 2 reply, 1 established)`,
  );
}

// --- listing -----------------------------------------------------------------
const READER = `
const http = require('node:http');
let bytes = 0, lines = 0;
http.get({ host: '127.0.0.1', port: Number(process.argv[1]), path: '/' }, (res) => {
  res.on('data', (c) => { bytes += c.length; for (let i = c.indexOf(10); i >= 0; i = c.indexOf(10, i + 1)) lines++; });
  res.on('end', () => { process.stdout.write(JSON.stringify({ bytes, lines })); });
});`;
async function listOver(json, sliceMs) {
  const slices = [];
  const cpu = [];
  let lastCpu = process.cpuUsage();
  let peakRss = 0;
  const server = http.createServer((req, res) => {
    void streamConntrack(ct, res, { filter: {}, limit: undefined, json }, {
      now: () => 1,
      sliceMs,
      onSlice: (_n, ms) => {
        slices.push(ms);
        const c = process.cpuUsage();
        cpu.push((c.user + c.system - lastCpu.user - lastCpu.system) / 1000);
        lastCpu = c;
        if (slices.length % 16 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
      },
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  const before = mem();
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  // The reader is another process (as the CLI is), so only the table's side runs on this event loop.
  const { bytes, lines } = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', READER, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (c) => (text += c));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(text)) : reject(new Error(`reader exited ${code}`))));
  });
  const total = performance.now() - t0;
  h.disable();
  await new Promise((r) => server.close(r));
  slices.sort((x, y) => x - y);
  cpu.shift(); // the first includes everything since the server started
  cpu.sort((x, y) => x - y);
  const q = (p, a = slices) => a[Math.min(a.length - 1, Math.floor(p * a.length))];
  say(
    `show conntrack${json ? ' --json' : ''} streamed (slice ${sliceMs} ms): ${lines.toLocaleString('en-US')} lines, ${(bytes / MB).toFixed(1)} MB in ${total.toFixed(0)} ms; ` +
      `${slices.length} slices, per slice wall p50 ${q(0.5).toFixed(2)} ms, p99 ${q(0.99).toFixed(2)} ms, max ${slices[slices.length - 1].toFixed(2)} ms, ` +
      `CPU per slice (incl. the turn after it) p50 ${q(0.5, cpu).toFixed(2)} ms, max ${cpu[cpu.length - 1].toFixed(2)} ms; ` +
      `event-loop delay max ${(h.max / 1e6).toFixed(1)} ms; RSS +${(Math.max(0, peakRss / MB - before.rss)).toFixed(1)} MB`,
  );
}
await listOver(false, 5);
await listOver(true, 5);

// The old way, for comparison: all entries as objects, then one JSON body.
{
  const before = mem();
  const t0 = performance.now();
  const entries = ct.entries(1);
  const body = JSON.stringify({ lines: entries.map((e) => formatConntrack(e, 1)), entries: entries.map((e) => conntrackJson(e, 1)), size: ct.size });
  const ms = performance.now() - t0;
  const after = process.memoryUsage().rss / MB;
  say(`old way (entries() + one JSON body): ${(body.length / MB).toFixed(1)} MB built in ${ms.toFixed(0)} ms with the event loop blocked; RSS +${(after - before.rss).toFixed(1)} MB`);
}
if (sink === 0x7fffffff) console.log('');
