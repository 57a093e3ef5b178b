// The outer headers of a VXLAN packet, written in place in front of the inner
// frame (the batch leaves headroom for them), with the wire layer's fast
// emitters: no repr, no allocation.
//
//   outer IPv4 (20) | UDP (8) | VXLAN-GBP (8) | inner Ethernet frame …
//
// RFC 7348 section 5: outer UDP checksum SHOULD be 0 for IPv4 (we send 0;
// older kernels send 0 too, newer ones a real checksum — receivers must accept
// both). The outer IPv4 DF bit is left clear, as the kernel's VXLAN device
// does by default (tcpdump shows "flags [none]"), and TTL is 64.
import { writeIpv4Header } from '../wire/ipv4.js';
import { Wire } from '../wire/offsets.js';
import { writeUdpHeader } from '../wire/udp.js';
import { writeVxlanHeader } from '../wire/vxlan.js';

/** Outer IPv4 + UDP + VXLAN: 36 bytes. */
export const OUTER_LEN = Wire.VXLAN_ENCAP_LEN;
/** TTL of the outer header (the kernel's VXLAN default, ip4_dst_hoplimit). */
const OUTER_TTL = 64;

/**
 * Write outer IPv4 + UDP + VXLAN headers ending right before `innerOff`.
 * Returns the offset of the outer IPv4 header (innerOff - 36).
 */
export function writeOuterHeaders(
  buf: Uint8Array,
  innerOff: number,
  innerLen: number,
  srcIp: number,
  dstIp: number,
  ident: number,
  srcPort: number,
  dstPort: number,
  vni: number,
  gpid: number,
): number {
  const ip = innerOff - OUTER_LEN;
  const total = OUTER_LEN + innerLen;
  writeIpv4Header(buf, ip, total, ident, 0, OUTER_TTL, Wire.IPPROTO_UDP, srcIp, dstIp);
  const udp = ip + Wire.IPV4_HEADER_LEN;
  writeUdpHeader(buf, udp, srcPort, dstPort, total - Wire.IPV4_HEADER_LEN);
  writeVxlanHeader(buf, udp + Wire.UDP_HEADER_LEN, vni, gpid);
  return ip;
}
