#!/usr/bin/env node
// What a cell restart costs in its conntrack state, on the compiled code (no
// root, no namespaces), at 100,000 tracked flows in a table of the cell's
// default size (262,144):
// - the periodic save: ConntrackWriter walking the live table in 2 ms
//   slices (src/cell/conntrack-state.ts) — slices, the longest one, total
//   time, and the event loop's longest stall meanwhile;
// - the final save on SIGTERM: one walk, plus the atomic write (fsync) of
//   the file, its size;
// - the restore on start: decode + replay into a fresh table — the time the
//   new process spends before it moves packets.
//
// `npx tsc -p . && node scripts/bench-restart.mjs` (SILKWORM_DIST=/other/dist to point elsewhere).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.SILKWORM_DIST ?? path.join(here, '..', 'dist');
const load = (p) => import(pathToFileURL(path.join(dist, p)).href);
const { ConnTrack, DEFAULT_CONNTRACK_MAX, TCP_ACK, TCP_SYN } = await load('policy/conntrack.js');
const { ConntrackWriter, restoreConntrackBytes } = await load('cell/conntrack-state.js');
const { writeFileAtomic } = await load('agent/state-dir.js');

const FLOWS = 100_000;
const now = 1000;
const ct = new ConnTrack({ capacity: DEFAULT_CONNTRACK_MAX, seed: 7 });
const A = 0x0aff0200;
const B = 0x0aff0100;
for (let i = 0; i < FLOWS; i++) {
  const src = A + 2 + (i % 250);
  const dst = B + 2 + ((i >>> 8) % 250);
  const sport = 1024 + (i % 60000);
  if (i % 4 === 0) {
    ct.process(src, dst, 17, sport, 53, 0, now, true, i & 0xffff);
  } else if (i % 4 === 1) {
    ct.process(src, dst, 6, sport, 8080, TCP_SYN, now, true);
  } else {
    ct.process(src, dst, 6, sport, 8080, TCP_SYN, now, true);
    ct.process(dst, src, 6, 8080, sport, TCP_SYN | TCP_ACK, now, false);
    ct.process(src, dst, 6, sport, 8080, TCP_ACK, now, false);
  }
}
console.log(`table: ${ct.size} flows of ${ct.capacity}`);

// Periodic save: slices between event-loop turns.
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
let slices = 0;
let maxSlice = 0;
const t0 = performance.now();
const w = new ConntrackWriter(ct, now);
await new Promise((resolve) => {
  const step = () => {
    const s0 = performance.now();
    const done = w.step(2);
    const ms = performance.now() - s0;
    slices++;
    if (ms > maxSlice) maxSlice = ms;
    if (done) resolve();
    else setImmediate(step);
  };
  step();
});
const periodicMs = performance.now() - t0;
h.disable();
const bytes = w.bytes();
console.log(
  `periodic save: ${slices} slices, longest ${maxSlice.toFixed(1)} ms, ${periodicMs.toFixed(0)} ms in all; ` +
    `event loop's longest stall ${(h.max / 1e6).toFixed(1)} ms`,
);

// Final save: one walk and the durable write.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'silkworm-bench-restart-'));
const f0 = performance.now();
const wf = new ConntrackWriter(ct, now);
while (!wf.step(Infinity));
const walkMs = performance.now() - f0;
writeFileAtomic(path.join(dir, 'conntrack.bin'), wf.bytes());
const finalMs = performance.now() - f0;
console.log(`final save (SIGTERM): walk ${walkMs.toFixed(0)} ms, with the atomic write ${finalMs.toFixed(0)} ms; file ${(bytes.byteLength / 1e6).toFixed(2)} MB`);

// Restore on start.
const r0 = performance.now();
const file = fs.readFileSync(path.join(dir, 'conntrack.bin'));
const fresh = new ConnTrack({ capacity: DEFAULT_CONNTRACK_MAX, seed: 8 });
const d1 = performance.now();
const n = restoreConntrackBytes(fresh, file, 5);
const r1 = performance.now();
console.log(`restore: read + new table ${(d1 - r0).toFixed(0)} ms, replay ${(r1 - d1).toFixed(0)} ms (${n} flows, ${fresh.size} in the table)`);
fs.rmSync(dir, { recursive: true, force: true });
if (fresh.size !== ct.size) {
  console.error(`restored ${fresh.size} flows, saved ${ct.size}`);
  process.exit(1);
}
