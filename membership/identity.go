package membership

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrBadName is matched (errors.Is) by the error for a node name that is
// not 1-64 letters, digits, '.', '_' or '-'.
var ErrBadName = errors.New("membership: invalid node name")

// validName is the rule for node names, the node file's too: letters,
// digits, '.', '_' and '-', 1 to 64 of them.
func validName(name string) bool {
	if len(name) == 0 || len(name) > nodeNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// nodeNameLen bounds a node name.
const nodeNameLen = 64

// checkName refuses a name validName does not take. Nodes of this package
// only have such names (Config.Validate), so a member that gossips
// another is no node of the cluster: a stranger on a gossip port without
// a SecretKey could otherwise list itself under a name holding terminal
// escape sequences, new lines or a megabyte, which every member would
// show in its status, logs and the CLI's tables. The error quotes at most
// the name's first 64 bytes.
func checkName(name string) error {
	if validName(name) {
		return nil
	}
	shown := name
	if len(shown) > nodeNameLen {
		shown = shown[:nodeNameLen] + "..."
	}
	return fmt.Errorf("%w %q (%d bytes): a node name is 1-%d letters, digits, '.', '_' or '-'", ErrBadName, shown, len(name), nodeNameLen)
}

// ErrForeignCluster is matched (errors.Is) by the *ForeignClusterError
// that Refused delivers.
var ErrForeignCluster = errors.New("membership: another cluster")

// ForeignClusterError says that a node belongs to another cluster than
// this node: its Meta.ClusterID differs from this node's.
type ForeignClusterError struct {
	Own     string // this node's cluster ID
	Addr    string // the other node's gossip address
	Node    string // its name
	Cluster string // its cluster ID
}

func (e *ForeignClusterError) Error() string {
	return fmt.Sprintf("membership: node %s at %s belongs to cluster %s, this node to cluster %s",
		e.Node, e.Addr, e.Cluster, e.Own)
}

// Is makes errors.Is(err, ErrForeignCluster) true.
func (e *ForeignClusterError) Is(target error) bool { return target == ErrForeignCluster }

// Nodes of two clusters never merge their member lists. Meta.ClusterID is
// the identity of a node's replicated state (set by node from consensus;
// "" for a node without state yet, which may join any cluster and adopts
// its ID). A join whose two sides hold different non-empty IDs is refused
// by both (memberlist's merge delegate), and alive messages about nodes
// of another cluster are ignored (its alive delegate), so that a node
// bridging two clusters cannot merge them either. The node that joined
// learns why through Refused; it must not run on (its data would be
// overwritten by the other cluster's raft leader).

// guard is the merge and alive delegates' state.
type guard struct {
	meta *atomic.Pointer[[]byte] // this node's encoded metadata
	name string                  // this node's name
	self *atomic.Pointer[string] // this node's advertised gossip address, once started
	// liveAt names a live member other than except at a gossip address
	// (Cluster.liveAt), or "".
	liveAt  func(addr, except string) string
	seeds   atomic.Pointer[[]string] // this node's seeds, resolved by joinStep
	refused chan error               // cap 1: Refused
	mu      sync.Mutex
	foreign map[string]*ForeignClusterError // by gossip address, from refusals
}

func newGuard(meta *atomic.Pointer[[]byte], name string, self *atomic.Pointer[string]) *guard {
	return &guard{meta: meta, name: name, self: self, refused: make(chan error, 1), foreign: map[string]*ForeignClusterError{}}
}

// clusterIDOf decodes only the cluster ID from encoded metadata, a peer's
// too: what declares more than it holds is refused before msgpack
// allocates for it (checkLengths).
func clusterIDOf(b []byte) string {
	if len(b) == 0 || b[0] != metaFormat || checkLengths(b[1:]) != nil {
		return ""
	}
	var m struct {
		ClusterID string `msgpack:"ci"`
	}
	if msgpack.Unmarshal(b[1:], &m) != nil {
		return ""
	}
	return m.ClusterID
}

// check returns an error when peer holds another cluster's state.
func (g *guard) check(peer *memberlist.Node) *ForeignClusterError {
	own := clusterIDOf(*g.meta.Load())
	theirs := clusterIDOf(peer.Meta)
	if own == "" || theirs == "" || own == theirs {
		return nil
	}
	return &ForeignClusterError{Own: own, Addr: peer.Address(), Node: peer.Name, Cluster: theirs}
}

// NotifyMerge refuses a join between two clusters, and a push/pull that
// lists a node whose name no node of this package can have (checkName).
func (g *guard) NotifyMerge(peers []*memberlist.Node) error {
	var first error
	for _, p := range peers {
		if err := checkName(p.Name); err != nil {
			return err
		}
		if e := g.check(p); e != nil {
			g.refuse(e)
			if first == nil {
				first = e
			}
		}
	}
	return first
}

// NotifyAlive ignores alive messages about nodes of another cluster. A
// seed's arrive here, too, when the two nodes merged before the seed's
// cluster ID reached its metadata (the first second of a new cluster).
func (g *guard) NotifyAlive(peer *memberlist.Node) error {
	if err := checkName(peer.Name); err != nil {
		return err
	}
	if e := g.check(peer); e != nil {
		g.refuse(e)
		return e
	}
	if self := g.self.Load(); self != nil && peer.Name != g.name && peer.Address() == *self {
		// A node that advertises our address (its node file copied
		// from ours): listed, it would be probed here, where the
		// probes for its name are ignored. Its own join finds it out
		// (checkAddrConflict).
		return fmt.Errorf("%w: node %q claims this node's address %s", ErrAddressConflict, peer.Name, *self)
	}
	if g.liveAt != nil && peer.Name != g.name {
		// The same, for another member's address: that member ignores
		// the probes for the newcomer's name, which every node would
		// list, then declare failed. A node renamed and restarted at
		// its address is let in once the cluster has declared its old
		// name dead, a few seconds.
		if other := g.liveAt(peer.Address(), peer.Name); other != "" {
			return fmt.Errorf("%w: node %q claims the address %s of live member %q", ErrAddressConflict, peer.Name, peer.Address(), other)
		}
	}
	return nil
}

// refuse records a refusal and, when it is about one of this node's seeds
// (this node is the one that joined), delivers it to Refused once.
func (g *guard) refuse(e *ForeignClusterError) {
	g.mu.Lock()
	if len(g.foreign) > 1024 { // bounded: only the latest refusals matter
		clear(g.foreign)
	}
	g.foreign[e.Addr] = e
	g.mu.Unlock()
	if p := g.seeds.Load(); p != nil && slices.Contains(*p, e.Addr) {
		select {
		case g.refused <- e:
		default:
		}
	}
}

// Refused delivers a *ForeignClusterError when a seed of this node holds
// another cluster's state than this node (see Meta.ClusterID): the join
// was refused, or the seed was found out after joining. Joining goes on
// being retried; the caller decides whether to run on.
func (c *Cluster) Refused() <-chan error { return c.guard.refused }

// merges asks each merge delegate in turn; the first refusal cancels the
// merge (memberlist takes one).
type merges []memberlist.MergeDelegate

func (m merges) NotifyMerge(peers []*memberlist.Node) error {
	for _, d := range m {
		if err := d.NotifyMerge(peers); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ memberlist.MergeDelegate = (*guard)(nil)
	_ memberlist.AliveDelegate = (*guard)(nil)
	_ memberlist.MergeDelegate = merges(nil)
)
