#!/usr/bin/env bash
# chaos/purge-partition.sh: a purge is not undone by a node that comes back.
# Three pingora-node "hosts" (network namespaces on one bridge, one shared
# node file, as chaos/multihost.sh) serve a route whose cache is shared
# across the cluster; the origin, on the bridge, answers each path with its
# generation ("/a/u/1 gen=1") and a Surrogate-Key. For each scenario every
# node fills a fresh set of URLs (plain URLs, URLs under a prefix, tagged
# URLs: about a third owned by each node), node X is taken out of the ring,
# the origin moves to the next generation, and the URLs, the prefix and the
# tag are purged on the majority; then X comes back and every node is polled
# for a while: no node may serve the purged generation once X is back in its
# ring (X's own clients may get what it held while it was out, as the README
# says), and what was filled after the purge stays (the origin is not asked
# for it again). Scenarios:
#   partition  X's netns drops the other nodes' packets (it still reaches
#              the origin and its clients) until the others see it dead
#   pause      SIGSTOP X for 30 s, purge meanwhile, SIGCONT
#   restart    partition X, purge, restart one majority node (its purge log
#              is in memory: lost), heal: the other majority node's log
#              still reaches X
# It also shows /status's cache fields and the purge metrics of each node,
# and checks that the node that missed the purge counted it as replayed.
# About 3 minutes.
# Prints one line per check and "N passed, M failed"; exits 1 on a failure.
#
#   chaos/purge-partition.sh      (needs root; prints SKIP and exits 0 without)
#
# Bounded (every wait has a deadline); on exit it stops every process it
# started by PID and deletes the namespaces, the bridge, the iptables rules
# and the files it created. KEEP=1 keeps the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

. chaos/netns.sh
netns_args "$@"
netns_init purge-partition pgpp 214
declare -A node_pid=()
netns_pids() { echo "${node_pid[@]}"; }

echo "== build"
go build -o "$work/pingora-node" ./cmd/pingora-node
mkdir -p "$work/origin"
cat > "$work/origin/main.go" <<'GO'
package main

// The origin: GET /PATH answers "PATH gen=G", cacheable for 10 minutes,
// tagged "tag-SEG1-SEG2"; POST /_gen sets G to the next generation;
// GET /_count?path=P says how often P was fetched.
import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
)

func main() {
	var mu sync.Mutex
	gen := 1
	count := map[string]int{}
	http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/_gen":
			gen++
			fmt.Fprint(w, gen)
			return
		case "/_count":
			fmt.Fprint(w, count[r.URL.Query().Get("path")])
			return
		}
		count[r.URL.Path]++
		seg := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(seg) >= 2 {
			w.Header().Set("Surrogate-Key", "tag-"+seg[0]+"-"+seg[1])
		}
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "%s gen=%d", r.URL.Path, gen)
	}))
}
GO
(cd "$work/origin" && printf 'module origin\n\ngo 1.21\n' > go.mod && go build -o "$work/origin-bin" .)

netns_hosts
origin=$net.254:28081
"$work/origin-bin" "$origin" & pids+=($!)
cat > "$work/cluster.yaml" <<YAML
upstreams:
  - name: web
    peers: [{addr: $origin}]
routes:
  - upstream: web
    cache: {enabled: true, shared: true}
YAML
token=purge-$$-$RANDOM
cat > "$work/node.yaml" <<YAML
admin_addr: 0.0.0.0:9090
admin_token: $token
listeners:
  - {name: http, addr: 0.0.0.0:8080}
gossip_addr: 0.0.0.0:7946
gossip_profile: fast
join: [$net.1:7946, $net.2:7946, $net.3:7946]
bootstrap_expect: 3
cluster_config: cluster.yaml
log_level: info
YAML

start_node() {
  ip netns exec "$(ns "$1")" "$work/pingora-node" run --config "$work/node.yaml" \
    --name "n$1" --data-dir "$work/n$1-data" --upgrade-socket "$work/n$1.sock" >> "$work/n$1.log" 2>&1 &
  node_pid[$1]=$!
}
stop_node() { # i: SIGTERM, wait for the exit (bounded)
  local p=${node_pid[$1]}
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
echo "== start n1 n2 n3"
for i in 1 2 3; do start_node "$i"; done

ring_size() { status "$1" | field 'print(len((d.get("ring") or {}).get("members") or []))'; }
ring_is() { # n, nodes...: every named node's ring has n members
  local n=$1; shift
  for i in "$@"; do [ "$(ring_size "$i")" = "$n" ] || return 1; done
}
ready_all() { for i in 1 2 3; do
  [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://$net.$i:9090/readyz")" = 200 ] || return 1; done; }
site=www.example.test   # every request's Host, so all nodes share the cache keys
get() { curl -s --max-time 3 -H "Host: $site" "http://$net.$1:8080$2" || true; }
gen_next() { curl -s --max-time 2 -X POST "http://$origin/_gen"; }
origin_count() { curl -s --max-time 2 "http://$origin/_count?path=$1"; }
cachef() { # i, python expression over c (the cache section of /status)
  status "$1" | field "c=d.get('cache') or {}; c.update(c.get('detail') or {}); print($2)"
}
metric() { # i, metric line prefix: the sum of the matching samples
  curl -s --max-time 2 "http://$net.$1:9090/metrics" | awk -v m="$2" 'index($0, m)==1 {s+=$NF} END {print s+0}'
}

formed() { ready_all && ring_is 3 1 2 3; }
check "cluster forms: 3 ready nodes, every ring has 3 members (40 s)" wait_until 40 formed

urls() { # scenario: the URLs it fills and purges
  for k in $(seq 1 12); do echo "/$1/u/$k"; echo "/$1/p/$k"; echo "/$1/t/$k"; done
}
fill() { # scenario: every node requests every URL (owners fill, others keep hot copies)
  local u i
  for u in $(urls "$1"); do for i in 1 2 3; do get "$i" "$u" > /dev/null; done; done
}
purge_on() { # i, scenario: purge the /S/u URLs, the /S/p/ prefix and the tag-S-t tag
  local body
  body=$(python3 -c "import json,sys
s=sys.argv[1]; h=sys.argv[2]
print(json.dumps({'urls': ['http://%s/%s/u/%d' % (h, s, k) for k in range(1, 13)],
  'prefixes': ['http://%s/%s/p/' % (h, s)], 'tags': ['tag-%s-t' % s]}))" "$2" "$site")
  curl -s --max-time 10 -X POST -H "Authorization: Bearer $token" --data "$body" "http://$net.$1:9090/v1/cache/purge"
}
# poll: for SECS seconds, every node, every URL of the scenario; a body with
# gen=OLD from a node whose ring has 3 members is a failure (X out of its
# ring may still serve what it held: the README allows it).
poll_no_old() { # scenario, old gen, secs
  local s=$1 old=$2 secs=$3 end bad=0 n=0 i u b rs
  end=$(( $(date +%s) + secs ))
  while [ "$(date +%s)" -lt "$end" ]; do
    for i in 1 2 3; do
      rs=$(ring_size "$i")
      for u in $(urls "$s"); do
        b=$(get "$i" "$u"); n=$((n+1))
        case "$b" in *"gen=$old") [ "$rs" = 3 ] && { bad=$((bad+1)); echo "   n$i served $b (ring of $rs)"; } ;; esac
      done
    done
  done
  echo "   $n requests over ${secs}s, $bad served the purged generation"
  [ "$bad" = 0 ]
}
# after: new URLs in the purged prefix and tag, requested on the majority
# (and on X when it can reach the origin) after the purge: no node drops
# them when the purge is replayed, so the origin is not asked again.
after_urls() { echo "/$1/p/after"; echo "/$1/t/after"; }
after_fill() { local u; for u in $(after_urls "$1"); do get "$2" "$u" > /dev/null; get "$3" "$u" > /dev/null; done; }
after_counts() { local u; for u in $(after_urls "$1"); do echo -n "$(origin_count "$u") "; done; }
after_stays() { # scenario, counts before
  local u i
  for u in $(after_urls "$1"); do for i in 1 2 3; do get "$i" "$u" > /dev/null; done; done
  local now; now=$(after_counts "$1")
  echo "   origin fetches of $(after_urls "$1" | tr '\n' ' ')before the heal: $2; after polling every node: $now"
  [ "$now" = "$2" ]
}
dead_to() { # x, nodes...: each named node sees nx dead (its ring has 2 members)
  local x=$1; shift
  ring_is 2 "$@"
}
cut() { # i: drop the other nodes' packets in n_i's namespace (the origin and clients still reach it)
  local j
  for j in 1 2 3; do [ "$j" = "$1" ] && continue
    ip netns exec "$(ns "$1")" iptables -I INPUT -s "$net.$j" -j DROP
    ip netns exec "$(ns "$1")" iptables -I OUTPUT -d "$net.$j" -j DROP
  done
}
heal() { ip netns exec "$(ns "$1")" iptables -F INPUT; ip netns exec "$(ns "$1")" iptables -F OUTPUT; }
show_cache() {
  local i
  for i in 1 2 3; do
    echo "   n$i cache: $(cachef "$i" '"purge_log=%s purge_log_from=%s purges_replayed=%s purge_syncs=%s" % (c.get("purge_log"), c.get("purge_log_from","-"), c.get("purges_replayed"), c.get("purge_syncs"))')"
    echo "   n$i metrics: replayed_total=$(metric "$i" pingora_cache_purges_replayed_total) syncs ok=$(metric "$i" 'pingora_cache_purge_syncs_total{result="ok"}') error=$(metric "$i" 'pingora_cache_purge_syncs_total{result="error"}') short=$(metric "$i" 'pingora_cache_purge_syncs_total{result="short"}')"
  done
}
purged_answer() { # file: the purge answered with the two majority nodes and dropped something
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
names = sorted(n["node"] for n in d["nodes"] if not n.get("error"))
print("   purge answer: " + json.dumps(d))
sys.exit(0 if len(names) == 2 and d["dropped"] > 0 else 1)
PY
}

scenario() { # name, X, majority a, majority b, how (partition|pause|restart)
  local s=$1 x=$2 a=$3 b=$4 how=$5 old new before rep0 u1
  echo "== $s: X = n$x, $how"
  old=$(gen_next)   # a fresh generation for this scenario
  local objs; objs=$(cachef "$x" 'c.get("objects", 0)')
  fill "$s"
  check "$s: n$x filled some of the scenario's URLs as their owner" [ "$(cachef "$x" 'c.get("objects", 0)')" -gt "$objs" ]
  rep0=$(metric "$x" pingora_cache_purges_replayed_total)
  case "$how" in
    partition|restart) cut "$x" ;;
    pause) kill -STOP "${node_pid[$x]}" ;;
  esac
  check "$s: n$a and n$b see n$x out of the ring (20 s)" wait_until 20 dead_to "$x" "$a" "$b"
  new=$(gen_next)
  purge_on "$a" "$s" > "$work/$s.purge" || true
  check "$s: the purge on n$a answers for n$a and n$b and drops objects" purged_answer "$work/$s.purge"
  if [ "$how" = restart ]; then
    stop_node "$a"; start_node "$a"
    check "$s: restarted n$a back in n$b's ring (30 s)" wait_until 30 ring_is 2 "$a" "$b"
  fi
  after_fill "$s" "$a" "$b"
  if [ "$how" != pause ]; then
    # X, cut off, fetches them too, more than the clock slack (1 s) after
    # the purge: what it fetched since stays when it gets the purge.
    sleep 1.5
    after_fill "$s" "$x" "$x"
  fi
  before=$(after_counts "$s")
  get "$a" "/$s/u/1" > /dev/null; get "$b" "/$s/u/1" > /dev/null
  u1=$(origin_count "/$s/u/1")
  if [ "$how" = pause ]; then
    sleep_until=$(( $(date +%s) + 30 ))
    while [ "$(date +%s)" -lt "$sleep_until" ]; do sleep 1; done
    kill -CONT "${node_pid[$x]}"
  else
    heal "$x"
  fi
  check "$s: back: every ring has 3 members (30 s)" wait_until 30 ring_is 3 1 2 3
  check "$s: no node serves gen=$old of a purged URL, 10 s of polling all 3" poll_no_old "$s" "$old" 10
  check "$s: what was fetched after the purge stays cached" after_stays "$s" "$before"
  # A purged URL fetched again after the purge: once X is back and owns
  # it again, X may fetch it from the origin once more (its previous ring
  # was itself alone, so it does not ask the majority's owner): reported.
  echo "   origin fetches of /$s/u/1 (purged, fetched again on the majority): $u1 before the heal, $(origin_count "/$s/u/1") after"
  check "$s: n$x counted replayed purges (pingora_cache_purges_replayed_total grew)" \
    [ "$(metric "$x" pingora_cache_purges_replayed_total)" -gt "$rep0" ]
  show_cache
}

scenario A 3 1 2 partition
scenario B 2 3 1 pause
scenario C 1 2 3 restart

echo "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
  for i in 1 2 3; do echo "-- n$i.log (last 15 lines)"; tail -n 15 "$work/n$i.log"; done
  exit 1
fi
