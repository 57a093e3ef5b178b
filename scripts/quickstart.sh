#!/usr/bin/env bash
# The README's quick start: install what is missing, build, bring the lab up,
# and show a curl between containers failing without a policy and working with
# one. Run as root (the lab creates network namespaces). Take it down with
#   node bin/silkworm.js lab down
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${1:-sw}"
if [ "$(id -u)" != 0 ]; then
  echo "quickstart: run it as root (as root: bash scripts/quickstart.sh; otherwise: sudo bash scripts/quickstart.sh) — the lab creates network namespaces" >&2
  exit 1
fi
LOG="${TMPDIR:-/tmp}/silkworm-quickstart.log"
echo "quickstart: installing and building (one line per step; the full log is $LOG)"
bash scripts/install-deps.sh "$LOG"
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
