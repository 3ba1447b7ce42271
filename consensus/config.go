package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pingora-go/pingora-go/clock"
)

// Config configures a Store. Zero fields take their documented default;
// ID and DataDir are required.
type Config struct {
	// ID is this server's raft ID, the node name (required; no default).
	ID string
	// BindAddr is the TCP address raft listens on; port 0 picks a free port
	// and Addr reports the bound one. Ignored when Transport is set
	// (default "127.0.0.1:7948").
	BindAddr string
	// Advertise is the raft "host:port" other servers dial; port 0 means
	// the bound port. Ignored when Transport is set (default: the bound
	// address, which must then not be a wildcard).
	Advertise string
	// DataDir holds raft.db (log and stable store), snapshots/, the applied
	// document state, the LOCK file and, while the server recovers from
	// starting without raft state, the RECOVERING file (required; no
	// default).
	DataDir string
	// BootstrapExpect is the number of servers that bootstrap a new cluster
	// together; 1 bootstraps a single-node cluster at once, 0 never
	// bootstraps and waits to be added by an existing leader (default 0).
	BootstrapExpect int
	// MaxHistory is how many versions are kept per document (default 20).
	MaxHistory int
	// MaxDocSize caps a document's content in bytes (default 1 MiB).
	MaxDocSize int
	// MaxVoters caps the voters autopilot promotes; further servers stay
	// non-voters (default 5).
	MaxVoters int
	// MinQuorum is the number of voters below which autopilot never removes
	// a dead voter (default 0: only autopilot's own majority guard applies).
	MinQuorum int
	// SnapshotThreshold is the number of log entries since the last
	// snapshot that triggers a new one (default 8192).
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks SnapshotThreshold
	// (default 120s).
	SnapshotInterval time.Duration
	// TrailingLogs is the number of entries kept in the log after a
	// snapshot (default 10240).
	TrailingLogs uint64
	// Timing holds the raft and autopilot timers; zero fields take
	// DefaultTiming's value (default DefaultTiming()).
	Timing Timing
	// Transport replaces the network transport altogether, e.g. a
	// raft.InmemTransport in tests (default nil: raft's network transport
	// over Listen and Dial).
	Transport raft.Transport
	// Listen, if not nil, returns the listener raft accepts the other
	// servers' connections on; Start calls it once, and Shutdown closes
	// what it returned. It lets the caller share one port between raft and
	// other protocols (wire.Mux, by first byte) and put TLS in front; its
	// Addr is the bound address (default nil: TCP on BindAddr).
	Listen func() (net.Listener, error)
	// Dial, if not nil, opens a connection to another server's raft
	// address; a caller sharing the port sends its protocol byte here
	// before returning the connection (default nil: TCP).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// IdleTimeout closes an inbound raft connection that sends nothing
	// (or leaves a message half sent) for this long, and bounds writing
	// one answer to it, so a stranger or a half-dead peer cannot hold
	// connections for ever; a connection is idle only between reads, so
	// a long InstallSnapshot or a busy AppendEntries stream is not cut.
	// This server does not reuse a connection it dialled once it has
	// idled for half of it: it dials afresh rather than meet the other
	// side's close (default 1m).
	IdleTimeout time.Duration
	// Logger receives consensus, raft and autopilot logs (default: discard).
	Logger *slog.Logger
	// Clock supplies time for write timestamps and dead-server grace
	// (default clock.Real{}).
	Clock clock.Clock
	// ValidateDoc, if not nil, is called on the node where a write arrives,
	// before anything is proposed; an error makes Put return ErrInvalid
	// and nothing is replicated (default nil: accept everything).
	ValidateDoc func(name string, content []byte) error
	// OnApply, if not nil, is called once for every committed document
	// version, in commit order, on every node; on New it is called for the
	// latest version of each document restored from disk. It runs on the
	// Store's own goroutine, never inside raft, and should not block for
	// long (default nil).
	OnApply func(Doc)
	// CaughtUpThrough, if not 0, is the index a process that handed this
	// data directory over (a graceful upgrade) had applied when it let
	// go, caught up with the leader. When the state New restored holds
	// it, this server starts caught up (CatchUp): it serves what its
	// predecessor served a moment ago, raft brings what was committed
	// since as it does to any follower, and the node does not go
	// unready (and off every ring) for an upgrade (default 0: a started
	// server waits to catch up).
	CaughtUpThrough uint64
	// CaughtUpLeaderless, with CaughtUpThrough, says the process that
	// handed the data directory over knew no leader when it let go (it
	// was cut off, or an election ran): this server starts caught up as
	// that process was, and the first leader it hears is a re-join, as
	// it would have been for that process, so it catches up (CatchUp)
	// before it counts as ready again (default false: the first leader
	// heard after a hand-over is no re-join).
	CaughtUpLeaderless bool
}

// Timing groups the timers. DefaultTiming follows raft's defaults;
// FastTiming suits loopback clusters in tests and the demo.
type Timing struct {
	// HeartbeatTimeout is raft's follower timeout (default 1s).
	HeartbeatTimeout time.Duration
	// ElectionTimeout is raft's candidate timeout (default 1s).
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without
	// quorum contact (default 500ms).
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long a follower waits for a commit index
	// update (default 50ms).
	CommitTimeout time.Duration
	// ApplyTimeout bounds Put and GetConsistent when the context has no
	// deadline (default 5s).
	ApplyTimeout time.Duration
	// ReconcileInterval is how often bootstrap and autopilot reconcile
	// run without a Reconcile call (default 2s).
	ReconcileInterval time.Duration
	// ServerStabilizationTime is how long a non-voter must be healthy
	// before promotion (default 10s).
	ServerStabilizationTime time.Duration
	// LastContactThreshold is the leader-contact age beyond which a server
	// is unhealthy (default 2s).
	LastContactThreshold time.Duration
	// DeadServerGrace is how long a failed server stays in the raft
	// configuration before autopilot removes it (default 2m).
	DeadServerGrace time.Duration
	// LeaderHold is how long a write or a consistent read waits for a
	// leader while none is known, before it fails with ErrNoQuorum
	// (default 5s; Consul's rpc_hold_timeout is 7s).
	LeaderHold time.Duration
	// CatchUpTimeout bounds how long a started (or re-joined) server waits
	// to catch up with the leader's commit index before it gives up and
	// says so (Store.CatchUp; default 30s: above raft's longest
	// replication back-off, about 10 s).
	CatchUpTimeout time.Duration
}

// DefaultTiming returns raft's defaults plus autopilot timers for a LAN.
func DefaultTiming() Timing {
	return Timing{
		HeartbeatTimeout:        time.Second,
		ElectionTimeout:         time.Second,
		LeaderLeaseTimeout:      500 * time.Millisecond,
		CommitTimeout:           50 * time.Millisecond,
		ApplyTimeout:            5 * time.Second,
		ReconcileInterval:       2 * time.Second,
		ServerStabilizationTime: 10 * time.Second,
		LastContactThreshold:    2 * time.Second,
		DeadServerGrace:         2 * time.Minute,
		LeaderHold:              5 * time.Second,
		CatchUpTimeout:          30 * time.Second,
	}
}

// FastTiming is the loopback profile used by tests and the demo: elections
// in a few hundred milliseconds, promotion after one second.
func FastTiming() Timing {
	return Timing{
		HeartbeatTimeout:        300 * time.Millisecond,
		ElectionTimeout:         300 * time.Millisecond,
		LeaderLeaseTimeout:      200 * time.Millisecond,
		CommitTimeout:           5 * time.Millisecond,
		ApplyTimeout:            2 * time.Second,
		ReconcileInterval:       100 * time.Millisecond,
		ServerStabilizationTime: time.Second,
		LastContactThreshold:    time.Second,
		DeadServerGrace:         2 * time.Second,
		LeaderHold:              2 * time.Second,
		CatchUpTimeout:          15 * time.Second,
	}
}

// DefaultConfig returns a Config with every default filled in; ID and
// DataDir are left for the caller.
func DefaultConfig() Config {
	return Config{
		BindAddr:          "127.0.0.1:7948",
		MaxHistory:        20,
		MaxDocSize:        1 << 20,
		MaxVoters:         5,
		SnapshotThreshold: 8192,
		SnapshotInterval:  120 * time.Second,
		TrailingLogs:      10240,
		IdleTimeout:       time.Minute,
		Timing:            DefaultTiming(),
		Logger:            slog.New(slog.DiscardHandler),
		Clock:             clock.Real{},
	}
}

// DefaultLocalConfig is DefaultConfig with FastTiming and a random loopback
// port, for tests and the demo.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.BindAddr = "127.0.0.1:0"
	c.Timing = FastTiming()
	return c
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.BindAddr, d.BindAddr)
	setDefault(&c.MaxHistory, d.MaxHistory)
	setDefault(&c.MaxDocSize, d.MaxDocSize)
	setDefault(&c.MaxVoters, d.MaxVoters)
	setDefault(&c.SnapshotThreshold, d.SnapshotThreshold)
	setDefault(&c.SnapshotInterval, d.SnapshotInterval)
	setDefault(&c.TrailingLogs, d.TrailingLogs)
	setDefault(&c.IdleTimeout, d.IdleTimeout)
	t, dt := &c.Timing, d.Timing
	setDefault(&t.HeartbeatTimeout, dt.HeartbeatTimeout)
	setDefault(&t.ElectionTimeout, dt.ElectionTimeout)
	setDefault(&t.LeaderLeaseTimeout, dt.LeaderLeaseTimeout)
	setDefault(&t.CommitTimeout, dt.CommitTimeout)
	setDefault(&t.ApplyTimeout, dt.ApplyTimeout)
	setDefault(&t.ReconcileInterval, dt.ReconcileInterval)
	setDefault(&t.ServerStabilizationTime, dt.ServerStabilizationTime)
	setDefault(&t.LastContactThreshold, dt.LastContactThreshold)
	setDefault(&t.DeadServerGrace, dt.DeadServerGrace)
	setDefault(&t.LeaderHold, dt.LeaderHold)
	setDefault(&t.CatchUpTimeout, dt.CatchUpTimeout)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	return c
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports the first invalid field of c after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	t := c.Timing
	switch {
	case c.ID == "":
		return errors.New("consensus: ID is required")
	case c.DataDir == "":
		return errors.New("consensus: DataDir is required")
	case c.BootstrapExpect < 0:
		return fmt.Errorf("consensus: BootstrapExpect (%d) cannot be negative", c.BootstrapExpect)
	case c.MaxHistory < 1:
		return fmt.Errorf("consensus: MaxHistory (%d) must be at least 1", c.MaxHistory)
	case c.MaxDocSize < 1:
		return fmt.Errorf("consensus: MaxDocSize (%d) must be positive", c.MaxDocSize)
	case c.IdleTimeout < 0:
		return fmt.Errorf("consensus: IdleTimeout (%s) cannot be negative", c.IdleTimeout)
	case c.MaxVoters < 1:
		return fmt.Errorf("consensus: MaxVoters (%d) must be at least 1", c.MaxVoters)
	case c.MinQuorum < 0:
		return fmt.Errorf("consensus: MinQuorum (%d) cannot be negative", c.MinQuorum)
	case t.LeaderLeaseTimeout > t.HeartbeatTimeout:
		return fmt.Errorf("consensus: Timing.LeaderLeaseTimeout (%s) cannot be larger than Timing.HeartbeatTimeout (%s)",
			t.LeaderLeaseTimeout, t.HeartbeatTimeout)
	case t.HeartbeatTimeout < 5*time.Millisecond || t.ElectionTimeout < 5*time.Millisecond:
		return fmt.Errorf("consensus: Timing.HeartbeatTimeout (%s) and Timing.ElectionTimeout (%s) must be at least 5ms",
			t.HeartbeatTimeout, t.ElectionTimeout)
	case t.ReconcileInterval < 10*time.Millisecond:
		return fmt.Errorf("consensus: Timing.ReconcileInterval (%s) must be at least 10ms", t.ReconcileInterval)
	}
	return nil
}

// raftConfig translates c into raft's configuration.
func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = c.Timing.HeartbeatTimeout
	rc.ElectionTimeout = c.Timing.ElectionTimeout
	rc.LeaderLeaseTimeout = c.Timing.LeaderLeaseTimeout
	rc.CommitTimeout = c.Timing.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	return rc
}
