// ECN and DSCP across the VXLAN tunnel, as the Linux vxlan device does it.
//
// Encapsulation (drivers/net/vxlan/vxlan_core.c vxlan_xmit_one): the outer DS
// byte starts from the device's `tos` setting — 0 unless `ip link … tos` was
// given, 1 meaning "inherit" (ip_tunnel_get_dsfield of the inner header) —
// and then ip_tunnel_ecn_encap (include/net/ip_tunnels.h) replaces its ECN
// bits with INET_ECN_encapsulate (include/net/inet_ecn.h): the inner ECN
// codepoint is copied, except CE, which becomes ECT(0) (RFC 6040 §4.1, the
// "normal mode"). So with the default device the outer DSCP is 0 and only the
// ECN bits follow the inner packet: inner 0xbb (EF + CE) → outer 0x02.
//
// Decapsulation (vxlan_rcv → vxlan_ecn_decapsulate → IP_ECN_decapsulate →
// INET_ECN_decapsulate): RFC 6040 §4.2's table. Outer CE over an inner
// Not-ECT packet is dropped (the device counts rx_frame_errors); outer CE over
// an ECT inner packet sets the inner CE (IP_ECN_set_ce, checksum updated
// incrementally); outer ECT(1) over inner ECT(0) sets inner ECT(1)
// (IP_ECN_set_ect1); outer ECT over inner Not-ECT is delivered unchanged and
// only logged (log_ecn_error). The inner DSCP is never touched.
//
// Pure functions over bytes; nothing here allocates.
import { updateChecksum16 } from '../wire/checksum.js';

/** The two ECN bits of the DS byte (RFC 3168 §5). */
export const Ecn = { NotEct: 0, Ect1: 1, Ect0: 2, Ce: 3 } as const;
export const ECN_MASK = 3;

/** The vxlan device's `tos` setting that means "copy the inner DS byte" (`ip link … tos inherit`). */
export const TOS_INHERIT = 1;

/**
 * INET_ECN_encapsulate: `outer` with its ECN bits replaced by the inner
 * packet's, CE mapped to ECT(0).
 */
export function ecnEncapsulate(outer: number, inner: number): number {
  const ie = inner & ECN_MASK;
  return (outer & ~ECN_MASK & 0xff) | (ie === Ecn.Ce ? Ecn.Ect0 : ie);
}

/**
 * The outer DS byte vxlan_xmit_one writes for an inner packet whose DS byte
 * is `innerTos` (pass -1 when the inner frame is not IP: no ECN to copy, as
 * ip_tunnel_get_dsfield returns 0 then). `deviceTos` is the device's `tos`
 * setting: 0 by default, TOS_INHERIT, or a fixed value.
 */
export function vxlanOuterTos(innerTos: number, deviceTos = 0): number {
  const inner = innerTos < 0 ? 0 : innerTos & 0xff;
  const base = deviceTos === TOS_INHERIT ? inner : deviceTos & 0xff;
  return ecnEncapsulate(base, inner);
}

/** What INET_ECN_decapsulate decided (its return value, plus what it did to the inner header). */
export const enum EcnDecap {
  /** Delivered; the inner ECN field is unchanged. */
  Unchanged = 0,
  /** Delivered; the inner header was marked CE. */
  SetCe = 1,
  /** Delivered; the inner ECT(0) became ECT(1). */
  SetEct1 = 2,
  /** Delivered unchanged, but the kernel logs it: outer ECT over an inner Not-ECT packet ("non-ECT from … with TOS=…"). */
  LogNotEct = 3,
  /** Dropped: outer CE over an inner Not-ECT packet (RFC 6040 §4.2; the kernel counts rx_frame_errors). */
  DropCeOnNotEct = 4,
}

/**
 * __INET_ECN_decapsulate over the two DS bytes, without touching any header:
 * what decapsulating would do.
 */
export function ecnDecapDecision(outerTos: number, innerTos: number): EcnDecap {
  const o = outerTos & ECN_MASK;
  const i = innerTos & ECN_MASK;
  if (i === Ecn.NotEct) {
    if (o === Ecn.NotEct) return EcnDecap.Unchanged;
    if (o === Ecn.Ce) return EcnDecap.DropCeOnNotEct;
    return EcnDecap.LogNotEct;
  }
  if (o === Ecn.Ce) return i === Ecn.Ce ? EcnDecap.Unchanged : EcnDecap.SetCe;
  if (o === Ecn.Ect1 && i === Ecn.Ect0) return EcnDecap.SetEct1;
  return EcnDecap.Unchanged;
}

/**
 * IP_ECN_decapsulate on the inner IPv4 header at buf[ipOff..] (already
 * checked by the caller: at least 20 bytes, version 4): applies the decision
 * in place, updating the header checksum incrementally (RFC 1624; the word
 * at offset 0 holds version/IHL and the DS byte), and returns it. The caller
 * drops the packet on DropCeOnNotEct.
 */
export function ecnDecapsulateIpv4(outerTos: number, buf: Uint8Array, ipOff: number): EcnDecap {
  const tos = buf[ipOff + 1]!;
  const d = ecnDecapDecision(outerTos, tos);
  let next = tos;
  if (d === EcnDecap.SetCe) next = tos | Ecn.Ce;
  else if (d === EcnDecap.SetEct1) next = tos ^ ECN_MASK;
  else return d;
  const b0 = buf[ipOff]!;
  const csum = (buf[ipOff + 10]! << 8) | buf[ipOff + 11]!;
  const c = updateChecksum16(csum, (b0 << 8) | tos, (b0 << 8) | next);
  buf[ipOff + 1] = next;
  buf[ipOff + 10] = c >>> 8;
  buf[ipOff + 11] = c & 0xff;
  return d;
}
