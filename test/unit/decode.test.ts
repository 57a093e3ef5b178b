import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { decodeFrame, detectStart, formatLayers, register, tcpOptions, type Layer } from '../../src/cli/decode.js';
import { CliError } from '../../src/cli/util.js';
import { parseHexDump } from '../../src/wire/hex.js';
import { SRC_CONTAINER_ETH0, SRC_HOST_ETH0, seedBytes } from '../vectors/seed002.js';

const UNDERLAY = seedBytes('SRC_HOST_ETH0');

function layer(layers: Layer[], name: string, nth = 0): Layer {
  const found = layers.filter((l) => l.layer === name)[nth];
  if (!found) throw new Error(`no ${name} layer #${nth}`);
  return found;
}

function cliError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    return (e as Error).message;
  }
  throw new Error('expected a CliError');
}

/** Run `silkworm decode ...` through register() on a fresh program; returns stdout. */
async function runCommand(args: string[], stdin = ''): Promise<string> {
  let out = '';
  const program = new Command().name('silkworm').exitOverride();
  program.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  register(program, { readStdin: async () => stdin, write: (s) => (out += s) });
  await program.parseAsync(['decode', ...args], { from: 'user' });
  return out;
}

describe('decodeFrame', () => {
  it('decodes the seed’s underlay frame through VXLAN-GBP to the inner TCP segment', () => {
    const layers = decodeFrame(UNDERLAY);
    expect(layers.map((l) => `${l.depth}:${l.layer}@${l.offset}`)).toEqual([
      '0:ethernet@0',
      '0:ipv4@14',
      '0:udp@34',
      '0:vxlan@42',
      '1:ethernet@50',
      '1:ipv4@64',
      '1:tcp@84',
      '1:payload@116',
    ]);
    expect(layer(layers, 'vxlan').fields).toMatchObject({
      flags: 0x88,
      flagsHex: '0x88',
      flagNames: ['G', 'I'],
      gbp: true,
      gbpFlags: 0,
      gbpFlagNames: [],
      groupPolicyId: 1,
      groupPolicyIdHex: '0001',
      vni: 1,
    });
    expect(layer(layers, 'udp').fields).toMatchObject({ srcPort: 36821, dstPort: 4789, length: 107, checksum: 0, checksumOk: null });
    expect(layer(layers, 'ipv4').fields).toMatchObject({ src: '10.0.16.16', dst: '10.0.32.14', ttl: 64, protocol: 17, checksumOk: true });
    const inner = layer(layers, 'ipv4', 1).fields;
    expect(inner).toMatchObject({ src: '10.255.99.3', dst: '10.255.132.2', ttl: 63, ident: 39442, flags: ['DF'], checksum: 0xa495 });
    expect(layer(layers, 'tcp').fields).toMatchObject({
      srcPort: 56766,
      dstPort: 7777,
      seq: 2356689519,
      ack: 2161316842,
      window: 215,
      flagsText: 'P.',
      flagNames: ['PSH', 'ACK'],
      checksum: 0x0fc9,
      checksumOk: true,
      options: ['nop', 'nop', 'TS val 530639 ecr 679117'],
      payloadLen: 25,
    });
    expect(layer(layers, 'payload').fields).toMatchObject({ length: 25, text: 'cf-networking with silk!\n' });
  });

  it('prints the acceptance line items: flags 0x88, Group Policy ID 1, VNI 1, the inner flow, TTL 63', () => {
    const text = formatLayers(decodeFrame(UNDERLAY));
    expect(text).toContain('GBP, flags 0x88 [G I], GBP flags 0x00 [none], Group Policy ID 1 (0001), VNI 1');
    expect(text).toContain('  IPv4     @64   10.255.99.3 > 10.255.132.2: tos 0x0, ttl 63, id 39442, offset 0, flags [DF], proto TCP (6), length 77');
    expect(text).toContain(
      '  TCP      @84   56766 > 7777: Flags [P.], cksum 0x0fc9 (correct), seq 2356689519:2356689544, ack 2161316842, win 215, options [nop,nop,TS val 530639 ecr 679117], length 25',
    );
  });

  it('reports the source container’s unfilled TCP checksum as tcpdump does', () => {
    const layers = decodeFrame(seedBytes('SRC_CONTAINER_ETH0'));
    expect(layer(layers, 'tcp').fields).toMatchObject({ checksum: 0xfd42, checksumOk: false, checksumExpected: 0x0fc9 });
    expect(layer(layers, 'tcp').summary).toContain('cksum 0xfd42 (incorrect -> 0x0fc9)');
  });

  it('reports a wrong IPv4 header checksum with the expected value', () => {
    const b = seedBytes('DST_CONTAINER_ETH0');
    b[24] = 0x12; // checksum 0xa595 → 0x1295
    const ip = layer(decodeFrame(b), 'ipv4');
    expect(ip.fields).toMatchObject({ checksum: 0x1295, checksumOk: false, checksumExpected: 0xa595 });
  });

  it('auto-detects an IPv4 packet and a VXLAN payload; --from forces', () => {
    const ip = UNDERLAY.slice(14);
    const vx = UNDERLAY.slice(42);
    expect(detectStart(UNDERLAY)).toBe('ethernet');
    expect(detectStart(ip)).toBe('ip');
    expect(detectStart(vx)).toBe('vxlan');
    expect(decodeFrame(ip).map((l) => l.layer)).toEqual(['ipv4', 'udp', 'vxlan', 'ethernet', 'ipv4', 'tcp', 'payload']);
    expect(decodeFrame(ip)[0]!.offset).toBe(0);
    expect(decodeFrame(vx, 'vxlan').map((l) => l.layer)).toEqual(['vxlan', 'ethernet', 'ipv4', 'tcp', 'payload']);
    // forced wrong: the IP packet read as Ethernet has EtherType 0x0a00 (the source address), left undecoded
    expect(decodeFrame(ip, 'ethernet').map((l) => l.summary)[1]).toMatch(/^113 bytes \(EtherType 0x0a00 is not decoded\) 10100a00200e8fd5/);
    expect(cliError(() => decodeFrame(UNDERLAY, 'ip'))).toBe(
      'IPv4 header at byte 0 has header length 8 (IHL 2), below the minimum of 20',
    );
    expect(cliError(() => decodeFrame(vx, 'ip'))).toBe(
      'IPv4 header at byte 0 has version 8, not 4 (use --from to say where the packet starts)',
    );
  });

  it('decodes ICMP echo and a port unreachable with its quoted UDP header (real kernel frames)', () => {
    const echo = parseHexDump(
      '327e5e04257c6e633ae16f0b080045000028b34440004001 6b67c612c801c612c8020800bab51f250001000102030405060708090a0b',
    );
    const e = layer(decodeFrame(echo), 'icmp');
    expect(e.fields).toMatchObject({ type: 8, typeName: 'echo request', code: 0, echoId: 7973, echoSeq: 1, checksumOk: true });
    const unreach = parseHexDump(
      '6e633ae16f0b327e5e04257c080045c0003f927900004001cb5bc612c802c612c8010303d910000000004500002375a840004011a8f8c612c801c612c802aa400009000f1c4a6869207369 6c6b',
    );
    const u = layer(decodeFrame(unreach), 'icmp');
    expect(u.fields).toMatchObject({
      type: 3,
      code: 3,
      codeName: 'port unreachable',
      checksumOk: true,
      quoted: { src: '198.18.200.1', dst: '198.18.200.2', protocol: 17, srcPort: 43584, dstPort: 9, quotedBytes: 35 },
    });
    expect(u.summary).toBe(
      'destination unreachable, port unreachable, length 43, checksum 0xd910 (correct); quotes UDP 198.18.200.1:43584 > 198.18.200.2:9 (id 30120, 35 bytes quoted)',
    );
  });

  it('decodes ARP', () => {
    const arp = parseHexDump('ffffffffffff6e633ae16f0b08060001080006040001 6e633ae16f0bc612c801000000000000c612c802');
    const a = layer(decodeFrame(arp), 'arp');
    expect(a.summary).toBe('Request who-has 198.18.200.2 tell 198.18.200.1 (6e:63:3a:e1:6f:0b)');
  });

  it('formats TCP options like tcpdump', () => {
    const o = Uint8Array.of(2, 4, 0x05, 0x82, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7);
    expect(tcpOptions(o, 0, o.length)).toEqual(['mss 1410', 'sackOK', 'TS val 1 ecr 2', 'nop', 'wscale 7']);
    expect(tcpOptions(Uint8Array.of(8, 40, 0, 0), 0, 4)).toEqual(['bad opt 8 len 40']);
  });

  describe('malformed input: one sentence naming the layer, the problem and the byte offset', () => {
    it('truncated Ethernet', () => {
      expect(cliError(() => decodeFrame(UNDERLAY.slice(0, 10), 'ethernet'))).toBe(
        'Ethernet header at byte 0 is truncated: 10 bytes left, 14 needed',
      );
    });
    it('truncated capture: IPv4 total length beyond the bytes', () => {
      expect(cliError(() => decodeFrame(seedBytes('SRC_CONTAINER_ETH0').slice(0, 50)))).toBe(
        'IPv4 header at byte 14 has total length 77, but only 36 bytes are present (truncated capture?)',
      );
    });
    it('IHL longer than the packet, and below 5', () => {
      const b = UNDERLAY.slice(0, 50);
      b[14] = 0x4f;
      expect(cliError(() => decodeFrame(b))).toBe('IPv4 header at byte 14 has header length 60, but only 36 bytes are present');
      b[14] = 0x43;
      expect(cliError(() => decodeFrame(b))).toBe('IPv4 header at byte 14 has header length 12 (IHL 3), below the minimum of 20');
    });
    it('UDP length lying', () => {
      const b = UNDERLAY.slice();
      b[39] = 0xff; // UDP length 107 → 255
      expect(cliError(() => decodeFrame(b))).toBe('UDP header at byte 34 has length 255, but the IP payload holds only 107 bytes');
    });
    it('VXLAN without the I flag', () => {
      const b = UNDERLAY.slice();
      b[42] = 0x80;
      expect(cliError(() => decodeFrame(b))).toBe('VXLAN header at byte 42 has flags 0x80 without the I flag (0x08)');
    });
    it('inner TCP data offset past the segment', () => {
      const b = UNDERLAY.slice();
      b[84 + 12] = 0xf0; // 60-byte header in a 57-byte segment
      expect(cliError(() => decodeFrame(b))).toBe('TCP header at byte 84 has data offset 60 bytes, but the segment holds only 57');
    });
    it('nothing at all', () => {
      expect(cliError(() => decodeFrame(new Uint8Array(0)))).toBe('there are no bytes to decode');
    });
  });
});

describe('silkworm decode (through register())', () => {
  it('decodes a tcpdump -XX dump from stdin', async () => {
    const out = await runCommand([], SRC_HOST_ETH0);
    expect(out).toContain('Group Policy ID 1 (0001), VNI 1');
    expect(out).toContain('flags 0x88 [G I]');
    expect(out).toContain('10.255.99.3 > 10.255.132.2: tos 0x0, ttl 63');
    expect(out).toContain('56766 > 7777: Flags [P.]');
    expect(out.trimEnd().split('\n')).toHaveLength(8);
  });

  it('decodes plain hex from the arguments, --from vxlan', async () => {
    const hex = Buffer.from(UNDERLAY.subarray(42)).toString('hex').match(/.{1,4}/g)!;
    const out = await runCommand(['--from', 'vxlan', ...hex]);
    expect(out.split('\n')[0]).toBe('VXLAN    @0    GBP, flags 0x88 [G I], GBP flags 0x00 [none], Group Policy ID 1 (0001), VNI 1');
  });

  it('--json prints the layers as a JSON array', async () => {
    const out = await runCommand(['--json'], SRC_CONTAINER_ETH0);
    const layers = JSON.parse(out) as Layer[];
    expect(layers.map((l) => l.layer)).toEqual(['ethernet', 'ipv4', 'tcp', 'payload']);
    expect(layers[1]!.fields.ttl).toBe(64);
    expect(layers[2]!.fields.checksumExpected).toBe(0x0fc9);
  });

  it('bad hex and malformed packets fail with one sentence (CliError → exit 1 in main)', async () => {
    await expect(runCommand(['45', '0g'])).rejects.toThrow(new CliError('cannot read the hex input: line 2, column 2: "g" is not a hex digit'));
    await expect(runCommand(['aaaa', '0aff'])).rejects.toBeInstanceOf(CliError);
    await expect(runCommand(['aaaa', '0aff'])).rejects.toThrow('Ethernet header at byte 0 is truncated: 4 bytes left, 14 needed');
  });

  it('rejects an unknown --from through commander', async () => {
    await expect(runCommand(['--from', 'tcp', '00'])).rejects.toBeInstanceOf(CommanderError);
  });

  it('--help shows an example', async () => {
    let help = '';
    const program = new Command().name('silkworm').exitOverride();
    program.configureOutput({ writeOut: (s) => (help += s), writeErr: (s) => (help += s) });
    register(program, { readStdin: async () => '', write: () => {} });
    await expect(program.parseAsync(['decode', '--help'], { from: 'user' })).rejects.toMatchObject({ code: 'commander.helpDisplayed' });
    expect(help).toContain('Usage: silkworm decode [options] [hex...]');
    expect(help).toContain('--from <layer>');
    expect(help).toContain('tcpdump -XX -v -c 1 -i eth0 udp port 4789 | silkworm decode');
  });
});
