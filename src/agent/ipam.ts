// The cell's address management, as silk-cni's host-local IPAM does it within
// the cell's lease: the lowest free address, where .0 is the VTEP, .1 is kept
// free (silk's gateway) and the last address is broadcast.
import { parseCidr } from '../util/ip.js';

/** The lowest free container address in `lease` (e.g. 10.255.1.0/24); throws when none is left. */
export function nextIp(lease: string, inUse: (ip: number) => boolean): number {
  const { addr, len } = parseCidr(lease);
  const size = 2 ** (32 - len);
  for (let i = 2; i < size - 1; i++) {
    const ip = (addr + i) >>> 0;
    if (!inUse(ip)) return ip;
  }
  throw new Error(`no free address left in ${lease}`);
}
