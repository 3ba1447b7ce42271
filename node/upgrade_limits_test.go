package node

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy/handoff"
	"github.com/pingora-go/pingora-go/ratelimit"
	"github.com/pingora-go/pingora-go/wire"
)

// TestHandedOffNodeHandsOverLimits: a node that owns a global key hands
// its counter to the successor that took its cluster port, so the
// successor continues the count: the key admitted its 5 per minute before
// the upgrade, and a request on the successor makes 6. Before, the
// counters stayed in the old process (the ring keeps the node's name, so
// no hand-off ran) and the successor counted from nothing (1), granting
// the key its limit again.
func TestHandedOffNodeHandsOverLimits(t *testing.T) {
	up := origin(t, "a")
	n := startClusterNode(t, "a1", up)
	const rule = "  - name: api\n    key: header:x-api-key\n    limit: 5\n    period: 1m\n    scope: global\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(*n.clusterPath.Load()), "cluster.yaml"), []byte(withLimits(clusterFor(up), rule)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a ring of one", func() bool { return n.Members().Ring().Len() == 1 })
	url := "http://" + n.ListenerAddrs()["http"] + "/"
	// Until the limiter's first sync the key is decided by its local
	// share: some requests are refused before the 5 are admitted.
	admitted := 0
	waitUntil(t, "5 requests admitted", func() bool {
		if getWith(t, url, map[string]string{"X-Api-Key": "k1"}).StatusCode == http.StatusOK {
			admitted++
		}
		return admitted == 5
	})

	if err := n.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	in, err := handoff.Request(n.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var cln net.Listener
	for _, e := range in.Entries() {
		if e.Name == rpcListenerName {
			ln, ok, err := in.Take(e.Name, e.Addr)
			if err != nil || !ok {
				t.Fatalf("cluster port not taken: %v %v", ok, err)
			}
			cln = ln
		}
	}
	if cln == nil {
		t.Fatal("cluster port not passed")
	}
	// The successor's rate limiter, of the same name, on the cluster port.
	succ, err := ratelimit.New(ratelimit.Config{Self: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.ParseCluster("cluster.yaml", []byte(withLimits(clusterFor(up), rule)))
	if err != nil {
		t.Fatal(err)
	}
	if err := succ.SetRules(limitRules(c.RateLimits)); err != nil {
		t.Fatal(err)
	}
	srv, _ := wire.NewServer(wire.ServerConfig{})
	succ.Register(srv)
	go srv.Serve(cln)
	defer srv.Close()
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := in.Serving(); err != nil {
		t.Fatal(err)
	}
	<-n.Superseded()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := succ.Stats().HandoffsIn; got != 1 {
		t.Fatalf("the successor took %d counters, want 1", got)
	}
	// A request on the successor: its count goes on from the 5.
	if err := succ.Start(); err != nil {
		t.Fatal(err)
	}
	defer succ.Close()
	succ.Decide(&ratelimit.Request{Header: http.Header{"X-Api-Key": {"k1"}}}, 0, 0)
	var count int64
	waitUntil(t, "the successor's count of k1 at 6", func() bool {
		if top := succ.Status(1).Rules[0].Top; len(top) == 1 {
			count = top[0].Count
		}
		return count == 6
	})
}
