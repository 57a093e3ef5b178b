#!/bin/bash
# Run as root on a scratch machine. What a Linux router with conntrack (so nf_defrag_ipv4) forwards
# when fragments arrive out of order, with mixed TTL/ECN/DF, duplicated or overlapping.
# Namespaces hf5d-*, removed at the end; pcaps in /tmp/hf5d.
set -u
P=hf5d
mkdir -p /tmp/hf5d
cleanup() { for n in s r d; do ip netns del $P-$n 2>/dev/null; done; }
cleanup
for n in s r d; do ip netns add $P-$n; ip -n $P-$n link set lo up; done
ip link add $P-sr type veth peer name $P-rs
ip link set $P-sr netns $P-s; ip link set $P-rs netns $P-r
ip link add $P-rd type veth peer name $P-dr
ip link set $P-rd netns $P-r; ip link set $P-dr netns $P-d
for l in "s $P-sr" "r $P-rs" "r $P-rd" "d $P-dr"; do set -- $l; ip -n $P-$1 link set $2 up; done
# The sender side takes jumbo frames; the router's other link is 1500.
ip -n $P-s link set $P-sr mtu 9000; ip -n $P-r link set $P-rs mtu 9000
ip -n $P-s addr add 198.18.252.1/30 dev $P-sr; ip -n $P-r addr add 198.18.252.2/30 dev $P-rs
ip -n $P-r addr add 198.18.252.5/30 dev $P-rd; ip -n $P-d addr add 198.18.252.6/30 dev $P-dr
ip -n $P-s route add 198.18.252.4/30 via 198.18.252.2
ip -n $P-d route add 198.18.252.0/30 via 198.18.252.5
ip netns exec $P-r sysctl -qw net.ipv4.ip_forward=1
# A conntrack match, as silk's rules have: this alone makes the router defragment.
ip netns exec $P-r iptables -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -p udp -j ACCEPT
ip netns exec $P-r timeout 9 tcpdump -i $P-rs -w /tmp/hf5d/in.pcap -U udp or "(ip[6:2] & 0x3fff != 0)" 2>/dev/null &
ip netns exec $P-d timeout 9 tcpdump -i $P-dr -w /tmp/hf5d/out.pcap -U udp or "(ip[6:2] & 0x3fff != 0)" 2>/dev/null &
sleep 1.5
ip netns exec $P-s timeout 6 python3 - <<'PY'
import socket, struct, time
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b)//2), b)); s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16); return ~s & 0xffff
SRC, DST = socket.inet_aton('198.18.252.1'), socket.inet_aton('198.18.252.6')
def udp(size, port):
    data = bytes((i*11 + size) & 0xff for i in range(size)); l = 8 + size
    ph = SRC + DST + struct.pack('!BBH', 0, 17, l); u = struct.pack('!HHHH', 40000, port, l, 0) + data
    c = csum(ph + u + (b'\0' if len(u) % 2 else b'')) or 0xffff
    return struct.pack('!HHHH', 40000, port, l, c) + data
def frag(ident, payload, off, n, mf, ttl=64, tos=0, df=False, opts=b''):
    hl = 20 + len(opts); ff = (off >> 3) | (0x2000 if mf else 0) | (0x4000 if df else 0)
    h = struct.pack('!BBHHHBBH4s4s', 0x40 | (hl // 4), tos, hl + n, ident, ff, ttl, 17, 0, SRC, DST) + opts
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload[off:off+n]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def send(p): s.sendto(p, ('198.18.252.6', 0)); time.sleep(0.02)
P = udp(3000, 5001)
# 1. reverse order
for off, n, mf in [(2848, 160, False), (1424, 1424, True), (0, 1424, True)]: send(frag(0x1001, P, off, n, mf))
# 2. mixed TTL and ECN (ECT(0), CE, ECT(0)): one header for all on the way out, CE on every fragment
send(frag(0x1002, P, 0, 1424, True, ttl=64, tos=0x2a)); send(frag(0x1002, P, 1424, 1424, True, ttl=30, tos=0x2b)); send(frag(0x1002, P, 2848, 160, False, ttl=200, tos=0x2a))
# 3. DF on every fragment
for off, n, mf in [(0, 1424, True), (1424, 1424, True), (2848, 160, False)]: send(frag(0x1003, P, off, n, mf, df=True))
# 4. options on the first fragment only, copied (Router Alert) and not (option 30)
o = bytes([0x94,4,0,0, 0x1e,6,0xab,0xcd,0xef,0x01, 1,1])
send(frag(0x1004, P, 0, 1416, True, opts=o)); send(frag(0x1004, P, 1416, 1416, True)); send(frag(0x1004, P, 2832, 176, False))
# 5. a duplicate of the middle fragment, and unequal fragment sizes
send(frag(0x1005, P, 0, 800, True)); send(frag(0x1005, P, 800, 1200, True)); send(frag(0x1005, P, 800, 1200, True)); send(frag(0x1005, P, 2000, 1008, False))
# 6. an overlapping fragment: nothing of this datagram may come out
send(frag(0x1006, P, 0, 1424, True)); send(frag(0x1006, P, 1416, 1432, True)); send(frag(0x1006, P, 2848, 160, False))
# 7. ECN mix Not-ECT + ECT(0): dropped
send(frag(0x1007, P, 0, 1424, True, tos=0)); send(frag(0x1007, P, 1424, 1424, True, tos=2)); send(frag(0x1007, P, 2848, 160, False, tos=0))
# 8. fragments from a peer with a larger MTU (4,000-byte fragments of a 9,000-byte datagram): the
#    reassembled datagram is split again at the 1500-byte link (ip_do_fragment's slow path)
Q = udp(9000, 5002)
send(frag(0x1008, Q, 0, 4000, True)); send(frag(0x1008, Q, 4000, 4000, True)); send(frag(0x1008, Q, 8000, 1008, False))
PY
sleep 2
wait
cleanup
ip netns list | grep $P- || echo clean
