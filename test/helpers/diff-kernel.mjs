// The differential test against the kernel (issue 12): the same generated
// inner traffic sent from appB's container through a kernel-mode lab
// (`lab up --dataplane kernel`: Linux vxlan gbp + iptables, as silk) and a
// user-mode lab (silkworm), capturing what reaches appA's container and what
// crosses the underlay into appA's cell (and the ICMP errors that come back
// to appB), then compared packet by packet and byte by byte.
//
// Used by scripts/diff-kernel.mjs (the large random run) and by
// test/interop/diff-kernel.test.ts (a fixed corpus). Plain JavaScript so the
// script runs without a build step.
//
// Generated traffic (seeded, so a case can be replayed): TCP with flag mixes
// and options to an allowed and a denied port, UDP of sizes up to 9,000 bytes
// (fragmented at the containers' MTU, as their kernel would, when over it),
// ICMP echo requests and errors, IP options, TTL 0/1/2, every ECN codepoint
// and a few DSCP values. Every packet carries its case number as its IP
// identification, so the two captures can be matched without relying on
// order. Sent with a raw socket (IP_HDRINCL) from appB's namespace.
//
// What is ignored, because it must differ: the outer IPv4 identification and
// header checksum, the outer UDP source port (a hash of the flow, each its
// own) and the outer UDP checksum (RFC 7348 lets it be 0; see
// docs/kernel-differences.md). Everything else is compared; differences are
// sorted into the deliberate ones written in docs/kernel-differences.md and
// the unexplained rest.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(REPO, 'bin/silkworm.js');
const MTU = 1450;

// ------------------------------------------------------------------ running

/** Run a command (bounded); resolves with code/stdout/stderr, never rejects on exit code. */
export function run(cmd, args, timeoutMs = 60_000, input) {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    c.stdin.on('error', () => {}); // a command that exits without reading its input
    c.stdin.end(input ?? '');
  });
}

async function ok(cmd, args, timeoutMs) {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).slice(0, 1000)}`);
  return r.stdout;
}

const silkworm = (args, timeoutMs = 60_000) => ok(process.execPath, [CLI, ...args], timeoutMs);

// ------------------------------------------------------------------ bytes

function checksum(b, off, len, seed = 0) {
  let s = seed;
  for (let i = 0; i + 1 < len; i += 2) s += (b[off + i] << 8) | b[off + i + 1];
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

const ipU32 = (s) => s.split('.').reduce((a, b) => a * 256 + Number(b), 0) >>> 0;

function put16(b, o, v) {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
function put32(b, o, v) {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
}

/** mulberry32: small, seeded, good enough to pick cases. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An IPv4 packet: header (with options) + L4 bytes, L4 checksum filled. */
function ipv4({ src, dst, proto, id, ttl, tos, df, options, l4 }) {
  const hl = 20 + options.length;
  const b = new Uint8Array(hl + l4.length);
  b[0] = 0x40 | (hl >> 2);
  b[1] = tos;
  put16(b, 2, b.length);
  put16(b, 4, id);
  put16(b, 6, df ? 0x4000 : 0);
  b[8] = ttl;
  b[9] = proto;
  put32(b, 12, src);
  put32(b, 16, dst);
  b.set(options, 20);
  b.set(l4, hl);
  if (proto === 6 || proto === 17) {
    const ck = proto === 6 ? 16 : 6;
    b[hl + ck] = 0;
    b[hl + ck + 1] = 0;
    const pseudo = new Uint8Array(12);
    put32(pseudo, 0, src);
    put32(pseudo, 4, dst);
    pseudo[9] = proto;
    put16(pseudo, 10, l4.length);
    let s = 0;
    for (let i = 0; i < 12; i += 2) s += (pseudo[i] << 8) | pseudo[i + 1];
    let c = checksum(b, hl, l4.length, s);
    if (proto === 17 && c === 0) c = 0xffff;
    put16(b, hl + ck, c);
  } else if (proto === 1) {
    b[hl + 2] = 0;
    b[hl + 3] = 0;
    put16(b, hl + 2, checksum(b, hl, l4.length));
  }
  put16(b, 10, checksum(b, 0, hl));
  return b;
}

/** ip_do_fragment's slow path (src/dataplane/fragment-out.ts does the same; kept apart so the harness does not test silkworm with itself). */
function fragment(p, mtu) {
  const hl = (p[0] & 15) * 4;
  const total = p.length;
  if (total <= mtu) return [p];
  const step = (mtu - hl) & ~7;
  const out = [];
  for (let start = 0; start < total - hl; start += step) {
    const len = Math.min(step, total - hl - start);
    const f = new Uint8Array(hl + len);
    f.set(p.subarray(0, hl));
    f.set(p.subarray(hl + start, hl + start + len), hl);
    if (start > 0) nopOptions(f, hl);
    put16(f, 2, hl + len);
    put16(f, 6, (start >> 3) | (start + len < total - hl ? 0x2000 : 0));
    f[10] = 0;
    f[11] = 0;
    put16(f, 10, checksum(f, 0, hl));
    out.push(f);
  }
  return out;
}

function nopOptions(f, hl) {
  let p = 20;
  while (p < hl) {
    const t = f[p];
    if (t === 0) return;
    if (t === 1) {
      p++;
      continue;
    }
    const l = f[p + 1];
    if (l < 2 || p + l > hl) return;
    if (!(t & 0x80)) f.fill(1, p, p + l);
    p += l;
  }
}

const TCP_FLAG_MIXES = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x00, 0x03, 0x06, 0x29, 0x3f, 0xc2, 0x20, 0x08];
const TOS = [0x00, 0x01, 0x02, 0x03, 0xb8, 0xb9, 0xba, 0xbb, 0x28, 0x2a, 0x48, 0xfc];
const OPTIONS = [
  [],
  [],
  [],
  [0x94, 0x04, 0x00, 0x00], // Router Alert (copied)
  [0x01, 0x01, 0x01, 0x01], // NOPs
  [0x1e, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00], // an experimental option, not copied, then NOPs + EOL
];

/**
 * Cases come in blocks of PORT_BLOCK, each with its own 1,000 TCP/UDP source
 * ports (20 blocks, then again): a flow is reused only by nearby cases (a few
 * seconds apart at the send rate) and never again once its block is over.
 * Reused far apart, whether a flow's conntrack entry still lives (TCP CLOSE
 * lasts 10 s, an unanswered UDP flow 30 s) would depend on how fast this
 * machine sent the cases in between, and the two labs could each land on
 * another side of the timeout. (The first block's ports are the ones every
 * case had before: the 300-case corpus is unchanged.)
 */
const PORT_BLOCK = 2000;
const sportBase = (n) => 40000 + (Math.floor(n / PORT_BLOCK) % 20) * 1000;

/**
 * The generated cases: each an array of IPv4 packets (fragments of one
 * datagram, or one packet), every packet with IP id = case number + 1.
 * `ports`: { tcpAllowed, tcpDenied, udpAllowed, udpDenied }.
 */
export function generate(seed, count, src, dst, ports) {
  const r = rng(seed);
  const pick = (a) => a[Math.floor(r() * a.length)];
  const cases = [];
  const s = ipU32(src);
  const d = ipU32(dst);
  for (let n = 0; n < count; n++) {
    const id = (n % 65535) + 1;
    const kind = r();
    const ttl = r() < 0.06 ? pick([0, 1, 2]) : 64;
    const tos = r() < 0.5 ? pick(TOS) : 0;
    const options = new Uint8Array(r() < 0.1 ? pick(OPTIONS) : []);
    const allowed = r() < 0.7;
    let packets;
    let what;
    if (kind < 0.4) {
      const flags = pick(TCP_FLAG_MIXES);
      const opt = [];
      if (r() < 0.5) opt.push(2, 4, 0x05, 0x8a); // MSS 1418
      if (r() < 0.3) opt.push(4, 2); // SACK permitted
      if (r() < 0.3) opt.push(8, 10, 0, 0, 0, 1, 0, 0, 0, 0); // timestamps
      if (r() < 0.3) opt.push(1, 3, 3, 7); // NOP, window scale 7
      while (opt.length % 4) opt.push(0);
      const payLen = r() < 0.5 ? 0 : Math.floor(r() * 1000);
      const thl = 20 + opt.length;
      const l4 = new Uint8Array(thl + payLen);
      put16(l4, 0, sportBase(n) + Math.floor(r() * 1000));
      put16(l4, 2, allowed ? ports.tcpAllowed : ports.tcpDenied);
      put32(l4, 4, Math.floor(r() * 0xffffffff));
      put32(l4, 8, flags & 0x10 ? Math.floor(r() * 0xffffffff) : 0);
      l4[12] = (thl / 4) << 4;
      l4[13] = flags;
      put16(l4, 14, 64240);
      l4.set(opt, 20);
      for (let i = 0; i < payLen; i++) l4[thl + i] = (i * 13 + n) & 0xff;
      packets = [ipv4({ src: s, dst: d, proto: 6, id, ttl, tos, df: true, options, l4 })];
      what = `tcp flags 0x${flags.toString(16)} ${allowed ? 'allowed' : 'denied'} port, ${payLen} bytes`;
    } else if (kind < 0.8) {
      const size = r() < 0.3 ? pick([1400, 1422, 1423, 1500, 3000, 8972, 9000]) : Math.floor(r() * (r() < 0.7 ? 1400 : 9000));
      const l4 = new Uint8Array(8 + size);
      put16(l4, 0, sportBase(n) + Math.floor(r() * 1000));
      put16(l4, 2, allowed ? ports.udpAllowed : ports.udpDenied);
      put16(l4, 4, 8 + size);
      for (let i = 0; i < size; i++) l4[8 + i] = (i * 7 + n) & 0xff;
      const p = ipv4({ src: s, dst: d, proto: 17, id, ttl, tos, df: false, options, l4 });
      packets = fragment(p, MTU);
      what = `udp ${size} bytes (${packets.length} fragment${packets.length > 1 ? 's' : ''}) ${allowed ? 'allowed' : 'denied'} port`;
    } else if (kind < 0.92) {
      const l4 = new Uint8Array(8 + 56);
      l4[0] = 8;
      put16(l4, 4, 0x4000 + (n & 0xfff));
      put16(l4, 6, 1);
      packets = [ipv4({ src: s, dst: d, proto: 1, id, ttl, tos, df: true, options, l4 })];
      what = 'icmp echo request';
    } else {
      // An ICMP error quoting a UDP datagram appA never sent: unrelated.
      const quoted = ipv4({ src: d, dst: s, proto: 17, id: 0x7777, ttl: 63, tos: 0, df: true, options: new Uint8Array(0), l4: new Uint8Array(8) });
      const l4 = new Uint8Array(8 + 28);
      l4[0] = 3;
      l4[1] = 3;
      l4.set(quoted.subarray(0, 28), 8);
      packets = [ipv4({ src: s, dst: d, proto: 1, id, ttl, tos, df: true, options, l4 })];
      what = 'icmp port unreachable (unrelated)';
    }
    cases.push({ n, id, what, ttl, tos, options: options.length, allowed, packets });
  }
  return cases;
}

// ------------------------------------------------------------------ pcap

/** Records of a classic pcap file (tcpdump -w): { ts, bytes } (Ethernet link type). */
export function readPcap(file) {
  const b = fs.readFileSync(file);
  if (b.length < 24) return [];
  const le = b.readUInt32LE(0) === 0xa1b2c3d4 || b.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (o) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const out = [];
  let o = 24;
  while (o + 16 <= b.length) {
    const incl = u32(o + 8);
    if (o + 16 + incl > b.length) break;
    out.push({ ts: u32(o) + u32(o + 4) / 1e6, bytes: new Uint8Array(b.subarray(o + 16, o + 16 + incl)) });
    o += 16 + incl;
  }
  return out;
}

// ------------------------------------------------------------------ one lab

/** The python sender: hex packets on stdin, one per line; raw socket (IP_HDRINCL); paced. */
const SENDER = `import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)
n=0;bad=0
for line in sys.stdin:
  line=line.strip()
  if not line: continue
  b=bytes.fromhex(line)
  dst=socket.inet_ntoa(b[16:20])
  try: s.sendto(b,(dst,0))
  except OSError as e: bad+=1
  n+=1
  if n%10==0: time.sleep(0.016)
print(n,bad)`;

function tcpdumpStart(ns, iface, filter, file, seconds) {
  const c = spawn('ip', ['netns', 'exec', ns, 'timeout', '-s', 'INT', String(seconds), 'tcpdump', '-i', iface, '-Q', 'in', '-U', '-n', '-s', '0', '-w', file, filter], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const ready = new Promise((resolve, reject) => {
    c.stderr.setEncoding('utf8').on('data', (d) => {
      err += d;
      if (/listening on/.test(err)) resolve();
    });
    c.on('close', () => reject(new Error(`tcpdump in ${ns} exited: ${err.slice(0, 300)}`)));
  });
  const done = new Promise((resolve) => c.on('close', resolve));
  return { ready, done, stop: () => c.kill('SIGINT'), pid: c.pid };
}

/**
 * Bring up a lab (`mode` kernel or user) with prefix `prefix`, add the
 * policies, send `cases` from appB to appA, capture, take the lab down.
 * Returns { dst: records at appA's eth0, underlay: records at appA's cell's
 * eth0 (VXLAN in), sendStats, addrs }.
 */
export async function runLab(prefix, mode, makeCases, log = () => {}) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `diffk-${prefix}-`));
  await run(process.execPath, [CLI, 'lab', 'down', '--prefix', prefix], 60_000);
  try {
    log(`${prefix}: lab up --dataplane ${mode}`);
    await silkworm(['lab', 'up', '--prefix', prefix, '--dataplane', mode], 120_000);
    const status = JSON.parse(await silkworm(['lab', 'status', '--prefix', prefix, '--json']));
    const a = status.containers.find((c) => c.app === 'appA');
    const b = status.containers.find((c) => c.app === 'appB');
    await silkworm(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', prefix]);
    await silkworm(['policy', 'add', 'appB', 'appA', '--protocol', 'udp', '--port', '7000', '--lab', prefix]);
    // ICMP errors are rate limited differently (the kernel per destination,
    // icmp_ratelimit 1 s with a burst of 6; silkworm one bucket per cell,
    // 1,000/s, burst 50): lift the kernels' limits in every namespace of the
    // lab and send slower than silkworm's, so that both answer every packet.
    for (const ns of [...status.cells.map((c) => c.netns ?? `${prefix}-${c.name}`), a.netns, b.netns]) {
      await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.icmp_ratelimit=0', 'net.ipv4.icmp_msgs_per_sec=100000', 'net.ipv4.icmp_msgs_burst=100000'], 10_000);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const cases = makeCases(b.ip, a.ip);
    const lines = [];
    for (const c of cases) for (const p of c.packets) lines.push(Buffer.from(p).toString('hex'));
    const seconds = Math.ceil(lines.length / 400) + 30;
    const dstFile = path.join(tmp, 'dst.pcap');
    const ulFile = path.join(tmp, 'underlay.pcap');
    const cellNs = `${prefix}-${a.cell}`;
    const capA = tcpdumpStart(a.netns, 'eth0', `ip and src host ${b.ip}`, dstFile, seconds);
    const capU = tcpdumpStart(cellNs, 'eth0', 'udp dst port 4789', ulFile, seconds);
    const srcFile = path.join(tmp, 'src.pcap');
    const capB = tcpdumpStart(b.netns, 'eth0', 'icmp', srcFile, seconds);
    await Promise.all([capA.ready, capU.ready, capB.ready]);
    log(`${prefix}: sending ${lines.length} packets (${cases.length} cases)`);
    const sent = await run('ip', ['netns', 'exec', b.netns, 'python3', '-c', SENDER], seconds * 1000, lines.join('\n') + '\n');
    await new Promise((r) => setTimeout(r, 2000));
    capA.stop();
    capU.stop();
    capB.stop();
    await Promise.all([capA.done, capU.done, capB.done]);
    return { dst: readPcap(dstFile), underlay: readPcap(ulFile), src: readPcap(srcFile), sent: sent.stdout.trim(), cases, addrs: { a: a.ip, b: b.ip } };
  } finally {
    await run(process.execPath, [CLI, 'lab', 'down', '--prefix', prefix], 60_000);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ comparing

const hex = (b) => Buffer.from(b).toString('hex');

/** Key a captured inner IPv4 packet: its id and fragment offset (ids are case numbers + 1). */
function key(ip) {
  const ff = (ip[6] << 8) | ip[7];
  return `${(ip[4] << 8) | ip[5]}/${(ff & 0x1fff) * 8}`;
}

/**
 * Inner IPv4 packets of a destination frame (Ethernet) or of an underlay
 * frame (Ethernet + outer IPv4 + UDP + VXLAN + inner Ethernet). A UDP
 * aggregate (silkworm's cells send with UDP GSO and receive with GRO, so a
 * capture on a veth can hold several VXLAN datagrams in one) is split back
 * into its datagrams by the inner packets' own lengths, each given the
 * outer headers with its own lengths, as it is on a wire.
 */
function innersOf(rec, underlay, side) {
  const b = rec.bytes;
  if (side === 'src') {
    // An ICMP error back to the sender: keyed by the packet it quotes.
    if (b[12] !== 0x08 || b[13] !== 0 || b.length < 14 + 20 + 8 + 20) return [];
    const hl = (b[14] & 15) * 4;
    if (b[23] !== 1) return [];
    const q = 14 + hl + 8;
    return [{ frame: b, ip: b.subarray(q) }];
  }
  if (!underlay) return b[12] === 0x08 && b[13] === 0 && b.length >= 34 ? [{ frame: b, ip: b.subarray(14) }] : [];
  const ohl = (b[14] & 15) * 4;
  const udp = 14 + ohl;
  const out = [];
  let at = udp + 8;
  while (at + 8 + 14 + 20 <= b.length) {
    const ip = at + 22;
    const tot = (b[ip + 2] << 8) | b[ip + 3];
    const seg = 8 + 14 + tot;
    if (tot < 20 || at + seg > b.length) break;
    const frame = new Uint8Array(udp + 8 + seg);
    frame.set(b.subarray(0, udp + 8));
    frame.set(b.subarray(at, at + seg), udp + 8);
    put16(frame, 16, ohl + 8 + seg);
    put16(frame, udp + 4, 8 + seg);
    out.push({ frame, ip: frame.subarray(udp + 8 + 22) });
    at += seg;
  }
  return out;
}

/**
 * What a byte-level difference is, if it is one written in
 * docs/kernel-differences.md. `k` and `u` are the kernel's and silkworm's
 * bytes of the same packet (or null when one side has none).
 */
function explain(side, k, u, c) {
  if (k && u && side === 'underlay') {
    // Outer UDP checksum: the kernel fills it, silkworm sends 0.
    return null;
  }
  return null;
}

/** Mask what must differ on the underlay: outer IP id and checksum, UDP source port and checksum. */
function maskUnderlay(x) {
  const b = Uint8Array.from(x.frame.subarray(14));
  b[4] = b[5] = 0;
  b[10] = b[11] = 0;
  const ohl = (b[0] & 15) * 4;
  b[ohl] = b[ohl + 1] = 0;
  b[ohl + 6] = b[ohl + 7] = 0;
  return b;
}

/**
 * Compare the two runs: for each side (dst, underlay) every packet by key.
 * Returns { totals, differences: [{ side, key, case, kind, kernel, user, explained }] }.
 */
export function compare(kernel, user) {
  const byId = new Map(kernel.cases.map((c) => [c.id, c]));
  const differences = [];
  const totals = {};
  // On the underlay, only appB's packets are the generated ones, matched by
  // their IP id (the case number). Anything else crossing into appA's cell —
  // the port unreachables appB's cell sends to appA when appA answers a case
  // (with a RST, say) and appB's side has no connection for the answer — has
  // an id of its sender's choosing (the kernel's counter; silkworm's errors
  // 0): keyed by it, a kernel error would be compared with whichever case has
  // that number. Those are counted (totals.underlayOther), not matched.
  const other = { kernel: 0, user: 0 };
  for (const side of ['dst', 'underlay', 'src']) {
    const isU = side === 'underlay';
    const collect = (recs, who, b) => {
      const m = new Map();
      for (const r of recs)
        for (const x of innersOf(r, isU, side)) {
        if (x.ip.length < 20) continue;
        if (isU && ((x.ip[12] << 24) | (x.ip[13] << 16) | (x.ip[14] << 8) | x.ip[15]) >>> 0 !== b) {
          other[who]++;
          continue;
        }
        const k = key(x.ip);
        if (!byId.has(Number(k.split('/')[0]))) continue;
        const list = m.get(k) ?? [];
        list.push(x);
        m.set(k, list);
        }
      return m;
    };
    const km = collect(kernel[side], 'kernel', ipU32(kernel.addrs.b));
    const um = collect(user[side], 'user', ipU32(user.addrs.b));
    let same = 0;
    const keys = new Set([...km.keys(), ...um.keys()]);
    for (const k of keys) {
      const c = byId.get(Number(k.split('/')[0]));
      const kl = km.get(k) ?? [];
      const ul = um.get(k) ?? [];
      const n = Math.max(kl.length, ul.length);
      for (let i = 0; i < n; i++) {
        const a = kl[i];
        const b = ul[i];
        const ka = a ? (isU ? maskUnderlay(a) : a.frame) : null;
        const ub = b ? (isU ? maskUnderlay(b) : b.frame) : null;
        if (ka && ub && hex(ka) === hex(ub)) {
          same++;
          continue;
        }
        const kind = !a ? 'user only' : !b ? 'kernel only' : 'bytes differ';
        const why = classify(side, kind, a, b, c);
        differences.push({ side, key: k, case: c.n, what: c.what, kind, explained: why, kernel: ka ? hex(ka) : null, user: ub ? hex(ub) : null });
      }
    }
    totals[side] = { kernel: [...km.values()].reduce((s, l) => s + l.length, 0), user: [...um.values()].reduce((s, l) => s + l.length, 0), identical: same };
  }
  totals.underlayOther = { kernel: other.kernel, user: other.user, identical: null };
  if (other.kernel !== other.user) {
    differences.push({ side: 'underlay', key: 'not-from-appB', case: -1, what: 'packets not from appB (counted, not matched)', kind: 'count differs', explained: null, kernel: String(other.kernel), user: String(other.user) });
  }
  return { totals, differences };
}

/**
 * The deliberate differences (docs/kernel-differences.md), recognised from
 * the bytes; anything else is unexplained (null).
 */
function classify(side, kind, a, b, c) {
  if (kind === 'bytes differ') {
    // Only the outer UDP checksum / DS byte? (ids, ports and checksums are masked already)
    const x = side === 'underlay' ? maskUnderlay(a) : a.frame;
    const y = side === 'underlay' ? maskUnderlay(b) : b.frame;
    const diffs = [];
    for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) diffs.push(i);
    return explainBytes(side, diffs, x, y, c);
  }
  return explain(side, kind === 'kernel only' ? a : null, kind === 'user only' ? b : null, c);
}

function explainBytes(side, diffs, x, y, c) {
  if (side === 'src') {
    // An ICMP error: silkworm quotes the header + 8 bytes (RFC 792) where the
    // kernel quotes up to 576 bytes in all (RFC 1812 4.3.2.3), and sends it
    // with DF and id 0 (RFC 6864 atomic) where the kernel sends DF clear and
    // an id of its own. Masked: total length, id, flags, both checksums, and
    // the quote past header + 8.
    const hl = (x[14] & 15) * 4;
    const qhl = (x[14 + hl + 8] & 15) * 4;
    const end = 14 + hl + 8 + qhl + 8;
    // Also the quoted TTL and header checksum: the kernel's REJECT runs in
    // FORWARD, after ip_forward's TTL decrement, and quotes that; silkworm
    // quotes the header as it arrived.
    const q = 14 + hl + 8;
    const masked = new Set([16, 17, 18, 19, 20, 21, 24, 25, 14 + hl + 2, 14 + hl + 3, q + 8, q + 10, q + 11]);
    if (diffs.every((i) => i >= end || masked.has(i)) && x.length >= end && y.length >= end) return 'icmp-error-quote';
  }
  return null;
}

/** A short text report. */
export function report(result, seed, count) {
  const lines = [];
  lines.push(`differential run: seed ${seed}, ${count} cases`);
  for (const [side, t] of Object.entries(result.totals)) {
    if (side === 'underlayOther') lines.push(`  underlay, not from appB (counted, not matched): kernel ${t.kernel} packets, user ${t.user}`);
    else lines.push(`  ${side}: kernel ${t.kernel} packets, user ${t.user}, identical ${t.identical}`);
  }
  const groups = new Map();
  for (const d of result.differences) {
    const g = `${d.side} ${d.kind}: ${d.explained ?? 'UNEXPLAINED'} — ${d.what.replace(/\d+ bytes/g, 'N bytes').replace(/0x[0-9a-f]+/, 'F')}`;
    const e = groups.get(g) ?? { n: 0, first: d };
    e.n++;
    groups.set(g, e);
  }
  const unexplained = result.differences.filter((d) => !d.explained).length;
  lines.push(`  differences: ${result.differences.length}, unexplained ${unexplained}`);
  for (const [g, e] of [...groups].sort((p, q) => q[1].n - p[1].n)) lines.push(`    ${e.n} × ${g} (first: case ${e.first.case}, key ${e.first.key})`);
  return lines.join('\n');
}
