#!/bin/bash
# Run as root on a scratch machine; everything lives in namespaces prefixed hf5- and is removed at the end.
# Writes pcaps to /tmp/hf5; the .ts vectors next to this script were cut from them (Ethernet stripped).
# Kernel captures: fragments made by a forwarding router (ip_do_fragment), and VXLAN outer headers.
set -u
P=hf5
cleanup() { for n in s r d v1 v2; do ip netns del $P-$n 2>/dev/null; done; }
mkdir -p /tmp/hf5
cleanup
for n in s r d v1 v2; do ip netns add $P-$n; ip -n $P-$n link set lo up; done
ip link add $P-sr type veth peer name $P-rs
ip link set $P-sr netns $P-s; ip link set $P-rs netns $P-r
ip link add $P-rd type veth peer name $P-dr
ip link set $P-rd netns $P-r; ip link set $P-dr netns $P-d
ip -n $P-s link set $P-sr mtu 9000 up; ip -n $P-r link set $P-rs mtu 9000 up
ip -n $P-r link set $P-rd mtu 1450 up; ip -n $P-d link set $P-dr mtu 1450 up
ip -n $P-s addr add 198.18.250.1/30 dev $P-sr; ip -n $P-r addr add 198.18.250.2/30 dev $P-rs
ip -n $P-r addr add 198.18.250.5/30 dev $P-rd; ip -n $P-d addr add 198.18.250.6/30 dev $P-dr
ip -n $P-s route add 198.18.250.4/30 via 198.18.250.2
ip -n $P-d route add 198.18.250.0/30 via 198.18.250.5
ip netns exec $P-r sysctl -qw net.ipv4.ip_forward=1
ip netns exec $P-r timeout 8 tcpdump -i $P-rs -w /tmp/hf5/in.pcap -U udp or '(ip[6:2] & 0x3fff != 0)' 2>/dev/null &
ip netns exec $P-d timeout 8 tcpdump -i $P-dr -w /tmp/hf5/out.pcap -U 'ip[6:2] & 0x3fff != 0' 2>/dev/null &
sleep 1.5
ip netns exec $P-s timeout 5 python3 - <<'PY'
import socket
IP_MTU_DISCOVER=10; IP_PMTUDISC_DONT=0
def send(size, opts, port):
    s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    if opts: s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, opts)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x2a)
    s.bind(('198.18.250.1', 40000+port))
    s.sendto(bytes((i*7+size) & 0xff for i in range(size)), ('198.18.250.6', port))
    s.close()
send(3000, b'', 5001)
send(9000, b'', 5002)
# router alert (copied) + experimental option 30 (not copied) + NOP NOP: 12 bytes of options
send(3000, bytes([0x94,4,0,0, 0x1e,6,0xab,0xcd,0xef,0x01, 1,1]), 5003)
send(8972, bytes([0x94,4,0,0, 0x1e,6,0xab,0xcd,0xef,0x01, 1,1]), 5004)
PY
# VXLAN: default device (no ttl/tos/df options); outer headers seen on the underlay
ip link add $P-v12 type veth peer name $P-v21
ip link set $P-v12 netns $P-v1; ip link set $P-v21 netns $P-v2
ip -n $P-v1 addr add 198.18.251.1/30 dev $P-v12; ip -n $P-v2 addr add 198.18.251.2/30 dev $P-v21
ip -n $P-v1 link set $P-v12 up; ip -n $P-v2 link set $P-v21 up
ip -n $P-v1 link add vx0 type vxlan id 1 dstport 4789 local 198.18.251.1 remote 198.18.251.2 gbp
ip -n $P-v2 link add vx0 type vxlan id 1 dstport 4789 local 198.18.251.2 remote 198.18.251.1 gbp
ip -n $P-v1 addr add 10.99.0.1/24 dev vx0; ip -n $P-v2 addr add 10.99.0.2/24 dev vx0
ip -n $P-v1 link set vx0 up; ip -n $P-v2 link set vx0 up
ip -d -n $P-v1 link show vx0 > /tmp/hf5/vxlan-details.txt
ip netns exec $P-v2 timeout 14 tcpdump -i $P-v21 -w /tmp/hf5/vx-under.pcap -U udp port 4789 2>/dev/null &
ip netns exec $P-v2 timeout 14 tcpdump -i vx0 -w /tmp/hf5/vx-inner.pcap -U icmp 2>/dev/null &
sleep 1.5
for tos in 0x00 0x01 0x02 0x03 0xb8 0xb9 0xba 0xbb; do ip netns exec $P-v1 ping -c1 -W1 -Q $tos 10.99.0.2 >/dev/null; done
# decap: the underlay marks the outer header CE (as a congested router would)
ip netns exec $P-v1 iptables -t mangle -A POSTROUTING -p udp --dport 4789 -j TOS --set-tos 0x03/0x03 && {
  for tos in 0x00 0x01 0x02 0x03 0xb8 0xba; do ip netns exec $P-v1 ping -c1 -W1 -Q $tos 10.99.0.2 >/dev/null; done
  ip -s -n $P-v2 link show vx0 > /tmp/hf5/vx-stats.txt
}
sleep 2
wait
cleanup
ip netns list | grep $P- || echo "clean"
