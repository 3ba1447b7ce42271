#!/usr/bin/env bash
# bench/run.sh: pingora-node side by side with nginx, haproxy and Varnish, one command.
#
#   bench/run.sh                 full run: every target and test, report in bench/RESULTS.md
#   bench/run.sh --quick         DURATION=3 ROUNDS=1
#   bench/run.sh --smoke         DURATION=1 ROUNDS=1 WARMUP=0, report in the work dir,
#                                exits 1 if a target served nothing or a run had errors (CI)
#   bench/run.sh --soak [S]      wrk -c50 on /100k against pingora-node only for S seconds
#                                (default 600), RSS and heap every 10 s, report in bench/SOAK.md
#
# Environment: DURATION (7 s per measured run) · ROUNDS (3) · WARMUP (2 s before each run) ·
# TARGETS ("direct nginx haproxy varnish pingora"; direct, the origin without a proxy, only runs
# the h1-* and h2c-* tests; varnish only the hit-* tests, haproxy none of them) · TESTS ("h1-small
# h1-100k h2c-small h2c-100k tls-h2-small tls-h2-100k churn-small tls-churn-small upclose-small
# hit-small hit-100k"; any <h1|h2c|tls-h2|churn|tls-churn|upclose|hit>-<small|1k|100k>;
# tls-churn-*: HTTPS HTTP/1.1 with a new connection, and so a TLS handshake, per request (wrk
# resumes its first session: TLS 1.3 PSK with an X25519 exchange, no certificate); upclose-*: HTTP/1.1
# keep-alive to the proxy, a new upstream connection per request (the origin answers
# Connection: close); hit-*: cache hits over HTTP/1.1 keep-alive, nginx
# with proxy_cache on tmpfs and proxy_cache_lock, Varnish with malloc storage, pingora-node with
# its route cache) · WRK_CONNS (50) · H2_CLIENTS (10) ·
# H2_STREAMS (10) · NGINX_KEEPALIVE (128 idle upstream connections) · QUIET_WAIT (5 s at most
# before each run waiting until both CPUs are below QUIET_MAX (15) % busy) · NOISY_MAX (10) and
# RETRIES (1): a run in which other processes took more than NOISY_MAX % of a benchmark CPU is
# made again up to RETRIES times, the least disturbed attempt kept · PROXY_CPU (0) ·
# AUX_CPU (1) · OUT (report) · CHART (PNG) · KEEP=1 (keep the work dir) · SRC (tree: build
# pingora-node from the working tree; head: from the last commit; or any git revision) ·
# SRC_B (the same for a second build, target pingora-b: an A/B of two builds in one run, e.g.
# SRC=main SRC_B=tree TARGETS="nginx pingora pingora-b"; the report adds B's CPU per request
# against pingora's, round by round).
#
# It installs missing tools with apt-get, builds pingora-node and bench/origin into a
# temporary work dir, starts the origin and the targets there (every proxy pinned to
# PROXY_CPU, origin and load generators to AUX_CPU), runs the tests in interleaved rounds
# and writes a Markdown report and a PNG chart. Everything listens on 127.0.0.1; every
# load run is bounded by `timeout`; every process it starts is stopped by its PID on exit.
set -euo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH="$PATH:/usr/local/go/bin"

MODE=full
SOAK=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) MODE=quick ;;
    --smoke) MODE=smoke ;;
    --soak)
      MODE=soak SOAK=600
      if [[ ${2:-} =~ ^[0-9]+$ ]]; then SOAK=$2; shift; fi ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

ALL_TESTS="h1-small h1-100k h2c-small h2c-100k tls-h2-small tls-h2-100k churn-small tls-churn-small upclose-small hit-small hit-100k"
case $MODE in
  full)  DURATION=${DURATION:-7}; ROUNDS=${ROUNDS:-3}; WARMUP=${WARMUP:-2} ;;
  quick) DURATION=3; ROUNDS=1; WARMUP=${WARMUP:-2} ;;
  smoke) DURATION=1; ROUNDS=1; WARMUP=0 ;;
  soak)  DURATION=$SOAK; ROUNDS=1; WARMUP=${WARMUP:-2}; TARGETS=pingora; TESTS="" ;;
esac
TARGETS=${TARGETS-direct nginx haproxy varnish pingora}
TESTS=${TESTS-$ALL_TESTS}
WRK_CONNS=${WRK_CONNS:-50}
H2_CLIENTS=${H2_CLIENTS:-10}
H2_STREAMS=${H2_STREAMS:-10}
# 128, not 64: the h2 tests keep 100 requests in flight, and with 64 idle connections
# nginx closed and reopened an upstream connection for 13-20 % of h2 requests
# (+5-25 % CPU per request); pingora-node keeps 128 idle per peer by default.
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-128}
QUIET_WAIT=${QUIET_WAIT:-5}
QUIET_MAX=${QUIET_MAX:-15}
NOISY_MAX=${NOISY_MAX:-10}
RETRIES=${RETRIES:-1}
[ "$MODE" = smoke ] && QUIET_WAIT=0 RETRIES=0  # a hung load generator is still retried once
PROXY_CPU=${PROXY_CPU:-0}
AUX_CPU=${AUX_CPU:-1}
KEEP=${KEEP:-}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pingora-bench.XXXXXX")
abs() { case $1 in /*) echo "$1" ;; *) echo "$CALLER_PWD/$1" ;; esac; }
case $MODE in
  smoke) OUT=$(abs "${OUT:-$WORK/RESULTS.md}"); CHART=$(abs "${CHART:-$WORK/results-cpu.png}") ;;
  soak)  OUT=$(abs "${OUT:-$REPO/bench/SOAK.md}"); CHART= ;;
  *)     OUT=$(abs "${OUT:-$REPO/bench/RESULTS.md}"); CHART=$(abs "${CHART:-$REPO/bench/results-cpu.png}") ;;
esac

say() { printf '%s\n' "$*"; }
shquote() { # shquote ARG...: the words as a shell would need them typed
  local a out=""
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
  done
  printf '%s' "${out% }"
}
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# --- processes: everything started here is stopped by PID on exit ------------
SERVER_PIDS=()   # origin, nginx master, haproxy, pingora-node
CLIENT_PID=""    # the load generator running now (under timeout)
alive() { # alive PID: running and not a zombie
  local st
  st=$(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$? p kids=() i
  set +e
  trap - INT TERM
  [ -n "$CLIENT_PID" ] && kill -TERM "$CLIENT_PID" 2>/dev/null
  for p in "${SERVER_PIDS[@]}"; do
    # shellcheck disable=SC2207 # pids are plain numbers
    kids+=($(proc_tree "$p" | cut -d' ' -f3-))
    kill -TERM "$p" 2>/dev/null
  done
  for p in "${SERVER_PIDS[@]}" "${kids[@]}" $CLIENT_PID; do
    for ((i = 0; i < 50; i++)); do alive "$p" || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  [ -n "${NGX_CACHE:-}" ] && rm -rf "$NGX_CACHE"
  if [ -n "$KEEP" ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# proc_tree ROOT: "TICKS NPROC PID..." where TICKS is utime+stime (clock ticks,
# /proc/PID/stat fields 14 and 15) summed over ROOT and all its descendants.
proc_tree() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1; s = $0; sub(/^.*\) /, "", s); split(s, f, " ")
      parent[pid] = f[2]; ticks[pid] = f[12] + f[13] }
    END {
      if (!(root in ticks)) { print "0 0"; exit }
      want[root] = 1; more = 1
      while (more) { more = 0
        for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; more = 1 } }
      sum = 0; n = 0; list = ""
      for (p in want) { sum += ticks[p]; n++; list = list " " p }
      print sum, n list
    }'
}
# mem_kb FIELD PID...: FIELD (VmHWM, VmRSS) from /proc/PID/status, summed, in kB.
mem_kb() {
  local field=$1 p
  shift
  for p in "$@"; do cat "/proc/$p/status" 2>/dev/null || true; done |
    awk -v f="$field:" '$1 == f { s += $2 } END { print s + 0 }'
}
# self_child_ticks: utime+stime of this shell's reaped children (cutime+cstime),
# read without forking so that nothing but the load generator lands in the window.
self_child_ticks() {
  local line rest
  read -r line <"/proc/$BASHPID/stat"
  rest=${line##*) }
  read -r -a F <<<"$rest"
  CHILD_TICKS=$((F[13] + F[14]))
}
# cpu_busy CPU: sets BUSY (user+nice+system ticks), SIRQ (irq+softirq) and STEAL for
# cpuN, without forking. Interrupt and softirq time (loopback TCP is largely processed
# there) is not charged to any process's utime/stime.
cpu_busy() {
  local name u n s i _w irq sirq st rest
  while read -r name u n s i _w irq sirq st rest; do
    if [ "$name" = "cpu$1" ]; then BUSY=$((u + n + s)); SIRQ=$((irq + sirq)); STEAL=$st; return; fi
  done </proc/stat
  BUSY=0 SIRQ=0 STEAL=0
}

# --- tools --------------------------------------------------------------------
PATH="$PATH:/usr/sbin:/sbin"  # nginx and haproxy live in /usr/sbin
declare -A PKG=([wrk]=wrk [h2load]=nghttp2-client [nginx]=nginx [haproxy]=haproxy
  [gnuplot]=gnuplot-nox [openssl]=openssl [curl]=curl [varnishd]=varnish)
need=(curl openssl)
case $MODE in soak) need+=(wrk) ;; *) need+=(wrk h2load nginx haproxy varnishd gnuplot) ;; esac
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("${PKG[$t]}"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "== installing ${missing[*]} (apt-get)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # RUNLEVEL=1: invoke-rc.d then does not start the nginx/haproxy services
  # the packages ship (they would listen on :80 and add noise).
  { timeout 600 $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 timeout 900 $sudo apt-get install -y -qq "${missing[@]}"; } \
    >"$WORK/apt.log" 2>&1 || say "   apt-get failed (see below); continuing with what is installed"
  tail -3 "$WORK/apt.log" | sed 's/^/   /'
fi
have() { command -v "$1" >/dev/null 2>&1; }
have go || die "go is not installed (Go 1.24+ is needed to build pingora-node and bench/origin)"
have curl || die "curl is missing after apt-get"
have taskset || die "taskset (util-linux) is missing"

# --- targets and tests -----------------------------------------------------
want_targets=()
for t in $TARGETS; do
  case $t in
    direct|pingora) want_targets+=("$t") ;;
    pingora-b) [ -n "${SRC_B:-}" ] || die "target pingora-b is the build of SRC_B: set SRC_B (tree, head or a git revision)"
      want_targets+=("$t") ;;
    nginx|haproxy)
      if have "$t"; then want_targets+=("$t"); else say "== skipping target $t: $t is not installed"; fi ;;
    varnish)
      if have varnishd; then want_targets+=("$t"); else say "== skipping target $t: varnishd is not installed"; fi ;;
    *) die "unknown target $t (direct nginx haproxy varnish pingora pingora-b)" ;;
  esac
done
want_tests=()
for t in $TESTS; do
  case $t in
    h1-*|churn-*|tls-churn-*|upclose-*|hit-*) tool=wrk ;;
    h2c-*|tls-h2-*) tool=h2load ;;
    *) die "unknown test $t (want <h1|h2c|tls-h2|churn|tls-churn|upclose|hit>-<small|1k|100k>)" ;;
  esac
  case ${t##*-} in small|1k|100k) ;; *) die "unknown body size in $t (small, 1k, 100k)" ;; esac
  if [[ $t == tls-* ]] && ! have openssl; then say "== skipping test $t: openssl is not installed"; continue; fi
  if have "$tool"; then want_tests+=("$t"); else say "== skipping test $t: $tool is not installed"; fi
done

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ] && [ "$PROXY_CPU" = 0 ] && [ "$AUX_CPU" = 1 ]; then
  say "== one CPU only: proxies, origin and load generators all share CPU 0"
  AUX_CPU=0
fi
taskset -c "$PROXY_CPU" true 2>/dev/null || die "PROXY_CPU=$PROXY_CPU is not usable here"
taskset -c "$AUX_CPU" true 2>/dev/null || die "AUX_CPU=$AUX_CPU is not usable here"
CLK_TCK=$(getconf CLK_TCK)

# --- ports ---------------------------------------------------------------------
USED_PORTS=" "
port_busy() {
  if have ss && [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; then return 0; fi
  (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null
}
free_port() { # free_port VAR: a port in 20000-29999 nothing uses (below the ephemeral range)
  local p i
  for ((i = 0; i < 500; i++)); do
    p=$((20000 + RANDOM % 10000))
    case $USED_PORTS in *" $p "*) continue ;; esac
    port_busy "$p" && continue
    USED_PORTS+="$p "
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "no free port found"
}
for v in P_ORIGIN P_NGX_H1 P_NGX_H2C P_NGX_TLS P_NGX_HIT P_HAP P_HAP_TLS P_VARNISH P_PN P_PN_TLS P_PN_ADMIN P_PNB P_PNB_TLS P_PNB_ADMIN; do free_port "$v"; done
# nginx's proxy_cache lives on tmpfs (memory-backed), removed on exit
NGX_CACHE=$(mktemp -d /dev/shm/pingora-bench-cache.XXXXXX 2>/dev/null || mktemp -d "$WORK/nginx-cache.XXXXXX")

# --- build -------------------------------------------------------------------
say "== work dir $WORK"
say "== building pingora-node and bench/origin"
# build_pn SRC OUT: builds pingora-node, sets COMMIT to what was built (recorded now: the
# working tree may change while the benchmark runs)
build_pn() {
  local src=$1 out=$2 rev dirty
  COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$REPO" status --porcelain 2>/dev/null | awk '$2 ~ /\.go$|^go\.(mod|sum)$/ && $2 !~ /^bench\// { print $2 }' | paste -sd' ' - || true)
  if [ "$src" = tree ]; then
    [ -n "$dirty" ] && COMMIT="$COMMIT, built from the working tree with uncommitted Go changes: $dirty"
    go build -o "$out" ./cmd/pingora-node || die "go build ./cmd/pingora-node failed"
    return
  fi
  # a commit (head: the last one), without uncommitted edits (git archive: nothing written to the repo)
  rev=$src; [ "$src" = head ] && rev=HEAD
  COMMIT=$(git -C "$REPO" rev-parse --short "$rev^{commit}" 2>/dev/null) || die "$src: want tree, head or a git revision"
  COMMIT="$COMMIT ($src: built from that commit, uncommitted edits left out)"
  rm -rf "$WORK/src" && mkdir -p "$WORK/src"
  git -C "$REPO" archive "$rev" | tar -x -C "$WORK/src" || die "git archive $rev failed"
  (cd "$WORK/src" && go build -o "$out" ./cmd/pingora-node) || die "go build of $rev failed"
  rm -rf "$WORK/src"
}
SRC=${SRC:-tree}
build_pn "$SRC" "$WORK/pingora-node"; commit=$COMMIT
commit_b=""
case " ${want_targets[*]} " in *" pingora-b "*) build_pn "$SRC_B" "$WORK/pingora-node-b"; commit_b=$COMMIT ;; esac
go build -o "$WORK/origin" ./bench/origin || die "go build ./bench/origin failed"

# --- certificate: self-signed ECDSA P-256 for 127.0.0.1 and localhost ---------
TLS_OK=""
if have openssl; then
  if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >"$WORK/openssl.log" 2>&1; then
    cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
    TLS_OK=1
  else
    say "== openssl could not make a certificate: TLS tests are skipped"; cat "$WORK/openssl.log"
  fi
fi

# --- configs -----------------------------------------------------------------
write_configs() {
  mkdir -p "$WORK/nginx/tmp"
  local user_line="" tls_listen="" tls_conf=""
  # As root, nginx would run its worker as nobody, which cannot enter the
  # 0700 work dir; keep the worker as the invoking user.
  [ "$(id -u)" -eq 0 ] && user_line="user root root;"
  if [ -n "$TLS_OK" ]; then
    tls_listen="listen 127.0.0.1:$P_NGX_TLS ssl http2;    # ALPN h2 and http/1.1"
    tls_conf="ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  cat >"$WORK/nginx/nginx.conf" <<EOF
# generated by bench/run.sh
$user_line
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;      # downstream; 1.22's default of 1000 also ends h2 connections
    keepalive_timeout 75s;
    client_body_temp_path $WORK/nginx/tmp/client_body;
    proxy_temp_path       $WORK/nginx/tmp/proxy;
    fastcgi_temp_path     $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path       $WORK/nginx/tmp/uwsgi;
    scgi_temp_path        $WORK/nginx/tmp/scgi;
    upstream origin {
        server 127.0.0.1:$P_ORIGIN;
        keepalive $NGINX_KEEPALIVE;              # idle upstream connections kept by the worker (>= h2 streams in flight)
        keepalive_requests 100000;
        keepalive_timeout 60s;
    }
    # 100 KiB responses stay in memory (8 x 16k + 16k) and never spill to a temp file
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;
    proxy_busy_buffers_size 32k;
    proxy_max_temp_file_size 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    $tls_conf
    server {
        listen 127.0.0.1:$P_NGX_H1;                # HTTP/1.1
        listen 127.0.0.1:$P_NGX_H2C http2;         # h2c prior knowledge (1.22: not on the h1 port)
        $tls_listen
        location / { proxy_pass http://origin; }
    }
    # the hit-* tests: a cache on tmpfs, misses collapsed by the cache lock
    proxy_cache_path $NGX_CACHE levels=1:2 keys_zone=hits:16m max_size=256m inactive=1h use_temp_path=off;
    server {
        listen 127.0.0.1:$P_NGX_HIT;
        location / {
            proxy_pass http://origin;
            proxy_cache hits;
            proxy_cache_lock on;
            proxy_cache_valid 200 1h;
        }
    }
}
EOF
  local hap_tls=""
  [ -n "$TLS_OK" ] && hap_tls="bind 127.0.0.1:$P_HAP_TLS ssl crt $WORK/haproxy.pem alpn h2,http/1.1"
  cat >"$WORK/haproxy.cfg" <<EOF
# generated by bench/run.sh; no "log" line: nothing is logged
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$P_HAP                     # HTTP/1.1 and h2c (haproxy detects the h2 preface)
    $hap_tls
    default_backend origin
backend origin
    server origin1 127.0.0.1:$P_ORIGIN
EOF
  local pn_tls=""
  [ -n "$TLS_OK" ] && pn_tls="  - name: https
    addr: 127.0.0.1:$P_PN_TLS
    tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}   # ALPN h2 + http/1.1"
  cat >"$WORK/node.yaml" <<EOF
# generated by bench/run.sh
name: bench
admin_addr: 127.0.0.1:$P_PN_ADMIN
listeners:
  - name: http
    addr: 127.0.0.1:$P_PN
    h2c: true            # h1 and h2c prior knowledge on one port
$pn_tls
cluster_config: cluster.yaml
log_level: warn
access_log: false
upgrade_socket: $WORK/pingora-upgrade.sock
EOF
  # pingora-b: the same node on ports of its own (no seeds: the two are not a cluster)
  sed -e "s/^name: bench$/name: bench-b/" -e "s/:$P_PN_ADMIN\$/:$P_PNB_ADMIN/" -e "s/:$P_PN\$/:$P_PNB/" \
    -e "s/:$P_PN_TLS\$/:$P_PNB_TLS/" -e "s#pingora-upgrade.sock#pingora-upgrade-b.sock#" "$WORK/node.yaml" >"$WORK/node-b.yaml"
  cat >"$WORK/cluster.yaml" <<EOF
upstreams:
  - name: origin
    protocol: http1
    peers: [{addr: 127.0.0.1:$P_ORIGIN}]
routes:
  - path_prefix: /
    upstream: origin
  - path_prefix: /c/           # the hit-* tests
    upstream: origin
    cache: {enabled: true}
EOF
}
write_configs

# --- start ---------------------------------------------------------------------
declare -A ROOT=() START_CMD=() PROTO_CHECK=()
start_bg() { # start_bg LOG CMD...: runs CMD in the background, sets STARTED
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  STARTED=$!
  SERVER_PIDS+=("$STARTED")
}
wait_ready() { # wait_ready PID URL: up to 15 s for URL to answer 2xx while PID lives
  local i
  for ((i = 0; i < 150; i++)); do
    alive "$1" || return 1
    curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
start_target() { # start_target NAME: starts it pinned, sets ROOT[NAME]; 1 if it did not come up
  local name=$1 cmd=() url
  case $name in
    direct) return 0 ;;
    nginx)
      cmd=(nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;')
      url=http://127.0.0.1:$P_NGX_H1/small ;;
    haproxy)
      cmd=(haproxy -db -f "$WORK/haproxy.cfg")
      url=http://127.0.0.1:$P_HAP/small ;;
    varnish)
      # one thread pool, as nginx runs one worker; as root, no jail (the work dir is 0700)
      cmd=(varnishd -F -a "127.0.0.1:$P_VARNISH" -b "127.0.0.1:$P_ORIGIN" -s malloc,256m -n "$WORK/varnish" -p thread_pools=1)
      [ "$(id -u)" -eq 0 ] && cmd+=(-j none)
      url=http://127.0.0.1:$P_VARNISH/c/small ;;
    pingora)
      cmd=("$WORK/pingora-node" run --config "$WORK/node.yaml")
      url=http://127.0.0.1:$P_PN_ADMIN/readyz ;;
    pingora-b)
      cmd=("$WORK/pingora-node-b" run --config "$WORK/node-b.yaml")
      url=http://127.0.0.1:$P_PNB_ADMIN/readyz ;;
  esac
  START_CMD[$name]=$(shquote taskset -c "$PROXY_CPU" "${cmd[@]}")
  start_bg "$WORK/$name.log" taskset -c "$PROXY_CPU" "${cmd[@]}"
  ROOT[$name]=$STARTED
  if ! wait_ready "$STARTED" "$url"; then
    say "== $name did not come up; its log:"; tail -20 "$WORK/$name.log" | sed 's/^/   /'
    [ "$name" = nginx ] && tail -20 "$WORK/nginx/error.log" 2>/dev/null | sed 's/^/   /'
    return 1
  fi
  [ "$name" = pingora ] && { wait_ready "$STARTED" "http://127.0.0.1:$P_PN/small" || return 1; }
  [ "$name" = pingora-b ] && { wait_ready "$STARTED" "http://127.0.0.1:$P_PNB/small" || return 1; }
  return 0
}

START_CMD[origin]="taskset -c $AUX_CPU $WORK/origin -addr 127.0.0.1:$P_ORIGIN"
start_bg "$WORK/origin.log" taskset -c "$AUX_CPU" "$WORK/origin" -addr "127.0.0.1:$P_ORIGIN"
ORIGIN_PID=$STARTED
wait_ready "$ORIGIN_PID" "http://127.0.0.1:$P_ORIGIN/small" || { cat "$WORK/origin.log"; die "the origin did not start"; }
ROOT[direct]=$ORIGIN_PID

START_FAILED=()
targets=()
for t in "${want_targets[@]}"; do
  if start_target "$t"; then targets+=("$t"); else START_FAILED+=("$t"); fi
done
[ ${#targets[@]} -gt 0 ] || die "no target came up"

url_for() { # url_for TARGET PROTO PATH: prints the URL, or nothing when TARGET lacks PROTO
  local host=127.0.0.1 p=""
  case $1:$2 in
    direct:h1|direct:h2c) p=$P_ORIGIN ;;
    nginx:h1) p=$P_NGX_H1 ;;
    nginx:h2c) p=$P_NGX_H2C ;;
    nginx:tls) p=$P_NGX_TLS ;;
    haproxy:h1|haproxy:h2c) p=$P_HAP ;;
    haproxy:tls) p=$P_HAP_TLS ;;
    pingora:h1|pingora:h2c|pingora:hit) p=$P_PN ;;
    nginx:hit) p=$P_NGX_HIT ;;
    varnish:hit) p=$P_VARNISH ;;
    pingora:tls) p=$P_PN_TLS ;;
    pingora-b:h1|pingora-b:h2c|pingora-b:hit) p=$P_PNB ;;
    pingora-b:tls) p=$P_PNB_TLS ;;
  esac
  [ -z "$p" ] && return 0
  if [ "$2" = tls ]; then [ -n "$TLS_OK" ] && echo "https://$host:$p$3"; else echo "http://$host:$p$3"; fi
}

proto_of() { case $1 in h1-*|churn-*|upclose-*) echo h1 ;; h2c-*) echo h2c ;; hit-*) echo hit ;; *) echo tls ;; esac; }
applies() { # applies TEST TARGET: TARGET takes part in TEST
  [[ $2 == direct && ( $1 == churn-* || $1 == upclose-* || $1 == tls-* ) ]] && return 1
  [[ $2 == varnish && $1 != hit-* ]] && return 1
  [ -n "$(url_for "$2" "$(proto_of "$1")" /small)" ]
}

# Protocol check: each target answers each protocol the tests use, with the full body.
proto_check() {
  local t=$1 checks="" spec proto flag path url got
  for spec in h1:--http1.1:/100k h2c:--http2-prior-knowledge:/100k tls:--http2:/100k tls:--http1.1:/small hit:--http1.1:/c/100k; do
    IFS=: read -r proto flag path <<<"$spec"
    url=$(url_for "$t" "$proto" "$path")
    [ -z "$url" ] && continue
    got=$(curl -sk "$flag" --max-time 5 -o /dev/null -w '%{http_code} HTTP/%{http_version} %{size_download} B' "$url" 2>/dev/null || echo failed)
    checks+="${checks:+; }$proto ${flag#--}: $got"
  done
  PROTO_CHECK[$t]=$checks
}
for t in "${targets[@]}"; do proto_check "$t"; done

# --- one measured run --------------------------------------------------------------
RES=$WORK/results.tsv
: >"$RES"
RUN_FAILED=()
# client_cmd TEST URL SECONDS [LOG]: sets CMD, the load generator command.
client_cmd() {
  local test=$1 url=$2 secs=$3 log=${4:-}
  case $test in
    h1-*|upclose-*|hit-*) CMD=(wrk -t1 -c"$WRK_CONNS" -d"${secs}s" --latency "$url") ;;
    churn-*|tls-churn-*) CMD=(wrk -t1 -c"$WRK_CONNS" -d"${secs}s" --latency -H 'Connection: close' "$url") ;;
    h2c-*|tls-h2-*)
      CMD=(h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D "$secs")
      [ -n "$log" ] && CMD+=(--log-file="$log")
      CMD+=("$url") ;;
  esac
}
run_client() { # run_client OUT SECONDS CMD...: pinned to AUX_CPU, bounded by timeout
  local out=$1 secs=$2 rc=0
  shift 2
  timeout -k 5 $((secs + 30)) taskset -c "$AUX_CPU" "$@" >"$out" 2>&1 &
  CLIENT_PID=$!
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  return $rc
}
origin_stats() { curl -fsS --max-time 2 "http://127.0.0.1:$P_ORIGIN/_stats" 2>/dev/null | tr '\n' ' ' || echo "conns 0 requests 0"; }
pn_counters() { # "created reused" from pingora-node's metrics
  curl -fsS --max-time 2 "http://127.0.0.1:$P_PN_ADMIN/metrics" 2>/dev/null |
    awk '/^pingora_upstream_connections_total\{.*result="created"/ { c = $NF }
         /^pingora_upstream_connections_total\{.*result="reused"/ { r = $NF }
         END { printf "%d %d\n", c, r }' || echo "0 0"
}
# parse_wrk FILE: "reqs rps p50_us p99_us errors"
parse_wrk() {
  awk 'function us(v) { if (v ~ /ms$/) return v * 1000; if (v ~ /us$/) return v + 0
                        if (v ~ /m$/) return v * 60e6; if (v ~ /s$/) return v * 1e6; return -1 }
       / requests in / { reqs = $1 }
       /^Requests\/sec:/ { rps = $2 }
       /Latency Distribution/ { dist = 1 }
       dist && $1 == "50%" { p50 = us($2) }
       dist && $1 == "99%" { p99 = us($2) }
       /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
       /Non-2xx or 3xx responses:/ { err += $NF }
       END { printf "%d %.2f %.0f %.0f %d\n", reqs, rps, p50, p99, err }' "$1"
}
# parse_h2load FILE LOG: "reqs rps p50_us p99_us errors"; latencies from the per-request log
parse_h2load() {
  local lat
  lat=$(awk -F'\t' '$2 ~ /^[0-9]+$/ { print $3 }' "$2" 2>/dev/null | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "-1 -1"; exit }
         i = int(NR * 0.50); if (i < NR * 0.50) i++; j = int(NR * 0.99); if (j < NR * 0.99) j++
         print v[i], v[j] }')
  awk -v lat="$lat" '/^finished in/ { rps = $4 }
       /^requests:/ { done = $8; failed = $12 }
       END { split(lat, l, " "); printf "%d %.2f %.0f %.0f %d\n", done, rps, l[1], l[2], failed }' "$1"
}

# wait_quiet: before a run, wait (at most QUIET_WAIT s) until both benchmark CPUs are
# below QUIET_MAX % busy over 0.5 s, so a burst of someone else's work can pass.
QUIET_WAITED=0 QUIET_GAVE_UP=0
wait_quiet() {
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  local start=$SECONDS b0p b0a e0 pp pa
  while :; do
    cpu_busy "$PROXY_CPU"; b0p=$((BUSY + SIRQ)); cpu_busy "$AUX_CPU"; b0a=$((BUSY + SIRQ)); e0=${EPOCHREALTIME/./}
    sleep 0.5
    cpu_busy "$PROXY_CPU"; pp=$((BUSY + SIRQ)); cpu_busy "$AUX_CPU"; pa=$((BUSY + SIRQ))
    e0=$(( (${EPOCHREALTIME/./} - e0) * CLK_TCK ))
    pp=$(( (pp - b0p) * 100000000 / e0 )); pa=$(( (pa - b0a) * 100000000 / e0 ))
    if [ "$pp" -le "$QUIET_MAX" ] && [ "$pa" -le "$QUIET_MAX" ]; then break; fi
    if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then QUIET_GAVE_UP=$((QUIET_GAVE_UP + 1)); break; fi
  done
  QUIET_WAITED=$((QUIET_WAITED + SECONDS - start))
}

# err_detail OUT: the load generator's own error lines, on one line
err_detail() {
  grep -E 'Socket errors|Non-2xx|^requests:|^status codes:' "$1" 2>/dev/null | sed 's/^ *//' | paste -sd';' - | sed 's/;/; /g' || true
}

# run_one TEST TARGET ROUND: warm-up, then one measured run; appends a row to $RES.
# A run disturbed by other processes (more than NOISY_MAX % of either benchmark CPU) is
# made again, up to RETRIES times; so is, once, a run whose load generator hung (killed by
# its timeout; h2load did so twice, on a heavily loaded machine). The attempt kept is the
# least disturbed one without problems.
NOISE_NOTES=()
run_one() {
  local test=$1 t=$2 round=$3 attempt limit=$((RETRIES + 1)) hung=0 best="" best_score=0 best_attempt=1
  local best_problems=() noise score why
  if ! alive "${ROOT[$t]}"; then
    say "   $test $t round $round: $t is not running any more; skipped"
    RUN_FAILED+=("$test/$t/$round: target not running")
    return 0
  fi
  for ((attempt = 1; attempt <= limit; attempt++)); do
    measure_once "$test" "$t" "$round"
    noise=$(awk -F'\t' '{ printf "%.0f", ($12 > $13 ? $12 : $13) }' <<<"$ROW")
    awk -F'\t' -v no="$RUN_NO" -v a="$attempt" '{ printf "%9s %-13s %-8s r%s%s: %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  err %d  cpu %6.1f us/req (+softirq %5.1f)  hwm %5.1f MiB  other %4.1f%%/%4.1f%%\n",
      no, $1, $2, $3, (a > 1 ? " again" : ""), $5, $6 / 1000, $7 / 1000, $8, $10, $20, $11 / 1024, $12, $13 }' <<<"$ROW"
    score=$noise
    [ ${#PROBLEMS[@]} -gt 0 ] && score=$((noise + 1000))
    if [ -z "$best" ] || [ "$score" -lt "$best_score" ]; then
      best=$ROW best_score=$score best_attempt=$attempt best_problems=("${PROBLEMS[@]}")
    fi
    why=""
    if [ "$MEASURE_RC" -eq 124 ] && [ "$hung" -eq 0 ]; then
      hung=1 limit=$((limit + 1)) why="the load generator hung and was killed by its timeout"
    elif [ "$noise" -gt "$NOISY_MAX" ]; then
      why=$(awk -F'\t' '{ printf "disturbed: other CPU %.0f %% proxy / %.0f %% client, %.0f req/s, %d errors", $12, $13, $5, $8 }' <<<"$ROW")
    fi
    [ -z "$why" ] && break
    NOISE_NOTES+=("$test/$t/$round: attempt $attempt $why")
  done
  [ "$attempt" -gt 1 ] && NOISE_NOTES+=("$test/$t/$round: kept attempt $best_attempt")
  printf '%s\n' "$best" >>"$RES"
  RUN_FAILED+=("${best_problems[@]}")
}

# measure_once TEST TARGET ROUND: quiet wait, warm-up, one measured run; sets ROW and PROBLEMS.
measure_once() {
  local test=$1 t=$2 round=$3 proto path url out log rc=0
  PROBLEMS=()
  proto=$(proto_of "$test")
  path=/${test##*-}
  [[ $test == hit-* ]] && path=/c${path}
  [[ $test == upclose-* ]] && path=/close${path}
  url=$(url_for "$t" "$proto" "$path")
  out=$WORK/runs/$test.$t.$round.out
  log=$WORK/runs/$test.$t.$round.h2log
  mkdir -p "$WORK/runs"
  wait_quiet
  if [ "$WARMUP" -gt 0 ]; then
    client_cmd "$test" "$url" "$WARMUP"
    run_client "$WORK/runs/warmup.out" "$WARMUP" "${CMD[@]}" || true
  fi
  client_cmd "$test" "$url" "$DURATION" "$log"
  RUN_CMD[$test]=$(shquote taskset -c "$AUX_CPU" "${CMD[@]}")
  RUN_CMD[$test]=${RUN_CMD[$test]/--log-file=$log/--log-file=RUN.log}

  # before: counters (outside the CPU window), then the target's CPU, the CPUs, the client
  local os0 os1 pn0="0 0" pn1="0 0" tree pids t0 t1 o0 o1 b0p b1p b0a b1a s0 s1 q0 q1 c0 c1 e0 e1 hwm p
  os0=$(origin_stats)
  [ "$t" = pingora ] && pn0=$(pn_counters)
  tree=$(proc_tree "${ROOT[$t]}")
  pids=(); [ "${tree#* }" != 0 ] && read -r -a pids <<<"${tree#* * }"
  for p in "${pids[@]}"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done  # reset VmHWM
  t0=${tree%% *}
  o0=$(proc_tree "$ORIGIN_PID"); o0=${o0%% *}
  cpu_busy "$PROXY_CPU"; b0p=$BUSY; s0=$STEAL; q0=$SIRQ
  cpu_busy "$AUX_CPU"; b0a=$BUSY
  e0=${EPOCHREALTIME/./}
  self_child_ticks; c0=$CHILD_TICKS
  run_client "$out" "$DURATION" "${CMD[@]}" || rc=$?
  MEASURE_RC=$rc
  self_child_ticks; c1=$CHILD_TICKS
  e1=${EPOCHREALTIME/./}
  cpu_busy "$PROXY_CPU"; b1p=$BUSY; s1=$STEAL; q1=$SIRQ
  cpu_busy "$AUX_CPU"; b1a=$BUSY
  tree=$(proc_tree "${ROOT[$t]}"); t1=${tree%% *}
  pids=(); [ "${tree#* }" != 0 ] && read -r -a pids <<<"${tree#* * }"
  o1=$(proc_tree "$ORIGIN_PID"); o1=${o1%% *}
  hwm=$(mem_kb VmHWM "${pids[@]}")
  os1=$(origin_stats)
  [ "$t" = pingora ] && pn1=$(pn_counters)

  local parsed reqs rps p50 p99 errs
  if [[ $test == h1-* || $test == churn-* || $test == tls-churn-* || $test == upclose-* || $test == hit-* ]]; then parsed=$(parse_wrk "$out"); else parsed=$(parse_h2load "$out" "$log"); fi
  rm -f "$log"
  read -r reqs rps p50 p99 errs <<<"$parsed"
  if [[ $test == h2c-* || $test == tls-h2-* ]] && ! grep -q "Application protocol: h2" "$out"; then
    errs=$((errs + 1)); PROBLEMS+=("$test/$t/$round: h2load did not negotiate h2/h2c")
  fi
  [ "$rc" -ne 0 ] && PROBLEMS+=("$test/$t/$round: load generator exit status $rc")
  [ "${reqs:-0}" -gt 0 ] || PROBLEMS+=("$test/$t/$round: no request completed")
  [ "${errs:-0}" -gt 0 ] && PROBLEMS+=("$test/$t/$round: $errs errors ($(err_detail "$out"))")

  # CPU: the target's processes; "other" = what else ran on each CPU during the window,
  # in % of that CPU (on AUX_CPU: minus the origin and the load generator).
  local el_ticks own_aux
  el_ticks=$(awk -v a="$e0" -v b="$e1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / 1e6 * h }')
  own_aux=$((c1 - c0))
  [ "$t" != direct ] && own_aux=$((own_aux + o1 - o0))
  local dt=$((t1 - t0)) oc1 or1 oc0 or0 pc0 pr0 pc1 pr1
  read -r _ oc0 _ or0 <<<"$os0"; read -r _ oc1 _ or1 <<<"$os1"
  read -r pc0 pr0 <<<"$pn0"; read -r pc1 pr1 <<<"$pn1"
  ROW=$(awk -v test="$test" -v t="$t" -v r="$round" -v reqs="$reqs" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
    -v errs="$errs" -v dt="$dt" -v h="$CLK_TCK" -v hwm="$hwm" -v el="$el_ticks" \
    -v bp="$((b1p - b0p))" -v ba="$((b1a - b0a))" -v st="$((s1 - s0))" -v own="$own_aux" \
    -v oc="$((oc1 - oc0 - 1))" -v orq="$((or1 - or0))" -v pc="$((pc1 - pc0))" -v pr="$((pr1 - pr0))" -v rc="$rc" -v sq="$((q1 - q0))" \
    -v direct="$([ "$t" = direct ] && echo 1 || echo 0)" 'BEGIN {
      cpu = reqs > 0 ? dt * 1e6 / h / reqs : -1
      otherp = (el > 0 && !direct) ? 100 * (bp - dt) / el : 0  # direct: nothing of ours on the proxy CPU
      othera = el > 0 ? 100 * (ba - own - (direct ? dt : 0)) / el : 0
      if (otherp < 0) otherp = 0; if (othera < 0) othera = 0
      if (oc < 0) oc = 0
      sirq = (reqs > 0 && !direct) ? sq * 1e6 / h / reqs : -1
      printf "%s\t%s\t%s\t%d\t%.2f\t%d\t%d\t%d\t%d\t%.2f\t%d\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%.2f\n",
        test, t, r, reqs, rps, p50, p99, errs, dt, cpu, hwm, otherp, othera, 100 * st / (el > 0 ? el : 1),
        oc, orq, pc, pr, rc, sirq }')
}

# --- soak ----------------------------------------------------------------------
soak_run() {
  local url=http://127.0.0.1:$P_PN/100k out=$WORK/soak.out next now start pid rss hwm heap gor
  local samples=$WORK/soak.tsv
  say "== soak: wrk -t1 -c$WRK_CONNS on /100k against pingora-node for ${SOAK}s, a sample every 10 s"
  if [ "$WARMUP" -gt 0 ]; then run_client "$WORK/soak-warmup.out" "$WARMUP" wrk -t1 -c"$WRK_CONNS" -d"${WARMUP}s" "$url" || true; fi
  SOAK_CMD="taskset -c $AUX_CPU wrk -t1 -c$WRK_CONNS -d${SOAK}s --latency $url"
  timeout -k 5 $((SOAK + 30)) taskset -c "$AUX_CPU" wrk -t1 -c"$WRK_CONNS" -d"${SOAK}s" --latency "$url" >"$out" 2>&1 &
  CLIENT_PID=$!
  pid=${ROOT[pingora]}
  start=$SECONDS next=0
  : >"$samples"
  while :; do
    now=$((SECONDS - start)) next=$((next + 10))
    rss=$(mem_kb VmRSS "$pid"); hwm=$(mem_kb VmHWM "$pid")
    read -r heap gor < <(curl -fsS --max-time 5 "http://127.0.0.1:$P_PN_ADMIN/metrics" 2>/dev/null |
      awk '/^go_memstats_heap_inuse_bytes / { h = $2 } /^go_goroutines / { g = $2 } END { printf "%d %d\n", h, g }' || echo "0 0")
    printf '%d\t%d\t%d\t%d\t%d\n' "$now" "$rss" "$hwm" "$heap" "$gor" >>"$samples"
    printf '   t=%4ds  RSS %7.1f MiB  heap in use %7.1f MiB  goroutines %d\n' "$now" "$(bc_div "$rss" 1024)" "$(bc_div "$heap" 1048576)" "$gor"
    alive "$CLIENT_PID" || break
    [ "$now" -gt $((SOAK + 40)) ] && break
    while [ $((SECONDS - start)) -lt "$next" ] && alive "$CLIENT_PID"; do sleep 1; done
  done
  local rc=0
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  SOAK_RC=$rc
  SOAK_PARSED=$(parse_wrk "$out")
  SOAK_ERRS=$(err_detail "$out")
}
bc_div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

# --- run -------------------------------------------------------------------------
declare -A RUN_CMD=()
runs_per_round=0
for test in "${want_tests[@]}"; do
  for t in "${targets[@]}"; do applies "$test" "$t" && runs_per_round=$((runs_per_round + 1)); done
done
total_runs=$((runs_per_round * ROUNDS))
est=$(( total_runs * (DURATION + WARMUP + 1) + 15 ))
[ "$MODE" = soak ] && est=$((SOAK + WARMUP + 15))
START_TIME=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
T_START=$SECONDS
say "== targets: ${targets[*]}  tests: ${want_tests[*]:-none}  rounds: $ROUNDS  duration: ${DURATION}s  warm-up: ${WARMUP}s"
say "== proxies on CPU $PROXY_CPU; origin and load generators on CPU $AUX_CPU; $total_runs measured runs, about $((est / 60)) min $((est % 60)) s"

n=0
for ((round = 1; round <= ROUNDS; round++)); do
  for test in "${want_tests[@]}"; do
    for t in "${targets[@]}"; do
      applies "$test" "$t" || continue
      n=$((n + 1))
      RUN_NO="$n/$total_runs"
      run_one "$test" "$t" "$round"
    done
  done
done
PN_REUSE_GAUGE=""
if [ -n "${ROOT[pingora]:-}" ] && alive "${ROOT[pingora]}"; then
  PN_REUSE_GAUGE=$(curl -fsS --max-time 2 "http://127.0.0.1:$P_PN_ADMIN/metrics" 2>/dev/null |
    awk '/^pingora_upstream_connection_reuse_ratio / { print $2 }' || true)
  PN_GOMAXPROCS=$(curl -fsS --max-time 2 "http://127.0.0.1:$P_PN_ADMIN/metrics" 2>/dev/null |
    awk '/^go_sched_gomaxprocs_threads / { print $2 }' || true)
fi
[ "$MODE" = soak ] && soak_run
ELAPSED=$((SECONDS - T_START))

# --- report ------------------------------------------------------------------------
# agg.tsv, one row per test and target: medians of the rounds (req/s, latencies, CPU),
# sums (requests, errors, connections), maxima (peak RSS, other CPU).
AGG=$WORK/agg.tsv
awk -F'\t' -v OFS='\t' '
  function med(s,   a, n, i, j, x) { n = split(s, a, " ")
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  { k = $1 SUBSEP $2; if (!(k in n)) order[++m] = k; n[k]++
    rps[k] = rps[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7; cpu[k] = cpu[k] " " $10; sq[k] = sq[k] " " $20
    reqs[k] += $4; err[k] += $8; if ($11 > hwm[k]) hwm[k] = $11; if ($12 > op[k]) op[k] = $12
    if ($13 > oa[k]) oa[k] = $13; if ($14 > st[k]) st[k] = $14
    oc[k] += $15; orq[k] += $16; pc[k] += $17; pr[k] += $18; rl[k] = rl[k] (rl[k] == "" ? "" : " ") sprintf("%.0f", $5) }
  END { for (i = 1; i <= m; i++) { k = order[i]; split(k, kk, SUBSEP)
    print kk[1], kk[2], n[k], med(rps[k]), med(p50[k]), med(p99[k]), err[k], med(cpu[k]), hwm[k], reqs[k],
      op[k] + 0, oa[k] + 0, st[k] + 0, oc[k], orq[k], pc[k], pr[k], rl[k], med(sq[k]) } }' "$RES" >"$AGG"

label() { case $1 in pingora) echo pingora-node ;; pingora-b) echo "pingora-node B" ;; direct) echo "direct (no proxy)" ;; *) echo "$1" ;; esac; }
describe() {
  case $1 in
    h1-*) echo "HTTP/1.1 keep-alive, wrk -t1 -c$WRK_CONNS, GET /${1#h1-}" ;;
    churn-*) echo "HTTP/1.1, a new connection per request (wrk -H 'Connection: close' -c$WRK_CONNS), GET /${1#churn-}" ;;
    upclose-*) echo "HTTP/1.1 keep-alive, wrk -t1 -c$WRK_CONNS, GET /close/${1#upclose-}: the origin answers Connection: close, so every request opens a new upstream connection" ;;
    h2c-*) echo "h2c prior knowledge, h2load -c$H2_CLIENTS -m$H2_STREAMS, GET /${1#h2c-}" ;;
    tls-churn-*) echo "HTTPS HTTP/1.1, a new connection and TLS handshake per request (wrk -H 'Connection: close' -c$WRK_CONNS; wrk resumes its first session: TLS 1.3 PSK with an X25519 exchange, no certificate sent), GET /${1#tls-churn-}" ;;
    tls-h2-*) echo "HTTPS, ALPN h2, h2load -c$H2_CLIENTS -m$H2_STREAMS, GET /${1#tls-h2-}" ;;
    hit-*) echo "cache hits, HTTP/1.1 keep-alive, wrk -t1 -c$WRK_CONNS, GET /c/${1#hit-} (max-age=3600, stored by the warm-up; nginx proxy_cache on tmpfs with proxy_cache_lock, Varnish malloc storage, pingora-node's route cache)" ;;
  esac
}
ver() { "$@" 2>&1 | head -1 || true; }

report() {
  if [ "$MODE" = soak ]; then say "# pingora-node soak (bench/run.sh --soak)"; else say "# pingora-node against nginx, haproxy and Varnish (bench/run.sh)"; fi
  say
  say "- date: $START_TIME; took $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
  say "- command: \`bench/run.sh${MODE_FLAG}\`; mode $MODE"
  say "- machine: $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(uname -sr), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
  say "- versions: $(go version | cut -d' ' -f3-); $(ver nginx -v); $(ver haproxy -v | cut -d' ' -f1-3); $(ver varnishd -V | cut -d' ' -f1-2); $(ver wrk -v | cut -d' ' -f1-2); $(ver h2load --version); $(ver openssl version | cut -d' ' -f1-2); $(ver curl --version | cut -d' ' -f1-2)"
  say "- pingora-node: commit $commit${PN_GOMAXPROCS:+; GOMAXPROCS $PN_GOMAXPROCS}"
  [ -n "$commit_b" ] && say "- pingora-node B: commit $commit_b"
  if [ "$MODE" = soak ]; then
    say "- knobs: WARMUP=$WARMUP WRK_CONNS=$WRK_CONNS SRC=$SRC PROXY_CPU=$PROXY_CPU AUX_CPU=$AUX_CPU"
  else
    say "- knobs: DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP TARGETS=\"$TARGETS\" TESTS=\"$TESTS\" WRK_CONNS=$WRK_CONNS H2_CLIENTS=$H2_CLIENTS H2_STREAMS=$H2_STREAMS NGINX_KEEPALIVE=$NGINX_KEEPALIVE QUIET_WAIT=$QUIET_WAIT QUIET_MAX=$QUIET_MAX NOISY_MAX=$NOISY_MAX RETRIES=$RETRIES SRC=$SRC${commit_b:+ SRC_B=$SRC_B} PROXY_CPU=$PROXY_CPU AUX_CPU=$AUX_CPU"
  fi
  [ "$QUIET_WAIT" -gt 0 ] && [ "$MODE" != soak ] && say "- waiting for a quiet machine (both CPUs ≤ $QUIET_MAX % busy) before the runs took $QUIET_WAITED s in all; $QUIET_GAVE_UP run(s) started after the ${QUIET_WAIT} s limit without it"
  say "- pinning: proxies on CPU $PROXY_CPU; origin and load generators on CPU $AUX_CPU (\`taskset -c\` at launch)"
  [ ${#START_FAILED[@]} -gt 0 ] && say "- **did not start:** ${START_FAILED[*]}"
  say
  if [ ${#want_tests[@]} -gt 0 ]; then
    say "Each cell is the median of $ROUNDS round(s) (targets interleaved A B C A B C …); errors and"
    say "requests are summed over the rounds; peak RSS is the largest VmHWM (summed over the target's"
    say "processes, reset before each measured run) of any round. CPU µs/req = utime+stime of the"
    say "target's processes during the measured run ÷ requests completed (for *direct*: the origin's"
    say "own CPU). softirq µs/req = interrupt and softirq time on the proxy CPU ÷ requests: kernel"
    say "network work (loopback TCP) that no process is charged for, mostly the proxy's; not in CPU µs/req."
    say "\"Other CPU\" = user+system time of processes outside the benchmark on the proxy CPU / on the"
    say "client CPU during the run, in % of that CPU (worst round). \"Upstream conns / 1k req\" ="
    say "connections the origin accepted per 1000 requests it served (0: every request reused one)."
    say
  fi
  if [ ${#want_tests[@]} -gt 0 ]; then
    say "## Processes"
    say
    say "| target | command | protocol check (curl: status, protocol, body) |"
    say "|---|---|---|"
    say "| origin | \`${START_CMD[origin]}\` | |"
    for t in "${targets[@]}"; do
      [ "$t" = direct ] && continue
      say "| $(label "$t") | \`${START_CMD[$t]}\` | ${PROTO_CHECK[$t]:-} |"
    done
    say
    say "Load generators (\`RUN.log\`: h2load's per-request log, from which p50/p99 are computed):"
    say
    for test in "${want_tests[@]}"; do [ -n "${RUN_CMD[$test]:-}" ] && say "- $test: \`${RUN_CMD[$test]}\`"; done
    say
    if [ "$WARMUP" -gt 0 ]; then say "Warm-up before each measured run: the same command for ${WARMUP}s, not measured."; else say "No warm-up."; fi
    say
    say "<details><summary>Generated configs (paths in the temporary work dir)</summary>"
    say
    local f
    for f in nginx/nginx.conf haproxy.cfg node.yaml cluster.yaml; do
      [ -f "$WORK/$f" ] || continue
      say "\`$f\`:"
      say
      say '```'
      cat "$WORK/$f"
      say '```'
      say
    done
    say "</details>"
    say
  fi
  local test t
  for test in "${want_tests[@]}"; do
    say "## $test: $(describe "$test")"
    say
    say "| target | req/s | p50 ms | p99 ms | errors | CPU µs/req | softirq µs/req | peak RSS MiB | req/s per round | upstream conns / 1k req | other CPU % proxy / client |"
    say "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|---|"
    for t in "${targets[@]}"; do
      awk -F'\t' -v test="$test" -v t="$t" -v lab="$(label "$t")" '$1 == test && $2 == t {
        conns = ($15 > 0 && t != "direct") ? sprintf("%.2f", 1000 * $14 / $15) : "–"
        sirq = ($19 >= 0 && t != "direct") ? sprintf("%.1f", $19) : "–"
        op = t == "direct" ? "–" : sprintf("%.1f", $11)
        printf "| %s | %.0f | %.2f | %.2f | %d | %.1f | %s | %.1f | %s | %s | %s / %.1f |\n",
          lab, $4, $5 / 1000, $6 / 1000, $7, $8, sirq, $9 / 1024, $18, conns, op, $12 }' "$AGG"
    done
    say
  done
  if [ ${#want_tests[@]} -gt 0 ]; then
    say "## Summary: ratios to nginx (same run)"
    say
    say "| test | target | req/s ×nginx | CPU µs/req ×nginx | p99 ×nginx |"
    say "|---|---|--:|--:|--:|"
    for test in "${want_tests[@]}"; do
      for t in "${targets[@]}"; do
        [ "$t" = nginx ] && continue
        awk -F'\t' -v test="$test" -v t="$t" -v lab="$(label "$t")" '
          $1 == test && $2 == "nginx" { nr = $4; nc = $8; np = $6 }
          $1 == test && $2 == t { r = $4; c = $8; p = $6; seen = 1 }
          function q(a, b) { return (b > 0 && a >= 0) ? sprintf("%.2f", a / b) : "–" }
          END { if (!seen) exit
            printf "| %s | %s | %s | %s | %s |\n", test, lab, q(r, nr), (t == "direct" ? "– (origin)" : q(c, nc)), q(p, np) }' "$AGG"
      done
    done
    say
    if [ -n "$commit_b" ]; then
      say "## pingora-node B against pingora-node, round by round"
      say
      say "CPU µs per request in each round (A: $commit; B: $commit_b). The median of the"
      say "per-round ratios B/A is the A/B's figure: steadier than a ratio of medians when this"
      say "machine's speed drifts between rounds."
      say
      say "| test | A µs/req | B µs/req | B/A | B/A median | nginx µs/req |"
      say "|---|---|---|---|--:|---|"
      for test in "${want_tests[@]}"; do
        awk -F'\t' -v test="$test" '
          function med(s,   a, n, i, j, x) { n = split(s, a, " ")
            for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
          $1 == test && $2 == "pingora" { a[$3] = $10 }
          $1 == test && $2 == "pingora-b" { b[$3] = $10 }
          $1 == test && $2 == "nginx" { g[$3] = $10 }
          END { for (r = 1; (r in a) || (r in b); r++) {
              as = as sprintf(" %.1f", a[r]); bs = bs sprintf(" %.1f", b[r]); if (r in g) gs = gs sprintf(" %.1f", g[r])
              if (a[r] > 0 && b[r] > 0) { qs = qs sprintf(" %.3f", b[r] / a[r]); ql = ql " " b[r] / a[r] } }
            if (as == "") exit
            printf "| %s |%s |%s |%s | %s |%s |\n", test, as, bs, (qs == "" ? " –" : qs), (ql == "" ? "–" : sprintf("%.3f", med(ql))), (gs == "" ? " –" : gs) }' "$RES"
      done
      say
    fi
    if awk -F'\t' '$2 == "pingora"' "$AGG" | grep -q .; then
      say "## pingora-node upstream connection reuse"
      say
      say "From \`pingora_upstream_connections_total\` during the measured runs (warm-up excluded), summed over the rounds:"
      say
      say "| test | created | reused | reuse ratio |"
      say "|---|--:|--:|--:|"
      awk -F'\t' '$2 == "pingora" { tot = $16 + $17
        printf "| %s | %d | %d | %s |\n", $1, $16, $17, (tot > 0 ? sprintf("%.4f", $17 / tot) : "–") }' "$AGG"
      say
      say "\`pingora_upstream_connection_reuse_ratio\` at the end of the run (all tests, warm-ups included): ${PN_REUSE_GAUGE:-n/a}."
      say
      say "A run (warm-up included) stops with requests in flight; the proxy drops the upstream connections"
      say "of the responses it could not finish, and the next run opens them again at its start. That is"
      say "where the \"created\" connections of the 100k tests come from, not from churn in steady state."
      say
    fi
    [ -n "$CHART" ] && [ -s "$CHART" ] && say "![CPU µs per request](${CHART##*/})" && say
  fi
  if [ "$MODE" = soak ]; then
    local sreqs srps sp50 sp99 serr
    read -r sreqs srps sp50 sp99 serr <<<"$SOAK_PARSED"
    say "## Soak: pingora-node under wrk -c$WRK_CONNS on /100k for ${SOAK}s"
    say
    say "\`$SOAK_CMD\` (exit status $SOAK_RC): $sreqs requests, $srps req/s, p50 $(bc_div "$sp50" 1000) ms, p99 $(bc_div "$sp99" 1000) ms, $serr errors${SOAK_ERRS:+ ($SOAK_ERRS)}."
    say
    awk -F'\t' 'NR == 1 { f = $2 } { if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; l = $2 }
      $1 >= 60 { if (f60 == "") f60 = $2; if (min60 == "" || $2 < min60) min60 = $2; if ($2 > max60) max60 = $2 }
      END { printf "RSS (VmRSS) first %.1f MiB, min %.1f, max %.1f, last %.1f MiB.", f / 1024, min / 1024, max / 1024, l / 1024
        if (f60 != "") printf " From the first minute on it stayed within %.1f-%.1f MiB (last minus the 60 s sample: %+.1f MiB).", min60 / 1024, max60 / 1024, (l - f60) / 1024
        printf "\n" }' "$WORK/soak.tsv"
    say
    say "| t s | RSS MiB | peak RSS MiB | heap in use MiB | goroutines |"
    say "|--:|--:|--:|--:|--:|"
    awk -F'\t' '{ printf "| %d | %.1f | %.1f | %.1f | %d |\n", $1, $2 / 1024, $3 / 1024, $4 / 1048576, $5 }' "$WORK/soak.tsv"
    say
  fi
  if [ ${#NOISE_NOTES[@]} -gt 0 ]; then
    say "## Runs made again (disturbed by other processes, or the load generator hung)"
    say
    local nn
    for nn in "${NOISE_NOTES[@]}"; do say "- $nn"; done
    say
  fi
  if [ ${#RUN_FAILED[@]} -gt 0 ]; then
    say "## Problems"
    say
    local f
    for f in "${RUN_FAILED[@]}"; do say "- $f"; done
    say
  fi
  if [ ${#want_tests[@]} -gt 0 ]; then
    local capt nocap noisy
    # a direct row caps req/s when it beats every proxy in its test
    capt=$(awk -F'\t' '$2 == "direct" { d[$1] = $4 } $2 != "direct" && $4 > m[$1] { m[$1] = $4 }
      END { for (t in d) if (d[t] > m[t]) printf "%s%s %.0f", (s++ ? ", " : ""), t, d[t] }' "$AGG")
    nocap=$(awk -F'\t' '$2 == "direct" { d[$1] = $4 } $2 != "direct" && $4 > m[$1] { m[$1] = $4 }
      END { for (t in d) if (d[t] <= m[t]) printf "%s%s", (s++ ? ", " : ""), t }' "$AGG")
    noisy=$(awk -F'\t' -v lim="$NOISY_MAX" -v r="$ROUNDS" '{ n++; if ($12 > lim || $13 > lim) k++; if ($2 != "direct" && $12 > m) m = $12; if ($13 > a) a = $13 }
      END { w = sprintf("at most %.0f %% of the proxy CPU and %.0f %% of the client CPU", m, a)
        if (k == 0) printf "Processes outside the benchmark took %s during any measured run.", w
        else printf "%d of %d measured runs kept more than %d %% of a CPU taken by processes outside the benchmark (%s)%s.", k, n, lim, w,
          (r > 1 ? "; the medians of " r " rounds absorb some of that, and the \"req/s per round\" column shows how much" : "") }' "$RES")
    say "## What is and is not trusted"
    say
    say "This is one run on a shared ${NCPU}-vCPU VM. Absolute figures move by 10–30 % between runs; compare"
    say "only ratios from the same run. **CPU µs/req is the most robust figure**: it does not depend on"
    say "which side was the bottleneck. **req/s is capped by CPU $AUX_CPU**, which runs the load generator"
    say "and the origin for every target.${capt:+ The *direct* rows (the origin alone: $capt req/s) show that ceiling: no proxied run can pass it, and one close to it is limited by the client side, not by the proxy.}"
    [ -n "$nocap" ] && say "In $nocap the direct row is not above every proxy, so it is no ceiling there: serving the client itself costs the origin more on CPU $AUX_CPU than serving a proxy (for h2c it speaks HTTP/2, dearer than the HTTP/1.1 it speaks to a proxy; behind a proxy, part of the loopback TCP work also moves to the proxy's CPU)."
    say "Latency percentiles come from closed-loop clients (wrk's are subject to coordinated omission)"
    say "and move with req/s. $noisy"
    say "Peak RSS depends on the concurrency ($WRK_CONNS HTTP/1.1 connections or $((H2_CLIENTS * H2_STREAMS)) h2 streams) and on each proxy's buffer sizes."
    say
  fi
}
case $MODE in full) MODE_FLAG="" ;; *) MODE_FLAG=" --$MODE" ;; esac
[ "$MODE" = soak ] && MODE_FLAG=" --soak $SOAK"

# chart: CPU µs/req per proxy per test (gnuplot, grouped bars)
if [ -n "$CHART" ] && [ ${#want_tests[@]} -gt 0 ]; then
  if have gnuplot; then
    chart_targets=()
    for t in "${targets[@]}"; do [ "$t" != direct ] && chart_targets+=("$t"); done
    {
      printf 'test'; for t in "${chart_targets[@]}"; do printf '\t%s' "$(label "$t")"; done; printf '\n'
      for test in "${want_tests[@]}"; do
        printf '%s' "$test"
        for t in "${chart_targets[@]}"; do
          printf '\t%s' "$(awk -F'\t' -v a="$test" -v b="$t" '$1 == a && $2 == b { v = sprintf("%.1f", $8) } END { print v == "" ? "NaN" : v }' "$AGG")"
        done
        printf '\n'
      done
    } >"$WORK/chart.tsv"
    term=png
    gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo && term=pngcairo
    mkdir -p "$(dirname "$CHART")"
    if gnuplot -e "datafile='$WORK/chart.tsv'; outfile='$CHART'; term='$term'; ntargets=${#chart_targets[@]}; subtitle='${START_TIME}, ${NCPU} vCPU, proxies pinned to CPU ${PROXY_CPU}, median of ${ROUNDS} round(s) x ${DURATION}s'" \
      "$REPO/bench/plot.gp" >"$WORK/gnuplot.log" 2>&1; then
      :
    else
      say "== gnuplot failed:"; cat "$WORK/gnuplot.log"; CHART=""
    fi
  else
    say "== no chart: gnuplot is not installed"; CHART=""
  fi
fi

mkdir -p "$(dirname "$OUT")"
# The work dir's and the nginx cache's paths are this run's mktemp names: the
# report names them $WORK and $NGX_CACHE.
names=(-e "s#$WORK#\$WORK#g")
[ -n "${NGX_CACHE:-}" ] && names+=(-e "s#$NGX_CACHE#\$NGX_CACHE#g")
report | sed "${names[@]}" >"$OUT"
say
cat "$OUT"
say
say "== report: $OUT${CHART:+; chart: $CHART}; took $((ELAPSED / 60)) min $((ELAPSED % 60)) s"

if [ "$MODE" = smoke ]; then
  bad=0
  [ ${#START_FAILED[@]} -gt 0 ] && { say "smoke: FAIL: did not start: ${START_FAILED[*]}"; bad=1; }
  [ ${#RUN_FAILED[@]} -gt 0 ] && { say "smoke: FAIL: ${#RUN_FAILED[@]} problem(s), listed above"; bad=1; }
  [ -s "$RES" ] || { say "smoke: FAIL: no run was made"; bad=1; }
  if [ "$bad" -ne 0 ]; then
    for f in "${targets[@]}"; do [ "$f" != direct ] && { say "--- $f log (last 20 lines)"; tail -20 "$WORK/$f.log"; }; done
    exit 1
  fi
  say "smoke: ok"
fi
if [ "$MODE" = soak ] && [ "${SOAK_RC:-1}" -ne 0 ]; then exit 1; fi
exit 0
