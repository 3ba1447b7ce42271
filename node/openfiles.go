package node

import (
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy"
)

// FileBudget is how many descriptors a node's settings let it hold open
// at once, by part: what RLIMIT_NOFILE must allow for the node never to
// meet "too many open files" below its own caps.
type FileBudget struct {
	// Downstream is downstream.max_conns: client connections.
	Downstream int
	// Upstream is the connections to the upstream peers: the sum over the
	// groups of max_conns times peers when every group has a max_conns,
	// else one per client connection (a proxied HTTP/1.1 connection holds
	// one upstream connection; nginx counts a proxied connection twice
	// too). UpstreamCapped says which.
	Upstream       int
	UpstreamCapped bool
	// Splice is the descriptors of the splice(2) pipes: two per pipe, at
	// most proxy's 1024 pipes at once (0 with splice off).
	Splice int
	// Fixed is the node's own: the admin API's cap of connections, the
	// raft connections' cap on the cluster port (with data_dir), and a
	// margin for the listeners, gossip, cluster RPC, the raft store, the
	// upgrade socket and health checks.
	Fixed int
}

const (
	// splicePipeFDs is proxy's maxSplicePipes (1024) pipes, two
	// descriptors each.
	splicePipeFDs = 2 * 1024
	// fileMargin is the descriptors of everything uncapped and small: the
	// listeners, gossip's TCP and UDP sockets, a few cluster RPC
	// connections per node, raft's store and snapshots, the upgrade
	// socket, health checks, the log.
	fileMargin = 256
)

// OpenFileBudget returns what n can hold open with the cluster config c;
// nil c (not known at start: replicated, or unreadable) counts the
// upstream connections as uncapped.
func OpenFileBudget(n *config.Node, c *config.Cluster) FileBudget {
	b := FileBudget{Downstream: n.Downstream.MaxConns, Fixed: maxAdminConns + fileMargin}
	if b.Downstream == 0 {
		b.Downstream = proxy.DefaultConfig().Downstream.MaxConns
	}
	if n.Replicated() {
		b.Fixed += maxRaftConns
	}
	if n.Splice == nil || *n.Splice {
		b.Splice = splicePipeFDs
	}
	b.Upstream, b.UpstreamCapped = b.Downstream, false
	if c != nil && len(c.Upstreams) > 0 {
		sum, capped := 0, true
		for _, u := range c.Upstreams {
			if u.MaxConns <= 0 {
				capped = false
				break
			}
			sum += u.MaxConns * len(u.Peers)
		}
		if capped {
			b.Upstream, b.UpstreamCapped = sum, true
		}
	}
	return b
}

// Total is every part added up.
func (b FileBudget) Total() int { return b.Downstream + b.Upstream + b.Splice + b.Fixed }

// MaxConnsWithin returns the largest downstream.max_conns whose budget
// fits within limit descriptors, 0 when none does.
func (b FileBudget) MaxConnsWithin(limit int) int {
	rest := limit - b.Splice - b.Fixed
	if b.UpstreamCapped {
		rest -= b.Upstream
	} else {
		rest /= 2 // each client connection brings an upstream one
	}
	return max(rest, 0)
}
