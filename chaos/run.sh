#!/usr/bin/env bash
# chaos/run.sh: the chaos suite over a real compose cluster (deploy/docker's
# images and compose file). It builds the node image and the sample origin
# image (FROM scratch, static binaries; nothing is pulled) under tags of its
# own, then runs each scenario with chaos/runner: a cluster of its own
# (project chaosPID-SCENARIO), client load through every node's proxy,
# config writes and reads through random nodes, the fault, the heal, the
# invariants. Each scenario prints "N passed, M failed" and writes
# chaos/results/SCENARIO.{json,md,png}; chaos/REPORT.md is then rebuilt
# from every chaos/results/*.md. Exits 1 when an invariant failed.
#
#   chaos/run.sh all|SCENARIO... [--short] [--fast] [--out DIR]
#   chaos/run.sh --list
#
# --short: shorter phases (CI); --fast: the nodes' gossip profile "fast"
# (agreement goal 2 s instead of 5 s); --out DIR: DIR/results and
# DIR/REPORT.md instead of chaos/ (CI: a temporary directory). CHAOS_POST=2m
# keeps the load going that long after agreement (default 8 s, 4 s --short).
# Needs root (nsenter, iptables and tc in the containers' network
# namespaces), docker, docker-compose and Go;
# installs gnuplot-nox (the timelines) with apt-get when missing. Without
# docker, its daemon or docker-compose it prints SKIP and exits 0.
#
# Bounded: each scenario stops itself (the runner has a 20 min bound, the
# longest takes about 4 min) and removes its project (containers, network)
# on every exit; this script removes whatever project of its prefix is left
# and its images at exit. iptables rules and netem qdiscs live in the
# containers' namespaces and go with them.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
here=chaos

skip() { echo "SKIP chaos/run.sh: $*"; exit 0; }
args=() flags=()
while [ $# -gt 0 ]; do
  a=$1; shift
  case $a in
    --out) here=${1:?--out DIR}; shift; [[ $here == /* ]] || here=$caller/$here; mkdir -p "$here" ;;
    --short) flags+=(-short) ;;
    --fast) flags+=(-profile fast) ;;
    --list) go run ./chaos/runner -list; exit 0 ;;
    -h | --help | help) sed -n '2,/^set /p' "chaos/$(basename "$0")" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) { echo "chaos/run.sh: unknown option $a"; echo; sed -n '2,/^set /p' "chaos/$(basename "$0")" | grep '^#' | sed 's/^# \{0,1\}//'; } >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done
[ ${#args[@]} -gt 0 ] || { sed -n '2,/^set /p' "chaos/$(basename "$0")" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
command -v docker >/dev/null || skip "docker is not installed"
timeout 20 docker info >/dev/null 2>&1 || skip "the docker daemon does not answer"
command -v docker-compose >/dev/null || skip "docker-compose is not installed"
[ "$(id -u)" = 0 ] || skip "needs root (nsenter into the containers' network namespaces)"
if ! command -v gnuplot >/dev/null; then
  echo "== installing gnuplot-nox (apt-get)"
  timeout 600 apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq gnuplot-nox >/dev/null
fi

prefix=chaos$$
export PINGORA_NODE_IMAGE=pingora-node:$prefix CHAOS_ORIGIN_IMAGE=pingora-chaos-origin:$prefix
export PINGORA_ORIGIN_IMAGE=$CHAOS_ORIGIN_IMAGE
work=$(mktemp -d)
cleanup() {
  local p
  for p in $(docker ps -a --format '{{.Label "com.docker.compose.project"}}' | grep "^$prefix-" | sort -u); do
    echo "== removing leftover project $p"
    timeout 180 docker-compose -p "$p" -f deploy/docker/docker-compose.yml -f chaos/compose.chaos.yml \
      down --remove-orphans --volumes --timeout 10 >/dev/null 2>&1 || true
  done
  docker rmi "$PINGORA_NODE_IMAGE" "$CHAOS_ORIGIN_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build pingora-node, the origin and the runner (static)"
version=$(git describe --always --dirty 2>/dev/null || echo dev)
mkdir "$work/data"
CGO_ENABLED=0 timeout 900 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/pingora-node" ./cmd/pingora-node
CGO_ENABLED=0 timeout 600 go build -trimpath -ldflags "-s -w" -o "$work/origin" ./deploy/docker/origin
timeout 600 go build -o "$work/runner" ./chaos/runner
build() { local out; out=$(timeout 300 docker build -q -f "$1" -t "$2" "$work" 2>&1) || { echo "$out" >&2; exit 1; }; }
build deploy/docker/node.Dockerfile "$PINGORA_NODE_IMAGE"
build deploy/docker/origin.Dockerfile "$CHAOS_ORIGIN_IMAGE"
# The nodes read their admin token from deploy/docker/admin.env (as up.sh
# writes it); the runner reads it too.
if [ ! -s deploy/docker/admin.env ]; then
  (umask 077 && printf 'PINGORA_ADMIN_TOKEN=%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" > deploy/docker/admin.env)
fi

[ "${args[0]}" = all ] && mapfile -t args < <("$work/runner" -list | awk '{print $1}')
failed=0 summary=()
for s in "${args[@]}"; do
  set +e
  "$work/runner" "${flags[@]}" -project "$prefix" -out "$here/results" "$s" 2>&1 | tee "$work/$s.log"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 0 ] || failed=$((failed + 1))
  summary+=("$(grep -E "^$s: [0-9]+ passed, [0-9]+ failed" "$work/$s.log" || echo "$s: did not finish (exit $rc)")")
done

# chaos/REPORT.md: a header, then every scenario's section in the suite's order.
{
  echo "# Chaos report"
  echo
  echo "Written by \`chaos/run.sh\` from \`chaos/results/*.md\` (each scenario's JSON beside it)."
  echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), shared with other jobs;"
  echo "Docker $(docker version --format '{{.Server.Version}}'), docker-compose $(docker-compose version --short)."
  echo "See chaos/README.md for what each invariant means and chaos/findings.md for what the runs found."
  echo
  echo "| scenario | result | when |"
  echo "|---|---|---|"
  for s in $("$work/runner" -list | awk '{print $1}'); do
    [ -f "$here/results/$s.json" ] || continue
    jq -r '"| \(.scenario) | \(.passed) passed, \(.failed) failed | \(.started) \(.profile)\(if .short then " short" else "" end) |"' "$here/results/$s.json"
  done
  echo
  for s in $("$work/runner" -list | awk '{print $1}'); do
    [ -f "$here/results/$s.md" ] && cat "$here/results/$s.md"
  done
} > "$here/REPORT.md"

echo "== summary"
printf '%s\n' "${summary[@]}"
[ "$failed" = 0 ]
