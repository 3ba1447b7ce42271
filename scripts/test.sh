#!/usr/bin/env bash
# The project's test command (README "Run the tests"): every package, with
# the race detector. Extra arguments go to go test (for example -run, -v).
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -race -timeout 10m "$@" ./...
