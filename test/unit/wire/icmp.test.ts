import { describe, expect, it } from 'vitest';
import { referenceChecksum } from '../../../src/wire/checksum.js';
import { WireError } from '../../../src/wire/errors.js';
import { parseHexDump } from '../../../src/wire/hex.js';
import {
  ICMP_HEADER_LEN,
  IcmpCode,
  IcmpType,
  IcmpView,
  emitIcmp,
  icmpBufferLen,
  parseIcmp,
  writeIcmpError,
} from '../../../src/wire/icmp.js';
import { Ipv4View } from '../../../src/wire/ipv4.js';
import { ipToU32 } from '../../../src/util/ip.js';

// Real frames from Linux 6.x over a veth pair between two namespaces (`tcpdump -n -v -XX`).
const ECHO_REQUEST = parseHexDump(`
18:20:56.663856 IP (tos 0x0, ttl 64, id 45892, offset 0, flags [DF], proto ICMP (1), length 40)
    198.18.200.1 > 198.18.200.2: ICMP echo request, id 7973, seq 1, length 20
\t0x0000:  327e 5e04 257c 6e63 3ae1 6f0b 0800 4500  2~^.%|nc:.o...E.
\t0x0010:  0028 b344 4000 4001 6b67 c612 c801 c612  .(.D@.@.kg......
\t0x0020:  c802 0800 bab5 1f25 0001 0001 0203 0405  .......%........
\t0x0030:  0607 0809 0a0b                           ......
`);
const PORT_UNREACHABLE = parseHexDump(`
18:20:57.198019 IP (tos 0xc0, ttl 64, id 37497, offset 0, flags [none], proto ICMP (1), length 63)
    198.18.200.2 > 198.18.200.1: ICMP 198.18.200.2 udp port 9 unreachable, length 43
\tIP (tos 0x0, ttl 64, id 30120, offset 0, flags [DF], proto UDP (17), length 35)
    198.18.200.1.43584 > 198.18.200.2.9: UDP, length 7
\t0x0000:  6e63 3ae1 6f0b 327e 5e04 257c 0800 45c0  nc:.o.2~^.%|..E.
\t0x0010:  003f 9279 0000 4001 cb5b c612 c802 c612  .?.y..@..[......
\t0x0020:  c801 0303 d910 0000 0000 4500 0023 75a8  ..........E..#u.
\t0x0030:  4000 4011 a8f8 c612 c801 c612 c802 aa40  @.@............@
\t0x0040:  0009 000f 1c4a 6869 2073 696c 6b         .....Jhi.silk
`);
const ECHO = ECHO_REQUEST.slice(34);
const ECHO_REPR = { type: IcmpType.EchoRequest, code: 0, restOfHeader: (7973 << 16) | 1, payloadLen: 12 };
const A = ipToU32('198.18.200.1');
const B = ipToU32('198.18.200.2');

describe('icmp', () => {
  it('deconstruct: echo request', () => {
    const big = new Uint8Array(ECHO.length + 6);
    big.set(ECHO, 6);
    const v = new IcmpView().wrap(big.subarray(2), 4, ECHO.length);
    expect(v.check()).toBe(WireError.None);
    expect(v.type).toBe(8);
    expect(v.code).toBe(0);
    expect(v.checksum).toBe(0xbab5);
    expect(v.echoId).toBe(7973);
    expect(v.echoSeq).toBe(1);
    expect(v.isError).toBe(false);
    expect(v.payloadOffset).toBe(12);
    expect(v.payloadLen).toBe(12);
    expect(v.verifyChecksum()).toBe(true);
  });

  it('deconstruct: port unreachable quoting a UDP datagram', () => {
    const v = new IcmpView().wrap(PORT_UNREACHABLE, 34, PORT_UNREACHABLE.length - 34);
    expect(v.check()).toBe(WireError.None);
    expect(v.type).toBe(IcmpType.DestUnreachable);
    expect(v.code).toBe(IcmpCode.PortUnreachable);
    expect(v.isError).toBe(true);
    expect(v.quotedOffset).toBe(42);
    expect(v.verifyChecksum()).toBe(true);
    const q = new Ipv4View().wrap(PORT_UNREACHABLE, v.quotedOffset, PORT_UNREACHABLE.length - 42);
    expect(q.check()).toBe(WireError.None);
    expect(q.srcAddr).toBe(A);
    expect(q.dstAddr).toBe(B);
    expect(q.protocol).toBe(17);
  });

  it('construct', () => {
    const buf = new Uint8Array(ECHO.length + 2).fill(0xa5);
    buf.set(ECHO.subarray(8), 9); // echo data
    const v = new IcmpView().wrap(buf, 1, ECHO.length);
    v.type = IcmpType.EchoRequest;
    v.code = 0;
    v.echoId = 7973;
    v.echoSeq = 1;
    v.fillChecksum();
    expect(Array.from(buf.subarray(1, 1 + ECHO.length))).toEqual(Array.from(ECHO));
    expect([buf[0], buf[buf.length - 1]]).toEqual([0xa5, 0xa5]);
  });

  it('parse', () => {
    expect(parseIcmp(new IcmpView().wrap(ECHO, 0, ECHO.length))).toEqual(ECHO_REPR);
  });

  it('emit', () => {
    const buf = ECHO.slice();
    buf.fill(0xa5, 0, 8);
    expect(emitIcmp(ECHO_REPR, buf, 0)).toBe(ICMP_HEADER_LEN);
    expect(buf).toEqual(ECHO);
    expect(icmpBufferLen(ECHO_REPR)).toBe(20);
  });

  it('malformed: truncated', () => {
    const v = new IcmpView();
    expect(v.wrap(ECHO, 0, 7).check()).toBe(WireError.Truncated);
    expect(v.wrap(ECHO, 15, 8).check()).toBe(WireError.Truncated);
    expect(() => parseIcmp(v.wrap(ECHO, 0, 3))).toThrow(/ICMP: truncated/);
  });
});

describe('writeIcmpError', () => {
  // The UDP datagram the kernel refused (quoted whole in its error): 35 bytes.
  const OFFENDING = PORT_UNREACHABLE.slice(42);

  function expectValidError(buf: Uint8Array, off: number, n: number, quoteLen: number): void {
    expect(n).toBe(20 + 8 + quoteLen);
    const out = buf.subarray(off, off + n);
    expect(referenceChecksum(out.subarray(0, 20))).toBe(0);
    expect(referenceChecksum(out.subarray(20))).toBe(0);
    const ip = new Ipv4View().wrap(buf, off, n);
    expect(ip.check()).toBe(WireError.None);
    expect(ip.totalLen).toBe(n);
  }

  it('builds what the kernel sent, minus the kernel’s longer quote, in the offending packet’s own slot', () => {
    // Data plane usage: the offending packet sits at `off`; the error overwrites it in place.
    const off = 14;
    const buf = new Uint8Array(200).fill(0xa5);
    buf.set(OFFENDING, off);
    const n = writeIcmpError(buf, off, IcmpType.DestUnreachable, IcmpCode.PortUnreachable, 0, B, A, buf, off, 35);
    expectValidError(buf, off, n, 28);
    const out = buf.subarray(off, off + n);
    // IPv4: tos 0xc0 like the kernel's, length 56, id 0, DF, TTL 64, ICMP, B > A
    expect(Array.from(out.subarray(0, 10))).toEqual([0x45, 0xc0, 0x00, 0x38, 0, 0, 0x40, 0, 64, 1]);
    expect(Array.from(out.subarray(12, 20))).toEqual(Array.from(PORT_UNREACHABLE.subarray(26, 34)));
    // ICMP header except checksum, then the quote: RFC 792's IP header + 8 bytes = the kernel's first 28
    const kernelIcmp = PORT_UNREACHABLE.subarray(34);
    expect(Array.from(out.subarray(20, 22))).toEqual(Array.from(kernelIcmp.subarray(0, 2)));
    expect(Array.from(out.subarray(24, 56))).toEqual(Array.from(kernelIcmp.subarray(4, 36)));
    expect(buf[off + n]).toBe(OFFENDING[n] ?? 0xa5); // nothing written past the end
  });

  it('handles a quote that overlaps the output at a different offset, and a separate buffer', () => {
    for (const shift of [-10, -1, 1, 7, 30]) {
      const buf = new Uint8Array(200).fill(0xa5);
      const qOff = 60;
      buf.set(OFFENDING, qOff);
      const n = writeIcmpError(buf, qOff + shift, 3, 3, 0, B, A, buf, qOff, 35);
      expectValidError(buf, qOff + shift, n, 28);
      expect(Array.from(buf.subarray(qOff + shift + 28, qOff + shift + 56))).toEqual(Array.from(OFFENDING.subarray(0, 28)));
    }
    const out = new Uint8Array(100);
    const n = writeIcmpError(out, 0, 3, 3, 0, B, A, OFFENDING, 0, 35);
    expectValidError(out, 0, n, 28);
  });

  it('Fragmentation Needed carries the next-hop MTU (RFC 1191); other codes leave it 0', () => {
    const buf = new Uint8Array(100);
    writeIcmpError(buf, 0, IcmpType.DestUnreachable, IcmpCode.FragNeeded, 1360, B, A, OFFENDING, 0, 35);
    const v = new IcmpView().wrap(buf, 20, 36);
    expect(v.nextHopMtu).toBe(1360);
    expect(v.verifyChecksum()).toBe(true);
    writeIcmpError(buf, 0, IcmpType.TimeExceeded, IcmpCode.TtlExceeded, 1360, B, A, OFFENDING, 0, 35, 255);
    expect(v.type).toBe(11);
    expect(v.restOfHeader).toBe(0);
    expect(new Ipv4View().wrap(buf, 0, 56).ttl).toBe(255);
  });

  it('quotes options too (IHL 6 → 24 + 8), and no more than what exists', () => {
    const withOpts = new Uint8Array(40);
    withOpts[0] = 0x46;
    for (let i = 1; i < 40; i++) withOpts[i] = i;
    const buf = new Uint8Array(100);
    expect(writeIcmpError(buf, 0, 3, 3, 0, B, A, withOpts, 0, 40)).toBe(28 + 32);
    expect(writeIcmpError(buf, 0, 3, 3, 0, B, A, withOpts, 0, 22)).toBe(28 + 22);
    expectValidError(buf, 0, 50, 22);
  });

  it('returns 0 instead of writing past the buffer or reading past the quote', () => {
    const small = new Uint8Array(55);
    expect(writeIcmpError(small, 0, 3, 3, 0, B, A, OFFENDING, 0, 35)).toBe(0);
    expect(small.every((b) => b === 0)).toBe(true);
    expect(writeIcmpError(new Uint8Array(100), 0, 3, 3, 0, B, A, OFFENDING, 0, 36)).toBe(0);
    expect(writeIcmpError(new Uint8Array(100), 0, 3, 3, 0, B, A, OFFENDING, 0, 0)).toBe(0);
  });
});
