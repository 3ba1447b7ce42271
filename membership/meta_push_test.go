package membership

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// heldPackets holds every gossip packet a node sends once hold is set,
// until the transport shuts down: a broadcast queued then never goes out.
type heldPackets struct {
	memberlist.NodeAwareTransport
	hold    atomic.Bool
	held    atomic.Int64
	release chan struct{}
	once    sync.Once
}

func (h *heldPackets) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if h.hold.Load() {
		h.held.Add(1)
		<-h.release
	}
	return h.NodeAwareTransport.WriteToAddress(b, addr)
}

func (h *heldPackets) Shutdown() error {
	h.once.Do(func() { close(h.release) })
	return h.NodeAwareTransport.Shutdown()
}

// TestShutdownDoesNotWaitForABroadcast: Shutdown returns while a metadata
// push still waits for memberlist to send its broadcast. It used to wait
// for the push's confirmation (up to a second: the wait ends only with the
// broadcast or its timeout), and a node under load is nearly always
// pushing (its in-flight count changes), so every graceful upgrade under
// load kept the old process's gossip, with raft already closed, up to a
// second longer: the node refused config writes ("raft is not running on
// this node") and had no raft for that long. Here the wait is an hour.
func TestShutdownDoesNotWaitForABroadcast(t *testing.T) {
	sink := newLogSink(t)
	b := startNode(t, sink, Config{Name: "b"})
	held := &heldPackets{release: make(chan struct{})}
	c, err := New(Config{Name: "a", BindAddr: "127.0.0.1:0", Profile: ProfileFast, Logger: sink.logger(),
		Meta: ringReady("a", Meta{}), Join: []string{b.Addr()},
		WrapTransport: func(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			held.NodeAwareTransport = t
			return held
		}})
	if err != nil {
		t.Fatal(err)
	}
	c.pushWait = time.Hour
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	waitFor(t, 10*time.Second, "2 nodes on one ring", func() bool { return sameRing([]*Cluster{c, b}, 2) })
	pushed := c.Stats().MetaPushes
	held.hold.Store(true)
	if err := c.UpdateMeta(func(m *Meta) { m.ConfigVersion = 7 }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the push to start and a packet held", func() bool {
		return c.Stats().MetaPushes > pushed && held.held.Load() > 0
	})
	done := make(chan error, 1)
	go func() { done <- c.Shutdown() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown still waits for the metadata broadcast after 20 s")
	}
}
