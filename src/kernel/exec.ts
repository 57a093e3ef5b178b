// The kernel cell's only way to touch the kernel: run iproute2, bridge,
// iptables, conntrack as argv arrays (no shell, no string splicing) in the
// cell's own network namespace (the process already runs inside it).
// Behind an interface so the converger is tested without root, with a fake
// that records every command (src/testing/fake-exec.ts).
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
