#!/usr/bin/env bash
# Graceful-upgrade benchmark (issue 4): keeps a pingora-node under load with
# wrk (HTTP/1.1 keep-alive), h2go (h2c with golang.org/x/net's Transport,
# written and built at run time) and h2load (h2c, prior knowledge, in 1 s
# runs: it does not reconnect after GOAWAY) and performs UPGRADES binary
# upgrades (SIGUSR2) in a row while they run. Prints one summary line per
# tool and "N passed, M failed" (wrk and h2go; h2load is informational, see
# bench/README.md); exits 1 when a request failed or fewer than UPGRADES
# upgrades completed during the load.
#
#   bench/upgrade.sh [--short] [--duration S] [--upgrades N] [--keep]
#
# Environment: DURATION (default 20 s; --short: 8 s), UPGRADES (default 5),
# WRK_CONNS (50), WRK_THREADS (2), WRK_CLOSE=1 (wrk sends Connection:
# close: a new connection per request, so connections are accepted by the
# old and the new process throughout each hand-off), H2GO_CONNS (10),
# H2GO_STREAMS (10 per connection), H2_CLIENTS (10), H2_STREAMS (10) for
# h2load, UPGRADE_KEEP=1 (keep the work directory and its logs).
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
H2GO_CONNS=${H2GO_CONNS:-10}
H2GO_STREAMS=${H2GO_STREAMS:-10}
H2_CLIENTS=${H2_CLIENTS:-10}
H2_STREAMS=${H2_STREAMS:-10}
KEEP=${UPGRADE_KEEP:-}
while [ $# -gt 0 ]; do
  case $1 in
    --short) DURATION=8 ;;
    --duration) DURATION=$2; shift ;;
    --upgrades) UPGRADES=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# --- tools -------------------------------------------------------------------
if ! command -v wrk >/dev/null || ! command -v h2load >/dev/null || ! command -v curl >/dev/null; then
  echo "== installing wrk, h2load and curl (apt-get)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  timeout 600 $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 600 $sudo apt-get install -y -qq wrk nghttp2-client curl >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pingora-upgrade.XXXXXX")
pids=()     # processes this script started (origin, the first node, wrk, h2go, h2load)
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
mkdir -p "$work/h2go"
cat >"$work/h2go/main.go" <<'EOF'
// An HTTP/2 (h2c, prior knowledge) load client for bench/upgrade.sh, built
// against the module's golang.org/x/net. It follows RFC 9113 §8.7 and §6.8
// the way x/net's Transport does: a request refused by GOAWAY or
// REFUSED_STREAM (never processed) is retried on a new connection.
//
//	h2go -url URL -d DURATION -c CONNS -m STREAMS
//
// runs CONNS*STREAMS workers (STREAMS per connection, one Transport per
// connection) until DURATION ends, lets the requests in flight finish
// and prints one line
//
//	H2GOCOUNTS requests=N ok=N 2xx=N 3xx=N 4xx=N 5xx=N errors=N badbody=N dials=N
//
// then one "H2GOERR kind count" line per kind of error.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

type counts struct {
	requests, ok, badBody int64
	class                 [6]int64
	errs                  map[string]int64
}

func main() {
	url := flag.String("url", "", "URL to GET")
	dur := flag.Duration("d", 10*time.Second, "duration")
	conns := flag.Int("c", 10, "connections")
	streams := flag.Int("m", 10, "concurrent streams per connection")
	timeout := flag.Duration("timeout", 5*time.Second, "per-request timeout")
	flag.Parse()
	if *url == "" || *conns < 1 || *streams < 1 {
		fmt.Fprintln(os.Stderr, "usage: h2go -url URL [-d D] [-c CONNS] [-m STREAMS]")
		os.Exit(2)
	}
	var dials atomic.Int64
	clients := make([]*http.Client, *conns)
	for i := range clients {
		tr := &http2.Transport{
			AllowHTTP: true, // h2c: "TLS" dials are plain TCP
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				dials.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
		clients[i] = &http.Client{Transport: tr, Timeout: *timeout}
	}
	deadline := time.Now().Add(*dur)
	all := make([]counts, *conns**streams)
	var wg sync.WaitGroup
	for w := range all {
		wg.Add(1)
		go func(c *http.Client, n *counts) {
			defer wg.Done()
			n.errs = map[string]int64{}
			for time.Now().Before(deadline) {
				n.requests++
				resp, err := c.Get(*url)
				if err != nil {
					n.errs[kind(err)]++
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					n.errs["body: "+kind(err)]++
				case resp.StatusCode < 100 || resp.StatusCode > 599:
					n.errs[fmt.Sprintf("status %d", resp.StatusCode)]++
				default:
					n.class[resp.StatusCode/100]++
					if resp.StatusCode >= 400 {
						break
					}
					if string(body) != "ok\n" {
						n.badBody++
						break
					}
					n.ok++
				}
			}
		}(clients[w%*conns], &all[w])
	}
	wg.Wait()
	var t counts
	t.errs = map[string]int64{}
	var nerr int64
	for _, n := range all {
		t.requests += n.requests
		t.ok += n.ok
		t.badBody += n.badBody
		for i := range t.class {
			t.class[i] += n.class[i]
		}
		for k, v := range n.errs {
			t.errs[k] += v
			nerr += v
		}
	}
	fmt.Printf("H2GOCOUNTS requests=%d ok=%d 2xx=%d 3xx=%d 4xx=%d 5xx=%d errors=%d badbody=%d dials=%d\n",
		t.requests, t.ok, t.class[2], t.class[3], t.class[4], t.class[5], nerr, t.badBody, dials.Load())
	keys := make([]string, 0, len(t.errs))
	for k := range t.errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("H2GOERR %s: %d\n", k, t.errs[k])
	}
}

// kind names an error without addresses or ports, so that errors group.
func kind(err error) string {
	var se http2.StreamError
	if errors.As(err, &se) {
		return "stream error " + se.Code.String()
	}
	var ga http2.GoAwayError
	if errors.As(err, &ga) {
		return "GOAWAY " + ga.ErrCode.String()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "broken pipe", "unexpected EOF", "EOF", "client connection lost", "server sent GOAWAY"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i < 80 {
		return s[i+2:]
	}
	return s
}
EOF
# Built from the repository root as a command-line file: it compiles against
# this module's go.mod (its golang.org/x/net), and nothing is written here.
timeout 600 go build -o "$work/h2go-bin" "$work/h2go/main.go"

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

wrk_close=()
[ "${WRK_CLOSE:-0}" = 1 ] && wrk_close=(-H 'Connection: close')
echo "== load for ${DURATION}s: wrk -t$WRK_THREADS -c$WRK_CONNS ${wrk_close[*]}, h2go -c$H2GO_CONNS -m$H2GO_STREAMS, h2load -c$H2_CLIENTS -m$H2_STREAMS; $UPGRADES upgrades"
load_start=$(now_ms)
wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" --timeout 5s "${wrk_close[@]}" -s "$work/counts.lua" "$url" \
  >"$work/wrk.log" 2>&1 &
wrk_pid=$!
pids+=("$wrk_pid")
"$work/h2go-bin" -url "$url" -d "${DURATION}s" -c "$H2GO_CONNS" -m "$H2GO_STREAMS" -timeout 5s \
  >"$work/h2go.log" 2>&1 &
h2go_pid=$!
pids+=("$h2go_pid")
# h2load does not reconnect after a GOAWAY: a client whose connection was
# GOAWAY'd stops for the rest of its run ("Process Request Failure" lines;
# see bench/README.md). So h2load runs in back-to-back 1-second slices, each
# opening fresh connections, until the load ends; the counts are summed.
# --log-file records each request's start time: 0 when its HEADERS never
# left h2load (see the results).
h2_slices() {
  local end=$1 n=0 p
  while [ "$(now_ms)" -lt "$end" ] && [ "$n" -lt 10000 ]; do
    n=$((n + 1))
    echo "=== slice $n at +$(( $(now_ms) - load_start )) ms" >>"$work/h2load.log"
    timeout --kill-after=5 30 h2load --log-file="$work/h2load.req.$n" -c"$H2_CLIENTS" -m"$H2_STREAMS" -t1 -D 1 "$url" >>"$work/h2load.log" 2>&1 &
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
for pid in "$wrk_pid" "$h2go_pid" "$h2_pid"; do
  for _ in $(seq $(( (DURATION + 60) * 10 ))); do alive "$pid" || break; sleep 0.1; done
done
wait "$wrk_pid" || echo "wrk exited with $?"
wait "$h2go_pid" || echo "h2go exited with $?"
wait "$h2_pid" || echo "h2load exited with $?"

w=$(grep '^WRKCOUNTS' "$work/wrk.log" || true)
if [ -z "$w" ]; then echo "wrk printed no counts:"; cat "$work/wrk.log"; exit 1; fi
val() { sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p" <<<"$w"; }
w_req=$(val requests) w_conn=$(val connect) w_read=$(val read) w_write=$(val write)
w_status=$(val status) w_timeout=$(val timeout)
w_ok=$((w_req - w_status))
w_bad=$((w_status + w_conn + w_read + w_write + w_timeout))

g=$(grep '^H2GOCOUNTS' "$work/h2go.log" || true)
if [ -z "$g" ]; then echo "h2go printed no counts:"; cat "$work/h2go.log"; exit 1; fi
gval() { sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p" <<<"$g"; }
g_req=$(gval requests) g_ok=$(gval ok) g_2xx=$(gval 2xx) g_3xx=$(gval 3xx) g_4xx=$(gval 4xx) g_5xx=$(gval 5xx)
g_err=$(gval errors) g_badbody=$(gval badbody) g_dials=$(gval dials)
g_bad=$((g_req - g_ok))
g_kinds=$(sed -n 's/^H2GOERR //p' "$work/h2go.log" | paste -sd ';' -)

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
# Failed requests in h2load's --log-file (status -1): start time 0 means
# before_frame_send never ran for their HEADERS, i.e. they never reached the
# wire (nghttp2 refused them locally with REFUSED_STREAM after a GOAWAY).
read -r h_unsent h_sentfail < <(cat "$work"/h2load.req.* 2>/dev/null |
  awk -F'\t' '$2 == "-1" {if ($1 == 0) u++; else s++} END {print u+0, s+0}')

secs=$(awk "BEGIN{printf \"%.1f\", ($(now_ms) - $load_start)/1000}")
echo "== results (${DURATION}s load, $upgrades/$UPGRADES upgrades under load)"
echo "wrk:    $w_req responses, $w_ok 2xx/3xx, non-2xx/3xx $w_status; socket errors: connect $w_conn, read $w_read, write $w_write, timeout $w_timeout"
echo "h2go:   $g_req requests, $g_ok ok, status codes: $g_2xx 2xx, $g_3xx 3xx, $g_4xx 4xx, $g_5xx 5xx; errors $g_err${g_kinds:+ ($g_kinds)}, bad body $g_badbody; connections dialed $g_dials"
echo "h2load (never-sent failures not counted): $h_slices runs: $h_total total, $h_started started, $h_done done, $h_ok succeeded, $h_failed failed, $h_errored errored, $h_timeout timeout; status codes: $h_2xx 2xx, $h_3xx 3xx, $h_4xx 4xx, $h_5xx 5xx; failed requests never sent $h_unsent, sent $h_sentfail; clients stopped by GOAWAY $h_goaway; runs that crashed $h_exit"
echo "  (h2load's failures that never reached the wire are not counted: h2load does not retry; its failed requests are ones nghttp2 had queued when the GOAWAY arrived and refused locally (REFUSED_STREAM) without sending, which RFC 9113 §8.7 lets a client retry; a packet capture showed every HEADERS frame on the wire answered, see bench/README.md)"
if [ "$h_exit" -gt 0 ]; then
  echo "  warning: $h_exit h2load runs crashed: look at them (UPGRADE_KEEP=1)"
fi
passed=$((w_ok + g_ok))
# A request h2load did send and did not get answered is the server's
# failure: it counts.
failed=$((w_bad + g_bad + h_sentfail))
echo "$passed passed, $failed failed"
rc=0
if [ "$failed" -gt 0 ]; then rc=1; fi
if [ "$upgrades" -lt "$UPGRADES" ]; then
  echo "only $upgrades of $UPGRADES upgrades completed under load"; rc=1
fi
if [ "$rc" -ne 0 ]; then
  KEEP=${KEEP:-1}
  echo "--- wrk"; sed '/^WRKCOUNTS/d' "$work/wrk.log"
  echo "--- h2go"; cat "$work/h2go.log"
  echo "--- h2load (slices with failures)"; grep -B3 -A3 -E 'Process Request|[1-9][0-9]* (failed|errored|timeout)|exited' "$work/h2load.log" | head -n 60 || true
  echo "--- node log (last 40 lines)"; tail -n 40 "$work/node.log"
fi
exit "$rc"
