// Every frame the pipeline does not deliver ends in a numbered reason, counted
// here. Counters are Float64Arrays (exact to 2^53) indexed by small integers,
// so counting costs one typed-array increment and never allocates.
//
// Every frame read from a container's TAP and every datagram received on the
// underlay ends in exactly one final outcome: `delivered` (written to a
// container's TAP), `sent` (sent on the underlay), or one drop reason. An ICMP
// error the cell generates replaces the packet that caused it — that packet
// is counted under its drop reason — and is itself a new packet with an
// outcome of its own. So, at any moment between two batches:
//
//   frames read from TAPs + datagrams received + icmp-sent
//     = delivered + sent + Σ drops
//
// where "read"/"received" include those a device dropped before the pipeline
// saw them (tap-rx-*, underlay-rx-oversize); egress-packets and
// ingress-packets count the rest. An ICMP error the rate limit suppressed is
// no packet: `icmp-rate-limited` is a stat, not a second drop of the packet
// that would have caused it.

export const enum Drop {
  Truncated = 0,
  NotIpv4,
  Arp,
  BadIpHeader,
  BadIpChecksum,
  Fragment,
  SpoofedSource,
  NoRoute,
  NoNeighbor,
  NoFdb,
  TtlExceeded,
  TooBig,
  ToCell,
  BadVxlan,
  BadVxlanFlags,
  WrongVni,
  UnknownUnderlaySource,
  SpoofedInnerSource,
  WrongInnerMac,
  NoContainer,
  PolicyDenied,
  BadL4Header,
  UnrelatedIcmpError,
  PortGone,
  // --- io layer: drops made by the devices (src/io, src/offload), not the pipeline ---
  /** A frame read from a container's TAP was longer than a slot (or than a segment's slot, with TSO). */
  TapRxOversize,
  /** A TAP frame with a virtio_net_hdr the cell did not ask for, or inconsistent with the frame. */
  TapRxBadVnet,
  /** A TAP super-frame of a GSO type the cell cannot segment (not plain TCPv4). */
  TapRxUnsupportedGso,
  /** Not written to a container's TAP: its queue was full (EAGAIN). */
  TapTxFull,
  /** Not written to a container's TAP: the kernel refused the frame (EINVAL). */
  TapTxRefused,
  /** Not written to a container's TAP: the device is gone (its namespace was deleted). */
  TapTxGone,
  /** A datagram received on the underlay was longer than a slot (MSG_TRUNC). */
  UnderlayRxOversize,
  /** Not sent on the underlay: the socket's send buffer was full (EAGAIN). */
  UnderlayTxFull,
  /** Not sent on the underlay: the kernel refused the packet (EMSGSIZE, ENETUNREACH...). */
  UnderlayTxRefused,
  // --- end of the io layer block ---
  Count,
}

/** Stable names, printed by `show counters` and used as metric labels. */
export const DROP_NAMES: readonly string[] = [
  'truncated',
  'not-ipv4',
  'arp',
  'bad-ip-header',
  'bad-ip-checksum',
  'fragment',
  'spoofed-source',
  'no-route',
  'no-neighbor',
  'no-fdb',
  'ttl-exceeded',
  'too-big',
  'to-cell',
  'bad-vxlan',
  'bad-vxlan-flags',
  'wrong-vni',
  'unknown-underlay-source',
  'spoofed-inner-source',
  'wrong-inner-mac',
  'no-container',
  'policy-denied',
  'bad-l4-header',
  'unrelated-icmp-error',
  'port-gone',
  // --- io layer block (see the Drop enum) ---
  'tap-rx-oversize',
  'tap-rx-bad-vnet',
  'tap-rx-unsupported-gso',
  'tap-tx-full',
  'tap-tx-refused',
  'tap-tx-gone',
  'underlay-rx-oversize',
  'underlay-tx-full',
  'underlay-tx-refused',
  // --- end of the io layer block ---
];

export const enum Stat {
  EgressPackets = 0,
  EgressBytes,
  IngressPackets,
  IngressBytes,
  Encapsulated,
  Decapsulated,
  DeliveredLocal,
  DeliveredRemote,
  IcmpSent,
  PolicyAllowed,
  ConntrackAllowed,
  /** A TCP/UDP checksum a kernel sender left partial (CHECKSUM_PARTIAL), finished before delivery. */
  ChecksumCompleted,
  /** An ICMP error the token bucket suppressed (the packet that caused it is counted under its drop reason). */
  IcmpRateLimited,
  /** Final outcome: frames the devices wrote to a container's TAP (deliveries and ICMP errors), counted by the cell. */
  Delivered,
  /** Final outcome: packets the underlay socket sent (encapsulated frames and ICMP errors), counted by the cell. */
  Sent,
  Count,
}

export const STAT_NAMES: readonly string[] = [
  'egress-packets',
  'egress-bytes',
  'ingress-packets',
  'ingress-bytes',
  'encapsulated',
  'decapsulated',
  'delivered-same-cell',
  'delivered-from-remote',
  'icmp-sent',
  'policy-allowed',
  'conntrack-allowed',
  'checksum-completed',
  'icmp-rate-limited',
  'delivered',
  'sent',
];

export class Counters {
  readonly drops = new Float64Array(Drop.Count);
  readonly stats = new Float64Array(Stat.Count);

  drop(reason: Drop): void {
    this.drops[reason]!++;
  }

  snapshot(): { stats: Record<string, number>; drops: Record<string, number> } {
    const stats: Record<string, number> = {};
    const drops: Record<string, number> = {};
    for (let i = 0; i < Stat.Count; i++) stats[STAT_NAMES[i]!] = this.stats[i]!;
    for (let i = 0; i < Drop.Count; i++) drops[DROP_NAMES[i]!] = this.drops[i]!;
    return { stats, drops };
  }
}
