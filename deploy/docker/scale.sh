#!/usr/bin/env bash
# deploy/docker/scale.sh N: grow or shrink the compose cluster to N nodes,
# then wait until the N nodes agree (status.sh --wait N, SCALE_WAIT seconds,
# default 90). Honours COMPOSE_PROJECT_NAME like up.sh.
#
# Growing is "docker-compose up -d --scale node=N". Shrinking removes the
# highest-numbered node containers, as docker-compose does, but first runs
# "pingora-node leave" in each of them, one at a time: the node hands raft
# leadership over if it has it, the leader takes it out of raft at once, and
# the node drains and exits 0. A plain "docker-compose up -d --scale
# node=N" stops them with SIGTERM instead, which keeps each a raft voter
# (so that a node restarted after SIGTERM is a voter again at once) until
# the leader removes it after the dead-server grace period, 2 minutes.
#
# Then it runs "pingora-node force-leave NAME" for each removed node on a
# remaining one: today a leaving node can be added back to raft as a
# non-voter in the moment between its removal and its exit from gossip
# (seen: AddNonvoter 138 ms after RemoveServer), and would stay until the
# grace period. force-leave of a node that is gone removes it at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=${COMPOSE_PROJECT_NAME:-$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' "$here/.env")}
export COMPOSE_PROJECT_NAME=$project
export PINGORA_NODE_IMAGE=${PINGORA_NODE_IMAGE:-pingora-node:local}
export PINGORA_ORIGIN_IMAGE=${PINGORA_ORIGIN_IMAGE:-pingora-origin:local}
n=${1:?usage: scale.sh N}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "scale.sh: N must be a positive number, not $n" >&2; exit 2; }

# The node containers by number, as docker-compose numbers them.
mapfile -t nodes < <(docker ps -a --filter "label=com.docker.compose.project=$project" \
  --filter label=com.docker.compose.service=node \
  --format '{{.Label "com.docker.compose.container-number"}} {{.Names}}' | sort -n)
gone=() # node names (host names) of the removed containers
for ((i = n; i < ${#nodes[@]}; i++)); do
  name=${nodes[i]#* }
  gone+=("$(docker inspect -f '{{.Config.Hostname}}' "$name")")
  [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || continue
  echo "== $name: pingora-node leave"
  # The exec ends with the container when the node exits after leaving.
  timeout 90 docker exec "$name" /pingora-node leave || true
  if ! timeout 60 docker wait "$name" >/dev/null; then
    echo "scale.sh: $name did not stop after leave; docker-compose stops it (SIGTERM)" >&2
  fi
done
# --no-recreate: a node whose container were re-created would come back
# as a new node (a new name and an empty /data).
timeout 300 docker-compose -f "$here/docker-compose.yml" up -d --no-recreate --scale node="$n"
if [ ${#gone[@]} -gt 0 ]; then
  first=${nodes[0]#* }
  for name in "${gone[@]}"; do
    # 404 "not a member" when it is gone already: nothing to do.
    timeout 30 docker exec "$first" /pingora-node force-leave "$name" 2>&1 | sed "s/^/force-leave: /" || true
  done
fi
"$here/status.sh" --wait "$n" "${SCALE_WAIT:-90}"
