package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/node/config"
)

// gossipGate is a Network whose gossip is cut while cut is set: every
// packet a wrapped transport sends is lost and every stream it opens
// fails. Both nodes of a test are wrapped, so this cuts each direction.
type gossipGate struct{ cut atomic.Bool }

func (g *gossipGate) ClusterListener(l net.Listener) net.Listener { return l }
func (g *gossipGate) ClusterDial(d DialFunc) DialFunc             { return d }
func (g *gossipGate) Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return &gatedTransport{NodeAwareTransport: t, g: g}
}

type gatedTransport struct {
	memberlist.NodeAwareTransport
	g *gossipGate
}

func (t *gatedTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gatedTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.g.cut.Load() {
		return time.Now(), nil // lost, as a datagram is
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *gatedTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, d)
}

func (t *gatedTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	if t.g.cut.Load() {
		return nil, errors.New("gossip cut by the test")
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, d)
}

// startGatedNode starts a gossiping node on gossipAddr whose gossip goes
// through g.
func startGatedNode(t *testing.T, name, up, gossipAddr string, g *gossipGate, seeds ...string) *Node {
	t.Helper()
	extra := fmt.Sprintf("gossip_addr: %s\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\n", gossipAddr)
	if len(seeds) > 0 {
		js, _ := json.Marshal(seeds)
		extra += "join: " + string(js) + "\n"
	}
	cfg, err := config.LoadNode(writeNodeFiles(t, name, extra, clusterFor(up)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, Options{Version: "test", Network: g, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return runNode(t, n)
}

// TestRingsKeptUntilRejoined: after a failed hand-off the node starts a
// new membership (lifecycle.reopen), which holds only this node until it
// has joined the others again. The rate limiter and the cache keep the
// released membership's ring until the new one sees another member (or
// rejoinWait passed), then follow it. Before, both took the new ring as
// soon as its gossip started: for as long as the join took (here, until
// the gossip cut heals), the node owned every rate-limit key and every
// cache key.
func TestRingsKeptUntilRejoined(t *testing.T) {
	up := origin(t, "a")
	g := &gossipGate{}
	n2 := startGatedNode(t, "n2", up, "127.0.0.1:0", g)
	n1 := startGatedNode(t, "n1", up, freeGossipAddr(t), g, n2.Members().Addr())
	cacheRingOf := func(n *Node) int {
		n.cache.mu.Lock()
		defer n.cache.mu.Unlock()
		if n.cache.last == nil {
			return 0
		}
		return n.cache.last.Len()
	}
	waitUntil(t, "rings of 2 on n1", func() bool {
		r := n1.limitRing()
		return r != nil && r.Len() == 2 && cacheRingOf(n1) == 2
	})
	released := n1.limitMembers()

	// A hand-off that fails after the release (handOff), with n1's gossip
	// cut off from n2 meanwhile.
	g.cut.Store(true)
	n1.handedOff.Store(true)
	n1.parts.release(context.Background())
	n1.handedOff.Store(false)
	n1.parts.reopen(context.Background())
	mc := n1.Members()
	if mc == nil || mc == released {
		t.Fatal("no new membership after the reopen")
	}
	waitUntil(t, "the new membership running, alone", func() bool { return mc.Ring().Len() == 1 })
	n1.cache.ringStep(mc) // the cache's ring loop, at least once since
	if r := n1.limitRing(); r == nil || r.Len() != 2 {
		t.Fatalf("n1's rate-limit ring before it rejoined: %v, want the released one, of 2", r)
	}
	if addr, ok := (memberPeers{n1}).Addr("n2"); !ok || addr != n2.RPCAddr() {
		t.Fatalf("n2's cluster address as n1's limiter sees it: %q %v", addr, ok)
	}
	if got := cacheRingOf(n1); got != 2 {
		t.Fatalf("n1's cache ring before it rejoined holds %d members, want the released one's 2", got)
	}

	g.cut.Store(false)
	waitUntil(t, "the rings follow the rejoined membership", func() bool {
		r := n1.limitRing()
		return n1.limitMembers() == mc && r.Len() == 2 && cacheRingOf(n1) == 2 &&
			n1.cache.ringVersion() == newCacheRing(mc.Ring()).Version()
	})
}
