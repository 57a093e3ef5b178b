// The cell's address management, as silk-cni's host-local IPAM does it within
// the cell's lease: the lowest free address, where .0 is the VTEP, .1 is kept
// free (silk's gateway) and the last address is broadcast.
import { ipToU32, isIpv4, parseCidr } from '../util/ip.js';

/** Thrown when the lease has no free address left (the admin API answers 507). */
export class LeaseExhaustedError extends Error {}

/** The lowest free container address in `lease` (e.g. 10.255.1.0/24); throws when none is left. */
export function nextIp(lease: string, inUse: (ip: number) => boolean): number {
  const { addr, len } = parseCidr(lease);
  const size = 2 ** (32 - len);
  for (let i = 2; i < size - 1; i++) {
    const ip = (addr + i) >>> 0;
    if (!inUse(ip)) return ip;
  }
  throw new LeaseExhaustedError(`no free address left in ${lease}`);
}

/**
 * A fixed address for a container (what a delegated IPAM plugin such as
 * host-local chose): inside `lease`, and not .0 (the VTEP), .1 (silk's
 * gateway) or the broadcast address. Throws one sentence.
 */
export function checkFixedIp(text: string, lease: string): number {
  if (!isIpv4(text)) throw new Error(`ip "${text}" is not an IPv4 address`);
  const ip = ipToU32(text);
  const { addr, len } = parseCidr(lease);
  const size = 2 ** (32 - len);
  const off = (ip - addr) >>> 0;
  if (off >= size) throw new Error(`ip ${text} is outside the cell's lease ${lease}`);
  if (off < 2 || off === size - 1) throw new Error(`ip ${text} is reserved in ${lease} (.0 is the VTEP, .1 silk's gateway, the last is broadcast)`);
  return ip;
}
