import { describe, expect, it } from 'vitest';
import { ARP_HEADER_LEN, ArpOperation, ArpView, arpBufferLen, emitArp, parseArp } from '../../../src/wire/arp.js';
import { WireError } from '../../../src/wire/errors.js';
import { EtherType, EthernetView } from '../../../src/wire/ethernet.js';
import { parseHexDump } from '../../../src/wire/hex.js';
import { ipToU32 } from '../../../src/util/ip.js';

// A real request from Linux over a veth pair (`tcpdump -n -v -XX`).
const REQUEST_FRAME = parseHexDump(`
18:20:56.663829 ARP, Ethernet (len 6), IPv4 (len 4), Request who-has 198.18.200.2 tell 198.18.200.1, length 28
\t0x0000:  ffff ffff ffff 6e63 3ae1 6f0b 0806 0001  ......nc:.o.....
\t0x0010:  0800 0604 0001 6e63 3ae1 6f0b c612 c801  ......nc:.o.....
\t0x0020:  0000 0000 0000 c612 c802                 ..........
`);
const REPLY_FRAME = parseHexDump(`
\t0x0000:  6e63 3ae1 6f0b 327e 5e04 257c 0806 0001  nc:.o.2~^.%|....
\t0x0010:  0800 0604 0002 327e 5e04 257c c612 c802  ......2~^.%|....
\t0x0020:  6e63 3ae1 6f0b c612 c801                 nc:.o.....
`);
const REQUEST = REQUEST_FRAME.slice(14);
const REPR = {
  operation: ArpOperation.Request,
  senderMac: '6e:63:3a:e1:6f:0b',
  senderIp: ipToU32('198.18.200.1'),
  targetMac: '00:00:00:00:00:00',
  targetIp: ipToU32('198.18.200.2'),
};

describe('arp', () => {
  it('deconstruct', () => {
    const eth = new EthernetView().wrap(REQUEST_FRAME, 0, REQUEST_FRAME.length);
    expect(eth.check()).toBe(WireError.None);
    expect(eth.etherType).toBe(EtherType.Arp);
    const v = new ArpView().wrap(REQUEST_FRAME, eth.payloadOffset, eth.payloadLen);
    expect(v.check()).toBe(WireError.None);
    expect(v.hardwareType).toBe(1);
    expect(v.protocolType).toBe(0x0800);
    expect(v.hardwareLen).toBe(6);
    expect(v.protocolLen).toBe(4);
    expect(v.operation).toBe(1);
    expect(v.senderMacKey).toBe(0x6e633ae16f0b);
    expect(v.senderIp).toBe(ipToU32('198.18.200.1'));
    expect(v.targetMacKey).toBe(0);
    expect(v.targetIp).toBe(ipToU32('198.18.200.2'));
  });

  it('construct: turn the request into the kernel’s reply in place', () => {
    const buf = REQUEST.slice();
    const v = new ArpView().wrap(buf, 0, buf.length);
    const asker = v.senderMacKey;
    const askerIp = v.senderIp;
    v.operation = ArpOperation.Reply;
    v.targetMacKey = asker;
    v.targetIp = askerIp;
    v.senderMacKey = 0x327e5e04257c;
    v.senderIp = ipToU32('198.18.200.2');
    expect(buf).toEqual(REPLY_FRAME.slice(14));
  });

  it('parse', () => {
    expect(parseArp(new ArpView().wrap(REQUEST, 0, REQUEST.length))).toEqual(REPR);
  });

  it('emit', () => {
    const buf = new Uint8Array(28).fill(0xa5);
    expect(emitArp(REPR, buf, 0)).toBe(ARP_HEADER_LEN);
    expect(buf).toEqual(REQUEST);
    expect(arpBufferLen(REPR)).toBe(28);
  });

  it('malformed: truncated, or not Ethernet/IPv4', () => {
    const v = new ArpView();
    expect(v.wrap(REQUEST, 0, 27).check()).toBe(WireError.Truncated);
    for (const [i, val] of [
      [1, 6],
      [2, 0x86],
      [4, 8],
      [5, 16],
    ] as const) {
      const b = REQUEST.slice();
      b[i] = val;
      expect(v.wrap(b, 0, b.length).check()).toBe(WireError.Unsupported);
    }
    expect(() => parseArp(v)).toThrow(/ARP: not an Ethernet\/IPv4 ARP packet/);
  });
});
