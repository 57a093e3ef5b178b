// UDP_GRO receive with mixed datagram sizes (root only): whatever the kernel
// coalesces into one message (segments of one size, a shorter last one), the
// UdpUnderlay's batches must hold every datagram alone in its own slot, in
// arrival order, with its exact bytes, length and source, for any batch size
// (a batch may fill in the middle of a coalesced message: the rest comes in
// the next batch, nothing lost or duplicated).
//
// One namespace of the test's own (swgm<pid>, loopback only, addresses
// 198.18.13.1 and .2 on lo), removed in afterAll. Per case ONE child process in
// the namespace opens a receiving UdpUnderlay (gro: true) on 198.18.13.2:4789
// and a sending UdpUnderlay (gso: true) on 198.18.13.1, sends each "message" of
// the case with one send() call — the GSO sender turns a run of same-size
// datagrams (plus a shorter last one) into one UDP_SEGMENT message, which
// reaches the UDP_GRO socket whole; a lone datagram goes out on the raw path
// and arrives alone — then reports every slot it was handed. The payloads are
// not VXLAN (the first byte has no I flag) and no Dataplane is involved: this
// checks the underlay/batch level only.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ipToU32 } from '../../src/util/ip.js';
import { scratchNetns } from '../helpers/scratch-netns.js';

const isRoot = process.getuid?.() === 0;
const ROOT = resolve(import.meta.dirname, '../..');
const canRun = isRoot && existsSync(join(ROOT, 'build/Release/silkworm_native.node'));
const NS = `swgm${process.pid}`;
const IP_A = '198.18.13.1'; // sender
const IP_B = '198.18.13.2'; // receiver
const SPORT = 40013;
const DPORT = 4789;
const VIEW_NODE = join(ROOT, 'node_modules/.bin/vite-node');

// --- datagrams ----------------------------------------------------------------

let seqNo = 0;
/**
 * A UDP payload of `len` bytes unique to this datagram: 0x00 (no VXLAN I flag), 0x5a, the sequence
 * number (16 bits), the length (16 bits), the case id, 0xc3, then a pattern that depends on both the
 * sequence number and the position. Shorter payloads are the same bytes cut short.
 */
function payload(len: number, caseId: number): Uint8Array {
  const seq = ++seqNo;
  const p = new Uint8Array(len);
  const head = [0x00, 0x5a, (seq >> 8) & 255, seq & 255, (len >> 8) & 255, len & 255, caseId & 255, 0xc3];
  for (let i = 0; i < len; i++) p[i] = i < 8 ? head[i]! : (i * 31 + seq * 7 + 11) & 255;
  return p;
}

function sum16(b: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[off + i]! << 8) + (i + 1 < len ? b[off + i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** IPv4 (IHL 5, TOS 0, DF clear, TTL 64) + UDP (checksum 0) around `p`: what the GSO sender may group. */
function packet(p: Uint8Array, ident: number): Uint8Array {
  const b = new Uint8Array(28 + p.length);
  const total = b.length;
  const a = IP_A.split('.').map(Number);
  const d = IP_B.split('.').map(Number);
  b.set([0x45, 0, total >> 8, total & 255, (ident >> 8) & 255, ident & 255, 0, 0, 64, 17, 0, 0, ...a, ...d], 0);
  const c = ~sum16(b, 0, 20) & 0xffff;
  b[10] = c >> 8;
  b[11] = c & 255;
  const ul = 8 + p.length;
  b.set([SPORT >> 8, SPORT & 255, DPORT >> 8, DPORT & 255, ul >> 8, ul & 255, 0, 0], 20);
  b.set(p, 28);
  return b;
}

/** A message: datagrams given to ONE send() call. `n` datagrams of `size`, then optionally one of `tail`. */
function msg(caseId: number, n: number, size: number, tail?: number): Uint8Array[] {
  const out = Array.from({ length: n }, () => payload(size, caseId));
  if (tail !== undefined) out.push(payload(tail, caseId));
  return out;
}

// --- the child ----------------------------------------------------------------

const SCRIPT = `import { readFileSync, writeFileSync } from 'node:fs';
import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { ipToU32 } from ${JSON.stringify(join(ROOT, 'src/util/ip.js'))};
const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { batch: number; messages: string[][]; paced: boolean };
const A = ipToU32(${JSON.stringify(IP_A)}), B = ipToU32(${JSON.stringify(IP_B)});
const rx = UdpUnderlay.open({ bindIp: B, port: ${DPORT}, batch: spec.batch, gro: true, gso: false });
const tx = UdpUnderlay.open({ bindIp: A, port: 0, gso: true, gro: false });
const counts: number[] = [];
const got: { src: number; sport: number; len: number; hex: string }[] = [];
rx.start((b) => {
  counts.push(b.count);
  for (let i = 0; i < b.count; i++) {
    got.push({ src: b.srcIp[i]!, sport: b.srcPort[i]!, len: b.len[i]!, hex: Buffer.from(b.slab.subarray(b.inOff(i), b.inOff(i) + b.len[i]!)).toString('hex') });
  }
});
const sent: number[] = [];
let total = 0;
let sending = true;
const sendOne = (m: string[]) => {
  const slab = new Uint8Array(m.length * 2048);
  const offs = new Uint32Array(m.length), lens = new Uint32Array(m.length), dsts = new Uint32Array(m.length).fill(B);
  m.forEach((h, i) => { const p = Buffer.from(h, 'hex'); offs[i] = i * 2048; lens[i] = p.length; slab.set(p, offs[i]!); });
  sent.push(tx.send(slab, offs, lens, dsts, m.length));
  total += m.length;
};
if (!spec.paced) {
  rx.pause(); // everything queues in the socket first, so batches fill
  for (const m of spec.messages) sendOne(m);
  rx.resume();
  sending = false;
} else {
  // One message at a time, each received before the next is sent: the receiver reads the next
  // message only after the one before it was handed over.
  void (async () => {
    for (const m of spec.messages) {
      sendOne(m);
      const t = Date.now();
      while (got.length < total && Date.now() - t < 2000) await new Promise((r) => setTimeout(r, 2));
    }
    sending = false;
  })();
}
const report = () => {
  const txc = tx.senderCounters() ?? null;
  // To a file: a large console.log to a pipe can be cut short by process.exit.
  writeFileSync(process.argv[3]!, JSON.stringify({ gro: rx.gro, groRefusal: rx.groRefusal ?? null, gso: tx.gso, sent, txc, counts, got, rc: rx.receiverCounters() }));
  rx.close(); tx.close(); process.exit(0);
};
const t0 = Date.now();
const poll = setInterval(() => {
  // All in (or given up after 3 s): wait a little more so duplicates would show too.
  if ((!sending && got.length >= total) || Date.now() - t0 > 6000) { clearInterval(poll); setTimeout(report, 150); }
}, 10);
setTimeout(() => process.exit(3), 10000);
`;

interface Result {
  gro: boolean;
  groRefusal: string | null;
  gso: boolean;
  sent: number[];
  txc: { gsoGroups: number; gsoPackets: number; rawPackets: number; fallbacks: number } | null;
  counts: number[];
  got: { src: number; sport: number; len: number; hex: string }[];
  rc: { gro: boolean; groMessages: number; groSegments: number; carried: number; oversize: number; frames: number; errors: number; wakeups: number };
}

let scriptPath = '';
let runNo = 0;

function run(dir: string, batch: number, messages: Uint8Array[][], paced = false): Result {
  const file = join(dir, `spec-${++runNo}.json`);
  let ident = 1;
  writeFileSync(file, JSON.stringify({ batch, paced, messages: messages.map((m) => m.map((p) => Buffer.from(packet(p, ident++)).toString('hex'))) }));
  const resultFile = join(dir, `result-${runNo}.json`);
  execFileSync('ip', ['netns', 'exec', NS, VIEW_NODE, scriptPath, file, resultFile], {
    cwd: ROOT,
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return JSON.parse(readFileSync(resultFile, 'utf8')) as Result;
}

/**
 * The checks every case makes: each datagram alone in its slot, in send order, exact bytes and length,
 * from IP_A:SPORT; batches within the batch size; the sender sent what was asked (coalesced messages as
 * one UDP_SEGMENT group each, lone datagrams on the raw path) and the receiver saw exactly those
 * coalesced messages as UDP_GRO messages.
 */
function check(name: string, r: Result, batch: number, messages: Uint8Array[][]): void {
  const all = messages.flat();
  const multi = messages.filter((m) => m.length > 1);
  console.log(`${name}: batch ${batch}, counts ${JSON.stringify(r.counts)}, receiver ${JSON.stringify(r.rc)}, sender ${JSON.stringify(r.txc)}`);
  expect(r.gro, `UDP_GRO refused: ${r.groRefusal}`).toBe(true);
  expect(r.rc.gro).toBe(true);
  expect(r.gso).toBe(true);
  expect(r.sent).toEqual(messages.map((m) => m.length));
  expect(r.txc).toMatchObject({
    gsoGroups: multi.length,
    gsoPackets: multi.reduce((s, m) => s + m.length, 0),
    rawPackets: messages.length - multi.length,
    fallbacks: 0,
  });

  // Every datagram once, alone, in order, with its exact bytes.
  expect(r.got.map((g) => g.len)).toEqual(all.map((p) => p.length));
  expect(r.got.map((g) => g.hex)).toEqual(all.map((p) => Buffer.from(p).toString('hex')));
  for (const g of r.got) {
    expect(g.src).toBe(ipToU32(IP_A));
    expect(g.sport).toBe(SPORT);
  }

  // Batches: none empty, none larger than the batch, and they add up.
  for (const c of r.counts) {
    expect(c).toBeGreaterThan(0);
    expect(c).toBeLessThanOrEqual(batch);
  }
  expect(r.counts.reduce((s, c) => s + c, 0)).toBe(all.length);
  expect(r.counts.length).toBeGreaterThanOrEqual(Math.ceil(all.length / batch));

  // The coalesced path really ran: each multi-datagram send came up as one UDP_GRO message.
  expect(r.rc.groMessages).toBe(multi.length);
  expect(r.rc.groSegments).toBe(multi.reduce((s, m) => s + m.length, 0));
  expect(r.rc.oversize).toBe(0);
  expect(r.rc.errors).toBe(0);
}

describe.skipIf(!canRun)('underlay UDP_GRO with mixed datagram sizes (root, network namespace)', () => {
  const scratch = scratchNetns(NS);

  beforeAll(() => {
    execFileSync('ip', ['-n', NS, 'addr', 'add', `${IP_A}/32`, 'dev', 'lo']);
    execFileSync('ip', ['-n', NS, 'addr', 'add', `${IP_B}/32`, 'dev', 'lo']);
    scriptPath = join(scratch.dir, 'gro-mix.ts');
    writeFileSync(scriptPath, SCRIPT);
  });

  it('size changes between coalesced messages: 30 x 1472, 20 x 1000, 25 x 1472', () => {
    const messages = [msg(1, 30, 1472), msg(1, 20, 1000), msg(1, 25, 1472)];
    const r = run(scratch.dir, 128, messages);
    check('sizes change', r, 128, messages);
    expect(r.rc.groMessages).toBeGreaterThan(0);
  }, 40_000);

  it('lone datagrams of varying sizes (64, 1472, 200, 1400, 9, 1472), not coalesced: each alone in a slot', () => {
    const messages = [64, 1472, 200, 1400, 9, 1472].map((n) => msg(2, 1, n));
    const r = run(scratch.dir, 128, messages);
    check('lone datagrams', r, 128, messages);
    expect(r.rc.groMessages).toBe(0);
  }, 40_000);

  it.each([5, 7])('batch %i: coalesced messages of 40 fill the batch mid-message again and again; every datagram once, in order', (batch) => {
    const messages = [msg(3, 40, 1472), msg(3, 40, 1000), msg(3, 1, 64), msg(3, 39, 1200, 33), msg(3, 40, 1472)];
    const r = run(scratch.dir, batch, messages);
    check(`small batch ${batch}`, r, batch, messages);
    expect(r.rc.groMessages).toBeGreaterThan(0);
    expect(r.rc.carried).toBeGreaterThan(0);
    expect(Math.max(...r.counts)).toBe(batch); // batches did fill
  }, 40_000);

  it('a coalesced message with a shorter last datagram: 10 x 1472 + 300, and 5 x 1472 + 1', () => {
    const messages = [msg(4, 10, 1472, 300), msg(4, 5, 1472, 1), msg(4, 3, 500)];
    const r = run(scratch.dir, 128, messages);
    check('shorter last', r, 128, messages);
    expect(r.got[10]!.len).toBe(300);
    expect(r.got[16]!.len).toBe(1);
  }, 40_000);

  it.each([128, 5])(
    'batch %i, one message at a time (each read before the next is sent): sizes change, lone, short, zero-length',
    (batch) => {
      const messages = [
        msg(6, 30, 1472), msg(6, 30, 1472), msg(6, 20, 1000), msg(6, 20, 1000), msg(6, 1, 1400),
        msg(6, 10, 1472, 300), msg(6, 44, 1472), msg(6, 20, 1472, 700),
        msg(6, 1, 200), msg(6, 1, 0), msg(6, 5, 1472, 1), msg(6, 3, 500), msg(6, 12, 1472), msg(6, 12, 1472, 5),
      ];
      const r = run(scratch.dir, batch, messages, true);
      check(`paced, batch ${batch}`, r, batch, messages);
      // Every message came in a read of its own (the next was sent only after it arrived).
      expect(r.rc.wakeups).toBeGreaterThanOrEqual(messages.length);
    },
    40_000,
  );

  it('zero-length datagrams between coalesced bursts take a slot of length 0', () => {
    const messages = [msg(5, 20, 1472), msg(5, 1, 0), msg(5, 15, 1000), msg(5, 1, 0), msg(5, 1, 0), msg(5, 12, 1472, 700), msg(5, 1, 0)];
    const r = run(scratch.dir, 128, messages);
    check('zero-length', r, 128, messages);
    expect(r.got.filter((g) => g.len === 0)).toHaveLength(4);
    expect(r.got.map((g, i) => (g.len === 0 ? i : -1)).filter((i) => i >= 0)).toEqual([20, 36, 37, 51]);
    // The same with batch 4: zero-length slots at 20 and 36 open a batch, the one at 51 closes one,
    // and the 15- and 13-datagram messages are carried over batch edges.
    const r4 = run(scratch.dir, 4, messages);
    check('zero-length, batch 4', r4, 4, messages);
    expect(r4.rc.carried).toBeGreaterThan(0);
  }, 60_000);
});
