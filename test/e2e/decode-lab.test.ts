// `silkworm decode -r` on a real capture: `tcpdump -w` (pcap) and tshark's
// dumpcap (pcapng) on the lab's underlay bridge while appB curls appA under a
// policy. Every frame must decode down to the inner TCP with the Group Policy
// ID, and `decode --json` must agree with `tshark -T json` field by field
// (test/vectors/decode-corpus.ts; the deliberate differences are in
// docs/decode-differences.md). A second tcpdump with -s 96 checks a real
// snaplen-truncated capture the same way.
//
// Root only. The lab's prefix is this file's own (`e<pid>dec`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, curl, isRoot, labUp, silkworm, silkwormOk, tcpdump, tshark, uniquePrefix, waitFor, type Lab } from '../helpers/lab.js';
import type { DecodedFrame } from '../../src/cli/decode.js';
import { compareWithTshark, haveTshark, runTshark } from '../vectors/decode-corpus.js';

const P = uniquePrefix('dec');

describe.skipIf(!isRoot() || !haveTshark())(`decode -r on a lab capture (prefix ${P})`, () => {
  let lab: Lab;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${P}-`));
  const PCAP = path.join(dir, 'curl.pcap');
  const SHORT = path.join(dir, 'curl-s96.pcap');
  const PCAPNG = path.join(dir, 'curl.pcapng');
  let body = '';

  beforeAll(async () => {
    await cleanup(P);
    lab = await labUp(P);
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    const url = `http://${lab.appA.ip}:8080/`;
    await waitFor('appA to answer appB under the policy', async () => ((await curl(lab.ns.appB, url)).code === 0 ? true : undefined), 10_000, 200);
    fs.chmodSync(dir, 0o777); // dumpcap may write as another user
    const caps = [
      tcpdump(lab.ns.underlay, ['-n', '--immediate-mode', '-U', '-i', 'br0', '-w', PCAP, 'udp port 4789']),
      tcpdump(lab.ns.underlay, ['-n', '--immediate-mode', '-U', '-i', 'br0', '-s', '96', '-w', SHORT, 'udp port 4789']),
      tshark(lab.ns.underlay, ['-n', '-i', 'br0', '-F', 'pcapng', '-w', PCAPNG, '-f', 'udp port 4789']),
    ];
    await Promise.all(caps.map((c) => c.ready));
    const r = await curl(lab.ns.appB, url);
    body = r.body;
    // the last ACKs; and libpcap's TPACKET_V3 ring hands packets up in blocks (a
    // 1 s timeout): --immediate-mode and a pause, or SIGINT can leave them unread
    await new Promise((res) => setTimeout(res, 1500));
    await Promise.all(caps.map((c) => c.stop()));
  }, 180_000);

  afterAll(async () => {
    await cleanup(P);
    fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('the curl succeeded under the policy', () => {
    expect(body.trim()).toBe(`appA ${lab.appA.ip}`);
  });

  for (const [what, file] of [
    ['tcpdump -w (pcap)', () => PCAP],
    ['dumpcap (pcapng)', () => PCAPNG],
  ] as const) {
    it(`${what}: every frame decodes down to the inner TCP with the Group Policy ID`, async () => {
      const r = await silkworm(['decode', '-r', file()], { timeoutMs: 30_000 });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const frames = r.stdout.trimEnd().split('\n\n');
      // At least handshake (3), request, response and a FIN each way; delayed ACKs and
      // piggybacked FINs make the exact count vary from run to run.
      expect(frames.length).toBeGreaterThanOrEqual(7);
      frames.forEach((f, i) => {
        expect(f.split('\n')[0]).toMatch(new RegExp(`^Frame ${i + 1}: \\d+ bytes on wire`));
        expect(f).toMatch(/\nVXLAN    @42   GBP, flags 0x88 \[G I\], GBP flags 0x00 \[none\], Group Policy ID \d+ \([0-9A-F]{4}\), VNI 1\n/);
        expect(f).toMatch(/\n  TCP      @84   \d+ > \d+: Flags \[/);
      });
      expect(r.stdout).toMatch(/> 8080: Flags \[S\]/);
      expect(r.stdout).toContain('"GET / HTTP/1.1\\r\\n');
      expect(r.stdout).toContain('"HTTP/1.1 200 OK\\r\\n');
    });

    it(`${what}: decode --json agrees with tshark -T json field by field`, async () => {
      const out = await silkwormOk(['decode', '-r', file(), '--json'], { timeoutMs: 30_000 });
      const frames = JSON.parse(out) as DecodedFrame[];
      const cmp = compareWithTshark(frames, runTshark(file()));
      expect(cmp.mismatches).toEqual([]);
      expect(cmp.skipped).toEqual({});
      expect(cmp.matched).toBeGreaterThan(frames.length * 60);
    });
  }

  it('tcpdump -s 96: every frame marked truncated, decoded as far as it goes, agreeing with tshark', async () => {
    const r = await silkworm(['decode', '-r', SHORT], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    for (const f of r.stdout.trimEnd().split('\n\n')) {
      if (!/^Frame \d+: (\d+) bytes on wire, 96 captured/.test(f)) continue; // a frame of 96 bytes or less is whole
      expect(f).toContain('(truncated by the capture’s snaplen)');
      expect(f).toContain('Group Policy ID');
    }
    const out = await silkwormOk(['decode', '-r', SHORT, '--json'], { timeoutMs: 30_000 });
    const frames = JSON.parse(out) as DecodedFrame[];
    expect(frames.some((f) => f.truncated)).toBe(true);
    const cmp = compareWithTshark(frames, runTshark(SHORT));
    expect(cmp.mismatches).toEqual([]);
  });
});
