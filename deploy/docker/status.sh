#!/usr/bin/env bash
# deploy/docker/status.sh: what every node of the compose cluster reports in
# its /status, one line per node. Each node is asked inside its container
# ("docker exec CONTAINER /pingora-node status --json": the binary is its own
# client), so nothing needs to be published.
#
#   status.sh                 print the table
#   status.sh --agree N       exit 0 when N nodes run and agree (below), else 1
#   status.sh --wait N SECS   repeat --agree until it holds or SECS pass;
#                             print the table and how long it took
#
# The nodes agree when each of the N running node containers answers, is
# ready, and all report: the same N alive members (exactly the N nodes'
# names), the same ring digest over N members, the same config version,
# the same raft leader, and the same voters: min(N, 5) of them, the rest
# non-voters; with AGREE_VOTERS=0 the number of voters is not checked (a
# node stopped with SIGTERM stays a voter until the dead-server grace
# period ends). It honours COMPOSE_PROJECT_NAME (default: .env beside it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=${COMPOSE_PROJECT_NAME:-$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' "$here/.env")}

command -v jq >/dev/null || { echo "status.sh: needs jq (apt-get install jq)" >&2; exit 2; }

# containers lists the running node containers of the project, by name.
containers() {
  docker ps --filter "label=com.docker.compose.project=$project" \
    --filter label=com.docker.compose.service=node --format '{{.Names}}' | sort
}

# row prints one node's line (tab-separated) from its /status, or the
# container name and "unreachable".
row() {
  local json
  if ! json=$(timeout 10 docker exec "$1" /pingora-node status --json 2>/dev/null); then
    printf '%s\tunreachable\n' "$1"
    return
  fi
  jq -r --arg c "$1" '[$c, .node.name,
      (if .node.ready then "ready" else "not-ready" end),
      (.raft.state // "-"), (.raft.leader_id // "-"),
      ([.members[]? | select(.state == "alive") | .name] | sort | join(",")),
      ((.raft.voters // []) | map(.id) | sort | join(",")),
      ((.raft.nonvoters // []) | length),
      (.ring.digest // "-"), ((.ring.members // []) | length),
      (.config.version // "-")] | @tsv' <<<"$json"
}

# table prints every node's line under a header, with counts for the lists.
table() {
  printf 'CONTAINER\tNAME\tREADY\tRAFT\tLEADER\tALIVE\tVOTERS\tNONVOTERS\tRING\tRING-MEMBERS\tCONFIG\n'
  local c
  for c in $(containers); do
    row "$c" | awk -F'\t' 'BEGIN{OFS="\t"} NF > 2 {$6 = split($6, a, ","); $7 = split($7, b, ",")} {print}'
  done
}

# agree checks the agreement described above for n nodes; it prints why
# not on stderr with --why.
agree() {
  local n=$1 want_voters rows names
  want_voters=$(( n < 5 ? n : 5 ))
  mapfile -t cs < <(containers)
  [ "${#cs[@]}" -eq "$n" ] || { why "${#cs[@]} node containers run, want $n"; return 1; }
  rows=$(for c in "${cs[@]}"; do row "$c"; done)
  if grep -q $'\tunreachable$' <<<"$rows"; then why "a node does not answer"; return 1; fi
  names=$(cut -f2 <<<"$rows" | sort | paste -sd,)
  awk -F'\t' -v names="$names" -v n="$n" -v wv="$want_voters" -v cv="${AGREE_VOTERS:-1}" '
    { if ($3 != "ready") bad = $2 " is not ready"
      if ($6 != names) bad = $2 " sees alive members " $6 ", want " names
      if ($10 != n) bad = $2 " has " $10 " ring members, want " n
      if ($11 == "-") bad = $2 " has no config"
      if ($5 == "-" || $5 == "") bad = $2 " knows no raft leader"
      if (cv != 0 && (split($7, v, ",") != wv || $8 != n - wv)) bad = $2 " has voters " $7 " and " $8 " non-voters, want " wv " voters"
      for (f = 5; f <= 11; f++) { if (NR > 1 && f != 6 && $f != first[f]) bad = "nodes differ in column " f ": " $f " vs " first[f]; first[f] = $f }
    }
    END { if (bad != "") { print bad > "/dev/stderr"; exit 1 } }' <<<"$rows" 2>"$whyfile" || { why "$(cat "$whyfile")"; return 1; }
}

whyfile=$(mktemp); trap 'rm -f "$whyfile"' EXIT
last_why=""
why() { last_why=$1; }

case "${1:-}" in
  "") table | column -t -s $'\t' ;;
  --agree)
    if agree "${2:?status.sh --agree N}"; then echo "agree: ${2} nodes"; else echo "disagree: $last_why"; exit 1; fi ;;
  --wait)
    n=${2:?status.sh --wait N SECS}; secs=${3:?status.sh --wait N SECS}
    start=$(date +%s%3N)
    until agree "$n"; do
      if [ $(( $(date +%s%3N) - start )) -ge $(( secs * 1000 )) ]; then
        table | column -t -s $'\t'
        echo "status.sh: $n nodes did not agree within ${secs}s: $last_why" >&2
        exit 1
      fi
      sleep 0.5
    done
    ms=$(( $(date +%s%3N) - start ))
    table | column -t -s $'\t'
    printf 'agree: %d nodes after %d.%03d s\n' "$n" $((ms / 1000)) $((ms % 1000)) ;;
  *) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
