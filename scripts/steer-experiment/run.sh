#!/usr/bin/env bash
# The steering experiment (README.md beside this file): builds steer.c into a temporary directory,
# creates the namespaces steer-a, steer-b and steer-c (underlay 198.18.12.0/24), runs it for at most
# 120 s and deletes the namespaces again. Root. Arguments go to ./steer; CFLAGS=-DNQ=3 for 3 workers.
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "steer-experiment: needs root (network namespaces)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "steer-experiment: needs gcc" >&2; exit 1; }
out=$(mktemp -d /tmp/silkworm-steer.XXXXXX)
cleanup() { for n in a b c; do ip netns del "steer-$n" 2>/dev/null; done; rm -rf "$out"; }
trap cleanup EXIT
for n in a b c; do ip netns del "steer-$n" 2>/dev/null; done
set -e
gcc -O2 -Wall ${CFLAGS:-} -o "$out/steer" "$dir/steer.c"
for n in a b c; do ip netns add "steer-$n"; done
# The container's namespace: no IPv6 noise, no ICMP rate limit (the experiment counts ICMP errors).
ip netns exec steer-c sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
  net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000
# Underlay: steer-a (the cell, 198.18.12.1) <-veth-> steer-b (a peer cell, 198.18.12.2).
ip -n steer-a link add sveth-a type veth peer name sveth-b netns steer-b
ip -n steer-a addr add 198.18.12.1/24 dev sveth-a
ip -n steer-b addr add 198.18.12.2/24 dev sveth-b
for n in a b; do ip -n "steer-$n" link set lo up; ip -n "steer-$n" link set "sveth-$n" up; done
set +e
STEER_CFG="$dir/cfg-tap.sh" timeout 120 "$out/steer" "$@"
rc=$?
echo "exit code $rc"
exit $rc
