#!/usr/bin/env node
// Paired micro-benchmark of the offloads' byte work, in one process, no root:
// GsoSegmenter cutting 64 KiB TCP super-frames into 1448-byte segments (copy
// and checksum) and GroPlanner verifying and merging a batch of 64 segments,
// each with the copy/sum in TypeScript and with the addon's copySum/sumRanges
// (native/bytes.cc); and the addon's copying segmentation against zero-copy
// (headers copied, payloads summed in place: GsoSegmenter's zeroCopyMtu). The
// two variants alternate ROUNDS times and the medians are printed, so a busy
// machine slows both alike.
//
//   npm run build && node scripts/bench-offload.mjs [--ms 300] [--rounds 7]
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { paired, root, timeIt } from './bench-paired.mjs';

const require = createRequire(import.meta.url);
const native = require(join(root, 'build/Release/silkworm_native.node'));
const { GsoSegmenter } = await import(join(root, 'dist/offload/gso.js'));
const { GroPlanner } = await import(join(root, 'dist/offload/gro.js'));
const { FrameBatch } = await import(join(root, 'dist/dataplane/batch.js'));
const { internetChecksum, pseudoHeaderSum, foldChecksum, onesComplementSum } = await import(join(root, 'dist/wire/checksum.js'));
const bytes = { copySum: native.copySum, sumRanges: native.sumRanges };

const MSS = 1448;
const NSEG = 45;
const HDR = 14 + 20 + 32;

function header(payloadLen, seq, id) {
  const f = new Uint8Array(HDR);
  f.set([0xaa, 0xaa, 0, 0, 0, 1, 0xee, 0xee, 0, 0, 0, 2, 0x08, 0x00]);
  const ip = 14;
  const tot = 20 + 32 + payloadLen;
  f.set([0x45, 0, tot >> 8, tot & 255, id >> 8, id & 255, 0x40, 0, 64, 6, 0, 0, 10, 255, 2, 2, 10, 255, 1, 2], ip);
  const c = internetChecksum(f, ip, 20);
  f[ip + 10] = c >> 8;
  f[ip + 11] = c & 255;
  const t = ip + 20;
  f.set([0xc3, 0x50, 0x14, 0x51, seq >>> 24, (seq >>> 16) & 255, (seq >>> 8) & 255, seq & 255, 0, 0, 0, 1, 0x80, 0x10, 0xff, 0xff], t);
  f.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], t + 20);
  return f;
}

function payload(n) {
  const p = new Uint8Array(n);
  let x = 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    p[i] = x >>> 24;
  }
  return p;
}

// One raw TSO read: virtio_net_hdr (NEEDS_CSUM, GSO_TCPV4) + a 45-segment super-frame.
function rawSuper() {
  const pay = payload(NSEG * MSS);
  const h = header(pay.length, 1000, 1);
  const src = [10, 255, 2, 2], dst = [10, 255, 1, 2];
  const ps = pseudoHeaderSum((src[0] << 24 | src[1] << 16 | src[2] << 8 | src[3]) >>> 0, (dst[0] << 24 | dst[1] << 16 | dst[2] << 8 | dst[3]) >>> 0, 6, 32 + pay.length);
  const pc = ~foldChecksum(ps) & 0xffff;
  h[14 + 20 + 16] = pc >> 8;
  h[14 + 20 + 17] = pc & 255;
  const raw = new Uint8Array(10 + HDR + pay.length);
  raw.set([1, 1, HDR & 255, HDR >> 8, MSS & 255, MSS >> 8, 34, 0, 16, 0]);
  raw.set(h, 10);
  raw.set(pay, 10 + HDR);
  return raw;
}

// --- GSO: segments per second
const raw0 = rawSuper();
function gsoRunner(withBytes, zeroCopyMtu = 0) {
  const raw = new Uint8Array(6 * 65600 + 64);
  const at = 6; // the reader's placement: the frame 8-aligned like a slot's
  raw.set(raw0, at);
  const batch = new FrameBatch(64, 2048, 64);
  const seg = new GsoSegmenter(raw, batch, undefined, withBytes ? bytes : undefined, zeroCopyMtu);
  return () => {
    batch.count = 0;
    if (!seg.begin(at, raw0.length)) throw new Error('begin refused the super-frame');
    seg.fill();
    return batch.count;
  };
}

// --- GRO: segments per second through plan() (verify + merge)
function groRunner(withBytes) {
  const slot = 2048;
  const n = 64;
  const slab = new Uint8Array(n * slot);
  const offs = new Uint32Array(n);
  const lens = new Uint32Array(n);
  const pay = payload(n * MSS);
  for (let k = 0; k < n; k++) {
    const h = header(MSS, 1000 + k * MSS, 1 + k);
    const o = k * slot + 72;
    slab.set(h, o);
    slab.set(pay.subarray(k * MSS, (k + 1) * MSS), o + HDR);
    const t = o + 34;
    const s = pseudoHeaderSum(0x0aff0202, 0x0aff0102, 6, 32 + MSS) + onesComplementSum(slab, t, 32 + MSS);
    const c = foldChecksum(s);
    slab[t + 16] = c >> 8;
    slab[t + 17] = c & 255;
    offs[k] = o;
    lens[k] = HDR + MSS;
  }
  const g = new GroPlanner(64, 256, true, true, withBytes ? bytes : undefined);
  return () => {
    let i = 0;
    while (i < n) i += g.plan(slab, offs, lens, i, n);
    if (g.counters.badChecksum !== 0) throw new Error('a segment did not verify');
    return n;
  };
}

for (const [name, mk, la, lb] of [
  ['TSO segmentation (GsoSegmenter), segments/s', gsoRunner, 'TypeScript', 'native'],
  ['GRO verify + merge (GroPlanner.plan), segments/s', groRunner, 'TypeScript', 'native'],
  ['TSO segmentation with the addon, segments/s', (zc) => gsoRunner(true, zc ? 1500 : 0), 'copying', 'zero-copy'],
]) {
  const ts = mk(false);
  const nat = mk(true);
  const [ma, mb] = paired(() => timeIt(ts), () => timeIt(nat));
  console.log(`${name}: ${la} ${Math.round(ma)}, ${lb} ${Math.round(mb)}, ${lb}/${la} ${(mb / ma).toFixed(2)} (${((mb * MSS * 8) / 1e9).toFixed(1)} Gbit/s of payload ${lb})`);
}
