#!/usr/bin/env bash
# Graceful-upgrade benchmark (issue 4): keeps a pingora-node under load with
# wrk (HTTP/1.1 keep-alive) and h2load (h2c, prior knowledge, in 1 s runs:
# it does not reconnect after GOAWAY) and performs
# UPGRADES binary upgrades (SIGUSR2) in a row while they run. Prints one
# summary line per tool and "N passed, M failed"; exits 1 when a request
# failed or fewer than UPGRADES upgrades completed during the load.
#
#   bench/upgrade.sh [--short] [--duration S] [--upgrades N] [--keep]
#
# Environment: DURATION (default 20 s; --short: 8 s), UPGRADES (default 5),
# WRK_CONNS (50), WRK_THREADS (2), H2_CLIENTS (10), H2_STREAMS (10),
# UPGRADE_KEEP=1 (keep the work directory and its logs).
#
# Everything runs on 127.0.0.1; every process started here is stopped by
# its PID on exit (no pkill); every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

DURATION=${DURATION:-20}
UPGRADES=${UPGRADES:-5}
WRK_CONNS=${WRK_CONNS:-50}
WRK_THREADS=${WRK_THREADS:-2}
H2_CLIENTS=${H2_CLIENTS:-10}
H2_STREAMS=${H2_STREAMS:-10}
KEEP=${UPGRADE_KEEP:-}
while [ $# -gt 0 ]; do
  case $1 in
    --short) DURATION=8 ;;
    --duration) DURATION=$2; shift ;;
    --upgrades) UPGRADES=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# --- tools -------------------------------------------------------------------
if ! command -v wrk >/dev/null || ! command -v h2load >/dev/null; then
  echo "== installing wrk and h2load (apt-get)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  timeout 600 $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 600 $sudo apt-get install -y -qq wrk nghttp2-client >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pingora-upgrade.XXXXXX")
pids=()     # processes this script started (origin, the first node, wrk, h2load)
nodes=()    # every node pid seen in the pid file (successors are not our children)

alive() { # alive PID: running and not a zombie
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

cleanup() {
  local pid cur
  cur=$(cat "$work/node.pid" 2>/dev/null || true)
  [ -n "$cur" ] && nodes+=("$cur")
  cur=$(cat "$work/h2load.pid" 2>/dev/null || true)
  [ -n "$cur" ] && pids+=("$cur")
  for pid in "${pids[@]}" "${nodes[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" "${nodes[@]}"; do
    for _ in $(seq 150); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$KEEP" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# --- build -------------------------------------------------------------------
echo "== build"
timeout 600 go build -o "$work/pingora-node" ./cmd/pingora-node
mkdir -p "$work/origin"
cat >"$work/origin/main.go" <<'EOF'
// A tiny HTTP/1.1 origin for bench/upgrade.sh: "ports N" prints N free
// loopback ports; "serve ADDR" answers every request with a 3-byte body.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	switch os.Args[1] {
	case "ports":
		n, _ := strconv.Atoi(os.Args[2])
		var ls []net.Listener
		for i := 0; i < n; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				panic(err)
			}
			ls = append(ls, l)
			fmt.Println(l.Addr().(*net.TCPAddr).Port)
		}
		for _, l := range ls {
			l.Close()
		}
	case "serve":
		body := []byte("ok\n")
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "3")
			w.Write(body)
		})
		s := &http.Server{Addr: os.Args[2], Handler: h, IdleTimeout: 120 * time.Second}
		panic(s.ListenAndServe())
	}
}
EOF
printf 'module upgradeorigin\n\ngo 1.22\n' >"$work/origin/go.mod"
(cd "$work/origin" && GOFLAGS=-mod=mod timeout 300 go build -o "$work/origin-bin" .)

mapfile -t ports < <("$work/origin-bin" ports 3)
p_http=${ports[0]} p_admin=${ports[1]} p_origin=${ports[2]}
url="http://127.0.0.1:$p_http/"

# --- origin and node -----------------------------------------------------------
echo "== start origin and node"
"$work/origin-bin" serve "127.0.0.1:$p_origin" >"$work/origin.log" 2>&1 &
pids+=($!)

cat >"$work/node.yaml" <<EOF
name: bench
admin_addr: 127.0.0.1:$p_admin
listeners:
  - name: http
    addr: 127.0.0.1:$p_http
    h2c: true
cluster_config: cluster.yaml
log_level: info
access_log: false
grace_period: 10s
upgrade_socket: $work/upgrade.sock
EOF
cat >"$work/cluster.yaml" <<EOF
upstreams:
  - name: origin
    protocol: http1
    peers: [{addr: 127.0.0.1:$p_origin}]
routes:
  - path_prefix: /
    upstream: origin
EOF
"$work/pingora-node" run --config "$work/node.yaml" --pid-file "$work/node.pid" >"$work/node.log" 2>&1 &
pids+=($!)

ready=""
for _ in $(seq 100); do
  if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$p_admin/readyz" 2>/dev/null &&
     curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null &&
     curl -fsS -o /dev/null --max-time 1 --http2-prior-knowledge "$url" 2>/dev/null &&
     [ -s "$work/node.pid" ]; then
    ready=1; break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "node not ready:"; tail -n 40 "$work/node.log"; exit 1
fi
first_pid=$(cat "$work/node.pid")
nodes+=("$first_pid")
echo "node pid $first_pid on $url (admin 127.0.0.1:$p_admin), origin 127.0.0.1:$p_origin"

# --- load ------------------------------------------------------------------------
cat >"$work/counts.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKCOUNTS requests=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

echo "== load for ${DURATION}s: wrk -t$WRK_THREADS -c$WRK_CONNS, h2load -c$H2_CLIENTS -m$H2_STREAMS; $UPGRADES upgrades"
load_start=$(now_ms)
wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" --timeout 5s -s "$work/counts.lua" "$url" \
  >"$work/wrk.log" 2>&1 &
wrk_pid=$!
pids+=("$wrk_pid")
# h2load does not reconnect after a GOAWAY: a client whose connection was
# GOAWAY'd stops for the rest of its run ("Process Request Failure" lines;
# see bench/README.md). So h2load runs in back-to-back 1-second slices, each
# opening fresh connections, until the load ends; the counts are summed.
h2_slices() {
  local end=$1 n=0 p
  while [ "$(now_ms)" -lt "$end" ] && [ "$n" -lt 10000 ]; do
    n=$((n + 1))
    echo "=== slice $n at +$(( $(now_ms) - load_start )) ms" >>"$work/h2load.log"
    timeout --kill-after=5 30 h2load -c"$H2_CLIENTS" -m"$H2_STREAMS" -t1 -D 1 "$url" >>"$work/h2load.log" 2>&1 &
    p=$!
    echo "$p" >"$work/h2load.pid"
    wait "$p" || echo "h2load slice $n exited with $?" >>"$work/h2load.log"
  done
}
h2_slices $((load_start + DURATION * 1000)) &
h2_pid=$!
pids+=("$h2_pid")
load_end=$((load_start + DURATION * 1000))

# Spread the upgrades over the run: the first after ~15% of it, the last
# well before the end, so each old process drains while the load goes on.
first_at=$((load_start + DURATION * 150))
spacing=$(( (DURATION * 1000 * 70 / 100) / UPGRADES ))
upgrades=0
upgrade_log=()
while [ "$(now_ms)" -lt "$first_at" ]; do sleep 0.1; done
for i in $(seq "$UPGRADES"); do
  t0=$(now_ms)
  old=$(cat "$work/node.pid" 2>/dev/null || true)
  if [ -z "$old" ] || ! alive "$old"; then
    echo "upgrade $i: no running node in the pid file ($old)"; break
  fi
  kill -USR2 "$old"
  new="" gone=""
  deadline=$((t0 + 30000))        # grace_period 10s + start-up, bounded
  while [ "$(now_ms)" -lt "$deadline" ]; do
    cur=$(cat "$work/node.pid" 2>/dev/null || true)
    if [ -z "$new" ] && [ -n "$cur" ] && [ "$cur" != "$old" ]; then
      new=$cur; nodes+=("$new"); t_new=$(now_ms)
    fi
    if [ -n "$new" ] && ! alive "$old"; then gone=1; break; fi
    sleep 0.05
  done
  t1=$(now_ms)
  if [ -z "$new" ] || [ -z "$gone" ]; then
    echo "upgrade $i: FAILED (old $old, new '${new}', old exited: ${gone:-no}) after $((t1 - t0)) ms"
    break
  fi
  during=yes
  [ "$t1" -lt "$load_end" ] || during=no
  [ "$during" = yes ] && upgrades=$((upgrades + 1))
  line="upgrade $i: pid $old -> $new at +$(( (t0 - load_start) / 1000 )).$(( (t0 - load_start) % 1000 / 100 ))s; new pid after $((t_new - t0)) ms, old exited after $((t1 - t0)) ms; under load: $during"
  upgrade_log+=("$line")
  echo "$line"
  # wait for the next slot, at least a short pause
  next=$((t0 + spacing))
  [ "$next" -ge $(( $(now_ms) + 200 )) ] || next=$(( $(now_ms) + 200 ))
  while [ "$(now_ms)" -lt "$next" ]; do sleep 0.05; done
done

# --- results ---------------------------------------------------------------------
for pid in "$wrk_pid" "$h2_pid"; do
  for _ in $(seq $(( (DURATION + 60) * 10 ))); do alive "$pid" || break; sleep 0.1; done
done
wait "$wrk_pid" || echo "wrk exited with $?"
wait "$h2_pid" || echo "h2load exited with $?"

w=$(grep '^WRKCOUNTS' "$work/wrk.log" || true)
if [ -z "$w" ]; then echo "wrk printed no counts:"; cat "$work/wrk.log"; exit 1; fi
val() { sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p" <<<"$w"; }
w_req=$(val requests) w_conn=$(val connect) w_read=$(val read) w_write=$(val write)
w_status=$(val status) w_timeout=$(val timeout)
w_ok=$((w_req - w_status))
w_bad=$((w_status + w_conn + w_read + w_write + w_timeout))

if ! grep -q '^requests:' "$work/h2load.log"; then echo "h2load printed no counts:"; cat "$work/h2load.log"; exit 1; fi
# requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
# status codes: N 2xx, N 3xx, N 4xx, N 5xx   (summed over the slices)
read -r h_slices h_total h_started h_done h_ok h_failed h_errored h_timeout < <(
  grep '^requests:' "$work/h2load.log" | sed 's/[^0-9 ]//g' |
    awk '{n++; for (i = 1; i <= 7; i++) s[i] += $i} END {print n, s[1], s[2], s[3], s[4], s[5], s[6], s[7]}')
read -r h_2xx h_3xx h_4xx h_5xx < <(
  grep '^status codes:' "$work/h2load.log" |
    awk '{s2 += $3; s3 += $5; s4 += $7; s5 += $9} END {print s2+0, s3+0, s4+0, s5+0}')
h_goaway=$(grep -c '^Process Request Failure' "$work/h2load.log" || true)
h_exit=$(grep -c '^h2load slice .* exited' "$work/h2load.log" || true)
# h2load counts an errored request in "failed" too: failed + timeout covers
# every request it sent that did not succeed; a slice that crashed counts too.
h_bad=$((h_failed + h_timeout + h_exit))

secs=$(awk "BEGIN{printf \"%.1f\", ($(now_ms) - $load_start)/1000}")
echo "== results (${DURATION}s load, $upgrades/$UPGRADES upgrades under load)"
echo "wrk:    $w_req responses, $w_ok 2xx/3xx, non-2xx/3xx $w_status; socket errors: connect $w_conn, read $w_read, write $w_write, timeout $w_timeout"
echo "h2load: $h_slices runs: $h_total total, $h_started started, $h_done done, $h_ok succeeded, $h_failed failed, $h_errored errored, $h_timeout timeout; status codes: $h_2xx 2xx, $h_3xx 3xx, $h_4xx 4xx, $h_5xx 5xx; clients stopped by GOAWAY (not reconnecting, no request lost): $h_goaway"
passed=$((w_ok + h_ok))
failed=$((w_bad + h_bad))
echo "$passed passed, $failed failed"
rc=0
if [ "$failed" -gt 0 ]; then rc=1; fi
if [ "$upgrades" -lt "$UPGRADES" ]; then
  echo "only $upgrades of $UPGRADES upgrades completed under load"; rc=1
fi
if [ "$rc" -ne 0 ]; then
  KEEP=${KEEP:-1}
  echo "--- wrk"; sed '/^WRKCOUNTS/d' "$work/wrk.log"
  echo "--- h2load (slices with failures)"; grep -B3 -A3 -E 'Process Request|[1-9][0-9]* (failed|errored|timeout)|exited' "$work/h2load.log" | head -n 60 || true
  echo "--- node log (last 40 lines)"; tail -n 40 "$work/node.log"
fi
exit "$rc"
