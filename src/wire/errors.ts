// Why a received header was refused. Views return these from check() instead
// of throwing: on the hot path a malformed packet is a counted drop (the
// numeric value indexes a counter array), never an exception. The numbers are part of the contract with the
// data plane's drop counters — append, never renumber.

export const enum WireError {
  None = 0,
  /** Fewer bytes than the fixed header needs (or the view lies outside its buffer). */
  Truncated = 1,
  /** IPv4 version nibble is not 4. */
  BadVersion = 2,
  /** IPv4 IHL < 5, TCP data offset < 5, or the header is longer than the bytes present. */
  BadHeaderLength = 3,
  /** IPv4 total length smaller than the header or larger than the bytes present. */
  BadTotalLength = 4,
  /** A checksum that must be valid is not (views never require it in check()). */
  BadChecksum = 5,
  /** VXLAN without the I flag (RFC 7348 §5: the I flag MUST be set). */
  BadFlags = 6,
  /** UDP length field smaller than 8 or larger than the bytes present (RFC 768). */
  BadLength = 7,
  /** ARP for something other than Ethernet/IPv4 (hardware type 1, protocol 0x0800, lengths 6/4). */
  Unsupported = 8,
}

/** Number of WireError values: size drop-counter arrays with this. */
export const WIRE_ERROR_COUNT = 9;

/** One short phrase per error, for logs, counters and the CLI. */
export function wireErrorMessage(e: WireError): string {
  switch (e) {
    case WireError.None:
      return 'no error';
    case WireError.Truncated:
      return 'truncated: fewer bytes than the header needs';
    case WireError.BadVersion:
      return 'IP version is not 4';
    case WireError.BadHeaderLength:
      return 'header length field is too small or longer than the packet';
    case WireError.BadTotalLength:
      return 'total length field disagrees with the bytes present';
    case WireError.BadChecksum:
      return 'checksum is incorrect';
    case WireError.BadFlags:
      return 'VXLAN I flag is not set';
    case WireError.BadLength:
      return 'UDP length field disagrees with the bytes present';
    case WireError.Unsupported:
      return 'not an Ethernet/IPv4 ARP packet';
    default:
      return `unknown wire error ${e as number}`;
  }
}

/**
 * Thrown by the parseX() functions (not used on the hot path, which calls
 * check() and counts the returned WireError instead).
 */
export class WireFormatError extends Error {
  constructor(
    readonly code: WireError,
    readonly layer: string,
    message?: string,
  ) {
    super(message ?? `${layer}: ${wireErrorMessage(code)}`);
    this.name = 'WireFormatError';
  }
}
