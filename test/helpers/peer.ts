// Long-lived TCP connections across a lab for the restart tests
// (test/e2e/restart.test.ts, test/e2e/workers-restart.test.ts): the two ends
// of test/helpers/restart-peer.mjs started in container namespaces, the
// check that a connection came through a restart whole, and the lab's
// state.json (each cell's recorded command line and log).
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { background, inNetns, REPO, RUN_DIR, waitFor, type Background } from './lab.js';

export const PEER = path.join(REPO, 'test/helpers/restart-peer.mjs');

/** The client's summary line (see restart-peer.mjs). */
export interface PeerResult {
  sent: number;
  echoed: number;
  inOrder: boolean;
  error: string | null;
  closed: boolean;
  gaps: [number, number][];
  connectedAt: number;
  lastEchoAt: number;
}

/** The echo server in `ns` on `port`, bounded by `timeoutMs`; resolves once it listens. */
export function peerServer(ns: string, port: number, timeoutMs: number): Promise<Background> {
  return background(ns, process.execPath, [PEER, 'server', String(port)], /listening/, timeoutMs);
}

/** One client connection from `ns` to host:port for `seconds` (from `localPort` when given); resolves with its summary. */
export function peerClient(ns: string, host: string, port: number, seconds: number, localPort?: number): Promise<PeerResult> {
  const args = [PEER, 'client', host, String(port), String(seconds), ...(localPort === undefined ? [] : [String(localPort)])];
  return inNetns(ns, process.execPath, args, { timeoutMs: (seconds + 15) * 1000 }).then((r) => {
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as PeerResult;
    } catch {
      throw new Error(`restart-peer client printed no summary (exit ${r.code}): ${r.stderr.slice(0, 500)}`);
    }
  });
}

/** Wait until a one-second connection from `ns` to host:port is echoed (its policy reached the cells). */
export async function untilAnswered(ns: string, host: string, port: number, what: string): Promise<void> {
  await waitFor(what, async () => ((await peerClient(ns, host, port, 1)).echoed > 0 ? true : undefined), 10_000, 200);
}

/** Wait until a new connection from `ns` to host:port is refused (its policy is gone from the cells). */
export async function untilRefused(ns: string, host: string, port: number): Promise<void> {
  await waitFor(`a new connection to ${port} refused`, async () => ((await peerClient(ns, host, port, 1)).error === 'ECONNREFUSED' ? true : undefined), 10_000, 300);
}

/** The pause in `r` that spans `t` (ms epoch), or null. */
export const gapAt = (r: PeerResult, t: number): [number, number] | null => r.gaps.find(([a, b]) => a <= t && t <= b) ?? null;

/** No reset, nothing lost or reordered, echoes before and after `t`. */
export function expectSurvived(r: PeerResult, t: number, what: string): void {
  expect(r.error, `${what}: socket error`).toBeNull();
  expect(r.closed, `${what}: the connection closed`).toBe(false);
  expect(r.inOrder, `${what}: counters out of order`).toBe(true);
  // Every counter sent is echoed except those still in flight at the end.
  expect(r.sent - r.echoed, `${what}: sent ${r.sent}, echoed ${r.echoed}`).toBeLessThanOrEqual(3);
  expect(r.connectedAt).toBeLessThan(t);
  expect(r.lastEchoAt, `${what}: no echo after the restart`).toBeGreaterThan(t + 1000);
}

export interface LabState {
  cells: { name: string; pid: number; command?: string[]; log: string }[];
}

/** The lab's /run/silkworm/P/state.json. */
export const labState = (prefix: string): LabState => JSON.parse(fs.readFileSync(path.join(RUN_DIR, prefix, 'state.json'), 'utf8')) as LabState;

/** `argv` with `flag`'s value replaced by `value`, or `flag value` appended. */
export function withArg(argv: string[], flag: string, value: string): string[] {
  const i = argv.indexOf(flag);
  return i >= 0 ? [...argv.slice(0, i + 1), value, ...argv.slice(i + 2)] : [...argv, flag, value];
}

/** "event +ms" for the first of each event the cell logged after `since` (epoch ms). */
export function eventsAfter(log: string, since: number, events: string[]): string {
  const seen = new Map<string, number>();
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    try {
      const o = JSON.parse(line) as { msg?: string; time?: number };
      if (o.msg && events.includes(o.msg) && typeof o.time === 'number' && o.time >= since && !seen.has(o.msg)) seen.set(o.msg, o.time - since);
    } catch {
      /* not a log line */
    }
  }
  return events.map((e) => `${e} +${seen.get(e) ?? '?'} ms`).join(', ');
}
