#!/usr/bin/env bash
# chaos/leader-kill.sh: a 3-node pingora-node cluster (gossip + raft) on
# loopback, real processes; ROUNDS times: kill -9 the raft leader, measure
# until a config write succeeds on a survivor and every survivor serves it,
# check the proxies kept serving throughout, restart the killed node on its
# data dir and check it serves the latest version again and that the
# cluster is back to 3 voters with a healthy leader. Prints one line
# per round and "N passed, M failed"; exits 1 on any failure.
#
#   chaos/leader-kill.sh [ROUNDS]        (default 3)
#
# Loopback only; every process it starts is stopped by PID on exit; every
# wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
  -h | --help | help) sed -n '2,/^[^#]/p' "chaos/$(basename "$0")" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
  '' | [1-9] | [1-9][0-9]) [ $# -le 1 ] || { echo "$0: one argument at most, ROUNDS" >&2; exit 2; } ;;
  *) { echo "$0: ROUNDS must be a number from 1 to 99, got \"$1\""; echo; sed -n '2,/^[^#]/p' "chaos/$(basename "$0")" | grep '^#' | sed 's/^# \{0,1\}//'; } >&2; exit 2 ;;
esac
ROUNDS=${1:-3}
work=$(mktemp -d /tmp/pingora-chaos.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

if ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
  echo "== installing curl and python3 (apt-get)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  timeout 600 $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 600 $sudo apt-get install -y -qq curl python3 >/dev/null
fi

now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

echo "== build"
go build -o "$work/pingora-node" ./cmd/pingora-node
cat > "$work/origin.go" <<'GO'
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	name := os.Args[2]
	http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }))
}
GO
go build -o "$work/origin" "$work/origin.go"
oa=127.0.0.1:$(free_port); ob=127.0.0.1:$(free_port)
"$work/origin" "$oa" a & pids+=($!)
"$work/origin" "$ob" b & pids+=($!)

cluster() { printf 'upstreams:\n  - name: web\n    peers: [{addr: %s}]\nroutes:\n  - upstream: web\n' "$1"; }
declare -A proxy admin gossip cluster_port pid
for i in 1 2 3; do
  n=n$i
  proxy[$n]=127.0.0.1:$(free_port); admin[$n]=127.0.0.1:$(free_port)
  gossip[$n]=127.0.0.1:$(free_port); cluster_port[$n]=127.0.0.1:$(free_port)
done
start_node() {
  local n=$1 join=""
  [ "$n" != n1 ] && join="join: [${gossip[n1]}]"
  [ "$n" = n1 ] && [ -d "$work/$n-data" ] && join="join: [${gossip[n2]}, ${gossip[n3]}]"
  cat > "$work/$n.yaml" <<YAML
name: $n
admin_addr: ${admin[$n]}
listeners:
  - {name: http, addr: ${proxy[$n]}, h2c: true}
gossip_addr: ${gossip[$n]}
gossip_profile: fast
cluster_addr: ${cluster_port[$n]}
data_dir: $n-data
bootstrap_expect: 3
upgrade_socket: $n.sock
log_level: warn
$join
YAML
  "$work/pingora-node" run --config "$work/$n.yaml" >> "$work/$n.log" 2>&1 &
  pid[$n]=$!; pids+=($!)
}
status() { curl -s --max-time 2 "http://${admin[$1]}/status" || true; }
field() { python3 -c "import json,sys
try: d=json.load(sys.stdin)
except Exception: sys.exit(0)
$1" 2>/dev/null; }
leader() { for n in n1 n2 n3; do l=$(status "$n" | field 'print((d.get("raft") or {}).get("leader_id",""))'); [ -n "$l" ] && { echo "$l"; return; }; done; }
# whole: some node leads, autopilot calls the cluster healthy, 3 voters and no non-voter
whole() { for n in n1 n2 n3; do [ "$(status "$n" | field 'r=d.get("raft") or {}
print(r.get("state")=="Leader" and r.get("healthy") is True and len(r.get("voters") or [])==3 and not r.get("nonvoters"))')" = True ] && return 0; done; return 1; }
version() { status "$1" | field 'print((d.get("config") or {}).get("version",0))'; }
wait_until() { # seconds, command...
  local limit=$1; shift; local end=$(( $(date +%s) + limit ))
  until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.05; done
}
apply() { # node file -> 0 on success
  "$work/pingora-node" config apply -f "$2" --admin "http://${admin[$1]}" > /dev/null 2>&1
}
ready() { curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://${admin[$1]}/readyz" | grep -q '^200$'; }
all_serve() { # body nodes...
  local want=$1; shift
  for n in "$@"; do [ "$(curl -s --max-time 2 "http://${proxy[$n]}/")" = "$want" ] || return 1; done
}

echo "== start 3 nodes"
for n in n1 n2 n3; do start_node "$n"; done
cluster "$oa" > "$work/a.yaml"; cluster "$ob" > "$work/b.yaml"
wait_until 30 apply n1 "$work/a.yaml" || { echo "cluster did not accept a first config"; KEEP=1; exit 1; }
wait_until 10 all_serve a n1 n2 n3 || { echo "first config not served everywhere"; KEEP=1; exit 1; }

passed=0; failed=0; want=a
for round in $(seq 1 "$ROUNDS"); do
  L=$(leader)
  if [ -z "$L" ]; then echo "round $round: no leader known"; failed=$((failed+1)); continue; fi
  survivors=(); for n in n1 n2 n3; do [ "$n" != "$L" ] && survivors+=("$n"); done
  # proxies keep serving while the leader dies: sample them in the background
  ( errs=0; for _ in $(seq 1 60); do for n in "${survivors[@]}"; do
      curl -s --max-time 2 -o /dev/null -w '%{http_code}\n' "http://${proxy[$n]}/" | grep -q '^200$' || errs=$((errs+1)); done; sleep 0.05; done
    echo "$errs" > "$work/serve-errs.$round" ) & sampler=$!
  if [ "$want" = a ]; then want=b; file="$work/b.yaml"; else want=a; file="$work/a.yaml"; fi
  t0=$(now_ms)
  kill -9 "${pid[$L]}"
  wait "${pid[$L]}" 2>/dev/null || true
  ok=1
  wait_until 20 apply "${survivors[0]}" "$file" || ok=0
  t1=$(now_ms)
  wait_until 10 all_serve "$want" "${survivors[@]}" || ok=0
  t2=$(now_ms)
  wait "$sampler" || true
  serve_errs=$(cat "$work/serve-errs.$round" 2>/dev/null || echo 1)
  [ "$serve_errs" = 0 ] || ok=0
  t_restart=$(now_ms) # after the sampler: it is no part of the restart
  start_node "$L"
  wait_until 30 ready "$L" || ok=0
  t_ready=$(now_ms)
  wait_until 30 all_serve "$want" "$L" || ok=0
  t3=$(now_ms)
  v=$(version "$L")
  # the next round kills a leader again: it needs 3 voters, $L among them
  wait_until 30 whole || ok=0
  t4=$(now_ms)
  if [ "$ok" = 1 ]; then passed=$((passed+1)); verdict=ok; else failed=$((failed+1)); verdict=FAILED; fi
  echo "round $round: killed leader $L; write accepted after $((t1-t0)) ms, all survivors serving it after $((t2-t0)) ms; survivors' proxy errors $serve_errs; $L restarted: ready after $((t_ready-t_restart)) ms, serving v$v after $((t3-t_restart)) ms, 3 voters and healthy after $((t4-t_restart)) ms: $verdict"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] || { KEEP=1; exit 1; }
