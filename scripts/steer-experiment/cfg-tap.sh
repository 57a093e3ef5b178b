#!/bin/sh
# The "container" side of the TAP: called by steer after it creates stap0 in steer-c (see README.md).
set -e
N=steer-c
ip -n $N link set lo up
ip -n $N link set stap0 up
for a in 1 2 3 4; do ip -n $N addr add 10.255.0.$a/32 dev stap0; done
ip -n $N route add 10.255.255.254/32 dev stap0
ip -n $N neigh add 10.255.255.254 lladdr 02:00:00:00:00:fe dev stap0 nud permanent
ip -n $N route add 10.255.0.0/16 via 10.255.255.254 dev stap0
