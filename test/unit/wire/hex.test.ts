import { describe, expect, it } from 'vitest';
import { parseHexDump, toHex } from '../../../src/wire/hex.js';
import { SEED002_DUMPS, SRC_CONTAINER_ETH0 } from '../../vectors/seed002.js';

describe('parseHexDump', () => {
  it('reads a tcpdump -XX dump with header lines, tabs and the ASCII column', () => {
    const b = parseHexDump(SRC_CONTAINER_ETH0);
    expect(b.length).toBe(91);
    expect(toHex(b, 0, 16)).toBe('aaaa0aff6303eeee0aff630308004500');
    expect(toHex(b, 80)).toBe('776974682073696c6b210a'); // "with silk!\n"
    expect(new TextDecoder().decode(b.subarray(66))).toBe('cf-networking with silk!\n');
  });

  it('every seed dump has the length tcpdump reported (frame = IP length + 14)', () => {
    const lens = Object.values(SEED002_DUMPS).map((d) => parseHexDump(d).length);
    expect(lens).toEqual([91, 91, 141, 141, 91, 91]);
  });

  it('is not fooled by an ASCII column that looks like hex', () => {
    const dump = '\t0x0000:  cafe babe dead beef 0011 2233 4455 6677  cafe babe dead b\n\t0x0010:  abcd                                     abcd';
    const b = parseHexDump(dump);
    expect(toHex(b)).toBe('cafebabedeadbeef0011223344556677abcd');
  });

  it('reads tcpdump -x (no ASCII column) and lines without leading whitespace', () => {
    const b = parseHexDump('0x0000:  4500 0014\n');
    expect(Array.from(b)).toEqual([0x45, 0, 0, 0x14]);
  });

  it('reads plain hex: spaces, colons, newlines, 0x prefixes, upper case', () => {
    expect(Array.from(parseHexDump('aaaa 0aff\n63:03 0x0800 0XFF'))).toEqual([0xaa, 0xaa, 0x0a, 0xff, 0x63, 0x03, 0x08, 0x00, 0xff]);
    expect(Array.from(parseHexDump('  45000014  '))).toEqual([0x45, 0, 0, 0x14]);
  });

  it('refuses bad input with one sentence naming where', () => {
    expect(() => parseHexDump('')).toThrow('no hex bytes found in the input');
    expect(() => parseHexDump('45 0g')).toThrow('character 5: "g" is not a hex digit');
    expect(() => parseHexDump('45\n00 zz')).toThrow('line 2, column 4: "z" is not a hex digit');
    expect(() => parseHexDump('450 0')).toThrow(/"450" has an odd number of hex digits/);
    expect(() => parseHexDump('\t0x0000:  4500 0014\n\t0x0020:  4500')).toThrow(
      'line 2 has offset 0x0020 but 4 bytes (0x4) came before it; lines are missing or out of order',
    );
    expect(() => parseHexDump('\t0x0000:  4500 0014 4500 0014 4500 0014 4500 0014\n\t0x0010:  45zz 0000')).toThrow(
      /line 2, column 11: expected hex digits in groups of 4, found "45zz 0"/,
    );
    expect(() => parseHexDump('\t0x0000:  4500 0014\n\t0x0000:  4500')).toThrow(/second packet/);
  });

  it('refuses a short line in the middle of a dump', () => {
    const dump = '0x0000:  4500 0014\n0x0004:  4500 0014';
    expect(() => parseHexDump(dump)).toThrow(/follows line 1, which had fewer than 16 bytes/);
  });
});
