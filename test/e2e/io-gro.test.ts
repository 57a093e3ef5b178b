// TapDevice with vnetHdr against a real kernel TCP stack (root only): a TAP
// moved into namespace gro<pid> where a node TCP server listens. The test
// plays the remote peer by hand — SYN, then the ACK and 20 in-order data
// segments plus one ICMP echo request in ONE TapDevice.write() — and checks
// that the server got the exact byte stream, that the segments crossed as one
// GSO super-frame (one rx packet on the device; tcpdump inside the namespace
// shows a frame longer than the MTU), that the frame that cannot be merged
// still arrives (its echo reply comes back), and that the reader strips the
// virtio_net_hdr (the SYN-ACK and replies start with the Ethernet header).
// Everything lives in the namespace, which afterAll deletes.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameBatch } from '../../src/dataplane/batch.js';
import { TapDevice } from '../../src/io/tap.js';

const isRoot = process.getuid?.() === 0;
const canRun = isRoot && existsSync('/dev/net/tun');

const P = `gro${process.pid}`;
const NS = `${P}-c`;
const TAP = `${P}t`;
const C_IP = [10, 255, 1, 2];
const PEER_IP = [10, 255, 2, 3];
const C_MAC = [0xee, 0xee, 10, 255, 1, 2];
const HOST_MAC = [0xaa, 0xaa, 10, 255, 1, 2];
const PORT = 7777;
const PEER_PORT = 40123;
const MTU = 1500;
const MSS = 1400;
const NSEG = 20;
const ISN = 0x12345678;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function rxPackets(): number {
  const j = JSON.parse(ip('-n', NS, '-s', '-j', 'link', 'show', 'dev', TAP)) as { stats64: { rx: { packets: number } } }[];
  return j[0]!.stats64.rx.packets;
}
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

function sum16(bytes: ArrayLike<number>, init = 0): number {
  let s = init;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i]! << 8) + (i + 1 < bytes.length ? bytes[i + 1]! : 0);
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
function be16(v: number): number[] {
  return [(v >>> 8) & 0xff, v & 0xff];
}
function be32(v: number): number[] {
  return [...be16(v >>> 16), ...be16(v & 0xffff)];
}
function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** Ethernet + IPv4 (DF, TTL 62, id `id`) around an L4 payload, peer -> container. */
function frame(proto: number, id: number, l4: number[]): Uint8Array {
  const iph = [0x45, 0, ...be16(20 + l4.length), ...be16(id), 0x40, 0, 62, proto, 0, 0, ...PEER_IP, ...C_IP];
  const c = fold(sum16(iph));
  iph[10] = c >> 8;
  iph[11] = c & 0xff;
  return Uint8Array.from([...C_MAC, ...HOST_MAC, 0x08, 0x00, ...iph, ...l4]);
}
function tcp(id: number, seq: number, ack: number, flags: number, opts: number[], payload: number[]): Uint8Array {
  const hl = 20 + opts.length;
  const h = [...be16(PEER_PORT), ...be16(PORT), ...be32(seq), ...be32(ack), (hl / 4) << 4, flags, ...be16(65535), 0, 0, 0, 0, ...opts];
  const seg = [...h, ...payload];
  const pseudo = sum16([...PEER_IP, ...C_IP]) + 6 + seg.length;
  const c = fold(sum16(seg, pseudo));
  seg[16] = c >> 8;
  seg[17] = c & 0xff;
  return frame(6, id, seg);
}
function echoRequest(id: number): Uint8Array {
  const icmp = [8, 0, 0, 0, 0x47, 0x52, 0, 1, ...Buffer.from('not-mergeable')];
  const c = fold(sum16(icmp));
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  return frame(1, id, icmp);
}
const SYN = 0x02;
const ACK = 0x10;
const PSH = 0x08;

function isFromServer(f: Uint8Array): boolean {
  return f.length >= 54 && f[23] === 6 && ((f[34]! << 8) | f[35]!) === PORT && ((f[36]! << 8) | f[37]!) === PEER_PORT;
}

describe.skipIf(!canRun)('TAP with IFF_VNET_HDR: GSO super-frames into a real TCP stack (root)', () => {
  let tap: TapDevice;
  let server: ChildProcess | undefined;
  let dump: ChildProcess | undefined;
  let serverOut = '';
  let tmp = '';
  const rx: Uint8Array[] = [];
  let nsMade = false;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), `${P}-`));
    ip('netns', 'add', NS);
    nsMade = true;
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    tap = TapDevice.create(TAP, { batch: 32, vnetHdr: true });
    expect(tap.vnetHdr).toBe(true);
    tap.start((b: FrameBatch) => {
      for (let i = 0; i < b.count; i++) rx.push(b.slab.slice(b.inOff(i), b.inOff(i) + b.len[i]!));
    });
    const mac = (m: number[]) => m.map((x) => x.toString(16).padStart(2, '0')).join(':');
    ip('link', 'set', 'dev', TAP, 'netns', NS);
    ip('-n', NS, 'link', 'set', 'dev', TAP, 'address', mac(C_MAC), 'mtu', String(MTU), 'arp', 'off', 'up');
    ip('-n', NS, 'addr', 'add', C_IP.join('.'), 'peer', '169.254.0.1/32', 'dev', TAP);
    ip('-n', NS, 'neigh', 'add', '169.254.0.1', 'lladdr', mac(HOST_MAC), 'dev', TAP, 'nud', 'permanent');
    ip('-n', NS, 'route', 'add', 'default', 'via', '169.254.0.1', 'dev', TAP, 'src', C_IP.join('.'));
    const want = NSEG * MSS;
    const script =
      `const h=require('crypto').createHash('sha256');let n=0;` +
      `require('net').createServer(c=>c.on('data',d=>{h.update(d);n+=d.length;if(n>=${want}){console.log(JSON.stringify({n,sha:h.digest('hex')}));process.exit(0)}}))` +
      `.listen(${PORT},'${C_IP.join('.')}',()=>console.log('listening'));`;
    server = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    server.stdout!.on('data', (d: Buffer) => (serverOut += d.toString()));
    dump = spawn('ip', ['netns', 'exec', NS, 'tcpdump', '-i', TAP, '-nn', '-U', '--immediate-mode', '-w', join(tmp, 'cap.pcap'), 'tcp', 'or', 'icmp'], {
      // --immediate-mode: without it TPACKET_V3 hands packets over only when a ring block retires
      // (up to a second later), and the SIGINT below would end tcpdump before that (measured: empty capture).
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let dumpErr = '';
    dump.stderr!.on('data', (d: Buffer) => (dumpErr += d.toString()));
    expect(await until(() => serverOut.includes('listening') && dumpErr.includes('listening on'), 10_000)).toBe(true);
  });

  afterAll(() => {
    server?.kill('SIGKILL');
    dump?.kill('SIGKILL');
    tap?.close();
    if (nsMade) ip('netns', 'del', NS);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('delivers 20 segments as one super-frame, byte-exact, next to a frame that cannot be merged', async () => {
    // Handshake: SYN with MSS 1400, no other options (so every data segment has a 20-byte header).
    const slab = new Uint8Array(64 * 2048);
    const offs = new Uint32Array(64);
    const lens = new Uint32Array(64);
    let n = 0;
    const put = (f: Uint8Array) => {
      offs[n] = n * 2048 + 64;
      lens[n] = f.length;
      slab.set(f, offs[n]!);
      n++;
    };
    put(tcp(100, ISN, 0, SYN, [2, 4, ...be16(MSS)], []));
    expect(tap.write(slab, offs, lens, 1)).toBe(1);
    expect(await until(() => rx.some((f) => isFromServer(f) && f[47] === (SYN | ACK)), 5000)).toBe(true);
    const synAck = rx.find((f) => isFromServer(f) && f[47] === (SYN | ACK))!;
    // The reader put the Ethernet header at the slot's headroom: the vnet header was stripped.
    expect(Array.from(synAck.subarray(0, 14))).toEqual([...HOST_MAC, ...C_MAC, 0x08, 0x00]);
    expect(u32(synAck, 42)).toBe(ISN + 1);
    const serverIsn = u32(synAck, 38);

    // One batch: the handshake's last ACK, 20 data segments (PSH on the last), an ICMP echo request.
    n = 0;
    const data: number[] = [];
    for (let i = 0; i < NSEG * MSS; i++) data.push((i * 31 + (i >>> 9)) & 0xff);
    put(tcp(101, ISN + 1, serverIsn + 1, ACK, [], []));
    for (let k = 0; k < NSEG; k++) {
      put(tcp(102 + k, ISN + 1 + k * MSS, serverIsn + 1, k === NSEG - 1 ? ACK | PSH : ACK, [], data.slice(k * MSS, (k + 1) * MSS)));
    }
    put(echoRequest(200));
    const before = rxPackets();
    const stats0 = { ...tap.stats };
    expect(tap.write(slab, offs, lens, n)).toBe(n);
    expect(tap.stats.txSuperFrames - stats0.txSuperFrames).toBe(1);
    expect(tap.stats.txMergedFrames - stats0.txMergedFrames).toBe(NSEG);
    expect(tap.stats.txDropBad + tap.stats.txDropFull).toBe(0);

    // The server read exactly our bytes.
    expect(await until(() => serverOut.includes('"sha"'), 10_000)).toBe(true);
    const got = JSON.parse(serverOut.split('\n').find((l) => l.includes('"sha"'))!) as { n: number; sha: string };
    expect(got.n).toBe(NSEG * MSS);
    expect(got.sha).toBe(createHash('sha256').update(Uint8Array.from(data)).digest('hex'));

    // The kernel ACKed everything, and the echo request got its reply.
    const fullAck = (f: Uint8Array) => isFromServer(f) && (f[47]! & ACK) !== 0 && u32(f, 42) === ((ISN + 1 + NSEG * MSS) >>> 0);
    expect(await until(() => rx.some(fullAck), 5000)).toBe(true);
    const isReply = (f: Uint8Array) => f.length >= 42 && f[23] === 1 && f[34] === 0 && f[38] === 0x47 && f[39] === 0x52;
    expect(await until(() => rx.some(isReply), 5000)).toBe(true);
    expect(Buffer.from(rx.find(isReply)!.subarray(42)).toString()).toBe('not-mergeable');

    // 22 frames handed over, 3 skbs on the device: the ACK, one super-frame, the ICMP request.
    expect(rxPackets() - before).toBe(3);
    expect(tap.readerCounters()!.badVnet).toBe(0);

    // tcpdump inside the namespace saw the super-frame whole: longer than the MTU.
    await new Promise((r) => setTimeout(r, 300));
    dump!.kill('SIGINT');
    await new Promise((r) => dump!.once('exit', r));
    const text = execFileSync('tcpdump', ['-r', join(tmp, 'cap.pcap'), '-nn', '-e'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const lengths = [...text.matchAll(/ethertype IPv4 \(0x0800\), length (\d+):.*> 10\.255\.1\.2\.7777:/g)].map((m) => Number(m[1]));
    expect(lengths).toContain(14 + 20 + 20 + NSEG * MSS);
    expect(Math.max(...lengths)).toBeGreaterThan(MTU + 14);
    expect(readFileSync(join(tmp, 'cap.pcap')).length).toBeGreaterThan(NSEG * MSS);
  });

  it('writes a runt with a counted EINVAL drop, and the rest of the batch still goes', () => {
    const slab = new Uint8Array(512);
    const req = echoRequest(300);
    slab.set([1, 2, 3, 4, 5], 100);
    slab.set(req, 200);
    const bad0 = tap.stats.txDropBad;
    expect(tap.write(slab, Uint32Array.of(100, 200), Uint32Array.of(5, req.length), 2)).toBe(1);
    expect(tap.stats.txDropBad - bad0).toBe(1);
    expect(tap.stats.lastErrno).toBe(22);
  });
});
