package node

import (
	"context"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/membership"
)

// askLeaderCommit tells the store, while it waits to catch up with the
// raft leader (consensus.Store.CatchUp) and has not heard the leader's
// commit index, what the leader answers over the cluster RPC (node.status
// says whether the node answering leads, and its commit index). After a
// restart the leader's replication to this node backs off for up to
// about 10 s, so raft alone would not tell it for that long; /readyz and
// status then say "catching up: applied N of leader's M" from the start.
// It asks the live members every 250 ms until it knows, only on a node
// that started with raft state: a new one has no config to serve before
// the leader replicates to it, and its first connections to the leader
// are the forwarded writes' (TestForwardOverWire).
func (n *Node) askLeaderCommit(st *consensus.Store, stop <-chan struct{}) {
	if !st.StartedWithState() {
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		// Once the index is known, or the wait over, there is nothing
		// to ask, and no wake-ups while idle: a later re-join's wait
		// counts only from when raft brings the leader's commit index.
		cu := st.CatchUp()
		if !cu.Waiting || cu.LeaderCommit != 0 {
			return
		}
		if commit := n.leaderCommitByRPC(stop); commit > 0 {
			st.NoteLeaderCommit(commit)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// leaderCommitByRPC asks the live members with a cluster address for
// node.status and returns the commit index of the one that leads, or 0.
func (n *Node) leaderCommitByRPC(stop <-chan struct{}) uint64 {
	mc := n.Members()
	if mc == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, m := range mc.Members() {
		if m.Name == n.cfg.Name || m.State != membership.Alive || m.Meta.Addrs.Cluster == "" {
			continue
		}
		var rs RPCStatus
		if err := n.rpcClient.Call(ctx, m.Meta.Addrs.Cluster, rpcStatusMethod, &rpcEmpty{}, &rs); err != nil {
			continue
		}
		if rs.RaftLeader && rs.CommitIndex > 0 {
			return rs.CommitIndex
		}
	}
	return 0
}
