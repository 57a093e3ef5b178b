#!/usr/bin/env node
// A UDP echo server and a ping-pong client, for latency across the lab's
// overlay. ICMP echo cannot be used there: silk's policy admits only tcp and
// udp (docs/ARCHITECTURE.md, "Policy"), so a ping from appB to appA is rejected like any
// other packet without a policy. UDP with a policy is the closest thing.
//
//   server (in the destination namespace): echo every datagram back
//     node scripts/udp-ping.mjs server --port 7 [--port 8081 …] [--seconds 60]
//     prints "listening udp 7 8081" on stdout once every port is bound; exits
//     after --seconds (every load in the lab is bounded in time) or on SIGTERM.
//
//   client (in the source namespace): one probe in flight at a time
//     node scripts/udp-ping.mjs client --host 10.255.1.2 --port 7 [--count 1000]
//          [--size 64] [--interval-ms 0] [--timeout-ms 1000] [--json]
//     prints sent/received/lost/refused and min/p50/p99/max/avg RTT in µs.
//     A connected socket sees ICMP port unreachable as ECONNREFUSED, so a
//     probe the destination cell rejects is counted as "refused", not "lost";
//     ICMP net/host unreachable is counted as "unreachable".
//     Exit code 0 if at least one reply came back, 1 otherwise, 2 on bad usage.
//
// The probe loop allocates nothing per probe: one send buffer, RTTs in a
// preallocated Float64Array, performance.now() (a double, not a BigInt).
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';

function usage(msg) {
  process.stderr.write(`udp-ping: ${msg}\nusage: udp-ping.mjs server --port N [--port N …] [--seconds S]\n       udp-ping.mjs client --host IP --port N [--count N] [--size B] [--interval-ms MS] [--timeout-ms MS] [--json]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { ports: [], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const num = (min, max) => {
      const t = val();
      if (!/^\d+$/.test(t)) usage(`${a} must be a whole number, got "${t}"`);
      const n = Number(t);
      if (n < min || n > max) usage(`${a} must be between ${min} and ${max}, got ${n}`);
      return n;
    };
    switch (a) {
      case '--port': o.ports.push(num(1, 65535)); break;
      case '--host': o.host = val(); break;
      case '--count': o.count = num(1, 10_000_000); break;
      case '--size': o.size = num(16, 65000); break;
      case '--interval-ms': o.intervalMs = num(0, 60_000); break;
      case '--timeout-ms': o.timeoutMs = num(1, 60_000); break;
      case '--seconds': o.seconds = num(1, 86_400); break;
      case '--json': o.json = true; break;
      default: usage(`unknown argument "${a}"`);
    }
  }
  return o;
}

function server(o) {
  if (o.ports.length === 0) usage('server needs at least one --port');
  const sockets = [];
  let bound = 0;
  const stop = () => {
    for (const s of sockets) s.close();
    process.exit(0);
  };
  for (const port of o.ports) {
    const s = dgram.createSocket('udp4');
    s.on('message', (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
    s.on('error', (err) => {
      // A send error (e.g. the peer's reply path went away) must not stop the echo.
      process.stderr.write(`udp-ping: server port ${port}: ${err.message}\n`);
    });
    s.bind(port, () => {
      if (++bound === o.ports.length) process.stdout.write(`listening udp ${o.ports.join(' ')}\n`);
    });
    sockets.push(s);
  }
  setTimeout(stop, (o.seconds ?? 120) * 1000);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function percentile(sorted, n, p) {
  if (n === 0) return NaN;
  // Nearest-rank percentile (the definition ping-style tools report).
  const rank = Math.max(1, Math.ceil((p / 100) * n));
  return sorted[rank - 1];
}

function client(o) {
  if (!o.host) usage('client needs --host');
  if (o.ports.length !== 1) usage('client needs exactly one --port');
  const port = o.ports[0];
  const count = o.count ?? 1000;
  const size = o.size ?? 64;
  const intervalMs = o.intervalMs ?? 0;
  const timeoutMs = o.timeoutMs ?? 1000;
  const rtt = new Float64Array(count);
  const buf = Buffer.alloc(size);
  let seq = 0; // probes sent
  let received = 0;
  let refused = 0;
  let unreachable = 0;
  let lost = 0;
  let sentAt = 0;
  let timer = null;
  let done = false;
  const started = performance.now();
  const s = dgram.createSocket('udp4');

  const finish = () => {
    if (done) return;
    done = true;
    if (timer) clearTimeout(timer);
    s.close();
    const sorted = rtt.subarray(0, received).sort();
    let sum = 0;
    for (let i = 0; i < received; i++) sum += sorted[i];
    const us = (ms) => (Number.isNaN(ms) ? null : Math.round(ms * 1000));
    const r = {
      host: o.host,
      port,
      size,
      sent: seq,
      received,
      lost,
      refused,
      unreachable,
      min_us: us(received ? sorted[0] : NaN),
      p50_us: us(percentile(sorted, received, 50)),
      p99_us: us(percentile(sorted, received, 99)),
      max_us: us(received ? sorted[received - 1] : NaN),
      avg_us: us(received ? sum / received : NaN),
      elapsed_ms: Math.round(performance.now() - started),
    };
    if (o.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
    } else {
      process.stdout.write(
        `udp-ping ${o.host}:${port} size ${size}: sent ${r.sent}, received ${r.received}, lost ${r.lost}, refused ${r.refused}, unreachable ${r.unreachable}\n` +
          (received > 0 ? `rtt min ${r.min_us} µs  p50 ${r.p50_us} µs  p99 ${r.p99_us} µs  max ${r.max_us} µs  avg ${r.avg_us} µs\n` : ''),
      );
    }
    process.exitCode = received > 0 ? 0 : 1;
  };

  const next = () => {
    if (done) return;
    if (seq >= count) return finish();
    buf.writeUInt32BE(seq, 0);
    seq++;
    sentAt = performance.now();
    s.send(buf);
    timer = setTimeout(onTimeout, timeoutMs);
  };
  const advance = () => {
    if (intervalMs > 0) setTimeout(next, intervalMs);
    else setImmediate(next);
  };
  function onTimeout() {
    timer = null;
    lost++;
    advance();
  }

  s.on('message', (msg) => {
    // Only the echo of the probe in flight counts; a late echo of a probe
    // already given up on is ignored (its RTT would be the timeout, not a sample).
    if (msg.length < 4 || msg.readUInt32BE(0) !== seq - 1 || timer === null) return;
    rtt[received++] = performance.now() - sentAt;
    clearTimeout(timer);
    timer = null;
    advance();
  });
  s.on('error', (err) => {
    // ICMP destination unreachable for the probe in flight (RFC 1122
    // §4.1.3.3: reported to the application on a connected UDP socket):
    // port unreachable is ECONNREFUSED, net/host unreachable the others.
    const refusal = err.code === 'ECONNREFUSED';
    if (refusal || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') {
      if (timer !== null) {
        clearTimeout(timer);
        timer = null;
        if (refusal) refused++;
        else unreachable++;
        advance();
      }
      return;
    }
    process.stderr.write(`udp-ping: ${err.message}\n`);
    finish();
  });
  s.connect(port, o.host, next);
}

const [mode, ...rest] = process.argv.slice(2);
const opts = parseArgs(rest);
if (mode === 'server') server(opts);
else if (mode === 'client') client(opts);
else usage(`say "server" or "client", got "${mode ?? ''}"`);
