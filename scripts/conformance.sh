#!/usr/bin/env bash
# Outside conformance suites against a pingora-node on loopback (README
# "Conformance"): h2spec on the h2c and TLS listeners, the gRPC interop
# client's 14 standard cases through the proxy (h2c->h2c, TLS->h2c,
# h2c->TLS h2), and the WebSocket tests (github.com/coder/websocket on both
# ends). Prints "N passed, M failed" per suite and exits non-zero when a
# required case fails: every gRPC and WebSocket case, and every h2spec case
# not listed in conformance/h2spec-known-failures.txt (each explained in the
# README).
#
# Tools are installed with pinned versions from the Go module proxy into a
# temporary GOBIN (CONFORMANCE_BIN to reuse a directory; CONFORMANCE_KEEP=1
# keeps the logs). Everything runs on
# 127.0.0.1; every process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$PATH:/usr/local/go/bin"

H2SPEC_VERSION=v2.2.1+incompatible
GRPC_VERSION=v1.85.0

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/pingora-conformance.XXXXXX")
bin=${CONFORMANCE_BIN:-$work/bin}
mkdir -p "$bin"
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${CONFORMANCE_KEEP:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# step NAME SECONDS CMD...: runs CMD bounded by a timeout, logging to a file.
step() {
  local name=$1 secs=$2; shift 2
  if ! timeout --kill-after=10 "$secs" "$@" >"$work/$name.log" 2>&1; then
    echo "step $name failed:"; tail -n 40 "$work/$name.log"; return 1
  fi
}

echo "== build"
step install-h2spec 600 env GOBIN="$bin" go install "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
step install-interop 600 env GOBIN="$bin" go install \
  "google.golang.org/grpc/interop/client@$GRPC_VERSION" "google.golang.org/grpc/interop/server@$GRPC_VERSION"
step build-node 600 go build -o "$work/pingora-node" ./cmd/pingora-node
step build-helper 300 go build -o "$work/confhelper" ./conformance/confhelper
helper="$work/confhelper"
"$helper" certs "$work"

mapfile -t ports < <("$helper" ports 6)
p_h2c=${ports[0]} p_tls=${ports[1]} p_admin=${ports[2]} p_origin=${ports[3]} p_grpc=${ports[4]} p_grpctls=${ports[5]}

echo "== start upstreams and node"
"$helper" origin "127.0.0.1:$p_origin" >"$work/origin.log" 2>&1 &
pids+=($!)
"$bin/server" --port "$p_grpc" >"$work/interop-server.log" 2>&1 &
pids+=($!)
"$bin/server" --port "$p_grpctls" --use_tls --tls_cert_file "$work/cert.pem" --tls_key_file "$work/key.pem" \
  >"$work/interop-server-tls.log" 2>&1 &
pids+=($!)

cat >"$work/node.yaml" <<EOF
name: conformance
admin_addr: 127.0.0.1:$p_admin
listeners:
  - name: h2c
    addr: 127.0.0.1:$p_h2c
    h2c: true
  - name: tls
    addr: 127.0.0.1:$p_tls
    tls: {cert: $work/cert.pem, key: $work/key.pem}
cluster_config: cluster.yaml
log_level: warn
access_log: true
grace_period: 2s
EOF
cat >"$work/cluster.yaml" <<EOF
upstreams:
  - name: origin
    peers: [{addr: 127.0.0.1:$p_origin}]
  - name: interop
    protocol: h2c
    peers: [{addr: 127.0.0.1:$p_grpc}]
  - name: interop-tls
    protocol: h2
    tls: {sni: localhost, ca: $work/ca.pem}
    peers: [{addr: 127.0.0.1:$p_grpctls}]
routes:
  - path_prefix: /
    upstream: origin
  - path_prefix: /grpc.testing.
    upstream: interop
  - host: localhost              # the interop client's authority picks the TLS upstream
    path_prefix: /grpc.testing.
    upstream: interop-tls
EOF
"$work/pingora-node" run --config "$work/node.yaml" >"$work/node.log" 2>&1 &
pids+=($!)
if ! timeout 60 "$helper" wait "http://127.0.0.1:$p_admin/readyz" 30s; then
  echo "node not ready:"; tail -n 40 "$work/node.log"; exit 1
fi
timeout 60 "$helper" wait "http://127.0.0.1:$p_origin/" 30s

failed_suites=0
summary=()

# --- h2spec ----------------------------------------------------------------
known="$root/conformance/h2spec-known-failures.txt"
run_h2spec() {
  local name=$1; shift
  local log="$work/h2spec-$name.log" xml="$work/h2spec-$name.xml"
  timeout --kill-after=10 300 "$bin/h2spec" -h 127.0.0.1 -o 2 -j "$xml" "$@" >"$log" 2>&1 || true
  local line pass fail skip
  line=$(grep -aE '^[0-9]+ tests, [0-9]+ passed' "$log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    echo "h2spec ($name): no summary"; tail -n 20 "$log"; failed_suites=$((failed_suites + 1)); return
  fi
  pass=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")
  skip=$(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<<"$line")
  fail=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
  # Failed cases ("http2/6.5.3 | Sends ...") from the JUnit report.
  "$helper" junit-failures "$xml" >"$work/h2spec-$name.failed" || true
  local unexpected=0 id
  while IFS= read -r id; do
    [ -z "$id" ] && continue
    if ! grep -qxF -- "$name $id" "$known"; then
      echo "  unexpected h2spec failure ($name): $id"; unexpected=$((unexpected + 1))
    fi
  done <"$work/h2spec-$name.failed"
  if [ "$(grep -c . "$work/h2spec-$name.failed" || true)" -ne "$fail" ]; then
    echo "  h2spec ($name): the report lists other failures than the summary's $fail"; unexpected=$((unexpected + 1))
  fi
  summary+=("h2spec $name: $pass passed, $fail failed ($skip skipped; $((fail - unexpected)) of the failures known, explained in README)")
  if [ "$unexpected" -gt 0 ]; then failed_suites=$((failed_suites + 1)); fi
}
echo "== h2spec"
run_h2spec h2c -p "$p_h2c"
run_h2spec tls -p "$p_tls" -t -k

# --- gRPC interop ----------------------------------------------------------
cases=(empty_unary large_unary client_streaming server_streaming ping_pong empty_stream
  timeout_on_sleeping_server cancel_after_begin cancel_after_first_response
  status_code_and_message special_status_message custom_metadata
  unimplemented_method unimplemented_service)
run_interop() {
  local name=$1 port=$2; shift 2
  local pass=0 fail=0 c
  for c in "${cases[@]}"; do
    if timeout --kill-after=5 60 "$bin/client" --server_port "$port" --test_case "$c" "$@" >"$work/interop-$name-$c.log" 2>&1; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1)); echo "  gRPC interop ($name) $c failed:"; tail -n 5 "$work/interop-$name-$c.log" | sed 's/^/    /'
    fi
  done
  summary+=("gRPC interop $name: $pass passed, $fail failed")
  if [ "$fail" -gt 0 ]; then failed_suites=$((failed_suites + 1)); fi
}
echo "== gRPC interop"
run_interop "h2c->h2c" "$p_h2c" --server_host 127.0.0.1
run_interop "tls->h2c" "$p_tls" --server_host 127.0.0.1 --use_tls --use_test_ca --ca_file "$work/ca.pem" --server_host_override proxy.test
run_interop "h2c->tls-h2" "$p_h2c" --server_host localhost

# --- WebSocket -------------------------------------------------------------
echo "== WebSocket"
timeout --kill-after=10 600 go test -count=1 -v -run 'TestWebSocket' ./proxy/ >"$work/websocket.log" 2>&1 || true
ws_pass=0 ws_fail=0
# Count leaf cases only: a test whose name prefixes another is a group.
mapfile -t ws_results < <(grep -E -- '--- (PASS|FAIL|SKIP):' "$work/websocket.log" | awk '{print $2, $3}')
for r in "${ws_results[@]}"; do
  res=${r%% *} name=${r#* }
  leaf=1
  for o in "${ws_results[@]}"; do [[ "${o#* }" == "$name/"* ]] && leaf=0 && break; done
  [ "$leaf" = 1 ] || continue
  case $res in PASS:) ws_pass=$((ws_pass + 1)) ;; *) ws_fail=$((ws_fail + 1)); echo "  WebSocket $name: $res" ;; esac
done
if ! grep -q '^ok' "$work/websocket.log" || [ "$ws_pass" -eq 0 ]; then
  ws_fail=$((ws_fail + 1)); tail -n 30 "$work/websocket.log"
fi
summary+=("WebSocket: $ws_pass passed, $ws_fail failed")
if [ "$ws_fail" -gt 0 ]; then failed_suites=$((failed_suites + 1)); fi

echo "== summary"
printf '%s\n' "${summary[@]}"
echo "conformance: $failed_suites suite(s) with required failures, $(( $(date +%s) - start ))s"
[ "$failed_suites" -eq 0 ]
