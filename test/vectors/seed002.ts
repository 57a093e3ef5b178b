// Seed 002 (/work/shared/seeds/002_3ee271f20d92c616.txt): one TCP segment
// ("cf-networking with silk!\n", 10.255.99.3:56766 -> 10.255.132.2:7777)
// captured with `tcpdump -v -XX` at six points of its path across two kernel
// silk cells. Each constant is tcpdump's output exactly as pasted in the seed
// (the shell's "^C" echo included), minus the command line; the bytes are
// what the tests use as vectors.
import { parseHexDump } from '../../src/wire/hex.js';

/** source container eth0: frame as the app sent it (TTL 64; TCP checksum not yet filled: 0xfd42, correct 0x0fc9). */
export const SRC_CONTAINER_ETH0 = `tcpdump: listening on eth0, link-type EN10MB (Ethernet), capture size 262144 bytes
^C03:51:59.607085 IP (tos 0x0, ttl 64, id 39442, offset 0, flags [DF], proto TCP (6), length 77)
    10.255.99.3.56766 > 10.255.132.2.7777: Flags [P.], cksum 0xfd42 (incorrect -> 0x0fc9), seq 2356689519:2356689544, ack 2161316842, win 215, options [nop,nop,TS val 530639 ecr 679117], length 25
\t0x0000:  aaaa 0aff 6303 eeee 0aff 6303 0800 4500  ....c.....c...E.
\t0x0010:  004d 9a12 4000 4006 a395 0aff 6303 0aff  .M..@.@.....c...
\t0x0020:  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018  .....a.x:o......
\t0x0030:  00d7 fd42 0000 0101 080a 0008 18cf 000a  ...B............
\t0x0040:  5ccd 6366 2d6e 6574 776f 726b 696e 6720  \\.cf-networking.
\t0x0050:  7769 7468 2073 696c 6b21 0a              with.silk!.
`;

/** source cell silk-vtep: inner frame with VTEP MACs, TTL 63. */
export const SRC_HOST_VTEP = `tcpdump: listening on silk-vtep, link-type EN10MB (Ethernet), capture size 262144 bytes
03:51:59.607108 IP (tos 0x0, ttl 63, id 39442, offset 0, flags [DF], proto TCP (6), length 77)
    10.255.99.3.56766 > 10.255.132.2.7777: Flags [P.], cksum 0xfd42 (incorrect -> 0x0fc9), seq 2356689519:2356689544, ack 2161316842, win 215, options [nop,nop,TS val 530639 ecr 679117], length 25
\t0x0000:  eeee 0aff 8400 eeee 0aff 6300 0800 4500  ..........c...E.
\t0x0010:  004d 9a12 4000 3f06 a495 0aff 6303 0aff  .M..@.?.....c...
\t0x0020:  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018  .....a.x:o......
\t0x0030:  00d7 fd42 0000 0101 080a 0008 18cf 000a  ...B............
\t0x0040:  5ccd 6366 2d6e 6574 776f 726b 696e 6720  \\.cf-networking.
\t0x0050:  7769 7468 2073 696c 6b21 0a              with.silk!.
`;

/** source cell eth0: outer Ethernet + IPv4 + UDP 4789 + VXLAN-GBP (0x88, GPID 1, VNI 1) + inner frame. */
export const SRC_HOST_ETH0 = `tcpdump: listening on eth0, link-type EN10MB (Ethernet), capture size 262144 bytes
03:51:59.607140 IP (tos 0x0, ttl 64, id 37823, offset 0, flags [none], proto UDP (17), length 127)
    diego-cell-0.node.dc1.cf.internal.36821 > diego-cell-1.node.dc1.cf.internal.4789: VXLAN, flags [I] (0x88), vni 1
IP (tos 0x0, ttl 63, id 39442, offset 0, flags [DF], proto TCP (6), length 77)
    10.255.99.3.56766 > 10.255.132.2.7777: Flags [P.], cksum 0x0fc9 (correct), seq 2356689519:2356689544, ack 2161316842, win 215, options [nop,nop,TS val 530639 ecr 679117], length 25
\t0x0000:  4201 0a00 0001 4201 0a00 1010 0800 4500  B.....B.......E.
\t0x0010:  007f 93bf 0000 4011 a291 0a00 1010 0a00  ......@.........
\t0x0020:  200e 8fd5 12b5 006b 0000 8800 0001 0000  .......k........
\t0x0030:  0100 eeee 0aff 8400 eeee 0aff 6300 0800  ............c...
\t0x0040:  4500 004d 9a12 4000 3f06 a495 0aff 6303  E..M..@.?.....c.
\t0x0050:  0aff 8402 ddbe 1e61 8c78 3a6f 80d3 13ea  .......a.x:o....
\t0x0060:  8018 00d7 0fc9 0000 0101 080a 0008 18cf  ................
\t0x0070:  000a 5ccd 6366 2d6e 6574 776f 726b 696e  ..\\.cf-networkin
\t0x0080:  6720 7769 7468 2073 696c 6b21 0a         g.with.silk!.
`;

/** destination cell eth0: the same datagram, outer MACs of the receiving hop. */
export const DST_HOST_ETH0 = `tcpdump: listening on eth0, link-type EN10MB (Ethernet), capture size 262144 bytes
03:51:59.622806 IP (tos 0x0, ttl 64, id 37823, offset 0, flags [none], proto UDP (17), length 127)
    diego-cell-0.node.dc1.cf.internal.36821 > diego-cell-1.node.dc1.cf.internal.4789: VXLAN, flags [I] (0x88), vni 1
IP (tos 0x0, ttl 63, id 39442, offset 0, flags [DF], proto TCP (6), length 77)
    10.255.99.3.56766 > 10.255.132.2.7777: Flags [P.], cksum 0x0fc9 (correct), seq 2356689519:2356689544, ack 2161316842, win 215, options [nop,nop,TS val 530639 ecr 679117], length 25
\t0x0000:  4201 0a00 200e 4201 0a00 0001 0800 4500  B.....B.......E.
\t0x0010:  007f 93bf 0000 4011 a291 0a00 1010 0a00  ......@.........
\t0x0020:  200e 8fd5 12b5 006b 0000 8800 0001 0000  .......k........
\t0x0030:  0100 eeee 0aff 8400 eeee 0aff 6300 0800  ............c...
\t0x0040:  4500 004d 9a12 4000 3f06 a495 0aff 6303  E..M..@.?.....c.
\t0x0050:  0aff 8402 ddbe 1e61 8c78 3a6f 80d3 13ea  .......a.x:o....
\t0x0060:  8018 00d7 0fc9 0000 0101 080a 0008 18cf  ................
\t0x0070:  000a 5ccd 6366 2d6e 6574 776f 726b 696e  ..\\.cf-networkin
\t0x0080:  6720 7769 7468 2073 696c 6b21 0a         g.with.silk!.
`;

/** destination cell silk-vtep: decapsulated inner frame, TTL 63. */
export const DST_HOST_VTEP = `tcpdump: listening on silk-vtep, link-type EN10MB (Ethernet), capture size 262144 bytes
03:51:59.622887 IP (tos 0x0, ttl 63, id 39442, offset 0, flags [DF], proto TCP (6), length 77)
    10.255.99.3.56766 > 10.255.132.2.7777: Flags [P.], cksum 0x0fc9 (correct), seq 2356689519:2356689544, ack 2161316842, win 215, options [nop,nop,TS val 530639 ecr 679117], length 25
\t0x0000:  eeee 0aff 8400 eeee 0aff 6300 0800 4500  ..........c...E.
\t0x0010:  004d 9a12 4000 3f06 a495 0aff 6303 0aff  .M..@.?.....c...
\t0x0020:  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018  .....a.x:o......
\t0x0030:  00d7 0fc9 0000 0101 080a 0008 18cf 000a  ................
\t0x0040:  5ccd 6366 2d6e 6574 776f 726b 696e 6720  \\.cf-networking.
\t0x0050:  7769 7468 2073 696c 6b21 0a              with.silk!.
`;

/** destination container eth0: delivered frame (ee:ee/aa:aa MACs), TTL 62. */
export const DST_CONTAINER_ETH0 = `tcpdump: listening on eth0, link-type EN10MB (Ethernet), capture size 262144 bytes
^C03:51:59.622918 IP (tos 0x0, ttl 62, id 39442, offset 0, flags [DF], proto TCP (6), length 77)
    10.255.99.3.56766 > 10.255.132.2.7777: Flags [P.], cksum 0x0fc9 (correct), seq 2356689519:2356689544, ack 2161316842, win 215, options [nop,nop,TS val 530639 ecr 679117], length 25
\t0x0000:  eeee 0aff 8402 aaaa 0aff 8402 0800 4500  ..............E.
\t0x0010:  004d 9a12 4000 3e06 a595 0aff 6303 0aff  .M..@.>.....c...
\t0x0020:  8402 ddbe 1e61 8c78 3a6f 80d3 13ea 8018  .....a.x:o......
\t0x0030:  00d7 0fc9 0000 0101 080a 0008 18cf 000a  ................
\t0x0040:  5ccd 6366 2d6e 6574 776f 726b 696e 6720  \\.cf-networking.
\t0x0050:  7769 7468 2073 696c 6b21 0a              with.silk!.
`;

/** All six dumps in path order, by name. */
export const SEED002_DUMPS = {
  SRC_CONTAINER_ETH0,
  SRC_HOST_VTEP,
  SRC_HOST_ETH0,
  DST_HOST_ETH0,
  DST_HOST_VTEP,
  DST_CONTAINER_ETH0,
} as const;

export type Seed002Name = keyof typeof SEED002_DUMPS;

/** A dump's packet bytes (a fresh copy each call). */
export function seedBytes(name: Seed002Name): Uint8Array {
  return parseHexDump(SEED002_DUMPS[name]);
}

/** Any dump or hex text → bytes. */
export function dumpToBytes(dump: string): Uint8Array {
  return parseHexDump(dump);
}
