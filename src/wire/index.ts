// src/wire: views, reprs and checksums for the headers silkworm handles.
// See each module's top comment for the header diagram and its contract.
export * from './errors.js';
export * from './checksum.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ipv4.js';
export * from './icmp.js';
export * from './udp.js';
export * from './tcp.js';
export * from './vxlan.js';
export * from './hex.js';
export * from './bytes.js';
export * from './offsets.js';
