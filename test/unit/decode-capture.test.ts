// Capture files for `silkworm decode`: the pcap/pcapng reader
// (src/wire/pcap.ts) on real bytes, and `decode -r FILE` / a capture on stdin
// through register().
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { register } from '../../src/cli/decode.js';
import { CliError } from '../../src/cli/util.js';
import { captureFormat, readCapture, writePcap, writePcapng } from '../../src/wire/pcap.js';
import { parseHexDump } from '../../src/wire/hex.js';
import { seedBytes } from '../vectors/seed002.js';

const UNDERLAY = seedBytes('SRC_HOST_ETH0');
const CONTAINER = seedBytes('SRC_CONTAINER_ETH0');

/** Run `silkworm decode ...`; returns stdout and the CliError message (null when it exited 0). */
async function run(args: string[], o: { stdin?: string | Uint8Array; files?: Record<string, Uint8Array> } = {}) {
  let out = '';
  const program = new Command().name('silkworm').exitOverride();
  program.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  register(program, {
    readStdin: async () => o.stdin ?? '',
    write: (s) => (out += s),
    readFile: (p) => {
      const f = o.files?.[p];
      if (!f) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return f;
    },
  });
  try {
    await program.parseAsync(['decode', ...args], { from: 'user' });
    return { out, error: null as string | null };
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    return { out, error: (e as Error).message };
  }
}

describe('pcap reader', () => {
  // tcpdump -w of one 42-byte ARP request: global header (little-endian, µs, snaplen 262144, Ethernet), one record.
  const TCPDUMP_FILE = parseHexDump(
    'd4c3b2a1 0200 0400 00000000 00000000 00000400 01000000' +
      ' 4b8a2b69 40e20100 2a000000 2a000000' +
      ' ffffffffffff6e633ae16f0b08060001080006040001 6e633ae16f0bc612c801000000000000c612c802',
  );

  it('reads a file tcpdump wrote: magic, byte order, timestamp, lengths, link type', () => {
    expect(captureFormat(TCPDUMP_FILE)).toBe('pcap');
    const cap = readCapture(TCPDUMP_FILE);
    expect(cap.error).toBeNull();
    expect(cap.byteOrder).toBe('little');
    expect(cap.frames).toHaveLength(1);
    expect(cap.frames[0]).toMatchObject({ number: 1, linkType: 1, capturedLength: 42, originalLength: 42, time: '1764461131.123456000', dataOffset: 40 });
    expect(cap.frames[0]!.data[12]).toBe(0x08);
  });

  it('both byte orders and nanosecond timestamps', () => {
    for (const byteOrder of ['little', 'big'] as const) {
      const file = writePcap([{ data: CONTAINER, sec: 1700000000, frac: 999_999_999 }], { byteOrder, nsec: true });
      const cap = readCapture(file);
      expect(cap.byteOrder).toBe(byteOrder);
      expect(cap.frames[0]!.time).toBe('1700000000.999999999');
      expect(Array.from(cap.frames[0]!.data)).toEqual(Array.from(CONTAINER));
    }
    expect(Array.from(writePcap([], { byteOrder: 'big' }).subarray(0, 4))).toEqual([0xa1, 0xb2, 0xc3, 0xd4]);
  });

  it('pcapng: enhanced and simple packet blocks, both byte orders, skipping other blocks', () => {
    for (const byteOrder of ['little', 'big'] as const) {
      for (const simple of [false, true]) {
        const file = writePcapng([{ data: UNDERLAY, sec: 5, frac: 250000 }, { data: CONTAINER.slice(0, 40), originalLength: CONTAINER.length }], { byteOrder, simple });
        const cap = readCapture(file);
        expect(cap.error).toBeNull();
        expect(cap.format).toBe('pcapng');
        expect(cap.frames.map((f) => [f.number, f.capturedLength, f.originalLength])).toEqual([
          [1, UNDERLAY.length, UNDERLAY.length],
          [2, 40, CONTAINER.length],
        ]);
        if (!simple) expect(cap.frames[0]!.time).toBe('5.250000000');
      }
    }
  });

  it('pcapng: if_tsresol (nanoseconds) and a name resolution block between packets', () => {
    const f = writePcapng([{ data: CONTAINER }]);
    // rebuild: SHB (28) + IDB with option if_tsresol=9 + NRB (empty, 16 bytes) + the EPB
    const shb = f.subarray(0, 28);
    const idb = parseHexDump('01000000 20000000 0100 0000 00000400 0900 0100 09000000 00000000 20000000');
    const nrb = parseHexDump('04000000 10000000 00000000 10000000');
    const epb = f.slice(48);
    // timestamp 1.5 s in nanoseconds: 1500000000 = 0x59682f00
    epb.set([0, 0, 0, 0, 0x00, 0x2f, 0x68, 0x59], 12);
    const file = new Uint8Array([...shb, ...idb, ...nrb, ...epb]);
    const cap = readCapture(file);
    expect(cap.error).toBeNull();
    expect(cap.frames).toHaveLength(1);
    expect(cap.frames[0]!.time).toBe('1.500000000');
  });

  it('a damaged file: the frames before the damage, then an error with its byte offset', () => {
    const file = writePcap([{ data: UNDERLAY }, { data: CONTAINER }]);
    const cut = readCapture(file.subarray(0, file.length - 10));
    expect(cut.frames).toHaveLength(1);
    expect(cut.error).toEqual({
      offset: 24 + 16 + UNDERLAY.length,
      message: `pcap record at byte ${24 + 16 + UNDERLAY.length} is cut short in the middle of a packet: ${CONTAINER.length} bytes captured, ${CONTAINER.length - 10} in the file`,
    });
    expect(readCapture(new Uint8Array([1, 2, 3, 4, 5])).error!.message).toBe('not a pcap or pcapng file (magic 01 02 03 04)');
    expect(readCapture(file.subarray(0, 10)).error!.message).toBe('pcap global header is truncated: 10 bytes, 24 needed');
    const ng = writePcapng([{ data: CONTAINER }]);
    ng[ng.length - 1] = 0x7f; // trailing block length no longer matches
    expect(readCapture(ng).error!.message).toMatch(/^pcapng block at byte 48 ends with length \d+, not the \d+ it started with$/);
  });
});

describe('silkworm decode -r / a capture on stdin', () => {
  const file = writePcap([{ data: UNDERLAY, sec: 1, frac: 5 }, { data: CONTAINER }, { data: UNDERLAY.slice(0, 96), originalLength: UNDERLAY.length }]);

  it('prints every frame, numbered from 1 as tshark numbers them, down to the inner TCP with the Group Policy ID', async () => {
    const { out, error } = await run(['-r', 'x.pcap'], { files: { 'x.pcap': file } });
    expect(error).toBeNull();
    const frames = out.trimEnd().split('\n\n');
    expect(frames).toHaveLength(3);
    expect(frames[0]!.split('\n')[0]).toBe('Frame 1: 141 bytes on wire, 141 captured, time 1.000005000');
    expect(frames[0]).toContain('VXLAN    @42   GBP, flags 0x88 [G I], GBP flags 0x00 [none], Group Policy ID 1 (0001), VNI 1');
    expect(frames[0]).toContain('  TCP      @84   56766 > 7777: Flags [P.], cksum 0x0fc9 (correct)');
    expect(frames[1]!.split('\n')[0]).toBe('Frame 2: 91 bytes on wire, 91 captured, time 0.000000000');
    expect(frames[2]!.split('\n')[0]).toBe('Frame 3: 141 bytes on wire, 96 captured (truncated by the capture’s snaplen), time 0.000000000');
    expect(frames[2]).toContain('82 of 127 bytes captured');
  });

  it('--json: one entry per frame with its layers', async () => {
    const { out } = await run(['-r', 'x.pcap', '--json'], { files: { 'x.pcap': file } });
    const frames = JSON.parse(out) as { number: number; truncated: boolean; layers: { layer: string; fields: Record<string, unknown> }[] }[];
    expect(frames.map((f) => [f.number, f.truncated])).toEqual([
      [1, false],
      [2, false],
      [3, true],
    ]);
    expect(frames[0]!.layers.find((l) => l.layer === 'vxlan')!.fields.groupPolicyId).toBe(1);
  });

  it('a pcap or pcapng on stdin is recognised by its magic', async () => {
    for (const bytes of [file, writePcapng([{ data: UNDERLAY }])]) {
      const { out, error } = await run([], { stdin: bytes });
      expect(error).toBeNull();
      expect(out.split('\n')[0]).toMatch(/^Frame 1: 141 bytes on wire, 141 captured, time \d+\.\d{9}$/);
      expect(out).toContain('Group Policy ID 1 (0001)');
    }
    // hex text arriving as bytes on stdin still reads as hex
    const { out } = await run([], { stdin: new TextEncoder().encode(Buffer.from(CONTAINER).toString('hex')) });
    expect(out.split('\n')[0]).toMatch(/^Ethernet @0 /);
  });

  it('link types: raw IPv4 (228, 101) decoded; others refused per frame with a clear message, exit 1', async () => {
    for (const linkType of [228, 101]) {
      const { out, error } = await run(['-r', 'r.pcap'], { files: { 'r.pcap': writePcap([{ data: UNDERLAY.slice(14) }], { linkType }) } });
      expect(error).toBeNull();
      expect(out.split('\n')[1]).toMatch(/^IPv4     @0    10\.0\.16\.16 > 10\.0\.32\.14/);
    }
    const { out, error } = await run(['-r', 's.pcap'], { files: { 's.pcap': writePcap([{ data: UNDERLAY }], { linkType: 113 }) } });
    expect(out).toContain('Error    @0    frame 1 has link type 113 (Linux cooked (SLL)), not decoded');
    expect(error).toBe(
      '1 of 1 frames did not decode cleanly (frame 1: frame 1 has link type 113 (Linux cooked (SLL)), not decoded: decode reads Ethernet (1) and raw IPv4 (228, 101); capture on one interface (tcpdump -i eth0), not -i any)',
    );
  });

  it('a malformed frame: the frames and layers before it, the error with its offset, exit 1', async () => {
    const bad = UNDERLAY.slice();
    bad[84 + 12] = 0xf0;
    const { out, error } = await run(['-r', 'b.pcap'], { files: { 'b.pcap': writePcap([{ data: CONTAINER }, { data: bad }]) } });
    expect(out).toContain('Frame 1: 91 bytes');
    const f2 = out.trimEnd().split('\n\n')[1]!.split('\n');
    expect(f2.slice(-2)).toEqual([
      '  IPv4     @64   10.255.99.3 > 10.255.132.2: tos 0x0, ttl 63, id 39442, offset 0, flags [DF], proto TCP (6), length 77, checksum 0xa495 (correct)',
      '  Error    @84   TCP header at byte 84 has data offset 60 bytes, but the segment holds only 57',
    ]);
    expect(error).toBe('1 of 2 frames did not decode cleanly (frame 2: TCP header at byte 84 has data offset 60 bytes, but the segment holds only 57)');
  });

  it('a file cut short: every whole frame, then the damage; not a capture; no such file', async () => {
    const { out, error } = await run(['-r', 'c.pcap'], { files: { 'c.pcap': file.subarray(0, file.length - 1) } });
    expect(out.split('\n\n')).toHaveLength(3);
    expect(out).toContain('Error: pcap record at byte 288 is cut short in the middle of a packet: 96 bytes captured, 95 in the file (file byte 288)');
    expect(error).toMatch(/^the capture file is damaged after 2 frames/);
    expect((await run(['-r', 't.txt'], { files: { 't.txt': new TextEncoder().encode('4500') } })).error).toBe(
      't.txt is not a pcap or pcapng file (it starts 34 35 30 30); for a hex dump, give it on stdin: silkworm decode < t.txt',
    );
    expect((await run(['-r', 'nope.pcap'])).error).toBe('cannot read nope.pcap: no such file');
    expect((await run(['-r', 'x.pcap', '4500'], { files: { 'x.pcap': file } })).error).toBe('give either a capture file with -r or hex arguments, not both');
  });
});
