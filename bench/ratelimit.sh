#!/usr/bin/env bash
# bench/ratelimit.sh: global rate limits measured on real processes on
# loopback (issue 15). Builds pingora-node and the driver (bench/ratelimit),
# installs gubernator v2.13.0 from the Go module proxy into a temporary GOBIN
# (only for the side-by-side), and runs every scenario of the driver:
#
#   accuracy    limit 1,000/s on one key, 3,000/s offered, 30 s, on 3 and
#               5 nodes, load spread evenly and all on one node
#   kill        kill -9 of the key's owner at 10 s (3 and 5 nodes)
#   scale       3 → 5 nodes at 10 s, the key's owner moving
#   gubernator  gubernator v2.13.0, GLOBAL behaviour, token bucket, through
#               its HTTP API, 3 and 5 instances, the same load
#
# and writes the table to bench/RATELIMIT.md (between the RESULTS markers).
#
#   bench/ratelimit.sh [SCENARIOS]     (default: all; e.g. "accuracy,kill")
#
# Loopback only (gubernator instances on 127.0.0.21.. and, because its
# member-list discovery keys peers by IP and host name, each in a UTS
# namespace of its own: unshare needs root). Every process is stopped by
# PID when its run ends; each run is bounded (30 s and a minute to form).
set -euo pipefail
usage() { sed -n '2,20{s/^# \{0,1\}//;p}' "$0"; }
# Arguments are checked before anything is built or run: "-h" used to be
# taken for a scenario list, which ran nothing and emptied the table of
# bench/RATELIMIT.md.
if [ $# -gt 1 ]; then
  { echo "bench/ratelimit.sh: one argument at most, got $#"; usage; } >&2; exit 2
fi
case ${1:-} in
  -h|--help) usage; exit 0 ;;
esac
only=${1:-accuracy,kill,scale,gubernator}
IFS=, read -ra wanted <<< "$only"
[ ${#wanted[@]} -gt 0 ] || { { echo "bench/ratelimit.sh: no scenario in \"$only\""; usage; } >&2; exit 2; }
for sc in "${wanted[@]}"; do
  case $sc in
    accuracy|kill|scale|gubernator) ;;
    *) { echo "bench/ratelimit.sh: unknown scenario \"$sc\" in $only (accuracy, kill, scale, gubernator)"; usage; } >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/pingora-rlbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "== build"
go build -o "$work/pingora-node" ./cmd/pingora-node
go build -o "$work/rlbench" ./bench/ratelimit
guber=""
if [[ $only == *gubernator* ]]; then
  echo "== gubernator v2.13.0 (go install into a temporary GOBIN)"
  GOBIN="$work/gobin" timeout 900 go install github.com/gubernator-io/gubernator/v2/cmd/gubernator@v2.13.0
  guber="$work/gobin/gubernator"
fi
echo "== run (load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs)"
"$work/rlbench" -bin "$work/pingora-node" -gubernator "$guber" -only "$only" > "$work/table.md"
cat "$work/table.md"
{
  sed '/<!-- RESULTS -->/q' bench/RATELIMIT.md
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), load average before the run $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs:"
  echo
  cat "$work/table.md"
  echo
  sed -n '/<!-- \/RESULTS -->/,$p' bench/RATELIMIT.md
} > "$work/new.md"
mv "$work/new.md" bench/RATELIMIT.md
echo "== bench/RATELIMIT.md updated"
