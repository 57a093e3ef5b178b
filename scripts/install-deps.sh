#!/usr/bin/env bash
# Installs everything silkworm's documented commands and its tests need, on a
# Debian machine, as root: the apt packages, the npm packages from the lock
# file, the native addon and the TypeScript build. Used by the quick start and
# by CI, so the two cannot drift apart.
#
#   bash scripts/install-deps.sh [LOGFILE]
#
# Prints one line per step; everything the tools print goes to LOGFILE
# (default: $TMPDIR/silkworm-install.log), which is named when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG="${1:-${TMPDIR:-/tmp}/silkworm-install.log}"
: >"$LOG"
export DEBIAN_FRONTEND=noninteractive

step() { printf '%s\n' "install: $*"; }
fail() { printf '%s\n' "install: $* — the full log is $LOG" >&2; tail -n 20 "$LOG" >&2; exit 1; }

# Every documented command's tools: the lab (iproute2, iptables, ethtool for
# the kernel peer), the observers (tcpdump, tshark, conntrack), the benchmarks
# (iperf3), the examples (curl, ping), the lab's TLS material (openssl), the PostgreSQL store, and the CNI
# runtime test (containernetworking-plugins' IPAM plugins; podman with runc, which
# runs a busybox-static root file system without any image registry).
PACKAGES=(iproute2 iptables ethtool tcpdump tshark conntrack iperf3 curl iputils-ping procps openssl
          postgresql containernetworking-plugins podman runc busybox-static)
need=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  step "apt packages: ${need[*]}"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >>"$LOG" 2>&1 \
    || fail "apt-get install failed"
fi

if [ ! -d node_modules ] || [ ! -f build/Release/silkworm_native.node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm packages from the lock file and the native addon (about two minutes)"
  # `npm ci` installs exactly the lock file. Should the registry one day refuse
  # a locked package (it once lacked rollup's optional per-platform builds),
  # fall back to `npm install`, which skips unavailable optional packages.
  if ! npm ci --no-audit --no-fund >>"$LOG" 2>&1; then
    step "npm ci failed (see $LOG); trying npm install with the same lock file"
    npm install --no-audit --no-fund >>"$LOG" 2>&1 || fail "npm install failed"
  fi
fi
# npm 11 may skip install scripts it has not been told to allow: make sure
# every native module really built, and build it if not.
node -e "require('./build/Release/silkworm_native.node')" >>"$LOG" 2>&1 || { step "building the native addon"; npm run build:native >>"$LOG" 2>&1 || fail "the native addon did not build"; }
node -e "require('better-sqlite3')" >>"$LOG" 2>&1 || { step "building better-sqlite3"; npm rebuild better-sqlite3 >>"$LOG" 2>&1 || fail "better-sqlite3 did not build"; }
node -e "require('raw-socket')" >>"$LOG" 2>&1 || { step "building raw-socket"; npm rebuild raw-socket >>"$LOG" 2>&1 || fail "raw-socket did not build"; }
step "TypeScript build"
npm run build >>"$LOG" 2>&1 || fail "tsc failed"
node -e "require('./build/Release/silkworm_native.node'); require('better-sqlite3'); require('raw-socket')" >>"$LOG" 2>&1 \
  || fail "a native module does not load"
step "ready"
