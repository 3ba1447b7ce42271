package sharedcache

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/tinyufo"
	"github.com/pingora-go/pingora-go/wire"
)

// maxPastRings is how many earlier placements a new owner asks about a
// key it misses: enough for a scale-out that adds nodes one at a time.
const maxPastRings = 4

// Cache is a node's HTTP cache in two tiers. As a cache.Store (the view
// of the routes that share) it sends each key to its ring owner: keys
// this node owns live in the local tier, other keys are asked of their
// owner over wire and kept briefly in the hot tier. Local is the view of
// the routes that do not share. Serve registers the calls other nodes
// make; Close stops it.
type Cache struct {
	cfg      Config
	local    *cache.Memory
	localIdx *tinyufo.Cache[any]
	hot      *cache.Memory
	hotIdx   *tinyufo.Cache[any]

	// noDirectives are those of a request without Cache-Control.
	noDirectives cache.Directives

	rings    atomic.Pointer[ringSet]
	draining atomic.Bool

	mu       sync.Mutex
	suspects map[string]time.Time // owner name -> suspect until
	closed   bool
	lookups  map[string]*lookupFlight // remote lookups under way, by key
	servingN int                      // lookup and fill streams being served
	idle     chan struct{}            // closed when servingN drops to 0 while Drain waits

	// Purges: the log of those applied here, when this cache started
	// (it held nothing before), when each member last left the ring,
	// the members being synced before the ring that has them is
	// installed, and those whose sync failed (retried).
	plog     purgeLog
	started  time.Time
	leftAt   map[string]time.Time
	joining  map[string]string // name -> address
	unsynced map[string]returning

	bufs   sync.Pool // *bufio.Reader of bodyBuf bytes, for owner streams
	chunks sync.Pool // *[]byte of bodyBuf bytes, for body copies

	ctx    context.Context // ends at Close: fills and body pumps
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines started through goFunc

	st      counters
	inherit inheritance // what Inherit took from the previous process
}

var _ cache.Store = (*Cache)(nil)

// ringSet is the current placement and the recent earlier ones.
type ringSet struct {
	cur  Ring
	past []pastRing // most recent first
	// joinedUntil ends the handoff window of this node's own arrival on
	// the ring: until then the keys it owns were its successors' before
	// (a new node never saw the placement it changed).
	joinedUntil time.Time
}

// pastRing is a placement replaced at some point, asked about moved keys
// until the handoff window after its replacement ends.
type pastRing struct {
	ring  Ring
	until time.Time
}

// New returns a Cache with empty tiers and no ring (every key is this
// node's until SetRing). It starts nothing.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Cache{cfg: cfg, suspects: map[string]time.Time{}, lookups: map[string]*lookupFlight{}, noDirectives: cache.ParseRequest(http.Header{}),
		started: cfg.Clock.Now(), leftAt: map[string]time.Time{}, joining: map[string]string{}, unsynced: map[string]returning{}}
	var err error
	if c.local, c.localIdx, err = newTier(cfg, cfg.MaxBytes); err != nil {
		return nil, err
	}
	if c.hot, c.hotIdx, err = newTier(cfg, max(cfg.HotBytes, 1)); err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.bufs.New = func() any { return bufio.NewReaderSize(nil, bodyBuf) }
	c.chunks.New = func() any { b := make([]byte, bodyBuf); return &b }
	return c, nil
}

// newTier is a memory store whose objects TinyUFO keeps within max
// bytes, tagged with their surrogate keys. Its fills take objects up to
// MaxObjectBytes whatever max is (a larger one is not admitted, after it
// streamed whole to its readers).
func newTier(cfg Config, max int64) (*cache.Memory, *tinyufo.Cache[any], error) {
	idx, err := tinyufo.New[any](tinyufo.Config{Capacity: max})
	if err != nil {
		return nil, nil, err
	}
	m, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: maxInt(max, cfg.MaxObjectBytes), MaxObjectBytes: cfg.MaxObjectBytes,
		Index: tagIndex{idx}, Clock: cfg.Clock})
	if err != nil {
		return nil, nil, err
	}
	return m, idx, nil
}

func maxInt(a, b int64) int64 { return max(a, b) }

// Local returns the Store of the routes that do not share: this node's
// local tier, counted in Stats like the shared view.
func (c *Cache) Local() cache.Store { return localStore{c} }

// SetRing installs the placement r. A ring of another Version keeps the
// one it replaces for HandoffWindow, to ask about keys that moved.
//
// Before it installs a ring with members the current one lacks (a member
// that came back, or this node coming back to them), it exchanges purge
// logs with each, bounded by OwnerTimeout, so that neither serves the
// other what a purge it missed dropped (see exchange).
func (c *Cache) SetRing(r Ring) {
	rs := c.noteRing(r)
	if len(rs) > 0 {
		defer c.doneJoining(rs)
		c.syncPurges(rs)
	}
	c.installRing(r)
}

// installRing makes r the current placement.
func (c *Cache) installRing(r Ring) {
	for {
		old := c.rings.Load()
		next := &ringSet{cur: r}
		now := c.cfg.Clock.Now()
		if old != nil {
			next.past, next.joinedUntil = old.past, old.joinedUntil
			if old.cur != nil && (r == nil || old.cur.Version() != r.Version()) {
				next.past = append([]pastRing{{ring: old.cur, until: now.Add(c.cfg.HandoffWindow)}}, old.past...)
			}
			next.past = c.livePast(next.past)
		}
		if r != nil && r.Version() != 0 && c.isMember(r) && (old == nil || old.cur == nil || !c.isMember(old.cur)) {
			next.joinedUntil = now.Add(c.cfg.HandoffWindow)
		}
		if c.rings.CompareAndSwap(old, next) {
			return
		}
	}
}

// isMember reports whether this node is on r.
func (c *Cache) isMember(r Ring) bool {
	return r.Version() != 0 && slices.Contains(r.Members(), c.cfg.Name)
}

// livePast drops the placements whose window ended, keeping at most
// maxPastRings.
func (c *Cache) livePast(past []pastRing) []pastRing {
	now := c.cfg.Clock.Now()
	out := make([]pastRing, 0, min(len(past), maxPastRings))
	for _, p := range past {
		if now.Before(p.until) && len(out) < maxPastRings {
			out = append(out, p)
		}
	}
	return out
}

// ring returns the current placement, or nil.
func (c *Cache) ring() Ring {
	if rs := c.rings.Load(); rs != nil {
		return rs.cur
	}
	return nil
}

// target is where a key lives: this node, or an owner to call.
type target struct {
	id, addr string
	self     bool
}

// owner places key (by its primary key: a URL's variants live with it).
func (c *Cache) owner(key string) target {
	r := c.ring()
	if r == nil || c.cfg.Client == nil || r.Version() == 0 {
		return target{self: true}
	}
	id, self := r.Owner(cache.PrimaryKey(key))
	if id == "" || self {
		return target{id: id, self: true}
	}
	return target{id: id, addr: r.Addr(id)}
}

// previousOwners returns the nodes that may hold key from before a ring
// change, most likely first, none this node or suspect: its owners under
// the recent earlier placements, and while this node is new on the ring,
// its successors for key (who owned it before this node came).
func (c *Cache) previousOwners(key string) []target {
	rs := c.rings.Load()
	if rs == nil || c.cfg.Client == nil {
		return nil
	}
	now := c.cfg.Clock.Now()
	primary := cache.PrimaryKey(key)
	var out []target
	add := func(r Ring, id string) {
		if id != "" && id != c.cfg.Name && !c.suspect(id) && !containsTarget(out, id) {
			if addr := r.Addr(id); addr != "" {
				out = append(out, target{id: id, addr: addr})
			}
		}
	}
	for _, p := range rs.past {
		if now.Before(p.until) {
			id, self := p.ring.Owner(primary)
			if !self {
				add(p.ring, id)
			}
		}
	}
	if rs.cur != nil && now.Before(rs.joinedUntil) {
		for _, id := range rs.cur.Owners(primary, maxSuccessors+1) {
			add(rs.cur, id)
		}
	}
	return out
}

// maxSuccessors is how many of its successors a new member asks about a
// key: enough when nodes join two at a time.
const maxSuccessors = 2

func containsTarget(ts []target, id string) bool {
	for _, t := range ts {
		if t.id == id {
			return true
		}
	}
	return false
}

// suspect reports whether owner id failed a call within SuspectFor.
func (c *Cache) suspect(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.suspects[id]
	if !ok {
		return false
	}
	if !c.cfg.Clock.Now().Before(until) {
		delete(c.suspects, id)
		return false
	}
	return true
}

// markSuspect makes owner id suspect for SuspectFor, after err.
func (c *Cache) markSuspect(id string, err error) {
	c.mu.Lock()
	_, already := c.suspects[id]
	c.suspects[id] = c.cfg.Clock.Now().Add(c.cfg.SuspectFor)
	c.mu.Unlock()
	c.st.suspected.Add(1)
	if !already {
		c.cfg.Logger.Warn("sharedcache: owner suspect, serving its keys here", "owner", id, "for", c.cfg.SuspectFor, "err", err)
	}
}

// goFunc runs f on a goroutine that Close waits for; it reports false,
// running nothing, once the cache is closed.
func (c *Cache) goFunc(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// Drain stops taking keys from other nodes (their calls are answered
// "not the owner", so they serve those keys themselves) and waits, while
// ctx lasts, for the streams this node is sending them to finish. A node
// calls it after leaving the ring and before it stops its RPC server.
func (c *Cache) Drain(ctx context.Context) error {
	c.mu.Lock()
	c.draining.Store(true)
	if c.servingN == 0 {
		c.mu.Unlock()
		return nil
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the fills and body streams this node runs for the cluster
// (their readers get an error) and waits for every goroutine it started.
// It may be called more than once.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// errClosed is what a call to a closed Cache's peers gets.
var errClosed = errors.New("sharedcache: closed")

// notOwner is the answer to a call for a key this node does not own.
func (c *Cache) notOwner() error {
	var v uint64
	if r := c.ring(); r != nil {
		v = r.Version()
	}
	return wire.NotOwner(v)
}
