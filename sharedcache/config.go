package sharedcache

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/wire"
)

// Ring is the placement of keys over the cluster as this node sees it at
// one moment: an immutable snapshot, replaced whole by Cache.SetRing when
// membership changes. Like groupcache's HTTPPool.Set, the snapshot also
// says how to reach each owner, so a call never races an address change.
// membership.Ring with node's adapter (Version from the ring digest, Addr
// from the gossiped cluster addresses) satisfies it; tests use a fake.
// It has more methods than the usual three because an owner alone is not
// callable: placement, the successors a new member asks about moved
// keys, the purge fan-out, the agreement check and the address.
type Ring interface {
	// Owner returns the member that owns key and whether it is this
	// node; "" on an empty ring.
	Owner(key string) (nodeID string, self bool)
	// Owners returns up to n distinct members for key, the owner first,
	// then the members that would own it if those before were gone.
	Owners(key string, n int) []string
	// Members returns the ring's members, the nodes a purge reaches.
	Members() []string
	// Version identifies the placement across nodes: two nodes whose
	// rings have the same Version place every key alike. 0 means no
	// cluster: every key is this node's.
	Version() uint64
	// Addr returns member nodeID's cluster RPC address, "" if unknown.
	Addr(nodeID string) string
}

// Origin fetches an object from the origin for the cluster: the owner of
// a key runs a peer's miss through its own route and phases (node
// implements it with proxy.Server.FillCache, from the same replicated
// config the peer routed by). Fill must end f.Fill (commit, refresh or
// abort) before it returns.
type Origin interface {
	Fill(ctx context.Context, f OriginFill)
}

// OriginFunc adapts a function to Origin.
type OriginFunc func(ctx context.Context, f OriginFill)

// Fill calls fn.
func (fn OriginFunc) Fill(ctx context.Context, f OriginFill) { fn(ctx, f) }

// OriginFill is one fill an Origin runs: the fields of proxy.CacheFill.
type OriginFill struct {
	// Request is the request the node that missed routed.
	Request *cache.Request
	// Key is the primary key, VariantKey the key Fill holds.
	Key, VariantKey string
	// Index is the Vary index that selected VariantKey, nil if none.
	Index *cache.Variants
	// Fill is the owner's lock on VariantKey.
	Fill cache.Fill
	// Stale is the stored object to revalidate, nil if none.
	Stale cache.Object
	// Store is the owner's local store, for the fill's other calls.
	Store cache.Store
}

// Defaults of Config.
const (
	DefaultMaxBytes        = 256 << 20
	DefaultOwnerTimeout    = time.Second
	DefaultSuspectFor      = 5 * time.Second
	DefaultHandoffWindow   = 10 * time.Minute
	DefaultBodyIdleTimeout = 30 * time.Second
	DefaultPurgeLogBytes   = 4 << 20
	DefaultPurgeLogAge     = 24 * time.Hour
)

// Config configures a Cache. Zero fields take their default.
type Config struct {
	// Name is this node's name on the ring: its own part of a purge or
	// of cluster stats is reported under it (default "").
	Name string
	// MaxBytes caps the local tier: the objects of the keys this node
	// owns and of the routes that do not share (default 256 MiB).
	MaxBytes int64
	// MaxObjectBytes caps one object in either tier; a larger one
	// streams through uncached (default MaxBytes/8).
	MaxObjectBytes int64
	// HotBytes caps the copies of objects fetched from their owners
	// (hot keys served here without a call) and of objects filled here
	// while their owner was unreachable; -1 keeps none (default
	// MaxBytes/16).
	HotBytes int64
	// Client calls the other nodes (default nil: no cluster tier, every
	// key is this node's).
	Client *wire.Client
	// Origin fills keys this node owns for the other nodes (default nil:
	// such calls are answered with a failed fill, and the caller goes
	// to the origin itself).
	Origin Origin
	// OwnerTimeout bounds an owner's first answer to a call: the object
	// or word that it asked the origin (default 1s). An owner that
	// misses it, or fails a call, is suspect for SuspectFor.
	OwnerTimeout time.Duration
	// SuspectFor is how long this node serves a suspect owner's keys
	// itself, from the origin into its hot tier (default 5s).
	SuspectFor time.Duration
	// HandoffWindow is how long after a ring change a miss on a key that
	// moved to this node asks its previous owners before the origin
	// (default 10m).
	HandoffWindow time.Duration
	// BodyIdleTimeout cuts a body streaming from an owner that sends
	// nothing for this long (default 30s).
	BodyIdleTimeout time.Duration
	// PurgeLogBytes bounds the purges this node remembers (their
	// selectors' bytes, plus 64 a purge): a member that comes back to
	// the ring gets those it missed from them, in one message that must
	// fit a wire frame (default 4 MiB, bytes; at most 8 MiB).
	PurgeLogBytes int64
	// PurgeLogAge is how long this node remembers a purge; a member out
	// of the ring longer than its peers' logs reach drops every object
	// stored before the oldest purge they still hold (default 24h).
	PurgeLogAge time.Duration
	// Clock times suspicion, handoff windows and the hit ratio window
	// (default: real time).
	Clock clock.Clock
	// Logger receives the cache's log (default: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns the configuration whose fields are all defaults.
func DefaultConfig() Config {
	return Config{MaxBytes: DefaultMaxBytes, MaxObjectBytes: DefaultMaxBytes / 8, HotBytes: DefaultMaxBytes / 16,
		OwnerTimeout: DefaultOwnerTimeout, SuspectFor: DefaultSuspectFor, HandoffWindow: DefaultHandoffWindow,
		BodyIdleTimeout: DefaultBodyIdleTimeout, PurgeLogBytes: DefaultPurgeLogBytes, PurgeLogAge: DefaultPurgeLogAge}
}

// Validate reports the first invalid field, by name.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"MaxBytes", c.MaxBytes}, {"MaxObjectBytes", c.MaxObjectBytes}, {"HotBytes", c.HotBytes},
		{"OwnerTimeout", int64(c.OwnerTimeout)}, {"SuspectFor", int64(c.SuspectFor)},
		{"HandoffWindow", int64(c.HandoffWindow)}, {"BodyIdleTimeout", int64(c.BodyIdleTimeout)},
		{"PurgeLogBytes", c.PurgeLogBytes}, {"PurgeLogAge", int64(c.PurgeLogAge)}} {
		if f.v < 0 && !(f.name == "HotBytes" && f.v == -1) {
			return fmt.Errorf("sharedcache: %s (%d) cannot be negative", f.name, f.v)
		}
	}
	d := c.withDefaults()
	switch {
	case d.MaxObjectBytes > d.MaxBytes:
		return fmt.Errorf("sharedcache: MaxObjectBytes (%d) cannot be larger than MaxBytes (%d)", d.MaxObjectBytes, d.MaxBytes)
	case d.PurgeLogBytes > maxPurgeLogBytes:
		return fmt.Errorf("sharedcache: PurgeLogBytes (%d) cannot be larger than %d (half a wire frame)", d.PurgeLogBytes, maxPurgeLogBytes)
	case d.HotBytes > d.MaxBytes:
		return fmt.Errorf("sharedcache: HotBytes (%d) cannot be larger than MaxBytes (%d)", d.HotBytes, d.MaxBytes)
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := DefaultConfig()
	if c.MaxBytes == 0 {
		c.MaxBytes = def.MaxBytes
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = c.MaxBytes / 8
	}
	if c.HotBytes == 0 {
		c.HotBytes = max(c.MaxBytes/16, 1)
	}
	if c.OwnerTimeout == 0 {
		c.OwnerTimeout = def.OwnerTimeout
	}
	if c.SuspectFor == 0 {
		c.SuspectFor = def.SuspectFor
	}
	if c.HandoffWindow == 0 {
		c.HandoffWindow = def.HandoffWindow
	}
	if c.BodyIdleTimeout == 0 {
		c.BodyIdleTimeout = def.BodyIdleTimeout
	}
	if c.PurgeLogBytes == 0 {
		c.PurgeLogBytes = def.PurgeLogBytes
	}
	if c.PurgeLogAge == 0 {
		c.PurgeLogAge = def.PurgeLogAge
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
