// Helpers for the end-to-end lab tests (test/e2e/lab-*.test.ts): drive the
// lab exactly as a user does — the `silkworm` CLI from the repo root, `ip netns
// exec` for commands in namespaces, tcpdump/tshark for a bounded time — and
// clean up in afterAll no matter how the test went.
//
// Rules these helpers keep (docs/ARCHITECTURE.md, "Lab topology and network safety"):
// - every namespace they make is named `<prefix>-…` with the test's own prefix;
// - nothing is added to the root namespace (the rogue underlay host's veth is
//   created inside `<prefix>-underlay` with its peer placed straight into the
//   rogue namespace);
// - every child process has a hard time bound and is killed by its own PID;
// - cleanup() stops what these helpers started, takes the lab down, deletes
//   the extra namespaces, and never throws (it is called from afterAll).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(REPO, 'bin/silkworm.js');
export const UDP_PING = path.join(REPO, 'scripts/udp-ping.mjs');
export const RUN_DIR = process.env.SILKWORM_RUN_DIR ?? '/run/silkworm';

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * A lab prefix of our own: `e<pid mod 10000><tag>` — 1–9 letters/digits/_,
 * starting with a letter (the lab's rule), distinct per test file via `tag`.
 */
export function uniquePrefix(tag: string): string {
  const p = `e${process.pid % 10000}${tag}`;
  if (!/^[a-z][a-z0-9_]{0,8}$/i.test(p)) throw new Error(`prefix ${p} is not a valid lab prefix`);
  return p;
}

export interface RunResult {
  /** Exit code, or null when killed by a signal (e.g. our time bound). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
  timedOut: boolean;
}

export interface RunOptions {
  /** Hard bound: SIGKILL after this long (default 30 s). */
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
}

const started = new Set<ChildProcess>();

/** Run a command to completion; never throws for a non-zero exit. */
export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    started.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs ?? 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      started.delete(child);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
    // A command that exits without reading stdin closes the pipe first: not an error of the test.
    child.stdin.on('error', () => undefined);
    child.stdin.end(o.input ?? '');
  });
}

/** `ip netns exec NS cmd args…` (ip execs the command: the child PID is the command's). */
export function inNetns(ns: string, cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], o);
}

/** The CLI as a user runs it: `node bin/silkworm.js …` from the repo root. */
export function silkworm(args: string[], o: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], o);
}

function describeFailure(what: string, r: RunResult): string {
  return `${what} exited ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`;
}

/** Run the CLI and require exit 0; returns stdout. */
export async function silkwormOk(args: string[], o: RunOptions = {}): Promise<string> {
  const r = await silkworm(args, o);
  if (r.code !== 0) throw new Error(describeFailure(`silkworm ${args.join(' ')}`, r));
  return r.stdout;
}

/** Run the CLI with --json and parse what it prints. */
export async function silkwormJson<T = unknown>(args: string[], o: RunOptions = {}): Promise<T> {
  const out = await silkwormOk([...args, '--json'], o);
  try {
    return JSON.parse(out) as T;
  } catch {
    throw new Error(`silkworm ${args.join(' ')} --json printed something that is not JSON: ${out.slice(0, 500)}`);
  }
}

/** Synchronous `ip …` for setup/cleanup; throws with ip's stderr. */
export function ipSync(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
}

export function listNetns(): string[] {
  return ipSync(['netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

/** Interface names in a namespace (root when ns is undefined). */
export function listLinks(ns?: string): string[] {
  const out = ipSync(ns ? ['-n', ns, '-o', 'link', 'show'] : ['-o', 'link', 'show']);
  return out
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n);
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a non-undefined value or the deadline passes. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 5000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    }
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- the lab

export interface LabStatusJson {
  prefix: string;
  up: boolean;
  namespaces: { name: string; exists: boolean }[];
  controller?: { pid: number; socket: string; alive: boolean };
  cells: { name: string; underlayIp: string; netns: string; socket: string; pid: number; alive: boolean }[];
  containers: { app: string; netns: string; ip: string; cell: string; mac?: string; handle?: string }[];
  apps: { pid: number; netns: string; app: string; port: number }[];
}

export interface Lab {
  prefix: string;
  status: LabStatusJson;
  /** Namespaces by role: underlay, cell1, cell2, appA (P-appA-0), appB (P-appB-0). */
  ns: { underlay: string; cell1: string; cell2: string; appA: string; appB: string };
  appA: { ip: string; netns: string };
  appB: { ip: string; netns: string };
  cellIp: Record<string, string>;
  /** Every PID the lab reported (controller, cells, app servers). */
  pids: number[];
  /** Root namespace links before `lab up`, to check `lab down` left none behind. */
  rootLinksBefore: string[];
  /** Wall time of `lab up` (under 30 s). */
  upMs: number;
}

/** `lab up --prefix P`, then `lab status --json`. Throws with the CLI's message on failure. */
export async function labUp(prefix: string, extraArgs: string[] = []): Promise<Lab> {
  const rootLinksBefore = listLinks();
  const up = await silkworm(['lab', 'up', '--prefix', prefix, ...extraArgs], { timeoutMs: 60_000 });
  if (up.code !== 0) throw new Error(describeFailure(`silkworm lab up --prefix ${prefix}`, up));
  const status = await silkwormJson<LabStatusJson>(['lab', 'status', '--prefix', prefix]);
  const byApp = (app: string) => {
    const c = status.containers.find((x) => x.app === app);
    if (!c) throw new Error(`lab status lists no container of ${app}`);
    return { ip: c.ip, netns: c.netns };
  };
  const cellIp: Record<string, string> = {};
  for (const c of status.cells) cellIp[c.name] = c.underlayIp;
  const pids = [status.controller?.pid, ...status.cells.map((c) => c.pid), ...status.apps.map((a) => a.pid)].filter(
    (p): p is number => typeof p === 'number' && p > 0,
  );
  return {
    prefix,
    status,
    ns: { underlay: `${prefix}-underlay`, cell1: `${prefix}-cell1`, cell2: `${prefix}-cell2`, appA: `${prefix}-appA-0`, appB: `${prefix}-appB-0` },
    appA: byApp('appA'),
    appB: byApp('appB'),
    cellIp,
    pids,
    rootLinksBefore,
    upMs: up.ms,
  };
}

/**
 * Tear everything down, never throwing: kill children these helpers started
 * (by PID), `lab down`, delete the extra namespaces we made. Safe to repeat.
 */
export async function cleanup(prefix: string, extraNamespaces: string[] = []): Promise<void> {
  for (const child of [...started]) {
    if (child.pid && child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  try {
    await silkworm(['lab', 'down', '--prefix', prefix], { timeoutMs: 60_000 });
  } catch {
    /* keep going: the namespaces below still need deleting */
  }
  let present: string[] = [];
  try {
    present = listNetns();
  } catch {
    return;
  }
  for (const ns of extraNamespaces) {
    if (!present.includes(ns)) continue;
    try {
      ipSync(['netns', 'del', ns]);
    } catch {
      /* reported by the test that checks for leftovers */
    }
  }
}

// ---------------------------------------------------------------- captures

export interface Capture {
  /** Resolves once the tool said it is capturing (stderr), rejects if it exited first. */
  ready: Promise<void>;
  /** Resolves when the tool exited (by its own -c count, its bound, or stop()). */
  done: Promise<RunResult>;
  /** SIGINT (tcpdump/tshark flush and print their summary), then wait for exit. */
  stop(): Promise<RunResult>;
}

/**
 * Start a capture tool in a namespace, bounded by `timeoutMs` (SIGINT at the
 * bound, SIGKILL 2 s later). `readyPattern` is matched against stderr:
 * tcpdump prints "listening on", tshark "Capturing on".
 */
export function startCapture(ns: string, cmd: string, args: string[], o: { timeoutMs: number; readyPattern: RegExp; settleMs?: number }): Capture {
  const t0 = performance.now();
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let stdout = '';
  let stderr = '';
  let readyResolve!: () => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  ready.catch(() => {}); // observed through done/stop too
  let isReady = false;
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (!isReady && o.readyPattern.test(stderr)) {
      isReady = true;
      // A short settle: the tool prints before its first packet is read.
      setTimeout(readyResolve, o.settleMs ?? 300);
    }
  });
  let timedOut = false;
  const bound = setTimeout(() => {
    timedOut = true;
    child.kill('SIGINT');
    setTimeout(() => child.kill('SIGKILL'), 2000).unref();
  }, o.timeoutMs);
  const done = new Promise<RunResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(bound);
      started.delete(child);
      if (!isReady) readyReject(new Error(`${cmd} in ${ns} exited before it was capturing: ${stderr.trim().slice(0, 500)}`));
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
    child.on('error', (err) => {
      clearTimeout(bound);
      started.delete(child);
      if (!isReady) readyReject(err);
      resolve({ code: null, signal: null, stdout, stderr: stderr + String(err), ms: performance.now() - t0, timedOut });
    });
  });
  return {
    ready,
    done,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return done;
    },
  };
}

export function tcpdump(ns: string, args: string[], timeoutMs = 15_000): Capture {
  // -l: line-buffered, so what was printed before SIGINT is not lost.
  return startCapture(ns, 'tcpdump', ['-l', ...args], { timeoutMs, readyPattern: /listening on/ });
}

export function tshark(ns: string, args: string[], timeoutMs = 20_000): Capture {
  // tshark starts dumpcap, which needs a moment after "Capturing on" (~2 s on
  // this kind of machine) before packets are really seen: settle longer.
  return startCapture(ns, 'tshark', args, { timeoutMs, readyPattern: /Capturing on/, settleMs: 1500 });
}

// ---------------------------------------------------------------- probes

export interface CurlResult {
  code: number | null;
  body: string;
  ms: number;
  stderr: string;
  /** Why connect() failed, from curl -v ("Connection refused", "Network is unreachable", …), or ''. */
  connectError: string;
}

/** curl's -v line "connect to IP port N failed: <strerror>" names the errno behind exit 7. */
export function curlConnectError(stderr: string): string {
  return /connect to \S+ port \d+ failed: ([^\n]+)/.exec(stderr)?.[1]?.trim() ?? '';
}

/**
 * curl from a namespace; exit 7 = could not connect (refused / unreachable),
 * 28 = timed out. -v so the errno behind exit 7 is known (curl ≥ 8 says only
 * "Couldn't connect to server" without it).
 */
export async function curl(ns: string, url: string, maxTimeS = 5, extra: string[] = []): Promise<CurlResult> {
  const r = await inNetns(ns, 'curl', ['-v', '-sS', '--max-time', String(maxTimeS), ...extra, url], { timeoutMs: (maxTimeS + 5) * 1000 });
  return { code: r.code, body: r.stdout, ms: r.ms, stderr: r.stderr, connectError: curlConnectError(r.stderr) };
}

export interface UdpPingResult {
  sent: number;
  received: number;
  lost: number;
  refused: number;
  /** ICMP net/host unreachable (EHOSTUNREACH / ENETUNREACH on the connected socket). */
  unreachable: number;
  p50_us: number | null;
  p99_us: number | null;
}

/** scripts/udp-ping.mjs client in a namespace (one probe in flight at a time). */
export async function udpPing(ns: string, host: string, port: number, count = 1, timeoutMs = 1000): Promise<UdpPingResult> {
  const r = await inNetns(
    ns,
    process.execPath,
    [UDP_PING, 'client', '--host', host, '--port', String(port), '--count', String(count), '--timeout-ms', String(timeoutMs), '--json'],
    { timeoutMs: count * timeoutMs + 10_000 },
  );
  try {
    return JSON.parse(r.stdout) as UdpPingResult;
  } catch {
    throw new Error(describeFailure(`udp-ping client in ${ns}`, r));
  }
}

export interface Background {
  pid: number;
  stop(): Promise<void>;
}

/**
 * A long-running process in a namespace (a listener), bounded by `timeoutMs`;
 * resolves once its stdout matches `readyPattern`.
 */
export async function background(ns: string, cmd: string, args: string[], readyPattern: RegExp, timeoutMs = 120_000): Promise<Background> {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  const bound = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  bound.unref();
  const exited = new Promise<void>((res) =>
    child.on('close', () => {
      clearTimeout(bound);
      started.delete(child);
      res();
    }),
  );
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${cmd} in ${ns} did not get ready in 10 s: ${err.slice(0, 500)}`)), 10_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (readyPattern.test(out)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('close', (code) => {
      clearTimeout(t);
      reject(new Error(`${cmd} in ${ns} exited (${code}) before it was ready: ${err.slice(0, 500)}`));
    });
  });
  return {
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await Promise.race([exited, sleep(3000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

// ---------------------------------------------------------------- counters

export interface CountersJson {
  stats: Record<string, number>;
  drops: Record<string, number>;
  containers: { handle: string; app: string; ip: string; tx_packets: number; rx_packets: number; tx_bytes: number; rx_bytes: number }[];
}

export function counters(prefix: string, cell: string): Promise<CountersJson> {
  return silkwormJson<CountersJson>(['show', 'counters', '--cell', cell, '--lab', prefix]);
}

/**
 * GET a path from a lab cell's admin socket (/run/silkworm/P/<cell>.sock) —
 * the document `silkworm show <path> --cell <cell> --json` prints for
 * counters. For tests that poll many times and cannot afford a CLI start-up
 * (~0.5 s) per poll; the CLI form is exercised by lab-curl.test.ts.
 */
export function cellGet<T = unknown>(prefix: string, cell: string, urlPath: string, timeoutMs = 5000): Promise<T> {
  const socketPath = path.join(RUN_DIR, prefix, `${cell}.sock`);
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${urlPath} on ${cell}: HTTP ${res.statusCode} ${body.slice(0, 300)}`));
        try {
          resolve(JSON.parse(body) as T);
        } catch {
          reject(new Error(`GET ${urlPath} on ${cell}: not JSON: ${body.slice(0, 300)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} on ${cell}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** after − before for every key present in either (missing counts as 0). */
export function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) out[k] = (after[k] ?? 0) - (before[k] ?? 0);
  return out;
}

/** Only the keys that moved. */
export function moved(d: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(d).filter(([, v]) => v !== 0));
}

export function containerCounters(c: CountersJson, ip: string): { rx_packets: number; tx_packets: number } {
  const x = c.containers.find((k) => k.ip === ip);
  return { rx_packets: x?.rx_packets ?? 0, tx_packets: x?.tx_packets ?? 0 };
}

// ---------------------------------------------------------------- addressing

export const ipToU32 = (s: string): number => s.split('.').reduce((a, b) => a * 256 + Number(b), 0) >>> 0;
export const u32ToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** silk's MACs: two prefix bytes and the four IP bytes (docs/ARCHITECTURE.md, Addressing). */
export function macOf(prefixHex: 'ee:ee' | 'aa:aa', ip: string): string {
  return `${prefixHex}:${ip
    .split('.')
    .map((b) => Number(b).toString(16).padStart(2, '0'))
    .join(':')}`;
}

/** A cell's VTEP overlay IP: the first address of its /24 lease (docs/ARCHITECTURE.md, Addressing). */
export function vtepIpOf(containerIp: string): string {
  return u32ToIp((ipToU32(containerIp) & 0xffffff00) >>> 0);
}

// ---------------------------------------------------------------- crafted VXLAN

/** RFC 1071 one's-complement sum over bytes [off, off+len). */
export function inetChecksum(b: Uint8Array, off: number, len: number, seed = 0): number {
  let sum = seed;
  for (let i = 0; i + 1 < len; i += 2) sum += (b[off + i]! << 8) | b[off + i + 1]!;
  if (len & 1) sum += b[off + len - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function putIp(b: Uint8Array, off: number, ip: string): void {
  const v = ipToU32(ip);
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 255;
  b[off + 2] = (v >>> 8) & 255;
  b[off + 3] = v & 255;
}

function putMac(b: Uint8Array, off: number, mac: string): void {
  mac.split(':').forEach((h, i) => (b[off + i] = parseInt(h, 16)));
}

/** IPv4 header (RFC 791 §3.1), 20 bytes, checksum filled. */
function ipv4Header(b: Uint8Array, off: number, src: string, dst: string, proto: number, totalLen: number, ttl: number, ident: number, df: boolean): void {
  b[off] = 0x45;
  b[off + 1] = 0;
  b[off + 2] = totalLen >> 8;
  b[off + 3] = totalLen & 255;
  b[off + 4] = ident >> 8;
  b[off + 5] = ident & 255;
  b[off + 6] = df ? 0x40 : 0;
  b[off + 7] = 0;
  b[off + 8] = ttl;
  b[off + 9] = proto;
  b[off + 10] = 0;
  b[off + 11] = 0;
  putIp(b, off + 12, src);
  putIp(b, off + 16, dst);
  const c = inetChecksum(b, off, 20);
  b[off + 10] = c >> 8;
  b[off + 11] = c & 255;
}

/** An inner Ethernet frame carrying a TCP SYN, as a sending cell puts it in VXLAN (TTL already 63). */
export function innerTcpSyn(o: { srcMac: string; dstMac: string; src: string; dst: string; sport: number; dport: number; ttl?: number }): Uint8Array {
  const f = new Uint8Array(14 + 20 + 20);
  putMac(f, 0, o.dstMac);
  putMac(f, 6, o.srcMac);
  f[12] = 0x08;
  f[13] = 0x00;
  ipv4Header(f, 14, o.src, o.dst, 6, 40, o.ttl ?? 63, 0x4242, true);
  const t = 34;
  f[t] = o.sport >> 8;
  f[t + 1] = o.sport & 255;
  f[t + 2] = o.dport >> 8;
  f[t + 3] = o.dport & 255;
  f.set([0, 0, 0x10, 0], t + 4); // seq 4096
  f[t + 12] = 0x50; // data offset 5 words (RFC 793 §3.1)
  f[t + 13] = 0x02; // SYN
  f[t + 14] = 0xfa; // window 64240
  f[t + 15] = 0xf0;
  // TCP checksum over the pseudo-header (RFC 793 §3.1).
  const pseudo = new Uint8Array(12);
  putIp(pseudo, 0, o.src);
  putIp(pseudo, 4, o.dst);
  pseudo[9] = 6;
  pseudo[11] = 20;
  let sum = 0;
  for (let i = 0; i < 12; i += 2) sum += (pseudo[i]! << 8) | pseudo[i + 1]!;
  const c = inetChecksum(f, t, 20, sum);
  f[t + 16] = c >> 8;
  f[t + 17] = c & 255;
  return f;
}

/**
 * VXLAN header (RFC 7348 §5, draft-smith-vxlan-group-policy §2.1):
 * byte 0 flags (G=0x80, I=0x08), byte 1 (D=0x40, A=0x08), bytes 2–3 Group
 * Policy ID, bytes 4–6 VNI, byte 7 reserved.
 */
export function vxlanHeader(o: { flags: number; gbp: number; vni: number }): Uint8Array {
  return Uint8Array.of(o.flags, 0, o.gbp >> 8, o.gbp & 255, (o.vni >>> 16) & 255, (o.vni >>> 8) & 255, o.vni & 255, 0);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A whole outer IPv4/UDP datagram for an IP_HDRINCL raw socket (UDP checksum 0: RFC 7348 §5 allows it). */
export function outerUdp(o: { src: string; dst: string; sport: number; dport?: number; payload: Uint8Array; ident?: number }): Uint8Array {
  const total = 20 + 8 + o.payload.length;
  const b = new Uint8Array(total);
  ipv4Header(b, 0, o.src, o.dst, 17, total, 64, o.ident ?? 0x5151, false);
  const dport = o.dport ?? 4789;
  b[20] = o.sport >> 8;
  b[21] = o.sport & 255;
  b[22] = dport >> 8;
  b[23] = dport & 255;
  b[24] = (8 + o.payload.length) >> 8;
  b[25] = (8 + o.payload.length) & 255;
  b.set(o.payload, 28);
  return b;
}

export const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/**
 * Send whole IPv4 datagrams from inside a namespace with the `raw-socket`
 * package: protocol 255 = IPPROTO_RAW, which implies IP_HDRINCL (raw(7)), so
 * the bytes go out exactly as built (the kernel fills only a zero IP id).
 * Each datagram is sent `times` times. Resolves with the number sent.
 */
export async function sendRaw(ns: string, datagrams: { dst: string; bytes: Uint8Array; times: number }[]): Promise<number> {
  const script = `
const raw = require('raw-socket');
const list = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const s = raw.createSocket({ protocol: 255 });
let sent = 0, pending = 0, failed = null;
const queue = [];
for (const d of list) { const b = Buffer.from(d.hex, 'hex'); for (let i = 0; i < d.times; i++) queue.push([b, d.dst]); }
pending = queue.length;
if (pending === 0) { s.close(); console.log(0); }
for (const [b, dst] of queue) {
  s.send(b, 0, b.length, dst, (err, bytes) => {
    if (err) failed = err; else if (bytes === b.length) sent++;
    if (--pending === 0) { s.close(); if (failed) { console.error(String(failed)); process.exit(1); } console.log(sent); }
  });
}`;
  const input = JSON.stringify(datagrams.map((d) => ({ dst: d.dst, hex: toHex(d.bytes), times: d.times })));
  const r = await inNetns(ns, process.execPath, ['-e', script], { input, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(describeFailure(`raw-socket sender in ${ns}`, r));
  return Number(r.stdout.trim());
}

/**
 * A host on the lab's underlay that holds no lease: namespace `name` with a
 * veth whose other end is a port of `<prefix>-underlay`'s br0. The veth is
 * created inside the underlay namespace with its peer moved into `name` in
 * the same request, so the root namespace never holds either end.
 */
export function addUnderlayHost(prefix: string, name: string, cidr: string): void {
  const underlay = `${prefix}-underlay`;
  ipSync(['netns', 'add', name]);
  ipSync(['-n', name, 'link', 'set', 'lo', 'up']);
  ipSync(['-n', underlay, 'link', 'add', 'rogue0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
  ipSync(['-n', underlay, 'link', 'set', 'rogue0', 'master', 'br0']);
  ipSync(['-n', underlay, 'link', 'set', 'rogue0', 'up']);
  ipSync(['-n', name, 'addr', 'add', cidr, 'dev', 'eth0']);
  ipSync(['-n', name, 'link', 'set', 'eth0', 'up']);
}

/** True if a directory exists (the lab's /run/silkworm/P). */
export const dirExists = (p: string): boolean => fs.existsSync(p);
