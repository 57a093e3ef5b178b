// What the in-process paired benchmarks share (bench-offload, bench-whole-tso, bench-whole-rx): the
// repository root, the --ms / --rounds arguments, a timed loop, and the pairing itself — both variants
// warmed up first, then alternated ROUNDS times, medians returned, so a busy machine slows both alike.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The number after `--name` on the command line, or `def`. */
export function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
/** Milliseconds per measurement, and measurements per variant. */
export const MS = arg('ms', 300);
export const ROUNDS = arg('rounds', 7);

/** Units per second: fn() returns how many units one call did; called in groups of 20 for MS ms. */
export function timeIt(fn) {
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < MS) {
    for (let k = 0; k < 20; k++) n += fn();
    t = performance.now();
  }
  return (n / (t - t0)) * 1000;
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** measureA() and measureB() (each returns a rate), warmed up once, then alternated ROUNDS times: [median A, median B]. */
export function paired(measureA, measureB) {
  measureA();
  measureB();
  const a = [];
  const b = [];
  for (let r = 0; r < ROUNDS; r++) {
    a.push(measureA());
    b.push(measureB());
  }
  return [median(a), median(b)];
}
