#!/usr/bin/env bash
# Measures the two ways to handle a kernel peer's partial checksums
# (src/wire/checksum.ts, completePartialChecksum): a kernel VXLAN-GBP sender
# with default offloads in namespace ${P}A, a receiver in ${P}B that reads
# UDP 4789 either from a UDP socket (what the cell does) or from an AF_PACKET
# socket with PACKET_VNET_HDR + PACKET_AUXDATA (the alternative), and counts
# how many datagrams the kernel marked checksum-partial. Root; namespaces of
# its own (198.19.77.0/24, inside 198.18.0.0/15); removes them on exit.
#   sudo bash scripts/partial-csum/run.sh [seconds=3] [payload bytes=1000]
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-3}
LEN=${2:-1000}
P=pcsum$$
OUT=$(mktemp -d)
trap 'ip netns del ${P}A 2>/dev/null || true; ip netns del ${P}B 2>/dev/null || true; rm -rf "$OUT"' EXIT
gcc -O2 -Wall -o "$OUT/afp" afp-probe.c
gcc -O2 -Wall -o "$OUT/flood" udp-flood.c
ip netns add ${P}A
ip netns add ${P}B
ip -n ${P}A link add eth0 type veth peer name eth0 netns ${P}B
ip -n ${P}A addr add 198.19.77.1/24 dev eth0
ip -n ${P}B addr add 198.19.77.2/24 dev eth0
for n in ${P}A ${P}B; do ip -n $n link set eth0 up; ip -n $n link set lo up; done
ip -n ${P}A link add vx type vxlan id 1 dev eth0 local 198.19.77.1 remote 198.19.77.2 dstport 4789 nolearning gbp
ip -n ${P}A addr add 10.99.0.1/24 dev vx
ip -n ${P}A link set vx up
ip -n ${P}A neigh add 10.99.0.2 lladdr ee:ee:0a:63:00:02 dev vx nud permanent
for mode in udp packet udp packet; do
  ip netns exec ${P}B timeout $((SECS + 5)) "$OUT/afp" $mode eth0 "$(echo "$SECS + 1.5" | bc)" &
  sleep 0.3
  ip netns exec ${P}A timeout $((SECS + 5)) "$OUT/flood" "$SECS" "$LEN" >/dev/null
  wait
done
