#!/usr/bin/env bash
# deploy/docker/down.sh: stop and remove the compose cluster that up.sh
# started (containers, network; images stay: --rmi also removes them).
# Nodes get SIGTERM and drain within their grace period (30 s) first.
# Honours COMPOSE_PROJECT_NAME like up.sh.
#
#   deploy/docker/down.sh [--rmi]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PINGORA_NODE_IMAGE=${PINGORA_NODE_IMAGE:-pingora-node:local}
export PINGORA_ORIGIN_IMAGE=${PINGORA_ORIGIN_IMAGE:-pingora-origin:local}
# docker-compose refuses to read a project whose env_file is missing.
[ -e "$here/admin.env" ] || (umask 077 && : > "$here/admin.env")
args=(down --remove-orphans --timeout 45)
[ "${1:-}" = --rmi ] && args+=(--rmi all)
docker-compose -f "$here/docker-compose.yml" "${args[@]}"
