package node

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestReloadFileRefusesGossipIdentityChange: a SIGHUP whose node file
// changes cluster_name or gossip_key on a gossiping node is refused with
// the reason, not handed off: the successor could not gossip with the
// cluster's other members (they drop a stream with another label), so a
// 4-node cluster's member reloaded with cluster_name: prod went NOT READY,
// dead to the others, while its old process had exited. A change that
// does apply by a hand-off (another grace_period) still asks for one.
func TestReloadFileRefusesGossipIdentityChange(t *testing.T) {
	a := origin(t, "a")
	nodeFile := writeNodeFiles(t, "n1", "gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\n", clusterFor(a))
	n := startNode(t, nodeFile)
	data, err := os.ReadFile(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		extra, want string
	}{
		{"cluster_name: prod\n", `cluster_name ("pingora" to "prod")`},
		{"gossip_key: " + strings.Repeat("A", 43) + "=\n", "gossip_key"},
	} {
		next, err := config.ParseNode(nodeFile, append(data, tc.extra...))
		if err != nil {
			t.Fatal(err)
		}
		err = n.ReloadFile(next)
		if !errors.Is(err, ErrNotLive) || errors.Is(err, ErrNeedsHandoff) || !strings.Contains(err.Error(), tc.want) ||
			!strings.Contains(err.Error(), "stop every node") {
			t.Errorf("ReloadFile with %q: %v, want an ErrNotLive naming %s and what to do", tc.extra, err, tc.want)
		}
	}
	next, err := config.ParseNode(nodeFile, []byte(strings.Replace(string(data), "grace_period: 5s", "grace_period: 6s", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadFile(next); !errors.Is(err, ErrNeedsHandoff) {
		t.Fatalf("ReloadFile with another grace_period: %v, want ErrNeedsHandoff", err)
	}
}

// TestReloadFileStandaloneClusterName: a node that does not gossip has no
// cluster to fall out of: its cluster_name changes by a hand-off as the
// other keys do.
func TestReloadFileStandaloneClusterName(t *testing.T) {
	nodeFile := writeNodeFiles(t, "n1", "", clusterFor(origin(t, "a")))
	n := startNode(t, nodeFile)
	data, err := os.ReadFile(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	next, err := config.ParseNode(nodeFile, append(data, "cluster_name: prod\n"...))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadFile(next); !errors.Is(err, ErrNeedsHandoff) {
		t.Fatalf("ReloadFile: %v, want ErrNeedsHandoff", err)
	}
}
