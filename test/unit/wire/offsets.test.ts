// offsets.ts is the one place field offsets live: the views read and write
// exactly there (checked by writing through a view into a 0xa5-filled buffer
// and finding the value at the named offset), and the numbers are the RFCs'.
import { describe, expect, it } from 'vitest';
import * as O from '../../../src/wire/offsets.js';
import { EthernetView, EtherType } from '../../../src/wire/ethernet.js';
import { Ipv4View, IpProtocol, writeIpv4Header } from '../../../src/wire/ipv4.js';
import { UdpView, writeUdpHeader } from '../../../src/wire/udp.js';
import { TcpView, tcpFlagsAt } from '../../../src/wire/tcp.js';
import { IcmpView } from '../../../src/wire/icmp.js';
import { VxlanView, vxlanGpidAt, vxlanVniAt } from '../../../src/wire/vxlan.js';
import { readU16, readU32 } from '../../../src/wire/bytes.js';
import { internetChecksum } from '../../../src/wire/checksum.js';

const filled = (n: number) => new Uint8Array(n).fill(0xa5);

describe('offsets', () => {
  it('protocol numbers and EtherTypes (IANA), header lengths (RFCs)', () => {
    expect([O.IPPROTO_ICMP, O.IPPROTO_TCP, O.IPPROTO_UDP]).toEqual([1, 6, 17]);
    expect(IpProtocol).toEqual({ Icmp: 1, Tcp: 6, Udp: 17 });
    expect([O.ETHERTYPE_IPV4, O.ETHERTYPE_ARP, O.ETHERTYPE_VLAN, O.ETHERTYPE_IPV6]).toEqual([0x0800, 0x0806, 0x8100, 0x86dd]);
    expect(EtherType.Ipv4).toBe(O.ETHERTYPE_IPV4);
    expect([O.ETH_HEADER_LEN, O.IPV4_HEADER_LEN, O.UDP_HEADER_LEN, O.TCP_HEADER_LEN, O.ICMP_HEADER_LEN, O.VXLAN_HEADER_LEN]).toEqual([14, 20, 8, 20, 8, 8]);
    expect([O.VXLAN_ENCAP_LEN, O.VXLAN_OVERHEAD, O.VXLAN_PORT]).toEqual([36, 50, 4789]);
  });

  it('the views write where the offsets say', () => {
    const e = filled(14);
    new EthernetView().wrap(e, 0, 14).etherType = 0x1234;
    expect(readU16(e, O.ETH_TYPE)).toBe(0x1234);

    const b = filled(20);
    const ip = new Ipv4View().wrap(b, 0, 20);
    ip.totalLen = 0x0102;
    ip.ident = 0x0304;
    ip.ttl = 0x05;
    ip.protocol = 0x06;
    ip.checksum = 0x0708;
    ip.srcAddr = 0x090a0b0c;
    ip.dstAddr = 0x0d0e0f10;
    expect(readU16(b, O.IPV4_TOTAL_LEN)).toBe(0x0102);
    expect(readU16(b, O.IPV4_IDENT)).toBe(0x0304);
    expect(b[O.IPV4_TTL]).toBe(5);
    expect(b[O.IPV4_PROTOCOL]).toBe(6);
    expect(readU16(b, O.IPV4_CHECKSUM)).toBe(0x0708);
    expect(readU32(b, O.IPV4_SRC)).toBe(0x090a0b0c);
    expect(readU32(b, O.IPV4_DST)).toBe(0x0d0e0f10);

    const u = filled(8);
    const uv = new UdpView().wrap(u, 0, 8);
    uv.srcPort = 1;
    uv.dstPort = 2;
    uv.length = 3;
    uv.checksum = 4;
    expect([O.UDP_SRC_PORT, O.UDP_DST_PORT, O.UDP_LENGTH, O.UDP_CHECKSUM].map((o) => readU16(u, o))).toEqual([1, 2, 3, 4]);

    const t = filled(20);
    const tv = new TcpView().wrap(t, 0, 20);
    tv.srcPort = 1;
    tv.dstPort = 2;
    tv.seq = 3;
    tv.ack = 4;
    tv.window = 5;
    tv.checksum = 6;
    tv.urgent = 7;
    tv.flags = 0x1ff;
    expect([O.TCP_SRC_PORT, O.TCP_DST_PORT, O.TCP_WINDOW, O.TCP_CHECKSUM, O.TCP_URGENT].map((o) => readU16(t, o))).toEqual([1, 2, 5, 6, 7]);
    expect([readU32(t, O.TCP_SEQ), readU32(t, O.TCP_ACK), t[O.TCP_FLAGS], tcpFlagsAt(t, 0)]).toEqual([3, 4, 0xff, 0x1ff]);

    const c = filled(8);
    const cv = new IcmpView().wrap(c, 0, 8);
    cv.type = 1;
    cv.code = 2;
    cv.checksum = 3;
    cv.echoId = 4;
    cv.echoSeq = 5;
    expect([c[O.ICMP_TYPE], c[O.ICMP_CODE], readU16(c, O.ICMP_CHECKSUM), readU16(c, O.ICMP_ECHO_ID), readU16(c, O.ICMP_ECHO_SEQ)]).toEqual([1, 2, 3, 4, 5]);

    const x = filled(8);
    const xv = new VxlanView().wrap(x, 0, 8);
    xv.flags = 0x88;
    xv.groupPolicyId = 0x1234;
    xv.vni = 0x56789a;
    expect([x[O.VXLAN_FLAGS], readU16(x, O.VXLAN_GPID), vxlanGpidAt(x, 0), vxlanVniAt(x, 0), x[O.VXLAN_RESERVED]]).toEqual([0x88, 0x1234, 0x1234, 0x56789a, 0xa5]);
    x[O.VXLAN_FLAGS] = 0x08;
    expect(vxlanGpidAt(x, 0)).toBe(0);
  });

  it('the fast emitters write every byte (a 0xa5-filled buffer), at a non-zero offset', () => {
    const b = filled(40);
    writeIpv4Header(b, 4, 0x0123, 0x4567, O.IPV4_FLAG_DF, 64, O.IPPROTO_UDP, 0xc6120001, 0xc6120002);
    expect(Buffer.from(b.subarray(4, 24)).toString('hex')).toBe('45000123456740004011' + Buffer.from(b.subarray(14, 16)).toString('hex') + 'c6120001c6120002');
    expect(internetChecksum(b, 4, 20)).toBe(0);
    writeUdpHeader(b, 24, 40000, 4789, 16);
    expect(Buffer.from(b.subarray(24, 32)).toString('hex')).toBe('9c4012b500100000');
    expect(b[3]).toBe(0xa5);
    expect(b[32]).toBe(0xa5);
  });

  it('writeIpv4Header computes its checksum from the values: the same as RFC 1071 over the written bytes', () => {
    // A fixed-seed LCG, so a failure reproduces; edge words (0, 0xffff) included.
    let seed = 0x2545f491;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const pick = (max: number) => [0, max, rnd(max + 1)][rnd(3)]!;
    const b = new Uint8Array(24);
    for (let k = 0; k < 5000; k++) {
      const [tot, id, ff, ttl, proto, tos] = [pick(0xffff), pick(0xffff), pick(0xffff), pick(0xff), pick(0xff), pick(0xff)];
      const src = (pick(0xffff) * 0x10000 + pick(0xffff)) >>> 0;
      const dst = (pick(0xffff) * 0x10000 + pick(0xffff)) >>> 0;
      writeIpv4Header(b, 2, tot, id, ff, ttl, proto, src, dst, tos);
      const csum = readU16(b, 2 + O.IPV4_CHECKSUM);
      b[2 + O.IPV4_CHECKSUM] = 0;
      b[2 + O.IPV4_CHECKSUM + 1] = 0;
      expect(csum).toBe(internetChecksum(b, 2, 20));
    }
  });
});
