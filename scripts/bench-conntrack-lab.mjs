#!/usr/bin/env node
// Conntrack at scale in a real lab (root): fill both cells' tables with UDP
// flows appB → appA through the overlay, then measure what an operator would:
//   - each cell's RSS (VmRSS) before and with the table full, entries and
//     evictions (`show counters --json`);
//   - a new curl appB → appA:8080 on the full table (time_total), so new
//     legitimate connections keep working while old entries are evicted;
//   - the forwarding stall while `silkworm show conntrack` lists cell1's full
//     table: UDP request/response probes (scripts/udp-ping.mjs) appB → appA,
//     their worst RTT during the listing against a run without it.
//
//   sudo node scripts/bench-conntrack-lab.mjs [--flows 300000] [--prefix kbc]
//
// The default 300,000 flows overfill the cells' default --conntrack-max
// (262,144), so eviction runs. Flows: --sockets UDP sockets in appB's
// container, each sending one datagram to each of 1,000 ports of appA
// (7000-7999; nothing listens, appA's kernel answers some with ICMP, which
// its rate limit bounds). Network safety: its own lab (prefix kbc, underlay
// 198.18.11.0/24), every load bounded in time, the lab taken down at the end.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const SW = path.join(ROOT, 'bin', 'silkworm.js');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
};
const FLOWS = Number(opt('flows', '300000'));
const P = opt('prefix', 'kbc');
if (!Number.isInteger(FLOWS) || FLOWS < 1000 || FLOWS > 2_000_000) {
  process.stderr.write('bench-conntrack-lab: --flows takes a whole number from 1000 to 2000000\n');
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  process.stderr.write('bench-conntrack-lab: needs root (network namespaces): run it with sudo\n');
  process.exit(1);
}

const sw = (...a) => execFileSync(process.execPath, [SW, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
const say = (s) => process.stdout.write(`${s}\n`);
const rssMb = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};
const counters = (cell) => JSON.parse(sw('show', 'counters', '--cell', cell, '--lab', P, '--json'));
const entries = (cell) => {
  const c = counters(cell);
  return { evictions: c.conntrack_evictions };
};

function probe(count, intervalMs) {
  return spawn('ip', ['netns', 'exec', `${P}-appB-0`, 'timeout', '120', process.execPath, path.join(ROOT, 'scripts', 'udp-ping.mjs'), 'client', '--host', ipA, '--port', '6999', '--count', String(count), '--interval-ms', String(intervalMs), '--timeout-ms', '1000', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
}
const result = (child) =>
  new Promise((resolve) => {
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', () => {
      try {
        resolve(JSON.parse(out));
      } catch {
        resolve(null);
      }
    });
  });

let server;
let ipA = '';
try {
  say(`bench-conntrack-lab: lab up --prefix ${P}`);
  sw('lab', 'up', '--prefix', P, '--underlay-base', '198.18.11.11/24');
  const st = JSON.parse(sw('lab', 'status', '--prefix', P, '--json'));
  const pid = Object.fromEntries(st.cells.map((c) => [c.name, c.pid]));
  ipA = st.containers?.find?.((c) => c.app === 'appA')?.ip ?? '10.255.1.2';
  sw('policy', 'add', 'appB', 'appA', '--protocol', 'udp', '--ports', '6999-7999', '--lab', P);
  sw('policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P);
  server = spawn('ip', ['netns', 'exec', `${P}-appA-0`, 'timeout', '300', process.execPath, path.join(ROOT, 'scripts', 'udp-ping.mjs'), 'server', '--port', '6999', '--seconds', '280'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => server.stdout.once('data', r));
  await new Promise((r) => setTimeout(r, 1500));
  const before = { cell1: rssMb(pid.cell1), cell2: rssMb(pid.cell2) };
  say(`before: RSS cell1 ${before.cell1.toFixed(1)} MB, cell2 ${before.cell2.toFixed(1)} MB`);

  const base = await result(probe(2000, 1));
  say(`probes without a listing: p50 ${base?.p50_us} µs, p99 ${base?.p99_us}, max ${base?.max_us}`);

  // The flows: FLOWS / 1000 sockets, each to ports 7000-7999 once, paced so the cells are not a drop test.
  const sockets = Math.ceil(FLOWS / 1000);
  const gen = `
    const dgram = require('node:dgram');
    const socks = []; for (let s = 0; s < ${sockets}; s++) { const u = dgram.createSocket('udp4'); u.on('error', () => {}); socks.push(u); }
    const msg = Buffer.alloc(18); let s = 0, sent = 0; const end = Date.now() + 90000;
    (function chunk() {
      for (let k = 0; k < 1000 && s < socks.length; k++) socks[s].send(msg, 7000 + k, '${ipA}');
      sent += 1000; s++;
      if (s < socks.length && Date.now() < end) setTimeout(chunk, 15); else setTimeout(() => { console.log(sent); process.exit(0); }, 500);
    })();`;
  const t0 = Date.now();
  const sent = execFileSync('ip', ['netns', 'exec', `${P}-appB-0`, 'timeout', '120', process.execPath, '-e', gen], { encoding: 'utf8' }).trim();
  await new Promise((r) => setTimeout(r, 1000));
  const full = { cell1: rssMb(pid.cell1), cell2: rssMb(pid.cell2) };
  const ev = { cell1: entries('cell1').evictions, cell2: entries('cell2').evictions };
  const t1 = Date.now();
  const lines = spawnSync('bash', ['-c', `${process.execPath} ${SW} show conntrack --cell cell1 --lab ${P} | wc -l`], { encoding: 'utf8', timeout: 120_000 }).stdout.trim();
  const listMs = Date.now() - t1;
  say(`flows: ${sent} datagrams from ${sockets} sockets in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  say(`full: cell1 ${lines} entries listed in ${listMs} ms; RSS cell1 ${full.cell1.toFixed(1)} MB, cell2 ${full.cell2.toFixed(1)} MB; evictions cell1 ${ev.cell1}, cell2 ${ev.cell2}`);

  const curl = spawnSync('ip', ['netns', 'exec', `${P}-appB-0`, 'curl', '-s', '-o', '/dev/null', '-m', '10', '-w', '%{http_code} %{time_total}', `http://${ipA}:8080/`], { encoding: 'utf8', timeout: 20_000 });
  say(`a new curl appB → appA:8080 on the full table: HTTP ${curl.stdout.trim().replace(' ', ', time_total ')} s`);

  // The stall: probes while the full table is listed (text, then NDJSON).
  for (const fmt of [[], ['--json']]) {
    const p = probe(3000, 1);
    const done = result(p);
    await new Promise((r) => setTimeout(r, 300));
    const t2 = Date.now();
    spawnSync('bash', ['-c', `${process.execPath} ${SW} show conntrack --cell cell1 --lab ${P} ${fmt.join(' ')} > /dev/null`], { timeout: 120_000 });
    const took = Date.now() - t2;
    const r = await done;
    say(`probes while \`show conntrack ${fmt.join(' ')}\` listed the full table (${took} ms): p50 ${r?.p50_us} µs, p99 ${r?.p99_us}, max ${r?.max_us}, lost ${r?.lost}`);
  }
} finally {
  if (server?.pid) {
    try {
      process.kill(server.pid);
    } catch {
      /* gone */
    }
  }
  spawnSync(process.execPath, [SW, 'lab', 'down', '--prefix', P], { stdio: 'ignore', timeout: 60_000 });
  say('bench-conntrack-lab: lab down');
}
