// Names and addresses silk fixes for every cell, defined once for the rooms
// that need them (the userspace pipeline, the kernel backend, the container
// set-up): silk-daemon's VXLAN device name and the link-local gateway every
// container routes through (silk-cni gives the host side of each container
// link 169.254.0.1).
import { ipToU32 } from './ip.js';

/** The VXLAN device silk-daemon creates; the userspace cell shows the same name in its tables. */
export const VTEP_DEV = 'silk-vtep';

/** 169.254.0.1: every container's default gateway and the source of the cell's ICMP errors (u32, host order). */
export const GATEWAY_IP = ipToU32('169.254.0.1');
