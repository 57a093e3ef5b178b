#!/usr/bin/env node
// Paired micro-benchmark of whole runs on ingress, in one process, no root: a batch of 64 VXLAN
// datagrams of one settled TCP flow (what UDP GRO hands over in a single-stream transfer: 1398-byte
// segments, the lab's inner MTU 1450) through Dataplane.ingress — per segment (every datagram walks
// the VXLAN checks, lease, container lookup, conntrack) against whole runs (cfg.wholeRx: the first
// datagram decides, the others are checked against its headers and delivered). The pipeline rewrites
// TTL and MACs in place, so each round first restores every slot's headers (both sides alike). The
// two alternate ROUNDS times; medians of datagrams/s. GRO planning of the TAP write is not included.
//
//   npm run build && node scripts/bench-whole-rx.mjs [--ms 300] [--rounds 7]
import { join } from 'node:path';
import { MS, ROUNDS, paired, root } from './bench-paired.mjs';

const { FrameBatch, slotSizeFor } = await import(join(root, 'dist/dataplane/batch.js'));
const { Dataplane, DEFAULT_CONFIG } = await import(join(root, 'dist/dataplane/dataplane.js'));
const { internetChecksum } = await import(join(root, 'dist/wire/checksum.js'));

const MSS = 1398;
const N = 64;
const HDR = 8 + 14 + 20 + 32;
const ip4 = (a, b, c, d) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
const U1 = ip4(198, 18, 9, 1);
const U2 = ip4(198, 18, 9, 2);
const SRC = ip4(10, 255, 2, 2);
const DST = ip4(10, 255, 1, 2);
const put16 = (b, o, v) => {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
};
const put32 = (b, o, v) => {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
};

function datagram(k) {
  const f = new Uint8Array(HDR + MSS);
  f.set([0x88, 0, 0, 1, 0, 0, 1, 0]);
  f.set([0xee, 0xee, 10, 255, 1, 0, 0xee, 0xee, 10, 255, 2, 0, 0x08, 0x00], 8);
  const ip = 22;
  f.set([0x45, 0, 0, 0, 0, 0, 0x40, 0, 63, 6, 0, 0], ip);
  put16(f, ip + 2, 20 + 32 + MSS);
  put16(f, ip + 4, 1000 + k);
  put32(f, ip + 12, SRC);
  put32(f, ip + 16, DST);
  put16(f, ip + 10, internetChecksum(f, ip, 20));
  const t = ip + 20;
  put16(f, t, 40000);
  put16(f, t + 2, 5201);
  put32(f, t + 4, 1 + k * MSS);
  put32(f, t + 8, 777);
  f[t + 12] = 0x80;
  f[t + 13] = 0x10;
  put16(f, t + 14, 500);
  f.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], t + 20);
  for (let i = HDR; i < f.length; i++) f[i] = (i * 31 + k) & 0xff;
  put16(f, t + 16, 0x1234); // not partial, not verified by ingress
  return f;
}

function cell(whole) {
  const dp = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: U1, leaseSubnet: ip4(10, 255, 1, 0), wholeRx: whole });
  dp.setLeases([
    { underlayIp: U1, subnet: ip4(10, 255, 1, 0), prefixLen: 24 },
    { underlayIp: U2, subnet: ip4(10, 255, 2, 0), prefixLen: 24 },
  ]);
  dp.setPolicies([{ source: { id: 'b', tag: '0001' }, destination: { id: 'a', tag: '0002', protocol: 'tcp', ports: { start: 5201, end: 5201 } } }]);
  dp.addPort('a-0', 'a', DST);
  const batch = new FrameBatch(N, slotSizeFor(1500));
  const frames = [];
  for (let k = 0; k < N; k++) {
    frames.push(datagram(k));
    batch.push(frames[k], U2, 40000, 0);
  }
  dp.ingress(batch, 1);
  // The reply seen: the flow is settled (ESTABLISHED, a reply seen).
  dp.conntrack.process(DST, SRC, 6, 5201, 40000, 0x10, 1, false, 0, 777, 1, 0);
  return { dp, batch, frames };
}

function round(c, ms) {
  const { dp, batch, frames } = c;
  let n = 0;
  const t0 = performance.now();
  let now = 2;
  while (performance.now() - t0 < ms) {
    for (let r = 0; r < 50; r++) {
      for (let k = 0; k < N; k++) batch.slab.set(frames[k].subarray(0, HDR), batch.inOff(k));
      batch.count = N;
      dp.ingress(batch, now);
      n += N;
    }
    now += 1;
  }
  const rate = n / ((performance.now() - t0) / 1000);
  if (batch.action[N - 1] !== 2) throw new Error('not delivered');
  return rate;
}

const per = cell(false);
const whole = cell(true);
const [ma, mb] = paired(() => round(per, MS), () => round(whole, MS));
console.log(`per segment: ${(ma / 1e6).toFixed(2)} M datagrams/s; whole runs: ${(mb / 1e6).toFixed(2)} M datagrams/s; ratio ${(mb / ma).toFixed(2)} x (runs ${whole.dp.rxRuns.runs}, ${ROUNDS} rounds of ${MS} ms, medians)`);
