// Real TAPs and sockets in network namespaces (root only). Everything this
// file creates is named swio<pid>…, lives in namespaces it made (underlay
// addresses from 198.18.0.0/15), and is removed in afterAll even on failure.
// The only thing ever in the root namespace is a just-opened TAP, with no
// address, that is moved into a test namespace at once.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameBatch } from '../../src/dataplane/batch.js';
import { loadNative } from '../../src/io/native.js';
import { TapDevice } from '../../src/io/tap.js';
import { Drop } from '../../src/dataplane/counters.js';

const isRoot = process.getuid?.() === 0;
const canRun = isRoot && existsSync('/dev/net/tun');

const ROOT = resolve(import.meta.dirname, '../..');
const P = `swio${process.pid}`;
const NS_C = `${P}-c`; // a container
const NS_P = `${P}-p`; // a container holding a persistent TAP
const NS_A = `${P}-a`; // underlay cell A
const NS_B = `${P}-b`; // underlay cell B
const TAP = `${P}t`;
const PTAP = `${P}p`;
const NETNS_DIR = '/var/run/netns';
const SUBNET = `198.18.${process.pid % 250}`;
const IP_A = `${SUBNET}.1`;
const IP_B = `${SUBNET}.2`;

const created: string[] = [];
let tmp = '';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function inNs(ns: string, ...cmd: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function addNs(ns: string): void {
  ip('netns', 'add', ns);
  created.push(ns);
  inNs(ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
}
function rxPackets(ns: string, dev: string): number {
  const j = JSON.parse(ip('-n', ns, '-s', '-j', 'link', 'show', 'dev', dev)) as { stats64: { rx: { packets: number } } }[];
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

// --- hand-built packets -----------------------------------------------------

function ipv4Addr(text: string): number[] {
  return text.split('.').map(Number);
}
function csum16(bytes: number[] | Uint8Array): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i]! << 8) + (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
function ipv4Header(src: string, dst: string, proto: number, payloadLen: number, withChecksum: boolean): number[] {
  const total = 20 + payloadLen;
  const h = [0x45, 0, total >> 8, total & 255, 0, 0, 0, 0, 64, proto, 0, 0, ...ipv4Addr(src), ...ipv4Addr(dst)];
  if (withChecksum) {
    const c = csum16(h);
    h[10] = c >> 8;
    h[11] = c & 255;
  }
  return h;
}
function ethernet(dst: number[], src: number[], payload: number[]): Uint8Array {
  return Uint8Array.from([...dst, ...src, 0x08, 0x00, ...payload]);
}
const C_IP = '10.255.1.2';
const PEER_IP = '10.255.2.3';
const C_MAC = [0xee, 0xee, 10, 255, 1, 2];
const HOST_MAC = [0xaa, 0xaa, 10, 255, 1, 2];

/** ICMP echo request PEER_IP -> C_IP, as the cell would deliver it to the container. */
function echoRequest(id: number, seq: number, data: string): Uint8Array {
  const body = [...Buffer.from(data)];
  const icmp = [8, 0, 0, 0, id >> 8, id & 255, seq >> 8, seq & 255, ...body];
  const c = csum16(icmp);
  icmp[2] = c >> 8;
  icmp[3] = c & 255;
  return ethernet(C_MAC, HOST_MAC, [...ipv4Header(PEER_IP, C_IP, 1, icmp.length, true), ...icmp]);
}

/** The cell's job, done here by hand: move the TAP into `ns` and configure it as silk does (src/cell/netns.ts). */
function moveIntoContainer(dev: string, ns: string): void {
  ip('link', 'set', 'dev', dev, 'netns', ns);
  ip('-n', ns, 'link', 'set', 'dev', dev, 'address', C_MAC.map((b) => b.toString(16).padStart(2, '0')).join(':'), 'arp', 'off', 'up');
  ip('-n', ns, 'addr', 'add', C_IP, 'peer', '169.254.0.1/32', 'dev', dev);
  ip('-n', ns, 'neigh', 'add', '169.254.0.1', 'lladdr', HOST_MAC.map((b) => b.toString(16)).join(':'), 'dev', dev, 'nud', 'permanent');
  ip('-n', ns, 'route', 'add', 'default', 'via', '169.254.0.1', 'dev', dev, 'src', C_IP);
}

function copyFrames(b: FrameBatch): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < b.count; i++) out.push(b.slab.slice(b.inOff(i), b.inOff(i) + b.len[i]!));
  return out;
}

// --- lifecycle --------------------------------------------------------------

describe.skipIf(!canRun)('io e2e (root, network namespaces)', () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), `${P}-`));
    for (const ns of [NS_C, NS_P, NS_A, NS_B]) addNs(ns);
    // The underlay: a veth pair between cell A and cell B.
    ip('link', 'add', `${P}a`, 'netns', NS_A, 'type', 'veth', 'peer', 'name', `${P}b`, 'netns', NS_B);
    ip('-n', NS_A, 'addr', 'add', `${IP_A}/24`, 'dev', `${P}a`);
    ip('-n', NS_B, 'addr', 'add', `${IP_B}/24`, 'dev', `${P}b`);
    ip('-n', NS_A, 'link', 'set', `${P}a`, 'up');
    ip('-n', NS_B, 'link', 'set', `${P}b`, 'up');
  });

  afterAll(() => {
    for (const ns of created) {
      try {
        ip('netns', 'del', ns);
      } catch {
        /* already gone (a test deletes one on purpose) */
      }
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('TAP moved into a container namespace', () => {
    let tap: TapDevice;
    const batches: { count: number; frames: Uint8Array[] }[] = [];
    const gone: Error[] = [];

    beforeAll(() => {
      tap = TapDevice.create(TAP, { batch: 16 });
      expect(tap.name).toBe(TAP);
      moveIntoContainer(TAP, NS_C);
      tap.start((b) => batches.push({ count: b.count, frames: copyFrames(b) }), (e) => gone.push(e));
    });

    afterAll(() => tap?.close());

    it('reads a burst of UDP datagrams from the container in batches (count > 1)', async () => {
      tap.pause(); // let the burst queue in the TAP, as it does while the loop is busy
      batches.length = 0;
      const script = `const s=require('dgram').createSocket('udp4');let n=0;const go=()=>{if(n===20)return s.close();s.send('burst-'+String(n).padStart(2,'0'),7777,'${PEER_IP}',go);n++};go();`;
      inNs(NS_C, process.execPath, '-e', script);
      tap.resume();
      expect(await until(() => batches.reduce((a, b) => a + b.frames.filter(isBurst).length, 0) >= 20, 5000)).toBe(true);
      const udp = batches.flatMap((b) => b.frames).filter(isBurst);
      expect(udp).toHaveLength(20);
      // All 20 were queued before resume(): one wakeup reads them as 16 + 4.
      expect(batches[0]!.count).toBe(16);
      expect(batches.map((b) => b.count).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(20);
      for (let i = 0; i < 20; i++) {
        const f = udp[i]!;
        expect(Array.from(f.subarray(0, 14))).toEqual([...HOST_MAC, ...C_MAC, 0x08, 0x00]);
        expect(Array.from(f.subarray(26, 34))).toEqual([...ipv4Addr(C_IP), ...ipv4Addr(PEER_IP)]);
        expect(f[23]).toBe(17);
        expect(f.length).toBe(14 + 20 + 8 + 8);
        expect(Buffer.from(f.subarray(42)).toString()).toBe(`burst-${String(i).padStart(2, '0')}`);
      }
      const rc = tap.readerCounters()!;
      expect(rc.frames).toBeGreaterThanOrEqual(20);
      expect(tap.stats.rxFrames).toBe(rc.frames);
    });

    it('writes an ICMP echo request into the container and reads the kernel reply', async () => {
      batches.length = 0;
      const before = rxPackets(NS_C, TAP);
      const req = echoRequest(0x5157, 7, 'silkworm-e2e');
      const runt = Uint8Array.of(1, 2, 3, 4, 5); // shorter than an Ethernet header: the kernel refuses it
      const slab = new Uint8Array(512);
      slab.set(runt, 100);
      slab.set(req, 200);
      const written = tap.write(slab, Uint32Array.of(100, 200), Uint32Array.of(runt.length, req.length), 2);
      expect(written).toBe(1);
      expect(tap.stats.txDropBad).toBe(1);
      expect(tap.stats.lastErrno).toBe(22);
      const isReply = (f: Uint8Array) => f.length >= 42 && f[23] === 1 && f[34] === 0 && f[38] === 0x51 && f[39] === 0x57;
      expect(await until(() => batches.some((b) => b.frames.some(isReply)), 5000)).toBe(true);
      const reply = batches.flatMap((b) => b.frames).find(isReply)!;
      expect(Array.from(reply.subarray(0, 14))).toEqual([...HOST_MAC, ...C_MAC, 0x08, 0x00]);
      expect(Array.from(reply.subarray(26, 34))).toEqual([...ipv4Addr(C_IP), ...ipv4Addr(PEER_IP)]);
      expect(Array.from(reply.subarray(38, 42))).toEqual([0x51, 0x57, 0, 7]);
      expect(Buffer.from(reply.subarray(42)).toString()).toBe('silkworm-e2e');
      expect(csum16(reply.subarray(34))).toBe(0); // the kernel's ICMP checksum verifies
      expect(rxPackets(NS_C, TAP)).toBe(before + 1);
    });

    it('reports the device gone (once, no crash) when the container namespace is deleted', async () => {
      ip('netns', 'del', NS_C);
      expect(await until(() => gone.length > 0, 10_000)).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      expect(gone).toHaveLength(1);
      const code = (gone[0] as NodeJS.ErrnoException).code;
      expect(['EBADFD', 'ENODEV', 'EIO', 'EBADF']).toContain(code);
      expect(tap.gone).toBe(gone[0]);
      const slab = echoRequest(1, 1, 'x');
      expect(tap.write(slab, Uint32Array.of(0), Uint32Array.of(slab.length), 1)).toBe(0);
      expect(tap.stats.txDropGone).toBe(1);
    });
  });

  it('drops (and counts) frames longer than a slot instead of delivering them cut short', async () => {
    // 128-byte slots with 64 bytes of headroom hold frames up to 64 bytes.
    const drops = new Float64Array(Drop.Count);
    const small = TapDevice.create(`${P}s`, { slotSize: 128, headroom: 64, batch: 4, drops });
    try {
      moveIntoContainer(`${P}s`, NS_P);
      const got: Uint8Array[] = [];
      small.start((b) => got.push(...copyFrames(b)));
      const big = echoRequest(0x0b16, 1, 'x'.repeat(100)); // its reply is a 142-byte frame
      const tiny = echoRequest(0x0005, 2, 'tiny'); // its reply is a 46-byte frame
      const slab = new Uint8Array(big.length + tiny.length);
      slab.set(big, 0);
      slab.set(tiny, big.length);
      expect(small.write(slab, Uint32Array.of(0, big.length), Uint32Array.of(big.length, tiny.length), 2)).toBe(2);
      expect(await until(() => got.length > 0 && small.readerCounters()!.oversize > 0, 5000)).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      expect(got).toHaveLength(1);
      expect(got[0]!.length).toBe(46);
      expect(Array.from(got[0]!.subarray(38, 42))).toEqual([0, 5, 0, 2]);
      expect(small.readerCounters()!.oversize).toBe(1);
      // The native reader counted it in the cell's drop-reason table too, and nothing else.
      expect(drops[Drop.TapRxOversize]).toBe(1);
      expect(drops.reduce((a, b) => a + b, 0)).toBe(1);
    } finally {
      small.close();
    }
  });

  it('re-attaches a persistent TAP from inside its namespace (setns), not a new one', () => {
    const native = loadNative();
    const t = TapDevice.create(PTAP, { persist: true });
    ip('link', 'set', 'dev', PTAP, 'netns', NS_P);
    t.close(); // persistent: the device stays in the container
    expect(ip('-n', NS_P, 'link', 'show', 'dev', PTAP)).toContain(PTAP);
    expect(native.ifNameToIndex(PTAP)).toBe(0); // nothing left behind here

    expect(() => TapDevice.attach(join(NETNS_DIR, NS_P), `${P}x`)).toThrow(/find device: No such device/);
    expect(() => ip('-n', NS_P, 'link', 'show', 'dev', `${P}x`)).toThrow(); // and none was created

    const again = TapDevice.attach(join(NETNS_DIR, NS_P), PTAP);
    try {
      expect(again.name).toBe(PTAP);
      expect(native.ifNameToIndex(PTAP)).toBe(0);
      ip('-n', NS_P, 'link', 'set', 'dev', PTAP, 'up');
      const before = rxPackets(NS_P, PTAP);
      const f = echoRequest(2, 2, 'again');
      expect(again.write(f, Uint32Array.of(0), Uint32Array.of(f.length), 1)).toBe(1);
      expect(rxPackets(NS_P, PTAP)).toBe(before + 1);
      again.setPersist(false);
    } finally {
      again.close();
    }
    // Not persistent any more and no fd left: the kernel removes it.
    expect(() => ip('-n', NS_P, 'link', 'show', 'dev', PTAP)).toThrow();
  });

  it('sends a batch on the raw socket (sendmmsg) and receives it with recvmmsg in batches', async () => {
    inNs(NS_A, 'ping', '-c1', '-W2', IP_B); // resolve ARP first so nothing waits in the neighbour queue
    const vxlanPayload = (i: number) => [0x88, 0x00, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00, ...Buffer.from(`inner-frame-${String(i).padStart(2, '0')}`)];
    const packets: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) {
      const payload = vxlanPayload(i);
      const udpLen = 8 + payload.length;
      const sport = 49152 + i;
      // IPv4 checksum, ID and source left 0: with IP_HDRINCL the kernel fills them in (raw(7)).
      const hdr = ipv4Header('0.0.0.0', IP_B, 17, udpLen, false);
      packets.push(Uint8Array.from([...hdr, sport >> 8, sport & 255, 0x12, 0xb5, udpLen >> 8, udpLen & 255, 0, 0, ...payload]));
    }
    packets.push(Uint8Array.of(0x45, 0, 0, 10, 0, 0, 0, 0, 64, 17)); // 10 bytes: refused alone (EINVAL)
    const bigPayload = new Array(600).fill(0x42);
    packets.push(Uint8Array.from([...ipv4Header(IP_A, IP_B, 17, 8 + 600, false), 0xc0, 0, 0x12, 0xb5, (608 >> 8) & 255, 608 & 255, 0, 0, ...bigPayload]));

    const recvScript = join(tmp, 'recv.ts');
    writeFileSync(
      recvScript,
      `import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { ipToU32 } from ${JSON.stringify(join(ROOT, 'src/util/ip.js'))};
import { Drop } from ${JSON.stringify(join(ROOT, 'src/dataplane/counters.js'))};
const drops = new Float64Array(Drop.Count);
const u = UdpUnderlay.open({ bindIp: ipToU32(${JSON.stringify(IP_B)}), batch: 16, slotSize: 512, drops });
const counts: number[] = []; const got: { src: number; sport: number; hex: string }[] = [];
u.start((b) => { counts.push(b.count); for (let i = 0; i < b.count; i++) got.push({ src: b.srcIp[i]!, sport: b.srcPort[i]!, hex: Buffer.from(b.slab.subarray(b.inOff(i), b.inOff(i) + b.len[i]!)).toString('hex') }); });
u.pause();
console.log('ready ' + u.port);
process.stdin.once('data', () => {
  u.resume();
  setTimeout(() => { console.log(JSON.stringify({ counts, got, rc: u.receiverCounters(), oversizeDrops: drops[Drop.UnderlayRxOversize], allDrops: drops.reduce((a, b) => a + b, 0) })); u.close(); process.exit(0); }, 500);
});
setTimeout(() => process.exit(3), 20000);
`,
    );
    const sendScript = join(tmp, 'send.ts');
    writeFileSync(
      sendScript,
      `import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { ipToU32 } from ${JSON.stringify(join(ROOT, 'src/util/ip.js'))};
import { Drop } from ${JSON.stringify(join(ROOT, 'src/dataplane/counters.js'))};
const packets: string[] = JSON.parse(process.argv[2]!);
const drops = new Float64Array(Drop.Count);
const u = UdpUnderlay.open({ port: 0, drops });
const slab = new Uint8Array(packets.length * 1024);
const offs = new Uint32Array(packets.length), lens = new Uint32Array(packets.length);
const dsts = new Uint32Array(packets.length).fill(ipToU32(${JSON.stringify(IP_B)}));
packets.forEach((h, i) => { const b = Buffer.from(h, 'hex'); offs[i] = i * 1024 + 64; lens[i] = b.length; slab.set(b, offs[i]!); });
const sent = u.send(slab, offs, lens, dsts, packets.length);
console.log(JSON.stringify({ sent, stats: u.stats, refusedDrops: drops[Drop.UnderlayTxRefused], allDrops: drops.reduce((a, b) => a + b, 0) }));
u.close();
`,
    );
    const viteNode = join(ROOT, 'node_modules/.bin/vite-node');
    const recv: ChildProcessWithoutNullStreams = spawn('ip', ['netns', 'exec', NS_B, viteNode, recvScript], { cwd: ROOT });
    let out = '';
    let err = '';
    recv.stdout.on('data', (d: Buffer) => (out += d.toString()));
    recv.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => recv.on('exit', r));
    try {
      expect(await until(() => out.includes('ready'), 30_000), err).toBe(true);
      expect(out).toContain('ready 4789');
      const sendOut = execFileSync('ip', ['netns', 'exec', NS_A, viteNode, sendScript, JSON.stringify(packets.map((p) => Buffer.from(p).toString('hex')))], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      const s = JSON.parse(sendOut.trim().split('\n').pop()!) as {
        sent: number;
        stats: { txPackets: number; txDropRefused: number; lastErrno: number };
        refusedDrops: number;
        allDrops: number;
      };
      expect(s.sent).toBe(21);
      expect(s.stats.txDropRefused).toBe(1);
      expect(s.stats.lastErrno).toBe(22);
      expect([s.refusedDrops, s.allDrops]).toEqual([1, 1]);
      recv.stdin.write('go\n');
      expect(await exited, err).toBe(0);
    } finally {
      if (recv.exitCode === null) recv.kill();
    }
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      counts: number[];
      got: { src: number; sport: number; hex: string }[];
      rc: { oversize: number };
      oversizeDrops: number;
      allDrops: number;
    };
    // 20 queued datagrams, receive batch 16: one wakeup, two recvmmsg calls. The 608-byte one is
    // longer than a 512-byte slot minus headroom: MSG_TRUNC, dropped and counted.
    expect(r.counts).toEqual([16, 4]);
    expect(r.rc.oversize).toBe(1);
    expect([r.oversizeDrops, r.allDrops]).toEqual([1, 1]);
    expect(r.got).toHaveLength(20);
    const ipA = ipv4Addr(IP_A).reduce((a, b) => a * 256 + b, 0);
    r.got.forEach((g, i) => {
      expect(g.src).toBe(ipA); // the kernel filled in the source address
      expect(g.sport).toBe(49152 + i);
      expect(g.hex).toBe(Buffer.from(vxlanPayload(i)).toString('hex'));
    });
  });
});

function isBurst(f: Uint8Array): boolean {
  return f.length > 42 && f[12] === 0x08 && f[13] === 0 && f[23] === 17 && f[36] === 0x1e && f[37] === 0x61;
}
