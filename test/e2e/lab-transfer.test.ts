// 50 MB over TCP through a whole lab, each way, checked by sha256: the bytes a
// container sends are the bytes the other receives, with every offload on
// (TAP TSO reads cut in user space with the addon's copy-and-checksum, UDP GSO
// and GRO on the underlay, GRO super-frames written to the receiving TAP after
// the addon's checksum verification). Deterministic pseudo-random data, so a
// misplaced or mis-summed segment cannot pass unnoticed: TCP would drop a
// segment whose checksum we got wrong and the transfer would stall, and a
// wrong payload with a right checksum would change the hash.
//
// Root only; its own lab prefix (`e<pid>x`); every process bounded in time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { background, cleanup, inNetns, isRoot, labUp, silkwormOk, uniquePrefix, type Lab } from '../helpers/lab.js';

const P = uniquePrefix('x');
const BYTES = 50 * 1000 * 1000;
const SEED = 0x5eed1234;


// A listener that hashes everything one connection sends and writes {bytes, sha} to a file.
const SERVER = (port: number, out: string): string =>
  `const net=require('net'),c=require('crypto'),fs=require('fs');` +
  `const s=net.createServer((k)=>{const h=c.createHash('sha256');let n=0;` +
  `k.on('data',(d)=>{h.update(d);n+=d.length});` +
  `k.on('end',()=>{fs.writeFileSync(${JSON.stringify(out)},JSON.stringify({bytes:n,sha:h.digest('hex')}));k.end();s.close()})});` +
  `s.listen(${port},()=>console.log('listening'));`;

// A sender of BYTES pseudo-random bytes (xorshift32 from SEED), 1 MB at a time.
const CLIENT = (host: string, port: number): string =>
  `const net=require('net');let x=${SEED}>>>0,left=${BYTES};` +
  `const k=net.connect(${port},${JSON.stringify(host)},()=>{const more=()=>{while(left>0){` +
  `const n=Math.min(1e6,left),b=Buffer.allocUnsafe(n);` +
  `for(let i=0;i<n;i++){x^=x<<13;x>>>=0;x^=x>>>17;x^=x<<5;x>>>=0;b[i]=x&255}` +
  `left-=n;if(!k.write(b)){k.once('drain',more);return}}k.end()};more()});` +
  `k.on('error',(e)=>{console.error(e.message);process.exit(1)});k.on('close',()=>process.exit(0));`;

function expectedSha(): string {
  const h = createHash('sha256');
  let x = SEED >>> 0;
  let left = BYTES;
  while (left > 0) {
    const n = Math.min(1e6, left);
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      b[i] = x & 255;
    }
    h.update(b);
    left -= n;
  }
  return h.digest('hex');
}

describe.skipIf(!isRoot())(`50 MB each way through the lab, sha256-checked (prefix ${P})`, () => {
  let lab: Lab;
  const want = expectedSha();

  beforeAll(async () => {
    await cleanup(P);
    lab = await labUp(P);
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '5301', '--lab', P]);
    await silkwormOk(['policy', 'add', 'appA', 'appB', '--protocol', 'tcp', '--port', '5302', '--lab', P]);
  }, 120_000);

  afterAll(async () => {
    await cleanup(P);
  }, 120_000);

  const transfer = async (from: 'appA' | 'appB', to: 'appA' | 'appB', port: number) => {
    const out = `/tmp/silkworm-${P}-${port}.json`;
    fs.rmSync(out, { force: true });
    const srv = await background(lab[to].netns, process.execPath, ['-e', SERVER(port, out)], /listening/, 150_000);
    try {
      // The policy reaches both cells within milliseconds; a refused first connect would fail the client.
      const r = await inNetns(lab[from].netns, process.execPath, ['-e', CLIENT(lab[to].ip, port)], { timeoutMs: 140_000 });
      expect(r.code, r.stderr).toBe(0);
      for (let i = 0; i < 100 && !fs.existsSync(out); i++) await new Promise((res) => setTimeout(res, 100));
      const got = JSON.parse(fs.readFileSync(out, 'utf8')) as { bytes: number; sha: string };
      expect(got.bytes).toBe(BYTES);
      expect(got.sha).toBe(want);
    } finally {
      await srv.stop();
      fs.rmSync(out, { force: true });
    }
  };

  it('appB → appA: 50 MB arrive byte-exact', async () => {
    await transfer('appB', 'appA', 5301);
  }, 160_000);

  it('appA → appB: 50 MB arrive byte-exact', async () => {
    await transfer('appA', 'appB', 5302);
  }, 160_000);
});
