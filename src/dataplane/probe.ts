// A probe packet for `silkworm trace`: the first packet a container would
// send for a flow (TCP SYN, a UDP datagram, or an ICMP echo request), as its
// kernel puts it on eth0 (dst aa:aa:<ip>, src ee:ee:<ip>).
import { emitIpv4 } from '../wire/ipv4.js';
import { emitTcp, TcpFlags } from '../wire/tcp.js';
import { emitUdp } from '../wire/udp.js';
import { emitIcmp, IcmpType } from '../wire/icmp.js';
import { writeMacFromIp } from '../util/ip.js';
import { writeU16 } from '../wire/bytes.js';
import { Wire } from '../wire/offsets.js';

export type ProbeProtocol = 'tcp' | 'udp' | 'icmp';

export function buildProbe(src: number, dst: number, protocol: ProbeProtocol, sport: number, dport: number, ttl = 64): Uint8Array {
  const l4len = protocol === 'tcp' ? Wire.TCP_HEADER_LEN : protocol === 'udp' ? Wire.UDP_HEADER_LEN : Wire.ICMP_HEADER_LEN;
  const frame = new Uint8Array(Wire.ETH_HEADER_LEN + Wire.IPV4_HEADER_LEN + l4len);
  writeMacFromIp(frame, 0, 0xaaaa, src);
  writeMacFromIp(frame, Wire.ETH_SRC, 0xeeee, src);
  writeU16(frame, Wire.ETH_TYPE, Wire.ETHERTYPE_IPV4);
  const l4 = Wire.ETH_HEADER_LEN + Wire.IPV4_HEADER_LEN;
  if (protocol === 'tcp') {
    emitTcp({ srcPort: sport, dstPort: dport, seq: 1, ack: 0, flags: TcpFlags.Syn, window: 64240, urgent: 0, options: new Uint8Array(0), payloadLen: 0 }, frame, l4, src, dst);
  } else if (protocol === 'udp') {
    emitUdp({ srcPort: sport, dstPort: dport, payloadLen: 0 }, frame, l4, src, dst);
  } else {
    emitIcmp({ type: IcmpType.EchoRequest, code: 0, restOfHeader: ((sport & 0xffff) << 16 | 1) >>> 0, payloadLen: 0 }, frame, l4);
  }
  const proto = protocol === 'tcp' ? Wire.IPPROTO_TCP : protocol === 'udp' ? Wire.IPPROTO_UDP : Wire.IPPROTO_ICMP;
  emitIpv4({ src, dst, protocol: proto, ttl, payloadLen: l4len, dscpEcn: 0, ident: 1, dontFrag: true, moreFrags: false, fragOffset: 0, options: new Uint8Array(0) }, frame, Wire.ETH_HEADER_LEN);
  return frame;
}
