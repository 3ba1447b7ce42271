package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/node"
)

// leaderStatus returns the status of the running node that leads raft.
func (c *raftCluster) leaderStatus() (node.Status, bool) {
	for _, p := range c.running() {
		if st, ok := p.status(); ok && st.Raft != nil && st.Raft.State == "Leader" {
			return st, true
		}
	}
	return node.Status{}, false
}

// TestWipedDataDirRejoinsAsNonVoter: a voter killed with kill -9 whose
// data dir is lost, started again under the same name and addresses,
// comes back as a non-voter, catches up (the config written before and
// while it was down), and is promoted back: 3 voters, a healthy leader,
// the same cluster ID. Before, it was a voter again at once, with an empty
// raft log and no record of its votes.
func TestWipedDataDirRejoinsAsNonVoter(t *testing.T) {
	c, st := formedCluster(t)
	id := st.Raft.ClusterID
	apply := func(p *procNode, body string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "cluster.yaml")
		os.WriteFile(f, []byte(body), 0o644)
		waitUntil(t, 30*time.Second, "a write through "+p.name, func() bool { // 503 during an election
			code, out, errs := cli("config", "apply", "-f", f, "--admin", "http://"+p.admin)
			if code != 0 && !strings.Contains(errs, "HTTP 503") {
				t.Fatalf("config apply on %s: exit %d %q %q", p.name, code, out, errs)
			}
			return code == 0
		})
	}
	route := func(host string) string { return "  - {host: " + host + ", upstream: web}\n" }
	base := "upstreams:\n  - name: web\n    peers: [{addr: 127.0.0.1:1}]\nroutes:\n  - upstream: web\n"
	victim, rest := c.nodes[0], c.nodes[1:]
	apply(rest[0], base+route("v2.example"))
	if err := c.stop(victim, syscall.SIGKILL); err == nil {
		t.Fatal("kill -9 exited 0")
	}
	if err := os.RemoveAll(filepath.Join(victim.dir, "data")); err != nil {
		t.Fatal(err)
	}
	apply(rest[1], base+route("v2.example")+route("v3.example"))
	c.start(victim)

	took := waitUntil(t, 30*time.Second, victim.name+" a non-voter", func() bool {
		st, ok := c.leaderStatus()
		return ok && slices.ContainsFunc(st.Raft.NonVoters, func(p consensus.Peer) bool { return p.ID == victim.name })
	})
	t.Logf("%s a non-voter %s after its restart with an empty data dir", victim.name, took.Round(10*time.Millisecond))
	took = waitUntil(t, 30*time.Second, "3 voters and a healthy leader", func() bool {
		_, ok := c.healthyLeader(c.names()...)
		return ok
	})
	t.Logf("%s a voter again %s later", victim.name, took.Round(10*time.Millisecond))
	vst := raftOf(t, victim, "config version 3 applied", func(st node.Status) bool {
		return st.Config != nil && st.Config.Version == 3 && !st.Raft.Recovering
	})
	if vst.Raft.ClusterID != id {
		t.Fatalf("%s holds cluster %s, want %s", victim.name, vst.Raft.ClusterID, id)
	}
	if strings.Contains(victim.log.String(), "bootstrapped cluster") {
		t.Fatalf("%s bootstrapped again:\n%s", victim.name, tail(victim.log.String(), 3000))
	}
}

// TestForeignSeedDoesNotStopTheCluster: n2 and n3 joined n1, which joins
// nobody; n1 comes back holding another cluster's state (here a copy of a
// one-node cluster's data dir; a seed that lost its data dir and formed a
// one-node cluster of its own looks the same). n2 and n3 re-join their
// seed, find it foreign, and stay in their cluster, which has a leader
// and other voters, saying what to do with the seed. Before, they exited
// 1 like a node joining the wrong cluster, and one node's lost disk
// stopped the whole cluster.
func TestForeignSeedDoesNotStopTheCluster(t *testing.T) {
	c := newRaftCluster(t, 3)
	s1, q := c.nodes[0], c.newNode("q1") // s1: the seed, n1
	s1.join, s1.extraYAML = nil, ""
	for _, p := range c.nodes[1:] {
		p.join, p.extraYAML = []string{s1.gossip}, ""
	}
	c.startAll()
	all := c.names()
	waitUntil(t, 60*time.Second, "3 voters and a healthy leader", func() bool {
		_, ok := c.healthyLeader(all...)
		return ok
	})
	c.start(q)
	qid := raftOf(t, q, "leads its own cluster", func(st node.Status) bool {
		return st.Raft.State == "Leader" && st.Raft.ClusterID != ""
	}).Raft.ClusterID
	if err := c.stop(q, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	if err := c.stop(s1, syscall.SIGKILL); err == nil {
		t.Fatal("kill -9 exited 0")
	}
	data := filepath.Join(s1.dir, "data")
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(q.dir, "data"), data).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	// As when n1 itself bootstrapped a cluster of its own (a node that
	// joins nobody and lost its data dir): the state is recorded under
	// its own name, which a data dir copied from q1 is not.
	if err := os.WriteFile(filepath.Join(data, "SERVER_ID"), []byte(s1.name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(s1)
	raftOf(t, s1, "gossips the other cluster's ID", func(st node.Status) bool { return st.Raft.ClusterID == qid })
	s2 := c.nodes[1]
	waitUntil(t, 30*time.Second, "s2 to find its seed foreign", func() bool {
		log := s2.log.String()
		return strings.Contains(log, "a seed holds another cluster's state") || strings.Contains(log, "refusing to join") || !s2.running()
	})
	for _, p := range c.nodes[1:] {
		if !p.running() {
			t.Fatalf("%s exited (%v) when its seed turned out foreign:\n%s", p.name, p.exitErr, tail(p.log.String(), 3000))
		}
	}
	waitUntil(t, 30*time.Second, "a leader of the first cluster", func() bool {
		st, ok := c.leaderStatus()
		return ok && st.Raft.ClusterID != qid
	})
	for _, p := range c.nodes[1:] {
		if !p.running() {
			t.Fatalf("%s exited (%v):\n%s", p.name, p.exitErr, tail(p.log.String(), 3000))
		}
	}
}
