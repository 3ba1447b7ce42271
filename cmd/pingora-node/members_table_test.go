package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node"
)

// TestMembersNodeStateOfDeadMember: a member that failed or left keeps
// the metadata it last gossiped ("ready"), but the table no longer claims
// it ready: its NODE STATE reads "-", as its RING SHARE does.
func TestMembersNodeStateOfDeadMember(t *testing.T) {
	member := func(name string, s membership.State, ns membership.NodeState) membership.Member {
		return membership.Member{Name: name, Addr: name + ":7946", State: s, Meta: membership.Meta{Name: name, State: ns}, LastChange: time.Unix(0, 0)}
	}
	st := &node.Status{
		Node:   node.NodeStatus{Name: "a"},
		Gossip: &node.GossipStatus{Self: "a"},
		Members: []membership.Member{
			member("a", membership.Alive, membership.StateReady),
			member("b", membership.Dead, membership.StateReady),
			member("c", membership.Left, membership.StateReady),
			member("d", membership.Suspect, membership.StateDraining),
		},
		Ring: &membership.RingStatus{Members: []string{"a", "d"}, Shares: map[string]float64{"a": 0.5, "d": 0.5}},
	}
	var b strings.Builder
	printMembers(&b, st)
	want := map[string][2]string{ // name: STATE, NODE STATE
		"a": {"alive", "ready"}, "b": {"dead", "-"}, "c": {"left", "-"}, "d": {"suspect", "draining"},
	}
	rows := 0
	for _, line := range strings.Split(b.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] == "NAME" || f[0] == "ring" {
			continue
		}
		if f[1] == "(self)" {
			f = append(f[:1], f[2:]...)
		}
		w, ok := want[f[0]]
		if !ok {
			continue
		}
		rows++
		if f[2] != w[0] || f[3] != w[1] {
			t.Errorf("member %s: STATE %s, NODE STATE %s; want %s, %s\n%s", f[0], f[2], f[3], w[0], w[1], b.String())
		}
	}
	if rows != len(want) {
		t.Fatalf("%d member rows, want %d:\n%s", rows, len(want), b.String())
	}
}

// TestMembersRaftRoleRecovering: a member that gossips that it started
// without raft state and has not caught up shows it beside its raft role.
func TestMembersRaftRoleRecovering(t *testing.T) {
	st := &node.Status{
		Node:   node.NodeStatus{Name: "a"},
		Gossip: &node.GossipStatus{Self: "a"},
		Members: []membership.Member{
			{Name: "a", Addr: "a:7946", State: membership.Alive, Meta: membership.Meta{Name: "a", State: membership.StateReady}},
			{Name: "b", Addr: "b:7946", State: membership.Alive, Meta: membership.Meta{Name: "b", State: membership.StateStarting, RaftRecovering: true}},
		},
		Raft: &consensus.Status{LeaderID: "a", Voters: []consensus.Peer{{ID: "a"}}, NonVoters: []consensus.Peer{{ID: "b"}}},
		Ring: &membership.RingStatus{Members: []string{"a"}, Shares: map[string]float64{"a": 1}},
	}
	var b strings.Builder
	printMembers(&b, st)
	for _, line := range strings.Split(b.String(), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[0] == "b" {
			if f[4] != "non-voter,recovering" {
				t.Fatalf("RAFT of b = %q, want non-voter,recovering:\n%s", f[4], b.String())
			}
			return
		}
	}
	t.Fatalf("no row for b:\n%s", b.String())
}

// TestRaftHealthWithoutLeader: a node that knows no leader cannot tell a
// cluster without quorum from its own isolation (a partition of this
// host, while the other two elect and take writes); status said "no
// quorum: config writes fail, every node keeps its last config" either
// way. It says what this node knows.
func TestRaftHealthWithoutLeader(t *testing.T) {
	got := raftHealth(&node.Status{Node: node.NodeStatus{Name: "n1"}, Raft: &consensus.Status{ID: "n1", State: "Candidate"}})
	if strings.Contains(got, "every node keeps") || !strings.Contains(got, "no leader known") || !strings.Contains(got, "cut off") {
		t.Fatalf("raftHealth = %q: want no leader known, with isolation of this node as a cause beside no quorum", got)
	}
}

// TestRaftHealthHintsAtClusterPort: a node whose cluster port the others
// cannot reach (a firewall that lets gossip through: iptables -I INPUT -p
// tcp --dport 7947 -j DROP on its host) joins gossip, sees the members
// alive, and never hears from a raft leader; status said only "no leader
// known". With other members alive, it names the port to check.
func TestRaftHealthHintsAtClusterPort(t *testing.T) {
	member := func(name string, s membership.State) membership.Member {
		return membership.Member{Name: name, Addr: name + ":7946", State: s,
			Meta: membership.Meta{Name: name, Addrs: membership.Addrs{Cluster: "10.0.0.4:7947", Raft: "10.0.0.4:7947"}}}
	}
	st := &node.Status{Node: node.NodeStatus{Name: "n4"}, Gossip: &node.GossipStatus{Self: "n4"},
		Members: []membership.Member{member("n1", membership.Alive), member("n2", membership.Dead), member("n4", membership.Alive)},
		Raft:    &consensus.Status{ID: "n4", State: "Follower", Recovering: true}}
	got := raftHealth(st)
	if !strings.Contains(got, "no leader known") || !strings.Contains(got, "1 other member") || !strings.Contains(got, "10.0.0.4:7947") {
		t.Fatalf("raftHealth = %q: want no leader known, the alive member count and this node's raft address to check", got)
	}
	st.Members = st.Members[2:] // alone in gossip: nothing to hint at
	if got := raftHealth(st); strings.Contains(got, "7947") {
		t.Fatalf("raftHealth alone = %q: no member to reach it, no port hint", got)
	}
}
