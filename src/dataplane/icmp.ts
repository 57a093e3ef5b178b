// ICMP errors the cell generates (time exceeded, net unreachable,
// fragmentation needed, port unreachable for a policy reject), written in
// place over the offending packet, and the token bucket that limits them
// (the kernel's icmp_msgs_per_sec / icmp_msgs_burst, driven by `now`).
import { writeIcmpError } from '../wire/icmp.js';
import type { Ipv4View } from '../wire/ipv4.js';
import { Stat } from './counters.js';
import type { L4 } from './l4.js';
import type { Run } from './state.js';

/** TTL of the errors we generate (the kernel's default for locally generated packets). */
const ICMP_ERROR_TTL = 64;

/** A token bucket: `rate` tokens per second, at most `burst` saved up. */
export class IcmpLimiter {
  constructor(
    readonly rate: number,
    readonly burst: number,
    private tokens = burst,
    private last = 0,
  ) {}

  /** Spend a token at time `now` (seconds); false when the bucket is empty. */
  take(now: number): boolean {
    const elapsed = now - this.last;
    this.last = now;
    if (elapsed > 0) this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** A copy in the same state (a trace spends the copy's tokens, not the cell's). */
  clone(): IcmpLimiter {
    return new IcmpLimiter(this.rate, this.burst, this.tokens, this.last);
  }
}

/**
 * Turn the packet in `ip` (at ipOff in buf, L4 fields in `l4`) into an ICMP
 * error addressed to its source, from `from`, written in place. Returns the
 * IPv4 length, or 0 when rate-limited (counted), or when the offending
 * packet is itself an ICMP error or a fragment other than the first (RFC 1122
 * 3.2.2: no ICMP error is sent for either).
 */
export function icmpInPlace(
  buf: Uint8Array,
  ipOff: number,
  ip: Ipv4View,
  l4: L4,
  type: number,
  code: number,
  mtu: number,
  from: number,
  now: number,
  run: Run,
): number {
  if (l4.icmpError) return 0;
  if (ip.isFragment && ip.fragOffset !== 0) return 0;
  if (!run.icmp.take(now)) {
    run.counters.stats[Stat.IcmpRateLimited]!++;
    return 0;
  }
  const quoteLen = Math.min(ip.totalLen, ip.headerLen + 8);
  const n = writeIcmpError(buf, ipOff, type, code, mtu, from, ip.srcAddr, buf, ipOff, quoteLen, ICMP_ERROR_TTL);
  run.counters.stats[Stat.IcmpSent]!++;
  return n;
}
