#!/usr/bin/env bash
# CPU time per operation of a Go benchmark, for a shared machine where
# wall-clock ns/op mostly measures the other tenants' load.
#
#   scripts/cpubench.sh ./tinyufo/ 'BenchmarkGet$' 20000000 1 2
#
# builds the package's test binary, runs the benchmark for exactly N
# operations at each -cpu value, and prints (user+sys CPU seconds)/N and
# wall time/N, each minus a run of 1 operation (the setup). With perfect
# scaling the CPU ns/op stays the same from -cpu 1 to -cpu 2; contention
# shows as a rise. The benchmark's own line follows each figure.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 PKG BENCH-REGEX N CPU..." >&2; exit 2; }
pkg=$1 re=$2 n=$3; shift 3
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/b.test" "$pkg"
run() { # ops cpu -> "real user sys" on fd 3, benchmark output to $dir/out
  local TIMEFORMAT='%3R %3U %3S'
  { time "$dir/b.test" -test.run '^$' -test.bench "$re" -test.benchtime "$1x" -test.cpu "$2" >"$dir/out" 2>&1; } 2>&3
}
for cpu in "$@"; do
  read -r r0 u0 s0 < <(run 1 "$cpu" 3>&1)
  read -r r1 u1 s1 < <(run "$n" "$cpu" 3>&1)
  awk -v r0="$r0" -v u0="$u0" -v s0="$s0" -v r1="$r1" -v u1="$u1" -v s1="$s1" -v n="$n" -v re="$re" -v cpu="$cpu" \
    'BEGIN { printf "%s -cpu %s: CPU %.1f ns/op, wall %.1f ns/op over %d ops\n", re, cpu, ((u1+s1)-(u0+s0))*1e9/n, (r1-r0)*1e9/n, n }'
  grep '^Benchmark' "$dir/out" || true
done
