#!/usr/bin/env bash
# The project's test command (README "Run the tests"): every package, with
# the race detector; then the proxy package once more without it, because
# its socket I/O (proxy/rawio_*linux.go) makes raw system calls only in a
# build without the race detector. Extra arguments go to go test (for
# example -run, -v).
set -euo pipefail
cd "$(dirname "$0")/.."
go test -race -timeout 10m "$@" ./...
go test -timeout 10m "$@" ./proxy/
