package node

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

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
