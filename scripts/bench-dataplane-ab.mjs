#!/usr/bin/env node
// A/B of the pipeline's CPU time per packet between two builds, for a loaded
// machine where wall-clock packets/s (bench-dataplane.mjs) mean little: the
// same setup as bench-dataplane.mjs is loaded from both builds' dist/ into one
// process, and egress and ingress are measured in interleaved slices with
// process.cpuUsage(), so load drift hits both alike. Run it twice with the
// builds swapped (the build loaded first tends to gain a few per cent) and
// take both ratios. Each step includes refilling the batch, as in
// bench-dataplane.mjs.
//   git worktree add /tmp/old <commit> && (cd /tmp/old && ln -s "$PWD"/node_modules . && npx tsc -p tsconfig.json)
//   node scripts/bench-dataplane-ab.mjs /tmp/old . [rounds=40] [batchesPerSlice=150]
//   node scripts/bench-dataplane-ab.mjs . /tmp/old
import path from 'node:path';
import { pathToFileURL } from 'node:url';
if (process.argv.length < 4) {
  console.error('usage: node scripts/bench-dataplane-ab.mjs <old repo root> <new repo root> [rounds] [batchesPerSlice]');
  process.exit(2);
}
const [oldRoot, newRoot] = [process.argv[2], process.argv[3]].map((r) => pathToFileURL(path.resolve(r)).href);
const ROUNDS = Number(process.argv[4] ?? 40), SLICE = Number(process.argv[5] ?? 150);
const BATCH = 64, FRAME = 1400;
async function setup(root) {
  const { Dataplane, DEFAULT_CONFIG } = await import(`${root}/dist/dataplane/dataplane.js`);
  const { FrameBatch, slotSizeFor } = await import(`${root}/dist/dataplane/batch.js`);
  const { ipToU32, writeMacFromIp } = await import(`${root}/dist/util/ip.js`);
  const { internetChecksum } = await import(`${root}/dist/wire/checksum.js`);
  const u1 = ipToU32('198.18.0.11'), u2 = ipToU32('198.18.0.12');
  const l1 = ipToU32('10.255.1.0'), l2 = ipToU32('10.255.2.0');
  const leases = [ { underlayIp: u1, subnet: l1, prefixLen: 24 }, { underlayIp: u2, subnet: l2, prefixLen: 24 } ];
  const policies = [ { source: { id: 'appB', tag: '0001' }, destination: { id: 'appA', tag: '0002', protocol: 'tcp', ports: { start: 8080, end: 8080 } } } ];
  const cell1 = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: u1, leaseSubnet: l1 });
  const cell2 = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: u2, leaseSubnet: l2 });
  for (const c of [cell1, cell2]) { c.setLeases(leases); c.setPolicies(policies); }
  const src = cell1.addPort('appB-0', 'appB', l1 + 2);
  cell2.addPort('appA-0', 'appA', l2 + 2);
  function frame(sport) {
    const f = new Uint8Array(FRAME);
    writeMacFromIp(f, 0, 0xaaaa, l1 + 2); writeMacFromIp(f, 6, 0xeeee, l1 + 2);
    f[12] = 0x08; f[13] = 0x00;
    const ip = 14, tot = FRAME - 14;
    f.set([0x45, 0, tot >> 8, tot & 255, 0, 1, 0x40, 0, 64, 6, 0, 0], ip);
    const s = l1 + 2, d = l2 + 2;
    f.set([s >>> 24, (s >>> 16) & 255, (s >>> 8) & 255, s & 255, d >>> 24, (d >>> 16) & 255, (d >>> 8) & 255, d & 255], ip + 12);
    const c = internetChecksum(f, ip, 20); f[ip + 10] = c >> 8; f[ip + 11] = c & 255;
    f.set([sport >> 8, sport & 255, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff], ip + 20);
    return f;
  }
  const slot = slotSizeFor(1500);
  const eb = new FrameBatch(BATCH, slot), ib = new FrameBatch(BATCH, slot);
  const frames = Array.from({ length: BATCH }, (_, i) => frame(40000 + i));
  const fillEgress = () => { eb.count = 0; for (const f of frames) eb.push(f); };
  const fillIngress = () => {
    ib.count = 0;
    for (let i = 0; i < eb.count; i++) {
      const o = eb.outOff[i] + 28;
      ib.slab.set(eb.slab.subarray(o, eb.outOff[i] + eb.outLen[i]), ib.inOff(i));
      ib.len[i] = eb.outLen[i] - 28; ib.srcIp[i] = u1;
    }
    ib.count = eb.count;
  };
  fillEgress(); cell1.egress(eb, src.index, 1);
  let now = 1;
  return {
    egress: () => { fillEgress(); cell1.egress(eb, src.index, now); now += 0.00001; },
    ingress: () => { fillIngress(); cell2.ingress(ib, now); now += 0.00001; },
    drops: () => Object.entries(cell2.counters.snapshot().drops).filter(([, v]) => v > 0).concat(Object.entries(cell1.counters.snapshot().drops).filter(([, v]) => v > 0)),
  };
}
const A = await setup(oldRoot), B = await setup(newRoot);
function slice(fn) {
  const c0 = process.cpuUsage();
  for (let r = 0; r < SLICE; r++) fn();
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / (SLICE * BATCH);
}
for (const s of [A, B]) for (let w = 0; w < 3; w++) { slice(s.egress); slice(s.ingress); }
const res = { old: { egress: [], ingress: [] }, new: { egress: [], ingress: [] } };
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 ? [['old', A], ['new', B]] : [['new', B], ['old', A]];
  for (const dir of ['egress', 'ingress']) for (const [k, s] of order) res[k][dir].push(slice(s[dir]));
}
const med = (a) => { a = [...a].sort((x, y) => x - y); return a[a.length >> 1]; };
for (const dir of ['egress', 'ingress']) {
  const o = med(res.old[dir]), n = med(res.new[dir]);
  // paired ratios, slice by slice
  const ratios = res.new[dir].map((v, i) => v / res.old[dir][i]);
  const sr = [...ratios].sort((x, y) => x - y);
  const mid = sr.slice(Math.floor(sr.length / 4), Math.ceil((sr.length * 3) / 4));
  const tmean = mid.reduce((a, b) => a + b, 0) / mid.length;
  const mino = Math.min(...res.old[dir]), minn = Math.min(...res.new[dir]);
  console.log(`${dir.padEnd(8)} ns/pkt (median of ${ROUNDS}) old ${o.toFixed(0)} new ${n.toFixed(0)}  new/old ${(n / o).toFixed(3)}  paired ratio: median ${med(ratios).toFixed(3)} interquartile mean ${tmean.toFixed(3)}  min/min ${(minn / mino).toFixed(3)}`);
}
const d = [A.drops(), B.drops()];
if (d[0].length || d[1].length) console.log('drops', JSON.stringify(d));
