package ratelimit

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/wire"
)

// Ring is the cluster ring as ratelimit sees it; membership.Ring satisfies
// it. Owner returns the node that owns key and whether it is this node
// ("", false on an empty ring); Owners the first n distinct owners, the
// owner first; Len is the number of live members (the local share divides
// by it).
type Ring interface {
	Owner(key string) (nodeID string, self bool)
	Owners(key string, n int) []string
	Len() int
}

// StandbyRing is a Ring that leaves this node out for now only: that of
// an upgrade's old process whose successor has not served yet (the node's
// limitRing). Its keys go to the next node, as on a ring without it, but
// the counters handed to those nodes stay here too (handoffStep): unless
// the others declared this node dead meanwhile, the next node does not
// own them and passes them to no one, and HandOver still gives them to
// the successor. Standby reports whether the ring is such a one.
type StandbyRing interface {
	Ring
	Standby() bool
}

// Peers tells where a node answers calls: its cluster (wire) address.
type Peers interface {
	Addr(nodeID string) (string, bool)
}

// Config configures a Limiter. Zero fields take their defaults; only Self,
// Ring, Peers and Client are needed for global rules to be global.
type Config struct {
	// Self is this node's ID on the ring (default "self").
	Self string
	// Ring returns the current ring (default nil: a ring of Self alone,
	// on which a global rule counts on this node only).
	Ring func() Ring
	// Peers resolves owners' addresses (default nil: only Self is reached).
	Peers Peers
	// Client calls owners (default nil: only Self is reached).
	Client *wire.Client
	// SyncInterval is the longest time between two reports of a key a node
	// is using to its owner; a key near its limit is reported sooner, but
	// at most every SyncInterval/5 (default 50ms).
	SyncInterval time.Duration
	// LeaseTerm is the longest a lease an owner grants stays usable
	// without a new answer; a sliding-window lease of a busy key ends
	// sooner, with the owner's window (default 5s, at least 4 sync
	// intervals).
	LeaseTerm time.Duration
	// CallTimeout bounds one report's round trip to an owner (default
	// 250ms).
	CallTimeout time.Duration
	// MaxKeys bounds the keys tracked per rule, on each side (as a user
	// and as an owner); keys past it are decided by the local share alone
	// and counted in Stats (default 1,000,000).
	MaxKeys int
	// SketchWidth is the width of a local sliding-window rule's count-min
	// sketch (default 16384 counters a row: an overestimate beyond
	// 0.017 % of the period's requests has probability 5 %).
	SketchWidth int
	// Clock is the time source (default clock.Real{}).
	Clock clock.Clock
	// Logger receives sync failures at Debug and hand-off errors at Warn
	// (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultSyncInterval = 50 * time.Millisecond
	DefaultLeaseTerm    = 5 * time.Second
	DefaultCallTimeout  = 250 * time.Millisecond
	DefaultMaxKeys      = 1_000_000
	DefaultSketchWidth  = 1 << 14
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config { return Config{}.withDefaults() }

// Validate reports the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.SyncInterval < 0 || (c.SyncInterval != 0 && c.SyncInterval < 5*time.Millisecond):
		return fmt.Errorf("ratelimit: SyncInterval (%s) must be at least 5ms", c.SyncInterval)
	case c.LeaseTerm < 0:
		return fmt.Errorf("ratelimit: LeaseTerm (%s) cannot be negative", c.LeaseTerm)
	case c.CallTimeout < 0:
		return fmt.Errorf("ratelimit: CallTimeout (%s) cannot be negative", c.CallTimeout)
	case c.MaxKeys < 0:
		return fmt.Errorf("ratelimit: MaxKeys (%d) cannot be negative", c.MaxKeys)
	case c.SketchWidth < 0 || c.SketchWidth > 1<<24:
		return fmt.Errorf("ratelimit: SketchWidth (%d) must be between 0 (default) and 2^24", c.SketchWidth)
	}
	d := c.withDefaults()
	if d.LeaseTerm < 4*d.SyncInterval {
		return fmt.Errorf("ratelimit: LeaseTerm (%s) must be at least 4 times SyncInterval (%s)", d.LeaseTerm, d.SyncInterval)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Self == "" {
		c.Self = "self"
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.LeaseTerm == 0 {
		c.LeaseTerm = max(DefaultLeaseTerm, 4*c.SyncInterval)
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.SketchWidth == 0 {
		c.SketchWidth = DefaultSketchWidth
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// soloRing is the ring of one node: the default when Config.Ring is nil.
type soloRing string

func (r soloRing) Owner(string) (string, bool) { return string(r), true }
func (r soloRing) Owners(string, int) []string { return []string{string(r)} }
func (soloRing) Len() int                      { return 1 }

// withoutSelf is a ring as it will be once self has left: each key goes
// to the first of its owners that is not self.
type withoutSelf struct {
	r    Ring
	self string
}

func (w withoutSelf) Owner(key string) (string, bool) {
	for _, o := range w.r.Owners(key, 2) {
		if o != w.self {
			return o, false
		}
	}
	return "", false
}

func (w withoutSelf) Owners(key string, n int) []string {
	var out []string
	for _, o := range w.r.Owners(key, n+1) {
		if o != w.self && len(out) < n {
			out = append(out, o)
		}
	}
	return out
}

func (w withoutSelf) Len() int { return max(w.r.Len()-1, 1) }

var _ Ring = soloRing("")
