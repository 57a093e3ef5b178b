// `silkworm decode --json` against `tshark -T json`, field by field, on a
// corpus of crafted and recorded frames (test/vectors/decode-corpus.ts),
// written by this test as pcap and pcapng files. Every field decode shows
// must equal tshark's (value, byte offset, length); every field tshark shows
// that decode knows must be in decode's output; the only exceptions are the
// deliberate differences listed in DELIBERATE_DIFFERENCES and
// docs/decode-differences.md. Skipped when tshark is not installed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { register, type DecodedFrame } from '../../src/cli/decode.js';
import { writePcap, writePcapng } from '../../src/wire/pcap.js';
import { buildCorpus, compareWithTshark, haveTshark, runTshark } from '../vectors/decode-corpus.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'decode-tshark-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** `silkworm decode -r FILE --json` through register(); a non-zero exit (CliError) is expected for the malformed frames. */
async function decodeJson(file: string): Promise<{ frames: DecodedFrame[]; error: string | null }> {
  let out = '';
  const program = new Command().name('silkworm').exitOverride();
  program.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  register(program, { readStdin: async () => '', write: (s) => (out += s), readFile: (p) => fs.readFileSync(p) });
  let error: string | null = null;
  try {
    await program.parseAsync(['decode', '-r', file, '--json'], { from: 'user' });
  } catch (e) {
    error = (e as Error).message;
  }
  return { frames: JSON.parse(out) as DecodedFrame[], error };
}

describe.skipIf(!haveTshark())('decode --json agrees with tshark -T json', () => {
  const corpus = buildCorpus();

  for (const [format, bytes] of [
    ['pcap (little-endian, µs)', writePcap(corpus)],
    ['pcap (big-endian)', writePcap(corpus, { byteOrder: 'big' })],
    ['pcapng (little-endian, enhanced packet blocks)', writePcapng(corpus)],
    ['pcapng (big-endian)', writePcapng(corpus, { byteOrder: 'big' })],
  ] as const) {
    it(`${format}: every frame, field by field`, async () => {
      const file = path.join(dir, `corpus-${format.replace(/\W+/g, '-')}.${format.startsWith('pcapng') ? 'pcapng' : 'pcap'}`);
      fs.writeFileSync(file, bytes);
      const { frames, error } = await decodeJson(file);
      const packets = runTshark(file);
      const cmp = compareWithTshark(frames, packets);
      expect(cmp.mismatches).toEqual([]);
      expect(cmp.skipped).toEqual({ 'ip.len': 1 }); // the TSO frame: see DELIBERATE_DIFFERENCES
      expect(frames).toHaveLength(corpus.length);
      // the comparison is not vacuous: thousands of fields, every layer kind
      expect(cmp.matched).toBeGreaterThan(1400);
      const kinds = new Set(frames.flatMap((f) => f.layers.map((l) => l.layer)));
      expect([...kinds].sort()).toEqual(['arp', 'ethernet', 'icmp', 'ipv4', 'payload', 'tcp', 'udp', 'vlan', 'vxlan']);
      // the malformed frames make the command fail, naming the first
      const bad = frames.filter((f) => f.errors.length > 0).map((f) => corpus[f.number - 1]!.name);
      expect(bad).toEqual([
        'VXLAN without the I flag',
        'VXLAN with a reserved flag bit (0x8c)',
        'VXLAN with reserved byte 7 set',
        'malformed: UDP length beyond the datagram',
        'malformed: TCP data offset 12',
        'malformed: IPv4 IHL 3',
      ]);
      expect(error).toMatch(/^6 of \d+ frames did not decode cleanly \(frame \d+: VXLAN header at byte 42 has flags 0x80 without the I flag \(0x08\)/);
    }, 120_000);
  }

  it('the comparison fails on a wrong value, a wrong offset, a missing field and a wrong frame length', async () => {
    const file = path.join(dir, 'mutated.pcap');
    fs.writeFileSync(file, writePcap(corpus.slice(0, 8)));
    const packets = runTshark(file);
    const fresh = async () => (await decodeJson(file)).frames;
    let frames = await fresh();
    expect(compareWithTshark(frames, packets).mismatches).toEqual([]);
    const vx = frames[2]!.layers.find((l) => l.layer === 'vxlan')!; // seed SRC_HOST_ETH0
    vx.wire.find((w) => w.name === 'vxlan.gbp')!.value = 2;
    expect(compareWithTshark(frames, packets).mismatches).toEqual(['frame 3 vxlan#1: vxlan.gbp is 2 in decode, 1 in tshark']);
    frames = await fresh();
    frames[2]!.layers.find((l) => l.layer === 'tcp')!.wire.find((w) => w.name === 'tcp.window_size_value')!.offset = 97;
    expect(compareWithTshark(frames, packets).mismatches).toEqual(['frame 3 tcp#1: tcp.window_size_value spans 97+2 in decode, 98+2 in tshark']);
    frames = await fresh();
    const ip = frames[0]!.layers.find((l) => l.layer === 'ipv4')!;
    ip.wire = ip.wire.filter((w) => w.name !== 'ip.ttl');
    expect(compareWithTshark(frames, packets).mismatches).toEqual(['frame 1 ip#1: tshark shows ip.ttl = 64, decode does not']);
    frames = await fresh();
    frames[4]!.originalLength += 1;
    expect(compareWithTshark(frames, packets).mismatches).toEqual([`frame 5: frame.len is ${frames[4]!.originalLength} in decode, ${frames[4]!.originalLength - 1} in tshark`]);
  }, 120_000);
});
