#!/usr/bin/env bash
# silkworm against upstream's own binaries, by hand (issue 15; not run by CI: CI cannot fetch
# upstream's code). Two commands:
#
#   scripts/upstream-by-hand.sh build SILK_RELEASE_DIR CF_NETWORKING_RELEASE_DIR OUT_DIR
#       Builds silk-controller, silk-daemon and vxlan-policy-agent (silk-release) and
#       policy-server, policy-server-internal and migrate-db (cf-networking-release) offline into
#       OUT_DIR, with Debian's Go 1.19 (apt-get install golang-go) and the vendored dependencies.
#       It edits the source trees you give it (use throw-away copies, e.g.
#       `git --git-dir=REPO archive HEAD | tar -x -C DIR`): drops go.mod's `toolchain` line (Go 1.19
#       cannot parse it); for all but silk-controller and silk-daemon it builds with a GOROOT
#       overlay in OUT_DIR/goroot that adds the Go 1.21 packages the vendored grpc and pgx import
#       (`maps.Copy`, `slices.Contains/EqualFunc`) and adds `min`/`clear` helpers to three
#       vendored grpc packages (Go 1.21 builtins). A few minutes on 2 cores.
#
#   scripts/upstream-by-hand.sh run UPSTREAM_BIN_DIR
#       Runs, in network namespaces it creates (prefix $UPSTREAM_PREFIX, default q15u; underlay
#       $UPSTREAM_NET.0/24, default 198.18.20.0/24) with a private PostgreSQL (as user postgres,
#       on 127.0.0.1 inside the controller namespace):
#       (a) two silkworm cells lease from upstream silk-controller over mutual TLS (one told
#           --controller-api silk, one detecting it), keep renewing past the controller's short
#           lease_expiration_seconds ($UPSTREAM_LEASE_EXPIRY, 8), survive a restart, and forward
#           a curl between containers on the two cells;
#       (b) both cells take their policies from upstream policy-server-internal over mutual
#           TLS; the policy is created (and deleted) through upstream's external API
#           (policy-server) with a token that a mock UAA accepts, as upstream's integration tests
#           do (policy-server/integration/helpers/helpers.go MockUAAServer: /check_token answers
#           network.admin for "valid-token"); the allowed curl works, denied ones do not;
#       (c) upstream silk-daemon acquires and renews a lease from `silkworm controller` over
#           mutual TLS (with a short --lease-expiry), survives a restart; its lease shows in
#           GET /leases and in a silkworm cell's routes, and that cell's container reaches it;
#       (e) a single_ip_only silk-daemon gets a /32 from silkworm; both kinds of cell route it;
#       (d) with vxlan-policy-agent in UPSTREAM_BIN_DIR: it takes silkworm's policies over mutual
#           TLS, and its kernel rules let a silkworm container's GBP tag in (others rejected).
#       Prints PASS/FAIL per check; exits non-zero if any failed. Everything is bounded in time
#       (UPSTREAM_TIMEOUT, default 600 s, for the whole run); on exit it ends only the PIDs it
#       started and deletes only the namespaces it created. Logs (and recorded.txt, the raw
#       answers of the upstream servers) stay in $UPSTREAM_WORK (default
#       /tmp/silkworm-upstream-by-hand) with UPSTREAM_KEEP=1; UPSTREAM_PAUSE=N holds everything N s
#       before cleaning up; UPSTREAM_TX_OFF=1 turns tx checksum offload off on silk-daemon's veth.
#
# Needs root, ip, iptables, curl, node (this checkout built: npm run build), PostgreSQL's
# initdb/pg_ctl/createdb/psql.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SW=(node "$ROOT/bin/silkworm.js")

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2; }

# ---------------------------------------------------------------------------- build
build() {
  local silk=$1 cfn=$2 out=$3
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local goroot=/usr/lib/go-1.19
  [ -x $goroot/bin/go ] || { echo "Go 1.19 is not at $goroot: apt-get install -y golang-go" >&2; exit 1; }
  export GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOPROXY=off GOCACHE=$out/gocache GOPATH=$out/gopath
  local s=$silk/src/code.cloudfoundry.org c=$cfn/src/code.cloudfoundry.org
  sed -i '/^toolchain /d' "$s/go.mod" "$c/go.mod"

  # A GOROOT of symlinks to Debian's, plus maps and slices (Go 1.21) as far as the vendored code uses them.
  local g=$out/goroot
  rm -rf "$g" && mkdir -p "$g/src/maps" "$g/src/slices"
  for e in $goroot/*; do [ "$(basename "$e")" = src ] || ln -s "$(readlink -f "$e")" "$g/$(basename "$e")"; done
  for e in $goroot/src/*; do ln -s "$(readlink -f "$e")" "$g/src/$(basename "$e")"; done
  cat > "$g/src/maps/maps.go" <<'EOF'
// Go 1.21's maps.Copy, for building upstream with Go 1.19 (by-hand only).
package maps

func Copy[M1 ~map[K]V, M2 ~map[K]V, K comparable, V any](dst M1, src M2) {
	for k, v := range src {
		dst[k] = v
	}
}
EOF
  cat > "$g/src/slices/slices.go" <<'EOF'
// Go 1.21's slices.Contains and EqualFunc, for building upstream with Go 1.19 (by-hand only).
package slices

func Contains[S ~[]E, E comparable](s S, v E) bool {
	for i := range s {
		if v == s[i] {
			return true
		}
	}
	return false
}

func EqualFunc[S1 ~[]E1, S2 ~[]E2, E1, E2 any](s1 S1, s2 S2, eq func(E1, E2) bool) bool {
	if len(s1) != len(s2) {
		return false
	}
	for i, v1 := range s1 {
		if !eq(v1, s2[i]) {
			return false
		}
	}
	return true
}
EOF
  (cd "$s" && $goroot/bin/go build -o "$out/" ./silk/cmd/silk-controller ./silk/cmd/silk-daemon)
  local grpc
  for grpc in "$c/vendor/google.golang.org/grpc" "$s/vendor/google.golang.org/grpc"; do
  for d in internal/channelz internal/transport; do
    printf 'package %s\n\n// Go 1.21 builtin, for building with Go 1.19 (by-hand only).\nfunc min[T ~int | ~int32 | ~int64 | ~uint32 | ~float64](a, b T) T {\n\tif a < b {\n\t\treturn a\n\t}\n\treturn b\n}\n' \
      "$(basename $d)" > "$grpc/$d/zz_go119_min.go"
  done
  printf 'package mem\n\n// Go 1.21 builtin, for building with Go 1.19 (by-hand only).\nfunc clear(b []byte) {\n\tfor i := range b {\n\t\tb[i] = 0\n\t}\n}\n' > "$grpc/mem/zz_go119_clear.go"
  done
  (cd "$s" && GOROOT=$g $g/bin/go build -o "$out/" ./vxlan-policy-agent/cmd/vxlan-policy-agent)
  (cd "$c" && GOROOT=$g $g/bin/go build -o "$out/" ./policy-server/cmd/policy-server ./policy-server/cmd/policy-server-internal ./policy-server/cmd/migrate-db)
  ls -la "$out"/silk-controller "$out"/silk-daemon "$out"/vxlan-policy-agent "$out"/policy-server "$out"/policy-server-internal "$out"/migrate-db
}

# ---------------------------------------------------------------------------- run
P=${UPSTREAM_PREFIX:-q15u}
NET=${UPSTREAM_NET:-198.18.20}
WORK=${UPSTREAM_WORK:-/tmp/silkworm-upstream-by-hand}
LEASE_EXPIRY=${UPSTREAM_LEASE_EXPIRY:-8}
CTL=$NET.1
NSES=()
PIDS=()
FAILS=0

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
pass() { log "PASS $*"; }
fail() { log "FAIL $*"; FAILS=$((FAILS + 1)); }
nsx() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

# Start a long-running process in namespace $1, logging to $WORK/logs/$2.log; remembers its PID.
start() {
  local ns=$1 name=$2; shift 2
  ip netns exec "$P-$ns" "$@" > "$WORK/logs/$name.log" 2>&1 &
  PIDS+=($!)
  echo "$!" > "$WORK/pids/$name"
}

cleanup() {
  local rc=$?
  set +e
  if [ "${UPSTREAM_PAUSE:-0}" != 0 ]; then log "pausing ${UPSTREAM_PAUSE} s before cleaning up (UPSTREAM_PAUSE)"; sleep "$UPSTREAM_PAUSE"; fi
  log "cleaning up"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  if [ -f "$WORK/pg/data/postmaster.pid" ]; then
    su postgres -s /bin/sh -c "pg_ctl -D '$WORK/pg/data' -m immediate stop" > /dev/null 2>&1
  fi
  for ((i = ${#NSES[@]} - 1; i >= 0; i--)); do ip netns del "${NSES[$i]}" 2>/dev/null; done
  if [ "${UPSTREAM_KEEP:-0}" = 1 ]; then log "logs kept in $WORK/logs"; else rm -rf "$WORK"; fi
  exit $rc
}

# Wait up to $1 s for the command to succeed.
waitfor() {
  local t=$1; shift
  local end=$((SECONDS + t))
  until "$@" > /dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

mkns() {
  local ns=$P-$1
  if ip netns list | grep -qw "$ns"; then echo "namespace $ns exists: another run? ip netns del it first" >&2; exit 1; fi
  ip netns add "$ns"
  NSES+=("$ns")
  ip -n "$ns" link set lo up
}

# A host on the underlay: namespace $1 with eth0 = $2/24 on the bridge.
host() {
  local name=$1 ip=$2 tag=$P${#NSES[@]}
  mkns "$name"
  ip -n "$P-ul" link add "v$tag" type veth peer name eth0 netns "$P-$name"
  ip -n "$P-ul" link set "v$tag" master br0 up
  ip -n "$P-$name" addr add "$ip/24" dev eth0
  ip -n "$P-$name" link set eth0 up
}

run() {
  local bin=$1
  bin=$(cd "$bin" && pwd)
  for b in silk-controller silk-daemon policy-server policy-server-internal migrate-db; do  # vxlan-policy-agent is optional: (d)
    [ -x "$bin/$b" ] || { echo "$bin/$b is missing: build it first ($0 build …)" >&2; exit 1; }
  done
  [ -f "$ROOT/dist/cli/main.js" ] || [ -d "$ROOT/dist" ] || { echo "build silkworm first: npm run build" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
  # One run at a time: another run's namespaces or work directory stay untouched.
  if ip netns list | grep -q "^$P-"; then echo "namespaces $P-* exist: another run is going on (or left them): ip netns del them first" >&2; exit 1; fi
  exec 9> "$WORK.lock"
  flock -n 9 || { echo "$WORK.lock is held: another run is going on" >&2; exit 1; }
  rm -rf "$WORK"
  mkdir -p "$WORK/logs" "$WORK/pids" "$WORK/state"
  trap cleanup EXIT
  # Bound the whole run in time: a watchdog ends this script.
  (
    trap 'kill $sp 2> /dev/null; exit 0' TERM
    sleep "${UPSTREAM_TIMEOUT:-600}" & sp=$!
    wait $sp && { log "timed out after ${UPSTREAM_TIMEOUT:-600} s"; kill -TERM $$; }
  ) &
  PIDS+=($!)

  log "upstream binaries: $bin"
  # ------------------------------------------------------------ underlay
  mkns ul
  ip -n "$P-ul" link add br0 type bridge
  ip -n "$P-ul" link set br0 up
  host ctl "$CTL"
  host c1 "$NET.11"
  host c2 "$NET.12"
  host sd "$NET.13"
  host c3 "$NET.14"

  # ------------------------------------------------------------ TLS material
  "${SW[@]}" certs create --dir "$WORK/tls" --host "$CTL" --client cell1 --client cell2 --client cell3 --client silk-daemon > /dev/null
  chmod 0755 "$WORK" "$WORK/tls"; chmod 0644 "$WORK"/tls/*.pem
  local T=$WORK/tls

  # ------------------------------------------------------------ PostgreSQL (private, in the controller namespace)
  mkdir -p "$WORK/pg"
  chown postgres "$WORK/pg"
  su postgres -s /bin/sh -c "initdb -D '$WORK/pg/data' -U postgres --auth=trust" > "$WORK/logs/initdb.log" 2>&1
  nsx ctl su postgres -s /bin/sh -c "pg_ctl -D '$WORK/pg/data' -l '$WORK/pg/log' -o \"-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories='$WORK/pg'\" -w start" > /dev/null
  for db in silk policy; do nsx ctl su postgres -s /bin/sh -c "createdb -h 127.0.0.1 -U postgres $db"; done
  local DB='"type":"postgres","user":"postgres","password":"","host":"127.0.0.1","port":5432,"timeout":5'

  # ------------------------------------------------------------ upstream silk-controller
  cat > "$WORK/silk-controller.json" <<EOF
{"debug_server_port":17001,"listen_host":"$CTL","listen_port":4103,"ca_cert_file":"$T/ca.pem",
 "server_cert_file":"$T/controller.pem","server_key_file":"$T/controller-key.pem",
 "network":"10.255.0.0/16","subnet_prefix_length":24,"database":{$DB,"database_name":"silk"},
 "lease_expiration_seconds":$LEASE_EXPIRY,"metron_port":3457,"health_check_port":17002,
 "metrics_emit_seconds":30,"staleness_threshold_seconds":60,"log_prefix":"cfnetworking",
 "max_idle_connections":2,"max_open_connections":5,"connections_max_lifetime_seconds":3600}
EOF
  start ctl silk-controller "$bin/silk-controller" --config "$WORK/silk-controller.json"

  # ------------------------------------------------------------ mock UAA and Cloud Controller, as upstream's integration tests
  cat > "$WORK/mock-uaa.mjs" <<'EOF'
// policy-server/integration/helpers/helpers.go MockUAAServer / MockCCServer, reduced.
import http from 'node:http';
http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const basic = req.headers.authorization === 'Basic dGVzdDp0ZXN0'; // test:test
    if (req.url === '/check_token') {
      if (!basic) return res.writeHead(401).end();
      const token = new URLSearchParams(body).get('token');
      if (token === 'valid-token') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end('{"scope":["network.admin"], "user_name":"some-user", "sub": "some-user-or-client-id"}');
      }
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end('{"error_description":"banana"}');
    }
    if (req.url === '/oauth/token') {
      if (!basic) return res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"access_token":"valid-token","token_type":"bearer","expires_in":43199}');
    }
    res.writeHead(418).end(); // the mock CC: nothing the by-hand run needs
  });
}).listen(Number(process.argv[2]), '127.0.0.1');
EOF
  start ctl mock-uaa node "$WORK/mock-uaa.mjs" 8090

  # ------------------------------------------------------------ upstream policy server (external, plain HTTP) and internal (mutual TLS)
  cat > "$WORK/policy-server.json" <<EOF
{"listen_host":"$CTL","listen_port":4002,"log_prefix":"cfnetworking","enable_tls":false,
 "debug_server_host":"127.0.0.1","debug_server_port":17003,"uaa_client":"test","uaa_client_secret":"test",
 "uaa_url":"http://127.0.0.1","uaa_port":8090,"cc_url":"http://127.0.0.1:8090","skip_ssl_validation":true,
 "database":{$DB,"database_name":"policy"},"database_migration_timeout":600,"tag_length":2,
 "metron_address":"127.0.0.1:3457","log_level":"info","cleanup_interval":60,"cc_app_request_chunk_size":100,
 "max_policies":50,"enable_space_developer_self_service":false,
 "max_idle_connections":2,"max_open_connections":5,"connections_max_lifetime_seconds":3600}
EOF
  cat > "$WORK/policy-server-internal.json" <<EOF
{"log_prefix":"cfnetworking","listen_host":"$CTL","internal_listen_port":4013,
 "debug_server_host":"127.0.0.1","debug_server_port":17004,"health_check_port":17005,
 "ca_cert_file":"$T/ca.pem","server_cert_file":"$T/controller.pem","server_key_file":"$T/controller-key.pem",
 "database":{$DB,"database_name":"policy"},"tag_length":2,"metron_address":"127.0.0.1:3457","log_level":"info",
 "max_idle_connections":2,"max_open_connections":5,"connections_max_lifetime_seconds":3600}
EOF
  # The policy server's tables come from its migrate-db job (as the BOSH job's pre-start runs it).
  nsx ctl "$bin/migrate-db" -config-file "$WORK/policy-server.json" > "$WORK/logs/migrate-db.log" 2>&1 || { fail "migrate-db (logs/migrate-db.log)"; return; }
  start ctl policy-server "$bin/policy-server" -config-file "$WORK/policy-server.json"
  waitfor 60 nsx ctl curl -sf "http://$CTL:4002/networking" || { fail "policy-server did not come up (logs/policy-server.log)"; return; }
  start ctl policy-server-internal "$bin/policy-server-internal" -config-file "$WORK/policy-server-internal.json"
  local MTLS=(--cacert "$T/ca.pem" --cert "$T/cell1.pem" --key "$T/cell1-key.pem")
  waitfor 60 nsx ctl curl -sf "${MTLS[@]}" "https://$CTL:4013/networking/v1/internal/policies" || { fail "policy-server-internal did not come up"; return; }
  waitfor 60 nsx ctl curl -sf "${MTLS[@]}" "https://$CTL:4103/leases" || { fail "silk-controller did not come up (logs/silk-controller.log)"; return; }
  log "upstream silk-controller, policy-server and policy-server-internal are up"

  # ------------------------------------------------------------ (a)+(b) two silkworm cells against upstream
  local n
  for n in 1 2; do
    local api=silk
    [ $n = 2 ] && api=auto # cell2 finds out by the 404 on /watch
    start "c$n" "cell$n" "${SW[@]}" cell --name "cell$n" --underlay-ip "$NET.1$n" \
      --controller "https://$CTL:4103" --controller-api $api --policy-server "https://$CTL:4013" \
      --tls-cert "$T/cell$n.pem" --tls-key "$T/cell$n-key.pem" --tls-ca "$T/ca.pem" \
      --lease-poll 2 --policy-poll 1 --admin "$WORK/cell$n.sock" --state-dir "$WORK/state/cell$n"
  done
  for n in 1 2; do
    waitfor 30 test -S "$WORK/cell$n.sock" || { fail "cell$n did not start (logs/cell$n.log)"; return; }
  done
  # Containers: appA on cell1 (HTTP on 8080 and 8081), appB and appC on cell2.
  local APPA=2ffe4b0f-b8c9-4a46-8d4a-8c6fcd0aa001 APPB=2ffe4b0f-b8c9-4a46-8d4a-8c6fcd0aa002 APPC=2ffe4b0f-b8c9-4a46-8d4a-8c6fcd0aa003
  mkns a; mkns b; mkns c
  "${SW[@]}" container add --cell "$WORK/cell1.sock" --app $APPA --netns "$P-a" --json > "$WORK/a.json"
  "${SW[@]}" container add --cell "$WORK/cell2.sock" --app $APPB --netns "$P-b" --json > "$WORK/b.json"
  "${SW[@]}" container add --cell "$WORK/cell2.sock" --app $APPC --netns "$P-c" --json > "$WORK/c.json"
  local AIP
  AIP=$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(j.ip??j.container?.ip)' "$WORK/a.json")
  log "appA is $AIP (cell1), appB and appC on cell2"
  for port in 8080 8081; do
    start a "http-$port" node -e "require('http').createServer((q,s)=>s.end('hello from appA:$port\n')).listen($port)"
  done

  log "leases in upstream silk-controller:"
  nsx ctl curl -s "${MTLS[@]}" "https://$CTL:4103/leases"; echo

  # What upstream really answers to the calls a silkworm cell makes (compare src/testing/fake-upstream.ts).
  log "recorded from the real servers:"
  {
    for u in "https://$CTL:4103/watch?since=-1" "https://$CTL:4103/leases" "https://$CTL:4013/networking/v1/internal/policies_last_updated" \
      "https://$CTL:4013/networking/v1/internal/policies?id=$APPA%2C$APPC" "https://$CTL:4013/watch?since=-1"; do
      echo "GET ${u#https://$CTL}"; nsx ctl curl -si "${MTLS[@]}" "$u" | tr -d '\r' | grep -iv '^date:'; echo
    done
    echo "PUT /leases/renew (cell1's lease)"
    nsx ctl curl -si "${MTLS[@]}" -X PUT "https://$CTL:4103/leases/renew" -d "$(nsx ctl curl -s "${MTLS[@]}" "https://$CTL:4103/leases" | node -e 'let s="";process.stdin.on("data",c=>s+=c).on("end",()=>console.log(JSON.stringify(JSON.parse(s).leases.find(l=>l.underlay_ip===process.argv[1]))))' "$NET.11")" | tr -d '\r' | grep -iv '^date:'; echo
  } > "$WORK/logs/recorded.txt" 2>&1
  sed 's/^/    /' "$WORK/logs/recorded.txt"

  # (a) forwarding with no policy yet: denied (silk denies by default)
  if nsx b curl -s -m 3 "http://$AIP:8080/" > /dev/null; then fail "(b) appB → appA:8080 worked before any policy"; else pass "(b) appB → appA:8080 denied before any policy"; fi

  # (b) a policy through upstream's external API, with the mock UAA's token
  local code
  code=$(nsx ctl curl -s -o "$WORK/create.out" -w '%{http_code}' -H 'Authorization: Bearer valid-token' \
    -H 'content-type: application/json' "http://$CTL:4002/networking/v1/external/policies" \
    -d "{\"policies\":[{\"source\":{\"id\":\"$APPB\"},\"destination\":{\"id\":\"$APPA\",\"protocol\":\"tcp\",\"ports\":{\"start\":8080,\"end\":8080}}}]}")
  if [ "$code" = 200 ]; then pass "(b) policy appB → appA tcp 8080 created through policy-server's external API"; else fail "(b) create policy: HTTP $code $(cat "$WORK/create.out")"; fi
  # silkworm's own CLI against upstream's external API (a cf-CLI-like client with a UAA token).
  if nsx ctl "${SW[@]}" policy list --controller "$CTL:4002" --token valid-token | grep -q "$APPB .* $APPA .* tcp .* 8080"; then
    pass "(b) silkworm policy list against upstream's external API shows it"
  else fail "(b) silkworm policy list --controller $CTL:4002 --token valid-token"; fi
  log "policy-server-internal says:"
  nsx ctl curl -s "${MTLS[@]}" "https://$CTL:4013/networking/v1/internal/policies?id=$APPA"; echo

  # (a)+(b) the allowed curl across the two cells
  if waitfor 20 nsx b curl -sf -m 2 "http://$AIP:8080/"; then pass "(a)(b) appB (cell2) → appA (cell1):8080 allowed: $(nsx b curl -s -m 2 "http://$AIP:8080/")"; else fail "(a)(b) appB → appA:8080 did not work"; fi
  if nsx b curl -s -m 3 "http://$AIP:8081/" > /dev/null; then fail "(b) appB → appA:8081 worked (no policy)"; else pass "(b) appB → appA:8081 denied"; fi
  if nsx c curl -s -m 3 "http://$AIP:8080/" > /dev/null; then fail "(b) appC → appA:8080 worked (no policy)"; else pass "(b) appC → appA:8080 denied"; fi

  # (a) renewals past the lease expiry: wait 3 expiries; both leases must still be routable (GET /leases lists
  # only leases renewed within lease_expiration_seconds) and forwarding must go on.
  log "waiting $((LEASE_EXPIRY * 3)) s (3 × lease_expiration_seconds $LEASE_EXPIRY)"
  sleep $((LEASE_EXPIRY * 3))
  local leases
  leases=$(nsx ctl curl -s "${MTLS[@]}" "https://$CTL:4103/leases")
  if grep -q "\"$NET.11\"" <<< "$leases" && grep -q "\"$NET.12\"" <<< "$leases"; then pass "(a) both cells' leases still routable after 3 × expiry: $leases"; else fail "(a) leases after 3 × expiry: $leases"; fi
  nsx ctl su postgres -s /bin/sh -c "psql -h 127.0.0.1 -U postgres -d silk -Atc 'SELECT underlay_ip, overlay_subnet, extract(epoch from now())::bigint - last_renewed_at AS s_since_renewal FROM subnets'" 2>&1 | sed 's/^/    silk db (underlay|subnet|s since renewal): /' || true
  if nsx b curl -sf -m 3 "http://$AIP:8080/" > /dev/null; then pass "(a) appB → appA:8080 still works after 3 × expiry"; else fail "(a) appB → appA:8080 after 3 × expiry"; fi
  for n in 1 2; do
    if grep -q '"lease-renew-conflict"\|"msg":"lease-renew-failed"' "$WORK/logs/cell$n.log"; then fail "(a) cell$n logged renew failures"; else pass "(a) cell$n: no renew failure in its log"; fi
  done
  grep -q '"msg":"controller-api-silk"' "$WORK/logs/cell2.log" && pass "(a) cell2 (--controller-api auto) found silk-controller by the 404 on /watch"

  # (a) a restart of cell1 (SIGTERM, same command line and state directory): silk-controller hands the
  # same lease back on acquire (lease_controller.go AcquireSubnetLease), appA is re-attached.
  local pid1
  pid1=$(cat "$WORK/pids/cell1")
  kill -TERM "$pid1"
  waitfor 20 sh -c "! kill -0 $pid1" || { fail "(a) cell1 did not stop on SIGTERM"; }
  start c1 cell1-restarted "${SW[@]}" cell --name cell1 --underlay-ip "$NET.11" \
    --controller "https://$CTL:4103" --controller-api silk --policy-server "https://$CTL:4013" \
    --tls-cert "$T/cell1.pem" --tls-key "$T/cell1-key.pem" --tls-ca "$T/ca.pem" \
    --lease-poll 2 --policy-poll 1 --admin "$WORK/cell1.sock" --state-dir "$WORK/state/cell1"
  if waitfor 30 nsx b curl -sf -m 2 "http://$AIP:8080/"; then pass "(a) after cell1's restart appB → appA:8080 works again"; else fail "(a) appB → appA:8080 after cell1's restart (logs/cell1-restarted.log)"; fi
  if grep -q lease-differs-from-saved "$WORK/logs/cell1-restarted.log"; then fail "(a) cell1 got another lease on restart"; else pass "(a) cell1 got its lease back on restart"; fi

  # (b) the policy deleted through the external API: the cells stop allowing it.
  code=$(nsx ctl curl -s -o "$WORK/delete.out" -w '%{http_code}' -H 'Authorization: Bearer valid-token' \
    -H 'content-type: application/json' "http://$CTL:4002/networking/v1/external/policies/delete" \
    -d "{\"policies\":[{\"source\":{\"id\":\"$APPB\"},\"destination\":{\"id\":\"$APPA\",\"protocol\":\"tcp\",\"ports\":{\"start\":8080,\"end\":8080}}}]}")
  [ "$code" = 200 ] || fail "(b) delete policy: HTTP $code $(cat "$WORK/delete.out")"
  if waitfor 20 sh -c "! ip netns exec $P-b curl -s -m 2 http://$AIP:8080/ > /dev/null"; then pass "(b) policy deleted through the external API: appB → appA:8080 denied again"; else fail "(b) appB → appA:8080 still works after the policy was deleted"; fi

  # ------------------------------------------------------------ (c) upstream silk-daemon against silkworm's controller
  start ctl silkworm-controller "${SW[@]}" controller --listen "$CTL:4003" --listen "$WORK/controller.sock" --store :memory: \
    --tls-cert "$T/controller.pem" --tls-key "$T/controller-key.pem" --tls-ca "$T/ca.pem" --token-key "$T/token-key.pub.pem" \
    --lease-expiry "${LEASE_EXPIRY}s"
  waitfor 30 test -S "$WORK/controller.sock" || { fail "silkworm controller did not start"; return; }
  cat > "$WORK/silk-daemon.json" <<EOF
{"underlay_ip":"$NET.13","subnet_prefix_length":24,"overlay_network":"10.255.0.0/16","health_check_port":17010,
 "vtep_name":"silk-vtep","connectivity_server_url":"https://$CTL:4003","ca_cert_file":"$T/ca.pem",
 "client_cert_file":"$T/silk-daemon.pem","client_key_file":"$T/silk-daemon-key.pem","vni":1,"vtep_port":4789,
 "poll_interval":2,"debug_server_port":17011,"datastore":"$WORK/state/silk-daemon-store.json",
 "partition_tolerance_seconds":60,"client_timeout_seconds":5,"metron_port":3457,"log_prefix":"cfnetworking","log_level":"debug"}
EOF
  start sd silk-daemon "$bin/silk-daemon" --config "$WORK/silk-daemon.json"
  start c3 cell3 "${SW[@]}" cell --name cell3 --underlay-ip "$NET.14" --controller "https://$CTL:4003" \
    --tls-cert "$T/cell3.pem" --tls-key "$T/cell3-key.pem" --tls-ca "$T/ca.pem" --admin "$WORK/cell3.sock" --state-dir "$WORK/state/cell3" \
    --lease-poll 2
  waitfor 30 test -S "$WORK/cell3.sock" || { fail "cell3 did not start"; return; }
  local MTLS3=(--cacert "$T/ca.pem" --cert "$T/cell3.pem" --key "$T/cell3-key.pem")
  if waitfor 30 sh -c "ip netns exec $P-ctl curl -s ${MTLS3[*]} https://$CTL:4003/leases | grep -q '\"$NET.13\"'"; then
    pass "(c) silk-daemon's lease is in silkworm's GET /leases: $(nsx ctl curl -s "${MTLS3[@]}" "https://$CTL:4003/leases")"
  else fail "(c) silk-daemon holds no lease in silkworm's controller (logs/silk-daemon.log)"; fi
  log "silk-daemon's silk-vtep:"; nsx sd ip -d addr show silk-vtep 2>&1 | sed 's/^/    /' | head -6
  log "waiting $((LEASE_EXPIRY * 3)) s (3 × --lease-expiry)"
  sleep $((LEASE_EXPIRY * 3))
  local sdsub
  sdsub=$(nsx ctl curl -s "${MTLS3[@]}" "https://$CTL:4003/leases" | node -e 'let s="";process.stdin.on("data",c=>s+=c).on("end",()=>{const l=JSON.parse(s).leases.find(x=>x.underlay_ip===process.argv[1]);console.log(l?l.overlay_subnet:"")})' "$NET.13")
  if [ -n "$sdsub" ]; then pass "(c) silk-daemon's lease $sdsub still held after 3 × expiry (renewed)"; else fail "(c) silk-daemon's lease gone after 3 × expiry"; fi
  if [ -n "$sdsub" ] && "${SW[@]}" show routes --cell "$WORK/cell3.sock" | tee "$WORK/cell3-routes.txt" | grep -q "^${sdsub} "; then
    pass "(c) cell3's routes hold silk-daemon's subnet: $(grep "^${sdsub} " "$WORK/cell3-routes.txt")"
  else fail "(c) cell3's routes lack silk-daemon's subnet $sdsub: $(cat "$WORK/cell3-routes.txt" 2>/dev/null)"; fi
  if grep -q '"level":"error"' "$WORK/logs/silk-daemon.log"; then fail "(c) silk-daemon logged errors: $(grep '"level":"error"' "$WORK/logs/silk-daemon.log" | head -3)"; else pass "(c) silk-daemon logged no error"; fi
  log "silk-daemon's routes (from silkworm's GET /leases):"; nsx sd ip route show dev silk-vtep 2>&1 | sed 's/^/    /'
  [ -n "$sdsub" ] || return

  # (c) the data path between the two: a container on silkworm's cell3 → an HTTP server on the silk-daemon
  # host's overlay address (its silk-vtep), through silkworm's encapsulation and the kernel's vxlan gbp device
  # that silk-daemon set up from silkworm's leases; the reply comes back through the kernel into silkworm.
  local sdvtep=${sdsub%/*}
  # Over veth the kernel's vxlan device leaves the inner TCP checksum for "the NIC", which never fills it
  # in, and silkworm reads the datagram from a UDP socket: the cell completes such partial checksums from
  # a same-host kernel peer (since main's 1a95bb3; before it every segment from silk-daemon's host was lost).
  # UPSTREAM_TX_OFF=1 turns tx checksum offload off on that veth instead, as src/lab/netns.ts
  # softwareTxChecksum does for a kernel cell in the lab.
  [ "${UPSTREAM_TX_OFF:-0}" = 0 ] || nsx sd ethtool -K eth0 tx off > /dev/null
  mkns d
  "${SW[@]}" container add --cell "$WORK/cell3.sock" --app 2ffe4b0f-b8c9-4a46-8d4a-8c6fcd0aa004 --netns "$P-d" > /dev/null
  start sd http-sd node -e "require('http').createServer((q,s)=>s.end('hello from the silk-daemon host\n')).listen(8080,'$sdvtep')"
  if waitfor 20 nsx d curl -sf -m 2 "http://$sdvtep:8080/"; then pass "(c) a container on silkworm's cell3 → silk-daemon's host $sdvtep:8080: $(nsx d curl -s -m 2 "http://$sdvtep:8080/")"; else fail "(c) container on cell3 → $sdvtep:8080 (silk-daemon's kernel VTEP)"; fi

  # (c) silk-daemon restarted: it finds its lease on silk-vtep and renews it (main.go discoverLocalLease + RenewSubnetLease).
  local sdpid
  sdpid=$(cat "$WORK/pids/silk-daemon")
  kill -TERM "$sdpid"
  waitfor 20 sh -c "! kill -0 $sdpid" || fail "(c) silk-daemon did not stop on SIGTERM"
  start sd silk-daemon-restarted "$bin/silk-daemon" --config "$WORK/silk-daemon.json"
  if waitfor 20 grep -q '"cfnetworking.silk-daemon.renewed-lease"' "$WORK/logs/silk-daemon-restarted.log"; then
    pass "(c) restarted silk-daemon renewed its lease with silkworm: $(grep '"cfnetworking.silk-daemon.renewed-lease"' "$WORK/logs/silk-daemon-restarted.log" | grep -o '"lease":{[^}]*}' | head -1)"
  else fail "(c) restarted silk-daemon did not renew (logs/silk-daemon-restarted.log): $(grep '"level":"error"' "$WORK/logs/silk-daemon-restarted.log" | head -2)"; fi
  sleep 5
  if grep -q '"level":"error"' "$WORK/logs/silk-daemon-restarted.log"; then fail "(c) restarted silk-daemon logged errors: $(grep '"level":"error"' "$WORK/logs/silk-daemon-restarted.log" | head -2)"; else pass "(c) restarted silk-daemon: no error"; fi
  if nsx d curl -sf -m 2 "http://$sdvtep:8080/" > /dev/null; then pass "(c) cell3 → silk-daemon's host still works after its restart"; else fail "(c) cell3 → silk-daemon's host after its restart"; fi
  # (e) a single_ip_only silk-daemon (as on a VM that hosts no containers) asks silkworm for a /32 lease
  # (controller/client.go AcquireSingleOverlayIPLease: {"underlay_ip","single_overlay_ip":true}).
  host sd2 "$NET.15"
  sed -e "s/\"underlay_ip\":\"$NET.13\"/\"underlay_ip\":\"$NET.15\"/" -e 's/"health_check_port":17010/"health_check_port":17012/' \
    -e 's/"debug_server_port":17011/"debug_server_port":17013/' -e 's/silk-daemon-store.json/silk-daemon2-store.json/' \
    -e 's/"log_level":"debug"}/"log_level":"debug","single_ip_only":true}/' "$WORK/silk-daemon.json" > "$WORK/silk-daemon2.json"
  start sd2 silk-daemon2 "$bin/silk-daemon" --config "$WORK/silk-daemon2.json"
  if waitfor 20 sh -c "ip netns exec $P-ctl curl -s ${MTLS3[*]} https://$CTL:4003/leases | grep -q '\"$NET.15\",\"overlay_subnet\":\"[0-9.]*/32\"'"; then
    pass "(e) single_ip_only silk-daemon holds a /32 from silkworm: $(nsx ctl curl -s "${MTLS3[@]}" "https://$CTL:4003/leases" | grep -o "{\"underlay_ip\":\"$NET.15\"[^}]*}")"
  else fail "(e) no /32 lease for the single_ip_only silk-daemon: $(grep '"level":"error"' "$WORK/logs/silk-daemon2.log" | head -2 | cut -c1-300)"; fi
  sleep 5
  if grep -q '"level":"error"' "$WORK/logs/silk-daemon2.log"; then fail "(e) single_ip_only silk-daemon logged errors: $(grep '"level":"error"' "$WORK/logs/silk-daemon2.log" | head -2 | cut -c1-300)"; else pass "(e) single_ip_only silk-daemon: renewing, no error"; fi
  local one
  one=$(nsx ctl curl -s "${MTLS3[@]}" "https://$CTL:4003/leases" | grep -o "\"$NET.15\",\"overlay_subnet\":\"[0-9.]*/32" | grep -o '[0-9.]*/32$' || true)
  if [ -n "$one" ] && waitfor 10 sh -c "'${SW[0]}' '${SW[1]}' show routes --cell '$WORK/cell3.sock' | grep -q '^${one%/32}\( \|/32 \)'"; then
    pass "(e) cell3 routes the /32: $("${SW[@]}" show routes --cell "$WORK/cell3.sock" | grep "^${one%/32}")"
  else fail "(e) cell3 has no route for the /32 lease $one: $("${SW[@]}" show routes --cell "$WORK/cell3.sock" | tr '\n' ';')"; fi
  if [ -n "$one" ] && waitfor 10 sh -c "ip netns exec $P-sd ip route show dev silk-vtep | grep -q '^${one%/32} '"; then
    pass "(e) silk-daemon's host routes the /32: $(nsx sd ip route show dev silk-vtep | grep "^${one%/32} ")"
  else fail "(e) silk-daemon's host has no route for $one"; fi
  log "single_ip_only silk-daemon's silk-vtep and routes:"; nsx sd2 ip addr show silk-vtep 2>&1 | grep inet | sed 's/^/    /'; nsx sd2 ip route show dev silk-vtep 2>&1 | sed 's/^/    /'

  [ -x "$bin/vxlan-policy-agent" ] || { log "no $bin/vxlan-policy-agent: (d) skipped"; return; }

  # (d) upstream vxlan-policy-agent on the silk-daemon host takes its policies from silkworm's internal API
  # over mutual TLS: policies_last_updated, policies?id=…, PUT tags (INGRESS_ROUTER, with
  # enable_overlay_ingress_rules). Its container is a record in the CNI datastore, as silk-cni writes it
  # (vxlan-policy-agent/integration/linux/linux_test.go writes the same shape).
  local APPD=2ffe4b0f-b8c9-4a46-8d4a-8c6fcd0aa004 APPE=2ffe4b0f-b8c9-4a46-8d4a-8c6fcd0aa005
  local eip=${sdvtep%.0}.5
  mkdir -p "$WORK/state/vpa"
  cat > "$WORK/state/vpa/store.json" <<EOF
{"e-handle":{"handle":"e-handle","ip":"$eip","metadata":{"policy_group_id":"$APPE","space_id":"some-space","ports":"8080","container_workload":"app"}}}
EOF
  "${SW[@]}" policy add $APPD $APPE --protocol tcp --port 8080 --controller "$WORK/controller.sock" > /dev/null
  cat > "$WORK/vxlan-policy-agent.json" <<EOF
{"poll_interval":1,"enable_asg_syncing":false,"asg_poll_interval":60,"cni_datastore_path":"$WORK/state/vpa/store.json",
 "policy_server_url":"https://$CTL:4003","vni":1,"metron_address":"127.0.0.1:3457","ca_cert_file":"$T/ca.pem",
 "client_cert_file":"$T/silk-daemon.pem","client_key_file":"$T/silk-daemon-key.pem","client_timeout_seconds":5,
 "iptables_lock_file":"$WORK/state/vpa/iptables.lock","debug_server_host":"127.0.0.1","debug_server_port":17020,
 "log_level":"debug","log_prefix":"cfnetworking","iptables_c2c_logging":false,"iptables_accepted_udp_logs_per_sec":100,
 "enable_overlay_ingress_rules":true,"force_policy_poll_cycle_port":17021,"force_policy_poll_cycle_host":"127.0.0.1",
 "disable_container_network_policy":false,"overlay_network":"10.255.0.0/16","underlay_ips":["$NET.13"],
 "iptables_asg_logging":false,"iptables_denied_logs_per_sec":2,"deny_networks":{},
 "outbound_connections":{"limit":false,"logging":false,"burst":900,"rate_per_sec":100},
 "loggregator":{"loggregator_use_v2_api":false}}
EOF
  start sd vxlan-policy-agent "$bin/vxlan-policy-agent" -config-file "$WORK/vxlan-policy-agent.json"
  local tagd
  tagd=$("${SW[@]}" tags --controller "$WORK/controller.sock" --json | node -e 'let s="";process.stdin.on("data",c=>s+=c).on("end",()=>{const j=JSON.parse(s);const t=(j.tags??j).find(x=>x.id===process.argv[1]);console.log(t?t.tag:"")})' $APPD)
  if waitfor 20 sh -c "ip netns exec $P-sd iptables -S | grep -q -- '-d $eip/32 .*--dport 8080 .*--mark 0x$((16#${tagd:-0}))'"; then
    pass "(d) vxlan-policy-agent wrote silkworm's policy (tag $tagd → $eip:8080): $(nsx sd iptables -S | grep -- "-d $eip/32" | head -1)"
  else fail "(d) no iptables rule for tag $tagd → $eip:8080 from vxlan-policy-agent: $(nsx sd iptables -S | grep -i mark | head -5)"; fi
  sleep 3
  if grep -q '"level":"error"' "$WORK/logs/vxlan-policy-agent.log"; then fail "(d) vxlan-policy-agent logged errors: $(grep '"level":"error"' "$WORK/logs/vxlan-policy-agent.log" | head -3 | cut -c1-400)"; else pass "(d) vxlan-policy-agent: no error"; fi
  grep -o '"message":"[^"]*"' "$WORK/logs/vxlan-policy-agent.log" | sort | uniq -c | sort -rn | head -8 | sed 's/^/    vxlan-policy-agent: /'

  # (d) the data path through upstream's policy: a container E on the silk-daemon host, wired as silk-cni
  # wires one (veth, <ip>/32, peer 169.254.0.1, default route via it), and silk's default deny for
  # traffic from the overlay added by hand as cni-wrapper-plugin would (ESTABLISHED accept, REJECT the rest
  # from silk-vtep), after vxlan-policy-agent's chain. silkworm stamps appD's tag into the VXLAN GBP ID, the
  # kernel's vxlan gbp device turns it into the mark that the agent's rule accepts.
  mkns e
  nsx sd ip link add e-host type veth peer name eth0 netns "$P-e"
  nsx e ip addr add "$eip/32" dev eth0
  nsx e ip link set eth0 up
  nsx e ip route add 169.254.0.1 dev eth0 scope link
  nsx e ip route add default via 169.254.0.1 dev eth0 src "$eip"
  nsx sd ip addr add 169.254.0.1/32 dev e-host
  nsx sd ip link set e-host up
  nsx sd ip route add "$eip/32" dev e-host
  nsx sd sysctl -qw net.ipv4.ip_forward=1
  nsx sd iptables -A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
  nsx sd iptables -A FORWARD -i silk-vtep -j REJECT --reject-with icmp-port-unreachable
  for port in 8080 8081; do
    start e "http-e-$port" node -e "require('http').createServer((q,s)=>s.end('hello from appE:$port on the silk-daemon host\n')).listen($port)"
  done
  mkns f
  "${SW[@]}" container add --cell "$WORK/cell3.sock" --app 2ffe4b0f-b8c9-4a46-8d4a-8c6fcd0aa006 --netns "$P-f" > /dev/null
  if waitfor 20 nsx d curl -sf -m 2 "http://$eip:8080/"; then pass "(d) appD (silkworm cell3, tag $tagd) → appE:8080 on the silk-daemon host, allowed by vxlan-policy-agent's mark rule: $(nsx d curl -s -m 2 "http://$eip:8080/")"; else fail "(d) appD → appE:8080 through upstream's policy"; fi
  if nsx d curl -s -m 3 "http://$eip:8081/" > /dev/null; then fail "(d) appD → appE:8081 worked (no policy)"; else pass "(d) appD → appE:8081 rejected by the kernel (no policy)"; fi
  if nsx f curl -s -m 3 "http://$eip:8080/" > /dev/null; then fail "(d) appF → appE:8080 worked (no tag, no policy)"; else pass "(d) appF (no tag) → appE:8080 rejected by the kernel"; fi
}

case "${1:-}" in
  build) [ $# = 4 ] || usage; build "$2" "$3" "$4" ;;
  run) [ $# = 2 ] || usage; run "$2"; log "$FAILS check(s) failed"; [ $FAILS = 0 ] ;;
  *) usage ;;
esac
