package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRestartedNodeNotReadyUntilCaughtUp (operator test): a node restarted
// after missing 12 config writes answered /readyz 200 and served the old
// routing for about 9 s, while the leader's replication to it, which had
// failed while it was down, backed off. It must not be ready until it
// serves the cluster's current config, and /status says how far it is.
func TestRestartedNodeNotReadyUntilCaughtUp(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	n1 := startRaftNode(t, "n1", a, 3)
	seed := n1.Members().Addr()
	n2 := startRaftNode(t, "n2", a, 3, seed)
	// n3 keeps its raft address across the restart, as a real node does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clusterAddr := ln.Addr().String()
	ln.Close()
	js, _ := json.Marshal([]string{seed})
	n3File := writeNodeFiles(t, "n3", fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: %s\ndata_dir: %s\nbootstrap_expect: 3\nupgrade_socket: %s/up.sock\njoin: %s\n",
		clusterAddr, t.TempDir(), t.TempDir(), js), clusterFor(a))
	n3 := newNode(t, n3File)
	if err := n3.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "version 1 everywhere", func() bool {
		for _, n := range []*Node{n1, n2, n3} {
			if c := n.Status().Config; c == nil || c.Version != 1 || !n.Status().Node.Ready {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	n3.Shutdown(ctx)
	cancel()

	var leader *Node
	waitUntil(t, "a leader", func() bool {
		for _, n := range []*Node{n1, n2} {
			if n.Store().IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	const last = 13
	for v := 2; v <= last; v++ {
		body := clusterFor(a)
		if v == last {
			body = clusterFor(b)
		}
		body = strings.Replace(body, "    peers:", fmt.Sprintf("    max_conns: %d\n    peers:", 100+v), 1) // a new value each time
		if code, resp := putConfig(t, leader.AdminAddr(), body, ""); code != 200 || !strings.Contains(resp, fmt.Sprintf(`"version": %d`, v)) {
			t.Fatalf("write v%d: %d %s", v, code, resp)
		}
	}

	n3 = runNode(t, newNode(t, n3File))
	sawCatchingUp := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := get(t, "http://"+n3.AdminAddr()+"/readyz")
		if code == 200 {
			st := n3.Status()
			if st.Config == nil || st.Config.Version != last {
				var v int64
				if st.Config != nil {
					v = st.Config.Version
				}
				t.Fatalf("/readyz 200 while serving config version %d, want %d", v, last)
			}
			if _, got := get(t, "http://"+n3.ListenerAddrs()["http"]+"/"); got != "b" {
				t.Fatalf("/readyz 200 while routing to %q, want b (version %d)", got, last)
			}
			if st.Node.ReadyNote != "" {
				t.Fatalf("caught up, but ready_note %q", st.Node.ReadyNote)
			}
			break
		}
		if strings.Contains(body, "catching up: ") {
			sawCatchingUp = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 60 s: %d %s", code, body)
		}
		time.Sleep(5 * time.Millisecond) // sleep-ok: polling interval of a condition wait
	}
	t.Logf("saw the catching-up reason: %v", sawCatchingUp)
}

// TestShownListenerAddr: /status shows a listener configured on 0.0.0.0
// as configured, not as the "[::]" Go names its dual-stack socket.
func TestShownListenerAddr(t *testing.T) {
	for _, tc := range []struct{ configured, bound, want string }{
		{"0.0.0.0:28080", "[::]:28080", "0.0.0.0:28080"},
		{"0.0.0.0:0", "[::]:41234", "0.0.0.0:41234"},
		{"127.0.0.1:0", "127.0.0.1:41234", "127.0.0.1:41234"},
		{"[::]:8080", "[::]:8080", "[::]:8080"},
		{":8080", "[::]:8080", "[::]:8080"},
		{"localhost:8080", "127.0.0.1:8080", "localhost:8080"},
	} {
		if got := shownAddr(tc.configured, tc.bound); got != tc.want {
			t.Errorf("shownAddr(%q, %q) = %q, want %q", tc.configured, tc.bound, got, tc.want)
		}
	}
}

// TestLeaderCommitByRPC: a node learns the leader's commit index from
// node.status over the cluster port, as a restarted node does before
// raft's backed-off replication reaches it.
func TestLeaderCommitByRPC(t *testing.T) {
	a := origin(t, "a")
	n1 := startRaftNode(t, "n1", a, 3)
	seed := n1.Members().Addr()
	n2 := startRaftNode(t, "n2", a, 3, seed)
	n3 := startRaftNode(t, "n3", a, 3, seed)
	nodes := []*Node{n1, n2, n3}
	waitUntil(t, "version 1 everywhere", func() bool {
		for _, n := range nodes {
			if c := n.Status().Config; c == nil || c.Version != 1 {
				return false
			}
		}
		return true
	})
	var leader, follower *Node
	waitUntil(t, "a leader and a follower that knows it", func() bool {
		leader, follower = nil, nil
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
			} else if id, _ := n.Store().Leader(); id != "" {
				follower = n
			}
		}
		return leader != nil && follower != nil
	})
	before := leader.Store().Status().CommitIndex
	got := follower.leaderCommitByRPC(nil)
	after := leader.Store().Status().CommitIndex
	if got < before || got > after || got == 0 {
		t.Fatalf("leader's commit index by RPC = %d, want %d..%d", got, before, after)
	}
}
