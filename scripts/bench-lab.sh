#!/usr/bin/env bash
# Benchmark the whole data path of the lab, appB's container on cell2 →
# appA's container on cell1 (TAP → cell2 → VXLAN-GBP on the underlay bridge →
# cell1 → TAP), with the tools a user would pick:
#   1. iperf3, one TCP stream, 10 s                        → Gbit/s (floor: ≥ 1 Gbit/s)
#   2. scripts/udp-ping.mjs, 1000 UDP echo probes          → p50 / p99 RTT in µs
#      (not ping: silk's policy admits only tcp/udp, so ICMP echo between
#      containers is rejected like any packet without a policy)
#   3. iperf3 -u -l 64 -b 0, 5 s                           → small-packet packets/s, loss
#
#   sudo scripts/bench-lab.sh            # brings up its own lab (prefix b<pid>), takes it down
#   sudo scripts/bench-lab.sh sw         # uses the running lab "sw" (adds its policies, removes them after)
#
# Every load is bounded in time (`timeout`), every process it starts is
# stopped by its PID, nothing is added to the root namespace (all traffic is
# between the lab's namespaces), and a lab it brought up is taken down on exit,
# also on error or Ctrl-C. Needs: iperf3, node, the built CLI (npm run build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SILKWORM=(node "$ROOT/bin/silkworm.js")
UDP_PING="$ROOT/scripts/udp-ping.mjs"
PORT=5201
ECHO_PORT=7
TCP_SECONDS=10
UDP_SECONDS=5
PROBES=1000

die() { echo "bench-lab: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces): run it with sudo"
for t in iperf3 node ip; do command -v "$t" >/dev/null || die "\"$t\" is not installed"; done
[[ -f "$ROOT/dist/cli/main.js" ]] || die "the CLI is not built: run \"npm run build\" first"

OWN_LAB=0
if [[ $# -ge 1 ]]; then
  PREFIX="$1"
  [[ "$PREFIX" =~ ^[A-Za-z][A-Za-z0-9_]{0,8}$ ]] || die "prefix \"$PREFIX\" must be 1-9 letters, digits or _ starting with a letter"
else
  PREFIX="b$(( $$ % 100000 ))"
  OWN_LAB=1
fi

PIDS=()
POLICIES=()
WORK="$(mktemp -d /tmp/bench-lab.XXXXXX)"

cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  if [[ $OWN_LAB -eq 1 ]]; then
    "${SILKWORM[@]}" lab down --prefix "$PREFIX" >/dev/null 2>&1 || echo "bench-lab: lab down --prefix $PREFIX failed; run it by hand" >&2
  else
    # A lab we did not make: leave it as we found it.
    for p in "${POLICIES[@]}"; do
      # shellcheck disable=SC2086
      "${SILKWORM[@]}" policy remove $p --lab "$PREFIX" >/dev/null 2>&1
    done
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a command in the background and wait for it: bash runs a trap only
# after a foreground command ends, but interrupts `wait` at once, so Ctrl-C or
# a TERM stops a 10 s iperf3 now (cleanup then kills it by its PID).
bounded() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
}

if [[ $OWN_LAB -eq 1 ]]; then
  echo "bench-lab: bringing up lab \"$PREFIX\"" >&2
  bounded timeout 90 "${SILKWORM[@]}" lab up --prefix "$PREFIX" >/dev/null
else
  timeout 20 "${SILKWORM[@]}" lab status --prefix "$PREFIX" >/dev/null || die "no lab \"$PREFIX\" is up (or it is not healthy): see \"silkworm lab status --prefix $PREFIX\""
fi

STATUS_JSON="$(timeout 20 "${SILKWORM[@]}" lab status --prefix "$PREFIX" --json)"
field() { node -e "const s=JSON.parse(process.argv[1]); console.log((function(){ return $2; }).call(s))" "$STATUS_JSON"; }
A_IP="$(field "$STATUS_JSON" 'this.containers.find(c => c.app === "appA").ip')"
A_NS="$(field "$STATUS_JSON" 'this.containers.find(c => c.app === "appA").netns')"
B_NS="$(field "$STATUS_JSON" 'this.containers.find(c => c.app === "appB").netns')"
B_IP="$(field "$STATUS_JSON" 'this.containers.find(c => c.app === "appB").ip')"
MTU="$(ip -n "$A_NS" -o link show dev eth0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"

EXISTING="$(timeout 20 "${SILKWORM[@]}" policy list --lab "$PREFIX" --json)"
add_policy() {
  # add_policy SRC DST PROTO PORT. Only what we add is removed afterwards: a
  # policy the lab already had stays (policy add is idempotent, so ask first).
  local src=$1 dst=$2 proto=$3 port=$4 out
  if node -e '
    const j = JSON.parse(process.argv[1]); const [s, d, pr, po] = process.argv.slice(2);
    process.exit(j.policies.some((p) => p.source.id === s && p.destination.id === d && p.destination.protocol === pr &&
      p.destination.ports.start <= +po && +po <= p.destination.ports.end) ? 0 : 1)' "$EXISTING" "$src" "$dst" "$proto" "$port"; then
    return 0
  fi
  if out="$(timeout 20 "${SILKWORM[@]}" policy add "$src" "$dst" --protocol "$proto" --port "$port" --lab "$PREFIX" 2>&1)"; then
    POLICIES+=("$src $dst --protocol $proto --port $port")
  else
    die "policy add $src $dst $proto $port: $out"
  fi
}
add_policy appB appA tcp $PORT
add_policy appB appA udp $PORT
add_policy appB appA udp $ECHO_PORT

# Servers in appA's namespace, each bounded in time.
ip netns exec "$A_NS" timeout 60 node "$UDP_PING" server --port $ECHO_PORT --seconds 55 >"$WORK/echo.out" 2>&1 &
PIDS+=($!)
start_iperf_server() {
  ip netns exec "$A_NS" timeout "$1" iperf3 -s -p $PORT -1 >"$WORK/iperf-server.out" 2>&1 &
  IPERF_SERVER=$!
  PIDS+=("$IPERF_SERVER")
  for _ in $(seq 1 50); do
    ip netns exec "$A_NS" ss -Hltn "sport = :$PORT" | grep -q . && return 0
    sleep 0.1
  done
  die "iperf3 server did not start in $A_NS: $(cat "$WORK/iperf-server.out")"
}

# The policies reach the cells by watch; wait until an echo goes through.
ok=0
for _ in $(seq 1 30); do
  if ip netns exec "$B_NS" timeout 5 node "$UDP_PING" client --host "$A_IP" --port $ECHO_PORT --count 1 --timeout-ms 300 >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[[ $ok -eq 1 ]] || die "no UDP echo from appA ($A_IP:$ECHO_PORT) through the lab: is the lab healthy?"

json() { node -e "const j=JSON.parse(require('fs').readFileSync(process.argv[1],'utf8')); if (j.error) { console.error(j.error); process.exit(1) } console.log((function(){ return $2; }).call(j))" "$1"; }

echo "bench-lab: 1/3 TCP, 1 stream, ${TCP_SECONDS} s" >&2
start_iperf_server $((TCP_SECONDS + 20))
bounded ip netns exec "$B_NS" timeout $((TCP_SECONDS + 15)) iperf3 -c "$A_IP" -p $PORT -t $TCP_SECONDS -J >"$WORK/tcp.json" || die "iperf3 TCP failed: $(head -c 500 "$WORK/tcp.json")"
TCP_GBPS="$(json "$WORK/tcp.json" '(this.end.sum_received.bits_per_second / 1e9).toFixed(2)')"
TCP_RETR="$(json "$WORK/tcp.json" 'this.end.sum_sent.retransmits ?? "-"')"
wait "$IPERF_SERVER" 2>/dev/null || true  # one-off (-1): it exits after the test

echo "bench-lab: 2/3 UDP echo latency, $PROBES probes" >&2
bounded ip netns exec "$B_NS" timeout 60 node "$UDP_PING" client --host "$A_IP" --port $ECHO_PORT --count $PROBES --timeout-ms 1000 --json >"$WORK/ping.json" || die "udp-ping failed: $(cat "$WORK/ping.json")"
P50="$(json "$WORK/ping.json" 'this.p50_us')"
P99="$(json "$WORK/ping.json" 'this.p99_us')"
PAVG="$(json "$WORK/ping.json" 'this.avg_us')"
PLOST="$(json "$WORK/ping.json" 'this.lost + this.refused')"

echo "bench-lab: 3/3 UDP 64-byte payloads, unlimited rate, ${UDP_SECONDS} s" >&2
start_iperf_server $((UDP_SECONDS + 20))
bounded ip netns exec "$B_NS" timeout $((UDP_SECONDS + 15)) iperf3 -c "$A_IP" -p $PORT -u -l 64 -b 0 -t $UDP_SECONDS -J >"$WORK/udp.json" || die "iperf3 UDP failed: $(head -c 500 "$WORK/udp.json")"
# iperf3 3.12: end.sum is the receiver's view for UDP (packets sent, lost_packets counted at the server).
UDP_SENT_PPS="$(json "$WORK/udp.json" 'Math.round(this.end.sum.packets / this.end.sum.seconds)')"
UDP_RECV_PPS="$(json "$WORK/udp.json" 'Math.round((this.end.sum.packets - this.end.sum.lost_packets) / this.end.sum.seconds)')"
UDP_LOSS="$(json "$WORK/udp.json" 'this.end.sum.lost_percent.toFixed(1)')"
UDP_MBPS="$(json "$WORK/udp.json" '(((this.end.sum.packets - this.end.sum.lost_packets) * 64 * 8) / this.end.sum.seconds / 1e6).toFixed(1)')"
wait "$IPERF_SERVER" 2>/dev/null || true  # one-off (-1): it exits after the test

FLOOR="below the 1 Gbit/s floor"
node -e "process.exit(Number(process.argv[1]) >= 1 ? 0 : 1)" "$TCP_GBPS" && FLOOR="meets the 1 Gbit/s floor"

echo
echo "silkworm lab benchmark — lab \"$PREFIX\", $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPU(s), Linux $(uname -r)"
echo "path: $B_NS ($B_IP, cell2) → $A_NS ($A_IP, cell1), VXLAN-GBP over the lab underlay; container MTU $MTU"
echo
row() { printf '| %-40s | %-72s |\n' "$1" "$2"; }
row "test" "result"
row "----------------------------------------" "------------------------------------------------------------------------"
row "TCP, 1 stream, ${TCP_SECONDS} s (iperf3)" "${TCP_GBPS} Gbit/s, ${TCP_RETR} retransmits ($FLOOR)"
row "UDP echo RTT, $PROBES probes (udp-ping.mjs)" "p50 ${P50} µs, p99 ${P99} µs, avg ${PAVG} µs, ${PLOST} lost"
row "UDP 64-byte payloads, -b 0, ${UDP_SECONDS} s (iperf3)" "sent ${UDP_SENT_PPS} pps, received ${UDP_RECV_PPS} pps (${UDP_MBPS} Mbit/s), loss ${UDP_LOSS}%"
