package node

import (
	"testing"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestOpenFileBudget: what a node's settings let it open at once, by part,
// and the largest downstream.max_conns that fits a limit.
func TestOpenFileBudget(t *testing.T) {
	off := false
	capped, err := config.ParseCluster("c.yaml", []byte("upstreams:\n"+
		"  - {name: a, max_conns: 100, peers: [{addr: 10.0.0.1:80}, {addr: 10.0.0.2:80}]}\n"+
		"  - {name: b, max_conns: 50, peers: [{addr: 10.0.0.3:80}]}\n"+
		"routes: [{upstream: a}, {upstream: b, path_prefix: /b}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	uncapped, err := config.ParseCluster("c.yaml", []byte("upstreams:\n"+
		"  - {name: a, max_conns: 100, peers: [{addr: 10.0.0.1:80}]}\n"+
		"  - {name: b, peers: [{addr: 10.0.0.3:80}]}\n"+
		"routes: [{upstream: a}, {upstream: b, path_prefix: /b}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		node    config.Node
		cluster *config.Cluster
		want    FileBudget
	}{
		{"defaults, no cluster config", config.Node{}, nil, FileBudget{Downstream: 16384, Upstream: 16384, Splice: 2048, Fixed: 768}},
		{"one group uncapped", config.Node{}, uncapped, FileBudget{Downstream: 16384, Upstream: 16384, Splice: 2048, Fixed: 768}},
		{"every group capped", config.Node{}, capped, FileBudget{Downstream: 16384, Upstream: 250, UpstreamCapped: true, Splice: 2048, Fixed: 768}},
		{"replicated, splice off, max_conns set", config.Node{DataDir: "/d", Splice: &off, Downstream: config.Downstream{MaxConns: 1000}}, nil,
			FileBudget{Downstream: 1000, Upstream: 1000, Fixed: 1280}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := OpenFileBudget(&tc.node, tc.cluster); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	b := OpenFileBudget(&config.Node{}, nil)
	if b.Total() != 35584 {
		t.Fatalf("default total %d", b.Total())
	}
	// 20000 = 2*8592 + 2048 + 768
	if got := b.MaxConnsWithin(20000); got != 8592 {
		t.Fatalf("max_conns within 20000: %d", got)
	}
	if got := (FileBudget{Downstream: 1, Upstream: 1, Splice: 2048, Fixed: 768}).MaxConnsWithin(1000); got != 0 {
		t.Fatalf("max_conns within 1000: %d, want 0", got)
	}
	if got := OpenFileBudget(&config.Node{}, capped).MaxConnsWithin(20000); got != 20000-250-2048-768 {
		t.Fatalf("max_conns within 20000 with capped upstreams: %d", got)
	}
}
