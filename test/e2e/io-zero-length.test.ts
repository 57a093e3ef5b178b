// Zero-length and too-short datagrams to UDP 4789 reach the pipeline and are
// counted (bad-vxlan), with UDP_GRO on and off (root: a namespace of our own,
// loopback only). With UDP_GRO a zero-length datagram used to vanish in the
// native receiver — counted nowhere.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchNetns } from '../helpers/scratch-netns.js';

const isRoot = process.getuid?.() === 0;
const ROOT = resolve(import.meta.dirname, '../..');
const NS = `swz${process.pid}`;

describe.skipIf(!isRoot || !existsSync(join(ROOT, 'build/Release/silkworm_native.node')))('zero-length datagrams on the underlay (root)', () => {
  const scratch = scratchNetns(NS);

  it.each([false, true])('udp-gro %s: sizes 0, 3, 0, 7, 20 each take a slot; the pipeline counts four as bad-vxlan and the 20-byte one as unknown-underlay-source', (gro) => {
    const script = join(scratch.dir, `zero-${gro}.ts`);
    writeFileSync(
      script,
      `import dgram from 'node:dgram';
import { UdpUnderlay } from ${JSON.stringify(join(ROOT, 'src/io/underlay.js'))};
import { Dataplane, DEFAULT_CONFIG } from ${JSON.stringify(join(ROOT, 'src/dataplane/dataplane.js'))};
import { DROP_NAMES } from ${JSON.stringify(join(ROOT, 'src/dataplane/counters.js'))};
const dp = new Dataplane({ ...DEFAULT_CONFIG, underlayIp: 0x7f000001, leaseSubnet: 0x0aff0100 });
const u = UdpUnderlay.open({ bindIp: 0x7f000001, port: 4789, batch: 16, slotSize: 512, gro: ${gro}, gso: false, drops: dp.counters.drops });
const lens: number[] = [];
u.start((b) => { for (let i = 0; i < b.count; i++) lens.push(b.len[i]!); dp.ingress(b, 1); });
const s = dgram.createSocket('udp4');
const hdr = [0x08, 0, 0, 0, 0, 0, 1, 0];
for (const p of [[], [8, 0, 0], [], [8, 0, 0, 0, 0, 0, 1], [...hdr, ...new Array(12).fill(0)]]) {
  await new Promise((r) => s.send(Buffer.from(p), 4789, '127.0.0.1', r));
}
setTimeout(() => {
  const drops: Record<string, number> = {};
  dp.counters.drops.forEach((v, i) => { if (v) drops[DROP_NAMES[i]!] = v; });
  console.log(JSON.stringify({ gro: u.gro, lens, drops, ingress: dp.counters.stats[2] }));
  s.close(); u.close(); process.exit(0);
}, 300);
setTimeout(() => process.exit(3), 10000);
`,
    );
    const out = execFileSync('ip', ['netns', 'exec', NS, join(ROOT, 'node_modules/.bin/vite-node'), script], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { gro: boolean; lens: number[]; drops: Record<string, number>; ingress: number };
    expect(r.gro).toBe(gro);
    expect(r.lens).toEqual([0, 3, 0, 7, 20]);
    expect(r.ingress).toBe(5);
    expect(r.drops).toEqual({ 'bad-vxlan': 4, 'unknown-underlay-source': 1 });
  }, 40_000);
});
