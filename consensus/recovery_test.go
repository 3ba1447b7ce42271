package consensus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// inmemCluster starts n servers over raft's in-memory transport, all
// connected, with BootstrapExpect n. A server restarted on the same
// address (restartWiped) is what a host that lost its disk is.
type inmemCluster struct {
	*cluster
	expect int
	trans  map[string]*raft.InmemTransport
}

func newInmemCluster(t *testing.T, n int) *inmemCluster {
	c := &inmemCluster{cluster: &cluster{t: t, down: map[string]bool{}, left: map[string]bool{}},
		expect: n, trans: map[string]*raft.InmemTransport{}}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		c.add(c.start(id, t.TempDir()))
	}
	for id := range c.trans {
		c.connect(id)
	}
	return c
}

// start makes and starts server id on dir, on a new transport at id's
// address.
func (c *inmemCluster) start(id, dir string) *tnode {
	_, tr := raft.NewInmemTransport(raft.ServerAddress("inmem-" + id))
	c.trans[id] = tr
	return newNode(c.t, id, dir, c.expect, func(cfg *Config) { cfg.Transport = tr })
}

// connect connects id with every other server, both ways.
func (c *inmemCluster) connect(id string) {
	for o, tr := range c.trans {
		if o != id {
			tr.Connect(c.trans[id].LocalAddr(), c.trans[id])
			c.trans[id].Connect(tr.LocalAddr(), tr)
		}
	}
}

// partition cuts a from b, both ways.
func (c *inmemCluster) partition(a, b string) {
	c.trans[a].Disconnect(c.trans[b].LocalAddr())
	c.trans[b].Disconnect(c.trans[a].LocalAddr())
}

// restart starts the killed server n again on dir (its own, or an empty
// one: a wiped disk), under the same ID and address, connected to all.
func (c *inmemCluster) restart(n *tnode, dir string) *tnode {
	m := c.start(n.id, dir)
	c.nodes[slices.Index(c.nodes, n)] = m
	delete(c.down, n.id)
	c.connect(n.id)
	return m
}

// suffrages returns, in log order, the suffrage id has in each
// configuration entry of l's log after index from.
func suffrages(t *testing.T, l *tnode, id string, from uint64) []raft.ServerSuffrage {
	t.Helper()
	var out []raft.ServerSuffrage
	for i := from + 1; i <= l.s.raft.LastIndex(); i++ {
		var e raft.Log
		if err := l.s.bolt.GetLog(i, &e); err != nil {
			t.Fatalf("log %d: %v", i, err)
		}
		if e.Type != raft.LogConfiguration {
			continue
		}
		for _, sv := range raft.DecodeConfiguration(e.Data).Servers {
			if string(sv.ID) == id {
				out = append(out, sv.Suffrage)
			}
		}
	}
	return out
}

// TestWipedVoterRejoinsAsNonVoter: a voter killed and started again with
// an empty data dir, under the same ID and address (here n1, the server
// that bootstrapped the cluster and the lowest ID), does not bootstrap
// again, is demoted to a non-voter by the leader, catches up and is
// promoted back; the cluster takes writes throughout, and every committed
// version is on the wiped server at the end. Before, it rejoined as a
// voter at once, with an empty log and no vote record; and it bootstrapped
// a second configuration, since the others, which had formed the cluster
// in the same process, reported no raft state.
func TestWipedVoterRejoinsAsNonVoter(t *testing.T) {
	// Writes go through whichever server leads (c.put): the fast
	// profile's 200ms lease can run out on a loaded machine, and another
	// server then leads. A write whose outcome its client did not learn
	// may commit and be sent again, so the waits below look for contents,
	// not version numbers.
	c := newInmemCluster(t, 3)
	c.reconcile()
	for i := range 3 {
		c.put("cfg", fmt.Appendf(nil, "v%d", i+1))
	}
	for _, n := range c.nodes {
		waitFor(t, 10*time.Second, n.id+" applied v3", func() bool { d, _ := n.s.Get("cfg"); return string(d.Content) == "v3" })
		if !n.s.HasState() {
			t.Fatalf("%s formed the cluster but reports no raft state", n.id)
		}
	}
	w := c.nodes[0]
	c.kill(w)
	l := c.leader(20 * time.Second)
	mark := l.s.raft.LastIndex()

	w = c.restart(w, t.TempDir())
	c.put("cfg", []byte("v4 while n1 catches up"))
	took := waitFor(t, 20*time.Second, "n1 a voter again, caught up, and the leader healthy", func() bool {
		c.reconcile() // gossip: what each server reports, Recovering included
		l = findLeaderNode(c.cluster)
		if l == nil {
			return false
		}
		st := l.s.Status()
		return !w.s.Recovering() && slices.Contains(voterIDs(l), w.id) && st.Healthy != nil && *st.Healthy
	})
	t.Logf("n1 a voter again %s after its restart with an empty data dir", took)

	// l leads (or led a moment ago): its log holds every configuration
	// committed since mark, whichever server wrote it.
	got := suffrages(t, l, w.id, mark)
	if i := slices.Index(got, raft.Nonvoter); i < 0 || !slices.Contains(got[i:], raft.Voter) {
		t.Fatalf("n1's suffrage in the configurations since its restart: %v; want a non-voter, then a voter", got)
	}
	if w.s.Bootstrapped() {
		t.Fatal("the wiped server bootstrapped")
	}
	l = c.put("cfg", []byte("v5"))
	waitFor(t, 10*time.Second, "n1 applied v5", func() bool { d, _ := w.s.Get("cfg"); return string(d.Content) == "v5" })
	if a, b := contents(l.s.History("cfg")), contents(w.s.History("cfg")); !slices.Equal(a, b) {
		t.Fatalf("history on the leader %v, on the wiped server %v", a, b)
	}
	if w.s.ClusterID() != l.s.ClusterID() {
		t.Fatalf("cluster ID %q on the wiped server, %q on the leader", w.s.ClusterID(), l.s.ClusterID())
	}
}

// TestWipedVoterDoesNotElectStaleLeader is the amnesiac voter's danger: v2
// is committed by the leader and w while s is cut off; then the leader
// and w crash, w comes back with an empty data dir and s is reachable
// again. s lacks v2; with w's vote it would lead and v2, a committed
// version, would be lost for good. w refuses to vote until it has caught
// up, so there is no leader until the old one returns, and v2 survives.
func TestWipedVoterDoesNotElectStaleLeader(t *testing.T) {
	c := newInmemCluster(t, 3)
	c.reconcile()
	l := c.leader(20 * time.Second)
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v1"), -1); err != nil {
		t.Fatal(err)
	}
	w := c.follower(l)
	var s *tnode
	for _, n := range c.nodes {
		if n != l && n != w {
			s = n
		}
	}
	waitFor(t, 10*time.Second, "s applied v1", func() bool { _, ok := s.s.Get("cfg"); return ok })
	c.partition(s.id, l.id)
	c.partition(s.id, w.id)
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v2"), -1); err != nil {
		t.Fatalf("v2 with the leader and w: %v", err)
	}
	c.kill(l)
	c.kill(w)

	w = c.restart(w, t.TempDir())
	c.partition(w.id, l.id) // l stays down
	c.reconcile()
	waitFor(t, 20*time.Second, "s asked the wiped w for its vote", func() bool {
		return s.s.IsLeader() || votesRefused(w) >= 2
	})
	if s.s.IsLeader() {
		t.Fatal("s, which lacks v2, was elected with the vote of the wiped server: the committed v2 would be lost")
	}
	if _, err := s.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("lost"), -1); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("write with s and the wiped w only: err = %v, want ErrNoQuorum", err)
	}

	l = c.restart(l, l.dir)
	took := waitFor(t, 30*time.Second, "every server on v2, w a voter again", func() bool {
		c.reconcile()
		for _, n := range c.nodes {
			if d, _ := n.s.Get("cfg"); d.Version != 2 || string(d.Content) != "v2" {
				return false
			}
		}
		nl := c.nodes[0]
		for _, n := range c.nodes {
			if n.s.IsLeader() {
				nl = n
			}
		}
		return nl.s.IsLeader() && slices.Contains(voterIDs(nl), w.id) && !w.s.Recovering()
	})
	t.Logf("v2 kept; w a voter %s after the old leader returned", took)
}

// findLeaderNode returns the live server that leads, or nil.
func findLeaderNode(c *cluster) *tnode {
	for _, n := range c.live() {
		if n.s.IsLeader() {
			return n
		}
	}
	return nil
}

// votesRefused is how many votes n refused while recovering, both ways.
func votesRefused(n *tnode) uint64 { return n.s.guard.refused.Load() }

// TestRecoveringSurvivesRestart: a server that started without raft state
// and stopped before it had caught up (it holds part of the leader's log)
// is still recovering when it starts again; before, the partial log made
// it a server with state, voting with a log that may lack committed
// entries. Servers that form a new cluster stop recovering for good.
func TestRecoveringSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	n := newNode(t, "n2", dir, 0, nil)
	if !n.s.Recovering() {
		t.Fatal("a server started without raft state is not recovering")
	}
	n.s.Close()
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "a"}, {Suffrage: raft.Voter, ID: "n2", Address: "b"}}}
	if err := bolt.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(conf)}); err != nil {
		t.Fatal(err)
	}
	bolt.Close()
	m := newNode(t, "n2", dir, 0, nil)
	if !m.s.HasState() || !m.s.Recovering() {
		t.Fatalf("restarted with part of a log: HasState %v, Recovering %v; want both", m.s.HasState(), m.s.Recovering())
	}

	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	c.leader(20 * time.Second)
	for _, n := range c.nodes {
		waitFor(t, 10*time.Second, n.id+" done recovering", func() bool { return !n.s.Recovering() })
		if _, err := os.Stat(filepath.Join(n.dir, recoveringFile)); !os.IsNotExist(err) {
			t.Fatalf("%s formed the cluster but its data dir is still marked recovering: %v", n.id, err)
		}
	}
}

// hbTransport captures the heartbeat handler raft would be given.
type hbTransport struct {
	raft.Transport
	fn func(raft.RPC)
}

func (h *hbTransport) SetHeartbeatHandler(fn func(raft.RPC)) { h.fn = fn }

// TestHeartbeatsStopBeforeStoreCloses: the transport hands heartbeats to
// raft on its own goroutines, which raft.Shutdown does not wait for; one
// that ran while Close shut the log store made raft panic ("failed to save
// current term: database not open", seen killing a test binary).
// stopHeartbeats waits for the heartbeat being handled, and refuses later
// ones with an error instead of handing them to raft.
func TestHeartbeatsStopBeforeStoreCloses(t *testing.T) {
	tr := &hbTransport{}
	g := newVoteGuard(&Store{}, tr)
	entered, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int32
	g.SetHeartbeatHandler(func(raft.RPC) {
		handled.Add(1)
		close(entered)
		<-release
	})
	heartbeat := func() chan raft.RPCResponse {
		resp := make(chan raft.RPCResponse, 1)
		tr.fn(raft.RPC{Command: &raft.AppendEntriesRequest{}, RespChan: resp})
		return resp
	}
	go heartbeat()
	<-entered
	stopped := make(chan struct{})
	go func() { g.stopHeartbeats(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stopHeartbeats returned while a heartbeat was being handled")
	case <-time.After(50 * time.Millisecond): // a guard, not the assertion's clock
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stopHeartbeats did not return once the heartbeat was handled")
	}
	resp := heartbeat()
	if r := <-resp; r.Error != raft.ErrRaftShutdown || handled.Load() != 1 {
		t.Fatalf("a heartbeat after stop: response error %v, handled %d times; want ErrRaftShutdown and 1", r.Error, handled.Load())
	}
}
