package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// Store is one server of the replicated document store. Make it with New,
// run it with Start, stop it with Shutdown (graceful) or Close (abrupt).
type Store struct {
	cfg   Config
	log   *slog.Logger
	hlog  hclog.Logger
	noise *logthrottle.Throttle // raft's complaints about what senders sent

	lock     *dirLock
	bolt     *raftboltdb.BoltStore
	snaps    raft.SnapshotStore
	fsm      *fsm
	notifier *notifier
	hasState bool // raft state existed on disk at New
	// recovering is set at New without raft state (or with the marker of
	// a recovery cut short) and cleared once this server caught up or forms
	// a new cluster (recovery.go).
	recovering atomic.Bool

	// Set by Start.
	trans    raft.Transport // the transport itself; raft gets guard around it
	layer    *streamLayer   // the network transport's, nil with Config.Transport
	guard    *voteGuard
	raft     *raft.Raft
	ap       *autopilot.Autopilot
	promoter *promoter
	obs      *raft.Observer

	started      atomic.Bool   // Start was called (guards a second Start)
	ready        atomic.Bool   // Start succeeded: raft and the loops run
	up           chan struct{} // closed when Start succeeded
	down         chan struct{} // closed by Close
	stopped      atomic.Bool
	addr         atomic.Pointer[string]
	didBootstrap atomic.Bool // this server called BootstrapCluster
	apState      atomic.Pointer[autopilot.State]
	catch        catchUp // since Start or the last re-join (catchup.go)

	mu            sync.Mutex // guards the fields below
	servers       map[string]Server
	downSince     map[string]time.Time   // first time a server was seen not alive
	reconciled    bool                   // Reconcile was called at least once
	bootstrapped  bool                   // bootstrap is settled: done, or state existed
	lastContact   map[string]peerContact // from failed-heartbeat observations
	removedAt     map[string]time.Time   // when raft last stopped replicating to a server (removed), in any term
	answeredAt    map[string]time.Time   // when a server last answered an AppendEntries of this server's (wall clock)
	warnedForeign map[string]string      // server ID -> another cluster's ID, logged once
	warnedAddr    map[string]string      // server ID -> the live server whose raft address it claims, logged once
	formation     map[string]bool        // servers bootstrapped with, still recovering (forming)
	// leaving holds servers removed on request while membership showed them
	// alive ("pingora-node leave": the node drains and leaves gossip once
	// its removal is answered). A step does not add them back until
	// membership has reported them gone (reconcile.go).
	leaving map[string]bool

	kick     chan struct{} // cap 1: one pending reconcile is enough
	cancel   context.CancelFunc
	stopNote chan struct{}
	loops    sync.WaitGroup // reconcile, leadership and observer loops
	noteWG   sync.WaitGroup // the OnApply delivery loop
	bg       sync.WaitGroup // removals started by autopilot callbacks
	stopOnce sync.Once
	stopErr  error
}

// New opens (or creates) the data dir, takes its lock, opens the raft log,
// stable and snapshot stores and restores the last applied documents,
// calling OnApply for each before returning. It starts no goroutine and
// opens no socket; Start does.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus: data dir: %w", err)
	}
	lk, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg: cfg, log: cfg.Logger, lock: lk,
		up: make(chan struct{}), down: make(chan struct{}),
		noise:     logthrottle.New(cfg.Clock, 0, 0),
		notifier:  newNotifier(cfg.OnApply),
		servers:   map[string]Server{},
		downSince: map[string]time.Time{}, lastContact: map[string]peerContact{},
		removedAt: map[string]time.Time{}, answeredAt: map[string]time.Time{}, warnedForeign: map[string]string{},
		warnedAddr: map[string]string{}, formation: map[string]bool{},
		leaving:  map[string]bool{},
		kick:     make(chan struct{}, 1), // one pending reconcile is enough
		stopNote: make(chan struct{}),
	}
	s.hlog = newHCLogger(quietRepeats(cfg.Logger, cfg.Clock), "raft", s.noise)
	if err := s.open(); err != nil {
		s.closeStores()
		return nil, err
	}
	for _, d := range s.fsm.st.latest() {
		s.notifier.push(d)
	}
	s.notifier.drain() // deliver restored documents before any network
	return s, nil
}

func (s *Store) open() error {
	var err error
	s.bolt, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(s.cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("consensus: open raft.db: %w", err)
	}
	s.snaps, err = raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, 2, s.hlog)
	if err != nil {
		return fmt.Errorf("consensus: open snapshots: %w", err)
	}
	s.hasState, err = raft.HasExistingState(s.bolt, s.bolt, s.snaps)
	if err != nil {
		return fmt.Errorf("consensus: read raft state: %w", err)
	}
	s.bootstrapped = s.hasState
	if err := s.checkServerID(); err != nil {
		return err
	}
	if err := s.openRecovery(); err != nil {
		return err
	}
	s.fsm = &fsm{
		path:       filepath.Join(s.cfg.DataDir, "applied.msgpack"),
		maxHistory: s.cfg.MaxHistory, log: s.log, notify: s.notifier.push,
	}
	if !s.hasState {
		// Applied state without a raft log belongs to a cluster this server
		// no longer has; its index would make the new log's entries skip.
		if err := os.Remove(s.fsm.path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("consensus: remove stale applied state: %w", err)
		}
		return nil
	}
	return s.fsm.load()
}

func (s *Store) closeStores() {
	if s.bolt != nil {
		s.bolt.Close() //nolint:errcheck // best effort on a failed open
	}
	s.lock.release() //nolint:errcheck
}

// Start opens the transport, starts raft, the OnApply delivery loop, the
// reconcile loop (bootstrap and autopilot) and the leadership watcher. They
// run until Shutdown or Close, not until ctx is cancelled: the store must
// outlive a cancelled start-up context so that Shutdown can transfer
// leadership.
func (s *Store) Start(ctx context.Context) error {
	if s.stopped.Load() || !s.started.CompareAndSwap(false, true) {
		return ErrClosed
	}
	trans, err := s.transport()
	if err != nil {
		return err
	}
	s.trans = trans
	s.guard = newVoteGuard(s, trans)
	addr := string(trans.LocalAddr())
	s.addr.Store(&addr)
	r, err := raft.NewRaft(s.cfg.raftConfigWithLogger(s.hlog), s.fsm, s.bolt, s.bolt, s.snaps, s.guard.transport())
	if err != nil {
		if c, ok := trans.(raft.WithClose); ok {
			c.Close() //nolint:errcheck // already failing
		}
		return fmt.Errorf("consensus: start raft: %w", err)
	}
	s.raft = r
	s.promoter = newPromoter(s.cfg.MaxVoters, s.cfg.Clock)
	s.ap = autopilot.New(r, &apDelegate{s: s},
		autopilot.WithLogger(newHCLogger(s.log, "autopilot", nil)),
		autopilot.WithPromoter(s.promoter),
		autopilot.WithReconcileInterval(s.cfg.Timing.ReconcileInterval),
		autopilot.WithUpdateInterval(s.cfg.Timing.ReconcileInterval))
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	obsCh := make(chan raft.Observation, 64) // non-blocking observer: raft drops when full
	s.obs = raft.NewObserver(obsCh, false, isHeartbeatObservation)
	r.RegisterObserver(s.obs)
	s.noteWG.Add(1)
	go func() { defer s.noteWG.Done(); s.notifier.run(s.stopNote) }()
	s.loops.Add(4)
	go func() { defer s.loops.Done(); s.guard.relay(ctx) }()
	go func() { defer s.loops.Done(); s.reconcileLoop(ctx) }()
	go func() { defer s.loops.Done(); s.leaderLoop(ctx) }()
	go func() { defer s.loops.Done(); s.observeLoop(ctx, obsCh) }()
	if t := s.cfg.CaughtUpThrough; t > 0 && s.AppliedIndex() >= t {
		s.catch.handedOver = !s.cfg.CaughtUpLeaderless
		s.log.Info("consensus: starting caught up: the process that handed the data directory over had applied through this index",
			"index", t, "applied", s.AppliedIndex(), "predecessor_knew_leader", !s.cfg.CaughtUpLeaderless)
	} else {
		s.armCatchUp(false)
	}
	s.ready.Store(true)
	close(s.up)
	s.Kick()
	return nil
}

// awaitRunning returns nil once the store runs, waiting within ctx for a
// store opened but not started yet: a node serves its admin API and
// cluster port a moment before it starts raft, and on a graceful upgrade
// the successor takes those sockets over from the old process, whose raft
// has closed, so a config write or a forwarded one arriving in that
// moment would be refused (ErrClosed, "no quorum") while a leader is
// there. ErrClosed when the store is closed, or ctx ends first.
func (s *Store) awaitRunning(ctx context.Context) error {
	if s.running() {
		return nil
	}
	select {
	case <-s.up:
		if s.running() {
			return nil
		}
	case <-s.down:
	case <-ctx.Done():
	}
	return ErrClosed
}

// transportTimeout bounds each raft RPC's dial and I/O.
const transportTimeout = 10 * time.Second

func (c Config) raftConfigWithLogger(l hclog.Logger) *raft.Config {
	rc := c.raftConfig()
	rc.Logger = l
	return rc
}

// Shutdown stops the server gracefully: a leader of a multi-voter cluster
// first transfers leadership, then everything stops and the data dir is
// released. Safe to call more than once.
func (s *Store) Shutdown() error {
	if s.running() && s.IsLeader() && s.voterCount() > 1 {
		if err := s.LeadershipTransfer(); err != nil {
			s.log.Warn("consensus: leadership transfer before shutdown", "err", err)
		}
	}
	return s.Close()
}

// Close stops the server at once, as a crash would but releasing the data
// dir cleanly: no leadership transfer. Safe to call more than once.
func (s *Store) Close() error {
	s.stopOnce.Do(func() {
		s.stopped.Store(true)
		close(s.down)
		if s.ready.Load() {
			s.stopErr = s.stopRunning()
		}
		if err := s.bolt.Close(); err != nil && s.stopErr == nil {
			s.stopErr = err
		}
		if err := s.lock.release(); err != nil && s.stopErr == nil {
			s.stopErr = err
		}
	})
	return s.stopErr
}

// stopRunning stops in dependency order: our loops (so none restarts
// autopilot), autopilot, raft (which resolves every pending future), the
// removals autopilot started, then OnApply delivery of what was committed.
func (s *Store) stopRunning() error {
	s.cancel()
	s.loops.Wait()
	<-s.ap.Stop()
	if s.layer != nil {
		s.layer.abort() // raft's Shutdown waits for RPCs to unreachable peers otherwise
	}
	err := s.raft.Shutdown().Error()
	s.guard.stopHeartbeats() // before the log store closes (Close)
	s.raft.DeregisterObserver(s.obs)
	if c, ok := s.trans.(raft.WithClose); ok {
		c.Close() //nolint:errcheck // raft closed it already when it could
	}
	if nt, ok := s.trans.(*raft.NetworkTransport); ok {
		// Close only stops the listener; pooled outbound connections would
		// keep the peers' handler goroutines (and sockets) alive.
		nt.CloseStreams()
	}
	s.bg.Wait()
	close(s.stopNote)
	s.noteWG.Wait()
	s.noise.Flush() // junk counted since the last summary
	return err
}

// ID returns this server's ID.
func (s *Store) ID() string { return s.cfg.ID }

// Addr returns the raft address others dial (after Start), or "".
func (s *Store) Addr() string {
	if p := s.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// HasState reports whether this server holds raft state: it existed on
// disk when New ran, or raft has a log since (it bootstrapped, or a leader
// replicated to it). node gossips it so that no server bootstraps next to
// an existing cluster.
func (s *Store) HasState() bool { return s.hasState || s.running() && s.raft.LastIndex() > 0 }

// StartedWithState reports whether raft state existed on disk at New: the
// server restarted, and may have missed what was committed meanwhile.
func (s *Store) StartedWithState() bool { return s.hasState }

// Bootstrapped reports whether this server itself bootstrapped the cluster.
func (s *Store) Bootstrapped() bool { return s.didBootstrap.Load() }

// Leader returns the leader's ID and raft address as this server knows
// them, or empty strings.
func (s *Store) Leader() (id, addr string) {
	if !s.running() {
		return "", ""
	}
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this server is the leader.
func (s *Store) IsLeader() bool { return s.running() && s.raft.State() == raft.Leader }

// LeadershipTransfer hands leadership to another voter; call it on the
// leader before draining.
func (s *Store) LeadershipTransfer() error {
	if !s.running() {
		return ErrClosed
	}
	if err := s.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("consensus: leadership transfer: %w", s.mapErr(err))
	}
	return nil
}

func (s *Store) running() bool { return s.ready.Load() && !s.stopped.Load() }

func (s *Store) voterCount() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, sv := range f.Configuration().Servers {
		if sv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// mapErr turns raft's errors into this package's classes.
func (s *Store) mapErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter):
		if id, addr := s.Leader(); id != "" && id != s.cfg.ID {
			return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
		}
		return fmt.Errorf("%w: %w: %w", ErrNoQuorum, ErrNoLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	return err
}
