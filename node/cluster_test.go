package node

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/wire"
)

// startClusterNode starts a node that gossips on loopback (fast profile)
// and joins seeds.
func startClusterNode(t *testing.T, name string, upstream string, seeds ...string) *Node {
	t.Helper()
	extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\nupgrade_socket: %s\n", filepath.Join(t.TempDir(), "up.sock"))
	if len(seeds) > 0 {
		js, _ := json.Marshal(seeds)
		extra += "join: " + string(js) + "\n"
	}
	return startNode(t, writeNodeFiles(t, name, extra, clusterFor(upstream)))
}

// TestNodesJoinAndAgreeOnRing: three nodes joined by address show three
// members and one ring digest in /status; a node that stops leaves every
// ring at once.
func TestNodesJoinAndAgreeOnRing(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	seed := n1.Members().Addr()
	n2 := startClusterNode(t, "n2", up, seed)
	n3 := startClusterNode(t, "n3", up, seed)
	nodes := []*Node{n1, n2, n3}
	agreed := func(ns []*Node, want int) bool {
		var digest string
		for _, n := range ns {
			st := n.Status()
			if st.Ring == nil || len(st.Ring.Members) != want {
				return false
			}
			if digest == "" {
				digest = st.Ring.Digest
			} else if st.Ring.Digest != digest {
				return false
			}
		}
		return true
	}
	allReady := func() bool {
		for _, m := range n2.Status().Members {
			if m.Meta.State != "ready" {
				return false
			}
		}
		return true
	}
	waitUntil(t, "three ready nodes on one ring", func() bool { return agreed(nodes, 3) && allReady() })
	st := n2.Status()
	if len(st.Members) != 3 || st.Gossip.Self != "n2" {
		t.Fatalf("members: %+v", st.Members)
	}
	for _, m := range st.Members {
		if m.State != "alive" || m.Meta.State != "ready" || len(m.Meta.Addrs.Proxy) != 1 || m.Meta.Health.Total != 1 || m.Meta.ConfigVersion != 1 {
			t.Errorf("member %s: %+v", m.Name, m)
		}
	}
	// Node-to-node RPC: n1 calls n3 at the address n3 gossips.
	var rpcAddr string
	for _, m := range n1.Status().Members {
		if m.Name == "n3" {
			rpcAddr = m.Meta.Addrs.Cluster
		}
	}
	client, err := wire.NewClient(wire.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rs RPCStatus
	if err := client.Call(ctx, rpcAddr, rpcStatusMethod, &rpcEmpty{}, &rs); err != nil || rs.Name != "n3" || rs.ConfigVersion != 1 || !rs.Ready {
		t.Fatalf("RPC to n3 at %q: %+v %v", rpcAddr, rs, err)
	}
	start := time.Now()
	if err := n3.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "n3 off the ring", func() bool { return agreed(nodes[:2], 2) })
	t.Logf("graceful leave seen by both in %v", time.Since(start))
	for _, m := range n1.Status().Members {
		if m.Name == "n3" && m.State != "left" {
			t.Fatalf("n3 is %s, want left", m.State)
		}
	}
}

// TestGossipReadyFollowsReadyz: a node gossips "ready", and so joins the
// ring, exactly when its /readyz answers 200. A brand-new raft cluster
// without a cluster config (every node at version 0, /readyz 503) elects
// a leader but gossips "starting" and has an empty ring; a config written
// on one node then brings every node to /readyz 200, "ready" and one ring
// (nothing waits for a ring that needs the config); a config that routes
// nothing takes them off the ring again.
func TestGossipReadyFollowsReadyz(t *testing.T) {
	up := origin(t, "a")
	start := func(name string, seeds ...string) *Node {
		extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\ndata_dir: %s\nbootstrap_expect: 3\nupgrade_socket: %s/up.sock\n",
			t.TempDir(), t.TempDir())
		if len(seeds) > 0 {
			js, _ := json.Marshal(seeds)
			extra += "join: " + string(js) + "\n"
		}
		return startNode(t, writeNodeFiles(t, name, extra, "")) // an empty seed file: nothing applied
	}
	n1 := start("n1")
	seed := n1.Members().Addr()
	nodes := []*Node{n1, start("n2", seed), start("n3", seed)}
	// state reports whether every node sees every member (metadata
	// received) in gossip state want, with ring members ring (one digest),
	// and /readyz answers code.
	state := func(want string, ring, code int) bool {
		digest := ""
		for _, n := range nodes {
			st := n.Status()
			if len(st.Members) != 3 || st.Ring == nil || len(st.Ring.Members) != ring {
				return false
			}
			for _, m := range st.Members {
				if m.Meta.State != membership.NodeState(want) {
					return false
				}
			}
			if digest == "" {
				digest = st.Ring.Digest
			} else if st.Ring.Digest != digest {
				return false
			}
			if c, _ := get(t, "http://"+n.AdminAddr()+"/readyz"); c != code {
				return false
			}
		}
		return true
	}
	leader := func() *Node {
		for _, n := range nodes {
			if n.Store().IsLeader() {
				return n
			}
		}
		return nil
	}
	waitUntil(t, "a leader, every member gossiping \"starting\", an empty ring, /readyz 503", func() bool { return leader() != nil && state("starting", 0, 503) })
	for _, n := range nodes {
		for _, m := range n.Status().Members {
			if m.Meta.State != membership.StateStarting || m.Meta.ConfigVersion != 0 {
				t.Fatalf("%s sees %s as %q at config v%d; /readyz says 503", n.cfg.Name, m.Name, m.Meta.State, m.Meta.ConfigVersion)
			}
		}
	}
	var follower *Node
	for _, n := range nodes {
		if !n.Store().IsLeader() {
			follower = n
		}
	}
	// A write may meet an election (503, fast timings on a loaded
	// machine): it is sent again, as an operator would.
	write := func(query, body string) func() bool {
		return func() bool {
			code, _ := send(t, "PUT", "http://"+follower.AdminAddr()+"/v1/config"+query, body, nil)
			return code == 200
		}
	}
	waitUntil(t, "the first config written", write("", clusterFor(up)))
	waitUntil(t, "all ready on one ring of 3", func() bool { return state("ready", 3, 200) })
	waitUntil(t, "a config without routes written", write("?allow_empty=true", strings.Split(clusterFor(up), "routes:")[0]))
	waitUntil(t, "all starting, ring empty", func() bool { return state("starting", 0, 503) })
}
