// The transport fields policy and conntrack key on, read from the packet in
// an Ipv4View (already checked): ports, TCP flags, the ICMP type and whether it
// is an error. Kept in fields of one reused object, not returned as a new one,
// so reading them allocates nothing.
import { readU16 } from '../wire/bytes.js';
import { IcmpType, isIcmpErrorType } from '../wire/icmp.js';
import type { Ipv4View } from '../wire/ipv4.js';
import {
  ICMP_ECHO_ID,
  ICMP_HEADER_LEN,
  ICMP_TYPE,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_DST_PORT,
  TCP_HEADER_LEN,
  TCP_SRC_PORT,
  UDP_DST_PORT,
  UDP_HEADER_LEN,
  UDP_SRC_PORT,
} from '../wire/offsets.js';
import { tcpFlagsAt } from '../wire/tcp.js';

export class L4 {
  /** TCP/UDP ports; for ICMP echo the identifier as sport (dport 0), as conntrack keys it; else 0. */
  sport = 0;
  dport = 0;
  /** TCP control bits (TcpFlags), 0 for other protocols. */
  tcpFlags = 0;
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
    if (proto === IPPROTO_TCP) {
      if (len < TCP_HEADER_LEN) return false;
      this.sport = readU16(buf, off + TCP_SRC_PORT);
      this.dport = readU16(buf, off + TCP_DST_PORT);
      this.tcpFlags = tcpFlagsAt(buf, off);
      return true;
    }
    if (proto === IPPROTO_UDP) {
      if (len < UDP_HEADER_LEN) return false;
      this.sport = readU16(buf, off + UDP_SRC_PORT);
      this.dport = readU16(buf, off + UDP_DST_PORT);
      return true;
    }
    if (proto === IPPROTO_ICMP) {
      if (len < ICMP_HEADER_LEN) return false;
      const type = buf[off + ICMP_TYPE]!;
      this.icmpType = type;
      this.sport = type === IcmpType.EchoRequest || type === IcmpType.EchoReply ? readU16(buf, off + ICMP_ECHO_ID) : 0;
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
    return proto !== IPPROTO_ICMP || this.icmpType === IcmpType.EchoRequest;
  }
}
