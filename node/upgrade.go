package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy/handoff"
)

// adminListenerName is the admin listener's name in a hand-off.
const adminListenerName = "admin"

// successorTimeout bounds each step a successor takes during a hand-off.
const successorTimeout = time.Minute

// OfferHandoff starts offering the listeners to a successor on the node
// file's upgrade socket: the one taken over from the previous process
// (takeOffer), or a new one. When a successor takes over, Superseded
// closes and the caller drains the node. Call it after Start.
func (n *Node) OfferHandoff() error {
	if n.opts.NoHandoff {
		return nil
	}
	path := n.cfg.UpgradeSocketPath()
	n.mu.Lock()
	offer := n.offer
	n.mu.Unlock()
	inherited := offer != nil
	if offer == nil {
		if in := n.opts.Inherit; in != nil && !in.PassedOffer() {
			// An old process of an earlier version still listens on its
			// own socket file until it exits; a new file takes the name.
			os.Remove(path)
		}
		var err error
		if offer, err = handoff.Listen(path); err != nil {
			return err
		}
		n.mu.Lock()
		n.offer = offer
		n.mu.Unlock()
	}
	// Only a process of this user (or root) is passed the listeners;
	// another user's connection is refused and said so, throttled (a
	// local user could otherwise fill the log).
	noise := logthrottle.New(clock.Real{}, 0, 0)
	offer.OnReject(func(err error) {
		noise.Log(n.log, slog.LevelWarn, "upgrade socket", "upgrade socket: connection refused", "err", err)
	})
	n.offerLoops.goFunc(func() { n.offerLoop(offer) })
	n.log.Info("upgrade socket ready", "path", path, "inherited", inherited)
	return nil
}

// takeOver ends a start: it says where the other nodes reach this one,
// and on an upgrade takes the upgrade socket over and tells the old
// process this one serves. On error the socket taken over is closed
// again (it stays the old process's).
func (n *Node) takeOver() error {
	n.logAdvertised()
	in := n.opts.Inherit
	if in == nil {
		return nil
	}
	err := n.takeOffer()
	if err == nil {
		if err = in.Serving(); err != nil {
			err = fmt.Errorf("handoff: telling the old process: %w", err)
		} else {
			n.log.Info("took over from the previous process")
		}
	}
	if err != nil {
		n.stopOffer()
	}
	return err
}

// takeOffer takes the previous process's upgrade socket over, before Start
// reports serving: this process offers the same socket to its own
// successor, so the path never changes hands and an upgrade requested
// during this hand-off waits in the socket's queue until OfferHandoff.
func (n *Node) takeOffer() error {
	if n.opts.NoHandoff {
		return nil
	}
	offer, ok, err := n.opts.Inherit.TakeOffer(n.cfg.UpgradeSocketPath())
	if err != nil || !ok {
		return err
	}
	n.mu.Lock()
	n.offer = offer
	n.mu.Unlock()
	return nil
}

func (n *Node) offerLoop(offer *handoff.Offer) {
	for {
		tk, err := offer.Accept()
		if err != nil {
			return // closed by Shutdown
		}
		err = n.handOff(tk)
		tk.Close()
		if err == nil {
			close(n.superseded)
			return
		}
		n.log.Error("upgrade failed; this process keeps serving", "successor_pid", tk.PID, "err", err)
	}
}

// handOff passes the listeners to one successor and waits until it serves.
func (n *Node) handOff(tk *handoff.Takeover) error {
	n.log.Info("successor connected, passing listeners", "successor_pid", tk.PID)
	var ls []handoff.Listener
	n.mu.Lock()
	for _, b := range n.listeners {
		f, err := handoff.FileOf(b.ln)
		if err != nil {
			n.mu.Unlock()
			closeFiles(ls)
			return err
		}
		ls = append(ls, handoff.Listener{Entry: handoff.Entry{Name: b.cfg.Name, Addr: b.cfg.Addr, Bound: b.ln.Addr().String()}, File: f})
	}
	for _, extra := range []struct {
		name, addr string
		ln         net.Listener
	}{{adminListenerName, n.cfg.AdminAddr, n.adminLn}, {rpcListenerName, n.cfg.ClusterAddr, n.rpcLn}} {
		if extra.ln == nil {
			continue
		}
		if f, err := handoff.FileOf(extra.ln); err == nil {
			ls = append(ls, handoff.Listener{Entry: handoff.Entry{Name: extra.name, Addr: extra.addr, Bound: extra.ln.Addr().String()}, File: f})
		}
	}
	n.mu.Unlock()
	defer closeFiles(ls)
	if err := tk.Send(ls); err != nil {
		return err
	}
	// The successor stores this process's cache as it starts; the
	// stream ends with the hand-off if that fails. What this process
	// stores until the successor serves follows once it does.
	var bequest net.Conn
	served := make(chan struct{})
	if cc := tk.CacheConn(); cc != nil && n.cache.c.BequeathUntil(cc, cacheInheritTimeout, served) {
		bequest = cc
	}
	ok := false
	defer func() {
		if !ok && bequest != nil {
			bequest.Close()
		}
	}()
	if err := tk.AwaitRelease(successorTimeout); err != nil {
		return err
	}
	// The successor takes the node's cluster identity: stop raft, and
	// gossip without leaving, so peers see a short restart, not a
	// departure.
	n.successor.Store(int64(tk.PID))
	n.handedOff.Store(true)
	h := n.handoverState()
	n.released.Store(&h)
	state, _ := json.Marshal(h)
	n.releasedAt.Store(time.Now().UnixNano())
	n.parts.release(context.Background())
	err := tk.ReleasedWith(state)
	if err == nil {
		err = tk.AwaitServing(successorTimeout)
	}
	n.releasedAt.Store(0) // the successor serves, or this process takes the identity back
	if err != nil {
		n.handedOff.Store(false)
		n.parts.reopen(context.Background())
		return err
	}
	close(served)
	ok = true
	return nil
}

// cacheInheritTimeout bounds the stream of a node's cache to its
// successor (and the successor's wait for it): what has not arrived
// then is filled again from the origins.
var cacheInheritTimeout = 30 * time.Second

// inheritCache starts storing, on an upgrade, the cache the previous
// process streams (sharedcache.Cache.Inherit); one that streams none (an
// older version) leaves the cache empty. It never holds up the start.
func (n *Node) inheritCache() {
	if cc := n.opts.Inherit.CacheConn(); cc != nil {
		n.cache.c.Inherit(cc, cacheInheritTimeout)
	}
}

// handover is what a node tells its successor with the released state.
type handover struct {
	// CaughtUpThrough is the raft index this process had applied while
	// caught up with the leader, 0 when it was not caught up (or does not
	// replicate): the successor starts caught up when the data directory
	// holds it (consensus.Config.CaughtUpThrough), so an upgrade does not
	// take the node off /readyz and every ring while it waits to hear the
	// leader.
	CaughtUpThrough uint64 `json:"caught_up_through,omitempty"`
	// Leaderless says this process knew no raft leader when it let go
	// (cut off from the others, or an election ran): it had not lost its
	// catch-up yet only because it had not heard a leader since, so the
	// successor catches up when it does, as this process would have
	// (consensus.Config.CaughtUpLeaderless).
	Leaderless bool `json:"leaderless,omitempty"`
	// Members is how many nodes the rate limiter's ring held when this
	// process let go: until the successor's gossip has a ring of its
	// own, its clients' requests for keys without a lease are decided by
	// a local share of the limit divided by it, not by the whole limit
	// (predecessorRing).
	Members int `json:"members,omitempty"`
}

// handoverState is this node's handover, read before it releases raft:
// entries it applies after that are in the data directory too.
func (n *Node) handoverState() handover {
	var h handover
	if st := n.Store(); st != nil && st.CatchUp().Done() {
		h.CaughtUpThrough = st.AppliedIndex()
		id, _ := st.Leader()
		h.Leaderless = id == ""
	}
	if mc := n.limitMembers(); mc != nil {
		h.Members = mc.Ring().Len()
	}
	return h
}

// inheritedHandover is what the process this one took over from told it
// (zero when it told nothing: not an upgrade, or an older version).
func (n *Node) inheritedHandover() handover {
	if r := n.released.Load(); r != nil { // raft reopened after a failed hand-off
		return *r
	}
	var h handover
	if in := n.opts.Inherit; in != nil && in.State() != nil {
		if err := json.Unmarshal(in.State(), &h); err != nil {
			n.log.Warn("handoff: the previous process's state not understood; starting as after a restart", "err", err)
			return handover{}
		}
	}
	return h
}

func closeFiles(ls []handoff.Listener) {
	for _, l := range ls {
		l.File.Close()
	}
}

func (n *Node) stopOffer() {
	n.mu.Lock()
	offer := n.offer
	n.offer = nil
	n.mu.Unlock()
	if offer != nil {
		offer.Close()
	}
}

// Superseded is closed once a successor process has taken over the
// listeners; the node should then drain and stop.
func (n *Node) Superseded() <-chan struct{} { return n.superseded }

// ErrNeedsHandoff is returned by ReloadFile when the new node file changes
// something only a new process can apply (listeners, timeouts, limits,
// addresses): the caller starts a successor with the new file.
var ErrNeedsHandoff = errors.New("node file change needs a hand-off to a new process")

// ErrNotLive is wrapped by the error ReloadFile returns when the new node
// file changes what no process of a running cluster member can take on:
// the caller keeps the running config and reports the error.
var ErrNotLive = errors.New("the change cannot apply while the node runs")

// notLive names the changes from cur to next that a successor could not
// apply either: a gossiping node whose cluster_name or gossip_key changes
// hands off to a process that the cluster's other members cannot gossip
// with (they drop its packets, or it theirs), so the node falls out of
// its cluster, NOT READY and dead to the others, while the process that
// was serving has exited. Both change for the whole cluster at once:
// stop every node, edit, start them (see gossip_key in README.md).
func notLive(cur, next *config.Node) error {
	if !cur.Clustered() {
		return nil
	}
	var changed []string
	if cur.ClusterName != next.ClusterName {
		changed = append(changed, fmt.Sprintf("cluster_name (%q to %q)", cur.ClusterName, next.ClusterName))
	}
	if cur.GossipKey != next.GossipKey {
		changed = append(changed, "gossip_key")
	}
	if len(changed) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s changed: a process with it could not gossip with the cluster's other members "+
		"(they would refuse it, and the node would drop out of the cluster); change it on every node at once "+
		"(stop every node, edit the node file, start them), or put the old value back", ErrNotLive, strings.Join(changed, " and "))
}

// CheckSuccessorFile reports, before a successor is started with cfg (a
// binary upgrade, SIGUSR2), a change no process can apply while this node
// is a cluster member (see ReloadFile): an error wrapping ErrNotLive.
func (n *Node) CheckSuccessorFile(cfg *config.Node) error { return notLive(n.cfg, cfg) }

// ReloadFile applies a re-read node file. The cluster config path, the log
// level and certificate contents change in place; any other change returns
// ErrNeedsHandoff and changes nothing. The cluster config and certificates
// are re-read either way (Reload). A change no process can apply while the
// node is a cluster member (cluster_name, gossip_key) returns an error
// wrapping ErrNotLive and changes nothing.
func (n *Node) ReloadFile(cfg *config.Node) error {
	if err := notLive(n.cfg, cfg); err != nil {
		return err
	}
	cur, next := *n.cfg, *cfg
	cur.ClusterConfig, cur.LogLevel = next.ClusterConfig, next.LogLevel
	if !reflect.DeepEqual(cur, next) {
		return ErrNeedsHandoff
	}
	path := cfg.Path(cfg.ClusterConfig)
	n.clusterPath.Store(&path)
	if n.level.Level() != parseLevel(cfg.LogLevel) {
		n.level.Set(parseLevel(cfg.LogLevel))
		n.log.Info("log level changed", "level", cfg.LogLevel)
	}
	return n.Reload()
}
