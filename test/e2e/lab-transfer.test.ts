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
import { background, cleanup, inNetns, isRoot, labUp, silkwormOk, uniquePrefix, type Lab } from '../helpers/lab.js';
import { hashingServer, seededSender, seededSha } from '../helpers/transfer.js';

const P = uniquePrefix('x');
const BYTES = 50 * 1000 * 1000;
const SEED = 0x5eed1234;


describe.skipIf(!isRoot())(`50 MB each way through the lab, sha256-checked (prefix ${P})`, () => {
  let lab: Lab;
  const want = seededSha(BYTES, SEED);

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
    const srv = await background(lab[to].netns, process.execPath, ['-e', hashingServer(port, out)], /listening/, 150_000);
    try {
      // The policy reaches both cells within milliseconds; a refused first connect would fail the client.
      const r = await inNetns(lab[from].netns, process.execPath, ['-e', seededSender(lab[to].ip, port, BYTES, SEED)], { timeoutMs: 140_000 });
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
