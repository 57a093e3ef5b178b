// Helpers for the tests of a cell with several workers (`silkworm cell
// --workers N`, docs/ARCHITECTURE.md "Several cores per cell"):
// test/e2e/workers.test.ts and test/e2e/workers-restart.test.ts. Everything is
// observed from outside, as a user can: the CLI's JSON, sysfs in a
// container's namespace, ss in a cell's namespace, /proc of the cell process.
import fs from 'node:fs';
import { expect } from 'vitest';
import { curl, inNetns, silkwormJson, silkwormOk, type CountersJson, type CurlResult, type RunResult } from './lab.js';

/** `show counters --json` of a cell that may run several workers. */
export interface WorkersCounters extends CountersJson {
  workers?: number;
  io?: Record<string, unknown>;
}

export function countersOf(prefix: string, cell: string): Promise<WorkersCounters> {
  return silkwormJson<WorkersCounters>(['show', 'counters', '--cell', cell, '--lab', prefix]);
}

/** One entry of `show conntrack --json` (NDJSON). */
export interface ConntrackEntry {
  proto: string;
  state?: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
}

/** `show conntrack --cell C --lab P [filters] --json`, every line parsed. */
export async function conntrackOf(prefix: string, cell: string, filters: string[] = []): Promise<ConntrackEntry[]> {
  const out = await silkwormOk(['show', 'conntrack', '--cell', cell, '--lab', prefix, ...filters, '--json'], { timeoutMs: 20_000 });
  return out
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as ConntrackEntry);
}

/** The queues of a device in a namespace as sysfs lists them (`rx-0`, …, `tx-0`, …), sorted. */
export async function tapQueues(ns: string, dev = 'eth0'): Promise<string[]> {
  const r = await inNetns(ns, 'ls', ['-1', `/sys/class/net/${dev}/queues`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ls /sys/class/net/${dev}/queues in ${ns}: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .sort();
}

/** `rx-0 … rx-(n-1), tx-0 … tx-(n-1)`, sorted as tapQueues sorts. */
export const queueNames = (n: number): string[] => [...Array.from({ length: n }, (_, i) => `rx-${i}`), ...Array.from({ length: n }, (_, i) => `tx-${i}`)].sort();

/** UDP sockets bound to ip:port in a namespace, as `ss -uanp` lists them (one line each), with the pids holding them. */
export async function udpSocketsOn(ns: string, ip: string, port: number): Promise<{ line: string; pids: number[] }[]> {
  const r = await inNetns(ns, 'ss', ['-H', '-u', '-a', '-n', '-p', `sport = :${port}`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ss in ${ns}: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.includes(`${ip}:${port} `))
    .map((line) => ({ line: line.trim(), pids: [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])) }));
}

/** Sum of the frame/datagram/packet counts anywhere in one worker's io stats (rxFrames, txFrames, frames, rxDatagrams, txPackets…). */
function sumFrames(o: unknown): number {
  if (typeof o !== 'object' || o === null) return 0;
  let n = 0;
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'number' && /^(rx|tx)?(frames|datagrams|packets)$/i.test(k)) n += v;
    else if (typeof v === 'object') n += sumFrames(v);
  }
  return n;
}

/**
 * Frames each worker's devices moved, worker 0 first, from `show counters
 * --json`: `io.workers` lists the io stats of workers 1…N-1 and `io` itself
 * (its other keys) is worker 0's — the main thread's own queue and socket
 * (docs/ARCHITECTURE.md: "The main thread is worker 0"); a list of N is
 * taken as all of them. Undefined when the cell lists no workers.
 */
export function workerFrames(c: WorkersCounters): number[] | undefined {
  const w = c.io?.['workers'];
  if (typeof w !== 'object' || w === null) return undefined;
  const list = (Array.isArray(w) ? (w as unknown[]) : Object.values(w)).map(sumFrames);
  if (c.workers !== undefined && list.length === c.workers - 1) {
    const own = Object.fromEntries(Object.entries(c.io!).filter(([k]) => k !== 'workers'));
    list.unshift(sumFrames(own));
  }
  return list;
}

/** CPU ticks (utime + stime) of every thread of a process, by thread id (/proc/PID/task/TID/stat). */
export function threadTicks(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after "(comm)": state is field 3, utime 14, stime 15 (proc(5)).
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), Number(f[11]) + Number(f[12]));
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

/** Per-thread tick deltas, largest first. */
export function tickDeltas(before: Map<number, number>, after: Map<number, number>): number[] {
  return [...after.entries()].map(([tid, t]) => t - (before.get(tid) ?? 0)).sort((a, b) => b - a);
}

/** curl from `ns` once per local port, one after the other (each connection's tuple known exactly). */
export async function curlFromPorts(ns: string, url: string, ports: number[], maxTimeS = 5): Promise<(CurlResult & { port: number })[]> {
  const out: (CurlResult & { port: number })[] = [];
  for (const port of ports) out.push({ ...(await curl(ns, url, maxTimeS, ['--local-port', String(port)])), port });
  return out;
}

/**
 * A bad invocation: exited by itself (not our bound), non-zero, no stack
 * trace, and one sentence on stderr (commander's "(run with --help for
 * usage)" hint line aside) matching every pattern. Returns the sentence.
 */
export function expectOneLineError(r: RunResult, what: string, patterns: RegExp[]): string {
  expect(r.timedOut, `${what}: still running at the time bound (the bad input was not refused): ${r.stderr.slice(0, 500)}`).toBe(false);
  expect(r.code, `${what}: exit code (stderr: ${r.stderr.slice(0, 500)})`).not.toBe(0);
  expect(r.code, `${what}: killed by a signal`).not.toBeNull();
  expect(r.stderr, `${what}: a stack trace`).not.toMatch(/^\s+at .+[:(]/m);
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '(run with --help for usage)');
  expect(lines, `${what}: stderr should be one sentence: ${r.stderr}`).toHaveLength(1);
  for (const p of patterns) expect(lines[0], what).toMatch(p);
  return lines[0]!;
}

const ipU32 = (s: string): number => s.split('.').reduce((a, b) => a * 256 + Number(b), 0) >>> 0;

/**
 * The worker a flow belongs to, as docs/ARCHITECTURE.md ("Several cores per
 * cell") writes the steering hash — written here from the document, not from
 * src/dataplane/steer.ts:
 *     h = saddr ^ daddr;  unfragmented TCP: h ^= sport ^ dport
 *     worker = ((h * 0x9E3779B1) >> 16) % N        (32-bit arithmetic)
 * Symmetric: either direction of a flow gives the same worker.
 */
export function steerWorker(f: { src: string; dst: string; proto: 'tcp' | 'udp' | 'icmp'; sport?: number; dport?: number }, n: number): number {
  let h = (ipU32(f.src) ^ ipU32(f.dst)) >>> 0;
  if (f.proto === 'tcp') h = (h ^ (f.sport ?? 0) ^ (f.dport ?? 0)) >>> 0;
  return ((Math.imul(h, 0x9e3779b1) >>> 0) >>> 16) % n;
}

/**
 * `perWorker` local ports for each of `n` workers (from `from` up, in
 * order), for TCP connections src:port → dst:dport, so a test's connections
 * are known to live in every worker.
 */
export function portsPerWorker(src: string, dst: string, dport: number, n: number, perWorker: number, from: number): number[] {
  const taken = Array.from({ length: n }, () => 0);
  const out: number[] = [];
  for (let p = from; out.length < n * perWorker; p++) {
    if (p > 65535) throw new Error(`no ${perWorker} ports per worker from ${from}`);
    const w = steerWorker({ src, dst, proto: 'tcp', sport: p, dport }, n);
    if (taken[w]! < perWorker) {
      taken[w]!++;
      out.push(p);
    }
  }
  return out;
}
