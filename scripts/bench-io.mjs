#!/usr/bin/env node
// Micro-benchmark of the native I/O layer alone (no pipeline): how many
// packets per second the raw-socket sendmmsg path and the recvmmsg receiver
// move between two namespaces over a veth pair, and how many frames per second
// a TAP accepts and delivers. Root only. Everything lives in namespaces named
// swbench<pid>-*, underlay addresses come from 198.19.0.0/16 (inside the
// benchmarking range 198.18.0.0/15); all of it is removed on exit.
//
//   sudo node scripts/bench-io.mjs [--seconds 3] [--size 1400] [--batch 64]
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const seconds = Number(arg('seconds', '3'));
const size = Number(arg('size', '1400'));
const batch = Number(arg('batch', '64'));
const role = arg('role', 'main');
const SUB = arg('subnet', `198.19.${process.pid % 250}`);
const ipU32 = (s) => s.split('.').reduce((a, b) => a * 256 + Number(b), 0) >>> 0;

function native() {
  return require(join(root, 'build/Release/silkworm_native.node'));
}

function ipv4Udp(src, dst, sport, dport, payloadLen) {
  const total = 28 + payloadLen;
  const p = new Uint8Array(total);
  p.set([0x45, 0, total >> 8, total & 255, 0, 0, 0x40, 0, 64, 17, 0, 0]);
  const s = ipU32(src), d = ipU32(dst);
  p.set([s >>> 24, (s >>> 16) & 255, (s >>> 8) & 255, s & 255, d >>> 24, (d >>> 16) & 255, (d >>> 8) & 255, d & 255], 12);
  p.set([sport >> 8, sport & 255, dport >> 8, dport & 255, (8 + payloadLen) >> 8, (8 + payloadLen) & 255, 0, 0], 20);
  return p;
}

async function recvRole() {
  const n = native();
  const slot = 2048;
  const slab = new Uint8Array(batch * slot);
  const lens = new Uint32Array(batch), ips = new Uint32Array(batch), ports = new Uint16Array(batch);
  let frames = 0, bytes = 0;
  const r = new n.UdpReceiver(ipU32(`${SUB}.2`), 4789, slab, slot, 64, batch, lens, ips, ports, (c) => {
    frames += c;
    for (let i = 0; i < c; i++) bytes += lens[i];
  });
  r.start();
  console.log('ready');
  let t0 = 0;
  let f0 = 0;
  // Measure from the first datagram so process start-up does not count.
  const wait = setInterval(() => {
    if (frames > 0 && t0 === 0) {
      t0 = performance.now();
      f0 = frames;
      clearInterval(wait);
      setTimeout(() => {
        const dt = (performance.now() - t0) / 1000;
        console.log(JSON.stringify({ rxPps: Math.round((frames - f0) / dt), rxMbit: Math.round(((bytes * 8) / dt) / 1e6), counters: r.counters() }));
        r.close();
      }, seconds * 1000);
    }
  }, 1);
}

async function sendRole() {
  const n = native();
  const fd = n.openRawSocket();
  const slot = 2048;
  const slab = new Uint8Array(batch * slot);
  const offs = new Uint32Array(batch), lens = new Uint32Array(batch), dsts = new Uint32Array(batch).fill(ipU32(`${SUB}.2`));
  for (let i = 0; i < batch; i++) {
    const p = ipv4Udp(`${SUB}.1`, `${SUB}.2`, 40000 + i, 4789, size - 28);
    offs[i] = i * slot + 64;
    lens[i] = p.length;
    slab.set(p, offs[i]);
  }
  let sent = 0, full = 0;
  const end = performance.now() + seconds * 1000 + 500;
  const t0 = performance.now();
  // setImmediate between batches so the loop stays live, as the cell's would.
  await new Promise((done) => {
    const tick = () => {
      for (let k = 0; k < 8; k++) {
        const r = n.sendBatch(fd, slab, offs, lens, dsts, batch);
        if (r > 0) sent += r;
        else full++;
      }
      if (performance.now() < end) setImmediate(tick);
      else done();
    };
    tick();
  });
  const dt = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ txPps: Math.round(sent / dt), eagainCalls: full }));
  n.closeFd(fd);
}

async function tapRole() {
  // In a container namespace: the TAP's fd writes frames the container receives; the container's
  // replies (ICMP echo) come back through the reader. Measures the TAP round trip in frames/s.
  const n = native();
  const ns = arg('ns');
  const name = `swbt${process.pid % 100000}`;
  const h = n.openTap(name, {});
  execFileSync('ip', ['link', 'set', name, 'netns', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', name, 'address', 'ee:ee:0a:09:00:01', 'arp', 'off', 'up']);
  execFileSync('ip', ['-n', ns, 'addr', 'add', '10.9.0.1/24', 'dev', name]);
  execFileSync('ip', ['-n', ns, 'neigh', 'add', '10.9.0.2', 'lladdr', 'aa:aa:0a:09:00:01', 'dev', name, 'nud', 'permanent']);
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.icmp_ratelimit=0', 'net.ipv4.icmp_echo_ignore_broadcasts=1']);
  const slot = 2048;
  const slab = new Uint8Array(batch * slot), inLens = new Uint32Array(batch);
  let replies = 0;
  const reader = new n.TapReader(h.fd, slab, slot, 64, batch, inLens, (c) => (replies += c), (e) => console.error('tap error', e));
  reader.start();
  // ICMP echo requests 10.9.0.2 -> 10.9.0.1, payload size-28.
  const out = new Uint8Array(batch * slot), offs = new Uint32Array(batch), lens = new Uint32Array(batch);
  for (let i = 0; i < batch; i++) {
    const ipPkt = ipv4Udp('10.9.0.2', '10.9.0.1', 0, 0, size - 28);
    ipPkt[9] = 1;
    ipPkt[6] = 0x40;
    let s = 0;
    for (let j = 0; j < 20; j += 2) s += (ipPkt[j] << 8) | ipPkt[j + 1];
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    ipPkt[10] = (~s >> 8) & 255;
    ipPkt[11] = ~s & 255;
    const icmp = ipPkt.subarray(20);
    icmp.fill(0, 0, 8);
    icmp[0] = 8;
    icmp[7] = i;
    s = 0;
    for (let j = 0; j < icmp.length; j += 2) s += (icmp[j] << 8) | (icmp[j + 1] ?? 0);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    icmp[2] = (~s >> 8) & 255;
    icmp[3] = ~s & 255;
    offs[i] = i * slot + 64;
    lens[i] = 14 + ipPkt.length;
    out.set([0xee, 0xee, 10, 9, 0, 1, 0xaa, 0xaa, 10, 9, 0, 1, 8, 0], offs[i]);
    out.set(ipPkt, offs[i] + 14);
  }
  let written = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await new Promise((done) => {
    const tick = () => {
      // Keep at most a few batches in flight so the TAP queue (500 frames) does not overflow.
      if (written - replies < 4 * batch) {
        const r = n.writeFrames(h.fd, out, offs, lens, batch);
        if (r > 0) written += r;
      }
      if (performance.now() < end) setImmediate(tick);
      else setTimeout(done, 200);
    };
    tick();
  });
  const dt = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ tapWrittenPps: Math.round(written / dt), tapRepliesPps: Math.round(replies / dt), reader: reader.counters() }));
  reader.close();
  n.closeFd(h.fd);
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('bench-io needs root (network namespaces, TAP, raw socket)');
  const P = `swbench${process.pid}`;
  const made = [];
  const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
  const cleanup = () => {
    for (const ns of made) {
      try {
        ip('netns', 'del', ns);
      } catch {
        /* gone */
      }
    }
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    for (const s of ['a', 'b', 'c']) {
      ip('netns', 'add', `${P}-${s}`);
      made.push(`${P}-${s}`);
      ip('-n', `${P}-${s}`, 'link', 'set', 'lo', 'up');
    }
    ip('link', 'add', `${P}a`, 'netns', `${P}-a`, 'type', 'veth', 'peer', 'name', `${P}b`, 'netns', `${P}-b`);
    ip('-n', `${P}-a`, 'addr', 'add', `${SUB}.1/24`, 'dev', `${P}a`);
    ip('-n', `${P}-b`, 'addr', 'add', `${SUB}.2/24`, 'dev', `${P}b`);
    ip('-n', `${P}-a`, 'link', 'set', `${P}a`, 'up');
    ip('-n', `${P}-b`, 'link', 'set', `${P}b`, 'up');
    execFileSync('ip', ['netns', 'exec', `${P}-a`, 'ping', '-c1', '-W2', `${SUB}.2`], { stdio: 'ignore' });

    const self = fileURLToPath(import.meta.url);
    const common = ['--seconds', String(seconds), '--size', String(size), '--batch', String(batch), '--subnet', SUB];
    const recv = spawn('ip', ['netns', 'exec', `${P}-b`, process.execPath, self, '--role', 'recv', ...common]);
    let rout = '';
    recv.stdout.on('data', (d) => (rout += d));
    recv.stderr.pipe(process.stderr);
    while (!rout.includes('ready')) await new Promise((r) => setTimeout(r, 20));
    const sout = execFileSync('ip', ['netns', 'exec', `${P}-a`, process.execPath, self, '--role', 'send', ...common], { encoding: 'utf8' });
    await new Promise((r) => recv.on('exit', r));
    const rx = JSON.parse(rout.trim().split('\n').pop());
    const tx = JSON.parse(sout.trim().split('\n').pop());
    const tap = JSON.parse(execFileSync(process.execPath, [self, '--role', 'tap', '--ns', `${P}-c`, ...common], { encoding: 'utf8' }).trim().split('\n').pop());
    console.log(JSON.stringify({ seconds, size, batch, underlay: { ...tx, ...rx }, tap }, null, 2));
  } finally {
    cleanup();
  }
}

const roles = { main, recv: recvRole, send: sendRole, tap: tapRole };
roles[role]().catch((err) => {
  console.error(`bench-io: ${err.message}`);
  process.exit(1);
});
