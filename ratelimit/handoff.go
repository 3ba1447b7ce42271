package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/pingora-go/pingora-go/wire"
)

// handoffStep sends the counters this node holds but no longer owns (the
// ring changed: a node joined, or this one is draining) to their new
// owners, and drops each once its owner took it. A counter whose new owner
// cannot be reached is kept and offered again a second later, until it
// goes idle. On a StandbyRing the counters are kept after they were sent
// (TestStandbyKeepsCounters): before, a successor that stalled for a
// probe interval, shorter than failure detection, made the old process
// drop them at the next node, which did not own them, so the successor
// got none by HandOver and the key admitted its limit again.
func (l *Limiter) handoffStep(rs *ruleSet, ring Ring) {
	sr, keep := ring.(StandbyRing)
	keep = keep && sr.Standby()
	type ref struct {
		c   *counters
		key string
		ctr *counter
	}
	now := l.wall()
	groups := map[string][]handoff{}
	refs := map[string][]ref{}
	var kb []byte
	for _, st := range rs.list {
		if st.rule.Scope != Global {
			continue
		}
		st.c.owned.each(func(key string, c *counter) {
			kb = appendOwnerKey(kb[:0], st.rule.Name, key)
			owner, self := ring.Owner(unsafe.String(unsafe.SliceData(kb), len(kb)))
			if self || owner == "" {
				return
			}
			groups[owner] = append(groups[owner], c.handoff(st, key, now))
			refs[owner] = append(refs[owner], ref{st.c, key, c})
		})
	}
	l.sync.pending = false
	for owner, hs := range groups {
		if err := l.sendHandoffs(owner, hs); err != nil {
			l.sync.pending = true
			l.st.handoffErrors.Add(1)
			l.cfg.Logger.Warn("ratelimit: hand-off failed; the counters stay here and are offered again", "owner", owner, "keys", len(hs), "err", err)
			continue
		}
		l.st.handoffs.Add(uint64(len(hs)))
		if keep {
			continue
		}
		for _, r := range refs[owner] {
			r.c.owned.remove(r.key, r.ctr)
		}
	}
}

// handoff returns the counter's state and leases for its new owner.
func (c *counter) handoff(st *ruleState, key string, now int64) handoff {
	c.mu.Lock()
	defer c.mu.Unlock()
	idx, _ := windowAt(now, st.rule.Period)
	c.advance(st, now, idx)
	h := handoff{rule: st.rule.Name, key: key, snap: c.snap(st, now)}
	for _, ls := range c.leases[:min(len(c.leases), maxLeasesIn)] {
		h.leases = append(h.leases, handoffLease{node: ls.node, out: ls.out, left: ls.exp - now})
	}
	return h
}

// HandOver sends every counter this node owns, with its leases, to addr,
// where a successor process of the same name now serves the node's
// cluster port (a graceful upgrade), and waits for the answer. The ring
// does not change on an upgrade, so neither Drain nor the sync loop moves
// them, and the other nodes, reporting to an owner of the same name, send
// no hint: without it the successor started each key's count from
// nothing, and the key admitted up to its limit again in the window of
// the upgrade (TestUpgradeSim). The counters stay here as well, so what
// this process still admits while it drains is counted against them, but
// from now on it grants no tokens, to itself or to a node whose report
// reaches it still (before the successor has them all): the successor
// grants them, and what both granted was the limit twice over, in the
// upgrade's window and in each one after while this process drained
// (TestHandedOverGrantsNothing). Its requests decide by the leases they
// hold; a busy key's are refused once those are spent, a quiet key's by
// the local share, reported here. So it errs on limiting, for a process
// whose listeners are the successor's already.
func (l *Limiter) HandOver(addr string) error {
	l.handedOver.Store(true) // whether or not the counters reach it
	l.sync.mu.Lock()
	defer l.sync.mu.Unlock()
	now := l.wall()
	var hs []handoff
	global := false
	for _, st := range l.rules.Load().list {
		if st.rule.Scope != Global {
			continue
		}
		global = true
		st.c.owned.each(func(key string, c *counter) {
			hs = append(hs, c.handoff(st, key, now))
		})
	}
	if !global {
		return nil // a successor waiting for it grants nothing anyway
	}
	// Sent when empty too: the successor waits for it (AwaitPredecessor).
	if err := l.sendHandoffsTo(addr, hs); err != nil {
		l.st.handoffErrors.Add(1)
		return err
	}
	l.st.handoffs.Add(uint64(len(hs)))
	return nil
}

func (l *Limiter) sendHandoffs(owner string, hs []handoff) error {
	if l.cfg.Peers == nil {
		return fmt.Errorf("ratelimit: no client to reach %s", owner)
	}
	addr, ok := l.cfg.Peers.Addr(owner)
	if !ok {
		return fmt.Errorf("ratelimit: no cluster address for %s", owner)
	}
	return l.sendHandoffsTo(addr, hs)
}

func (l *Limiter) sendHandoffsTo(addr string, hs []handoff) error {
	if l.cfg.Client == nil {
		return fmt.Errorf("ratelimit: no client to reach %s", addr)
	}
	// A hand-off may reach its owner twice (wire.WithIdempotent: sent
	// again when a pooled connection dies before the answer), as the
	// re-offer of a failed hand-off a second later does whether the owner
	// took it or not: absorb takes it once.
	ctx, cancel := context.WithTimeout(wire.WithIdempotent(context.Background()), 4*l.cfg.CallTimeout)
	defer cancel()
	_, err := l.cfg.Client.CallRaw(ctx, addr, MethodHandoff, encodeHandoffs(nil, l.cfg.Self, hs))
	return err
}

// receiveHandoffs takes counters from their previous owner, from: each is
// merged into the counter this node may already have started from reports
// (the larger count wins; leases add up). From this node's own name they
// come from the process it replaced, which it waits for
// (AwaitPredecessor).
func (l *Limiter) receiveHandoffs(from string, hs []handoff) {
	if from == l.cfg.Self {
		defer l.awaitUntil.Store(0) // once merged
	}
	rs := l.rules.Load()
	now := l.wall()
	for _, h := range hs {
		st := rs.byName[h.rule]
		if st == nil || st.rule.Scope != Global {
			continue
		}
		c, created := st.c.owned.getOrCreate(h.key, func(string) *counter { return &counter{created: now} })
		if created {
			l.unquiet()
		}
		if c == nil {
			st.c.untracked.Add(1)
			continue
		}
		c.absorb(st, h, now)
	}
	l.st.handoffsIn.Add(uint64(len(hs)))
}

// absorb merges a hand-off into c. The leases it brings are counted in the
// merged state already, so their refunds are not taken out of c's own
// windows (granted stays): they run out with the windows. A token bucket
// does get them back when they expire unspent.
//
// A hand-off may arrive twice: sent again on a new connection when the
// first died before its answer (wire.WithIdempotent), or re-offered a
// second later when its answer was lost. Merging the state is idempotent
// (the larger count wins); a lease adds only what it brings beyond the
// most an earlier hand-off brought for that node (lease.handed). Added
// twice, a token bucket would refund the lease twice when it expires and
// let the key admit up to its out over the limit, and either algorithm
// would take what the node spends beyond its lease for lease tokens.
// Taking the larger errs low on the lease, which counts high: if two
// previous owners each leased to a node (the ring moved twice and the
// first hand-off failed), what the node spends of the smaller lease is
// counted again, and that lease is not refunded. (A copy delayed past
// the lease's end finds it expired here too: left is relative, and the
// sender's copy runs out at the same time.)
func (c *counter) absorb(st *ruleState, h handoff, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	idx, _ := windowAt(now, st.rule.Period)
	c.advance(st, now, idx)
	c.merge(st, h.snap, now)
	for _, hl := range h.leases {
		if hl.left <= 0 {
			continue
		}
		ls := c.leaseFor(strings.Clone(hl.node))
		if add := hl.out - ls.handed; add > 0 {
			ls.out += add
			ls.handed = hl.out
		}
		ls.exp = max(ls.exp, now+hl.left)
		if ls.last == 0 {
			ls.last = now
		}
	}
	c.touched = now
}

// sweep drops what has gone idle: keys this node has not seen for a
// while and holds no lease of, counters with no lease and nothing left to
// count, and full local buckets. It bounds memory by the keys in use. It
// also asks for unspent leases of busy keys back (maybeRelease).
func (l *Limiter) sweep(rs *ruleSet, now int64) {
	wall := l.wall()
	for _, st := range rs.list {
		keep := max(st.rule.Period, 2*l.cfg.LeaseTerm)
		switch {
		case st.c.entries != nil:
			st.c.entries.sweep(func(_ string, e *entry) bool {
				if now-e.last.Load() > int64(keep) && now >= e.exp.Load() && e.flags.Load()&flagQueued == 0 {
					return true
				}
				l.maybeRelease(st, e, now)
				return false
			})
			st.c.owned.sweep(func(_ string, c *counter) bool { return c.idle(st, wall, keep) })
		case st.c.buckets != nil:
			st.c.buckets.sweep(func(_ string, g *gcra) bool { return g.tat.Load() < now-int64(time.Second) })
		}
	}
}

// maybeRelease queues e to return its lease when it holds tokens of a
// busy key (at least half its limit counted) that nobody here asked for in
// two sync intervals: another node may want them before the lease ends.
func (l *Limiter) maybeRelease(st *ruleState, e *entry, now int64) {
	if now < e.exp.Load() && e.lease.Load() > 0 && now-e.last.Load() > int64(2*l.cfg.SyncInterval) &&
		2*e.count.Load() >= st.rule.Limit {
		e.flags.Or(flagRelease)
		l.queue(e, false)
	}
}
