#!/usr/bin/env bash
# The README's quick start: install what is missing, build, bring the lab up,
# and show a curl between containers failing without a policy and working with
# one. Run as root (the lab creates network namespaces). Take it down with
#   sudo node bin/silkworm.js lab down
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${1:-sw}"
if [ "$(id -u)" != 0 ]; then
  echo "quickstart: run as root (sudo bash scripts/quickstart.sh): the lab creates network namespaces" >&2
  exit 1
fi
need=()
for p in iproute2 curl tcpdump tshark iptables iperf3 iputils-ping; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "quickstart: installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -f build/Release/silkworm_native.node ] || [ ! -d node_modules ]; then
  echo "quickstart: npm install (builds the native addon and the TypeScript; about two minutes)"
  npm install --no-audit --no-fund >/dev/null
  node -e "require('./build/Release/silkworm_native.node')" 2>/dev/null || npm run build:native >/dev/null
fi
npm run build >/dev/null
sw() { node bin/silkworm.js "$@"; }

if sw lab status --prefix "$PREFIX" >/dev/null 2>&1; then
  echo "quickstart: lab \"$PREFIX\" is already up; taking it down first"
  sw lab down --prefix "$PREFIX" >/dev/null
fi
sw lab up --prefix "$PREFIX" --json >/dev/null
A_IP=$(sw lab status --prefix "$PREFIX" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.containers.find(c=>c.app==="appA").ip)})')
sw lab status --prefix "$PREFIX"
echo
run() { echo "\$ $*"; "$@"; }
echo "# appB (cell2) → appA (cell1) without a policy: refused at once by cell1's ICMP reject"
set +e
run ip netns exec "$PREFIX-appB-0" curl -sS --max-time 3 "http://$A_IP:8080/"
echo "(curl exit code $?)"
set -e
echo
run node bin/silkworm.js policy add appB appA --protocol tcp --port 8080 --lab "$PREFIX"
echo
echo "# the same curl, now allowed: appA answers with its name and IP"
run ip netns exec "$PREFIX-appB-0" curl -sS --max-time 3 "http://$A_IP:8080/"
echo
echo "# the path it took, step by step:"
run node bin/silkworm.js trace --from appB-0 --to "$A_IP:8080/tcp" --lab "$PREFIX"
echo
echo "Next: node bin/silkworm.js show rules --cell cell1 --lab $PREFIX;  node bin/silkworm.js lab down --prefix $PREFIX"
