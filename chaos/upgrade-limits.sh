#!/usr/bin/env bash
# chaos/upgrade-limits.sh: graceful upgrades of a global rate-limit key's
# owner under load. Three pingora-node "hosts" (network namespaces on one
# bridge, one shared node file, as chaos/multihost.sh) with a global rule
# of 1,000/s on one key; a load generator offers 3,000/s spread over the
# three proxies for 30 s, and the key's owner is upgraded (kill -USR2) three
# times, each time with a slow request (12 s) in flight that keeps the old
# process draining. Checks: no request fails (every answer is 200 or 429);
# no wall-clock second (the owner's windows) from the third on admits more
# than the README's bound
# (L + N·2⌈L·T/(N·P)⌉ = 1,102, plus 1 % for a second straddling two
# windows); within 2.5 s of each upgrade the draining old process holds no
# connection on the cluster port (the other nodes' RPC connections got
# goaway and dialled the successor) while it still runs; the other nodes'
# rings never change (the successor is ready from its first gossip
# message, so the key never moves). Prints the
# admitted requests of every second.
# Prints one line per check and "N passed, M failed"; exits 1 on a failure.
#
#   chaos/upgrade-limits.sh       (needs root; prints SKIP and exits 0 without)
#   UPGRADE=other chaos/upgrade-limits.sh   (upgrade a node that does not own the key)
#
# Bounded (every wait has a deadline, about 1.5 minutes in all); on exit it
# stops every process it started by PID (the successors by the pid file's
# PIDs) and deletes the namespaces, the bridge, the iptables rule and the
# files it created. KEEP=1 keeps the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

. chaos/netns.sh
netns_args "$@"
netns_init upgrade-limits pgul 215 ss
netns_pids() { cat "$work"/n[123].pids 2>/dev/null || true; }

echo "== build"
go build -o "$work/pingora-node" ./cmd/pingora-node
mkdir -p "$work/tools"
cat > "$work/tools/main.go" <<'GO'
package main

// origin ADDR: answers "ok", and /slow with a byte a second for 12 s.
// load RATE SECS URL...: offers RATE requests/s round-robin over the
// URLs (header x-k: k1) and prints, per second, the answers 200 and 429
// and the failures (other statuses, transport errors, requests that
// could not be started), then the answers 200 of each URL, then the
// slowest answer of each URL in ms.
import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if os.Args[1] == "origin" {
		http.ListenAndServe(os.Args[2], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				for i := 0; i < 12; i++ {
					w.Write([]byte("."))
					w.(http.Flusher).Flush()
					time.Sleep(time.Second)
				}
				return
			}
			w.Write([]byte("ok"))
		}))
		return
	}
	rate, _ := strconv.Atoi(os.Args[2])
	secs, _ := strconv.Atoi(os.Args[3])
	urls := os.Args[4:]
	type bucket struct {
		ok, limited, failed atomic.Int64
		okAt                [8]atomic.Int64 // admitted per URL
		slowAt              [8]atomic.Int64 // the slowest answer per URL, µs
	}
	b := make([]bucket, secs+2)
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	jobs := make(chan int, 4096)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 96; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				u := urls[j]
				req, _ := http.NewRequest("GET", u, nil)
				req.Header.Set("x-k", "k1")
				t0 := time.Now()
				resp, err := cl.Do(req)
				// Counted in the wall-clock second it was answered in: the
				// owner's windows are whole seconds of its (this host's) clock.
				s := min(int(time.Now().Unix()-start.Unix()), secs)
				if err != nil {
					b[s].failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				for us := time.Since(t0).Microseconds(); ; {
					if old := b[s].slowAt[j%8].Load(); us <= old || b[s].slowAt[j%8].CompareAndSwap(old, us) {
						break
					}
				}
				switch resp.StatusCode {
				case 200:
					b[s].ok.Add(1)
					b[s].okAt[j%8].Add(1)
				case 429:
					b[s].limited.Add(1)
				default:
					b[s].failed.Add(1)
				}
			}
		}()
	}
	fmt.Printf("start %d\n", start.Unix())
	t := time.NewTicker(time.Millisecond)
	sent, i := 0, 0
	for now := range t.C {
		el := now.Sub(start)
		if el >= time.Duration(secs)*time.Second {
			break
		}
		for want := int(el.Seconds() * float64(rate)); sent < want; sent++ {
			select {
			case jobs <- i % len(urls):
			default:
				b[min(int(now.Unix()-start.Unix()), secs)].failed.Add(1)
			}
			i++
		}
	}
	close(jobs)
	wg.Wait()
	for s := 0; s <= secs; s++ {
		fmt.Printf("sec %d %d %d %d", s, b[s].ok.Load(), b[s].limited.Load(), b[s].failed.Load())
		for j := range urls {
			fmt.Printf(" %d", b[s].okAt[j%8].Load())
		}
		for j := range urls {
			fmt.Printf(" %.1f", float64(b[s].slowAt[j%8].Load())/1000)
		}
		fmt.Println()
	}
}
GO
(cd "$work/tools" && printf 'module tools\n\ngo 1.21\n' > go.mod && go build -o "$work/tool" .)

netns_hosts
"$work/tool" origin "$net.254:28091" & pids+=($!)
cat > "$work/cluster.yaml" <<YAML
upstreams:
  - name: web
    peers: [{addr: $net.254:28091}]
routes:
  - upstream: web
rate_limits:
  - name: g
    key: "header:x-k"
    limit: 1000
    period: 1s
    scope: global
YAML
cat > "$work/node.yaml" <<YAML
admin_addr: 0.0.0.0:9090
admin_token: upgrade-$$-$RANDOM
listeners:
  - {name: http, addr: 0.0.0.0:8080}
gossip_addr: 0.0.0.0:7946
# lan, as in production: between the old process stopping gossip and its
# successor starting it, the fast profile's sub-second suspicion declared
# the node dead under a loaded CI machine, and the ring's flap moved the
# key to another owner for ~100 ms (1,117 admitted that second)
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

formed() { for i in 1 2 3; do
  [ "$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "http://$net.$i:9090/readyz")" = 200 ] || return 1
  [ "$(status "$i" | field 'print(len((d.get("ring") or {}).get("members") or []))')" = 3 ] || return 1; done; }
check "cluster forms: 3 ready nodes, every ring has 3 members (40 s)" wait_until 40 formed
owner=""
find_owner() {
  curl -s --max-time 1 -o /dev/null -H 'x-k: k1' "http://$net.1:8080/"
  owner=$(status 1 | field 'print(d["rate_limits"]["rules"][0]["top"][0]["owner"])')
  [ -n "$owner" ]
}
check "the key's owner is named in /status (10 s)" wait_until 10 find_owner
o=${owner#n}
echo "   owner of the key: $owner"
if [ "${UPGRADE:-owner}" = other ]; then # upgrade a node that does not own the key instead
  o=$(( o % 3 + 1 ))
  echo "   UPGRADE=other: upgrading n$o"
fi

cluster_pids() { # the PIDs holding established connections on n$o's cluster port
  ip netns exec "$(ns "$o")" ss -tnpH state established '( sport = :7947 )' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}
# the other nodes' log lines so far: their rings must not change from here
for i in 1 2 3; do eval "logbase$i=\$(wc -l < \"\$work/n\$i.log\")"; done
"$work/tool" load 3000 30 "http://$net.1:8080/" "http://$net.2:8080/" "http://$net.3:8080/" > "$work/load.txt" &
load=$!; pids+=($load)
t0=$(date +%s.%N)
: > "$work/upgrades.txt"
for at in 8 15 22; do
  while python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $t0 < $at else 1)"; do sleep 0.05; done
  curl -s --max-time 20 -o /dev/null "http://$net.$o:8080/slow" & pids+=($!)
  sleep 0.3  # the slow request reaches the old process
  old=$(cat "$work/n$o.pid")
  before=$(cluster_pids | tr '\n' ' ')
  echo "$(date +%s.%N) $old" >> "$work/upgrades.txt"
  kill -USR2 "$old"
  new_pid() { [ "$(cat "$work/n$o.pid" 2>/dev/null)" != "$old" ]; }
  wait_until 10 new_pid || true
  new=$(cat "$work/n$o.pid"); echo "$new" >> "$work/n$o.pids"
  gone() { ! cluster_pids | grep -qx "$old"; }
  t1=$(date +%s.%N)
  if wait_until 3 gone; then
    took=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t1))")
    alive=no; kill -0 "$old" 2>/dev/null && alive=yes
    check "upgrade at ${at} s: the old process ($old, still draining: $alive) holds no cluster-port connection ${took} s after the successor ($new) serves" [ "$alive" = yes ]
  else
    held=$(ip netns exec "$(ns "$o")" ss -tnpH state established '( sport = :7947 )' | grep "pid=$old," | awk '{print $4}' | tr '\n' ' ')
    gone_at=""; wait_until 12 gone && gone_at=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t1))")
    check "upgrade at ${at} s: the old process ($old) holds no cluster-port connection within 3 s (it held connections from ${held}until ${gone_at:-more than 15} s)" false
  fi
done
wait "$load" || true
python3 - "$work/load.txt" "$work/upgrades.txt" > "$work/figures.txt" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
start = int([l for l in lines if l.startswith("start")][0].split()[1])
secs = [tuple(map(int, l.split()[1:5])) for l in lines if l.startswith("sec")]
ups = [float(l.split()[0]) - start for l in open(sys.argv[2]) if l.strip()]
print("admitted per second: " + " ".join(str(s[1]) for s in secs))
print("upgrades at " + ", ".join("%.1f s" % u for u in ups) + "; admitted in their second and the next: " +
      ", ".join("%d %d" % (secs[int(u)][1], secs[int(u) + 1][1]) for u in ups if int(u) + 1 < len(secs)))
whole = secs[2:-2]  # the first two and the partial last ones left out
print("failed", sum(s[3] for s in secs), "max", max(s[1] for s in whole), "min", min(s[1] for s in whole))
PY
sed 's/^/   /' "$work/figures.txt"
fails=$(awk '/^failed/ {print $2}' "$work/figures.txt")
max=$(awk '/^failed/ {print $4}' "$work/figures.txt")
check "no request failed (every answer 200 or 429): $fails failed" [ "$fails" = 0 ]
flaps=""
for i in 1 2 3; do
  [ "$i" = "$o" ] && continue
  base=$(eval echo "\$logbase$i")
  c=$(tail -n +"$((base + 1))" "$work/n$i.log" | grep -c '"msg":"membership: ring changed"' || true)
  flaps="$flaps n$i:$c"
done
check "no ring changed while the owner was upgraded (the successor is ready from its first gossip): ring changes on the others:$flaps" \
  [ -z "$(echo "$flaps" | tr ' ' '\n' | grep -v ':0$' | grep . || true)" ]
check "no whole second from the third admits over 1,112 (L + 102, and 1 % across windows): max $max" [ "$max" -le 1112 ]

echo "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
  for i in 1 2 3; do echo "-- n$i.log (last 10 lines)"; tail -n 10 "$work/n$i.log"; done
  exit 1
fi
