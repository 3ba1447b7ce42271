#!/usr/bin/env bash
# deploy/docker/up.sh: build the pingora-node and sample-origin images and
# start the compose cluster (3 nodes and the origin on a private network),
# then wait until the nodes agree (status.sh --wait) and print how to reach
# them. Arguments go to "docker-compose up -d" (--scale node=5, say).
#
#   deploy/docker/up.sh [docker-compose up options]
#
# Environment: COMPOSE_PROJECT_NAME (default "pingora", from .env),
# PINGORA_NODE_IMAGE and PINGORA_ORIGIN_IMAGE (image tags, default
# pingora-node:local and pingora-origin:local), PINGORA_ADMIN_TOKEN (kept
# in admin.env beside this script; a random one is made when neither is
# set), UP_WAIT (seconds to wait for agreement, default 90; 0: no wait).
#
# No image is pulled: both images are FROM scratch around static binaries
# built here with the Go toolchain (CGO_ENABLED=0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PINGORA_NODE_IMAGE=${PINGORA_NODE_IMAGE:-pingora-node:local}
export PINGORA_ORIGIN_IMAGE=${PINGORA_ORIGIN_IMAGE:-pingora-origin:local}

for tool in docker docker-compose go; do
  command -v "$tool" >/dev/null || { echo "up.sh: $tool is not installed" >&2; exit 2; }
done

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir "$ctx/data"
version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
echo "== build pingora-node $version and the origin (static)"
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags "-s -w -X main.version=$version" -o "$ctx/pingora-node" ./cmd/pingora-node)
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/origin" ./deploy/docker/origin)
echo "== images $PINGORA_NODE_IMAGE, $PINGORA_ORIGIN_IMAGE"
build() { # quiet unless it fails (the legacy builder warns on every run)
  local out old
  old=$(docker image inspect -f '{{.Id}}' "$2" 2>/dev/null || true)
  out=$(docker build -q -f "$here/$1" -t "$2" "$ctx" 2>&1) || { echo "$out" >&2; exit 1; }
  # The image this tag named before is left untagged: remove it unless a
  # container still runs it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$2")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
}
build node.Dockerfile "$PINGORA_NODE_IMAGE"
build origin.Dockerfile "$PINGORA_ORIGIN_IMAGE"

# Every node gets the same admin token (any node's admin API takes the
# same client), also nodes added later by docker-compose alone.
if [ -n "${PINGORA_ADMIN_TOKEN:-}" ] || [ ! -s "$here/admin.env" ]; then
  token=${PINGORA_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
  (umask 077 && printf 'PINGORA_ADMIN_TOKEN=%s\n' "$token" > "$here/admin.env")
fi

echo "== docker-compose up -d $*"
docker-compose -f "$here/docker-compose.yml" up -d "$@"

wait=${UP_WAIT:-90}
[ "$wait" = 0 ] && exit 0
n=$(docker-compose -f "$here/docker-compose.yml" ps -q node | wc -l)
"$here/status.sh" --wait "$n" "$wait"
cat <<TXT

proxy:   curl http://\$(docker-compose -f $here/docker-compose.yml port --index=1 node 8080)/hello
admin:   docker exec $(docker-compose -f "$here/docker-compose.yml" ps -q node | head -1 | cut -c1-12) /pingora-node status
scale:   (cd $here && docker-compose up -d --scale node=5)
stop:    $here/down.sh
TXT
