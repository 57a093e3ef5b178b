// The dissector (src/wire/dissect.ts) on what tshark decodes and decode used
// to refuse or misread: TSO captures, snaplen-truncated frames, VXLAN from
// port 4789, VXLAN headers the kernel drops, ICMP errors quoting less than a
// header, source routes; and hex input without a link layer (tcpdump -x), od
// and xxd dumps, garbage. Real bytes: test/vectors/seed002.ts, tcpdump's own -x output, and
// frames from test/vectors/decode-corpus.ts.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { DecodeError, decodeFrame, register } from '../../src/cli/decode.js';
import { CliError } from '../../src/cli/util.js';
import { dissect, type Layer } from '../../src/wire/dissect.js';
import { parseHexDump } from '../../src/wire/hex.js';
import { buildCorpus } from '../vectors/decode-corpus.js';
import { seedBytes } from '../vectors/seed002.js';

const corpus = new Map(buildCorpus().map((f) => [f.name, f]));
const frame = (name: string) => {
  const f = corpus.get(name);
  if (!f) throw new Error(`no corpus frame ${name}`);
  return f;
};
const layer = (layers: Layer[], name: string, nth = 0) => layers.filter((l) => l.layer === name)[nth]!;
const wire = (l: Layer, name: string) => l.wire.find((w) => w.name === name)?.value;

async function run(args: string[], stdin = ''): Promise<{ out: string; error: string | null }> {
  let out = '';
  const program = new Command().name('silkworm').exitOverride();
  program.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  register(program, { readStdin: async () => stdin, write: (s) => (out += s) });
  try {
    await program.parseAsync(['decode', ...args], { from: 'user' });
    return { out, error: null };
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    return { out, error: (e as Error).message };
  }
}

describe('dissect: what tshark decodes', () => {
  it('IPv4 total length 0 (a TSO capture): the frame’s length is used, said so, and the TCP segment decodes', () => {
    const d = dissect(frame('TSO super-frame, IPv4 total length 0').data);
    expect(d.errors).toEqual([]);
    const ip = layer(d.layers, 'ipv4');
    expect(ip.fields).toMatchObject({ totalLen: 0, tso: true, lengthUsed: 3040, checksumOk: true });
    expect(ip.summary).toContain("total length 0 (a TSO capture): using the frame's 3040");
    expect(wire(ip, 'ip.len')).toBe(0);
    expect(layer(d.layers, 'tcp').fields).toMatchObject({ payloadLen: 3000, checksumOk: true });
  });

  it('a snaplen-truncated frame decodes as far as its bytes go, marked truncated, exit status clean', () => {
    const f = frame('snaplen 96 of a VXLAN frame');
    const d = dissect(f.data, { originalLength: f.originalLength });
    expect(d.truncated).toBe(true);
    expect(d.errors).toEqual([]);
    expect(d.layers.map((l) => `${l.depth}:${l.layer}`)).toEqual(['0:ethernet', '0:ipv4', '0:udp', '0:vxlan', '1:ethernet', '1:ipv4', '1:payload']);
    expect(layer(d.layers, 'vxlan').fields.groupPolicyId).toBe(1);
    expect(layer(d.layers, 'ipv4', 1).fields).toMatchObject({ truncated: true, capturedBytes: 32, totalLen: 77 });
    expect(layer(d.layers, 'payload').summary).toBe('12 bytes (the capture ends inside the tcp header: 12 of 20 bytes captured) ddbe1e618c783a6f80d313ea');
    const u = frame('snaplen 64 of a UDP datagram');
    const du = dissect(u.data, { originalLength: u.originalLength });
    expect(layer(du.layers, 'udp').fields).toMatchObject({ checksumOk: null, truncated: true, length: 208 });
    expect(wire(layer(du.layers, 'udp'), 'udp.checksum.status')).toBe(2);
    expect(layer(du.layers, 'payload').fields.length).toBe(22);
  });

  it('the same bytes without the original length: decoded, but an error (exit 1) that says it may be a short capture', () => {
    const f = frame('snaplen 96 of a VXLAN frame');
    const d = dissect(f.data);
    expect(d.errors.map((e) => e.message)).toEqual(['IPv4 header at byte 14 has total length 127, but only 82 bytes are present (truncated capture?)']);
    expect(layer(d.layers, 'vxlan').fields.groupPolicyId).toBe(1);
  });

  it('VXLAN from UDP source port 4789 as well as to it', () => {
    const d = dissect(frame('VXLAN on UDP source port 4789').data);
    expect(layer(d.layers, 'udp').summary).toBe('4789 > 51000 (VXLAN), length 90, checksum 0x0000 (none)');
    expect(layer(d.layers, 'vxlan').fields).toMatchObject({ groupPolicyId: 5, vni: 1 });
    expect(layer(d.layers, 'tcp').fields).toMatchObject({ dstPort: 8080, flagsText: 'S' });
  });

  it('VXLAN without I, with reserved flag bits, with reserved byte 7: shown, the inner frame decoded, the kernel’s drop an error', () => {
    const cases: [string, string, string, number][] = [
      ['VXLAN without the I flag', 'no I flag', 'VXLAN header at byte 42 has flags 0x80 without the I flag (0x08)', 42],
      ['VXLAN with a reserved flag bit (0x8c)', 'reserved flag bits 0x04', 'VXLAN header at byte 42 has reserved flag bits 0x04 set (flags 0x8c): the kernel drops it', 42],
      ['VXLAN with reserved byte 7 set', 'reserved byte 0x01', 'VXLAN header at byte 42 has reserved byte 7 = 0x01, not 0: the kernel drops it', 49],
    ];
    for (const [name, why, message, offset] of cases) {
      const d = dissect(frame(name).data);
      const vx = layer(d.layers, 'vxlan');
      expect(vx.summary).toContain(`(${why}: the kernel drops this packet)`);
      expect(vx.fields.kernelDrops).toBe(true);
      expect(d.errors).toEqual([{ layer: 'vxlan', offset, message }]);
      expect(d.layers.at(-1)!.layer).toBe('tcp');
      expect(d.layers.at(-1)!.depth).toBe(1);
    }
    const ok = dissect(frame('VXLAN-GBP, Group Policy ID 0x1234, D and A set').data);
    expect(ok.errors).toEqual([]);
    expect(layer(ok.layers, 'vxlan').fields).toMatchObject({ gbpFlagNames: ['D', 'A'], groupPolicyId: 0x1234, kernelDrops: false });
  });

  it('an ICMP error quoting 12 bytes shows the fields that are there', () => {
    const d = dissect(frame('ICMP port unreachable quoting 12 bytes').data);
    expect(d.errors).toEqual([]);
    const ic = layer(d.layers, 'icmp');
    expect(ic.summary).toBe(
      'destination unreachable, port unreachable, length 20, checksum 0x8925 (correct); quotes only 12 bytes of an IPv4 header: length 29, id 4660, ttl 64, proto UDP',
    );
    expect(ic.fields.quoted).toMatchObject({ complete: false, quotedBytes: 12, totalLen: 29, protocol: 17 });
    expect(ic.wire.filter((w) => w.name.startsWith('ip.')).map((w) => w.name)).toEqual(['ip.version', 'ip.hdr_len', 'ip.dsfield', 'ip.len', 'ip.id', 'ip.ttl', 'ip.proto', 'ip.checksum']);
  });

  it('UDP under a source route: the checksum is checked against the final hop (RFC 791)', () => {
    const good = dissect(frame('LSRR, UDP checksum over the final hop').data);
    expect(layer(good.layers, 'ipv4').fields).toMatchObject({ sourceRoute: 'LSRR', dst: '198.18.0.2', finalDst: '198.18.0.9' });
    expect(layer(good.layers, 'udp').fields).toMatchObject({ checksumOk: true });
    const bad = dissect(frame('LSRR, UDP checksum over the header destination (wrong)').data);
    expect(layer(bad.layers, 'udp').fields).toMatchObject({ checksumOk: false, checksumExpected: 0x241b });
    const ssrr = dissect(frame('SSRR, UDP checksum over the final hop').data);
    expect(layer(ssrr.layers, 'udp').fields.checksumOk).toBe(true);
  });

  it('a malformed header: the layers before it are kept with the error and its offset', () => {
    const b = seedBytes('SRC_HOST_ETH0');
    b[84 + 12] = 0xf0;
    const d = dissect(b);
    expect(d.layers.map((l) => l.layer)).toEqual(['ethernet', 'ipv4', 'udp', 'vxlan', 'ethernet', 'ipv4']);
    expect(d.errors).toEqual([{ layer: 'tcp', offset: 84, message: 'TCP header at byte 84 has data offset 60 bytes, but the segment holds only 57' }]);
    let thrown: unknown = null;
    try {
      decodeFrame(b);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(DecodeError);
    expect((thrown as DecodeError).layers).toHaveLength(6);
  });

  it('every wire field lies inside the frame and carries a finite value', () => {
    for (const f of corpus.values()) {
      const d = dissect(f.data, { originalLength: f.originalLength });
      for (const l of d.layers) {
        for (const w of l.wire) {
          if (w.offset >= 0) expect(w.offset + w.length, `${f.name}: ${w.name}`).toBeLessThanOrEqual(f.data.length);
          if (typeof w.value === 'number') expect(Number.isFinite(w.value), `${f.name}: ${w.name}`).toBe(true);
        }
      }
    }
  });
});

describe('hex without a link layer, od, xxd, garbage', () => {
  // tcpdump 4.99 `-nx` of an ARP request and of a snaplen-cut VXLAN frame (no link layer), as printed
  const TCPDUMP_X_ARP = `00:00:08.008000 ARP, Request who-has 198.18.200.2 tell 198.18.200.1, length 28
\t0x0000:  0001 0800 0604 0001 6e63 3ae1 6f0b c612
\t0x0010:  c801 0000 0000 0000 c612 c802
`;
  const TCPDUMP_X_TRUNCATED = `00:00:16.016000 IP 10.0.16.16.36821 > 10.0.32.14.4789: VXLAN, flags [I] (0x88), vni 1
IP 10.255.99.3.56766 > 10.255.132.2.7777:  [|tcp]
\t0x0000:  4500 007f 93bf 0000 4011 a291 0a00 1010  E.......@.......
\t0x0010:  0a00 200e 8fd5 12b5 006b 0000 8800 0001  .........k......
\t0x0020:  0000 0100 eeee 0aff 8400 eeee 0aff 6300  ..............c.
\t0x0030:  0800 4500 004d 9a12 4000 3f06 a495 0aff  ..E..M..@.?.....
\t0x0040:  6303 0aff 8402 ddbe 1e61 8c78 3a6f 80d3  c........a.x:o..
\t0x0050:  13ea                                     ..
`;

  it('tcpdump -x of an ARP packet is read as ARP', async () => {
    const { out, error } = await run([], TCPDUMP_X_ARP);
    expect(error).toBeNull();
    expect(out).toBe('ARP      @0    Request who-has 198.18.200.2 tell 198.18.200.1 (6e:63:3a:e1:6f:0b)\n');
    expect(dissect(parseHexDump(TCPDUMP_X_ARP)).start).toBe('arp');
  });

  it('tcpdump -x of a truncated IPv4 packet is read as IPv4, decoded as far as it goes, and the truncation is the error', async () => {
    const { out, error } = await run([], TCPDUMP_X_TRUNCATED);
    expect(out.split('\n')[0]).toMatch(/^IPv4     @0    10\.0\.16\.16 > 10\.0\.32\.14: .*, 82 of 127 bytes captured$/);
    expect(out).toContain('VXLAN    @28   GBP, flags 0x88 [G I], GBP flags 0x00 [none], Group Policy ID 1 (0001), VNI 1');
    expect(out).toContain('Error    @0    IPv4 header at byte 0 has total length 127, but only 82 bytes are present (truncated capture?)');
    expect(error).toBe('IPv4 header at byte 0 has total length 127, but only 82 bytes are present (truncated capture?)');
  });

  it('garbage is never decoded as Ethernet with exit 0; --from still forces', async () => {
    const junk = '0123 4567 89ab cdef 0011 2233 4455 6677 8899 aabb';
    const { out, error } = await run([junk]);
    expect(out).toBe('');
    expect(error).toBe(
      'cannot tell where the packet starts: not an Ethernet frame with a known EtherType (bytes 12-13 are 0x4455), an IPv4 header with a correct checksum, an ARP packet or a VXLAN header; say where with --from',
    );
    const forced = await run(['--from', 'ethernet', junk]);
    expect(forced.error).toBeNull();
    expect(forced.out).toContain('EtherType 0x4455 is not decoded');
  });

  it('od -Ax -tx1 (and octal offsets, and * for repeated lines) is read correctly; od -x is refused', async () => {
    const b = seedBytes('SRC_CONTAINER_ETH0');
    const odLines = (radix: number, width: number) => {
      const lines: string[] = [];
      for (let o = 0; o < b.length; o += 16) {
        lines.push(o.toString(radix).padStart(width, '0') + ' ' + Array.from(b.subarray(o, o + 16), (x) => x.toString(16).padStart(2, '0')).join(' '));
      }
      lines.push(b.length.toString(radix).padStart(width, '0'));
      return lines.join('\n') + '\n';
    };
    for (const [radix, width] of [
      [16, 6],
      [8, 7],
      [10, 7],
    ] as const) {
      expect(Array.from(parseHexDump(odLines(radix, width))), `radix ${radix}`).toEqual(Array.from(b));
    }
    const { out } = await run([], odLines(16, 6));
    expect(out).toContain('TCP      @34   56766 > 7777: Flags [P.], cksum 0xfd42 (incorrect -> 0x0fc9)');
    // 16 bytes, then 32 equal bytes folded into "*", then 3
    const star = '000000 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50\n000010 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n*\n000030 78 79 7a\n000033\n';
    expect(parseHexDump(star)).toHaveLength(51);
    expect(Array.from(parseHexDump(star).subarray(16, 48))).toEqual(new Array(32).fill(0));
    expect(() => parseHexDump('0000000 0045 4d00 129a 0040\n0000010\n')).toThrow(/od output with 16-bit \(or wider\) words/);
    expect(() => parseHexDump('000000 45 00\n000010 00 00\n')).toThrow(/offsets do not count its bytes in hex, octal or decimal/);
  });

  it('xxd is read correctly; xxd -e (little-endian words) is refused', () => {
    const xxd = '00000000: 4500 004d 9a12 4000 4006 a395 0aff 6303  E..M..@.@.....c.\n00000010: 0aff 8402                                ....\n';
    expect(Buffer.from(parseHexDump(xxd)).toString('hex')).toBe('4500004d9a1240004006a3950aff63030aff8402');
    expect(() => parseHexDump('00000000: 4d000045 00409a12  M..E..@.\n')).toThrow(/xxd -e/);
  });
});
