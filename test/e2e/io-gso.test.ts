// UDP GSO on send and UDP_GRO on receive for the underlay (root only). Two
// namespaces gso<pid>-a / gso<pid>-b joined by a veth pair, addresses from
// 198.19.0.0/16 (inside 198.18.0.0/15), all removed in afterAll. Packets are
// built with the data plane's own writeOuterHeaders (src/dataplane/encap.ts);
// the expected bytes are written out by hand here.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeOuterHeaders } from '../../src/dataplane/encap.js';
import { gsoDefault } from '../../src/offload/options.js';
import { ipToU32 } from '../../src/util/ip.js';

const isRoot = process.getuid?.() === 0;
const canRun = isRoot && existsSync('/usr/sbin/ethtool') && (existsSync('/usr/bin/tcpdump') || existsSync('/usr/sbin/tcpdump'));

const ROOT = resolve(import.meta.dirname, '../..');
const P = `gso${process.pid}`;
const NS_A = `${P}-a`;
const NS_B = `${P}-b`;
const DEV_A = `${P}a`;
const DEV_B = `${P}b`;
const SUBNET = `198.19.${process.pid % 250}`;
const IP_A = `${SUBNET}.1`;
const IP_B = `${SUBNET}.2`;
const SPORT = 40001;
const VNI = 1;
const GPID = 0x1234;
const VIEW_NODE = join(ROOT, 'node_modules/.bin/vite-node');

const created: string[] = [];
let tmp = '';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function inNs(ns: string, ...cmd: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}
function sum16(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i < len; i += 2) s += (b[off + i]! << 8) + (i + 1 < len ? b[off + i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

// --- packets ----------------------------------------------------------------

/** An inner Ethernet/IPv4/UDP frame of `len` bytes whose bytes depend on `seed` (no two alike). */
function innerFrame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set([0xee, 0xee, 10, 255, 2, 3, 0xaa, 0xaa, 10, 255, 1, 2, 0x08, 0x00], 0);
  f.set([0x45, 0, (len - 14) >> 8, (len - 14) & 255, 0, seed & 255, 0, 0, 64, 17, 0, 0, 10, 255, 1, 2, 10, 255, 2, 3], 14);
  for (let i = 34; i < len; i++) f[i] = (i * 7 + seed * 13) & 255;
  return f;
}
/** The expected UDP payload: the VXLAN-GBP header by hand (G|I, GPID, VNI), then the inner frame. */
function vxlanPayload(inner: Uint8Array, gpid = GPID): Uint8Array {
  return Uint8Array.from([0x88, 0, gpid >> 8, gpid & 255, (VNI >> 16) & 255, (VNI >> 8) & 255, VNI & 255, 0, ...inner]);
}
/** A full outer IPv4 packet, as the data plane builds it. */
function outerPacket(inner: Uint8Array, sport: number, ident: number): Uint8Array {
  const buf = new Uint8Array(36 + inner.length);
  buf.set(inner, 36);
  const at = writeOuterHeaders(buf, 36, inner.length, ipToU32(IP_A), ipToU32(IP_B), ident, sport, 4789, VNI, GPID);
  expect(at).toBe(0);
  return buf;
}

/** 40 inner frames of 1000 bytes and one of 300: one GSO group of 41 segments (1008 bytes, last 308). */
const BURST = [...Array.from({ length: 40 }, (_, i) => innerFrame(1000, i)), innerFrame(300, 40)];

// --- scripts run in the namespaces ------------------------------------------

function writeScripts(): void {
  writeFileSync(
    join(tmp, 'send.ts'),
    `import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { ipToU32 } from ${JSON.stringify(join(ROOT, 'src/util/ip.js'))};
const { packets, gso, split } = JSON.parse(process.argv[2]!) as { packets: string[]; gso: boolean; split: number };
const u = UdpUnderlay.open({ bindIp: ipToU32(${JSON.stringify(IP_A)}), port: 0, gso });
const slab = new Uint8Array(packets.length * 2048);
const offs = new Uint32Array(packets.length), lens = new Uint32Array(packets.length);
const dsts = new Uint32Array(packets.length).fill(ipToU32(${JSON.stringify(IP_B)}));
packets.forEach((h, i) => { const b = Buffer.from(h, 'hex'); offs[i] = i * 2048 + 28; lens[i] = b.length; slab.set(b, offs[i]!); });
// split > 0: each packet's bytes after the first "split" are given as a piece outside the slab (as zero-copy
// TSO segments are), at odd offsets of another buffer; the slab holds only the head (the rest zeroed).
const ext = new Uint8Array(packets.length * 2048 + 7), xoffs = new Uint32Array(packets.length), xlens = new Uint32Array(packets.length);
if (split > 0) packets.forEach((_, i) => { const o = offs[i]!; xoffs[i] = i * 2048 + 3; xlens[i] = lens[i]! - split; ext.set(slab.subarray(o + split, o + lens[i]!), xoffs[i]!); slab.fill(0, o + split, o + lens[i]!); });
const sent = split > 0 ? u.send(slab, offs, lens, dsts, packets.length, ext, xoffs, xlens) : u.send(slab, offs, lens, dsts, packets.length);
console.log(JSON.stringify({ sent, stats: u.stats, gso: u.gso, counters: u.senderCounters() ?? null }));
u.close();
`,
  );
  writeFileSync(
    join(tmp, 'recv.ts'),
    `import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { ipToU32 } from ${JSON.stringify(join(ROOT, 'src/util/ip.js'))};
const batch = Number(process.argv[2]);
const pauseFirst = process.argv[3] === 'pause-first';
const u = UdpUnderlay.open({ bindIp: ipToU32(${JSON.stringify(IP_B)}), batch, gso: true });
const counts: number[] = []; const got: { src: number; sport: number; hex: string }[] = [];
u.start((b) => { counts.push(b.count); if (pauseFirst && counts.length === 1) { u.pause(); setTimeout(() => u.resume(), 100); } for (let i = 0; i < b.count; i++) got.push({ src: b.srcIp[i]!, sport: b.srcPort[i]!, hex: Buffer.from(b.slab.subarray(b.inOff(i), b.inOff(i) + b.len[i]!)).toString('hex') }); });
u.pause();
console.log('ready ' + u.port);
process.stdin.once('data', () => {
  u.resume();
  setTimeout(() => { console.log(JSON.stringify({ counts, got, rc: u.receiverCounters() })); u.close(); process.exit(0); }, 500);
});
setTimeout(() => process.exit(3), 20000);
`,
  );
  // A plain recvmsg-based listener: Node's dgram never sets UDP_GRO.
  writeFileSync(
    join(tmp, 'listen.mjs'),
    `import dgram from 'node:dgram';
const want = Number(process.argv[2]);
const s = dgram.createSocket('udp4');
const got = [];
const done = () => { console.log(JSON.stringify(got)); s.close(); process.exit(0); };
s.on('message', (m, r) => { got.push({ address: r.address, port: r.port, hex: m.toString('hex') }); if (got.length === want) setTimeout(done, 200); });
s.bind(4789, ${JSON.stringify(IP_B)}, () => console.log('ready'));
setTimeout(done, 10000);
`,
  );
}

interface SendResult {
  sent: number;
  gso: boolean;
  stats: { txPackets: number; txDropFull: number; txDropRefused: number };
  counters: { gsoGroups: number; gsoPackets: number; rawPackets: number; fallbacks: number; sockets: number; socketFailures: number } | null;
}
function send(packets: Uint8Array[], gso = true, split = 0): SendResult {
  const arg = JSON.stringify({ packets: packets.map((p) => Buffer.from(p).toString('hex')), gso, split });
  const out = inNs(NS_A, VIEW_NODE, join(tmp, 'send.ts'), arg);
  return JSON.parse(out.trim().split('\n').pop()!) as SendResult;
}

/** Start `cmd` in `ns`; resolves once stdout (or stderr) shows `ready`. */
async function startIn(ns: string, cmd: string[], ready: RegExp) {
  const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { cwd: ROOT });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  const ok = await until(() => ready.test(out) || ready.test(err), 30_000);
  if (!ok) {
    child.kill();
    throw new Error(`${cmd.join(' ')} did not get ready: ${err}`);
  }
  return { child, exited, out: () => out, err: () => err };
}

async function listen(want: number) {
  const l = await startIn(NS_B, [process.execPath, join(tmp, 'listen.mjs'), String(want)], /ready/);
  return async () => {
    expect(await l.exited, l.err()).toBe(0);
    return JSON.parse(l.out().trim().split('\n').pop()!) as { address: string; port: number; hex: string }[];
  };
}

// --- pcap (libpcap format, Ethernet) ----------------------------------------

function pcapFrames(file: string): Uint8Array[] {
  const b = readFileSync(file);
  expect(b.readUInt32LE(0)).toBe(0xa1b2c3d4);
  expect(b.readUInt32LE(20)).toBe(1); // LINKTYPE_ETHERNET
  const frames: Uint8Array[] = [];
  for (let off = 24; off + 16 <= b.length; ) {
    const incl = b.readUInt32LE(off + 8);
    frames.push(new Uint8Array(b.subarray(off + 16, off + 16 + incl)));
    off += 16 + incl;
  }
  return frames;
}

describe.skipIf(!canRun)('underlay UDP GSO / GRO (root, network namespaces)', () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), `${P}-`));
    for (const ns of [NS_A, NS_B]) {
      ip('netns', 'add', ns);
      created.push(ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('link', 'add', DEV_A, 'netns', NS_A, 'type', 'veth', 'peer', 'name', DEV_B, 'netns', NS_B);
    ip('-n', NS_A, 'addr', 'add', `${IP_A}/24`, 'dev', DEV_A);
    ip('-n', NS_B, 'addr', 'add', `${IP_B}/24`, 'dev', DEV_B);
    ip('-n', NS_A, 'link', 'set', DEV_A, 'up');
    ip('-n', NS_B, 'link', 'set', DEV_B, 'up');
    inNs(NS_A, 'ping', '-c1', '-W2', IP_B); // resolve ARP so nothing waits in the neighbour queue
    writeScripts();
  });

  afterAll(() => {
    for (const ns of created) {
      try {
        ip('netns', 'del', ns);
      } catch {
        /* gone already */
      }
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('sends 41 packets as ONE GSO message; a plain listener gets 41 datagrams; the wire has 41 VXLAN datagrams, DF clear, valid UDP checksums', async () => {
    // tx off on the sender's veth: the kernel segments and checksums in software before the veth,
    // so the capture shows the datagrams exactly as a NIC would put them on a wire.
    inNs(NS_A, 'ethtool', '-K', DEV_A, 'tx', 'off');
    const pcap = join(tmp, 'wire.pcap');
    const dump = await startIn(NS_B, ['tcpdump', '-n', '-U', '-i', DEV_B, '-c', '41', '-w', pcap, 'udp', 'dst', 'port', '4789'], /listening on/);
    try {
      const result = await listen(41);
      const packets = BURST.map((f, i) => outerPacket(f, SPORT, 100 + i));
      const s = send(packets);
      expect(s.sent).toBe(41);
      expect(s.gso).toBe(true);
      expect(s.stats.txPackets).toBe(41);
      expect(s.counters).toMatchObject({ gsoGroups: 1, gsoPackets: 41, rawPackets: 0, fallbacks: 0, sockets: 1, socketFailures: 0 });
      const got = await result();
      expect(got).toHaveLength(41);
      got.forEach((g, i) => {
        expect(g.address).toBe(IP_A);
        expect(g.port).toBe(SPORT);
        expect(g.hex).toBe(Buffer.from(vxlanPayload(BURST[i]!)).toString('hex'));
      });
      expect(await until(() => dump.child.exitCode !== null, 5000)).toBe(true);
    } finally {
      if (dump.child.exitCode === null) dump.child.kill();
      inNs(NS_A, 'ethtool', '-K', DEV_A, 'tx', 'on');
    }
    const frames = pcapFrames(pcap);
    expect(frames).toHaveLength(41);
    const ids = new Set<number>();
    frames.forEach((f, i) => {
      const ipOff = 14;
      const payload = vxlanPayload(BURST[i]!);
      expect(f[12]).toBe(0x08);
      expect(f[13]).toBe(0x00);
      expect(f[ipOff]).toBe(0x45);
      expect((f[ipOff + 2]! << 8) | f[ipOff + 3]!).toBe(28 + payload.length);
      expect(f[ipOff + 6]! & 0x40).toBe(0); // DF clear
      expect(f[ipOff + 8]).toBe(64); // TTL
      expect(sum16(f, ipOff, 20)).toBe(0xffff); // IPv4 header checksum verifies
      ids.add((f[ipOff + 4]! << 8) | f[ipOff + 5]!);
      const u = ipOff + 20;
      expect((f[u]! << 8) | f[u + 1]!).toBe(SPORT);
      expect((f[u + 2]! << 8) | f[u + 3]!).toBe(4789);
      expect((f[u + 4]! << 8) | f[u + 5]!).toBe(8 + payload.length);
      // Linux refuses UDP_SEGMENT with SO_NO_CHECK, so GSO datagrams carry a real checksum (RFC 7348
      // section 5 permits it); it must verify over the pseudo-header, as receivers with checks will do.
      expect((f[u + 6]! << 8) | f[u + 7]!).not.toBe(0);
      const pseudo = sum16(f, ipOff + 12, 8, 17 + 8 + payload.length);
      expect(sum16(f, u, 8 + payload.length, pseudo)).toBe(0xffff);
      expect(Buffer.from(f.subarray(u + 8)).toString('hex')).toBe(Buffer.from(payload).toString('hex'));
    });
    expect(ids.size).toBe(41); // each segment got its own IPv4 ID
  });

  it('receives with UDP_GRO: 41 batch entries with exact bytes, a GRO message split in C', async () => {
    const r = await startIn(NS_B, [VIEW_NODE, join(tmp, 'recv.ts'), '64'], /ready/);
    try {
      expect(r.out()).toContain('ready 4789');
      const s = send(BURST.map((f, i) => outerPacket(f, SPORT, 200 + i)));
      expect(s.sent).toBe(41);
      expect(s.counters).toMatchObject({ gsoGroups: 1, gsoPackets: 41 });
      r.child.stdin.write('go\n');
      expect(await r.exited, r.err()).toBe(0);
    } finally {
      if (r.child.exitCode === null) r.child.kill();
    }
    const res = JSON.parse(r.out().trim().split('\n').pop()!) as {
      counts: number[];
      got: { src: number; sport: number; hex: string }[];
      rc: { gro: boolean; groMessages: number; groSegments: number; carried: number; oversize: number; frames: number };
    };
    console.log('GRO receive counters (batch 64):', JSON.stringify({ counts: res.counts, ...res.rc }));
    expect(res.rc.gro).toBe(true);
    expect(res.counts).toEqual([41]);
    expect(res.rc.oversize).toBe(0);
    expect(res.got).toHaveLength(41);
    res.got.forEach((g, i) => {
      expect(g.src).toBe(ipToU32(IP_A));
      expect(g.sport).toBe(SPORT);
      expect(g.hex).toBe(Buffer.from(vxlanPayload(BURST[i]!)).toString('hex'));
    });
    // Over a veth the GSO message reaches a UDP_GRO socket whole (udp_unexpected_gso): one message.
    expect(res.rc.groMessages).toBe(1);
    expect(res.rc.groSegments).toBe(41);
  });

  it.each([
    ['in the same wakeup', ''],
    ['after pause() in the callback and resume() on a quiet socket (the flush timer)', 'pause-first'],
  ])('carries the rest of a GRO message over to the next batches (batch 16: 16 + 16 + 9) %s', async (_name, mode) => {
    const r = await startIn(NS_B, [VIEW_NODE, join(tmp, 'recv.ts'), '16', mode], /ready/);
    try {
      const s = send(BURST.map((f, i) => outerPacket(f, SPORT, 300 + i)));
      expect(s.sent).toBe(41);
      r.child.stdin.write('go\n');
      expect(await r.exited, r.err()).toBe(0);
    } finally {
      if (r.child.exitCode === null) r.child.kill();
    }
    const res = JSON.parse(r.out().trim().split('\n').pop()!) as {
      counts: number[];
      got: { hex: string }[];
      rc: { groMessages: number; carried: number };
    };
    expect(res.counts).toEqual([16, 16, 9]);
    expect(res.rc.groMessages).toBe(1);
    expect(res.rc.carried).toBe(2);
    expect(res.got.map((g) => g.hex)).toEqual(BURST.map((f) => Buffer.from(vxlanPayload(f)).toString('hex')));
  });

  it('groups only consecutive same-flow packets; IP options, lone packets and other flows take the raw path in order', async () => {
    const a = [innerFrame(600, 50), innerFrame(600, 51), innerFrame(600, 52)];
    const withOptions = innerFrame(400, 53);
    const lone = innerFrame(500, 54);
    const tail = [innerFrame(700, 55), innerFrame(200, 56)];
    const pOpt = outerPacket(withOptions, SPORT, 1);
    // IHL 6: a 4-byte NOP option; the UDP header and payload move 4 bytes on.
    const optPkt = new Uint8Array(pOpt.length + 4);
    optPkt.set(pOpt.subarray(0, 20), 0);
    optPkt.set([1, 1, 1, 1], 20);
    optPkt.set(pOpt.subarray(20), 24);
    optPkt[0] = 0x46;
    const total = optPkt.length;
    optPkt[2] = total >> 8;
    optPkt[3] = total & 255;
    optPkt[10] = 0;
    optPkt[11] = 0;
    const c = ~sum16(optPkt, 0, 24) & 0xffff;
    optPkt[10] = c >> 8;
    optPkt[11] = c & 255;
    const packets = [
      ...a.map((f, i) => outerPacket(f, SPORT, 10 + i)),
      optPkt,
      outerPacket(lone, SPORT + 1, 20),
      ...tail.map((f, i) => outerPacket(f, SPORT, 30 + i)),
    ];
    const result = await listen(7);
    const s = send(packets);
    expect(s.sent).toBe(7);
    // Groups: a (3 segments) and tail (700 + shorter 200); raw: the options packet and the lone one.
    expect(s.counters).toMatchObject({ gsoGroups: 2, gsoPackets: 5, rawPackets: 2, fallbacks: 0, sockets: 1 });
    const got = await result();
    const want = [...a, withOptions, lone, ...tail].map((f) => Buffer.from(vxlanPayload(f)).toString('hex'));
    expect(got.map((g) => g.hex)).toEqual(want);
    expect(got.map((g) => g.port)).toEqual([SPORT, SPORT, SPORT, SPORT, SPORT + 1, SPORT, SPORT]);
  });

  it('gso: false keeps the raw path (no pool sockets); SILKWORM_UNDERLAY_GSO=0 turns the default off', async () => {
    const result = await listen(2);
    const s = send([outerPacket(innerFrame(800, 60), SPORT, 1), outerPacket(innerFrame(800, 61), SPORT, 2)], false);
    expect(s.sent).toBe(2);
    expect(s.gso).toBe(false);
    expect(s.counters).toBeNull();
    expect(gsoDefault({ SILKWORM_UNDERLAY_GSO: '0' })).toBe(false);
    expect(gsoDefault({ SILKWORM_UNDERLAY_GSO: '1' })).toBe(true);
    expect(gsoDefault({})).toBe(true);
    const got = await result();
    expect(got.map((g) => g.hex)).toEqual([innerFrame(800, 60), innerFrame(800, 61)].map((f) => Buffer.from(vxlanPayload(f)).toString('hex')));
  });

  // Zero-copy TSO segments: the outer and inner headers in the slab, the payload elsewhere (FrameBatch.ext).
  for (const gso of [true, false]) {
    it(`packets in two pieces (headers in the slab, payload outside it) arrive whole (gso: ${gso})`, async () => {
      const result = await listen(41);
      const s = send(BURST.map((f, i) => outerPacket(f, SPORT, 300 + i)), gso, 36 + 54);
      expect(s.sent).toBe(41);
      if (gso) expect(s.counters).toMatchObject({ gsoGroups: 1, gsoPackets: 41, rawPackets: 0, fallbacks: 0 });
      else expect(s.counters).toBeNull();
      const got = await result();
      expect(got.map((g) => g.hex)).toEqual(BURST.map((f) => Buffer.from(vxlanPayload(f)).toString('hex')));
    });
  }
});
