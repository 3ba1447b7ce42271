#!/usr/bin/env bash
# chaos/cache-transitions.sh: the cluster cache (routes with cache.shared)
# while real processes change under load. Four pingora-node "hosts"
# (network namespaces on one bridge, one shared node file, as
# chaos/multihost.sh; the fourth starts in scenario B); an origin on the
# bridge that answers each path with its generation, its fetch number and
# the address that fetched it ("/a/7 gen=1 n=2 by=10.216.x.3"), after 30 ms,
# and counts every fetch; a load tool sends 200 requests/s for 200 URLs
# round-robin over the proxies, every answer recorded (time, proxy,
# status, Cache-Status, body or error). Four scenarios, a fresh set of
# URLs (/S/1../S/200) each, 4 s of load before the transition and about
# 12 s after it; 0.3-1.5 s into each transition the origin moves to a new
# generation and a tenth of the URLs are purged:
#   A  upgrade (kill -USR2) the node that filled the most URLs, with a
#      10 s request in flight that keeps the old process draining
#   B  a fourth node starts and joins (a quarter of the URLs move to it)
#   C  the fourth node stops (SIGTERM; the load includes it)
#   D  kill -9 of a node (the load goes to the two others; raft has no
#      quorum then: the fourth node, stopped without leave, stays a voter
#      for 2 minutes, as the README says; the cache does not need raft)
# Checks, per scenario: no request fails (a status other than 200, a
# transport error; in C and D only the stopped node's own connections
# refused after its stop are left out, the load balancer's part); the
# origin fetches of each URL stay within the README's bound (A: none
# more, the successor inherits the old process's cache; B: none more, the new owner takes them from the previous one; C: the
# stopped node's URLs once more, by their new owner; D: the killed node's
# URLs once per surviving node while it is suspect and once by the new
# owner; a purged URL once more); no answer to a request sent
# after the purge answered carries the purged generation; Cache-Status
# is truthful (an answer that says it fetched from the origin,
# "fwd=miss; fwd-status=200", carries a fetch made by its own host, and
# no two such answers carry the same fetch; a "hit" or "collapsed"
# carries a fetch made before it); in A, the draining old process makes
# no origin fetch after the hand-off (found by the origin connections'
# owning PIDs, sampled with ss) and the slow request ends whole.
# Prints per scenario the origin fetches per URL (how many URLs were
# fetched 1, 2, ... times), the statuses and Cache-Status values, and
# one line per check, then "N passed, M failed"; exits 1 on a failure.
# About 2 minutes.
#
#   chaos/cache-transitions.sh      (needs root; prints SKIP and exits 0 without)
#
# Bounded (every wait has a deadline); on exit it stops every process it
# started by PID (an upgrade's successor by the pid file's PID) and
# deletes the namespaces, the bridge, the iptables rule and the files it
# created. KEEP=1 keeps the logs and every answer (S.load).
set -euo pipefail
cd "$(dirname "$0")/.."

NETNS_HOSTS=4
. chaos/netns.sh
netns_args "$@"
netns_init cache-transitions pgct 216 ss
netns_pids() { cat "$work"/n[1234].pids 2>/dev/null || true; }

echo "== build"
go build -o "$work/pingora-node" ./cmd/pingora-node
mkdir -p "$work/tools"
cat > "$work/tools/main.go" <<'GO'
package main

// origin ADDR DELAYMS: GET /PATH answers "PATH gen=G n=N by=IP" after
// DELAYMS, cacheable for 10 minutes; /slow?s=S streams a byte a second
// for S seconds, not cacheable; POST /_gen moves to the next generation;
// GET /_fetches lists every fetch ({path: [[unix ms, remote addr], ...]}).
//
// load SECS RATE OUT URLFILE PROXY...: sends RATE requests/s, request i
// for URL i mod len(URLs) through a proxy that rotates, for SECS seconds
// (Host: www.example.test); writes one line per answer to OUT: start ms,
// end ms, proxy index, URL index, status (0: transport error; -1: could
// not be started), Cache-Status, body or error, tab-separated.
import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func origin(addr string, delay time.Duration) {
	var mu sync.Mutex
	gen := 1
	fetches := map[string][][2]any{}
	http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_gen":
			mu.Lock()
			gen++
			fmt.Fprint(w, gen)
			mu.Unlock()
			return
		case "/_fetches":
			mu.Lock()
			json.NewEncoder(w).Encode(fetches)
			mu.Unlock()
			return
		case "/slow":
			s, _ := strconv.Atoi(r.URL.Query().Get("s"))
			w.Header().Set("Cache-Control", "no-store")
			for i := 0; i < s; i++ {
				w.Write([]byte("."))
				w.(http.Flusher).Flush()
				time.Sleep(time.Second)
			}
			return
		}
		mu.Lock()
		fetches[r.URL.Path] = append(fetches[r.URL.Path], [2]any{time.Now().UnixMilli(), r.RemoteAddr})
		n, g := len(fetches[r.URL.Path]), gen
		mu.Unlock()
		time.Sleep(delay)
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "%s gen=%d n=%d by=%s", r.URL.Path, g, n, host)
	}))
}

func load(secs, rate int, out string, urls, proxies []string) {
	f, _ := os.Create(out)
	bw := bufio.NewWriter(f)
	var mu sync.Mutex
	line := func(t0 time.Time, p, u, status int, cs, body string) {
		mu.Lock()
		fmt.Fprintf(bw, "%d\t%d\t%d\t%d\t%d\t%s\t%s\n", t0.UnixMilli(), time.Now().UnixMilli(), p, u, status, cs,
			strings.NewReplacer("\t", " ", "\n", " ").Replace(body))
		mu.Unlock()
	}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32, MaxConnsPerHost: 32}}
	type job struct{ p, u int }
	jobs := make(chan job, 1024)
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				req, _ := http.NewRequest("GET", proxies[j.p]+urls[j.u], nil)
				req.Host = "www.example.test"
				t0 := time.Now()
				resp, err := cl.Do(req)
				if err != nil {
					line(t0, j.p, j.u, 0, "", err.Error())
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					line(t0, j.p, j.u, 0, resp.Header.Get("Cache-Status"), "body: "+err.Error())
					continue
				}
				line(t0, j.p, j.u, resp.StatusCode, resp.Header.Get("Cache-Status"), string(b))
			}
		}()
	}
	start := time.Now()
	t := time.NewTicker(time.Millisecond)
	sent := 0
	for now := range t.C {
		el := now.Sub(start)
		if el >= time.Duration(secs)*time.Second {
			break
		}
		for want := int(el.Seconds() * float64(rate)); sent < want; sent++ {
			j := job{(sent + sent/len(urls)) % len(proxies), sent % len(urls)}
			select {
			case jobs <- j:
			default:
				line(now, j.p, j.u, -1, "", "saturated")
			}
		}
	}
	close(jobs)
	wg.Wait()
	bw.Flush()
	f.Close()
}

func main() {
	switch os.Args[1] {
	case "origin":
		ms, _ := strconv.Atoi(os.Args[3])
		origin(os.Args[2], time.Duration(ms)*time.Millisecond)
	case "load":
		secs, _ := strconv.Atoi(os.Args[2])
		rate, _ := strconv.Atoi(os.Args[3])
		b, _ := os.ReadFile(os.Args[5])
		load(secs, rate, os.Args[4], strings.Fields(string(b)), os.Args[6:])
	}
}
GO
(cd "$work/tools" && printf 'module tools\n\ngo 1.21\n' > go.mod && go build -o "$work/tool" .)

netns_hosts
origin=$net.254:34871
"$work/tool" origin "$origin" 30 & pids+=($!)
cat > "$work/cluster.yaml" <<YAML
upstreams:
  - name: web
    peers: [{addr: $origin}]
routes:
  - upstream: web
    cache: {enabled: true, shared: true}
YAML
token=cache-$$-$RANDOM
cat > "$work/node.yaml" <<YAML
admin_addr: 0.0.0.0:9090
admin_token: $token
listeners:
  - {name: http, addr: 0.0.0.0:8080}
gossip_addr: 0.0.0.0:7946
# lan, as in production (and as upgrade-limits.sh: the fast profile's
# sub-second suspicion can flap a ring on a loaded machine)
gossip_profile: lan
join: [$net.1:7946, $net.2:7946, $net.3:7946]
bootstrap_expect: 3
cluster_config: cluster.yaml
log_level: info
YAML

start_node() {
  ip netns exec "$(ns "$1")" "$work/pingora-node" run --config "$work/node.yaml" --name "n$1" \
    --data-dir "$work/n$1-data" --upgrade-socket "$work/n$1.sock" --pid-file "$work/n$1.pid" >> "$work/n$1.log" 2>&1 &
  echo $! >> "$work/n$1.pids"
}
pid_of() { cat "$work/n$1.pid" 2>/dev/null || true; }
ring_size() { status "$1" | field 'print(len((d.get("ring") or {}).get("members") or []))'; }
ring_is() { # n, nodes...: every named node's ring has n members
  local n=$1; shift
  for i in "$@"; do [ "$(ring_size "$i")" = "$n" ] || return 1; done
}
ready() { [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://$net.$1:9090/readyz")" = 200 ]; }
ready_all() { for i in "$@"; do ready "$i" || return 1; done; }
now() { date +%s%3N; }
# purge S I: at node I, after the origin moved to a new generation, purge
# /S/k for every tenth k; writes S.purge: "sent_ms answered_ms new_gen answer"
purge() {
  local s=$1 i=$2 g t0 body ans c
  g=$(curl -s --max-time 2 -X POST "http://$origin/_gen")
  body=$(python3 -c "import json,sys
print(json.dumps({'urls': ['http://www.example.test/%s/%d' % (sys.argv[1], k) for k in range(10, 201, 10)]}))" "$s")
  t0=$(now)
  ans=$(curl -s --max-time 12 -X POST -H "Authorization: Bearer $token" --data "$body" "http://$net.$i:9090/v1/cache/purge" || true)
  echo "$t0 $(now) $g $ans" > "$work/$s.purge"
  c=$(echo "$ans" | field 'print(json.dumps(d, separators=(",", ":")))')
  echo "   purge on n$i: ${c:-$ans}"
}
urls_for() { for k in $(seq 1 200); do echo "/$1/$k"; done > "$work/$1.urls"; }
load() { # S, secs, node indexes: the load in the background ($loadpid)
  local s=$1 secs=$2 p=()
  shift 2
  for i in "$@"; do p+=("http://$net.$i:8080"); done
  urls_for "$s"
  "$work/tool" load "$secs" 200 "$work/$s.load" "$work/$s.urls" "${p[@]}" &
  loadpid=$!; pids+=($loadpid)
  echo "$*" > "$work/$s.proxies"
}
wait_load() { wait "$loadpid" || true; }
fetches() { curl -s --max-time 5 "http://$origin/_fetches" > "$work/fetches.json"; }
# fillers S: how many of /S/'s URLs each host fetched first (the owners)
fillers() {
  fetches
  python3 - "$work/fetches.json" "$1" "$net" <<'PY'
import json, sys, collections
f = json.load(open(sys.argv[1])); s = sys.argv[2]
c = collections.Counter(v[0][1].rsplit(":", 1)[0] for p, v in f.items() if p.startswith("/%s/" % s))
for ip, n in c.most_common(): print(ip.rsplit(".", 1)[1], n)
PY
}
# analyse S TRANSITION_MS NODE KIND: prints the figures, writes S.verdict
# (one "name ok|FAIL text" line per check)
analyse() {
  fetches
  python3 - "$work" "$1" "$2" "$3" "$4" "$net" <<'PY'
import json, sys, collections, re
work, s, t_tr, node, kind, net = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
proxies = open("%s/%s.proxies" % (work, s)).read().split()
urls = open("%s/%s.urls" % (work, s)).read().split()
f = json.load(open(work + "/fetches.json"))
p_sent, p_ans, new_gen = [int(x) for x in open("%s/%s.purge" % (work, s)).read().split()[:3]]
purged = set("/%s/%d" % (s, k) for k in range(10, 201, 10))
rows = []
for l in open("%s/%s.load" % (work, s)):
    a = l.rstrip("\n").split("\t")
    rows.append((int(a[0]), int(a[1]), proxies[int(a[2])], urls[int(a[3])], int(a[4]), a[5], a[6]))
verdict = []
def check(name, ok, text): verdict.append("%s\t%s\t%s" % (name, "ok" if ok else "FAIL", text))
# statuses and Cache-Status values, before and from the transition
def kindcs(cs):
    if not cs: return "-"
    for k in ("hit", "collapsed", "fwd=miss; fwd-status=200", "fwd=stale"):
        if k in cs: return k
    return cs.replace("pingora-go; ", "")
for phase, sel in (("before", lambda r: r[0] < t_tr), ("from the transition", lambda r: r[0] >= t_tr)):
    st = collections.Counter(r[4] for r in rows if sel(r))
    cs = collections.Counter(kindcs(r[5]) for r in rows if sel(r) and r[4] == 200)
    print("   %s: %d answers; statuses %s; Cache-Status %s" % (phase, sum(st.values()), dict(st), dict(cs)))
# failures
excused = []
fails = []
for r in rows:
    if r[4] == 200: continue
    if kind in ("stop", "kill") and r[2] == node and r[0] >= t_tr and ("connection refused" in r[6] or kind == "kill"):
        excused.append(r); continue
    fails.append(r)
persec = collections.Counter((r[0] - t_tr) // 1000 for r in fails)
ex = collections.Counter(re.sub(r".*: ", "", r[6])[:40] for r in excused)
check("fail", not fails, "%d of %d requests failed%s%s" % (len(fails), len(rows),
      (" (per second from the transition: %s; first: %s)" % (dict(sorted(persec.items())), "; ".join("n%s %s %s" % (r[2], r[4], r[6][:80]) for r in fails[:3]))) if fails else "",
      (", %d to n%s after its stop left out (%s)" % (len(excused), node, dict(ex))) if excused else ""))
# origin fetches per URL
fe = {u: f.get(u, []) for u in urls}
after = collections.Counter()
dist = collections.Counter(); dist_p = collections.Counter()
extra_hosts = collections.Counter()
for u in urls:
    n = len(fe[u])
    (dist_p if u in purged else dist)[n] += 1
    if u not in purged:
        for t, ra in fe[u][1:]:
            extra_hosts[ra.rsplit(":", 1)[0].rsplit(".", 1)[1]] += 1
print("   origin fetches per URL (fetches: URLs): not purged %s; purged %s; the not purged URLs' fetches after the first, by host: %s" % (
    dict(sorted(dist.items())), dict(sorted(dist_p.items())), dict(sorted(extra_hosts.items()))))
# the README's bound: the first fill, then once more by the URL's new
# owner when its owner's process ended (a stopped or killed node takes
# its objects with it), none when a node joins (it takes them from their
# previous owner) or is upgraded (the successor inherits the cache);
# after a kill also once per surviving node while the dead owner is
# suspect. A purged URL once more.
bound = {"upgrade": 1, "join": 1, "stop": 2, "kill": 2 + len(proxies)}[kind]
worst = max(len(fe[u]) for u in urls if u not in purged)
worst_p = max(len(fe[u]) for u in purged)
check("fetches", worst <= bound and worst_p <= bound + 1,
      "origin fetches per URL at most %d (purged: %d), bound %d (purged %d)" % (worst, worst_p, bound, bound + 1))
# stale after purge: a request sent after the purge answered gets the new generation
stale = [r for r in rows if r[3] in purged and r[0] > p_ans and r[4] == 200 and ("gen=%d " % new_gen) not in r[6]
         and int((re.search(r"gen=(\d+)", r[6]) or [0, "0"])[1]) < new_gen]
check("stale", not stale, "%d answers to purged URLs sent after the purge answered carry the old generation%s" % (
      len(stale), (" (first: n%s %s %s %s, %d ms after)" % (stale[0][2], stale[0][3], stale[0][5], stale[0][6], stale[0][0] - p_ans)) if stale else ""))
# Cache-Status truthful
lies = []
claims = collections.defaultdict(set)
for r in rows:
    if r[4] != 200: continue
    m = re.search(r"n=(\d+) by=([\d.]+)", r[6])
    if not m: lies.append((r, "no fetch in the body")); continue
    n, by = int(m.group(1)), m.group(2)
    cs = r[5]
    if "fwd=miss" in cs and "fwd-status=200" in cs and "collapsed" not in cs:
        if by != "%s.%s" % (net, r[2]): lies.append((r, "an origin fetch made by %s" % by))
        if n in claims[r[3]]: lies.append((r, "a second answer claiming fetch %d" % n))
        claims[r[3]].add(n)
    elif "hit" in cs or "collapsed" in cs:
        if fe[r[3]][n - 1][0] > r[1]: lies.append((r, "a fetch made after the answer"))
    else:
        lies.append((r, "an unexpected Cache-Status"))
kinds = collections.Counter(w for _, w in lies)
check("truthful", not lies, "%d answers whose Cache-Status does not match their fetch%s" % (len(lies),
      (" (%s; first: n%s %s %r %s)" % (dict(kinds), lies[0][0][2], lies[0][0][3], lies[0][0][5], lies[0][0][6])) if lies else ""))
open("%s/%s.verdict" % (work, s), "w").write("\n".join(verdict) + "\n")
PY
  local name v text
  while IFS=$'\t' read -r name v text; do
    check "$1: $text" [ "$v" = ok ]
  done < "$work/$1.verdict"
}

echo "== start n1 n2 n3"
for i in 1 2 3; do start_node "$i"; done
formed() { ready_all 1 2 3 && ring_is 3 1 2 3; }
check "cluster forms: 3 ready nodes, every ring has 3 members (40 s)" wait_until 40 formed

# ---- A: upgrade the node that filled the most URLs
echo "== A: upgrade (kill -USR2) under load, a slow request in flight"
load a 16 1 2 3
sleep 4
o=$(fillers a | head -1 | cut -d' ' -f1)
echo "   URLs filled per host: $(fillers a | tr '\n' ' '); upgrading n$o"
curl -s --max-time 20 -o "$work/slow.body" -w '%{http_code}' "http://$net.$o:8080/slow?s=10" > "$work/slow.code" & slowpid=$!; pids+=($slowpid)
sleep 0.3
old=$(pid_of "$o")
( end=$(( $(date +%s) + 14 )); while [ "$(date +%s)" -lt "$end" ]; do
    echo "T $(now)"; ip netns exec "$(ns "$o")" ss -tnpH state established "( dst $origin )" 2>/dev/null; sleep 0.1; done ) > "$work/a.ss" & sspid=$!; pids+=($sspid)
ta=$(now)
kill -USR2 "$old"
sleep 0.3
purge a $(( o % 3 + 1 ))
new_pid() { [ -n "$(pid_of "$o")" ] && [ "$(pid_of "$o")" != "$old" ]; }
wait_until 10 new_pid || true
new=$(pid_of "$o"); echo "$new" >> "$work/n$o.pids"
wait_load
wait "$slowpid" || true
old_gone() { ! kill -0 "$old" 2>/dev/null; }
wait_until 20 old_gone || true
wait "$sspid" 2>/dev/null || true
slow=$(cat "$work/slow.code" 2>/dev/null)/$(wc -c < "$work/slow.body" 2>/dev/null)
check "A: the slow request through the draining old process ends whole (200, 10 bytes): $slow" [ "$slow" = 200/10 ]
analyse a "$ta" "$o" upgrade
# the draining old process's origin fetches after the hand-off
python3 - "$work/fetches.json" "$work/a.ss" "$old" "$ta" "$net.$o" > "$work/a.old" <<'PY'
import json, sys, re
f = json.load(open(sys.argv[1])); old, ta, ip = sys.argv[3], int(sys.argv[4]), sys.argv[5]
port_pid = {}
for l in open(sys.argv[2]):
    m = re.search(r"%s:(\d+)\s.*pid=(\d+)," % re.escape(ip), l)
    if m: port_pid.setdefault(m.group(1), set()).add(m.group(2))
n_old = 0; n_new = 0; unknown = 0; first = []
for p, v in f.items():
    if not p.startswith("/a/"): continue
    for t, ra in v:
        h, port = ra.rsplit(":", 1)
        if h != ip or t < ta: continue
        who = port_pid.get(port, set())
        if old in who: n_old += 1; first.append(p)
        elif who: n_new += 1
        else: unknown += 1
print(n_old, n_new, unknown, " ".join(first[:5]))
PY
read -r n_old n_new n_unknown old_urls < "$work/a.old" || true
check "A: the draining old process ($old) made no origin fetch after the hand-off: $n_old (the successor $new: $n_new, not attributed: $n_unknown${old_urls:+; $old_urls})" [ "$n_old" = 0 ]
check "A: every ring has 3 members again (20 s)" wait_until 20 ring_is 3 1 2 3

# ---- B: a fourth node joins
echo "== B: a fourth node starts and joins under load"
load b 16 1 2 3
sleep 4
tb=$(now)
start_node 4
sleep 1.5
purge b 1
check "B: every ring has 4 members (30 s)" wait_until 30 ring_is 4 1 2 3 4
wait_load
analyse b "$tb" 4 join
echo "   URLs filled per host: $(fillers b | tr '\n' ' ')"

# ---- C: the fourth node stops (SIGTERM)
echo "== C: the fourth node stops (SIGTERM) under load"
load c 16 1 2 3 4
sleep 4
tc=$(now)
p4=$(pid_of 4)
kill "$p4"
sleep 0.3
purge c 1
wait_load
stopped() { ! kill -0 "$p4" 2>/dev/null; }
check "C: n4 exits within 20 s" wait_until 20 stopped
analyse c "$tc" 4 stop
check "C: every ring has 3 members (20 s)" wait_until 20 ring_is 3 1 2 3

# ---- D: kill -9 a node
echo "== D: kill -9 of n2 under load (the load on n1 and n3)"
load d 20 1 3
sleep 4
td=$(now)
kill -9 "$(pid_of 2)"
sleep 0.3
purge d 1
wait_load
analyse d "$td" 2 kill
check "D: the survivors' rings have 2 members (30 s)" wait_until 30 ring_is 2 1 3

echo "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
  for i in 1 2 3 4; do echo "-- n$i.log (last 10 lines)"; tail -n 10 "$work/n$i.log"; done
  exit 1
fi
