package sharedcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// methodPurgeSync exchanges purge logs with a member that came back to
// the ring (or that this node came back to).
const methodPurgeSync = "sharedcache.purgesync"

// syncRequest and syncReply are methodPurgeSync's messages: the caller
// sends the purges it applied since Since and gets the callee's, each
// with its log horizon (the log holds every purge its node applied after
// it): a side whose log does not reach back to Since makes the other
// drop what was requested before its horizon.
type (
	syncRequest struct {
		Since   int64      `msgpack:"s"`
		Entries []logEntry `msgpack:"e,omitempty"`
		Horizon int64      `msgpack:"h,omitempty"`
	}
	syncReply struct {
		Entries []logEntry `msgpack:"e,omitempty"`
		Horizon int64      `msgpack:"h,omitempty"`
	}
)

// returning is a member this node syncs with before routing keys to it:
// since is how far back its purges are asked for.
type returning struct {
	target
	since int64
}

// noteRing compares r with the ring the cache has: it records when each
// member that left did, and returns the members that are new on r (all
// others on a first ring), marked as joining so that a purge run
// meanwhile reaches them too.
func (c *Cache) noteRing(r Ring) []returning {
	if r == nil || r.Version() == 0 || c.cfg.Client == nil {
		return nil
	}
	var prev []string
	if old := c.ring(); old != nil && old.Version() != 0 {
		prev = old.Members()
	}
	now := c.cfg.Clock.Now()
	members := r.Members()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range prev {
		if !slices.Contains(members, id) {
			c.leftAt[id] = now
		}
	}
	for id, at := range c.leftAt { // an older gap falls back on started: earlier, so safe
		if now.Sub(at) > c.cfg.PurgeLogAge {
			delete(c.leftAt, id)
		}
	}
	var out []returning
	for _, id := range members {
		if id == c.cfg.Name || slices.Contains(prev, id) {
			continue
		}
		addr := r.Addr(id)
		if addr == "" {
			continue
		}
		gap := c.started
		if at, ok := c.leftAt[id]; ok {
			gap = at
		}
		c.joining[id] = addr
		out = append(out, returning{target: target{id: id, addr: addr}, since: gap.Add(-purgeSyncMargin).UnixNano()})
	}
	return out
}

// doneJoining ends the joining marks of rs once the ring that has them
// is installed.
func (c *Cache) doneJoining(rs []returning) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rs {
		delete(c.joining, r.id)
	}
}

// syncPurges exchanges purge logs with each of rs in parallel, each call
// bounded by OwnerTimeout; those that fail are retried by
// RetryPurgeSync.
func (c *Cache) syncPurges(rs []returning) {
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() { // joined below; the call is bounded by OwnerTimeout
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.OwnerTimeout)
			defer cancel()
			if err := c.exchange(ctx, r); err != nil {
				if c.syncLater(r) {
					c.cfg.Logger.Warn("sharedcache: purge log exchange failed; retrying every second", "member", r.id, "err", err)
				}
				return
			}
			c.mu.Lock()
			if u, ok := c.unsynced[r.id]; ok && u.since >= r.since {
				delete(c.unsynced, r.id)
			}
			c.mu.Unlock()
		}()
	}
	wg.Wait()
}

// syncLater has RetryPurgeSync exchange logs with r, from r.since or
// earlier: its exchange failed, or a purge call to it did. It reports
// whether r was not waiting for one already.
func (c *Cache) syncLater(r returning) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.unsynced[r.id]
	if !ok || r.since < u.since {
		c.unsynced[r.id] = r
	}
	return !ok
}

// RetryPurgeSync exchanges purge logs again with the members of the
// ring whose exchange failed when they came back, or that a purge could
// not reach. A node calls it now and then (its ring loop does, every
// second).
func (c *Cache) RetryPurgeSync() {
	r := c.ring()
	c.mu.Lock()
	var rs []returning
	for id, rt := range c.unsynced {
		if r == nil || !slices.Contains(r.Members(), id) {
			delete(c.unsynced, id) // gone again: its next return syncs
			continue
		}
		rt.addr = r.Addr(id)
		rs = append(rs, rt)
	}
	c.mu.Unlock()
	if len(rs) > 0 {
		c.syncPurges(rs)
	}
}

// exchange sends r the purges this node applied since r.since and
// applies the ones r sends back that this node missed. When r's log does
// not reach back to r.since, purges this node missed may be lost: every
// object requested before r's log horizon goes too.
func (c *Cache) exchange(ctx context.Context, r returning) error {
	mine, horizon := c.plog.since(r.since)
	var rep syncReply
	err := c.cfg.Client.Call(idempotent(ctx), r.addr, methodPurgeSync, &syncRequest{Since: r.since, Entries: mine, Horizon: horizon}, &rep)
	switch {
	case errors.Is(err, wire.ErrUnknownMethod):
		c.st.syncErrors.Add(1)
		c.cfg.Logger.Warn("sharedcache: a member runs a version without purge logs: purges it missed are not replayed", "member", r.id)
		return nil // no use asking again
	case err != nil:
		c.st.syncErrors.Add(1)
		return err
	}
	if err := c.checkEntries(rep.Entries); err != nil {
		c.st.syncErrors.Add(1)
		return err
	}
	cut := c.shortCut(r.id, r.since, rep.Horizon)
	if cut == 0 {
		c.st.syncs.Add(1)
	}
	c.applyLate(rep.Entries, cut)
	return nil
}

// shortCut returns the cut of an exchange with member id: 0 when its log
// (complete after horizon) reaches back to since, else horizon, before
// which every object goes (purges this node missed may be lost).
func (c *Cache) shortCut(id string, since, horizon int64) int64 {
	if horizon < since {
		return 0
	}
	c.st.syncShort.Add(1)
	c.cfg.Logger.Warn("sharedcache: a member's purge log does not reach back to the gap; dropping what was requested before it",
		"member", id, "gap_from", time.Unix(0, since).UTC(), "log_from", time.Unix(0, horizon).UTC())
	return horizon
}

// servePurgeSync answers an exchange: it applies the caller's purges
// this node missed (this node may not have seen itself leave: a paused
// process) and sends its own since the caller's Since.
func (c *Cache) servePurgeSync(_ context.Context, r *syncRequest) (*syncReply, error) {
	if err := c.checkEntries(r.Entries); err != nil {
		return nil, err
	}
	c.applyLate(r.Entries, c.shortCut("caller", r.Since, r.Horizon))
	entries, horizon := c.plog.since(r.Since)
	return &syncReply{Entries: entries, Horizon: horizon}, nil
}

// checkEntries bounds what a peer sends: a log no larger than this
// node's, of valid purges with an ID.
func (c *Cache) checkEntries(es []logEntry) error {
	var n int64
	for i := range es {
		n += es[i].weight()
		if es[i].ID == "" {
			return errors.New("sharedcache: purge sync: a purge without an ID")
		}
		if err := es[i].Validate(); err != nil {
			return fmt.Errorf("sharedcache: purge sync: %w", err)
		}
	}
	if n > maxPurgeLogBytes {
		return fmt.Errorf("sharedcache: purge sync: %d bytes of purges, at most %d", n, maxPurgeLogBytes)
	}
	return nil
}
