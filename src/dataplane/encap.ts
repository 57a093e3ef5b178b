// The outer headers of a VXLAN packet, written in place in front of the inner
// frame (the batch leaves headroom for them). This is the hot path, so it
// writes bytes directly rather than going through wire representations.
//
//   outer IPv4 (20) | UDP (8) | VXLAN-GBP (8) | inner Ethernet frame …
//
// RFC 7348 section 5: outer UDP checksum SHOULD be 0 for IPv4 (we send 0; the
// kernel sends 0 on older versions, as in seed 002, and a real one on newer —
// receivers must accept both). The outer IPv4 DF bit is left clear, as the
// kernel's VXLAN device does by default (seed 002: "flags [none]"), and TTL is 64.
import { internetChecksum } from '../wire/checksum.js';
import { writeVxlanHeader } from '../wire/vxlan.js';

export const OUTER_LEN = 20 + 8 + 8;

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
  buf[ip] = 0x45;
  buf[ip + 1] = 0;
  buf[ip + 2] = total >>> 8;
  buf[ip + 3] = total & 255;
  buf[ip + 4] = (ident >>> 8) & 255;
  buf[ip + 5] = ident & 255;
  buf[ip + 6] = 0;
  buf[ip + 7] = 0;
  buf[ip + 8] = 64;
  buf[ip + 9] = 17;
  buf[ip + 10] = 0;
  buf[ip + 11] = 0;
  buf[ip + 12] = srcIp >>> 24;
  buf[ip + 13] = (srcIp >>> 16) & 255;
  buf[ip + 14] = (srcIp >>> 8) & 255;
  buf[ip + 15] = srcIp & 255;
  buf[ip + 16] = dstIp >>> 24;
  buf[ip + 17] = (dstIp >>> 16) & 255;
  buf[ip + 18] = (dstIp >>> 8) & 255;
  buf[ip + 19] = dstIp & 255;
  const csum = internetChecksum(buf, ip, 20);
  buf[ip + 10] = csum >>> 8;
  buf[ip + 11] = csum & 255;
  const udp = ip + 20;
  const udpLen = total - 20;
  buf[udp] = srcPort >>> 8;
  buf[udp + 1] = srcPort & 255;
  buf[udp + 2] = dstPort >>> 8;
  buf[udp + 3] = dstPort & 255;
  buf[udp + 4] = udpLen >>> 8;
  buf[udp + 5] = udpLen & 255;
  buf[udp + 6] = 0;
  buf[udp + 7] = 0;
  writeVxlanHeader(buf, udp + 8, vni, gpid);
  return ip;
}
