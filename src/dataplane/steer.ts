// The inner-flow steering hash, in TypeScript: which of a cell's N workers a
// packet belongs to. The kernel computes the same thing with two programs
// built by native/steer.cc — an eBPF program on each multi-queue TAP (it sees
// the container's Ethernet frame) and a classic BPF program on the UDP/4789
// SO_REUSEPORT group (it sees the VXLAN header; the inner frame follows it) —
// so both directions of a flow, and the ICMP errors about it, reach the same
// worker. This file is the reference the tests hold both programs to, and what
// a worker uses to map a conntrack tuple to its owner.
//
//     h = saddr ^ daddr                         (32-bit, big-endian as read)
//     if (frag_off & 0x3fff) == 0:              (not a fragment)
//         TCP: h ^= sport ^ dport
//         ICMP type 3, 11 or 12 (errors): h = quoted saddr ^ quoted daddr,
//             and ^= quoted sport ^ dport when the quoted header is an
//             unfragmented TCP header
//     worker = ((h * 0x9E3779B1) mod 2^32 >> 16) % n     (not IPv4: 0)
//
// Only TCP uses ports: fragments carry none and go by addresses, so a UDP flow
// whose big datagrams are fragmented stays on one worker. A read past the end
// of the packet makes both programs answer 0; so does this reference.
// No imports: pure functions over bytes.

const GOLDEN = 0x9e3779b1;
const ETH_HDR = 14;
const ETHERTYPE_IPV4 = 0x0800;
const PROTO_ICMP = 1;
const PROTO_TCP = 6;

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/**
 * The 32-bit h (before folding) of the IPv4 packet at buf[ipOff, ipOff + len), following the rules above;
 * -1 when a field the kernel programs read lies past `len` (they then pick worker 0). The IP version is
 * not checked (the programs go by the Ethernet type).
 */
export function steerHashOfIpv4(buf: Uint8Array, ipOff: number, len: number): number {
  const end = Math.min(ipOff + len, buf.length);
  const has = (o: number, n: number): boolean => o >= 0 && o + n <= end;
  if (!has(ipOff, 20)) return -1;
  const ihl = (buf[ipOff]! & 0xf) << 2;
  let h = (u32(buf, ipOff + 12) ^ u32(buf, ipOff + 16)) >>> 0;
  if ((u16(buf, ipOff + 6) & 0x3fff) !== 0) return h;
  const proto = buf[ipOff + 9]!;
  const l4 = ipOff + ihl;
  if (proto === PROTO_TCP) {
    if (!has(l4, 4)) return -1;
    return (h ^ u16(buf, l4) ^ u16(buf, l4 + 2)) >>> 0;
  }
  if (proto !== PROTO_ICMP) return h;
  if (!has(l4, 1)) return -1;
  const type = buf[l4]!;
  if (type !== 3 && type !== 11 && type !== 12) return h;
  const q = l4 + 8;
  if (!has(q + 12, 8)) return -1;
  h = (u32(buf, q + 12) ^ u32(buf, q + 16)) >>> 0;
  if (!has(q + 6, 2)) return -1;
  if ((u16(buf, q + 6) & 0x3fff) !== 0) return h;
  if (!has(q + 9, 1)) return -1;
  if (buf[q + 9]! !== PROTO_TCP) return h;
  if (!has(q, 1)) return -1;
  const ql4 = q + ((buf[q]! & 0xf) << 2);
  if (!has(ql4, 4)) return -1;
  return (h ^ u16(buf, ql4) ^ u16(buf, ql4 + 2)) >>> 0;
}

/** Fold h into a worker index < n (n >= 1). */
export function steerFold(h: number, n: number): number {
  if (n <= 1) return 0;
  return (Math.imul(h >>> 0, GOLDEN) >>> 16) % n;
}

/**
 * The worker (TAP queue, reuseport socket index) of the Ethernet frame at buf[ethOff, ethOff + len), as
 * the TAP's program sees a frame the container sends and the reuseport program sees the frame inside a
 * VXLAN datagram. Not IPv4 (ARP, IPv6, VLAN-tagged), or too short: 0.
 */
export function steerWorkerOfFrame(buf: Uint8Array, ethOff: number, len: number, n: number): number {
  if (n <= 1) return 0;
  if (len < ETH_HDR || ethOff + ETH_HDR > buf.length) return 0;
  if (u16(buf, ethOff + 12) !== ETHERTYPE_IPV4) return 0;
  const h = steerHashOfIpv4(buf, ethOff + ETH_HDR, len - ETH_HDR);
  return h < 0 ? 0 : steerFold(h, n);
}

/**
 * The worker of a flow given as a tuple (host-order u32 addresses, protocol, ports): what the frames of an
 * unfragmented packet of that flow, in either direction, are steered to. Ports count for TCP only. For an
 * ICMP error, pass the tuple of the flow it quotes.
 */
export function steerWorkerOfFlow(saddr: number, daddr: number, proto: number, sport: number, dport: number, n: number): number {
  if (n <= 1) return 0;
  let h = (saddr ^ daddr) >>> 0;
  if (proto === PROTO_TCP) h = (h ^ (sport & 0xffff) ^ (dport & 0xffff)) >>> 0;
  return steerFold(h, n);
}
