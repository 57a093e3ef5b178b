// TapDevice with tso against a real kernel TCP stack (root only): a TAP with
// TUNSETOFFLOAD(CSUM | TSO4) moved into namespace tso<pid>-c, where a node
// client connects to a peer address routed through the TAP and sends 8 MiB of
// random bytes. The test is that peer: it answers the handshake and ACKs what
// arrives, in order. Checks: the bytes arrive byte-exact (SHA-256 on both
// ends), the reader really got GSO super-frames (native superFrames counter,
// segments > super-frames), every frame the data plane would see is an
// ordinary frame (at most the MTU, valid IPv4 header and TCP checksums, no
// gap or overlap in sequence numbers). Everything lives in the namespace,
// which afterAll deletes.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameBatch } from '../../src/dataplane/batch.js';
import { TapDevice } from '../../src/io/tap.js';
import { referenceChecksum } from '../../src/wire/checksum.js';

const isRoot = process.getuid?.() === 0;
const canRun = isRoot && existsSync('/dev/net/tun');

const P = `tso${process.pid}`;
const C_IP = [10, 255, 1, 2];
const PEER_IP = [10, 255, 2, 3];
const C_MAC = [0xee, 0xee, 10, 255, 1, 2];
const HOST_MAC = [0xaa, 0xaa, 10, 255, 1, 2];
const PORT = 7778;
const MTU = 1500;
const TOTAL = 8 * 1024 * 1024;
const OUR_ISN = 0x7000_0000;
const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}
function be16(v: number): number[] {
  return [(v >>> 8) & 0xff, v & 0xff];
}
function be32(v: number): number[] {
  return [...be16(v >>> 16), ...be16(v & 0xffff)];
}
function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** A TCP segment peer -> container (no payload), checksums from the reference. */
function tcpFrame(id: number, sport: number, seq: number, ack: number, flags: number, opts: number[]): Uint8Array {
  const hl = 20 + opts.length;
  const seg = [...be16(PORT), ...be16(sport), ...be32(seq), ...be32(ack), (hl / 4) << 4, flags, ...be16(0xffff), 0, 0, 0, 0, ...opts];
  const c = referenceChecksum(seg, [u16(Uint8Array.from(PEER_IP), 0), u16(Uint8Array.from(PEER_IP), 2), u16(Uint8Array.from(C_IP), 0), u16(Uint8Array.from(C_IP), 2), 6, seg.length]);
  seg[16] = c >> 8;
  seg[17] = c & 0xff;
  const iph = [0x45, 0, ...be16(20 + seg.length), ...be16(id), 0x40, 0, 64, 6, 0, 0, ...PEER_IP, ...C_IP];
  const ic = referenceChecksum(iph);
  iph[10] = ic >> 8;
  iph[11] = ic & 0xff;
  return Uint8Array.from([...C_MAC, ...HOST_MAC, 0x08, 0x00, ...iph, ...seg]);
}

// Copying segments whole into the slots, and zero-copy (zeroCopyMtu: headers in the slots, payloads left
// in the read buffer and referenced by batch.ext/extOff/extLen, src/offload/gso.ts).
for (const zeroCopyMtu of [0, 1500]) describe.skipIf(!canRun)(`TAP with TSO: super-frames from a real TCP sender, segmented in user space (root, zeroCopyMtu ${zeroCopyMtu})`, () => {
  const NS = `${P}-c${zeroCopyMtu ? 'z' : ''}`;
  const TAP = `${P}t${zeroCopyMtu ? 'z' : ''}`;
  let tap: TapDevice;
  let zeroCopied = 0;
  let client: ChildProcess | undefined;
  let clientOut = '';
  let nsMade = false;
  // Receiver state (the peer we play).
  const hash = createHash('sha256');
  let received = 0;
  let next = 0; // next expected sequence number
  let sport = 0;
  let synSeen = false;
  let finSeen = false;
  let frames = 0;
  let maxFrame = 0;
  let badIpCsum = 0;
  let badTcpCsum = 0;
  let outOfOrder = 0;
  let ourId = 1;
  const out = new Uint8Array(4 * 2048);
  const offs = Uint32Array.of(64, 2048 + 64);
  const lens = new Uint32Array(2);

  function send(f: Uint8Array): void {
    out.set(f, 64);
    lens[0] = f.length;
    expect(tap.write(out, offs, lens, 1)).toBe(1);
  }

  function onBatch(b: FrameBatch): void {
    let advanced = false;
    for (let i = 0; i < b.count; i++) {
      const o = b.inOff(i);
      const len = b.len[i]!;
      const xl = b.extLen[i]!;
      // The frame as the underlay would send it: the slot's bytes, then the piece outside it (zero-copy).
      let f = b.slab.subarray(o, o + len);
      if (xl > 0) {
        zeroCopied++;
        f = new Uint8Array(len);
        f.set(b.slab.subarray(o, o + len - xl));
        f.set(b.ext!.subarray(b.extOff[i]!, b.extOff[i]! + xl), len - xl);
      }
      if (len < 54 || u16(f, 12) !== 0x0800 || f[23] !== 6 || u16(f, 36) !== PORT) continue;
      frames++;
      maxFrame = Math.max(maxFrame, len);
      const ihl = (f[14]! & 0x0f) * 4;
      if (referenceChecksum(f.subarray(14, 14 + ihl)) !== 0) badIpCsum++;
      const t = 14 + ihl;
      const tlen = u16(f, 16) - ihl;
      const words = [u16(f, 26), u16(f, 28), u16(f, 30), u16(f, 32), 6, tlen];
      if (referenceChecksum(f.subarray(t, t + tlen), words) !== 0) badTcpCsum++;
      const flags = f[t + 13]!;
      const seq = u32(f, t + 4);
      if ((flags & SYN) !== 0) {
        synSeen = true;
        sport = u16(f, t);
        next = (seq + 1) >>> 0;
        // SYN-ACK: MSS 1460, window scale 7 (so the sender may keep far more than 64 KiB in flight).
        send(tcpFrame(ourId++, sport, OUR_ISN, next, SYN | ACK, [2, 4, ...be16(1460), 1, 3, 3, 7]));
        continue;
      }
      const doff = (f[t + 12]! >>> 4) * 4;
      const plen = tlen - doff;
      if (plen > 0 || (flags & FIN) !== 0) {
        if (seq !== next) {
          outOfOrder++;
          continue;
        }
        if (plen > 0) {
          hash.update(f.subarray(t + doff, t + tlen));
          received += plen;
        }
        next = (next + plen + ((flags & FIN) !== 0 ? 1 : 0)) >>> 0;
        advanced = true;
        if ((flags & FIN) !== 0) finSeen = true;
      }
    }
    // One ACK per batch, like delayed ACK; FIN answered with FIN-ACK.
    if (advanced) send(tcpFrame(ourId++, sport, OUR_ISN + 1, next, finSeen ? ACK | FIN : ACK, []));
  }

  beforeAll(async () => {
    ip('netns', 'add', NS);
    nsMade = true;
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    tap = TapDevice.create(TAP, { batch: 64, vnetHdr: true, tso: true, zeroCopyMtu });
    // The kernel granted TUNSETOFFLOAD(CSUM | TSO4): no fallback recorded.
    expect(tap.tso).toBe(true);
    expect(tap.tsoRefusal).toBeUndefined();
    expect(tap.tso).toBe(true);
    tap.start(onBatch);
    const mac = (m: number[]) => m.map((x) => x.toString(16).padStart(2, '0')).join(':');
    ip('link', 'set', 'dev', TAP, 'netns', NS);
    ip('-n', NS, 'link', 'set', 'dev', TAP, 'address', mac(C_MAC), 'mtu', String(MTU), 'arp', 'off', 'up');
    ip('-n', NS, 'addr', 'add', C_IP.join('.'), 'peer', '169.254.0.1/32', 'dev', TAP);
    ip('-n', NS, 'neigh', 'add', '169.254.0.1', 'lladdr', mac(HOST_MAC), 'dev', TAP, 'nud', 'permanent');
    ip('-n', NS, 'route', 'add', 'default', 'via', '169.254.0.1', 'dev', TAP, 'src', C_IP.join('.'));
  });

  afterAll(() => {
    client?.kill('SIGKILL');
    tap?.close();
    if (nsMade) ip('netns', 'del', NS);
  });

  it('delivers 8 MiB byte-exact as MTU-sized frames cut from super-frames', async () => {
    const script =
      `const c=require('crypto');const d=c.randomBytes(${TOTAL});` +
      `console.log(JSON.stringify({sha:c.createHash('sha256').update(d).digest('hex')}));` +
      `const s=require('net').connect(${PORT},'${PEER_IP.join('.')}',()=>{s.end(d)});` +
      `s.on('error',e=>{console.error(e.message);process.exit(1)});s.on('close',()=>process.exit(0));` +
      `setTimeout(()=>process.exit(2),30000);`;
    client = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    client.stdout!.on('data', (d: Buffer) => (clientOut += d.toString()));
    expect(await until(() => finSeen && clientOut.includes('"sha"'), 30_000)).toBe(true);
    const sent = JSON.parse(clientOut.split('\n').find((l) => l.includes('"sha"'))!) as { sha: string };
    expect(synSeen).toBe(true);
    expect(received).toBe(TOTAL);
    expect(hash.digest('hex')).toBe(sent.sha);
    expect(outOfOrder).toBe(0);
    expect(badIpCsum).toBe(0);
    expect(badTcpCsum).toBe(0);
    // Every frame is one the wire could carry: at most MTU + Ethernet header.
    expect(maxFrame).toBeLessThanOrEqual(MTU + 14);
    expect(maxFrame).toBeGreaterThan(1000);
    const rc = tap.readerCounters()!;
    const g = tap.gsoCounters()!;
    // The kernel really handed over super-frames, and they were cut into many frames each.
    expect(rc.superFrames).toBeGreaterThan(0);
    expect(g.superFrames).toBe(rc.superFrames);
    expect(g.segments).toBeGreaterThan(2 * g.superFrames);
    expect(g.dropMalformed + g.dropUnsupported + g.dropTooBig).toBe(0);
    expect(rc.frames).toBeLessThan(frames);
    if (zeroCopyMtu > 0) expect(zeroCopied).toBeGreaterThan(g.segments / 2);
    else expect(zeroCopied).toBe(0);
  }, 40_000);
});
