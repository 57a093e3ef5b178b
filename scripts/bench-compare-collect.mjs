#!/usr/bin/env node
// Helper of scripts/bench-compare.sh.
//   bench-compare-collect.mjs MODE DIR PREFIX RUNS   → one JSON line of figures from DIR/PREFIX-*.json
//   bench-compare-collect.mjs --table RESULTS.jsonl SECONDS RUNS PROBES PPS_SECONDS
//                                                   → the side-by-side table (markdown), machine and kernel
import fs from 'node:fs';
import os from 'node:os';

const read = (f) => {
  try {
    return JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch {
    return null;
  }
};
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function collect(mode, dir, pre, runs) {
  const tcp = [];
  for (let i = 1; i <= runs; i++) {
    const j = read(`${dir}/${pre}-tcp-${i}.json`);
    // What arrived (receiver side), not what the sender pushed into its buffer.
    tcp.push(j?.end?.sum_received?.bits_per_second ?? NaN);
  }
  const rtt = read(`${dir}/${pre}-rtt.json`);
  const pps = read(`${dir}/${pre}-pps.json`);
  const s = pps?.end?.sum;
  // iperf3 UDP: the server's report of packets and losses; arrived = sent − lost.
  const ppsRx = s && s.seconds > 0 ? (s.packets - s.lost_packets) / s.seconds : NaN;
  const ppsTx = s && s.seconds > 0 ? s.packets / s.seconds : NaN;
  return {
    mode,
    tcp_gbps_runs: tcp.map((b) => b / 1e9),
    tcp_gbps: median(tcp) / 1e9,
    rtt_p50_us: rtt?.p50_us ?? NaN,
    rtt_p99_us: rtt?.p99_us ?? NaN,
    rtt_received: rtt?.received ?? 0,
    pps_rx: ppsRx,
    pps_tx: ppsTx,
    pps_lost_percent: s?.lost_percent ?? NaN,
  };
}

function fmt(n, digits = 2) {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

function table(file, seconds, runs, probes, ppsSeconds) {
  const rows = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const by = Object.fromEntries(rows.map((r) => [r.mode, r]));
  const user = by.user;
  const figures = [
    ['TCP 1 stream, Gbit/s (median)', 'tcp_gbps', 2, true],
    ['UDP req/resp RTT p50, µs', 'rtt_p50_us', 0, false],
    ['UDP req/resp RTT p99, µs', 'rtt_p99_us', 0, false],
    ['64-byte UDP, packets/s arrived', 'pps_rx', 0, true],
  ];
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const out = [];
  out.push(`silkworm vs kernel, ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu}, Linux ${os.release()}, node ${process.version}`);
  out.push(`(iperf3 TCP ${seconds} s × ${runs}, ${probes} UDP probes, iperf3 -u -l 18 -b 0 for ${ppsSeconds} s; appB → appA across the two cells)`);
  out.push('');
  const kernels = ['kernel', 'kernel-nooffload'].filter((k) => by[k]);
  const head = ['figure', 'user', ...kernels, ...kernels.map((k) => `user/${k}`)];
  out.push(`| ${head.join(' | ')} |`);
  out.push(`| ${head.map(() => '---').join(' | ')} |`);
  for (const [label, key, d] of figures) {
    const cells = [label, fmt(user?.[key], d), ...kernels.map((k) => fmt(by[k][key], d))];
    for (const k of kernels) cells.push(fmt(user?.[key] / by[k][key], 2));
    out.push(`| ${cells.join(' | ')} |`);
  }
  out.push('');
  out.push('TCP runs (Gbit/s): ' + rows.map((r) => `${r.mode} ${r.tcp_gbps_runs.map((x) => fmt(x, 2)).join(' ')}`).join('; '));
  out.push('64-byte UDP sent/s and loss: ' + rows.map((r) => `${r.mode} ${fmt(r.pps_tx, 0)} (${fmt(r.pps_lost_percent, 1)} % lost)`).join('; '));
  out.push('Ratios: > 1 means silkworm is higher (better for throughput and pps, worse for latency).');
  process.stdout.write(out.join('\n') + '\n');
}

const a = process.argv.slice(2);
if (a[0] === '--table') table(a[1], a[2], a[3], a[4], a[5]);
else if (a.length === 4) process.stdout.write(JSON.stringify(collect(a[0], a[1], a[2], Number(a[3]))) + '\n');
else {
  process.stderr.write('usage: bench-compare-collect.mjs MODE DIR PREFIX RUNS | --table RESULTS.jsonl SECONDS RUNS PROBES PPS_SECONDS\n');
  process.exit(2);
}
