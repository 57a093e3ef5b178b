// An Exec for tests: records every command the kernel backend runs and
// answers from a table, so its exact commands are asserted without root.
import type { Exec } from '../kernel/exec.js';

/** Answers from a table (by "cmd arg0 arg1…" prefix, longest wins), '' otherwise. */
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
