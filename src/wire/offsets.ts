// The one place a header field's byte offset, a header length or a protocol
// number lives (smoltcp's `mod field`). Offsets are from the start of their own
// header; the diagrams are at the top of each protocol's module (ethernet.ts,
// ipv4.ts, udp.ts, tcp.ts, icmp.ts, vxlan.ts). The views use these, and so does
// the hot path where it writes bytes directly (the outer headers in
// src/dataplane/encap.ts, the io layer's segmentation and coalescing).
//
// Plain `const` numbers: V8 inlines them, and a module with no imports can be
// used by every layer without a cycle.

// ---------------------------------------------------------------- Ethernet II
/** Destination MAC (6 bytes). */
export const ETH_DST = 0;
/** Source MAC (6 bytes). */
export const ETH_SRC = 6;
/** EtherType (2 bytes, big-endian). */
export const ETH_TYPE = 12;
export const ETH_ADDR_LEN = 6;
export const ETH_HEADER_LEN = 14;

/** EtherTypes (IEEE registry; RFC 894 for IPv4, RFC 826 for ARP). */
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;

// ---------------------------------------------------------------- IPv4 (RFC 791 §3.1)
/** Version (high nibble) | IHL in 32-bit words (low nibble). */
export const IPV4_VER_IHL = 0;
/** DSCP | ECN (the old Type of Service). */
export const IPV4_DSCP_ECN = 1;
export const IPV4_TOTAL_LEN = 2;
export const IPV4_IDENT = 4;
/** Flags (3 bits) | fragment offset (13 bits, 8-byte units). */
export const IPV4_FLAGS_FRAG = 6;
export const IPV4_TTL = 8;
export const IPV4_PROTOCOL = 9;
export const IPV4_CHECKSUM = 10;
export const IPV4_SRC = 12;
export const IPV4_DST = 16;
export const IPV4_HEADER_LEN = 20;
export const IPV4_MAX_HEADER_LEN = 60;
/** Byte 0 of a header without options: version 4, IHL 5. */
export const IPV4_VER_IHL_NO_OPTIONS = 0x45;
/** Bits of the 16-bit flags/fragment word at IPV4_FLAGS_FRAG. */
export const IPV4_FLAG_RESERVED = 0x8000;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;

/** IP protocol numbers (IANA "Assigned Internet Protocol Numbers"). */
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

// ---------------------------------------------------------------- UDP (RFC 768)
export const UDP_SRC_PORT = 0;
export const UDP_DST_PORT = 2;
export const UDP_LENGTH = 4;
export const UDP_CHECKSUM = 6;
export const UDP_HEADER_LEN = 8;

// ---------------------------------------------------------------- TCP (RFC 9293 §3.1)
export const TCP_SRC_PORT = 0;
export const TCP_DST_PORT = 2;
export const TCP_SEQ = 4;
export const TCP_ACK = 8;
/** Data offset (high nibble) | reserved | NS (low bit). */
export const TCP_DATA_OFF = 12;
/** CWR..FIN (NS is the low bit of the byte before). */
export const TCP_FLAGS = 13;
export const TCP_WINDOW = 14;
export const TCP_CHECKSUM = 16;
export const TCP_URGENT = 18;
export const TCP_HEADER_LEN = 20;

// ---------------------------------------------------------------- ICMP (RFC 792)
export const ICMP_TYPE = 0;
export const ICMP_CODE = 1;
export const ICMP_CHECKSUM = 2;
/** Echo identifier (echo request / reply). */
export const ICMP_ECHO_ID = 4;
/** Echo sequence number; the next-hop MTU of Fragmentation Needed (RFC 1191 §4). */
export const ICMP_ECHO_SEQ = 6;
export const ICMP_NEXT_HOP_MTU = 6;
export const ICMP_HEADER_LEN = 8;

// ---------------------------------------------------------------- VXLAN-GBP (RFC 7348 §5, draft-smith-vxlan-group-policy)
export const VXLAN_FLAGS = 0;
export const VXLAN_GBP_FLAGS = 1;
/** Group Policy ID (2 bytes). */
export const VXLAN_GPID = 2;
/** VNI (3 bytes). */
export const VXLAN_VNI = 4;
export const VXLAN_RESERVED = 7;
export const VXLAN_HEADER_LEN = 8;
/** Byte 0: G, a Group Policy ID is present. */
export const VXLAN_FLAG_G = 0x80;
/** Byte 0: I, the VNI is valid (RFC 7348: MUST be set). */
export const VXLAN_FLAG_I = 0x08;
/** Byte 1: D, Don't Learn. */
export const VXLAN_GBP_FLAG_D = 0x40;
/** Byte 1: A, policy Applied. */
export const VXLAN_GBP_FLAG_A = 0x08;
/** IANA's VXLAN port. */
export const VXLAN_PORT = 4789;

// ---------------------------------------------------------------- encapsulation
/** Outer IPv4 + UDP + VXLAN in front of the inner Ethernet frame: 36 bytes. */
export const VXLAN_ENCAP_LEN = IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
/** What VXLAN costs an inner IPv4 packet against the underlay MTU: the encapsulation plus the inner Ethernet header, 50 bytes. */
export const VXLAN_OVERHEAD = VXLAN_ENCAP_LEN + ETH_HEADER_LEN;
