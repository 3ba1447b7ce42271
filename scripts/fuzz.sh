#!/usr/bin/env bash
# Runs every go test -fuzz target of the module for a while each (README
# "Fuzzing"): scripts/fuzz.sh [TIME [go test flags...]], TIME per target
# (default 5s, any -fuzztime value). Targets are the names go test -list
# '^Fuzz' prints for each package with a Fuzz function in its tests; they
# run one at a time, each from its seed corpus in testdata/fuzz/<target>.
# A failing input is written there by go test; the script goes on with the
# other targets, prints "N targets, M failed" and exits non-zero on any.
#
#   scripts/fuzz.sh                      # CI: 5s each
#   nice -n 19 scripts/fuzz.sh 10m -parallel 1
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

fuzztime=${1:-5s}
shift || true
start=$(date +%s)

log=$(mktemp "${TMPDIR:-/tmp}/pingora-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT

# Only packages whose tests declare a fuzz target are built for the listing,
# and built as -fuzz builds them (instrumented; the pattern matches
# nothing), so the runs below reuse that build instead of making their own.
mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
total=0
failed=()
for pkg in "${pkgs[@]}"; do
  if ! list=$(go test -list '^Fuzz' -fuzz 'x^' "$pkg" 2>&1); then
    echo "FAIL $pkg: go test -list:"; echo "$list"
    failed+=("$pkg (does not build)")
    continue
  fi
  mapfile -t targets < <(grep '^Fuzz' <<<"$list" || true)
  for target in "${targets[@]}"; do
    total=$((total + 1))
    ok=1
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$@" "$pkg" >"$log" 2>&1 || ok=0
    if [ $ok -eq 0 ] && grep -qxE '[[:space:]]*context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"; then
      # Go's fuzzing coordinator can report its own -fuzztime deadline as
      # a failure when a worker is starved as time runs out
      # (golang/go#75804, fixed in Go 1.27): no input failed and none was
      # written. Such a run is made once more; any other failure is not.
      echo "note $target ($pkg): \"context deadline exceeded\" with no failing input (golang/go#75804): run again"
      ok=1
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$@" "$pkg" >"$log" 2>&1 || ok=0
    fi
    if [ $ok -eq 1 ]; then
      # The last progress line carries the executions and the corpus size.
      echo "ok   $target ($pkg): $(grep '^fuzz: elapsed' "$log" | tail -1)"
    else
      echo "FAIL $target ($pkg):"
      cat "$log"
      failed+=("$pkg $target")
    fi
  done
done

echo "== fuzz: $total targets, ${#failed[@]} failed, $(($(date +%s) - start))s"
for f in "${failed[@]}"; do echo "failed: $f"; done
[ ${#failed[@]} -eq 0 ]
