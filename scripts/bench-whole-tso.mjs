#!/usr/bin/env node
// Paired micro-benchmark of whole TSO super-frames, in one process, no root:
// a 64 KiB super-frame (45 segments of 1398 bytes, the lab's inner MTU 1450)
// cut by GsoSegmenter (zero-copy, the addon's byte primitives) and run
// through Dataplane.egress to a remote cell — per segment (every segment
// walks route, FDB, conntrack and encapsulation) against whole (the first
// segment decides, the segmenter writes the others' VXLAN headers:
// FrameBatch.run). The two alternate ROUNDS times; medians of segments/s.
//
//   npm run build && node scripts/bench-whole-tso.mjs [--ms 300] [--rounds 7]
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { paired, root, timeIt } from './bench-paired.mjs';

const require = createRequire(import.meta.url);
const native = require(join(root, 'build/Release/silkworm_native.node'));
const { GsoSegmenter } = await import(join(root, 'dist/offload/gso.js'));
const { FrameBatch, slotSizeFor } = await import(join(root, 'dist/dataplane/batch.js'));
const { Dataplane, DEFAULT_CONFIG } = await import(join(root, 'dist/dataplane/dataplane.js'));
const { internetChecksum, pseudoHeaderSum, foldChecksum } = await import(join(root, 'dist/wire/checksum.js'));
const bytes = { copySum: native.copySum, sumRanges: native.sumRanges };

const MSS = 1398;
const NSEG = 45;
const HDR = 14 + 20 + 32;
const ip4 = (a, b, c, d) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
const SRC = ip4(10, 255, 2, 2);
const DST = ip4(10, 255, 1, 2);

function rawSuper() {
  const n = NSEG * MSS;
  const f = new Uint8Array(HDR + n);
  f.set([0xaa, 0xaa, 0, 0, 0, 1, 0xee, 0xee, 0, 0, 0, 2, 0x08, 0x00]);
  const tot = 20 + 32 + n;
  f.set([0x45, 0, tot >> 8, tot & 255, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 255, 2, 2, 10, 255, 1, 2], 14);
  const c = internetChecksum(f, 14, 20);
  f[24] = c >> 8;
  f[25] = c & 255;
  f.set([0xc3, 0x50, 0x1f, 0x90, 0, 0, 3, 0xe8, 0, 0, 0, 1, 0x80, 0x18, 0xff, 0xff], 34);
  f.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], 54);
  let x = 1;
  for (let i = HDR; i < f.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    f[i] = x >>> 24;
  }
  const pc = ~foldChecksum(pseudoHeaderSum(SRC, DST, 6, 32 + n)) & 0xffff;
  f[50] = pc >> 8;
  f[51] = pc & 255;
  const raw = new Uint8Array(10 + f.length);
  raw.set([1, 1, HDR & 255, HDR >> 8, MSS & 255, MSS >> 8, 34, 0, 16, 0]);
  raw.set(f, 10);
  return raw;
}

const raw0 = rawSuper();
function runner(whole) {
  const dp = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: ip4(198, 18, 0, 2), leaseSubnet: ip4(10, 255, 2, 0) });
  dp.setLeases([
    { underlayIp: ip4(198, 18, 0, 2), subnet: ip4(10, 255, 2, 0), prefixLen: 24 },
    { underlayIp: ip4(198, 18, 0, 1), subnet: ip4(10, 255, 1, 0), prefixLen: 24 },
  ]);
  const port = dp.addPort('appB-0', 'appB', SRC);
  const raw = new Uint8Array(65600 + 64);
  raw.set(raw0, 6);
  const batch = new FrameBatch(64, slotSizeFor(1500));
  const seg = new GsoSegmenter(raw, batch, dp.counters.drops, bytes, 1450, whole);
  let now = 1;
  return () => {
    batch.count = 0;
    if (!seg.begin(6, raw0.length)) throw new Error('begin refused the super-frame');
    seg.fill();
    dp.egress(batch, port.index, now);
    now += 1e-6;
    if (batch.action[batch.count - 1] !== 1) throw new Error('not encapsulated');
    return batch.count;
  };
}

const per = runner(false);
const whole = runner(true);
const [ma, mb] = paired(() => timeIt(per), () => timeIt(whole));
console.log(`TSO segmentation + egress, segments/s: per-segment ${Math.round(ma)}, whole ${Math.round(mb)}, whole/per-segment ${(mb / ma).toFixed(2)}`);
