package membership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// JoinStatus is the state of joining the seeds, for /status: a join that
// keeps failing shows here (issue 12).
type JoinStatus struct {
	// Seeds is the configured Join list.
	Seeds []string `json:"seeds"`
	// Tried lists the addresses tried at the last attempt: the seeds as
	// resolved then, without this node and, once joined, without the live
	// members.
	Tried []string `json:"tried,omitempty"`
	// Joined is true once a seed answered, once another member joined
	// this node, or from the start when every seed is this node itself
	// (the cluster's first node: there is nothing to join). Note says
	// which of the last two it was.
	Joined bool   `json:"joined"`
	Note   string `json:"note,omitempty"`
	// Failures counts failed attempts since the last success.
	Failures    int       `json:"failures"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Refused is true when, at the last failed attempt, a seed answered
	// and turned this node away rather than not answering: another
	// gossip_key (or none where the seed has one), another cluster_name
	// (the seed drops the stream), or a port that is not gossip's. A
	// refusal does not heal by retrying, unlike a seed that is down or
	// cut off; it says nothing once the node has joined.
	Refused bool `json:"refused,omitempty"`
}

// joinState guards the JoinStatus the join loop updates.
type joinState struct {
	mu sync.Mutex
	st JoinStatus
}

func (j *joinState) get() JoinStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.st
	st.Seeds, st.Tried = slices.Clone(st.Seeds), slices.Clone(st.Tried)
	return st
}

func (j *joinState) update(f func(*JoinStatus)) {
	j.mu.Lock()
	f(&j.st)
	j.mu.Unlock()
}

// backoff is the wait after try number attempt (from 0): first, doubling,
// at most limit. Joins use it while no seed has answered yet, the metadata
// sync for a lagging peer.
func backoff(first, limit time.Duration, attempt int) time.Duration {
	d := first
	for range attempt {
		if d *= 2; d >= limit {
			return limit
		}
	}
	return min(d, limit)
}

// joinLoop joins the seeds with capped exponential backoff until one
// answers or another member joins this node (whoever joined whom, the
// node is in a cluster), then every RejoinInterval re-joins the seeds
// that are not among the live members, so that two halves of a healed
// partition merge again. A node whose only seed is itself starts the
// cluster, as with Consul's retry_join: it has nothing to join and waits
// for the others.
func (c *Cluster) joinLoop() {
	if len(c.cfg.Join) == 0 {
		return
	}
	first := pick(c.cfg.Profile == ProfileFast, 50*time.Millisecond, 500*time.Millisecond)
	for attempt := 0; c.stopping() || !c.joinStep(false); attempt++ {
		d := backoff(first, c.cfg.JoinBackoffMax, attempt)
		if c.awaitingDead.Load() && c.probeEvery > 0 {
			// Refused only until peers declare a departed node dead
			// (a container whose IP or name a new one took): that
			// takes seconds, and the backoff would go on doubling
			// past it (seen: dead at 5 s, joined at 8.5 s; up to
			// JoinBackoffMax later). Retry every probe interval.
			d = min(d, c.probeEvery)
		}
		// a member joining us ends the wait: we are in a cluster
		// (not while refused: see joinStep)
		wake := c.joinKick
		if c.awaitingDead.Load() {
			wake = nil
		}
		if !c.sleepUntilNext(d, wake) {
			return
		}
	}
	for c.sleepUntilNext(c.cfg.RejoinInterval, nil) {
		if !c.stopping() {
			c.joinStep(true)
		}
	}
}

// stopping reports whether this node is on its way out: draining (its
// metadata says so, as a node's shutdown sets before it leaves) or left.
// Such a node starts no join attempt: in a whole-cluster stop the others
// leave first, and re-joining their addresses (still answering until
// their process exits) brought them back into its member list, so its
// own leave then waited out its timeout for them.
func (c *Cluster) stopping() bool {
	return c.leaving.Load() || c.Meta().State == StateDraining
}

// sleepUntilNext waits d or until wake, showing the next attempt's time in
// the join status once the timer is armed; it returns false on Shutdown.
func (c *Cluster) sleepUntilNext(d time.Duration, wake <-chan struct{}) bool {
	t := c.cfg.Clock.NewTimer(d)
	defer t.Stop()
	next := c.cfg.Clock.Now().Add(d)
	c.join.update(func(st *JoinStatus) { st.NextAttempt = next })
	select {
	case <-c.stop:
		return false
	case <-t.C():
		return true
	case <-wake:
		return true
	}
}

// kickJoin wakes a join loop still waiting for its first success: another
// member is alive, so this node is in a cluster.
func (c *Cluster) kickJoin() {
	select {
	case c.joinKick <- struct{}{}:
	default: // one pending kick is enough
	}
}

// joinStep resolves the seeds (DNS names afresh each time) and joins them;
// with onlyMissing it skips seeds already among the live members. It
// reports whether at least one seed answered, or none needed joining.
func (c *Cluster) joinStep(onlyMissing bool) bool {
	ml, err := c.memberlist()
	if err != nil {
		return false
	}
	seeds, self, rerr := c.resolveSeeds()
	var selfErr error // this node's address is a seed, and does not reach it
	all := slices.Clone(seeds)
	c.guard.seeds.Store(&all) // a refusal about one of them is ours to report
	if !onlyMissing {
		if peer := c.liveOther(); peer != "" && !c.awaitingDead.Load() {
			// Another member joined us (the seeds may be down, or
			// be us): we are in its cluster. Joining the seeds still
			// missing is the re-join's job from now on.
			// Not while the members refuse us for a node they have
			// yet to declare dead (awaitingDead): they go on
			// gossiping to that node's address, this node's now, and
			// the alive messages of their own that it takes from
			// there list them here while none of them lists this
			// node. Counted as joined, it stopped joining and was let
			// in only at its next push/pull, up to 30 s (lan) later.
			c.recordJoined(fmt.Sprintf("joined by %s", peer))
			c.log.Info("membership: joined", "by", peer, "seeds", c.cfg.Join)
			return true
		}
		if self {
			if selfErr = c.checkSelfSeed(ml); selfErr != nil {
				// Join whatever answers there: a node of the cluster
				// is found out (checkAddrConflict), nothing is an error.
				seeds = append(seeds, c.Addr())
			}
		}
		if len(seeds) == 0 && rerr == nil && self {
			// Every seed is this node: it is the seed, the cluster's
			// first node, and waits for the others to join it.
			c.recordJoined("this node is its only seed: it starts the cluster and the others join it")
			c.log.Info("membership: this node is its only seed; waiting for the others to join it", "seeds", c.cfg.Join)
			return true
		}
	}
	if onlyMissing {
		seeds = c.missing(seeds)
		if len(seeds) == 0 {
			// Every seed is a live member again (a healed partition, a
			// host back): an earlier re-join's failure is no longer
			// true, and status went on showing it.
			c.join.update(func(st *JoinStatus) {
				if st.LastError != "" {
					st.Tried, st.Failures, st.LastError = nil, 0, ""
				}
			})
			return true
		}
	}
	now := c.cfg.Clock.Now()
	n := 0
	if len(seeds) > 0 {
		c.joining.Store(true)
		n, err = ml.Join(seeds)
		c.joining.Store(false)
	}
	refused := n == 0 && refusedJoin(err)
	if n == 0 {
		err = errors.Join(rerr, wrongPortHint(oneLine(err)))
		if err == nil {
			err = fmt.Errorf("no seed address to join")
		}
	}
	awaiting := false // refused until peers declare a node dead
	if fatal, cerr := c.checkConflict(onlyMissing); fatal || (cerr != nil && n == 0) {
		n, err, awaiting = 0, cerr, !fatal && cerr != nil && !onlyMissing
	}
	if fatal, cerr := c.checkAddrConflict(); fatal || cerr != nil {
		n, err, awaiting = 0, cerr, !fatal
	} else if selfErr != nil && n == 0 {
		err = fmt.Errorf("%w; joining it: %w", selfErr, err)
	} else if selfErr != nil {
		c.log.Warn("membership: joined, but this node's advertised address does not reach it: the others will declare it dead", "err", selfErr)
	}
	c.awaitingDead.Store(awaiting && n == 0)
	c.recordJoin(now, seeds, n, err, refused)
	if n > 0 {
		c.log.Info("membership: joined", "contacted", n, "seeds", seeds)
		return true
	}
	c.joinFails.Add(1)
	lvl := pick(onlyMissing, c.log.Debug, c.log.Warn)
	lvl("membership: join failed, will retry", "seeds", seeds, "err", err)
	return false
}

// checkSelfSeed runs when this node's advertised gossip address is one of
// its seeds (one node file for all), before the node takes itself for the
// cluster's first node: if that address is not the one it bound, it pings
// itself there by name.
// Another node at that address (a node file copied with its
// advertise_addr) ignores a ping for a name not its own, and so does
// nothing there; either way the node would have started a cluster of its
// own, "joined", ready and alone, while the others never saw it.
func (c *Cluster) checkSelfSeed(ml *memberlist.Memberlist) error {
	if err := c.reachesSelf(ml); err != nil {
		return fmt.Errorf("this node's advertised gossip address %s is one of its seeds, but it does not reach this node "+
			"(bound at %s; %v): another node has that address, or nothing answers there; check advertise_addr (and gossip_addr)",
			c.Addr(), c.bound, err)
	}
	return nil
}

// reachesSelf reports (nil) whether this node's advertised gossip address
// reaches it: at once when it is the address the node bound, else by a
// ping to itself there, by name. Another node at that address ignores a
// ping for a name not its own, and nothing there answers nothing.
func (c *Cluster) reachesSelf(ml *memberlist.Memberlist) error {
	own := c.Addr()
	if own == c.bound {
		return nil
	}
	ua, err := net.ResolveUDPAddr("udp", own)
	if err != nil {
		return err
	}
	for range 2 {
		if _, err = ml.Ping(c.cfg.Name, ua); err == nil {
			return nil
		}
	}
	return fmt.Errorf("a ping for %q there went unanswered: %w", c.cfg.Name, err)
}

// missing returns the seeds that are not the address of a live member.
func (c *Cluster) missing(seeds []string) []string {
	live := make(map[string]bool)
	for _, m := range c.Members() {
		if m.State == Alive || m.State == Suspect {
			live[m.Addr] = true
		}
	}
	var out []string
	for _, s := range seeds {
		if !live[s] {
			out = append(out, s)
		}
	}
	return out
}

// liveOther returns the name of a live member other than this node, or "".
func (c *Cluster) liveOther() string {
	for _, m := range c.Members() {
		if m.Name != c.cfg.Name && (m.State == Alive || m.State == Suspect) {
			return m.Name
		}
	}
	return ""
}

// recordJoined marks the node joined without a seed having answered, with
// note saying why.
func (c *Cluster) recordJoined(note string) {
	now := c.cfg.Clock.Now()
	c.join.update(func(st *JoinStatus) {
		st.Joined, st.Note, st.Failures, st.LastSuccess, st.LastError = true, note, 0, now, ""
		st.NextAttempt = time.Time{} // the re-join loop sets it
	})
}

func (c *Cluster) recordJoin(now time.Time, seeds []string, n int, err error, refused bool) {
	c.join.update(func(st *JoinStatus) {
		st.Tried, st.LastAttempt, st.Refused = slices.Clone(seeds), now, false
		if n > 0 {
			st.Joined, st.Note, st.Failures, st.LastSuccess, st.LastError = true, "", 0, now, ""
			return
		}
		st.Failures++
		st.LastError = err.Error()
		st.Refused = refused
	})
}

// refusedJoin reports whether memberlist's join error says that a seed
// answered and turned this node away (JoinStatus.Refused): a gossip_key
// mismatch either way, or a stream the seed read and closed without a
// word, as a gossip port of another cluster_name does (memberlist drops a
// stream with another label) and a cluster port does. A seed that is down
// or unreachable (connection refused, timeouts, no route) is not a
// refusal: the node may be early, or cut off.
func refusedJoin(err error) bool {
	if err == nil {
		return false
	}
	var me interface{ WrappedErrors() []error }
	errs := []error{err}
	if errors.As(err, &me) && len(me.WrappedErrors()) > 0 {
		errs = me.WrappedErrors()
	}
	for _, e := range errs {
		msg := e.Error()
		for _, s := range []string{
			"remote state is encrypted and encryption is not configured",
			"encryption is configured but remote state is not encrypted",
			"no installed keys could decrypt",
			"unacceptable label",
			"connection reset by peer",
		} {
			if strings.Contains(msg, s) {
				return true
			}
		}
		if strings.HasSuffix(msg, ": EOF") {
			return true
		}
	}
	return false
}

// resolveSeeds turns the Join list into "ip:port" addresses other than our
// own (joining ourselves would count as success), and reports whether one
// was our own. Names that fail to resolve are skipped this round and
// reported in the error.
func (c *Cluster) resolveSeeds() (out []string, self bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	own := c.Addr()
	var errs []error
	for _, seed := range c.cfg.Join {
		host, port, err := net.SplitHostPort(seed)
		if err != nil {
			errs = append(errs, fmt.Errorf("bad seed address %q: %w", seed, err))
			continue
		}
		ips, err := c.lookupHost(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot resolve seed %q: %w", seed, err))
			continue
		}
		for _, ip := range ips {
			if a := net.JoinHostPort(ip, port); a != own {
				out = append(out, a)
			} else {
				self = true
			}
		}
	}
	return out, self, errors.Join(errs...)
}

// sleep waits d on the configured clock; it returns false on Shutdown.
func (c *Cluster) sleep(d time.Duration) bool {
	t := c.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.stop:
		return false
	case <-t.C():
		return true
	}
}

// wrongPortHint adds a hint to a join error that shows the seed answered in
// another protocol: memberlist reads a stream's first byte as its message
// type, and an HTTP server's answer ("HTTP/1.1 400") starts with 72, 'H'.
// The usual cause is a seed given with the admin, proxy or raft port.
//
// A seed that reads the join and closes the connection without a word
// (memberlist reports "EOF" or "connection reset by peer") is most often
// a node's cluster port, whose first-byte mux takes no gossip byte, or a
// gossip port of another cluster_name, which drops the stream.
func wrongPortHint(err error) error {
	if err == nil {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid msgType"):
		return fmt.Errorf("%w (the seed answered, but not as a gossip port: join takes a node's gossip_addr, default port 7946, not its admin, proxy or raft address)", err)
	case strings.HasSuffix(msg, ": EOF") || strings.Contains(msg, ": EOF;") || strings.Contains(msg, "connection reset by peer"):
		return fmt.Errorf("%w (the seed closed the connection without answering: join takes a node's gossip_addr, default port 7946, "+
			"not its cluster port, 7947 by default; or the seed's cluster_name or gossip_key differs from this node's)", err)
	}
	return err
}

// oneLine flattens memberlist's join error, a go-multierror printed as
// "N errors occurred:\n\t* failed to join A: ...\n\n", into one line with
// the seeds' errors separated by "; ", for the log and for status.
func oneLine(err error) error {
	var me interface{ WrappedErrors() []error }
	if err == nil || !errors.As(err, &me) || len(me.WrappedErrors()) == 0 {
		return err
	}
	msgs := make([]string, 0, len(me.WrappedErrors()))
	for _, e := range me.WrappedErrors() {
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}
