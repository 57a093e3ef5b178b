// Policy shapes shared by the controller, the cell and the planner.
//
// PolicyRecord is cf-networking's internal policy API shape
// (`GET /networking/v1/internal/policies`): app GUIDs as ids, tags as 4-digit
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

export { formatTag, tryParseTag as parseTag } from './tags.js';
