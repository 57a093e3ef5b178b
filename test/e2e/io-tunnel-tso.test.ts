// A UDP-tunnel super-packet — VXLAN + Ethernet + IPv4 + TCP with a 10,000-byte
// payload in ONE datagram, as a kernel VXLAN sender on the same host hands it
// over with its default offloads — is cut by the UDP_GRO receive path into
// segments of at most the containers' MTU, with the headers tcp_gso_segment
// would write (total length, ID + k, seq + offset, PSH/FIN on the last only,
// CWR on the first only, valid IPv4 and TCP checksums). Without the MTU it is
// dropped as underlay-rx-oversize, as before. Root: a namespace of our own,
// loopback only.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchNetns } from '../helpers/scratch-netns.js';
import { referenceChecksum } from '../../src/wire/checksum.js';

const isRoot = process.getuid?.() === 0;
const ROOT = resolve(import.meta.dirname, '../..');
const NS = `swt${process.pid}`;
const MTU = 1450;
const PAYLOAD = 10_000;

/** The super-packet: VXLAN (G|I, GBP 1, VNI 1) + inner frame; TCP checksum left partial, as the sender leaves it. */
function superPacket(): Uint8Array {
  const tcpLen = 32 + PAYLOAD;
  const ipLen = 20 + tcpLen;
  const p = new Uint8Array(8 + 14 + ipLen);
  p.set([0x88, 0, 0, 1, 0, 0, 1, 0], 0);
  p.set([0xee, 0xee, 10, 255, 1, 0, 0xee, 0xee, 10, 255, 2, 0, 0x08, 0x00], 8);
  const ip = 22;
  p.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0x12, 0x34, 0x40, 0, 63, 6, 0, 0, 10, 255, 2, 2, 10, 255, 1, 2], ip);
  const c = referenceChecksum(p.subarray(ip, ip + 20));
  p[ip + 10] = c >> 8;
  p[ip + 11] = c & 0xff;
  const t = ip + 20;
  // ports 40000 → 5201, seq 0x01020304, ack 7, data offset 8 (12 bytes of options), flags CWR|PSH|ACK|FIN
  p.set([0x9c, 0x40, 0x14, 0x51, 1, 2, 3, 4, 0, 0, 0, 7, 0x80, 0x80 | 0x18 | 0x01, 0xff, 0xff, 0xab, 0xcd, 0, 0], t);
  p.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], t + 20);
  for (let i = 0; i < PAYLOAD; i++) p[t + 32 + i] = (i * 13 + 5) & 0xff;
  return p;
}

describe.skipIf(!isRoot || !existsSync(join(ROOT, 'build/Release/silkworm_native.node')))('UDP-tunnel super-packets on the underlay (root)', () => {
  const scratch = scratchNetns(NS);

  function receive(innerMtu: number): { lens: number[]; hex: string[]; oversize: number; tso: number } {
    const script = join(scratch.dir, `tso-${innerMtu}.ts`);
    writeFileSync(
      script,
      `import dgram from 'node:dgram';
import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { Drop } from ${JSON.stringify(join(ROOT, 'src/dataplane/counters.js'))};
import { slotSizeFor } from ${JSON.stringify(join(ROOT, 'src/dataplane/batch.js'))};
const drops = new Float64Array(Drop.Count);
const u = UdpUnderlay.open({ bindIp: 0x7f000001, port: 4789, batch: 4, slotSize: slotSizeFor(1500), gro: true, gso: false, drops, innerMtu: ${innerMtu} });
const lens: number[] = []; const hex: string[] = [];
u.start((b) => { for (let i = 0; i < b.count; i++) { lens.push(b.len[i]!); hex.push(Buffer.from(b.slab.subarray(b.inOff(i), b.inOff(i) + b.len[i]!)).toString('hex')); } });
const s = dgram.createSocket('udp4');
await new Promise((r) => s.send(Buffer.from(${JSON.stringify(Buffer.from(superPacket()).toString('hex'))}, 'hex'), 4789, '127.0.0.1', r));
setTimeout(() => {
  console.log(JSON.stringify({ lens, hex, oversize: drops[Drop.UnderlayRxOversize], tso: u.receiverCounters().tsoMessages }));
  s.close(); u.close(); process.exit(0);
}, 400);
setTimeout(() => process.exit(3), 10000);
`,
    );
    const out = execFileSync('ip', ['netns', 'exec', NS, join(ROOT, 'node_modules/.bin/vite-node'), script], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    return JSON.parse(out.trim().split('\n').pop()!);
  }

  it(`is cut into inner packets of at most ${MTU} bytes with the headers tcp_gso_segment writes (batch of 4: carried over batches)`, () => {
    const r = receive(MTU);
    const mss = MTU - 20 - 32;
    const n = Math.ceil(PAYLOAD / mss);
    expect(r.oversize).toBe(0);
    expect(r.tso).toBe(1);
    expect(r.lens).toHaveLength(n);
    const sp = superPacket();
    let payload = '';
    r.hex.forEach((h, k) => {
      const seg = Uint8Array.from(Buffer.from(h, 'hex'));
      const plen = Math.min(mss, PAYLOAD - k * mss);
      expect(seg.length).toBe(8 + 14 + 20 + 32 + plen);
      expect(Array.from(seg.subarray(0, 22))).toEqual(Array.from(sp.subarray(0, 22)));
      const ip = seg.subarray(22);
      expect((ip[2]! << 8) | ip[3]!).toBe(20 + 32 + plen);
      expect((ip[4]! << 8) | ip[5]!).toBe(0x1234 + k);
      expect(referenceChecksum(ip.subarray(0, 20))).toBe(0);
      const t = ip.subarray(20);
      expect(((t[4]! << 24) | (t[5]! << 16) | (t[6]! << 8) | t[7]!) >>> 0).toBe(0x01020304 + k * mss);
      const last = k === n - 1;
      expect(t[13]).toBe((k === 0 ? 0x80 : 0) | 0x10 | (last ? 0x08 | 0x01 : 0));
      expect(Array.from(t.subarray(20, 32))).toEqual([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
      const len = 32 + plen;
      expect(referenceChecksum(t, [0x0aff, 0x0202, 0x0aff, 0x0102, 6, len])).toBe(0);
      payload += Buffer.from(t.subarray(32)).toString('hex');
    });
    expect(payload).toBe(Buffer.from(sp.subarray(22 + 20 + 32)).toString('hex'));
  }, 40_000);

  it('without the containers\' MTU it is dropped as underlay-rx-oversize, as before', () => {
    const r = receive(0);
    expect(r.lens).toEqual([]);
    expect(r.oversize).toBe(1);
  }, 40_000);
});
