// Reading a packet for the pipeline: the IPv4 header after an Ethernet
// header (checked, or the reason to drop it), then the transport fields
// policy and conntrack key on: ports, TCP flags, the ICMP type and whether it
// is an error. Kept in fields of one reused object, not returned as a new one,
// so reading them allocates nothing.
import { readU16, readU32 } from '../wire/bytes.js';
import { WireError } from '../wire/errors.js';
import { IcmpType, isIcmpErrorType } from '../wire/icmp.js';
import type { Ipv4View } from '../wire/ipv4.js';
import { Wire } from '../wire/offsets.js';
import { tcpFlagsAt } from '../wire/tcp.js';
import { Drop } from './counters.js';

/** wrapIpv4() found nothing to drop. */
export const NO_DROP = -1;

/**
 * Wrap `ip` around the IPv4 packet after the Ethernet header at buf[eth..]
 * (a frame of `len` bytes, at least ETH_HEADER_LEN) and check it: NO_DROP,
 * or the reason to drop the frame (ARP or another EtherType, a malformed
 * header, a wrong header checksum).
 */
export function wrapIpv4(buf: Uint8Array, eth: number, len: number, ip: Ipv4View): number {
  const etype = readU16(buf, eth + Wire.ETH_TYPE);
  if (etype !== Wire.ETHERTYPE_IPV4) return etype === Wire.ETHERTYPE_ARP ? Drop.Arp : Drop.NotIpv4;
  ip.wrap(buf, eth + Wire.ETH_HEADER_LEN, len - Wire.ETH_HEADER_LEN);
  if (ip.check() !== WireError.None) return Drop.BadIpHeader;
  if (!ip.verifyChecksum()) return Drop.BadIpChecksum;
  return NO_DROP;
}

export class L4 {
  /** TCP/UDP ports; for ICMP echo the identifier as sport (dport 0), as conntrack keys it; else 0. */
  sport = 0;
  dport = 0;
  /** TCP control bits (TcpFlags), 0 for other protocols. */
  tcpFlags = 0;
  /** TCP sequence and acknowledgment numbers (u32), for conntrack's RST check; 0 for other protocols. */
  tcpSeq = 0;
  tcpAck = 0;
  /**
   * TCP payload bytes (after the data offset's header), or -1 when the data
   * offset is below 5 or past the packet: conntrack calls that INVALID
   * (tcp_error, "truncated packet"). 0 for other protocols.
   */
  tcpLen = 0;
  /** ICMP type, or -1 when the packet is not ICMP. */
  icmpType = -1;
  /** An ICMP error (isIcmpErrorType): never tracked itself, never answered with another error. */
  icmpError = false;

  /** Read the L4 header of the packet in `ip`; false if it is too short to hold the fields. */
  read(buf: Uint8Array, ip: Ipv4View): boolean {
    const off = ip.payloadOffset;
    const len = ip.payloadLen;
    const proto = ip.protocol;
    this.icmpError = false;
    this.icmpType = -1;
    this.tcpFlags = 0;
    this.tcpSeq = 0;
    this.tcpAck = 0;
    this.tcpLen = 0;
    if (proto === Wire.IPPROTO_TCP) {
      if (len < Wire.TCP_HEADER_LEN) return false;
      this.sport = readU16(buf, off + Wire.TCP_SRC_PORT);
      this.dport = readU16(buf, off + Wire.TCP_DST_PORT);
      this.tcpFlags = tcpFlagsAt(buf, off);
      this.tcpSeq = readU32(buf, off + Wire.TCP_SEQ);
      this.tcpAck = readU32(buf, off + Wire.TCP_ACK);
      const hl = (buf[off + Wire.TCP_DATA_OFF]! >>> 4) << 2;
      this.tcpLen = hl < Wire.TCP_HEADER_LEN || hl > len ? -1 : len - hl;
      return true;
    }
    if (proto === Wire.IPPROTO_UDP) {
      if (len < Wire.UDP_HEADER_LEN) return false;
      this.sport = readU16(buf, off + Wire.UDP_SRC_PORT);
      this.dport = readU16(buf, off + Wire.UDP_DST_PORT);
      return true;
    }
    if (proto === Wire.IPPROTO_ICMP) {
      if (len < Wire.ICMP_HEADER_LEN) return false;
      const type = buf[off + Wire.ICMP_TYPE]!;
      this.icmpType = type;
      this.sport = type === IcmpType.EchoRequest || type === IcmpType.EchoReply ? readU16(buf, off + Wire.ICMP_ECHO_ID) : 0;
      this.dport = 0;
      this.icmpError = isIcmpErrorType(type);
      return true;
    }
    this.sport = 0;
    this.dport = 0;
    return true;
  }

  /** May this packet create a conntrack entry? TCP, UDP, and of ICMP only echo requests (as the kernel's conntrack). */
  opensFlow(proto: number): boolean {
    return proto !== Wire.IPPROTO_ICMP || this.icmpType === IcmpType.EchoRequest;
  }
}
