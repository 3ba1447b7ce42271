#!/usr/bin/env bash
# chaos/upgrade-fail.sh: graceful upgrades whose successor dies, under
# load. Three pingora-node "hosts" (network namespaces on one bridge, one
# shared node file, as chaos/multihost.sh); an origin on the bridge that
# counts its fetches per second; one route with the cluster cache
# (cache.shared) and a global rate limit of 200/s on one key (path /lim,
# header x-k). A load tool offers, round-robin over the three proxies,
# 600/s on the limited key and 150/s over 100 cacheable URLs (a third of
# those on a new connection each), and prints
# per second the admitted, limited and failed requests, the cache's hits
# and the origin's fetches. On the key's owner (UPGRADE=other: another
# node) five upgrades, each under its own load:
#   a  kill -9 of the successor once it connected (the old process
#      logged "successor connected"), before it asked for raft and gossip
#   b  kill -9 of the successor once the old process released raft and
#      gossip (its UDP gossip socket closed, or /status says "handing
#      over to its successor"), before the successor said it serves
#   d  as b, later: the successor's proxy already serves, its gossip
#      not yet
#   n  a normal upgrade (kill -USR2), which must succeed after them
#   c  kill -9 of the successor (started by kill -USR2) 0.3 s after it serves, while the old
#      process drains: the old process does not come back, the node is
#      down until an operator starts it again (printed: what the pid
#      file, /readyz and the other nodes say)
# (a, b and d start the successor themselves, "run --upgrade" under
# strace, which holds it HOLD (2) s at the syscall named, its kill -9
# landing as the hold ends: the windows are some milliseconds wide
# otherwise.) Checks for a, b and d: the old process logged the failed
# upgrade at the step meant; no request fails; the node is ready again within 10 s, its
# gossip sees 3 alive members, its ring has 3 members, raft names it a
# voter and knows a leader; admitted per second on the key stays within
# [0.8 L, 1.2 L] for every whole second; at most 5 origin fetches in all
# after the kill (the cache keeps its hits); the other nodes' rings never
# change; for n: the successor serves and the same hold. Prints one line per check, the per-second figures
# of each phase, and "N passed, M failed"; exits 1 on a failure.
#
#   chaos/upgrade-fail.sh          (needs root; prints SKIP and exits 0 without)
#   PHASE=40 chaos/upgrade-fail.sh (40 s of load per phase instead of 14: about 4 minutes)
#   UPGRADE=other chaos/upgrade-fail.sh  (upgrade a node that does not own the key)
#   PHASES="b n" chaos/upgrade-fail.sh   (some phases, in that order; c last: it ends the node)
#   HOLD=12 PHASE=30 PHASES=b chaos/upgrade-fail.sh  (a successor stalled past the others'
#      suspicion: the key's limit doubles while it stalls, see chaos/README.md)
#
# Bounded (about 1.5 minutes, every wait has a deadline); on exit it stops
# every process it started by PID (successors by the PIDs they logged) and
# deletes the namespaces, the bridge, the iptables rule and the files it
# created. KEEP=1 keeps the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

. chaos/netns.sh
netns_args "$@"
netns_init upgrade-fail pguf 218 ss strace
netns_pids() { cat "$work"/n[123].pids 2>/dev/null || true; }
PHASE=${PHASE:-14}
HOLD=${HOLD:-2}
L=200

echo "== build"
go build -o "$work/pingora-node" ./cmd/pingora-node
mkdir -p "$work/tools"
cat > "$work/tools/main.go" <<'GO'
package main

// origin ADDR: /lim answers "ok" (no-store); /c/N answers N, cacheable
// for 10 minutes, and counts the fetch in its second; GET /_fetches
// prints the fetches per unix second ("SEC N" lines).
//
// load SECS LRATE CRATE PROXY...: offers LRATE requests/s to /lim (header
// x-k: k1) and CRATE/s to /c/0../c/99, each round-robin over the
// proxies, and prints "start UNIX", then per second "sec S admitted
// limited failed hits cached_failed failed_by_proxy...", then up to 5
// distinct failures.
import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func origin(addr string) {
	var mu sync.Mutex
	per := map[int64]int{}
	http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/_fetches":
			mu.Lock()
			var ks []int64
			for k := range per {
				ks = append(ks, k)
			}
			sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
			for _, k := range ks {
				fmt.Fprintf(w, "%d %d\n", k, per[k])
			}
			mu.Unlock()
		case strings.HasPrefix(r.URL.Path, "/c/"):
			mu.Lock()
			per[time.Now().Unix()]++
			mu.Unlock()
			w.Header().Set("Cache-Control", "max-age=600")
			w.Write([]byte(r.URL.Path))
		default:
			w.Header().Set("Cache-Control", "no-store")
			w.Write([]byte("ok"))
		}
	}))
}

type bucket struct {
	adm, lim, fail, hit, cfail atomic.Int64
	byProxy                    [3]atomic.Int64
}

func load(secs, lrate, crate int, proxies []string) {
	b := make([]bucket, secs+2)
	var emu sync.Mutex
	errs := map[string]int{}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32, MaxConnsPerHost: 32}}
	// a third of the cached URLs' requests on a new connection each: the
	// listeners' accept queues, which the successor shares, see traffic
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	type job struct{ lim bool; p, i int }
	jobs := make(chan job, 4096)
	var wg sync.WaitGroup
	start := time.Now()
	fail := func(s int, j job, what string) {
		if j.lim {
			b[s].fail.Add(1)
		} else {
			b[s].cfail.Add(1)
		}
		b[s].byProxy[j.p%3].Add(1)
		emu.Lock()
		errs[fmt.Sprintf("proxy %d: %s", j.p+1, what)]++
		emu.Unlock()
	}
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				u := proxies[j.p] + "/lim"
				if !j.lim {
					u = fmt.Sprintf("%s/c/%d", proxies[j.p], j.i%100)
				}
				req, _ := http.NewRequest("GET", u, nil)
				req.Header.Set("x-k", "k1")
				c := cl
				if !j.lim && j.i%3 == 0 {
					c = fresh
				}
				resp, err := c.Do(req)
				s := min(int(time.Now().Unix()-start.Unix()), secs)
				if err != nil {
					fail(s, j, err.Error())
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					fail(s, j, "body: "+err.Error())
				case j.lim && resp.StatusCode == 200:
					b[s].adm.Add(1)
				case j.lim && resp.StatusCode == 429:
					b[s].lim.Add(1)
				case !j.lim && resp.StatusCode == 200:
					if strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
						b[s].hit.Add(1)
					}
				default:
					fail(s, j, "status "+strconv.Itoa(resp.StatusCode))
				}
			}
		}()
	}
	fmt.Printf("start %d\n", start.Unix())
	t := time.NewTicker(time.Millisecond)
	ls, cs := 0, 0
	for now := range t.C {
		el := now.Sub(start)
		if el >= time.Duration(secs)*time.Second {
			break
		}
		s := min(int(now.Unix()-start.Unix()), secs)
		for want := int(el.Seconds() * float64(lrate)); ls < want; ls++ {
			select {
			case jobs <- job{true, ls % len(proxies), ls}:
			default:
				fail(s, job{true, ls % len(proxies), ls}, "saturated")
			}
		}
		for want := int(el.Seconds() * float64(crate)); cs < want; cs++ {
			select {
			case jobs <- job{false, cs % len(proxies), cs}:
			default:
				fail(s, job{false, cs % len(proxies), cs}, "saturated")
			}
		}
	}
	close(jobs)
	wg.Wait()
	for s := 0; s <= secs; s++ {
		fmt.Printf("sec %d %d %d %d %d %d %d %d %d\n", s, b[s].adm.Load(), b[s].lim.Load(), b[s].fail.Load(),
			b[s].hit.Load(), b[s].cfail.Load(), b[s].byProxy[0].Load(), b[s].byProxy[1].Load(), b[s].byProxy[2].Load())
	}
	n := 0
	for e, c := range errs {
		if n++; n > 5 {
			break
		}
		fmt.Printf("error %d× %s\n", c, e)
	}
}

func main() {
	switch os.Args[1] {
	case "origin":
		origin(os.Args[2])
	case "load":
		secs, _ := strconv.Atoi(os.Args[2])
		lrate, _ := strconv.Atoi(os.Args[3])
		crate, _ := strconv.Atoi(os.Args[4])
		load(secs, lrate, crate, os.Args[5:])
	}
}
GO
(cd "$work/tools" && printf 'module tools\n\ngo 1.21\n' > go.mod && gofmt -w main.go && go build -o "$work/tool" .)

netns_hosts
origin=$net.254:34881
"$work/tool" origin "$origin" & pids+=($!)
cat > "$work/cluster.yaml" <<YAML
upstreams:
  - name: web
    peers: [{addr: $origin}]
routes:
  - upstream: web
    cache: {enabled: true, shared: true}
rate_limits:
  - name: g
    key: "header:x-k"
    match: {path_prefix: /lim}
    limit: $L
    period: 1s
    scope: global
YAML
cat > "$work/node.yaml" <<YAML
admin_addr: 0.0.0.0:9090
admin_token: upgrade-fail-$$-$RANDOM
listeners:
  - {name: http, addr: 0.0.0.0:8080}
gossip_addr: 0.0.0.0:7946
# lan, as in production (and as upgrade-limits.sh)
gossip_profile: lan
join: [$net.1:7946, $net.2:7946, $net.3:7946]
bootstrap_expect: 3
cluster_config: cluster.yaml
log_level: info
YAML
echo "== start n1 n2 n3"
for i in 1 2 3; do
  ip netns exec "$(ns "$i")" "$work/pingora-node" run --config "$work/node.yaml" --name "n$i" \
    --data-dir "$work/n$i-data" --upgrade-socket "$work/n$i.sock" --pid-file "$work/n$i.pid" >> "$work/n$i.log" 2>&1 &
  echo $! > "$work/n$i.pids"
done

ready() { [ "$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "http://$net.$1:9090/readyz")" = 200 ]; }
ring_size() { status "$1" | field 'print(len((d.get("ring") or {}).get("members") or []))'; }
formed() { for i in 1 2 3; do ready "$i" && [ "$(ring_size "$i")" = 3 ] || return 1; done; }
check "cluster forms: 3 ready nodes, every ring has 3 members (40 s)" wait_until 40 formed
owner=""
find_owner() {
  curl -s --max-time 1 -o /dev/null -H 'x-k: k1' "http://$net.1:8080/lim"
  owner=$(status 1 | field 'print(d["rate_limits"]["rules"][0]["top"][0]["owner"])')
  [ -n "$owner" ]
}
check "the key's owner is named in /status (10 s)" wait_until 10 find_owner
o=${owner#n}
[ "${UPGRADE:-owner}" = other ] && o=$((o % 3 + 1))
echo "   owner of the key: $owner; upgrading n$o"

pid_of() { cat "$work/n$o.pid" 2>/dev/null || true; }
# whole-node health as the old process sees it, in one line
health() {
  status "$o" | field 'r = d.get("raft") or {}
m = [x for x in d.get("members") or [] if x.get("state") == "alive"]
print("ready=%s members_alive=%d ring=%d raft=%s leader=%s voter=%s note=%r" % (d["node"]["ready"], len(m),
  len((d.get("ring") or {}).get("members") or []), r.get("state"), r.get("leader_id") or "-",
  any(v.get("id") == d["node"]["name"] for v in r.get("voters") or []), d["node"].get("ready_note", "")[:60]))'
}
whole() { health | grep -q "ready=True members_alive=3 ring=3 raft=\(Leader\|Follower\) leader=n[123] voter=True"; }
gossip_held_by() { ip netns exec "$(ns "$o")" ss -unpaH '( sport = :7946 )' | grep -q "pid=$1,"; }
released() { # old PID: the old process let go of gossip, or says so
  ! gossip_held_by "$1" || status "$o" | grep -q 'handing over to its successor'
}
succ_pid() { # the successor PID the old process (PID $1) logged after log line $2
  tail -n +"$(($2 + 1))" "$work/n$o.log" | grep '"successor connected' | grep -o '"successor_pid":[0-9]*' | head -1 | cut -d: -f2
}

phase() { # NAME: one upgrade of n$o under load, the kill as NAME says
  local p=$1 old base t0 succ="" tk="" missed="" up
  echo "== phase $p"
  "$work/tool" load "$PHASE" 600 150 "http://$net.1:8080" "http://$net.2:8080" "http://$net.3:8080" > "$work/$p.load" &
  loadpid=$!; pids+=($loadpid)
  sleep 4
  old=$(pid_of); base=$(wc -l < "$work/n$o.log")
  for i in 1 2 3; do eval "logbase$i=\$(wc -l < \"\$work/n\$i.log\")"; done
  t0=$(date +%s.%N)
  case $p in
    a | b | d) # the successor, started as "run --upgrade" does, held 2 s at its step by
      # strace (a kill -9 during the hold ends it as the hold ends, before
      # the syscall; strace's signal=SIGSTOP did not stop a Go process)
      # every message it reads is held: the listeners (the old process
      # logged "successor connected" before it sent them), and the kill
      # lands before it asks for "release" (strace counts "when" per
      # thread, and the old process waits only 1 s for "hello")
      local inject=recvmsg:delay_exit=$((HOLD * 1000000))
      [ "$p" = b ] && inject=flock:delay_enter=$((HOLD * 1000000)):when=1 # its data directory's lock, after "released"
      [ "$p" = d ] && inject=listen:delay_enter=$((HOLD * 1000000)) # gossip's TCP socket, after "released" and its proxy started
      ip netns exec "$(ns "$o")" strace -f -qq -o /dev/null -e trace="${inject%%:*}" -e inject="$inject" \
        "$work/pingora-node" run --upgrade --config "$work/node.yaml" --name "n$o" --data-dir "$work/n$o-data" \
        --upgrade-socket "$work/n$o.sock" --pid-file "$work/n$o.pid" >> "$work/n$o.log" 2>&1 &
      echo $! >> "$work/n$o.pids" ;;
    *) kill -USR2 "$old" ;;
  esac
  got_succ() { succ=$(succ_pid "$old" "$base"); [ -n "$succ" ]; }
  wait_until 10 got_succ || true
  [ -n "$succ" ] && echo "$succ" >> "$work/n$o.pids"
  case $p in
    a) sleep 0.3; [ -n "$succ" ] && kill -9 "$succ" && tk=$(date +%s.%N) ;;
    b | d) rel_or_served() { released "$old" || [ "$(pid_of)" != "$old" ]; }
       wait_until 3 rel_or_served || missed="the old process did not release within 3 s"
       if [ "$(pid_of)" != "$old" ]; then missed="the successor served before the release was seen"; fi
       sleep 0.3; [ -n "$succ" ] && kill -9 "$succ" && tk=$(date +%s.%N) ;;
    c) served() { [ "$(pid_of)" = "$succ" ]; }
       wait_until 20 served || missed="the successor did not serve within 20 s"
       sleep 0.3; [ -n "$succ" ] && kill -9 "$succ" && tk=$(date +%s.%N) ;;
    n) served() { [ "$(pid_of)" = "$succ" ]; }
       wait_until 20 served || missed="the successor did not serve within 20 s" ;;
  esac
  echo "   old $old, successor ${succ:-none}; upgrade at $(python3 -c "print('%.1f' % ($t0 - $(head -c 20 "$work/$p.load" | awk '{print $2}')))") s of the load${tk:+, killed $(python3 -c "print('%.2f' % ($tk - $t0))") s after the USR2}"
  case $p in
    a | b | d)
      local want=release
      [ "$p" != a ] && want=serving
      failed_at() { tail -n +"$((base + 1))" "$work/n$o.log" | grep '"upgrade failed' | grep -q "before \\\\\"$want\\\\\""; }
      check "$p: the successor was killed at its step (${missed:-the old process logged: successor went away before \"$want\"}) ($((HOLD + 5)) s)" wait_until $((HOLD + 5)) failed_at
      local t1 took
      t1=$(date +%s.%N) # about when the old process saw the successor die
      if wait_until 10 whole; then took=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t1))"); else took=""; fi
      check "$p: the old process whole again ${took:+${took} s after it logged the failure }(ready, 3 alive members, ring of 3, raft voter with a leader): $(health)" [ -n "$took" ]
      ;;
    n) check "n: a normal upgrade afterwards: the successor ($succ) serves${missed:+: $missed}" [ -z "$missed" ] ;;
    c)
      gone() { ! kill -0 "$old" 2>/dev/null; }
      wait_until 15 gone || true
      up=no; ready "$o" && up=yes
      local view
      sleep 5
      view=$(status $(( o % 3 + 1 )) | field "print(' '.join('%s:%s' % (m['name'], m['state']) for m in d.get('members') or []))")
      echo "   c: what an operator sees 5 s later: old process $old $(kill -0 "$old" 2>/dev/null && echo still runs || echo exited), successor $succ killed;" \
        "pid file says $(pid_of) ($(kill -0 "$(pid_of)" 2>/dev/null && echo alive || echo dead)); /readyz answers: $up; another node's members: $view"
      check "c: the old process does not come back after its successor died serving (it exited; the node is down, as expected)" gone
      ;;
  esac
  wait "$loadpid" || true
  curl -s --max-time 5 "http://$origin/_fetches" > "$work/$p.fetches"
  python3 - "$work/$p.load" "$work/$p.fetches" "$t0" "$p" "$L" "${tk:-$t0}" > "$work/$p.fig" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
start = int([l for l in lines if l.startswith("start")][0].split()[1])
secs = [list(map(int, l.split()[1:])) for l in lines if l.startswith("sec")]
fe = dict(tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip())
t0, p, L, tk = float(sys.argv[3]) - start, sys.argv[4], int(sys.argv[5]), float(sys.argv[6]) - start
print("   admitted/s: " + " ".join(str(s[1]) for s in secs))
print("   cache hits/s: " + " ".join(str(s[4]) for s in secs))
print("   origin fetches/s: " + " ".join(str(fe.get(start + s[0], 0)) for s in secs))
print("   failed/s (limited key + cached URLs): " + " ".join(str(s[3] + s[5]) for s in secs))
for l in lines:
    if l.startswith("error"): print("   " + l)
whole = secs[1:-1]
after = sum(v for k, v in fe.items() if start + int(tk) + 1 <= k <= start + len(secs))
print("figures failed %d max %d min %d fetched_after %d byproxy %s" % (sum(s[3] + s[5] for s in secs),
      max(s[1] for s in whole), min(s[1] for s in whole), after, [sum(s[6 + i] for s in secs) for i in range(3)]))
PY
  grep -v '^figures' "$work/$p.fig"
  read -r _ _ fails _ max _ min _ fetched _ byp < <(grep '^figures' "$work/$p.fig")
  case $p in
    c) echo "   c: $fails requests failed (by proxy n1 n2 n3: $byp), the upgraded node's proxy after its successor died" ;;
    *)
      check "$p: no request failed: $fails (by proxy n1 n2 n3: $byp)" [ "$fails" = 0 ]
      check "$p: admitted/s on the key within [$((L * 8 / 10)), $((L * 12 / 10))] every whole second: min $min max $max" \
        [ "$min" -ge $((L * 8 / 10)) -a "$max" -le $((L * 12 / 10)) ]
      check "$p: the cache keeps its hits: $fetched origin fetches from the second after the upgrade (at most 5)" [ "$fetched" -le 5 ]
      local flaps="" i c
      for i in 1 2 3; do
        [ "$i" = "$o" ] && continue
        c=$(tail -n +"$(($(eval echo "\$logbase$i") + 1))" "$work/n$i.log" | grep -c '"msg":"membership: ring changed"' || true)
        flaps="$flaps n$i:$c"
      done
      check "$p: the other nodes' rings never changed: ring changes$flaps" [ -z "$(echo "$flaps" | tr ' ' '\n' | grep -v ':0$' | grep . || true)" ]
      ;;
  esac
}

for p in ${PHASES:-a b d n c}; do phase "$p"; done

echo "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
  for i in 1 2 3; do echo "-- n$i.log (last 8 lines)"; tail -n 8 "$work/n$i.log"; done
  exit 1
fi
