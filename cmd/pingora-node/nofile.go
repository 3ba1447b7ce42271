package main

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
)

// minOpenFiles is the open-file limit below which a node refuses to
// start. The node's own descriptors (listeners, admin, gossip, the
// cluster port, raft's store, the upgrade socket) are some tens, and a
// proxied client takes two more: under this a node passes its readiness
// check and then fails its first hundred clients with "too many open
// files", which is worse than not starting with the reason. Above it a
// limit lower than the config's caps is a warning only: a node that
// never meets its caps runs well under it (nginx warns alike).
const minOpenFiles = 256

// openFileLimit returns the soft RLIMIT_NOFILE, as the Go runtime left it:
// on Linux it raised the soft limit to the hard one at start.
func openFileLimit() (uint64, error) {
	var r syscall.Rlimit
	err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	return r.Cur, err
}

// checkOpenFiles compares what cfg lets the node open at once with limit:
// one warning when the caps can exceed it, saying by how much and what to
// change; an error when limit is too low to run at all (minOpenFiles).
// The cluster config is read from cfg's file when the node has one
// (without data_dir); a replicated one is not known yet and its upstream
// connections count as uncapped.
func checkOpenFiles(log *slog.Logger, cfg *config.Node, limit uint64) error {
	if limit < minOpenFiles {
		return fmt.Errorf("the open-file limit (RLIMIT_NOFILE) is %d: a node needs at least %d "+
			"(its own sockets and files take tens, each proxied client two more); raise it: "+
			"LimitNOFILE= in the systemd unit, docker run --ulimit nofile=N:N, or ulimit -n", limit, minOpenFiles)
	}
	var cluster *config.Cluster
	if !cfg.Replicated() && cfg.ClusterConfig != "" {
		path := cfg.Path(cfg.ClusterConfig)
		if data, err := os.ReadFile(path); err == nil {
			cluster, _ = config.ParseCluster(path, data) // a bad file is the node's to report
		}
	}
	b := node.OpenFileBudget(cfg, cluster)
	need := b.Total()
	if uint64(need) <= limit {
		return nil
	}
	upstream := "one per client connection (not every upstream group has max_conns)"
	if b.UpstreamCapped {
		upstream = "the upstream groups' max_conns times their peers"
	}
	fix := fmt.Sprintf("raise the open-file limit to at least %d (LimitNOFILE=%d in the systemd unit, docker run --ulimit nofile=%d:%d, or ulimit -n %d)",
		need, need, need, need, need)
	if fit := b.MaxConnsWithin(int(limit)); fit > 0 {
		fix += fmt.Sprintf(", or lower downstream.max_conns to %d", fit)
	}
	if !b.UpstreamCapped {
		fix += ", or give every upstream group a max_conns"
	}
	log.Warn("the open-file limit is below what the config lets the node open: past it, connections fail with \"too many open files\"",
		"open_file_limit", limit, "can_open", need,
		"downstream_max_conns", b.Downstream, "upstream_conns", b.Upstream, "upstream_counted_as", upstream,
		"splice_pipe_fds", b.Splice, "node_own", b.Fixed, "fix", fix)
	return nil
}
