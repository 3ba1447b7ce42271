package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node/config"
)

// clusterDoc is the raft document holding the cluster config.
const clusterDoc = "cluster"

// openConsensus opens the raft data directory: the last applied cluster
// config is served at once, before any network.
func (n *Node) openConsensus() error {
	cc := consensus.DefaultConfig()
	if n.cfg.GossipProfile == "fast" {
		cc.Timing = consensus.FastTiming()
	}
	cc.ID = n.cfg.Name
	// raft shares the cluster port (startRPC), or has raft_addr alone;
	// either way behind Options.Network and the cluster's TLS.
	cc.BindAddr, cc.Advertise = n.cfg.ClusterAddr, n.adv.Cluster(n.cfg.ClusterAddr) // port 0: the bound one
	if !n.cfg.RaftShared() {
		cc.BindAddr, cc.Advertise = n.cfg.RaftAddr, n.adv.Raft(n.cfg.RaftAddr)
	}
	cc.Listen, cc.Dial = n.raftListen, n.raftDial
	cc.DataDir = n.cfg.Path(n.cfg.DataDir)
	cc.BootstrapExpect = n.cfg.Bootstrap()
	// No MinQuorum floor: a server that is down for DeadServerGrace is
	// removed (keeping a majority), so a permanently dead one does not
	// stay in the configuration for ever (issue 12); one that returns is
	// added back and promoted after ServerStabilizationTime.
	cc.Logger = n.log.With("part", "consensus")
	cc.ValidateDoc = validateClusterDoc
	cc.OnApply = n.applyDoc
	h := n.inheritedHandover()
	cc.CaughtUpThrough, cc.CaughtUpLeaderless = h.CaughtUpThrough, h.Leaderless
	st, err := consensus.New(cc)
	if mis := (*consensus.IDMismatchError)(nil); errors.As(err, &mis) {
		return fmt.Errorf("%w: this node is named %q; start it with --name %s (the name its data_dir ran under), or, to give the node a new name, run \"pingora-node leave\" on it and start it under the new name with an empty data_dir",
			err, mis.Want, mis.Have)
	}
	if err != nil {
		return err // consensus's errors carry "consensus:" already
	}
	n.store.Store(st)
	return nil
}

// validateClusterDoc is the check every write of the replicated config
// passes on the node where it arrives, before anything is proposed: the
// PUT of the admin API, a write a follower forwards, a rollback, and the
// seed from the cluster config file. It parses, validates and builds the
// document (checkCluster, the dry run), so a version every node would fail
// to apply is never written (issue 13).
func validateClusterDoc(name string, content []byte) error {
	if name != clusterDoc {
		return fmt.Errorf("unknown document %q", name)
	}
	c, err := config.ParseNewCluster("config", content)
	if err != nil {
		return err
	}
	if err := checkCluster(c); err != nil {
		return fmt.Errorf("it does not build: %w", err)
	}
	return nil
}

// applyDoc swaps in a committed cluster config. A version that validated
// on the writer but does not build here (a certificate file missing on
// this node) is reported in /status; the previous version keeps serving.
func (n *Node) applyDoc(d consensus.Doc) {
	if d.Name != clusterDoc {
		return
	}
	c, err := config.ParseCluster(fmt.Sprintf("config v%d", d.Version), d.Content)
	if err == nil {
		err = n.apply(c, d.Content, d.Version, fmt.Sprintf("raft:v%d by %s", d.Version, d.Node))
	}
	if err != nil {
		n.log.Error("replicated config not applied here; previous version kept", "version", d.Version, "err", err)
	}
	n.pokeMeta()
}

// startConsensus starts raft and feeds it the members from gossip (or
// this node alone), and seeds a new cluster with the cluster config file;
// the loops run in g.
func (n *Node) startConsensus(g *group) error {
	st := n.store.Load()
	if st == nil {
		return nil
	}
	if err := st.Start(context.Background()); err != nil {
		return err
	}
	n.log.Info("raft started", "addr", st.Addr(), "bootstrap_expect", n.cfg.Bootstrap())
	n.pokeMeta()
	stop := make(chan struct{})
	n.mu.Lock()
	n.stopStore = stop
	n.mu.Unlock()
	g.goFunc(func() { n.reconcileLoop(st, stop) })
	g.goFunc(func() { n.askLeaderCommit(st, stop) })
	if n.cfg.ClusterConfig != "" {
		g.goFunc(func() { n.seedConfig(st, stop) })
	}
	return nil
}

// reconcileLoop tells raft which servers exist: on every membership event
// and every few seconds.
func (n *Node) reconcileLoop(st *consensus.Store, stop chan struct{}) {
	var events <-chan membership.Event
	var refused <-chan error
	if mc := n.Members(); mc != nil {
		ch, cancel := mc.Subscribe(64)
		defer cancel()
		events, refused = ch, mc.Refused()
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		st.Reconcile(n.raftServers(st))
		select {
		case <-stop:
			return
		case <-events:
		case <-t.C:
		case err := <-refused:
			refused = nil
			if n.inLiveCluster(st, stop) {
				n.log.Error("a seed holds another cluster's state; this node stays in its own cluster, which has a leader and other voters. "+
					"If that seed lost its data_dir and started a new cluster of its own, stop it, empty its data_dir and start it "+
					"with --join naming members of this cluster: it rejoins as a non-voter and is promoted once it has caught up",
					"err", err, "cluster_id", st.ClusterID())
				continue
			}
			n.fail(n.foreignCluster(st, err))
		}
	}
}

// inLiveCluster reports whether this node belongs to a cluster that works
// without a seed found to hold another cluster's state: its configuration
// has other voters and it knows a leader (after waiting up to 5 s for an
// election to end). Such a node stays: the seed is the odd one out, such
// as a seed that lost its data_dir and bootstrapped a cluster of its own
// (with no join list, it forms a one-node cluster at once). Making every
// member of the cluster exit would stop the whole cluster for one node's
// lost disk. A node alone in its cluster, or cut off from it, exits as
// before (issue 12): it is the one that would join the wrong cluster. One
// alone is told at once, without waiting: as its own leader it would add
// the seed, whose gossip it ignores and whose state it cannot see.
func (n *Node) inLiveCluster(st *consensus.Store, stop <-chan struct{}) bool {
	if len(st.Status().Voters) < 2 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { // ends when this function returns, at the latest
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if _, err := st.WaitForLeader(ctx); err != nil {
		return false
	}
	return len(st.Status().Voters) >= 2
}

// foreignCluster explains a join refused because the seeds hold another
// cluster's state: this node must not run on, or the other cluster's
// leader would overwrite its raft log (issue 12).
func (n *Node) foreignCluster(st *consensus.Store, err error) error {
	return fmt.Errorf("refusing to join: %w. data_dir %s holds the state of cluster %s: to join the cluster of the seeds, "+
		"start this node with an empty data_dir; to stay in cluster %s, join one of its members",
		err, n.cfg.Path(n.cfg.DataDir), st.ClusterID(), st.ClusterID())
}

// raftServers translates gossip members into raft servers. A member that
// left gossip is only down for raft: a node stopped with SIGTERM stays a
// voter, so it is one again as soon as it restarts, and the leader removes
// it after DeadServerGrace if it does not return; "pingora-node leave"
// removes a node from raft for good before it leaves gossip.
func (n *Node) raftServers(st *consensus.Store) []consensus.Server {
	self := consensus.Server{ID: n.cfg.Name, Addr: st.Addr(), Alive: true, HasState: st.HasState(), ClusterID: st.ClusterID(),
		Recovering: st.Recovering()}
	mc := n.Members()
	if mc == nil {
		return []consensus.Server{self}
	}
	out := []consensus.Server{self}
	for _, m := range mc.Members() {
		if m.Name == n.cfg.Name || m.Meta.Addrs.Raft == "" {
			continue
		}
		out = append(out, consensus.Server{ID: m.Name, Addr: m.Meta.Addrs.Raft, Alive: m.State == membership.Alive,
			HasState: m.Meta.RaftState, ClusterID: m.Meta.ClusterID, Recovering: m.Meta.RaftRecovering})
	}
	return out
}

// seedConfig writes the cluster config file as version 1 when this node
// leads a cluster that has none yet.
func (n *Node) seedConfig(st *consensus.Store, stop chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if _, ok := st.Get(clusterDoc); ok {
			return
		}
		if !st.IsLeader() {
			continue
		}
		c, data, err := n.readClusterFile()
		if err == nil {
			err = checkCluster(c) // Put runs it too; here it is logged as the file's fault
		}
		if err != nil {
			n.log.Error("seeding the cluster config", "err", err)
			return
		}
		if why := c.RoutesNothing(); why != "" {
			n.log.Warn("cluster config file not seeded: the nodes stay not ready until a config is applied", "file", *n.clusterPath.Load(), "reason", why)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = st.Put(ctx, clusterDoc, data, 0)
		cancel()
		if err == nil {
			n.log.Info("cluster config seeded from file", "file", *n.clusterPath.Load())
			return
		}
		if errors.Is(err, consensus.ErrConflict) { // another server seeded first, or a config exists
			n.log.Info("cluster config already seeded: the file was not applied", "file", *n.clusterPath.Load())
			return
		}
	}
}

// closeConsensus stops raft, handing leadership over first.
func (n *Node) closeConsensus() {
	st := n.store.Swap(nil)
	if st == nil {
		return
	}
	n.mu.Lock()
	if n.stopStore != nil {
		close(n.stopStore)
		n.stopStore = nil
	}
	n.mu.Unlock()
	if err := st.Shutdown(); err != nil {
		n.log.Warn("stopping raft", "err", err)
	}
}

// Store returns the node's raft store, or nil without data_dir.
func (n *Node) Store() *consensus.Store { return n.store.Load() }
