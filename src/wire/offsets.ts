// The one place a header field's byte offset, a header length or a protocol
// number lives (smoltcp's `mod field`). Offsets are from the start of their own
// header; the diagrams are at the top of each protocol's module (ethernet.ts,
// ipv4.ts, udp.ts, tcp.ts, icmp.ts, vxlan.ts). The views use these, and so does
// the hot path where it writes bytes directly (the outer headers in
// src/dataplane/encap.ts, the io layer's segmentation and coalescing).
//
// The numbers are members of one const enum, Wire, so that tsc writes the
// number itself at every use (`14 /* Wire.ETH_HEADER_LEN */`). An imported
// `const` is not a constant to V8: each use loads the exporting module's cell
// and checks that it is initialized, and in the per-packet code (the views'
// getters, src/dataplane) that cost about a tenth of the pipeline's throughput
// (scripts/bench-dataplane.mjs). The named constants after the enum are the
// same numbers for code off the hot path; per-packet code uses Wire.X.
//
// A module with no imports: every layer can use it without a cycle.

export const enum Wire {
  // ---------------------------------------------------------------- Ethernet II
  /** Destination MAC (6 bytes). */
  ETH_DST = 0,
  /** Source MAC (6 bytes). */
  ETH_SRC = 6,
  /** EtherType (2 bytes, big-endian). */
  ETH_TYPE = 12,
  ETH_ADDR_LEN = 6,
  ETH_HEADER_LEN = 14,

  /** EtherTypes (IEEE registry; RFC 894 for IPv4, RFC 826 for ARP). */
  ETHERTYPE_IPV4 = 0x0800,
  ETHERTYPE_ARP = 0x0806,
  ETHERTYPE_VLAN = 0x8100,
  ETHERTYPE_IPV6 = 0x86dd,

  // ---------------------------------------------------------------- IPv4 (RFC 791 §3.1)
  /** Version (high nibble) | IHL in 32-bit words (low nibble). */
  IPV4_VER_IHL = 0,
  /** DSCP | ECN (the old Type of Service). */
  IPV4_DSCP_ECN = 1,
  IPV4_TOTAL_LEN = 2,
  IPV4_IDENT = 4,
  /** Flags (3 bits) | fragment offset (13 bits, 8-byte units). */
  IPV4_FLAGS_FRAG = 6,
  IPV4_TTL = 8,
  IPV4_PROTOCOL = 9,
  IPV4_CHECKSUM = 10,
  IPV4_SRC = 12,
  IPV4_DST = 16,
  IPV4_HEADER_LEN = 20,
  IPV4_MAX_HEADER_LEN = 60,
  /** Byte 0 of a header without options: version 4, IHL 5. */
  IPV4_VER_IHL_NO_OPTIONS = 0x45,
  /** Bits of the 16-bit flags/fragment word at IPV4_FLAGS_FRAG. */
  IPV4_FLAG_RESERVED = 0x8000,
  IPV4_FLAG_DF = 0x4000,
  IPV4_FLAG_MF = 0x2000,
  IPV4_FRAG_OFFSET_MASK = 0x1fff,

  /** IP protocol numbers (IANA "Assigned Internet Protocol Numbers"). */
  IPPROTO_ICMP = 1,
  IPPROTO_TCP = 6,
  IPPROTO_UDP = 17,

  // ---------------------------------------------------------------- UDP (RFC 768)
  UDP_SRC_PORT = 0,
  UDP_DST_PORT = 2,
  UDP_LENGTH = 4,
  UDP_CHECKSUM = 6,
  UDP_HEADER_LEN = 8,

  // ---------------------------------------------------------------- TCP (RFC 9293 §3.1)
  TCP_SRC_PORT = 0,
  TCP_DST_PORT = 2,
  TCP_SEQ = 4,
  TCP_ACK = 8,
  /** Data offset (high nibble) | reserved | NS (low bit). */
  TCP_DATA_OFF = 12,
  /** CWR..FIN (NS is the low bit of the byte before). */
  TCP_FLAGS = 13,
  TCP_WINDOW = 14,
  TCP_CHECKSUM = 16,
  TCP_URGENT = 18,
  TCP_HEADER_LEN = 20,

  // ---------------------------------------------------------------- ICMP (RFC 792)
  ICMP_TYPE = 0,
  ICMP_CODE = 1,
  ICMP_CHECKSUM = 2,
  /** Echo identifier (echo request / reply). */
  ICMP_ECHO_ID = 4,
  /** Echo sequence number; the next-hop MTU of Fragmentation Needed (RFC 1191 §4). */
  ICMP_ECHO_SEQ = 6,
  ICMP_NEXT_HOP_MTU = 6,
  ICMP_HEADER_LEN = 8,

  // ---------------------------------------------------------------- VXLAN-GBP (RFC 7348 §5, draft-smith-vxlan-group-policy)
  VXLAN_FLAGS = 0,
  VXLAN_GBP_FLAGS = 1,
  /** Group Policy ID (2 bytes). */
  VXLAN_GPID = 2,
  /** VNI (3 bytes). */
  VXLAN_VNI = 4,
  VXLAN_RESERVED = 7,
  VXLAN_HEADER_LEN = 8,
  /** Byte 0: G, a Group Policy ID is present. */
  VXLAN_FLAG_G = 0x80,
  /** Byte 0: I, the VNI is valid (RFC 7348: MUST be set). */
  VXLAN_FLAG_I = 0x08,
  /** Byte 1: D, Don't Learn. */
  VXLAN_GBP_FLAG_D = 0x40,
  /** Byte 1: A, policy Applied. */
  VXLAN_GBP_FLAG_A = 0x08,
  /** IANA's VXLAN port. */
  VXLAN_PORT = 4789,

  // ---------------------------------------------------------------- encapsulation
  /** Outer IPv4 + UDP + VXLAN in front of the inner Ethernet frame: 36 bytes. */
  VXLAN_ENCAP_LEN = IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN,
  /** What VXLAN costs an inner IPv4 packet against the underlay MTU: the encapsulation plus the inner Ethernet header, 50 bytes. */
  VXLAN_OVERHEAD = VXLAN_ENCAP_LEN + ETH_HEADER_LEN,
}

// The same numbers as plain constants (see above: per-packet code uses Wire).
export const ETH_DST = Wire.ETH_DST;
export const ETH_SRC = Wire.ETH_SRC;
export const ETH_TYPE = Wire.ETH_TYPE;
export const ETH_ADDR_LEN = Wire.ETH_ADDR_LEN;
export const ETH_HEADER_LEN = Wire.ETH_HEADER_LEN;
export const ETHERTYPE_IPV4 = Wire.ETHERTYPE_IPV4;
export const ETHERTYPE_ARP = Wire.ETHERTYPE_ARP;
export const ETHERTYPE_VLAN = Wire.ETHERTYPE_VLAN;
export const ETHERTYPE_IPV6 = Wire.ETHERTYPE_IPV6;
export const IPV4_VER_IHL = Wire.IPV4_VER_IHL;
export const IPV4_DSCP_ECN = Wire.IPV4_DSCP_ECN;
export const IPV4_TOTAL_LEN = Wire.IPV4_TOTAL_LEN;
export const IPV4_IDENT = Wire.IPV4_IDENT;
export const IPV4_FLAGS_FRAG = Wire.IPV4_FLAGS_FRAG;
export const IPV4_TTL = Wire.IPV4_TTL;
export const IPV4_PROTOCOL = Wire.IPV4_PROTOCOL;
export const IPV4_CHECKSUM = Wire.IPV4_CHECKSUM;
export const IPV4_SRC = Wire.IPV4_SRC;
export const IPV4_DST = Wire.IPV4_DST;
export const IPV4_HEADER_LEN = Wire.IPV4_HEADER_LEN;
export const IPV4_MAX_HEADER_LEN = Wire.IPV4_MAX_HEADER_LEN;
export const IPV4_VER_IHL_NO_OPTIONS = Wire.IPV4_VER_IHL_NO_OPTIONS;
export const IPV4_FLAG_RESERVED = Wire.IPV4_FLAG_RESERVED;
export const IPV4_FLAG_DF = Wire.IPV4_FLAG_DF;
export const IPV4_FLAG_MF = Wire.IPV4_FLAG_MF;
export const IPV4_FRAG_OFFSET_MASK = Wire.IPV4_FRAG_OFFSET_MASK;
export const IPPROTO_ICMP = Wire.IPPROTO_ICMP;
export const IPPROTO_TCP = Wire.IPPROTO_TCP;
export const IPPROTO_UDP = Wire.IPPROTO_UDP;
export const UDP_SRC_PORT = Wire.UDP_SRC_PORT;
export const UDP_DST_PORT = Wire.UDP_DST_PORT;
export const UDP_LENGTH = Wire.UDP_LENGTH;
export const UDP_CHECKSUM = Wire.UDP_CHECKSUM;
export const UDP_HEADER_LEN = Wire.UDP_HEADER_LEN;
export const TCP_SRC_PORT = Wire.TCP_SRC_PORT;
export const TCP_DST_PORT = Wire.TCP_DST_PORT;
export const TCP_SEQ = Wire.TCP_SEQ;
export const TCP_ACK = Wire.TCP_ACK;
export const TCP_DATA_OFF = Wire.TCP_DATA_OFF;
export const TCP_FLAGS = Wire.TCP_FLAGS;
export const TCP_WINDOW = Wire.TCP_WINDOW;
export const TCP_CHECKSUM = Wire.TCP_CHECKSUM;
export const TCP_URGENT = Wire.TCP_URGENT;
export const TCP_HEADER_LEN = Wire.TCP_HEADER_LEN;
export const ICMP_TYPE = Wire.ICMP_TYPE;
export const ICMP_CODE = Wire.ICMP_CODE;
export const ICMP_CHECKSUM = Wire.ICMP_CHECKSUM;
export const ICMP_ECHO_ID = Wire.ICMP_ECHO_ID;
export const ICMP_ECHO_SEQ = Wire.ICMP_ECHO_SEQ;
export const ICMP_NEXT_HOP_MTU = Wire.ICMP_NEXT_HOP_MTU;
export const ICMP_HEADER_LEN = Wire.ICMP_HEADER_LEN;
export const VXLAN_FLAGS = Wire.VXLAN_FLAGS;
export const VXLAN_GBP_FLAGS = Wire.VXLAN_GBP_FLAGS;
export const VXLAN_GPID = Wire.VXLAN_GPID;
export const VXLAN_VNI = Wire.VXLAN_VNI;
export const VXLAN_RESERVED = Wire.VXLAN_RESERVED;
export const VXLAN_HEADER_LEN = Wire.VXLAN_HEADER_LEN;
export const VXLAN_FLAG_G = Wire.VXLAN_FLAG_G;
export const VXLAN_FLAG_I = Wire.VXLAN_FLAG_I;
export const VXLAN_GBP_FLAG_D = Wire.VXLAN_GBP_FLAG_D;
export const VXLAN_GBP_FLAG_A = Wire.VXLAN_GBP_FLAG_A;
export const VXLAN_PORT = Wire.VXLAN_PORT;
export const VXLAN_ENCAP_LEN = Wire.VXLAN_ENCAP_LEN;
export const VXLAN_OVERHEAD = Wire.VXLAN_OVERHEAD;
