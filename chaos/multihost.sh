#!/usr/bin/env bash
# chaos/multihost.sh: three pingora-node "hosts" (network namespaces on one
# bridge, each with its own 10.x address), each running the real binary with
# ONE shared node file that binds 0.0.0.0 and joins every server; only the
# name and the data dir differ, given as flags. Checks that a cluster forms
# with 3 voters and one leader, that every node advertises its own private
# address (never loopback or a wildcard), that the seeded config is
# replicated and a request is proxied on each host, and that a config write
# sent to a follower is forwarded to the leader and served everywhere.
# Then a client on another address holds idle connections on the leader's
# gossip port and on its cluster port (raft and RPC) while a follower is
# killed and restarted joining through the leader alone: it must rejoin and
# its write reach the leader (one address may hold only a share of each).
# Then: a node whose cluster address would be loopback refuses to start,
# and on a second cluster whose admin API is on loopback, a write sent to a
# follower still reaches the leader: over the cluster port (RPC and raft
# share it, issue 13), not the leader's admin API.
# Prints one line per check and "N passed, M failed"; exits 1 on a failure.
#
#   chaos/multihost.sh            (needs root; prints SKIP and exits 0 without)
#
# Bounded (every wait has a deadline); on exit it stops every process it
# started by PID and deletes the namespaces, the bridge, the iptables rule
# and the files it created. KEEP=1 keeps the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

. chaos/netns.sh
netns_args "$@"
netns_init multihost pgmh 213

echo "== build"
go build -o "$work/pingora-node" ./cmd/pingora-node
cat > "$work/origin.go" <<'GO'
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	name := os.Args[2]
	http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }))
}
GO
go build -o "$work/origin" "$work/origin.go"

netns_hosts

# The origins live on the bridge address, reached by every host.
"$work/origin" "$net.254:18081" a & pids+=($!)
"$work/origin" "$net.254:18082" b & pids+=($!)
cluster() { printf 'upstreams:\n  - name: web\n    peers: [{addr: %s}]\nroutes:\n  - upstream: web\n' "$1"; }
cluster "$net.254:18081" > "$work/cluster.yaml"
cluster "$net.254:18082" > "$work/b.yaml"

token=multihost-$$-$RANDOM
# The one node file every host runs: no name, no address of its own.
cat > "$work/node.yaml" <<YAML
admin_addr: 0.0.0.0:9090
admin_token: $token
listeners:
  - {name: http, addr: 0.0.0.0:8080, h2c: true}
gossip_addr: 0.0.0.0:7946
gossip_profile: fast
join: [$net.1:7946, $net.2:7946, $net.3:7946]
bootstrap_expect: 3
cluster_config: cluster.yaml
log_level: info
YAML
echo "-- node.yaml (shared)"; sed 's/^/   /' "$work/node.yaml"

echo "== start n1 n2 n3 (one per namespace)"
for i in 1 2 3; do
  ip netns exec "$(ns "$i")" "$work/pingora-node" run --config "$work/node.yaml" \
    --name "n$i" --data-dir "$work/n$i-data" --upgrade-socket "$work/n$i.sock" > "$work/n$i.log" 2>&1 &
  pids+=($!)
done

voters3() { for i in 1 2 3; do
  [ "$(status "$i" | field 'r=d.get("raft") or {}; print(len(r.get("voters") or []), bool(r.get("leader_id")))')" = "3 True" ] || return 1; done; }
one_leader() {
  local l; l=$(for i in 1 2 3; do status "$i" | field 'print((d.get("raft") or {}).get("leader_id",""))'; done | sort -u)
  [ "$(echo "$l" | wc -l)" = 1 ] && [ -n "$l" ]
}
version_all() { for i in 1 2 3; do
  [ "$(status "$i" | field 'print((d.get("config") or {}).get("version",0))')" = "$1" ] || return 1; done; }
proxied_all() { for i in 1 2 3; do [ "$(curl -s --max-time 2 "http://$net.$i:8080/")" = "$1" ] || return 1; done; }
h2c_all() { for i in 1 2 3; do [ "$(curl -s --max-time 2 --http2-prior-knowledge "http://$net.$i:8080/")" = "$1" ] || return 1; done; }
# Every member, as seen by every node, advertises its cluster port (raft
# on it too), admin and proxy addresses on its own host's address.
advertised_ok() { for i in 1 2 3; do
  status "$i" | field "
bad=[]
for m in d.get('members') or []:
    ip='$net.'+m['name'][1:]
    a=m['meta']['addrs']
    for k,v in [('cluster',a.get('cluster','')),('admin',a.get('admin',''))]+[('proxy',p) for p in a.get('proxy') or []]:
        if v.rsplit(':',1)[0]!=ip: bad.append((m['name'],k,v))
    if a.get('raft')!=a.get('cluster'): bad.append((m['name'],'raft not on the cluster port',a.get('raft')))
    if m['addr'].rsplit(':',1)[0]!=ip: bad.append((m['name'],'gossip',m['addr']))
print('ok' if len(d.get('members') or [])==3 and not bad else bad)" | grep -qx ok || return 1; done; }
leader_name() { status 1 | field 'print((d.get("raft") or {}).get("leader_id",""))'; }

check "cluster forms: every node sees 3 voters and a leader (30 s)" wait_until 30 voters3
check "one leader, the same on every node" one_leader
check "every node advertises its own $net.x address for gossip, the cluster port (raft too), admin and proxy" wait_until 10 advertised_ok
echo "-- n2's view of the members (gossiped addresses)"
status 2 | field '
for m in d.get("members") or []:
    a=m["meta"]["addrs"]
    print("   %s gossip=%s cluster=%s raft=%s admin=%s proxy=%s state=%s" % (m["name"], m["addr"], a.get("cluster"), a.get("raft"), a.get("admin"), ",".join(a.get("proxy") or []), m["meta"]["state"]))'
check "seeded config (v1) replicated to every node (10 s)" wait_until 10 version_all 1
check "a request is proxied on each host (HTTP/1.1)" wait_until 10 proxied_all a
check "a request is proxied on each host (h2c)" h2c_all a

L=$(leader_name)
F=""; for i in 1 2 3; do [ "n$i" != "$L" ] && { F=$i; break; }; done
put_follower() {
  code=$(curl -s --max-time 10 -o "$work/put.out" -w '%{http_code}' -X PUT -H "Authorization: Bearer $token" \
    --data-binary @"$work/b.yaml" "http://$net.$F:9090/v1/config")
  echo "   PUT /v1/config on follower n$F (leader $L): HTTP $code $(tr -d '\n' < "$work/put.out" | cut -c1-160)"
  [ "$code" = 200 ]
}
check "a config write on a follower is forwarded to the leader" put_follower
check "the new config (v2) is applied and served on every host (10 s)" wait_until 10 proxied_all b

echo "== one client holds idle connections on the leader's gossip and cluster ports; a follower restarts"
# From the bridge's address (another "host"): connections that send at most
# the protocol byte and then nothing, reopened as the node closes them. One
# address may hold only its share (gossip 8 of 64, raft 64 of 512, RPC 1024
# of 4096), so the restarted follower joins gossip through the leader alone
# and its write reaches the leader over a new RPC connection.
cat > "$work/hold.py" <<'PY'
import selectors, socket, sys, time
host, dur = sys.argv[1], float(sys.argv[2])
want = [(7946, b"", 100), (7947, b"\xc8", 600), (7947, b"\xc7", 4200)]  # gossip, raft, RPC
sel = selectors.DefaultSelector()
held = {i: set() for i in range(len(want))}
end = time.time() + dur
while time.time() < end:
    for i, (port, first, n) in enumerate(want):
        for _ in range(min(200, n - len(held[i]))):
            try:
                c = socket.create_connection((host, port), timeout=1)
                c.sendall(first)
            except OSError:
                break
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ, i)
            held[i].add(c)
    for key, _ in sel.select(timeout=0.05):
        try:
            gone = not key.fileobj.recv(4096)
        except OSError:
            gone = True
        if gone:
            sel.unregister(key.fileobj)
            held[key.data].discard(key.fileobj)
            key.fileobj.close()
PY
LI=${L#n}
(ulimit -n 8192 && exec python3 "$work/hold.py" "$net.$LI" 60) & hold_pid=$!
pids+=("$hold_pid")
held_conns() { [ "$(ip netns exec "$(ns "$LI")" ss -Htn state established "( sport = :7947 or sport = :7946 )" | grep -cF "$net.254")" -ge 1000 ]; }
check "the client holds over 1,000 connections on n$LI (10 s)" wait_until 10 held_conns
# the follower's node process: pids holds the two origins, then n1..n3
fpid=${pids[$((F + 1))]}
kill -9 "$fpid"
while kill -0 "$fpid" 2>/dev/null; do sleep 0.1; done
ip netns exec "$(ns "$F")" "$work/pingora-node" run --config "$work/node.yaml" --join "$net.$LI:7946" \
  --name "n$F" --data-dir "$work/n$F-data" --upgrade-socket "$work/n$F.sock" >> "$work/n$F.log" 2>&1 &
pids+=($!)
joined3() { [ "$(status "$F" | field 'print(sum(1 for m in d.get("members") or [] if m["state"]=="alive"), bool(((d.get("gossip") or {}).get("join") or {}).get("joined")))')" = "3 True" ]; }
check "the restarted n$F joins gossip through n$LI alone while the client holds its ports (20 s)" wait_until 20 joined3
put_back() {
  code=$(curl -s --max-time 10 -o "$work/put3.out" -w '%{http_code}' -X PUT -H "Authorization: Bearer $token" \
    --data-binary @"$work/cluster.yaml" "http://$net.$F:9090/v1/config")
  echo "   PUT /v1/config on the restarted n$F (the last try): HTTP $code $(tr -d '\n' < "$work/put3.out" | cut -c1-160)" > "$work/put3.line"
  [ "$code" = 200 ]
}
check "its write reaches the leader over a new RPC connection (10 s)" wait_until 10 put_back
cat "$work/put3.line"
check "the write (v3) is served on every host (10 s)" wait_until 10 proxied_all a
kill "$hold_pid" 2>/dev/null

echo "== a node with a loopback cluster address refuses to start"
refuses_loopback_cluster() {
  local out rc=0
  out=$(ip netns exec "$(ns 1)" timeout 10 "$work/pingora-node" run --config "$work/node.yaml" --name bad \
    --data-dir "$work/bad-data" --cluster-addr 127.0.0.1:7957 --upgrade-socket "$work/bad.sock" 2>&1) || rc=$?
  echo "   exit $rc: $out" | head -n 3
  [ "$rc" = 2 ] && echo "$out" | grep -q "flag --cluster-addr: cluster_addr: 127.0.0.1:7957 is a loopback address"
}
check "run --cluster-addr 127.0.0.1:7957 on a 0.0.0.0 gossip node exits 2 naming the setting to change" refuses_loopback_cluster

echo "== a node that advertises another host's gossip address stops, naming that node"
# A node file copied from n2's host with its advertise_addr: on host 1 the
# node would be listed where n2 answers, which ignores probes for its name.
refuses_others_address() {
  local out rc=0
  out=$(ip netns exec "$(ns 1)" timeout 20 "$work/pingora-node" run --config "$work/node.yaml" --name copy \
    --data-dir "$work/copy-data" --gossip-addr 0.0.0.0:7966 --advertise-addr "$net.2:7946" --cluster-addr 0.0.0.0:7967 \
    --admin-addr 0.0.0.0:9290 --listen 0.0.0.0:8280 --upgrade-socket "$work/copy.sock" 2>&1) || rc=$?
  echo "$out" | grep -m1 "address conflict" | cut -c1-400 | sed 's/^/   /'
  [ "$rc" = 1 ] && echo "$out" | grep -q 'peers list node \\"n2\\" alive at '"$net.2:7946"
}
check "run --advertise-addr <n2's address> on host 1 exits 1 naming n2 (20 s)" refuses_others_address
members3_alive() { for i in 1 2 3; do
  [ "$(status "$i" | field 'print(sorted((m["name"], m["state"]) for m in d.get("members") or []))')" = "[('n1', 'alive'), ('n2', 'alive'), ('n3', 'alive')]" ] || return 1
done; }
check "every node still lists n1, n2 and n3 alive, and no other" members3_alive

echo "== second cluster, admin API on loopback (ports +100)"
for i in 1 2 3; do
  ip netns exec "$(ns "$i")" "$work/pingora-node" run --config "$work/node.yaml" --name "m$i" \
    --admin-addr 127.0.0.1:9190 --gossip-addr 0.0.0.0:8046 --cluster-addr 0.0.0.0:8047 --join "$net.1:8046" --listen 0.0.0.0:8180 \
    --data-dir "$work/m$i-data" --upgrade-socket "$work/m$i.sock" > "$work/m$i.log" 2>&1 &
  pids+=($!)
done
mstatus() { ip netns exec "$(ns "$1")" curl -s --max-time 2 "http://127.0.0.1:9190/status" || true; }
mformed() { for i in 1 2 3; do
  [ "$(mstatus "$i" | field 'r=d.get("raft") or {}; print(len(r.get("voters") or []), bool(r.get("leader_id")), (d.get("config") or {}).get("version",0))')" = "3 True 1" ] || return 1; done; }
check "loopback-admin cluster forms with config v1 (30 s)" wait_until 30 mformed
ML=$(mstatus 1 | field 'print((d.get("raft") or {}).get("leader_id",""))')
MF=""; for i in 1 2 3; do [ "m$i" != "$ML" ] && { MF=$i; break; }; done
put_forwarded() {
  code=$(ip netns exec "$(ns "$MF")" curl -s --max-time 10 -D "$work/put2.head" -o "$work/put2.out" -w '%{http_code}' -X PUT \
    -H "Authorization: Bearer $token" --data-binary @"$work/b.yaml" "http://127.0.0.1:9190/v1/config")
  echo "   PUT /v1/config on follower m$MF (leader $ML): HTTP $code $(tr -d '\n' < "$work/put2.out" | cut -c1-400)"
  [ "$code" = 200 ] && grep -qi "^X-Pingora-Forwarded-By: m$MF" "$work/put2.head"
}
check "a write on a follower reaches the leader over the cluster port, its admin API on loopback" put_forwarded
mproxied_all() { for i in 1 2 3; do [ "$(curl -s --max-time 2 "http://$net.$i:8180/")" = "$1" ] || return 1; done; }
check "the second cluster serves the new config on every host (10 s)" wait_until 10 mproxied_all b

echo "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
  for f in "$work"/[nm][123].log; do echo "-- $(basename "$f") (last 15 lines)"; tail -n 15 "$f"; done
  exit 1
fi
