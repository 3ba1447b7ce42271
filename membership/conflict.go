package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// ErrNameConflict is returned (through Cluster.Err and the join status)
// when another live node already uses this node's name at another
// address. memberlist only logs "Conflicting address" and keeps both, so
// the second node would run on unseen (issue 12).
var ErrNameConflict = errors.New("membership: name conflict")

// ErrAddressConflict is a join's (or a push/pull's) error when another
// live node is at this node's advertised gossip address.
var ErrAddressConflict = errors.New("membership: address conflict")

// nameClash is a node with our name at another address, seen in a peer's
// state during one of our joins.
type nameClash struct{ addr, name string }

// mergeGuard is memberlist's MergeDelegate: it refuses a push/pull in which
// a live node has this node's name and another address. A restart at the
// same address (memberlist then refutes the old incarnation) and a node
// already declared dead pass.
type mergeGuard struct {
	name  string
	self  *atomic.Pointer[string] // our advertised "ip:port"
	clash *atomic.Pointer[nameClash]
	// addrClash: another live node (name) at our advertised address
	addrClash *atomic.Pointer[nameClash]
	ours      *atomic.Bool // a join of ours is in progress
	log       *slog.Logger
}

var _ memberlist.MergeDelegate = (*mergeGuard)(nil)

func (g *mergeGuard) NotifyMerge(peers []*memberlist.Node) error {
	self := g.self.Load()
	for _, p := range peers {
		if self == nil || (p.State != memberlist.StateAlive && p.State != memberlist.StateSuspect) {
			continue
		}
		if p.Name != g.name && p.Address() == *self {
			// Our advertised address is another live node's: a node
			// file copied with its advertise_addr. Merged, the others
			// would list this node where that one answers, and that
			// one ignores probes for a name not its own: this node
			// would be declared dead while it takes itself for a
			// member. A node renamed and restarted at its address
			// meets its old name here until the cluster declares it
			// dead, a few seconds; the join retries.
			if g.ours.Load() {
				g.addrClash.Store(&nameClash{addr: p.Address(), name: p.Name}) // checked by joinStep
			} else {
				g.log.Warn("membership: refused to merge state listing another live node at this node's advertised address",
					"other", p.Name, "addr", p.Address())
			}
			return fmt.Errorf("%w: node %q is alive at %s, this node's advertised gossip address: check advertise_addr "+
				"(if %q is gone, the cluster declares it dead within seconds and a later join succeeds)",
				ErrAddressConflict, p.Name, p.Address(), p.Name)
		}
		if p.Name != g.name || p.Address() == *self {
			continue
		}
		if g.ours.Load() {
			g.clash.Store(&nameClash{addr: p.Address()}) // checked by joinStep
		} else {
			g.log.Warn("membership: refused to merge state listing another live node with this node's name", "addr", p.Address())
		}
		return fmt.Errorf("%w: a node named %q is alive at %s", ErrNameConflict, g.name, p.Address())
	}
	return nil
}

// checkConflict runs after a join: if a peer showed another node with our
// name, it pings that address for our name. An answer means a second live
// node uses the name: gossip stops (without leaving, which peers would
// take for the other node's), the error goes to Err, and fatal is true.
// No answer means a dead instance of this node that peers have not yet
// declared dead: the refused merge is retried with the join.
//
// A member re-joining a seed (rejoin: it has joined the cluster before)
// never yields its name: the node with the same name it met there is a
// newcomer, which the members refuse and which stops itself when its own
// join finds this node answering. A host started with a copy of a live
// node's name, at the address of a departed seed, stopped the live node
// (the raft leader) at its next re-join instead.
func (c *Cluster) checkConflict(rejoin bool) (fatal bool, err error) {
	cl := c.clash.Swap(nil)
	if cl == nil {
		return false, nil
	}
	if rejoin {
		c.log.Warn("membership: a seed runs another node with this node's name; this node is a member of the cluster "+
			"and keeps it: rename the other node", "addr", cl.addr, "name", c.cfg.Name)
		return false, fmt.Errorf("%w: another node named %q is at %s, refused (this node is at %s, a member of the cluster): give that node a unique name",
			ErrNameConflict, c.cfg.Name, cl.addr, c.Addr())
	}
	ml, merr := c.memberlist()
	addr, aerr := net.ResolveUDPAddr("udp", cl.addr)
	if merr != nil || aerr != nil {
		return false, nil
	}
	for range 3 {
		if _, perr := ml.Ping(c.cfg.Name, addr); perr == nil {
			err := fmt.Errorf("%w: another node named %q is alive at %s (this node is at %s): give this node a unique name",
				ErrNameConflict, c.cfg.Name, cl.addr, c.Addr())
			c.fail(err)
			return true, err
		}
	}
	c.log.Warn("membership: the cluster lists this node's name at another address that does not answer; "+
		"waiting until peers declare that instance dead", "addr", cl.addr)
	return false, fmt.Errorf("%w: peers list this node's name at %s, which does not answer: waiting for them to declare it dead", ErrNameConflict, cl.addr)
}

// checkAddrConflict runs after a join: if a peer listed another live
// node at this node's advertised gossip address, it asks whether that
// address reaches this node (reachesSelf). It does not: the address is
// the other node's (advertise_addr copied from its node file), so gossip
// stops, the error goes to Err, and fatal is true. It does: the other is
// gone from it (renamed and restarted here, say) and peers have not yet
// declared it dead; the join is retried. (Pinging the other node there
// would not tell: a ping carries the sender's advertised address, where
// the other node sends its answer, to itself.)
func (c *Cluster) checkAddrConflict() (fatal bool, err error) {
	cl := c.addrClash.Swap(nil)
	if cl == nil {
		return false, nil
	}
	ml, merr := c.memberlist()
	if merr != nil {
		return false, nil
	}
	if perr := c.reachesSelf(ml); perr != nil {
		err := fmt.Errorf("%w: peers list node %q alive at %s, this node's advertised gossip address, which does not reach this node "+
			"(bound at %s; %v): give this node its own advertise_addr", ErrAddressConflict, cl.name, cl.addr, c.bound, perr)
		c.fail(err)
		return true, err
	}
	c.log.Warn("membership: the cluster lists another node at this node's advertised address, which reaches this node; "+
		"waiting until peers declare that node dead", "other", cl.name, "addr", cl.addr)
	return false, fmt.Errorf("%w: peers list node %q at %s, this node's advertised gossip address: waiting for them to declare it dead",
		ErrAddressConflict, cl.name, cl.addr)
}

// fail stops gossip for good and reports err on Err, once.
func (c *Cluster) fail(err error) {
	c.failOnce.Do(func() {
		c.log.Error("membership: stopping gossip", "err", err)
		ml, e := c.memberlist()
		c.failed.Store(&err) // from now on memberlist() returns err
		if e == nil {
			ml.Shutdown() // no Leave: it would be taken for the other node's
		}
		c.errc <- err
	})
}

// Err receives one error when the Cluster cannot go on: another live node
// uses this node's name (ErrNameConflict). Gossip has then stopped; the
// caller should exit, and Leave refuses to run.
func (c *Cluster) Err() <-chan error { return c.errc }

func (c *Cluster) failure() error {
	if p := c.failed.Load(); p != nil {
		return *p
	}
	return nil
}
