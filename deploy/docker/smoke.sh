#!/usr/bin/env bash
# deploy/docker/smoke.sh: CI's run of the compose cluster. It builds both
# images (up.sh), starts 3 nodes and the origin under a project and image
# tags of its own, and checks through every node's /status that the nodes
# agree (status.sh: same members, ring digest, config version, leader and
# voters); then a config write through a follower, a request through every
# node's proxy, a scale to 5 nodes and back to 3 (members and ring at
# once, raft voters after the dead-server grace period); then down.sh --rmi.
# Prints "N passed, M failed" and exits 1 on a failure.
#
# Bounded: every step has a timeout (build 15 min on a cold Go cache,
# each wait 30-200 s, down 3 min). Cleans up on every exit. Skips (exit 0, with
# the reason) where docker, its daemon or docker-compose is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

skip() { echo "SKIP deploy/docker/smoke.sh: $*"; exit 0; }
command -v docker >/dev/null || skip "docker is not installed"
timeout 20 docker info >/dev/null 2>&1 || skip "the docker daemon does not answer (docker info)"
command -v docker-compose >/dev/null || skip "docker-compose is not installed"
missing=()
for tool in jq curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || skip "needs ${missing[*]}"
  echo "== installing ${missing[*]} (apt-get)"
  timeout 600 apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export COMPOSE_PROJECT_NAME=pingora-smoke-$$
export PINGORA_NODE_IMAGE=pingora-node:smoke-$$ PINGORA_ORIGIN_IMAGE=pingora-origin:smoke-$$
compose() { timeout 300 docker-compose -f "$here/docker-compose.yml" "$@"; }
cleanup() {
  echo "== down (project $COMPOSE_PROJECT_NAME, images removed)"
  timeout 180 "$here/down.sh" --rmi >/dev/null 2>&1 || echo "down.sh failed; leftovers: docker ps -a --filter label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0 failed=0
check() { # check NAME COMMAND...: runs the command, counts and prints the result
  local name=$1; shift
  local t0=$SECONDS
  if "$@"; then passed=$((passed + 1)); echo "PASS $name ($((SECONDS - t0)) s)"
  else failed=$((failed + 1)); echo "FAIL $name ($((SECONDS - t0)) s)"; fi
}

start=$SECONDS
echo "== up.sh (project $COMPOSE_PROJECT_NAME)"
if ! UP_WAIT=0 timeout 900 "$here/up.sh" >/dev/null; then
  echo "FAIL up.sh"; echo "0 passed, 1 failed"; exit 1
fi

nonroot() { # the image and every running node use uid 65532
  [ "$(docker image inspect -f '{{.Config.User}}' "$PINGORA_NODE_IMAGE")" = 65532:65532 ] || return 1
  local c
  for c in $(compose ps -q node); do
    [ "$(docker top "$c" -o pid,uid | awk 'NR > 1 {print $2}' | sort -u)" = 65532 ] || return 1
  done
}

# put_config writes cluster.yaml with a longer health-check interval as a
# new version through the second node's published admin port.
put_config() {
  local adm token code
  adm=$(compose port --index=2 node 9090)
  token=$(sed -n 's/^PINGORA_ADMIN_TOKEN=//p' "$here/admin.env")
  code=$(sed 's/interval: 2s/interval: 3s/' "$here/cluster.yaml" | curl -s -o /dev/null -w '%{http_code}' -m 10 \
    -X PUT -H "Authorization: Bearer $token" -H 'If-Match: 1' --data-binary @- "http://$adm/v1/config")
  [ "$code" = 200 ] || { echo "PUT /v1/config through $adm: HTTP $code"; return 1; }
}

# proxy_each sends a request through every node's published proxy port:
# each answer comes from the origin.
proxy_each() {
  local i n body
  n=$(compose ps -q node | wc -l)
  for i in $(seq 1 "$n"); do
    body=$(curl -s -m 10 "http://$(compose port --index="$i" node 8080)/smoke/$i") || return 1
    [[ $body == "origin "*": GET /smoke/$i HTTP/1.1" ]] || { echo "node $i answered: $body"; return 1; }
  done
}

config_is() { # every node runs config version $1
  [ "$("$here/status.sh" | awk 'NR > 1 {print $NF}' | sort -u)" = "$1" ]
}

check "3 nodes agree (members, ring digest, config version, leader, 3 voters)" "$here/status.sh" --wait 3 90
check "images and processes run as uid 65532" nonroot
check "config write through a follower (If-Match: 1)" put_config
check "3 nodes agree after the write" "$here/status.sh" --wait 3 30
check "every node runs config version 2" config_is 2
check "every node's proxy reaches the origin" proxy_each
compose up -d --scale node=5 >/dev/null 2>&1 || true
check "scaled to 5: 5 nodes agree, 5 voters, version 2" "$here/status.sh" --wait 5 90
check "scaled to 5: every node runs version 2" config_is 2
compose up -d --scale node=3 >/dev/null 2>&1 || true
check "scaled to 3: members, ring and config follow" env AGREE_VOTERS=0 "$here/status.sh" --wait 3 30
# The stopped nodes stay raft voters until the dead-server grace period
# (2 min) ends; then 3 voters.
check "scaled to 3: raft voters follow (dead-server grace period)" "$here/status.sh" --wait 3 200
check "every node's proxy reaches the origin" proxy_each
echo "deploy smoke in $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
