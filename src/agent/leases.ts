// The controller's leases (silk-controller's JSON: dotted quads and CIDR
// text) turned into numbers once, for both backends. A lease that does not
// parse is skipped and logged, never fatal: one bad row must not cut a cell
// off from every other cell.
import type { Lease } from '../net/controller-types.js';
import { ipToU32, parseCidr } from '../util/ip.js';
import type { Logger } from '../util/log.js';

/** A cell's lease as the data planes use it (u32 addresses, host order). */
export interface LeaseInfo {
  underlayIp: number;
  /** The lease's network address, which is also that cell's VTEP overlay IP. */
  subnet: number;
  prefixLen: number;
}

export function parseLease(l: Lease): LeaseInfo {
  const s = parseCidr(l.overlay_subnet);
  return { underlayIp: ipToU32(l.underlay_ip), subnet: s.addr >>> 0, prefixLen: s.len };
}

/** Every lease that parses, in order; the others are logged as `skipping-bad-lease`. */
export function parseLeases(leases: readonly Lease[], log: Logger): LeaseInfo[] {
  const out: LeaseInfo[] = [];
  for (const l of leases) {
    try {
      out.push(parseLease(l));
    } catch {
      log.warn({ lease: l }, 'skipping-bad-lease');
    }
  }
  return out;
}
