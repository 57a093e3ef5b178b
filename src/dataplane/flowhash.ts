// UDP source port for the outer header: a hash of the inner flow, so one flow
// always takes one underlay path (ECMP) and different flows spread (RFC 7348
// section 5: "it is recommended that the UDP source port number be calculated
// using a hash of fields from the inner packet"). The kernel maps its skb hash
// into the local port range (udp_flow_src_port); we do the same with a
// configurable range.

/** A 32-bit integer mix (murmur3's finalizer): cheap, no allocation. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function flowHash(src: number, dst: number, proto: number, sport: number, dport: number): number {
  let h = mix(src ^ 0x9e3779b9);
  h = mix(h ^ dst);
  h = mix(h ^ ((proto << 16) | 0));
  h = mix(h ^ (((sport & 0xffff) << 16) | (dport & 0xffff)));
  return h;
}

/** Map a hash into [min, max] the way the kernel does: scale, don't mod (no bias toward low ports). */
export function sourcePortFor(hash: number, min: number, max: number): number {
  const span = max - min + 1;
  return min + Math.floor((hash / 0x100000000) * span);
}
