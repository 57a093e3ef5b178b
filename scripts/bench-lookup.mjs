#!/usr/bin/env node
// Per-packet lookup cost at 10, 1k and 100k entries: route lookup
// (RouteTable.lookup), policy (CompiledPolicy.match, tagFor) and connection
// tracking (ConnTrack.process on existing flows). The target is a flat cost:
// 100k entries within 2x of 10.
//
// Two probe sets per structure:
// - "hot": the lookups cycle over 64 keys, as a batch of frames does (a few
//   flows at a time). This isolates the algorithm's cost: the same number of
//   probes whatever the table size.
// - "cold": 4096 random keys over the whole table. At 100k entries the table
//   no longer fits in L1/L2, so every probe pays cache misses (~10-20 ns
//   each); at 10 entries it all sits in L1. The gap is memory latency, which
//   any structure with random access pays, not extra work.
//
// Runs on the compiled output: `npx tsc -p . && node scripts/bench-lookup.mjs`
// (SILKWORM_DIST=/other/dist to point elsewhere; --quick for a short run).
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.SILKWORM_DIST ?? path.join(here, '..', 'dist');
const load = (p) => import(pathToFileURL(path.join(dist, p)).href);
const { RouteTable } = await load('tables/route.js');
const { CompiledPolicy } = await load('policy/compiled.js');
const { ConnTrack } = await load('policy/conntrack.js');

const quick = process.argv.includes('--quick');
const OPS = quick ? 250_000 : 1_000_000;
const RUNS = quick ? 5 : 15; // best of many short runs: robust to a busy machine
const SIZES = [10, 1_000, 100_000];

// Deterministic PRNG (mulberry32).
let seed = 0x5eed;
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (n) => Math.floor(rand() * n);
const IP_10 = 10 << 24;

/**
 * Best-of-RUNS ns per call of body(k) over OPS calls, k cycling over the
 * probe set (64 keys when hot, 4096 when cold); body returns a number folded
 * into a sink so the work cannot be optimised away.
 */
function measure(body, hot) {
  const m = hot ? 63 : MASK;
  let sink = 0;
  for (let i = 0; i < OPS / 4; i++) sink = (sink + body(i & m)) | 0; // warm up (JIT)
  let best = Infinity;
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < OPS; i++) sink = (sink + body(i & m)) | 0;
    const ns = Number(process.hrtime.bigint() - t0) / OPS;
    if (ns < best) best = ns;
  }
  if (sink === 0x7fffffff) console.log(''); // keep the sink alive
  return best;
}

const MASK = 4095; // 4096 precomputed probe keys, cycled

/** A silk-like route table: default route, /24 leases in 10/8 and /32 container routes. */
function silkRoutes(n) {
  const t = new RouteTable();
  t.add({ prefix: 0, len: 0, via: ((198 << 24) | (18 << 16) | 1) >>> 0, dev: 'eth0', src: 0 });
  // A cell always has its own lease and local containers: /24 and /32 are
  // populated at every size, so each size probes the same three lengths.
  const own = (IP_10 | 0x100) >>> 0;
  t.add({ prefix: own, len: 24, via: 0, dev: 'silk-vtep', src: own });
  t.add({ prefix: (own | 2) >>> 0, len: 32, via: 0, dev: 's-container', src: 0 });
  const leases = [own];
  const used = new Set([own]);
  while (t.size < n) {
    if (leases.length > 0 && rand() < 0.1) {
      const l = leases[randInt(leases.length)];
      t.add({ prefix: (l | (2 + randInt(250))) >>> 0, len: 32, via: 0, dev: 's-container', src: 0 });
    } else {
      const l = (IP_10 | (randInt(65536) << 8)) >>> 0;
      if (used.has(l)) continue;
      used.add(l);
      leases.push(l);
      t.add({ prefix: l, len: 24, via: l, dev: 'silk-vtep', src: (IP_10 | 0x100) >>> 0 });
    }
  }
  const probes = new Uint32Array(MASK + 1);
  for (let i = 0; i <= MASK; i++) {
    const k = i % 3;
    if (k === 0) probes[i] = (leases[randInt(leases.length)] | randInt(256)) >>> 0; // lease (/24 or /32)
    else if (k === 1) probes[i] = (IP_10 | randInt(1 << 24)) >>> 0; // anywhere in 10/8
    else probes[i] = (randInt(4294967296) >>> 0); // mostly the default route
  }
  return { t, probes };
}

/** Random prefixes of every length 0–32: every length populated, the per-length table's worst case. */
function randomRoutes(n) {
  const t = new RouteTable();
  for (let l = 0; l <= 32; l++) t.add({ prefix: randInt(4294967296) >>> 0, len: l, via: 0, dev: 'x', src: 0 });
  while (t.size < n) t.add({ prefix: randInt(4294967296) >>> 0, len: 8 + randInt(25), via: 0, dev: 'x', src: 0 });
  const probes = new Uint32Array(MASK + 1);
  for (let i = 0; i <= MASK; i++) probes[i] = randInt(4294967296) >>> 0;
  return { t, probes };
}

/** n accept rules spread over up to 250 local containers (a cell's lease), random tags and ports. */
function policies(n) {
  const containers = Math.min(250, n);
  const accepts = [];
  const marks = [];
  for (let c = 0; c < containers; c++) marks.push({ ip: (IP_10 | 0x100 | (c + 2)) >>> 0, app: `app${c}`, tag: 1 + c });
  for (let i = 0; i < n; i++) {
    const start = 1024 + randInt(60000);
    accepts.push({
      dstIp: (IP_10 | 0x100 | (2 + randInt(containers))) >>> 0,
      dstApp: 'd',
      srcApp: 's',
      tag: 1 + randInt(65535),
      protocol: rand() < 0.8 ? 6 : 17,
      portStart: start,
      portEnd: rand() < 0.7 ? start : Math.min(65535, start + randInt(100)),
    });
  }
  const cp = CompiledPolicy.compile({ marks, accepts });
  // Probes: half hit a rule, half miss (wrong tag or port).
  const dst = new Uint32Array(MASK + 1);
  const proto = new Uint8Array(MASK + 1);
  const port = new Uint16Array(MASK + 1);
  const tag = new Uint16Array(MASK + 1);
  let hits = 0;
  for (let i = 0; i <= MASK; i++) {
    const a = accepts[randInt(n)];
    dst[i] = a.dstIp;
    proto[i] = a.protocol;
    port[i] = i & 1 ? a.portStart + randInt(a.portEnd - a.portStart + 1) : 1 + randInt(65535);
    tag[i] = i & 1 ? a.tag : 1 + randInt(65535);
    if (cp.match(dst[i], proto[i], port[i], tag[i]) >= 0) hits++;
  }
  return { cp, dst, proto, port, tag, hitRate: hits / (MASK + 1), marks };
}

/** n live UDP flows in a ConnTrack; probes alternate original and reply direction. */
function flows(n) {
  const ct = new ConnTrack({ capacity: Math.max(1024, n * 2), seed: 1 });
  const src = new Uint32Array(MASK + 1);
  const dst = new Uint32Array(MASK + 1);
  const sp = new Uint16Array(MASK + 1);
  const dp = new Uint16Array(MASK + 1);
  const fs = [];
  for (let i = 0; i < n; i++) {
    const f = [(IP_10 | randInt(1 << 24)) >>> 0, (IP_10 | 0x100 | (2 + randInt(250))) >>> 0, 1024 + randInt(60000), 53];
    fs.push(f);
    ct.process(f[0], f[1], 17, f[2], f[3], 0, 0, true);
    ct.process(f[1], f[0], 17, f[3], f[2], 0, 0, false);
  }
  for (let i = 0; i <= MASK; i++) {
    const f = fs[randInt(n)];
    if (i & 1) [src[i], dst[i], sp[i], dp[i]] = [f[1], f[0], f[3], f[2]];
    else [src[i], dst[i], sp[i], dp[i]] = [f[0], f[1], f[2], f[3]];
  }
  return { ct, src, dst, sp, dp };
}

const rows = [];
function row(name, fn) {
  for (const hot of [true, false]) {
    const ns = SIZES.map((n) => fn(n, hot));
    rows.push([`${name}, ${hot ? 'hot' : 'cold'}`, ...ns.map((x) => x.toFixed(1)), (ns[2] / ns[0]).toFixed(2) + 'x']);
  }
}

row('route lookup (silk-like: /0, /24, /32)', (n, hot) => {
  const { t, probes } = silkRoutes(n);
  return measure((k) => t.lookup(probes[k]).len, hot);
});
row('route lookup (random, all 33 lengths)', (n, hot) => {
  const { t, probes } = randomRoutes(Math.max(n, 33));
  return measure((k) => t.lookup(probes[k])?.len ?? 0, hot);
});
row('CompiledPolicy.match (~50% hits)', (n, hot) => {
  const { cp, dst, proto, port, tag } = policies(n);
  return measure((k) => cp.match(dst[k], proto[k], port[k], tag[k]), hot);
});
row('CompiledPolicy.tagFor', (n, hot) => {
  const { cp, marks } = policies(n);
  const ips = new Uint32Array(MASK + 1);
  for (let i = 0; i <= MASK; i++) ips[i] = i & 1 ? marks[randInt(marks.length)].ip : (IP_10 | randInt(1 << 24)) >>> 0;
  return measure((k) => cp.tagFor(ips[k]), hot);
});
row('ConnTrack.process (existing UDP flows)', (n, hot) => {
  const { ct, src, dst, sp, dp } = flows(n);
  return measure((k) => ct.process(src[k], dst[k], 17, sp[k], dp[k], 0, 1, false), hot);
});

const head = ['ns/op', ...SIZES.map((n) => `n=${n.toLocaleString('en-US')}`), '100k/10'];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const fmt = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
console.log(`node ${process.version}, ${OPS.toLocaleString('en-US')} ops x best of ${RUNS}`);
console.log(fmt(head));
for (const r of rows) console.log(fmt(r));
