#!/usr/bin/env node
// In-process pipeline throughput: 1400-byte TCP frames through cell 1's
// egress (route, neighbor, FDB, tag, encapsulation) and cell 2's ingress
// (checks, conntrack/policy, delivery), in batches of 64, on one core.
// Not a test: prints packets/s per direction. Run after `npm run build`:
//   node scripts/bench-dataplane.mjs [seconds]
import { Dataplane, DEFAULT_CONFIG } from '../dist/dataplane/dataplane.js';
import { FrameBatch, slotSizeFor } from '../dist/dataplane/batch.js';
import { ipToU32, writeMacFromIp } from '../dist/util/ip.js';
import { internetChecksum } from '../dist/wire/checksum.js';

const seconds = Number(process.argv[2] ?? 3);
const BATCH = 64;
const FRAME = 1400;
const u1 = ipToU32('198.18.0.11');
const u2 = ipToU32('198.18.0.12');
const l1 = ipToU32('10.255.1.0');
const l2 = ipToU32('10.255.2.0');
const leases = [
  { underlayIp: u1, subnet: l1, prefixLen: 24 },
  { underlayIp: u2, subnet: l2, prefixLen: 24 },
];
const policies = [
  { source: { id: 'appB', tag: '0001' }, destination: { id: 'appA', tag: '0002', protocol: 'tcp', ports: { start: 8080, end: 8080 } } },
];
const cell1 = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: u1, leaseSubnet: l1 });
const cell2 = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: u2, leaseSubnet: l2 });
for (const c of [cell1, cell2]) { c.setLeases(leases); c.setPolicies(policies); }
const src = cell1.addPort('appB-0', 'appB', l1 + 2);
cell2.addPort('appA-0', 'appA', l2 + 2);

// A TCP segment appB → appA:8080, ACK set (an established flow's data).
function frame(sport) {
  const f = new Uint8Array(FRAME);
  writeMacFromIp(f, 0, 0xaaaa, l1 + 2);
  writeMacFromIp(f, 6, 0xeeee, l1 + 2);
  f[12] = 0x08; f[13] = 0x00;
  const ip = 14, tot = FRAME - 14;
  f.set([0x45, 0, tot >> 8, tot & 255, 0, 1, 0x40, 0, 64, 6, 0, 0], ip);
  const s = l1 + 2, d = l2 + 2;
  f.set([s >>> 24, (s >>> 16) & 255, (s >>> 8) & 255, s & 255, d >>> 24, (d >>> 16) & 255, (d >>> 8) & 255, d & 255], ip + 12);
  const c = internetChecksum(f, ip, 20); f[ip + 10] = c >> 8; f[ip + 11] = c & 255;
  const t = ip + 20;
  f.set([sport >> 8, sport & 255, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff], t);
  return f;
}
const slot = slotSizeFor(1500);
const eb = new FrameBatch(BATCH, slot);
const ib = new FrameBatch(BATCH, slot);
const frames = Array.from({ length: BATCH }, (_, i) => frame(40000 + i));

function fillEgress() {
  eb.count = 0;
  for (const f of frames) eb.push(f);
}
function fillIngress() {
  ib.count = 0;
  for (let i = 0; i < eb.count; i++) {
    // strip outer IPv4 + UDP as the kernel's UDP socket would
    const o = eb.outOff[i] + 28;
    ib.slab.set(eb.slab.subarray(o, eb.outOff[i] + eb.outLen[i]), ib.inOff(i));
    ib.len[i] = eb.outLen[i] - 28;
    ib.srcIp[i] = u1;
  }
  ib.count = eb.count;
}

function run(name, prepare, step) {
  let packets = 0, busy = 0;
  const end = performance.now() + seconds * 1000;
  let now = 1;
  while (performance.now() < end) {
    prepare();
    const t0 = performance.now();
    for (let r = 0; r < 16; r++) { step(now); }
    busy += performance.now() - t0;
    packets += 16 * BATCH;
    now += 0.001;
  }
  const pps = packets / (busy / 1000);
  console.log(`${name.padEnd(26)} ${(pps / 1e6).toFixed(2)} Mpps   ${((pps * FRAME * 8) / 1e9).toFixed(1)} Gbit/s of 1400-byte frames (incl. refilling the batch)`);
  return pps;
}

// Egress rewrites the frame in place (TTL, MACs), so refill before each batch.
run('egress (encapsulate)', () => {}, (now) => { fillEgress(); cell1.egress(eb, src.index, now); });
fillEgress(); cell1.egress(eb, src.index, 1);
run('ingress (decap + policy)', () => {}, (now) => { fillIngress(); cell2.ingress(ib, now); });
const d = cell2.counters.snapshot().drops;
const bad = Object.entries(d).filter(([, v]) => v > 0);
if (bad.length) console.log('unexpected drops:', bad);
console.log('note: each step above includes refilling the batch from the source frames (a memcpy per frame), as a TAP read would.');
