// Process supervision for the lab: start detached with logs to files, wait
// (bounded) for a socket to answer, and stop *only* the processes the lab
// started — a recorded PID is signalled only while /proc/PID/cmdline still
// shows one of our programs, so a PID reused by the kernel is never hit.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { fail } from './errors.js';

/** Start `cmd args` in its own session, stdout+stderr appended to `log`; returns the PID. */
export function spawnDetached(cmd: string, args: string[], log: string, env?: NodeJS.ProcessEnv): number {
  const fd = fs.openSync(log, 'a');
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env: env ?? process.env });
    // spawn reports ENOENT asynchronously; keep it from becoming an unhandled
    // 'error' event — the caller's readiness wait notices the missing process.
    child.on('error', () => {});
    child.unref();
    if (child.pid === undefined) fail(`could not start ${cmd}: see ${log}`);
    return child.pid;
  } finally {
    fs.closeSync(fd);
  }
}

/** The process's argv from /proc, or null if it is gone. */
export function cmdline(pid: number): string[] | null {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s) => s.length > 0);
  } catch {
    return null;
  }
}

/** Alive = exists and is not a zombie (a zombie still answers kill(pid, 0)). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 follows the last ')' of "pid (comm) S …" (comm may contain ')').
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Is this command line one of the lab's programs? An argument whose file name
 * is silkworm / silkworm.js / app-server.js, or a helper named "silkworm-…".
 * Deliberately not "contains silkworm": `tail -f /run/silkworm/sw/cell1.log`
 * names the lab too, and a user's tail must survive `lab down`.
 */
export function isLabProgram(argv: string[]): boolean {
  return argv.some((a) => {
    const base = a.slice(a.lastIndexOf('/') + 1);
    return /^(silkworm(\.js)?|app-server\.js)$/.test(base) || /^silkworm-[a-z0-9-]+$/.test(base);
  });
}

/** True if `pid` is alive and runs one of the lab's programs (see isLabProgram). */
export function isOurs(pid: number): boolean {
  if (!isAlive(pid)) return false;
  const argv = cmdline(pid);
  return argv !== null && isLabProgram(argv);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * SIGTERM every PID that is still ours, wait up to `graceMs` for them to go,
 * then SIGKILL the survivors (still only if ours). Returns PIDs that would not die.
 */
export async function stopProcesses(pids: number[], graceMs = 3000): Promise<number[]> {
  const targets = [...new Set(pids)].filter((p) => p !== process.pid && isOurs(p));
  for (const p of targets) signal(p, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  let left = targets.filter(isAlive);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(50);
    left = left.filter(isAlive);
  }
  for (const p of left) if (isOurs(p)) signal(p, 'SIGKILL');
  const killDeadline = Date.now() + 2000;
  while (left.length > 0 && Date.now() < killDeadline) {
    await sleep(20);
    left = left.filter(isAlive);
  }
  return left;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** One HTTP GET over a unix socket; resolves with the status code, or null if nothing answered. */
export function probeHttp(socketPath: string, urlPath = '/', timeoutMs = 500): Promise<number | null> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: urlPath, timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? null);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

export interface WaitSpec {
  /** Human name for messages: "the controller", "cell1". */
  what: string;
  pid: number;
  log: string;
  timeoutMs: number;
  /** Resolves true once the service is ready. */
  ready: () => Promise<boolean> | boolean;
}

/**
 * Poll `ready` until it holds. Fails with one sentence naming the log file if
 * the process exits first or the deadline passes — a hang is never the answer.
 */
export async function waitReady(spec: WaitSpec): Promise<void> {
  const deadline = Date.now() + spec.timeoutMs;
  for (;;) {
    if (await spec.ready()) return;
    if (!isAlive(spec.pid)) fail(`${spec.what} exited while starting: see ${spec.log}`);
    if (Date.now() >= deadline) {
      const t = spec.timeoutMs >= 1000 ? `${Math.round(spec.timeoutMs / 1000)} s` : `${spec.timeoutMs} ms`;
      fail(`${spec.what} was not ready within ${t}: see ${spec.log}`);
    }
    await sleep(100);
  }
}

/** Is something listening on TCP `port` inside `netns`? (`ss -Hltn` there.) */
export function listeningIn(netns: string, port: number): boolean {
  try {
    const out = execFileSync('ip', ['netns', 'exec', netns, 'ss', '-Hltn'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    });
    // Local address is the 4th column: "LISTEN 0 511 0.0.0.0:8080 0.0.0.0:*".
    return out.split('\n').some((l) => l.trim().split(/\s+/)[3]?.endsWith(`:${port}`));
  } catch {
    return false;
  }
}
