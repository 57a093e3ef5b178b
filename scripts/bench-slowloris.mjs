#!/usr/bin/env node
// A slow-request flood against the controller, and whether the clients that
// matter still get answers: 20,000 slow connections (by default) held open
// against the controller's mutual-TLS TCP listener — some that send nothing,
// some a few bytes of a TLS ClientHello, some that finish the handshake (with
// no client certificate) and then dribble headers or withhold a declared
// body — reopened as the controller closes them, while
//   - `silkworm policy list` on the unix socket,
//   - an mTLS GET /leases (a cell's client certificate),
//   - a held mTLS GET /watch that must wake on a change
// each have to answer within 2 s. Also: a body over --max-body gets 413
// before it is read whole, the controller's RSS before, during and after,
// and how many log lines the flood caused (one per flood, no stack traces).
//
// Everything runs inside a network namespace of its own (swsl<pid>, loopback
// only) when run as root, else on 127.0.0.1. Bounded in time: the flood holds
// for --hold seconds (default 15) and every child is killed by its PID.
//
//   sudo node scripts/bench-slowloris.mjs [--connections 20000] [--workers 4] [--hold 15] [--reconnect] [--json]
//
// --reconnect reopens every connection the controller closes (50 ms later):
// then it is a connection-rate flood, where each new connection costs the
// controller a TLS accept (and, for the fifth that finish a handshake, an
// RSA signature) — see the README for what that does on a shared 2-core box.
//
// File descriptors: `ulimit -n` here is 20000 (soft = hard). The controller
// keeps at most --max-connections (1024) waiting connections per listener,
// so it needs no more; the flood is split over --workers processes so each
// stays under the limit.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin/silkworm.js');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const flag = (name) => process.argv.includes(`--${name}`);
const CONNECTIONS = Number(arg('connections', '20000'));
const WORKERS = Number(arg('workers', '4'));
const HOLD_S = Number(arg('hold', '15'));
const role = arg('role', 'main');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (role === 'worker') await worker();
else if (role === 'inner') await inner();
else await outer();

// ---------------------------------------------------------------- outer
/** As root: make a namespace, run the bench inside it, always delete it. */
async function outer() {
  const isRoot = process.getuid?.() === 0;
  if (!isRoot) {
    process.stderr.write('bench-slowloris: not root, running on 127.0.0.1 in this namespace\n');
    await inner();
    return;
  }
  const ns = `swsl${process.pid % 100000}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2), '--role', 'inner'], {
      stdio: 'inherit',
    });
    const limit = setTimeout(() => child.kill('SIGKILL'), (HOLD_S + 120) * 1000);
    const code = await new Promise((r) => child.on('exit', (c) => r(c ?? 1)));
    clearTimeout(limit);
    process.exitCode = code;
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', ns]);
    } catch {
      /* already gone */
    }
  }
}

// ---------------------------------------------------------------- inner
async function inner() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swslowloris-'));
  const children = [];
  const t0 = Date.now();
  let ctl;
  try {
    execFileSync(process.execPath, [BIN, 'certs', 'create', '--dir', path.join(dir, 'tls'), '--client', 'cell1'], { timeout: 60_000 });
    const f = (n) => path.join(dir, 'tls', n);
    const sock = path.join(dir, 'controller.sock');
    const port = 20000 + (process.pid % 20000);
    const log = path.join(dir, 'controller.log');
    const logFd = fs.openSync(log, 'a');
    ctl = spawn(
      process.execPath,
      [BIN, 'controller', '--listen', sock, '--listen', `127.0.0.1:${port}`, '--store', ':memory:', '--tls-cert', f('controller.pem'),
        '--tls-key', f('controller-key.pem'), '--tls-ca', f('ca.pem'), '--token-key', f('token-key.pub.pem')],
      { stdio: ['ignore', logFd, logFd], env: { ...process.env, SILKWORM_LOG_LEVEL: 'info' } },
    );
    children.push(ctl);
    const mtls = { ca: fs.readFileSync(f('ca.pem')), cert: fs.readFileSync(f('cell1.pem')), key: fs.readFileSync(f('cell1-key.pem')) };
    // A cell keeps its connection (silkworm's client uses a keep-alive agent): that is what a flood must not break.
    // Two connections, as a cell has them in steady state: one holds the watch, one carries renewals and lists.
    const cellAgent = new https.Agent({ keepAlive: true, maxSockets: 1, ...mtls });
    const watchAgent = new https.Agent({ keepAlive: true, maxSockets: 1, ...mtls });
    const get = (p, o = {}) => request({ port, path: p, ...mtls, ...o });
    const cellGet = (p, o = {}) => request({ port, path: p, ...mtls, agent: cellAgent, ...o });
    for (let i = 0; ; i++) {
      try {
        if ((await get('/leases', { timeoutMs: 1000 })).status === 200) break;
      } catch {
        /* not up yet */
      }
      if (i > 150) throw new Error(`the controller did not come up: ${fs.readFileSync(log, 'utf8').slice(-500)}`);
      await sleep(100);
    }
    // A lease to list, and a policy so the listing has rows.
    await request({ port, path: '/leases/acquire', method: 'PUT', body: { underlay_ip: '198.18.0.11' }, ...mtls });
    const cli = (args) => timed(() => runCli([...args, '--controller', sock]));
    await cli(['policy', 'add', 'appA', 'appB']);

    const rss = () => rssOf(ctl.pid);
    const report = { connections: CONNECTIONS, workers: WORKERS, holdSeconds: HOLD_S, rssBeforeMB: rss(), probes: [] };
    // Baselines before the flood: the CLI's own start-up on this machine, and the kept-alive cell connection.
    report.baseline = {
      policyListCliMs: Math.round((await cli(['policy', 'list'])).ms),
      cellLeasesMs: Math.round((await timed(() => cellGet('/leases'))).ms),
      load: os.loadavg().map((x) => Math.round(x * 10) / 10),
    };

    // 413 before the body is read whole: declared 64 MiB, and chunked past the limit.
    report.bodyLimit = await bodyLimitCheck(port, mtls, rss);

    // The cell's watch connection, made before the flood (a held watch is re-asked every ≤ 25 s, as a cell does).
    await get('/watch?since=-1', { agent: watchAgent });

    // The flood.
    const per = Math.ceil(CONNECTIONS / WORKERS);
    const ready = [];
    const results = [];
    for (let w = 0; w < WORKERS; w++) {
      // The flood's CPU belongs to other hosts in real life: here the workers run at a lower priority
      // (nice 10) so they do not starve the controller they attack of the CPU it shares with them.
      const child = spawn('nice', ['-n', '10', process.execPath, fileURLToPath(import.meta.url), '--role', 'worker', '--port', String(port), '--count', String(per), '--hold', String(HOLD_S), ...(flag('reconnect') ? ['--reconnect'] : [])], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      ready.push(new Promise((r) => child.stdout.on('data', () => out.includes('opened') && r())));
      results.push(new Promise((r) => child.on('exit', () => r(out.trim().split('\n').pop()))));
    }
    await Promise.race([Promise.all(ready), sleep(60_000)]);
    const floodStart = Date.now();
    report.openedAfterMs = floodStart - t0;

    // Probes during the flood: every second until the hold ends.
    let peakRss = rss();
    let woke = null;
    void (async () => {
      // A held watch on that connection, then a change during the flood: how long until the watch wakes?
      const version = (await get('/watch?since=-1', { agent: watchAgent, timeoutMs: 20_000 })).body.version;
      let wokeAt = 0;
      const watch = get(`/watch?since=${version}`, { timeoutMs: 60_000, agent: watchAgent }).then((r) => ((wokeAt = performance.now()), r));
      await sleep(1000);
      const changedAt = performance.now();
      await unixRequest(sock, '/networking/v1/external/policies', 'POST', {
        policies: [{ source: { id: 'appC' }, destination: { id: 'appD', protocol: 'tcp', ports: { start: 80, end: 80 } } }],
      });
      const w = await watch;
      woke = { ms: Math.round(wokeAt - changedAt), status: w.status };
    })();
    while (Date.now() - floodStart < (HOLD_S - 2) * 1000) {
      const [list, leases, unixGet, fresh] = await Promise.all([
        cli(['policy', 'list']),
        timed(() => cellGet('/leases', { timeoutMs: 10_000 }).catch((e) => ({ status: 0, error: e.message }))),
        timed(() => unixRequest(sock, '/networking/v1/internal/policies')),
        timed(() => get('/leases', { timeoutMs: 10_000 }).catch((e) => ({ status: 0, error: e.message }))),
      ]);
      peakRss = Math.max(peakRss, rss());
      report.probes.push({
        atS: Math.round((Date.now() - floodStart) / 100) / 10,
        policyListMs: Math.round(list.ms),
        policyListOk: list.value.code === 0,
        unixGetMs: Math.round(unixGet.ms),
        leasesMs: Math.round(leases.ms),
        leasesStatus: leases.value.status,
        freshLeasesMs: Math.round(fresh.ms),
        freshLeasesStatus: fresh.value.status,
        open: countOpen(port),
      });
      await sleep(1000);
    }
    report.rssDuringPeakMB = peakRss;
    report.watch = woke ?? { ms: null, status: 'did not wake' };
    const workerOut = (await Promise.all(results)).map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return { raw: l };
      }
    });
    report.flood = workerOut.reduce(
      (a, w) => ({
        attempts: a.attempts + (w.attempts ?? 0),
        answered503: a.answered503 + (w.answered503 ?? 0),
        closedByServer: a.closedByServer + (w.closedByServer ?? 0),
        heldAtEnd: a.heldAtEnd + (w.heldAtEnd ?? 0),
        tlsHandshakes: a.tlsHandshakes + (w.tlsHandshakes ?? 0),
      }),
      { attempts: 0, answered503: 0, closedByServer: 0, heldAtEnd: 0, tlsHandshakes: 0 },
    );
    await sleep(3000);
    report.rssAfterMB = rss();
    const after = await Promise.all([cli(['policy', 'list']), timed(() => get('/leases', { timeoutMs: 20_000 }))]);
    report.afterFlood = { policyListMs: Math.round(after[0].ms), leasesMs: Math.round(after[1].ms), leasesStatus: after[1].value.status };
    // The flood's one log line comes once refusals have stopped for 5 s.
    for (let i = 0; i < 100 && !fs.readFileSync(log, 'utf8').includes('"connections-refused"'); i++) await sleep(100);
    const lines = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
    report.log = {
      lines: lines.length,
      connectionsRefused: lines.filter((l) => l.includes('"connections-refused"')).map((l) => {
        const j = JSON.parse(l);
        return { refused: j.refused, durationMs: j.durationMs };
      }),
      stackTraces: lines.filter((l) => l.includes('"stack"')).length,
    };
    const worst = (k) => Math.max(...report.probes.map((p) => p[k]));
    report.verdict = {
      policyListWorstMs: worst('policyListMs'),
      unixRequestWorstMs: worst('unixGetMs'),
      leasesWorstMs: worst('leasesMs'),
      freshLeasesWorstMs: worst('freshLeasesMs'),
      allProbesOk: report.probes.every((p) => p.policyListOk && p.leasesStatus === 200),
      // The CLI's start-up is the machine's, not the controller's: judged against its own baseline.
      within2s:
        worst('policyListMs') - report.baseline.policyListCliMs < 2000 &&
        worst('unixGetMs') < 2000 &&
        worst('leasesMs') < 2000 &&
        report.watch.ms !== null &&
        report.watch.ms < 2000,
    };
    if (flag('json')) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else printReport(report);
    process.exitCode = report.verdict.within2s && report.verdict.allProbesOk ? 0 : 1;
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function printReport(r) {
  const p = (s) => process.stdout.write(s + '\n');
  p(`slow-request flood: ${r.connections} connections from ${r.workers} workers, held ${r.holdSeconds} s`);
  p(`  flood: ${r.flood.attempts} connection attempts, ${r.flood.tlsHandshakes} finished a TLS handshake, ${r.flood.answered503} answered 503, ${r.flood.closedByServer} closed by the controller, ${r.flood.heldAtEnd} still open at the end`);
  p(`  before the flood: policy list (CLI process, unix socket) ${r.baseline.policyListCliMs} ms; mTLS GET /leases ${r.baseline.cellLeasesMs} ms; load average ${r.baseline.load.join(' ')}`);
  for (const x of r.probes) p(`  t=${x.atS}s  policy list ${x.policyListMs} ms ${x.policyListOk ? 'ok' : 'FAILED'} (the request alone ${x.unixGetMs} ms)  mTLS GET /leases ${x.leasesMs} ms (${x.leasesStatus}), on a new connection ${x.freshLeasesMs} ms (${x.freshLeasesStatus})  controller sockets ${x.open}`);
  p(`  held mTLS watch woke ${r.watch.ms} ms after the change (${r.watch.status})`);
  p(`  after the flood: policy list ${r.afterFlood.policyListMs} ms, GET /leases ${r.afterFlood.leasesMs} ms (${r.afterFlood.leasesStatus})`);
  p(`  body limit: ${r.bodyLimit.declared.status} in ${r.bodyLimit.declared.ms} ms for a declared 64 MiB body; ${r.bodyLimit.chunked.status} after ${r.bodyLimit.chunked.sentKB} KiB of a chunked one; RSS ${r.bodyLimit.rssBeforeMB} → ${r.bodyLimit.rssAfterMB} MB`);
  p(`  controller RSS: before ${r.rssBeforeMB} MB, peak during ${r.rssDuringPeakMB} MB, after ${r.rssAfterMB} MB`);
  p(`  controller log: ${r.log.lines} lines, connections-refused ${JSON.stringify(r.log.connectionsRefused)}, stack traces ${r.log.stackTraces}`);
  p(`  verdict: worst policy list ${r.verdict.policyListWorstMs} ms (CLI start-up ${r.baseline.policyListCliMs} ms of it; the request ${r.verdict.unixRequestWorstMs} ms), worst mTLS GET /leases ${r.verdict.leasesWorstMs} ms (new connections: ${r.verdict.freshLeasesWorstMs} ms) — ${r.verdict.within2s && r.verdict.allProbesOk ? 'every probe answered within 2 s' : 'NOT every probe answered within 2 s'}`);
}

async function bodyLimitCheck(port, mtls, rss) {
  const before = rss();
  // Declared 64 MiB: the answer must come before we send a byte of body.
  const declared = await timed(
    () =>
      new Promise((resolve, reject) => {
        const req = https.request(
          { host: '127.0.0.1', port, method: 'POST', path: '/networking/v1/external/policies', ...mtls, agent: false,
            headers: { 'content-type': 'application/json', 'content-length': String(64 * 1024 * 1024) } },
          (res) => {
            res.resume();
            resolve(res.statusCode);
            req.destroy();
          },
        );
        req.on('error', reject);
        req.flushHeaders();
      }),
  );
  // Chunked: keep sending 64 KiB pieces until the controller answers.
  let sent = 0;
  const chunked = await new Promise((resolve) => {
    const req = https.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/leases/renew', ...mtls, agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        resolve(res.statusCode);
        req.destroy();
      },
    );
    req.on('error', () => resolve('reset'));
    const piece = Buffer.alloc(64 * 1024, 0x20);
    const pump = () => {
      while (sent < 32 * 1024 * 1024 && !req.destroyed) {
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
    };
    pump();
  });
  return { declared: { status: declared.value, ms: Math.round(declared.ms) }, chunked: { status: chunked, sentKB: sent / 1024 }, rssBeforeMB: before, rssAfterMB: rss() };
}

function request({ port, path: p, method = 'GET', body, timeoutMs = 10_000, ca, cert, key, agent = false }) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      { host: '127.0.0.1', port, path: p, method, ca, cert, key, agent,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let parsed = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* text */
          }
          clearTimeout(t);
          resolve({ status: res.statusCode, body: parsed });
        });
      },
    );
    const t = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    req.end(payload);
  });
}

function unixRequest(socketPath, p, method = 'GET', body) {
  return new Promise((resolve) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { socketPath, path: p, method, agent: false, timeout: 10_000, headers: payload ? { 'content-type': 'application/json' } : {} },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end(payload);
  });
}

function runCli(args) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
    c.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, err });
    });
  });
}

async function timed(fn) {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** Established connections to the controller's port, as the kernel counts them here. */
function countOpen(port) {
  try {
    const out = execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8', timeout: 5000 });
    return out.split('\n').filter(Boolean).length;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- worker
/**
 * Keep `count` slow connections open for `hold` seconds (with --reconnect,
 * reopening each one the controller closes). Kinds, by index: 70 % send nothing, 10 % send 5
 * bytes of a TLS record header, 20 % finish a TLS handshake without a client
 * certificate and then send headers one byte a second (half of those declare
 * a body and send none).
 */
async function worker() {
  const port = Number(arg('port'));
  const count = Number(arg('count'));
  const hold = Number(arg('hold')) * 1000;
  // The hold starts once every connection has been opened (bounded: opening gets 60 s at most).
  let end = Date.now() + 60_000 + hold;
  const stats = { attempts: 0, answered503: 0, closedByServer: 0, heldAtEnd: 0, tlsHandshakes: 0 };
  const open = new Set();
  let stopping = false;
  const open1 = (i) => {
    if (stopping || Date.now() > end) return;
    stats.attempts++;
    const kind = i % 10;
    let s;
    let dribble = null;
    const onClose = () => {
      if (dribble) clearInterval(dribble);
      open.delete(s);
      if (stopping) return;
      stats.closedByServer++;
      // --reconnect: reopen after a short pause, like a flooder that keeps its count up (a connection-rate flood).
      if (flag('reconnect')) setTimeout(() => open1(i), 50);
    };
    const onData = (d) => {
      if (String(d).startsWith('HTTP/1.1 503')) stats.answered503++;
    };
    if (kind < 8) {
      s = net.connect(port, '127.0.0.1');
      if (kind === 7) s.on('connect', () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])));
    } else {
      s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      s.on('secureConnect', () => {
        stats.tlsHandshakes++;
        const head = kind === 8 ? 'GET /leases HTTP/1.1\r\nHost: x\r\nX-a: ' : 'PUT /leases/renew HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n{';
        let k = 0;
        s.write(head.slice(0, 10));
        k = 10;
        dribble = setInterval(() => {
          if (k < head.length) s.write(head[k++]);
          else if (kind === 8) s.write('a');
        }, 1000);
      });
    }
    s.on('data', onData);
    s.on('error', () => {});
    s.on('close', onClose);
    open.add(s);
  };
  // Open at a bounded pace (250 per 10 ms per worker).
  for (let i = 0; i < count; i++) {
    open1(i);
    if (i % 250 === 249) await sleep(10);
  }
  end = Date.now() + hold;
  process.stdout.write('opened\n');
  while (Date.now() < end) await sleep(200);
  stopping = true;
  stats.heldAtEnd = open.size;
  for (const s of open) s.destroy();
  process.stdout.write(JSON.stringify(stats) + '\n');
}
