// Every capture of seed 002 decodes layer by layer, and emitting the parsed
// reprs (TCP data bytes copied) rebuilds the capture byte for byte — except
// the two frames captured before checksum offload filled the TCP checksum,
// where the emitter writes the correct value (0xfd42 → 0x0fc9, as tcpdump says).
import { describe, expect, it } from 'vitest';
import { WireError } from '../../../src/wire/errors.js';
import { EtherType, EthernetView, emitEthernet, parseEthernet } from '../../../src/wire/ethernet.js';
import { IpProtocol, Ipv4View, emitIpv4, parseIpv4 } from '../../../src/wire/ipv4.js';
import { TcpView, emitTcp, parseTcp } from '../../../src/wire/tcp.js';
import { UdpView, emitUdp, parseUdp } from '../../../src/wire/udp.js';
import { VXLAN_PORT, VxlanView, emitVxlan, parseVxlan } from '../../../src/wire/vxlan.js';
import { u32ToIp } from '../../../src/util/ip.js';
import { SEED002_DUMPS, seedBytes, type Seed002Name } from '../../vectors/seed002.js';

interface Summary {
  macs: string[];
  ttls: number[];
  vxlan?: string;
  tcp: string;
  tcpChecksumOk: boolean;
  tcpChecksumAt: number;
}

/** Parse the Ethernet frame frame[off..end) layer by layer and emit every repr into `out` at the same offsets. */
function parseAndEmit(frame: Uint8Array, off: number, end: number, out: Uint8Array, s: Summary): void {
  const eth = new EthernetView().wrap(frame, off, end - off);
  expect(eth.check()).toBe(WireError.None);
  const er = parseEthernet(eth);
  s.macs.push(`${er.src} > ${er.dst}`);
  expect(er.etherType).toBe(EtherType.Ipv4);
  emitEthernet(er, out, off);

  const ip = new Ipv4View().wrap(frame, eth.payloadOffset, eth.payloadLen);
  expect(ip.check()).toBe(WireError.None);
  expect(ip.verifyChecksum()).toBe(true);
  const ir = parseIpv4(ip);
  s.ttls.push(ir.ttl);

  if (ir.protocol === IpProtocol.Udp) {
    const udp = new UdpView().wrap(frame, ip.payloadOffset, ip.payloadLen);
    expect(udp.check()).toBe(WireError.None);
    const ur = parseUdp(udp);
    expect(ur.dstPort).toBe(VXLAN_PORT);
    const vx = new VxlanView().wrap(frame, udp.payloadOffset, udp.payloadLen);
    expect(vx.check()).toBe(WireError.None);
    const vr = parseVxlan(vx);
    s.vxlan = `flags 0x${vr.flags.toString(16)} gpid ${vr.groupPolicyId} vni ${vr.vni}`;
    emitVxlan(vr, out, udp.payloadOffset);
    parseAndEmit(frame, vx.payloadOffset, udp.payloadOffset + udp.payloadLen, out, s);
    // outer checksums cover the inner bytes: emit them last
    emitUdp(ur, out, ip.payloadOffset, ir.src, ir.dst, udp.checksum !== 0);
    emitIpv4(ir, out, eth.payloadOffset);
    return;
  }

  expect(ir.protocol).toBe(IpProtocol.Tcp);
  emitIpv4(ir, out, eth.payloadOffset);
  const tcp = new TcpView().wrap(frame, ip.payloadOffset, ip.payloadLen);
  expect(tcp.check()).toBe(WireError.None);
  s.tcpChecksumOk = tcp.verifyChecksum(ir.src, ir.dst);
  s.tcpChecksumAt = ip.payloadOffset + 16;
  const tr = parseTcp(tcp);
  s.tcp = `${u32ToIp(ir.src)}:${tr.srcPort} > ${u32ToIp(ir.dst)}:${tr.dstPort} seq ${tr.seq} ack ${tr.ack} len ${tr.payloadLen}`;
  out.set(frame.subarray(tcp.payloadOffset, tcp.payloadOffset + tr.payloadLen), tcp.payloadOffset);
  emitTcp(tr, out, ip.payloadOffset, ir.src, ir.dst);
}

function run(name: Seed002Name): { s: Summary; frame: Uint8Array; out: Uint8Array } {
  const frame = seedBytes(name);
  const out = new Uint8Array(frame.length).fill(0xa5);
  const s: Summary = { macs: [], ttls: [], tcp: '', tcpChecksumOk: false, tcpChecksumAt: -1 };
  parseAndEmit(frame, 0, frame.length, out, s);
  return { s, frame, out };
}

const SEGMENT = '10.255.99.3:56766 > 10.255.132.2:7777 seq 2356689519 ack 2161316842 len 25';

describe('seed 002 vectors', () => {
  it('the six dumps, in path order, show the TTLs and MACs the seed describes', () => {
    const got = (Object.keys(SEED002_DUMPS) as Seed002Name[]).map((n) => {
      const { s } = run(n);
      expect(s.tcp, n).toBe(SEGMENT);
      return [n, s.macs.join(' | '), s.ttls.join(','), s.vxlan ?? '-'];
    });
    expect(got).toEqual([
      ['SRC_CONTAINER_ETH0', 'ee:ee:0a:ff:63:03 > aa:aa:0a:ff:63:03', '64', '-'],
      ['SRC_HOST_VTEP', 'ee:ee:0a:ff:63:00 > ee:ee:0a:ff:84:00', '63', '-'],
      [
        'SRC_HOST_ETH0',
        '42:01:0a:00:10:10 > 42:01:0a:00:00:01 | ee:ee:0a:ff:63:00 > ee:ee:0a:ff:84:00',
        '64,63',
        'flags 0x88 gpid 1 vni 1',
      ],
      [
        'DST_HOST_ETH0',
        '42:01:0a:00:00:01 > 42:01:0a:00:20:0e | ee:ee:0a:ff:63:00 > ee:ee:0a:ff:84:00',
        '64,63',
        'flags 0x88 gpid 1 vni 1',
      ],
      ['DST_HOST_VTEP', 'ee:ee:0a:ff:63:00 > ee:ee:0a:ff:84:00', '63', '-'],
      ['DST_CONTAINER_ETH0', 'aa:aa:0a:ff:84:02 > ee:ee:0a:ff:84:02', '62', '-'],
    ]);
  });

  for (const name of ['SRC_HOST_ETH0', 'DST_HOST_ETH0', 'DST_HOST_VTEP', 'DST_CONTAINER_ETH0'] as const) {
    it(`${name}: emitting the parsed reprs gives back the same bytes`, () => {
      const { s, frame, out } = run(name);
      expect(s.tcpChecksumOk).toBe(true);
      expect(out).toEqual(frame);
    });
  }

  for (const name of ['SRC_CONTAINER_ETH0', 'SRC_HOST_VTEP'] as const) {
    it(`${name}: captured before offload — only the TCP checksum differs, 0xfd42 → 0x0fc9`, () => {
      const { s, frame, out } = run(name);
      expect(s.tcpChecksumOk).toBe(false);
      const diff: number[] = [];
      for (let i = 0; i < frame.length; i++) if (frame[i] !== out[i]) diff.push(i);
      expect(diff).toEqual([s.tcpChecksumAt, s.tcpChecksumAt + 1]);
      expect((frame[s.tcpChecksumAt]! << 8) | frame[s.tcpChecksumAt + 1]!).toBe(0xfd42);
      expect((out[s.tcpChecksumAt]! << 8) | out[s.tcpChecksumAt + 1]!).toBe(0x0fc9);
    });
  }
});
