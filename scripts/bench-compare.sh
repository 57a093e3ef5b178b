#!/usr/bin/env bash
# Side by side: the same lab topology — two cells, appA on cell1,
# appB on cell2, in namespaces — once with silkworm moving the packets
# (user), once with the kernel's vxlan gbp + iptables (kernel, full offloads)
# and once with the kernel's TSO/GSO/GRO off on every veth (kernel-nooffload:
# the fair comparison for a TAP read without IFF_VNET_HDR). In each:
#   - iperf3 single-stream TCP appB → appA, BENCH_SECONDS (10) s, BENCH_RUNS (3) runs, median;
#     over those runs, CPU seconds per GB that arrived: the cells' user+sys (/proc/PID/stat) and the
#     whole machine's softirq time (/proc/stat), each divided by the bytes iperf3 received;
#   - 4 parallel TCP streams (iperf3 -P 4) and the reverse direction (iperf3 -R: appA sends),
#     BENCH_SECONDS each, one run;
#   - UDP request/response latency (scripts/udp-ping.mjs), BENCH_PROBES (1000) probes, p50/p99;
#   - 64-byte frames (18-byte UDP payload) with iperf3 -u -b 0 for BENCH_PPS_SECONDS (5) s:
#     packets per second that arrived.
# Then one table with the ratio user/kernel per figure, the machine and kernel.
#
#   sudo scripts/bench-compare.sh            # needs a build (npm run build), iperf3, ethtool
#   BENCH_SECONDS=3 BENCH_RUNS=1 sudo scripts/bench-compare.sh   # quick look
#   BENCH_MODES="user user-off" BENCH_OFF_ENV="SILKWORM_NATIVE_BYTES=0" sudo scripts/bench-compare.sh
#       # paired on/off: user-off is the user mode with the cells started under BENCH_OFF_ENV
#       # (space-separated VAR=value words) and/or from the build at BENCH_OFF_ROOT (another
#       # checkout with its dist/ and build/); the two alternate BENCH_PAIRS (1) times
#   BENCH_MODES="user user-off" BENCH_WORKERS=2 BENCH_OFF_WORKERS=1 sudo scripts/bench-compare.sh
#       # workers: the user mode's cells run with --workers BENCH_WORKERS (default 1), user-off's
#       # with BENCH_OFF_WORKERS (default BENCH_WORKERS) — the scaling figure, paired
#
# BENCH_MODES (default "user kernel kernel-nooffload") picks the modes, in order; each one's figures
# come from the same machine minutes apart, so ratios are the comparable numbers on a busy box.
# The softirq figure is the whole machine's: on a shared machine other work's softirq counts too.
#
# Network safety: its own lab prefixes (kbu, kbo, kbk, kbn), underlay 198.18.9.0/24,
# every load bounded in time, every lab taken down on exit (also on Ctrl-C),
# and only the PIDs it started are signalled.
set -euo pipefail
ROOT=${SILKWORM_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
SW=(node "$ROOT/bin/silkworm.js")
SECONDS_TCP=${BENCH_SECONDS:-10}
RUNS=${BENCH_RUNS:-3}
PROBES=${BENCH_PROBES:-1000}
PPS_SECONDS=${BENCH_PPS_SECONDS:-5}
MODES=${BENCH_MODES:-user kernel kernel-nooffload}
OFF_ENV=${BENCH_OFF_ENV:-}
OFF_ROOT=${BENCH_OFF_ROOT:-$ROOT}
[ -f "$OFF_ROOT/bin/silkworm.js" ] || { echo "bench-compare: BENCH_OFF_ROOT $OFF_ROOT has no bin/silkworm.js" >&2; exit 1; }
PAIRS=${BENCH_PAIRS:-1}
WORKERS=${BENCH_WORKERS:-1}
OFF_WORKERS=${BENCH_OFF_WORKERS:-$WORKERS}
BASE=198.18.9.11/24
OUT=${BENCH_OUT:-$(mktemp -d /tmp/silkworm-bench-compare.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

[ "$(id -u)" = 0 ] || { echo "bench-compare: needs root (network namespaces): run it with sudo" >&2; exit 1; }
for t in iperf3 ethtool ip node; do
  command -v "$t" >/dev/null || { echo "bench-compare: \"$t\" is not installed" >&2; exit 1; }
done
[ -f "$ROOT/dist/cli/main.js" ] || { echo "bench-compare: $ROOT/dist is missing: run npm run build first" >&2; exit 1; }
[ -f "$SCRIPTS/udp-ping.mjs" ] || { echo "bench-compare: $SCRIPTS/udp-ping.mjs is missing" >&2; exit 1; }

PIDS=()
PREFIXES=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for pre in "${PREFIXES[@]}"; do "${SW[@]}" lab down --prefix "$pre" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT INT TERM

say() { echo "bench-compare: $*" >&2; }

# "CELL_TICKS SOFTIRQ_TICKS CLK_TCK": user+sys ticks of the lab's cell processes (from its state file),
# and the machine's softirq ticks (/proc/stat, all CPUs).
cpu_snapshot() {
  local state=$1 pid t=0 u s
  for pid in $(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(s.cells.map(c=>c.pid).join(" "))' "$state"); do
    if [ -r "/proc/$pid/stat" ]; then
      # fields 14 and 15 after the command name (which may hold spaces, so cut after the last ')')
      read -r u s < <(sed -E 's/^.*\) //' "/proc/$pid/stat" | awk '{print $12, $13}')
      t=$((t + u + s))
    fi
  done
  echo "$t $(awk '/^cpu /{print $8}' /proc/stat) $(getconf CLK_TCK)"
}

# ethtool -K on every veth of a lab: containers' eth0, the cells' s-* and eth0, the bridge ports.
offloads_off() {
  local pre=$1 ns dev
  for ns in "$pre-appA-0" "$pre-appB-0" "$pre-cell1" "$pre-cell2" "$pre-underlay"; do
    for dev in $(ip -n "$ns" -o link show type veth | sed -E 's/^[0-9]+: ([^@:]+).*/\1/'); do
      ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off >/dev/null 2>&1 || say "note: ethtool -K $dev in $ns failed"
    done
  done
}

run_mode() {
  local mode=$1 pre=$2 dataplane=$3
  local -a envs=() sw=("${SW[@]}") workers=()
  if [ "$mode" = user-off ]; then
    read -r -a envs <<<"$OFF_ENV"
    sw=(node "$OFF_ROOT/bin/silkworm.js")
    [ "$OFF_WORKERS" != 1 ] && workers=(--workers "$OFF_WORKERS")
  elif [ "$mode" = user ] && [ "$WORKERS" != 1 ]; then
    workers=(--workers "$WORKERS")
  fi
  PREFIXES+=("$pre")
  "${SW[@]}" lab down --prefix "$pre" >/dev/null 2>&1 || true
  say "$mode: lab up --prefix $pre --dataplane $dataplane ${workers[*]} ${envs[*]} (${sw[*]})"
  env "${envs[@]}" "${sw[@]}" lab up --prefix "$pre" --dataplane "$dataplane" "${workers[@]}" --underlay-base "$BASE" --json >"$OUT/$pre-state.json"
  local ipA
  ipA=$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(s.containers.find(c=>c.app==="appA").ip)' "$OUT/$pre-state.json")
  [ "$mode" = kernel-nooffload ] && offloads_off "$pre"
  for spec in "tcp 5201" "udp 5201" "udp 7007"; do
    set -- $spec
    "${SW[@]}" policy add appB appA --protocol "$1" --port "$2" --lab "$pre" >/dev/null
  done
  sleep 1 # the watch reaches both cells in milliseconds; leave room for the rule swap

  ip netns exec "$pre-appA-0" iperf3 -s -p 5201 >"$OUT/$pre-iperf3-server.log" 2>&1 &
  PIDS+=($!)
  ip netns exec "$pre-appA-0" node "$SCRIPTS/udp-ping.mjs" server --port 7007 --seconds 600 >"$OUT/$pre-udp-ping-server.log" 2>&1 &
  PIDS+=($!)
  sleep 1

  local i
  cpu_snapshot "$OUT/$pre-state.json" >"$OUT/$pre-cpu-before.txt"
  for i in $(seq 1 "$RUNS"); do
    ip netns exec "$pre-appB-0" timeout $((SECONDS_TCP + 20)) iperf3 -c "$ipA" -p 5201 -t "$SECONDS_TCP" -J >"$OUT/$pre-tcp-$i.json" || say "$mode: iperf3 TCP run $i failed (see $OUT/$pre-tcp-$i.json)"
  done
  cpu_snapshot "$OUT/$pre-state.json" >"$OUT/$pre-cpu-after.txt"
  ip netns exec "$pre-appB-0" timeout $((SECONDS_TCP + 20)) iperf3 -c "$ipA" -p 5201 -P 4 -t "$SECONDS_TCP" -J >"$OUT/$pre-tcp4.json" || say "$mode: iperf3 -P 4 failed"
  ip netns exec "$pre-appB-0" timeout $((SECONDS_TCP + 20)) iperf3 -c "$ipA" -p 5201 -R -t "$SECONDS_TCP" -J >"$OUT/$pre-tcprev.json" || say "$mode: iperf3 -R failed"
  ip netns exec "$pre-appB-0" timeout 120 node "$SCRIPTS/udp-ping.mjs" client --host "$ipA" --port 7007 --count "$PROBES" --size 64 --timeout-ms 1000 --json >"$OUT/$pre-rtt.json" || say "$mode: udp-ping failed"
  ip netns exec "$pre-appB-0" timeout $((PPS_SECONDS + 20)) iperf3 -c "$ipA" -p 5201 -u -l 18 -b 0 -t "$PPS_SECONDS" -J >"$OUT/$pre-pps.json" || say "$mode: iperf3 UDP failed"

  node "$SCRIPTS/bench-compare-collect.mjs" "$mode" "$OUT" "$pre" "$RUNS" >>"$RESULTS"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  PIDS=()
  "${SW[@]}" lab down --prefix "$pre" >/dev/null
  say "$mode: $(tail -1 "$RESULTS")"
}

for p in $(seq 1 "$PAIRS"); do
  for mode in $MODES; do
    case $mode in
      user) run_mode user kbu user ;;
      user-off) run_mode user-off kbo user ;;
      kernel) run_mode kernel kbk kernel ;;
      kernel-nooffload) run_mode kernel-nooffload kbn kernel ;;
      *) echo "bench-compare: unknown mode \"$mode\" in BENCH_MODES (user, user-off, kernel, kernel-nooffload)" >&2; exit 2 ;;
    esac
  done
done

node "$SCRIPTS/bench-compare-collect.mjs" --table "$RESULTS" "$SECONDS_TCP" "$RUNS" "$PROBES" "$PPS_SECONDS"
say "raw results in $OUT"
