// Every frame the pipeline does not deliver ends in a numbered reason, counted
// here. Counters are Float64Arrays (exact to 2^53) indexed by small integers,
// so counting costs one typed-array increment and never allocates.

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
  IcmpRateLimited,
  PortGone,
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
  'icmp-rate-limited',
  'port-gone',
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
