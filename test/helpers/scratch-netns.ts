// A network namespace of the test's own (loopback up) and a scratch
// directory, made before the describe block's tests and removed after them.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/** Call inside a describe block; `dir` is set once beforeAll has run. */
export function scratchNetns(ns: string): { dir: string } {
  const s = { dir: '' };
  beforeAll(() => {
    s.dir = mkdtempSync(join(tmpdir(), `${ns}-`));
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  });
  afterAll(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns]);
    } catch {
      /* not made */
    }
    if (s.dir) rmSync(s.dir, { recursive: true, force: true });
  });
  return s;
}
