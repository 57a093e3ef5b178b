// Policy shapes shared by the controller, the cell and the planner.
//
// PolicyRecord is cf-networking's internal policy API shape (seed 000,
// `GET /networking/v1/internal/policies`): app GUIDs as ids, tags as 4-digit
// upper-case hex strings ("%04X", e.g. "0004"), protocol and a port range.

export type PolicyProtocol = 'tcp' | 'udp';

export interface PolicyRecord {
  source: { id: string; tag?: string };
  destination: {
    id: string;
    tag?: string;
    protocol: PolicyProtocol;
    ports: { start: number; end: number };
  };
}

/** A container attached to this cell. */
export interface LocalContainer {
  /** The container handle (silk: the garden handle; silkworm: the name given to `container add`). */
  handle: string;
  /** Overlay IPv4 as u32. */
  ip: number;
  /** App GUID (or name, in the lab). */
  app: string;
}

/** IP protocol numbers (IANA) used by policy and conntrack. */
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** "tcp" → 6, "udp" → 17; undefined for anything else. */
export function protocolNumber(p: string): 6 | 17 | undefined {
  return p === 'tcp' ? 6 : p === 'udp' ? 17 : undefined;
}

/** "0004" → 4. undefined unless it is 1–4 hex digits naming a tag in 1..0xFFFF (0 means "no tag" on the wire). */
export function parseTag(tag: string | undefined): number | undefined {
  if (typeof tag !== 'string' || !/^[0-9a-fA-F]{1,4}$/.test(tag)) return undefined;
  const n = parseInt(tag, 16);
  return n >= 1 && n <= 0xffff ? n : undefined;
}

/** 4 → "0004", as the policy server prints tags. */
export function formatTag(tag: number): string {
  return (tag & 0xffff).toString(16).toUpperCase().padStart(4, '0');
}
