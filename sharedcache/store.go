package sharedcache

import (
	"context"
	"errors"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// Lookup returns the object stored under key. For a key this node owns
// it is the local tier's, or after a ring change the one a previous owner
// hands over. For another node's key it is a fresh hot copy, else the
// owner's, copied into the hot tier as it streams. Nil when nobody holds
// it, or when the owner is suspect (the request then fills here). A
// recheck (cache.IsRecheck: the engine looks again once it holds the
// lock) looks only here and is not counted: Lock gives the caller a fill
// of another node's key only when the owner could not be asked, and
// lockOwned has looked again already.
func (c *Cache) Lookup(ctx context.Context, key string) (cache.Object, error) {
	t := c.owner(key)
	if cache.IsRecheck(ctx) {
		if t.self {
			return c.local.Lookup(ctx, key)
		}
		return c.hot.Lookup(ctx, key)
	}
	if t.self {
		o, _ := c.local.Lookup(ctx, key)
		c.countLookup(o, tierLocal)
		return o, nil
	}
	if o := c.hotLookup(ctx, key); o != nil {
		c.countLookup(o, tierHot)
		return o, nil
	}
	if o := c.heldFresh(ctx, key); o != nil {
		c.countLookup(o, tierLocal)
		return o, nil
	}
	if t.addr == "" || c.suspect(t.id) {
		c.countLookup(nil, tierRemote)
		return nil, nil
	}
	o := c.lookupOnce(ctx, t, key)
	c.countLookup(o, tierRemote)
	return o, nil
}

// Lock takes the fill of key. A key this node owns is locked in the
// local tier, as a local cache does. Another node's key is first locked
// in the hot tier, so this node's requests wait on one call; the holder
// then asks the owner to fill it (the owner's lock spans every node) and
// gets the owner's object, streamed, as a waiter would. Only when the
// owner cannot be asked (unreachable, suspect, or not the owner by its own
// ring) does the caller get the hot fill and go to the origin itself.
func (c *Cache) Lock(ctx context.Context, key string, wait time.Duration) (cache.Fill, cache.Object, error) {
	t := c.owner(key)
	if t.self {
		rq := c.noDirectives
		if req := cache.RequestFrom(ctx); req != nil {
			rq = cache.ParseRequest(req.Header)
		}
		return c.lockOwned(ctx, key, wait, rq)
	}
	f, o, err := c.hot.Lock(ctx, key, wait)
	if f == nil {
		return nil, o, err
	}
	req := cache.RequestFrom(ctx)
	if req == nil || t.addr == "" || c.suspect(t.id) {
		c.st.fallbacks.Add(1)
		return f, nil, nil
	}
	return c.fillRemote(t, key, req, wait, f)
}

// Remove drops key here (the local tier, or the hot copy) and at its
// owner. Hot copies on other nodes last at most their freshness; Purge
// reaches them all.
func (c *Cache) Remove(ctx context.Context, key string) (bool, error) {
	t := c.owner(key)
	if t.self {
		return c.local.Remove(ctx, key)
	}
	dropped, _ := c.hot.Remove(ctx, key)
	if t.addr != "" && !c.suspect(t.id) {
		cctx, cancel := context.WithTimeout(idempotent(c.ctx), c.cfg.OwnerTimeout)
		defer cancel()
		var out removeReply
		if err := c.cfg.Client.Call(cctx, t.addr, methodRemove, &removeRequest{Key: key}, &out); err != nil {
			c.cfg.Logger.Debug("sharedcache: remove at the owner failed", "owner", t.id, "err", err)
		}
		dropped = dropped || out.Dropped
	}
	return dropped, nil
}

// lookupOnce asks the owner for key once for all the concurrent lookups
// of key here (a cold hot key brings many at once); each gets the same
// object, which any number may read.
func (c *Cache) lookupOnce(ctx context.Context, t target, key string) cache.Object {
	c.mu.Lock()
	if f := c.lookups[key]; f != nil {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.obj
		case <-ctx.Done():
			return nil
		}
	}
	f := &lookupFlight{done: make(chan struct{})}
	c.lookups[key] = f
	c.mu.Unlock()
	f.obj = c.lookupRemote(t, key)
	c.mu.Lock()
	delete(c.lookups, key)
	c.mu.Unlock()
	close(f.done)
	return f.obj
}

// lookupFlight is a lookup of a key at its owner under way.
type lookupFlight struct {
	done chan struct{} // closed when obj is set
	obj  cache.Object
}

// lockOwned takes the lock of a key this node owns for a request with
// directives rq, which found nothing it could use stored. A fill that
// ended between that lookup and this lock stored what the request needs:
// the lock is then given up and the request served from the stored
// object, as a waiter is, and not sent to the origin a second time. The
// holder of a key that moved here within the handoff window first asks
// the key's previous owners: an object one holds streams into the fill,
// and the caller is served from it as a waiter, with nothing sent to the
// origin. A stale object is not taken over (the origin revalidates it
// here instead).
func (c *Cache) lockOwned(ctx context.Context, key string, wait time.Duration, rq cache.Directives) (cache.Fill, cache.Object, error) {
	f, o, err := c.local.Lock(ctx, key, wait)
	if f == nil {
		if errors.Is(err, cache.ErrFillFailed) {
			// The fill waited on may be a lock given up just below.
			if s := c.storedUsable(ctx, key, rq); s != nil {
				return nil, s, nil
			}
		}
		return f, o, err
	}
	// Holding the lock, no other fill of key can store: what is stored
	// now stays the answer until f ends.
	if s := c.storedUsable(ctx, key, rq); s != nil {
		f.Abort(errStoredMeanwhile)
		return nil, s, nil
	}
	switch o, ended := c.fromPrevious(target{}, key, f, c.local); {
	case o != nil:
		return nil, o, nil
	case ended:
		return nil, nil, cache.ErrFillFailed
	}
	return f, nil, nil
}

// errStoredMeanwhile ends a lock taken after a fill stored the key.
var errStoredMeanwhile = errors.New("sharedcache: stored by another fill meanwhile")

// storedUsable returns the complete object stored under key in the local
// tier when a request with directives rq may use it as is, else nil.
func (c *Cache) storedUsable(ctx context.Context, key string, rq cache.Directives) cache.Object {
	o, _ := c.local.Lookup(ctx, key)
	if o == nil || o.Len() < 0 || !c.usable(o, rq) {
		return nil
	}
	return o
}

// fromPrevious asks the key's previous owners (but not skip, which was
// just asked) for a fresh copy of key and streams the first one found into
// f, the fill of key in tier. It returns the object; or nil and whether f
// ended (a copy that failed), else f is still the caller's.
func (c *Cache) fromPrevious(skip target, key string, f cache.Fill, tier *cache.Memory) (cache.Object, bool) {
	for _, t := range c.previousOwners(key) {
		if t.id == skip.id {
			continue
		}
		s, h, body, err := c.ask(t, key, opHandoff)
		if err != nil {
			c.callFailed(t, err)
			continue
		}
		if h.Kind != kindObject || h.Meta == nil || !c.fresh(h.Meta.meta()) {
			if s != nil {
				s.close()
			}
			continue
		}
		o := c.receive(s, h, body, f, tier, key)
		if o != nil {
			c.st.handoffs.Add(1)
		}
		return o, o == nil
	}
	return nil, false
}

// fresh reports whether m may be used as is by a request without
// directives; a Vary index always may.
func (c *Cache) fresh(m *cache.Meta) bool {
	return m.Variants != nil || cache.Check(m, c.noDirectives, c.cfg.Clock.Now()).Use == cache.UseFresh
}

// hotLookup returns the hot copy of key while it may be used: an object
// still streaming in, a Vary index (checked against the owner when a
// variant misses), or a response that is fresh. A stale copy is dropped:
// the owner has the newer one.
func (c *Cache) hotLookup(ctx context.Context, key string) cache.Object {
	o, _ := c.hot.Lookup(ctx, key)
	if o == nil {
		return nil
	}
	if o.Len() < 0 || c.fresh(o.Meta()) {
		return o
	}
	c.hot.Remove(ctx, key)
	return nil
}

// heldFresh returns the complete, fresh object the local tier still
// holds for a key this node no longer owns: it owned the key before a ring
// change (a node joined, or this one left the ring to stop). Its own
// clients are served from it, as from a hot copy: asking the new owner,
// whose ring may still name this node, brought "not the owner", and this
// node, which never asks itself as a previous owner, fetched the key from
// the origin again into a cache about to vanish. Purges drop it as they
// drop hot copies.
func (c *Cache) heldFresh(ctx context.Context, key string) cache.Object {
	o, _ := c.local.Lookup(ctx, key)
	if o == nil || o.Len() < 0 || !c.fresh(o.Meta()) {
		return nil
	}
	return o
}

// localStore is the Store of the routes that do not share: the local
// tier, with its lookups counted.
type localStore struct{ c *Cache }

var _ cache.Store = localStore{}

func (l localStore) Lookup(ctx context.Context, key string) (cache.Object, error) {
	o, err := l.c.local.Lookup(ctx, key)
	if !cache.IsRecheck(ctx) { // a recheck is the counted lookup's again
		l.c.countLookup(o, tierLocal)
	}
	return o, err
}

func (l localStore) Lock(ctx context.Context, key string, wait time.Duration) (cache.Fill, cache.Object, error) {
	return l.c.local.Lock(ctx, key, wait)
}

func (l localStore) Remove(ctx context.Context, key string) (bool, error) {
	return l.c.local.Remove(ctx, key)
}
