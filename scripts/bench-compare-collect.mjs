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

/** "CELL_TICKS SOFTIRQ_TICKS CLK_TCK" as bench-compare.sh's cpu_snapshot writes it. */
function readCpu(f) {
  try {
    const [cells, softirq, clk] = fs.readFileSync(f, 'utf8').trim().split(/\s+/).map(Number);
    return { cells, softirq, clk };
  } catch {
    return null;
  }
}

function collect(mode, dir, pre, runs) {
  const tcp = [];
  let bytes = 0;
  for (let i = 1; i <= runs; i++) {
    const j = read(`${dir}/${pre}-tcp-${i}.json`);
    // What arrived (receiver side), not what the sender pushed into its buffer.
    tcp.push(j?.end?.sum_received?.bits_per_second ?? NaN);
    bytes += j?.end?.sum_received?.bytes ?? 0;
  }
  const before = readCpu(`${dir}/${pre}-cpu-before.txt`);
  const after = readCpu(`${dir}/${pre}-cpu-after.txt`);
  const gb = bytes / 1e9;
  const cpu =
    before && after && gb > 0
      ? { cells: (after.cells - before.cells) / after.clk / gb, softirq: (after.softirq - before.softirq) / after.clk / gb }
      : { cells: NaN, softirq: NaN };
  const tcp4 = read(`${dir}/${pre}-tcp4.json`);
  const tcprev = read(`${dir}/${pre}-tcprev.json`);
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
    tcp4_gbps: (tcp4?.end?.sum_received?.bits_per_second ?? NaN) / 1e9,
    tcprev_gbps: (tcprev?.end?.sum_received?.bits_per_second ?? NaN) / 1e9,
    cpu_cells_s_per_gb: cpu.cells,
    cpu_softirq_s_per_gb: cpu.softirq,
    cpu_s_per_gb: cpu.cells + cpu.softirq,
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
  // A mode run several times (BENCH_PAIRS): the median of each figure.
  const by = {};
  for (const r of rows) (by[r.mode] ??= []).push(r);
  for (const [mode, rs] of Object.entries(by)) {
    const m = { mode, runs: rs.length };
    for (const k of Object.keys(rs[0])) if (typeof rs[0][k] === 'number') m[k] = median(rs.map((r) => r[k]));
    by[mode] = m;
  }
  const user = by.user ?? by['user-off'];
  const figures = [
    ['TCP 1 stream, Gbit/s (median)', 'tcp_gbps', 2, true],
    ['TCP 4 streams, Gbit/s', 'tcp4_gbps', 2, true],
    ['TCP 1 stream reverse (appA → appB), Gbit/s', 'tcprev_gbps', 2, true],
    ['UDP req/resp RTT p50, µs', 'rtt_p50_us', 0, false],
    ['UDP req/resp RTT p99, µs', 'rtt_p99_us', 0, false],
    ['64-byte UDP, packets/s arrived', 'pps_rx', 0, true],
    ['CPU s per GB (1 stream): cells user+sys + softirq', 'cpu_s_per_gb', 2, false],
    ['  of which cells user+sys', 'cpu_cells_s_per_gb', 2, false],
    ['  of which softirq (whole machine)', 'cpu_softirq_s_per_gb', 2, false],
  ];
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const out = [];
  out.push(`silkworm vs kernel, ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu}, Linux ${os.release()}, node ${process.version}`);
  out.push(`(iperf3 TCP ${seconds} s × ${runs}, ${probes} UDP probes, iperf3 -u -l 18 -b 0 for ${ppsSeconds} s; appB → appA across the two cells)`);
  out.push('');
  const kernels = ['kernel', 'kernel-nooffload'].filter((k) => by[k]);
  const users = ['user', 'user-off'].filter((k) => by[k]);
  const ratios = [...kernels.map((k) => [users[0], k]), ...(users.length === 2 ? [['user', 'user-off']] : [])];
  const head = ['figure', ...users, ...kernels, ...ratios.map(([a, b]) => `${a}/${b}`)];
  out.push(`| ${head.join(' | ')} |`);
  out.push(`| ${head.map(() => '---').join(' | ')} |`);
  for (const [label, key, d] of figures) {
    const cells = [label, ...users.map((k) => fmt(by[k][key], d)), ...kernels.map((k) => fmt(by[k][key], d))];
    for (const [a, b] of ratios) cells.push(fmt(by[a]?.[key] / by[b][key], 2));
    out.push(`| ${cells.join(' | ')} |`);
  }
  out.push('');
  if (users.includes('user-off')) {
    out.push(`user-off: the user mode with its cells started under ${process.env.BENCH_OFF_ENV || '(no BENCH_OFF_ENV)'}, from ${process.env.BENCH_OFF_ROOT || 'the same build'}`);
  }
  const workers = process.env.BENCH_WORKERS || '1';
  const offWorkers = process.env.BENCH_OFF_WORKERS || workers;
  if (workers !== '1' || offWorkers !== workers) {
    out.push(`Workers per userspace cell: user ${workers}${users.includes('user-off') ? `, user-off ${offWorkers}` : ''}`);
  }
  out.push('Runs per mode: ' + Object.values(by).map((m) => `${m.mode} ${m.runs}`).join(', '));
  out.push('TCP runs (Gbit/s): ' + rows.map((r) => `${r.mode} ${r.tcp_gbps_runs.map((x) => fmt(x, 2)).join(' ')}`).join('; '));
  out.push('64-byte UDP sent/s and loss: ' + rows.map((r) => `${r.mode} ${fmt(r.pps_tx, 0)} (${fmt(r.pps_lost_percent, 1)} % lost)`).join('; '));
  out.push('Ratios: > 1 means the first is higher (better for throughput and pps, worse for latency and CPU per GB).');
  process.stdout.write(out.join('\n') + '\n');
}

const a = process.argv.slice(2);
if (a[0] === '--table') table(a[1], a[2], a[3], a[4], a[5]);
else if (a.length === 4) process.stdout.write(JSON.stringify(collect(a[0], a[1], a[2], Number(a[3]))) + '\n');
else {
  process.stderr.write('usage: bench-compare-collect.mjs MODE DIR PREFIX RUNS | --table RESULTS.jsonl SECONDS RUNS PROBES PPS_SECONDS\n');
  process.exit(2);
}
