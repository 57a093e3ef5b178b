// Header field offsets, lengths and numbers the offload code reads and writes
// (Ethernet II; IPv4, RFC 791 §3.1; TCP, RFC 9293 §3.1; UDP, RFC 768), by
// name. Offsets are from the start of their own header.
// TODO(merge): src/wire/offsets.ts — these are the same names and values as
// there; replace this file's body with a re-export from '../wire/offsets.js'.
export const ETH_TYPE = 12;
export const ETH_HEADER_LEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;

export const IPV4_VER_IHL = 0;
export const IPV4_DSCP_ECN = 1;
export const IPV4_TOTAL_LEN = 2;
export const IPV4_IDENT = 4;
export const IPV4_FLAGS_FRAG = 6;
export const IPV4_TTL = 8;
export const IPV4_PROTOCOL = 9;
export const IPV4_CHECKSUM = 10;
export const IPV4_SRC = 12;
export const IPV4_DST = 16;
export const IPV4_HEADER_LEN = 20;
export const IPV4_VER_IHL_NO_OPTIONS = 0x45;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const UDP_SRC_PORT = 0;
export const UDP_DST_PORT = 2;
export const UDP_LENGTH = 4;
export const UDP_CHECKSUM = 6;
export const UDP_HEADER_LEN = 8;

export const TCP_SEQ = 4;
export const TCP_ACK = 8;
export const TCP_DATA_OFF = 12;
export const TCP_FLAGS = 13;
export const TCP_CHECKSUM = 16;
export const TCP_HEADER_LEN = 20;
