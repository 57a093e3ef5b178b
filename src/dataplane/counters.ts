// Every frame the pipeline does not deliver ends in a numbered reason, counted
// here. Counters are Float64Arrays (exact to 2^53) indexed by small integers,
// so counting costs one typed-array increment and never allocates.
//
// One table says everything about a reason: its number (the enum), its stable
// name (printed by `show counters`, the `reason` label of Prometheus's
// silkworm_drops_total, `trace`'s DROP line) and a one-line help text. The
// table is typed by the enum, so a reason without a row, or a row without a
// reason, does not compile. Names are a contract: never rename one.
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
// that would have caused it (it was a drop reason, between
// unrelated-icmp-error and port-gone, until that double count was found).

export const enum Drop {
  // ---- pipeline (src/dataplane): frames from a TAP or datagrams from UDP 4789
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
  // ---- io layer (src/io, src/offload): drops made by the devices, not the
  // pipeline; appended after PortGone so the numbers above never change. The
  // native readers count into the same table by these numbers.
  TapRxOversize,
  TapRxBadVnet,
  TapRxUnsupportedGso,
  TapTxFull,
  TapTxRefused,
  TapTxGone,
  UnderlayRxOversize,
  UnderlayTxFull,
  UnderlayTxRefused,
  // ---- fragments and ECN (src/dataplane/defrag.ts): appended so the numbers
  // above never change. The eight fragment reasons are in FragDrop's order
  // (fragments.ts): the reassembly tables count straight into this table.
  FragmentOverlap,
  FragmentDuplicate,
  FragmentInvalid,
  FragmentOversize,
  FragmentEcn,
  FragmentMemory,
  FragmentTimeout,
  FragmentTooMany,
  FragmentNoRoom,
  EcnCeOnNotEct,
  BadVxlanReserved,
  Count,
}

export interface DropInfo {
  /** Stable kebab-case name. */
  readonly name: string;
  /** One line for humans: what happened to the frame and why. */
  readonly help: string;
}

/** The reason table, one row per Drop; `Count` is not a reason. */
export const DROPS: { readonly [K in Exclude<Drop, Drop.Count>]: DropInfo } = {
  [Drop.Truncated]: { name: 'truncated', help: 'frame shorter than the Ethernet (or inner Ethernet) header' },
  [Drop.NotIpv4]: { name: 'not-ipv4', help: 'EtherType is neither IPv4 nor ARP (IPv6 is not routed)' },
  [Drop.Arp]: { name: 'arp', help: 'ARP frame: containers are NOARP with a permanent neighbor, so none is answered' },
  [Drop.BadIpHeader]: { name: 'bad-ip-header', help: 'IPv4 header malformed: version, header length or total length' },
  [Drop.BadIpChecksum]: { name: 'bad-ip-checksum', help: 'IPv4 header checksum is wrong' },
  [Drop.Fragment]: { name: 'fragment', help: 'IPv4 fragment that cannot be split further (less than 8 bytes of room after the header at this MTU)' },
  [Drop.SpoofedSource]: { name: 'spoofed-source', help: "a container sent a packet whose source is not its own IP" },
  [Drop.NoRoute]: { name: 'no-route', help: 'no route to the destination (answered with ICMP net unreachable when the rate limit allows)' },
  [Drop.NoNeighbor]: { name: 'no-neighbor', help: "no neighbor entry for the route's next hop (remote VTEP)" },
  [Drop.NoFdb]: { name: 'no-fdb', help: "no FDB entry for the next hop's MAC: no underlay address to send to" },
  [Drop.TtlExceeded]: { name: 'ttl-exceeded', help: 'TTL 1 or 0 on arrival (answered with ICMP time exceeded when the rate limit allows)' },
  [Drop.TooBig]: { name: 'too-big', help: 'packet larger than the container MTU (DF set: answered with fragmentation needed)' },
  [Drop.ToCell]: { name: 'to-cell', help: 'addressed to the cell itself (VTEP or gateway address), which runs no services' },
  [Drop.BadVxlan]: { name: 'bad-vxlan', help: 'UDP datagram shorter than a VXLAN header' },
  [Drop.BadVxlanFlags]: { name: 'bad-vxlan-flags', help: 'VXLAN flags without I, or with bits other than I and G (the kernel drops these too)' },
  [Drop.WrongVni]: { name: 'wrong-vni', help: "VXLAN Network Identifier is not this network's" },
  [Drop.UnknownUnderlaySource]: { name: 'unknown-underlay-source', help: 'VXLAN from an underlay address that holds no lease (or from this cell)' },
  [Drop.SpoofedInnerSource]: { name: 'spoofed-inner-source', help: "inner source is outside the sending cell's lease" },
  [Drop.WrongInnerMac]: { name: 'wrong-inner-mac', help: "inner destination MAC is not this cell's VTEP MAC" },
  [Drop.NoContainer]: { name: 'no-container', help: 'no container with the destination IP on this cell' },
  [Drop.PolicyDenied]: { name: 'policy-denied', help: 'no tracked connection and no policy allows it (rejected with ICMP port unreachable when the rate limit allows)' },
  [Drop.BadL4Header]: { name: 'bad-l4-header', help: 'TCP, UDP or ICMP header shorter than its fixed part' },
  [Drop.UnrelatedIcmpError]: { name: 'unrelated-icmp-error', help: 'ICMP error that quotes no tracked connection' },
  [Drop.PortGone]: { name: 'port-gone', help: "frame from a container's TAP after the container was removed" },
  // ---- io layer
  [Drop.TapRxOversize]: { name: 'tap-rx-oversize', help: "a frame read from a container's TAP was longer than a slot (or a segment's slot, with TSO)" },
  [Drop.TapRxBadVnet]: { name: 'tap-rx-bad-vnet', help: 'a TAP frame with a virtio_net_hdr the cell did not ask for, or inconsistent with the frame' },
  [Drop.TapRxUnsupportedGso]: { name: 'tap-rx-unsupported-gso', help: 'a TAP super-frame of a GSO type the cell cannot segment (not plain TCPv4)' },
  [Drop.TapTxFull]: { name: 'tap-tx-full', help: "not written to a container's TAP: its queue was full (EAGAIN)" },
  [Drop.TapTxRefused]: { name: 'tap-tx-refused', help: "not written to a container's TAP: the kernel refused the frame (EINVAL)" },
  [Drop.TapTxGone]: { name: 'tap-tx-gone', help: "not written to a container's TAP: the device is gone (its namespace was deleted)" },
  [Drop.UnderlayRxOversize]: { name: 'underlay-rx-oversize', help: 'a datagram received on the underlay was longer than a slot (MSG_TRUNC)' },
  [Drop.UnderlayTxFull]: { name: 'underlay-tx-full', help: "not sent on the underlay: the socket's send buffer was full (EAGAIN)" },
  [Drop.UnderlayTxRefused]: { name: 'underlay-tx-refused', help: 'not sent on the underlay: the kernel refused the packet (EMSGSIZE, ENETUNREACH, ...)' },
  // ---- fragments and ECN
  [Drop.FragmentOverlap]: { name: 'fragment-overlap', help: 'IPv4 fragment overlapping data already held; the whole datagram was dropped' },
  [Drop.FragmentDuplicate]: { name: 'fragment-duplicate', help: 'IPv4 fragment repeating data already held, or arriving after its datagram completed' },
  [Drop.FragmentInvalid]: { name: 'fragment-invalid', help: 'IPv4 fragment inconsistent with the others (zero length, two different ends, data past the end); the datagram was dropped' },
  [Drop.FragmentOversize]: { name: 'fragment-oversize', help: 'IPv4 fragments adding up to more than 65535 bytes; the datagram was dropped' },
  [Drop.FragmentEcn]: { name: 'fragment-ecn', help: 'IPv4 fragments mixing Not-ECT and ECT codepoints (RFC 3168 5.3); the datagram was dropped' },
  [Drop.FragmentMemory]: { name: 'fragment-memory', help: 'IPv4 fragment dropped: the reassembly memory budget (ipfrag_high_thresh) or queue table was full' },
  [Drop.FragmentTimeout]: { name: 'fragment-timeout', help: 'IPv4 fragments of a datagram that did not complete within the reassembly timeout (ipfrag_time)' },
  [Drop.FragmentTooMany]: { name: 'fragment-too-many', help: 'IPv4 datagram in more fragments than one reassembly queue holds; the datagram was dropped' },
  [Drop.FragmentNoRoom]: { name: 'fragment-no-room', help: "a datagram's fragments did not fit the pipeline's output area for this batch" },
  [Drop.EcnCeOnNotEct]: { name: 'ecn-ce-on-not-ect', help: 'VXLAN with CE on the outer header around a Not-ECT inner packet (RFC 6040 4.2; the kernel drops it too)' },
  [Drop.BadVxlanReserved]: { name: 'bad-vxlan-reserved', help: 'VXLAN with a non-zero reserved byte after the VNI (the kernel drops these too)' },
};

function column<T>(n: number, row: (i: number) => T): readonly T[] {
  return Object.freeze(Array.from({ length: n }, (_, i) => row(i)));
}

/** Stable names by reason number: `show counters`, metric labels, `trace`. */
export const DROP_NAMES: readonly string[] = column(Drop.Count, (i) => DROPS[i as Exclude<Drop, Drop.Count>].name);
/** Help text by reason number. */
export const DROP_HELP: readonly string[] = column(Drop.Count, (i) => DROPS[i as Exclude<Drop, Drop.Count>].help);

/** The name of drop reason `r` (a number from a batch's outTarget), or `reason-<r>` for one out of range. */
export function dropName(r: number): string {
  return DROP_NAMES[r] ?? `reason-${r}`;
}

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
  /** A TCP packet conntrack calls INVALID (policy/conntrack.ts): sent on or judged untracked, as the kernel does. */
  ConntrackInvalid,
  Count,
}

/** Stable names of the stats, by number (typed by the enum like DROPS). */
const STATS: { readonly [K in Exclude<Stat, Stat.Count>]: string } = {
  [Stat.EgressPackets]: 'egress-packets',
  [Stat.EgressBytes]: 'egress-bytes',
  [Stat.IngressPackets]: 'ingress-packets',
  [Stat.IngressBytes]: 'ingress-bytes',
  [Stat.Encapsulated]: 'encapsulated',
  [Stat.Decapsulated]: 'decapsulated',
  [Stat.DeliveredLocal]: 'delivered-same-cell',
  [Stat.DeliveredRemote]: 'delivered-from-remote',
  [Stat.IcmpSent]: 'icmp-sent',
  [Stat.PolicyAllowed]: 'policy-allowed',
  [Stat.ConntrackAllowed]: 'conntrack-allowed',
  [Stat.ChecksumCompleted]: 'checksum-completed',
  [Stat.IcmpRateLimited]: 'icmp-rate-limited',
  [Stat.Delivered]: 'delivered',
  [Stat.Sent]: 'sent',
  [Stat.ConntrackInvalid]: 'conntrack-invalid',
};

export const STAT_NAMES: readonly string[] = column(Stat.Count, (i) => STATS[i as Exclude<Stat, Stat.Count>]);

export class Counters {
  readonly drops: Float64Array;
  readonly stats: Float64Array;

  /** Bytes a shared buffer for one table needs (Counters.shared). */
  static readonly BYTES = (Drop.Count + Stat.Count) * 8;

  /**
   * `buffer`: keep the numbers in this (shared) buffer of Counters.BYTES, so
   * another thread can read them — a cell's workers count into buffers the
   * main thread sums (src/cell/workers.ts). Only the owner writes.
   */
  constructor(buffer?: ArrayBufferLike) {
    this.drops = buffer ? new Float64Array(buffer, 0, Drop.Count) : new Float64Array(Drop.Count);
    this.stats = buffer ? new Float64Array(buffer, Drop.Count * 8, Stat.Count) : new Float64Array(Stat.Count);
  }

  /** Add another table's numbers into this one. */
  add(other: Counters): void {
    for (let i = 0; i < Drop.Count; i++) this.drops[i] = this.drops[i]! + other.drops[i]!;
    for (let i = 0; i < Stat.Count; i++) this.stats[i] = this.stats[i]! + other.stats[i]!;
  }

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
