// The kernel cell's only way to touch the kernel: run iproute2, bridge,
// iptables, conntrack as argv arrays (no shell, no string splicing) in the
// cell's own network namespace (the process already runs inside it).
// Behind an interface so the converger is tested without root, with a fake
// that records every command (STYLE.md, "silk-release": fakes beside the
// interface).
import { execFile } from 'node:child_process';

export interface Exec {
  /** Run `cmd args`, feed `input` on stdin; resolve with stdout, reject with one sentence naming the command and its stderr. */
  run(cmd: string, args: string[], input?: string): Promise<string>;
}

/** A command that failed, with what it printed on stderr. */
export class ExecError extends Error {
  constructor(
    readonly cmd: string,
    readonly args: string[],
    readonly stderr: string,
  ) {
    const why = stderr.trim().split('\n').pop() || 'failed';
    super(`${cmd} ${args.join(' ')} failed: ${why}`);
    this.name = 'ExecError';
  }
}

export function realExec(timeoutMs = 15_000): Exec {
  return {
    run(cmd, args, input) {
      return new Promise((resolve, reject) => {
        const child = execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
          if (err) {
            const e = err as NodeJS.ErrnoException;
            if (e.code === 'ENOENT') reject(new ExecError(cmd, args, `"${cmd}" is not installed`));
            else reject(new ExecError(cmd, args, stderr || e.message));
            return;
          }
          resolve(stdout);
        });
        if (input !== undefined) child.stdin?.end(input);
      });
    },
  };
}

/** For tests: records commands and answers from a table (by "cmd arg0 arg1…" prefix), '' otherwise. */
export class FakeExec implements Exec {
  readonly calls: { cmd: string; args: string[]; input?: string }[] = [];
  readonly answers = new Map<string, string | Error>();
  async run(cmd: string, args: string[], input?: string): Promise<string> {
    this.calls.push(input === undefined ? { cmd, args } : { cmd, args, input });
    const line = [cmd, ...args].join(' ');
    let best: string | undefined;
    for (const k of this.answers.keys()) if (line.startsWith(k) && (best === undefined || k.length > best.length)) best = k;
    const a = best === undefined ? '' : this.answers.get(best)!;
    if (a instanceof Error) throw a;
    return a;
  }
  /** The recorded commands as shell-like lines (stdin payloads not included). */
  lines(): string[] {
    return this.calls.map((c) => [c.cmd, ...c.args].join(' '));
  }
}
