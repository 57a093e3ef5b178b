// Inner-flow steering in the kernel (root only): the two programs of
// native/steer.cc must send every packet where src/dataplane/steer.ts says.
//
// (a) A multi-queue TAP (2 and 3 queues) opened through the addon, steered
//     with steerTap and moved into a "container" namespace with addresses (as
//     scripts/steer-experiment/run.sh does). The container's kernel sends TCP
//     SYNs, UDP datagrams (small and fragmented), pings, a TCP RST, an ICMP
//     port unreachable quoting UDP and an ICMP time exceeded quoting TCP (it
//     forwards a TTL-1 segment written into the TAP); every frame read must
//     come from queue steerWorkerOfFrame(frame, n).
// (b) N UdpUnderlays with reusePort bound to 198.18.13.1:4789 in a cell
//     namespace, steer(n) on the first after all are bound; a peer namespace
//     sends VXLAN datagrams (TCP both ways, UDP, ICMP errors quoting TCP and
//     UDP, fragments, echo replies, ARP) from four source ports; each must
//     reach socket index (= bind order) steerWorkerOfFrame(inner frame, n).
//     Without reusePort a second bind still fails with EADDRINUSE.
//
// Everything lives in namespaces this file makes (swst<pid>-…; underlay
// 198.18.13.0/24, overlay 10.255.0.0/16 inside the container namespaces
// only) and is removed in afterAll. The only thing ever in the root namespace
// is a just-opened TAP without address, moved into a test namespace at once.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameBatch } from '../../src/dataplane/batch.js';
import { steerWorkerOfFrame } from '../../src/dataplane/steer.js';
import { loadNative, nativeAvailable, type TapHandle } from '../../src/io/native.js';
import { TapDevice, steerQueues } from '../../src/io/tap.js';
import { ipToU32 } from '../../src/util/ip.js';
import { ipPacket, vxlanPayload, type L4 } from '../helpers/packets.js';
import { asFragment, icmpErrorPacket } from '../helpers/packets-extra.js';
import { NetnsSet } from '../helpers/netns-set.js';
import { until } from '../helpers/until.js';

const isRoot = process.getuid?.() === 0;
const ROOT = resolve(import.meta.dirname, '../..');
const canRun = isRoot && existsSync('/dev/net/tun') && nativeAvailable() && loadNative().steerTap !== undefined;
const skipReason = !isRoot ? 'needs root' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : 'the native addon is not built (npm run build:native)';
if (!canRun) console.log(`steer e2e skipped: ${skipReason}`);

const P = `swst${process.pid}`;
const NETNS_DIR = '/var/run/netns';
const NS_A = `${P}-a`; // the cell's underlay
const NS_B = `${P}-b`; // a peer cell
const UNDERLAY_A = '198.18.13.1';
const UNDERLAY_B = '198.18.13.2';
const VIEW_NODE = join(ROOT, 'node_modules/.bin/vite-node');

const TAP_MAC = '02:00:00:00:00:01'; // the container's eth0
const GW_MAC = '02:00:00:00:00:fe'; // the cell side, as the container's permanent neighbor
const GW_IP = '10.255.255.254';
const C_IPS = ['10.255.0.1', '10.255.0.2', '10.255.0.3', '10.255.0.4'];

const nets = new NetnsSet();
const ip = (...args: string[]) => nets.ip(...args);
const inNs = (ns: string, cmd: string[], timeout?: number) => nets.exec(ns, cmd, timeout);
let tmp = '';

function macBytes(mac: string): number[] {
  return mac.split(':').map((h) => parseInt(h, 16));
}
function ether(dst: string, src: string, ipPkt: Uint8Array, etherType = 0x0800): Uint8Array {
  const f = new Uint8Array(14 + ipPkt.length);
  f.set([...macBytes(dst), ...macBytes(src), etherType >> 8, etherType & 255], 0);
  f.set(ipPkt, 14);
  return f;
}
const tcp = (sport: number, dport: number, flags = 0x02, ttl = 64): L4 => ({ proto: 'tcp', sport, dport, flags, ttl });
const udp = (sport: number, dport: number, len = 16): L4 => ({ proto: 'udp', sport, dport, payload: new Uint8Array(len).fill(0x5a) });

// --- (a) the TAP --------------------------------------------------------------

/** What a frame the container sent is, for the "every kind was seen" check. */
function kindOf(f: Uint8Array): string {
  if (f.length < 34 || f[12] !== 8 || f[13] !== 0) return 'other';
  const frag = ((f[20]! << 8) | f[21]!) & 0x3fff;
  const proto = f[23]!;
  const l4 = 14 + (f[14]! & 15) * 4;
  if (frag !== 0) return 'fragment';
  if (proto === 6) return (f[l4 + 13]! & 0x04) !== 0 ? 'tcp-rst' : (f[l4 + 13]! & 0x02) !== 0 ? 'tcp-syn' : 'tcp';
  if (proto === 17) return 'udp';
  if (proto === 1) {
    const t = f[l4]!;
    if (t === 8) return 'echo';
    if (t === 3 || t === 11) return `icmp${t}-quoting-${f[l4 + 8 + 9] === 6 ? 'tcp' : f[l4 + 8 + 9] === 17 ? 'udp' : 'other'}`;
    return `icmp${t}`;
  }
  return 'other';
}

/** Configure TAP `dev` (already in `ns`) as the container's eth0 (as the experiment's cfg-tap.sh). */
function setUpContainer(dev: string, ns: string): void {
  // No ICMP rate limit (the test counts ICMP errors); forwarding on, so a TTL-1 segment makes an ICMP time exceeded.
  inNs(ns, ['sysctl', '-qw', 'net.ipv4.icmp_ratelimit=0', 'net.ipv4.icmp_msgs_per_sec=100000', 'net.ipv4.ip_forward=1',
    'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
  ip('-n', ns, 'link', 'set', 'dev', dev, 'address', TAP_MAC, 'up');
  for (const a of C_IPS) ip('-n', ns, 'addr', 'add', `${a}/32`, 'dev', dev);
  ip('-n', ns, 'route', 'add', `${GW_IP}/32`, 'dev', dev);
  ip('-n', ns, 'neigh', 'add', GW_IP, 'lladdr', GW_MAC, 'dev', dev, 'nud', 'permanent');
  ip('-n', ns, 'route', 'add', '10.255.0.0/16', 'via', GW_IP, 'dev', dev);
}

/** The container's own traffic: TCP SYNs to closed peers, UDP (32 and 3000 bytes: fragments), to several peers and ports. */
const CONTAINER_SCRIPT = `
const net = require('net'), dgram = require('dgram');
const flows = JSON.parse(process.argv[1]);
let pending = 0;
for (const f of flows) {
  if (f.proto === 'tcp') {
    const s = net.connect({ host: f.peer, port: f.dport, localAddress: f.local, localPort: f.sport });
    s.on('error', () => {});
    setTimeout(() => s.destroy(), 300);
  } else {
    pending++;
    const u = dgram.createSocket('udp4');
    u.bind(f.sport, f.local, () => {
      u.send(Buffer.alloc(32, 1), f.dport, f.peer, () => u.send(Buffer.alloc(3000, 2), f.dport, f.peer, () => { u.close(); pending--; }));
    });
  }
}
setTimeout(() => process.exit(pending === 0 ? 0 : 2), 500);
`;

interface Got {
  queue: number;
  frame: Uint8Array;
}

async function tapCase(n: number, mode: 'adopt' | 'attach', ns: string, dev: string): Promise<void> {
  const native = loadNative();
  const devices: TapDevice[] = [];
  const handles: TapHandle[] = [];
  const got: Got[] = [];
  try {
    if (mode === 'adopt') {
      // The main thread's way: open n queues (plain frames), hand each fd to a TapDevice that does not own it.
      for (let q = 0; q < n; q++) handles.push(native.openTap(dev, { multiQueue: true, vnetHdr: false }));
      for (const h of handles) devices.push(TapDevice.adopt({ ...h, vnetHdr: false }, { batch: 64 }));
      expect(devices[0]!.handle()).toEqual({ fd: handles[0]!.fd, name: dev, tso: false, vnetHdr: false });
      steerQueues(handles[0]!.fd, n);
      ip('link', 'set', 'dev', dev, 'netns', ns);
      setUpContainer(dev, ns);
    } else {
      // Queue 0 created here (with the cell's default offloads), moved, the others attached inside the
      // namespace; steered once all are there, link up last.
      devices.push(TapDevice.create(dev, { multiQueue: true, batch: 64 }));
      ip('link', 'set', 'dev', dev, 'netns', ns);
      for (let q = 1; q < n; q++) devices.push(TapDevice.attach(join(NETNS_DIR, ns), dev, { multiQueue: true, batch: 64 }));
      devices[0]!.steer(n);
      setUpContainer(dev, ns);
      // A device that exists with multi-queue refuses a single-queue open, and says why.
      expect(() => TapDevice.attach(join(NETNS_DIR, ns), dev, { batch: 4 })).toThrow(`TAP ${dev} exists with multi-queue`);
    }
    devices.forEach((d, q) => d.start((b: FrameBatch) => {
      for (let i = 0; i < b.count; i++) got.push({ queue: q, frame: b.slab.slice(b.inOff(i), b.inOff(i) + b.len[i]!) });
    }));

    // 1. The container's own flows.
    const flows: { proto: string; local: string; peer: string; sport: number; dport: number }[] = [];
    for (let i = 0; i < 16; i++) {
      const local = C_IPS[i % C_IPS.length]!;
      const peer = `10.255.${1 + (i % 3)}.${10 + i}`;
      flows.push({ proto: 'tcp', local, peer, sport: 20000 + 37 * i, dport: 1000 + 101 * i });
      flows.push({ proto: 'udp', local, peer, sport: 30000 + 41 * i, dport: 2000 + 103 * i });
    }
    inNs(ns, [process.execPath, '-e', CONTAINER_SCRIPT, JSON.stringify(flows)]);
    // 2. Pings to several peers (no reply: only the requests matter).
    try {
      inNs(ns, ['sh', '-c', C_IPS.map((src, i) => `ping -n -q -c 1 -W 0.3 -I ${src} 10.255.${7 + i}.${20 + i} >/dev/null 2>&1 &`).join(' ') + ' wait']);
    } catch {
      /* no replies: ping exits 1 */
    }
    // 3. Frames written into the TAP that the container's kernel answers: a SYN to a closed port (RST), a
    //    UDP datagram to a closed port (ICMP port unreachable quoting it), a TTL-1 SYN to be forwarded
    //    (ICMP time exceeded quoting the TCP header). Written frames themselves are not steered.
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) {
      const peer = `10.255.${4 + (i % 2)}.${30 + i}`;
      const local = C_IPS[i % C_IPS.length]!;
      frames.push(ether(TAP_MAC, GW_MAC, ipPacket(peer, local, tcp(40000 + 13 * i, 9 + i))));
      frames.push(ether(TAP_MAC, GW_MAC, ipPacket(peer, local, udp(5300 + i, 7 + i))));
      frames.push(ether(TAP_MAC, GW_MAC, ipPacket(peer, `10.255.6.${40 + i}`, tcp(41000 + 17 * i, 443, 0x02, 1))));
    }
    const slab = new Uint8Array(frames.length * 128);
    const offs = new Uint32Array(frames.length);
    const lens = new Uint32Array(frames.length);
    frames.forEach((f, k) => {
      offs[k] = k * 128;
      lens[k] = f.length;
      slab.set(f, k * 128);
    });
    expect(devices[n - 1]!.write(slab, offs, lens, frames.length)).toBe(frames.length);

    const want: Record<string, number> = {
      'tcp-syn': 16,
      udp: 16,
      fragment: 2 * 16, // at least two fragments per 3000-byte datagram
      echo: 4,
      'tcp-rst': 8,
      'icmp3-quoting-udp': 8,
      'icmp11-quoting-tcp': 8,
    };
    const counts = (): Record<string, number> => {
      const c: Record<string, number> = {};
      for (const g of got) c[kindOf(g.frame)] = (c[kindOf(g.frame)] ?? 0) + 1;
      return c;
    };
    const complete = (): boolean => Object.entries(want).every(([k, v]) => (counts()[k] ?? 0) >= v);
    await until(complete, 8000).catch(() => undefined); // what is missing shows below
    await new Promise((r) => setTimeout(r, 100));
    const c = counts();
    const perQueue = Array.from({ length: n }, (_, q) => got.filter((g) => g.queue === q).length);
    console.log(`TAP with ${n} queues (${mode}): ${got.length} frames, per queue ${JSON.stringify(perQueue)}, kinds ${JSON.stringify(c)}`);
    for (const [k, v] of Object.entries(want)) expect(c[k] ?? 0, `frames of kind ${k}`).toBeGreaterThanOrEqual(v);

    // Every frame on the queue the reference names.
    const wrong = got.filter((g) => steerWorkerOfFrame(g.frame, 0, g.frame.length, n) !== g.queue);
    expect(wrong.map((g) => `${kindOf(g.frame)} on queue ${g.queue}, expected ${steerWorkerOfFrame(g.frame, 0, g.frame.length, n)}`)).toEqual([]);
    expect(perQueue.filter((x) => x > 0).length).toBe(n);
  } finally {
    for (const d of devices) d.close();
    for (const h of handles) native.closeFd(h.fd);
  }
}

// --- (b) the UDP group ----------------------------------------------------------

/** The cell side: n UdpUnderlays with reusePort on UNDERLAY_A:4789, steer(n), then every datagram's socket index. */
const CELL_SCRIPT = `import { readFileSync, writeFileSync } from 'node:fs';
import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { ipToU32 } from ${JSON.stringify(join(ROOT, 'src/util/ip.js'))};
const [n, expected, readyFile, resultFile] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]!, process.argv[5]!];
const A = ipToU32(${JSON.stringify(UNDERLAY_A)});
const errors: Record<string, string> = {};
const socks = Array.from({ length: n }, () => UdpUnderlay.open({ bindIp: A, port: 4789, reusePort: true, gso: false }));
// The existing contract: without reusePort a socket neither joins the group nor shares a port.
try { UdpUnderlay.open({ bindIp: A, port: 4789, gso: false }).close(); errors.joinWithout = 'bound'; } catch (e) { errors.joinWithout = (e as Error).message; }
const lone = UdpUnderlay.open({ bindIp: A, port: 4790, gso: false });
try { UdpUnderlay.open({ bindIp: A, port: 4790, gso: false }).close(); errors.second = 'bound'; } catch (e) { errors.second = (e as Error).message; }
try { lone.steer(n); errors.steerLone = 'attached'; } catch (e) { errors.steerLone = (e as Error).message; }
try { socks[0]!.steer(1); errors.steerOne = 'attached'; } catch (e) { errors.steerOne = (e as Error).message; }
lone.close();
socks[0]!.steer(n);
const got: string[][] = socks.map(() => []);
let total = 0;
socks.forEach((s, i) => s.start((b) => {
  for (let k = 0; k < b.count; k++) got[i]!.push(Buffer.from(b.slab.subarray(b.inOff(k), b.inOff(k) + b.len[k]!)).toString('hex'));
  total += b.count;
}));
writeFileSync(readyFile, 'ready');
const t0 = Date.now();
const poll = setInterval(() => {
  if (total >= expected || Date.now() - t0 > 8000) {
    clearInterval(poll);
    setTimeout(() => {
      writeFileSync(resultFile, JSON.stringify({ got, errors }));
      for (const s of socks) s.close();
      process.exit(0);
    }, 150);
  }
}, 10);
setTimeout(() => process.exit(3), 15000);
`;

/** The peer: every payload from one of four source ports (round robin) to UNDERLAY_A:4789, one after another. */
const PEER_SCRIPT = `
const dgram = require('dgram');
const payloads = require('fs').readFileSync(process.argv[1], 'utf8').trim().split('\\n');
const socks = [0, 1, 2, 3].map(() => dgram.createSocket('udp4'));
let bound = 0, i = 0;
const next = () => {
  if (i === payloads.length) { socks.forEach((s) => s.close()); return; }
  const p = Buffer.from(payloads[i], 'hex');
  socks[i % 4].send(p, 4789, ${JSON.stringify(UNDERLAY_A)}, next);
  i++;
};
socks.forEach((s, k) => s.bind(40000 + 1111 * k, ${JSON.stringify(UNDERLAY_B)}, () => { if (++bound === 4) next(); }));
setTimeout(() => process.exit(3), 10000).unref();
`;

/** Inner IPv4 packets of many flows, both directions, of every kind the programs tell apart. */
function innerPackets(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < 30; i++) {
    const a = `10.255.1.${2 + (i % 5)}`;
    const b = `10.255.2.${3 + i}`;
    const sp = 20000 + 211 * i;
    const dp = 80 + 7 * i;
    const seg = ipPacket(a, b, tcp(sp, dp));
    out.push(seg);
    out.push(ipPacket(b, a, tcp(dp, sp, 0x12)));
    out.push(ipPacket(b, a, udp(dp + 1, sp + 1)));
    out.push(icmpErrorPacket(`10.255.9.${1 + i}`, a, 11, 0, seg)); // time exceeded from a router, quoting TCP
    out.push(icmpErrorPacket(b, a, 3, 3, ipPacket(a, b, udp(sp + 1, dp + 1)))); // port unreachable quoting UDP
    out.push(asFragment(ipPacket(b, a, udp(dp + 2, sp + 2, 64)), 0x2000)); // a first fragment (has the UDP header)
    out.push(asFragment(ipPacket(b, a, udp(dp + 3, sp + 3, 64)), 0x0009)); // a later fragment
    out.push(asFragment(ipPacket(b, a, tcp(dp, sp, 0x10)), 0x2000)); // a TCP first fragment: addresses only
    out.push(ipPacket(b, a, { proto: 'icmp', icmpType: 0, echoId: i }));
  }
  return out;
}

async function udpCase(n: number): Promise<void> {
  const script = join(tmp, 'cell.ts');
  writeFileSync(script, CELL_SCRIPT);
  const payloads = innerPackets().map((p, k) => vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: k & 0xffff, inner: p }));
  // An ARP frame inside VXLAN: not IPv4, so socket 0.
  const arp = vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: 7, inner: new Uint8Array(28).fill(1) });
  arp[20] = 0x08;
  arp[21] = 0x06;
  payloads.push(arp);
  const hexes = payloads.map((p) => Buffer.from(p).toString('hex'));
  expect(new Set(hexes).size).toBe(hexes.length); // each datagram is unique, so where it went is unambiguous
  const list = join(tmp, `payloads-${n}.txt`);
  writeFileSync(list, hexes.join('\n') + '\n');
  const ready = join(tmp, `ready-${n}`);
  const result = join(tmp, `result-${n}.json`);

  const child = spawn('ip', ['netns', 'exec', NS_A, VIEW_NODE, script, String(n), String(hexes.length), ready, result], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    await until(() => existsSync(ready) || child.exitCode !== null, 20_000).catch(() => {
      throw new Error(`cell child not ready: ${stderr}`);
    });
    expect(existsSync(ready), `cell child failed: ${stderr}`).toBe(true);
    inNs(NS_B, [process.execPath, '-e', PEER_SCRIPT.replace('process.argv[1]', JSON.stringify(list))]);
    const code = await exited;
    expect(code, stderr).toBe(0);
  } finally {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  const r = JSON.parse(readFileSync(result, 'utf8')) as { got: string[][]; errors: Record<string, string> };

  expect(r.errors.joinWithout).toMatch(/already in use/);
  expect(r.errors.second).toMatch(/already in use/);
  expect(r.errors.steerLone).toMatch(/SO_ATTACH_REUSEPORT_CBPF.*reusePort/);
  expect(r.errors.steerOne).toMatch(/n must be from 2 to 64/);

  const where = new Map<string, number[]>();
  r.got.forEach((list2, idx) => list2.forEach((h) => where.set(h, [...(where.get(h) ?? []), idx])));
  const perSocket = r.got.map((g) => g.length);
  console.log(`reuseport group of ${n}: ${hexes.length} datagrams sent, per socket ${JSON.stringify(perSocket)}`);
  const problems: string[] = [];
  hexes.forEach((h, k) => {
    const p = payloads[k]!;
    const want = steerWorkerOfFrame(p, 8, p.length - 8, n);
    const at = where.get(h) ?? [];
    if (at.length !== 1 || at[0] !== want) problems.push(`datagram ${k}: on sockets ${JSON.stringify(at)}, expected ${want}`);
  });
  expect(problems).toEqual([]);
  expect(perSocket.reduce((s, x) => s + x, 0)).toBe(hexes.length);
  expect(perSocket.filter((x) => x > 0).length).toBe(n);
}

describe.skipIf(!canRun)('kernel steering of inner flows (root, network namespaces)', () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), `${P}-`));
    for (const ns of [NS_A, NS_B, `${P}-c2`, `${P}-c3`]) nets.add(ns);
    nets.veth(`${P}a`, NS_A, UNDERLAY_A, `${P}b`, NS_B, UNDERLAY_B);
  });

  afterAll(() => {
    nets.removeAll();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('TAP with 2 queues (opened by the addon, adopted, steerQueues): every frame the container sends on its queue', async () => {
    await tapCase(2, 'adopt', `${P}-c2`, `${P}t2`);
  }, 60_000);

  it('TAP with 3 queues (TapDevice.create + attach in the namespace, default offloads): every frame on its queue', async () => {
    await tapCase(3, 'attach', `${P}-c3`, `${P}t3`);
  }, 60_000);

  it('a TAP opened without multi-queue refuses a multi-queue open, and says so', () => {
    const native = loadNative();
    const h = native.openTap(`${P}s`, { vnetHdr: false });
    try {
      ip('link', 'set', 'dev', `${P}s`, 'netns', `${P}-c2`);
      expect(() => native.openTapInNetns(join(NETNS_DIR, `${P}-c2`), `${P}s`, { multiQueue: true })).toThrow(`TAP ${P}s exists without multi-queue`);
      expect(() => native.steerTap!(h.fd, 65)).toThrow(RangeError);
    } finally {
      native.closeFd(h.fd);
    }
  });

  it('reuseport group of 2: every VXLAN datagram on the socket of its inner flow; no reusePort, no sharing', async () => {
    await udpCase(2);
  }, 60_000);

  it('reuseport group of 3: every VXLAN datagram on the socket of its inner flow', async () => {
    await udpCase(3);
  }, 60_000);
});
