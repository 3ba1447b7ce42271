package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/proxy/handoff"
	"github.com/pingora-go/pingora-go/wire"
)

// Options are what the caller supplies beside the node file.
type Options struct {
	// Version is the build version shown in /status (default "dev").
	Version string
	// Commit is the VCS revision the binary was built from, shown in
	// /status (default "": unknown).
	Commit string
	// Log receives the node's log; nil means JSON on stderr at the node
	// file's log level.
	Log *slog.Logger
	// AccessLog receives access log lines when the node file enables them
	// (default os.Stdout).
	AccessLog io.Writer
	// Inherit holds the listeners passed by the process this one takes
	// over from ("run --upgrade"); nil binds every listener afresh.
	Inherit *handoff.Inherited
	// NoHandoff disables offering the listeners to a successor.
	NoHandoff bool
	// Host is the machine's interfaces, from which the advertised address
	// of ports bound to every address is chosen (default: read with
	// config.LocalHost).
	Host *config.Host
	// TraceExporter, when set, receives every span at once and turns
	// tracing on whatever the node file says (tests; default nil: the node
	// file and OTEL_* variables decide, and spans go out over OTLP/HTTP).
	TraceExporter sdktrace.SpanExporter
	// Network, when set, wraps the node's cluster sockets (tests: faults
	// between in-process nodes; default nil: the real network).
	Network Network
}

// Node is one running pingora-node.
type Node struct {
	cfg  *config.Node
	adv  *config.Advertised // what the other nodes are told
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry
	// baseLog is log without the node attribute, for parts that add it
	// themselves (membership), so no line carries "node" twice.
	baseLog *slog.Logger

	router  *proxy.Router
	srv     *proxy.Server[struct{}]
	tracing *tracing
	traffic *trafficMeter
	views   viewCache // /v1/cluster's, see ui.go
	// redactSecret keys the digests that stand for rate-limit keys shown
	// to readers without admin rights (redactKeys); random per process.
	redactSecret [32]byte
	limits       *limitsPart
	cache        *cachePart // see sharedcache.go

	mu        sync.Mutex
	listeners []*boundListener
	adminLn   net.Listener
	admin     *http.Server

	level       slog.LevelVar
	clusterPath atomic.Pointer[string]
	seedErr     error // the cluster_config file's problem, on a replicated node (openState)
	lastReload  atomic.Pointer[ReloadStatus]
	offer       *handoff.Offer
	cluster     atomic.Pointer[clusterPart]
	// lastMembers is the membership whose gossip started last, kept after
	// it stops (limitMembers); rejoining is one started after a failed
	// hand-off that becomes lastMembers once it rejoined (settled).
	lastMembers atomic.Pointer[membership.Cluster]
	rejoining   atomic.Pointer[rejoin]
	store       atomic.Pointer[consensus.Store]
	stopStore   chan struct{}
	rpc         *wire.Server
	rpcLn       net.Listener                // the cluster port as bound, for a hand-off
	mux         *wire.Mux                   // shares the cluster port: RPC and raft
	adminCap    atomic.Pointer[capListener] // the admin listener, for its accept failures
	dial        DialFunc                    // opens every cluster connection; see newClusterDial
	rpcClient   *wire.Client                // calls the leader for writes sent to a follower
	holdFor     atomic.Pointer[holdPolicy]  // replaces defaultHold (tests)
	superseded  chan struct{}
	failed      chan error    // see Failed
	left        chan struct{} // cap 1: see Left
	leaving     atomic.Bool   // POST /v1/leave is under way or done
	handedOff   atomic.Bool   // a successor holds, or is taking, the cluster identity
	successor   atomic.Int64  // its process ID, once handedOff
	// releasedAt is when this process released gossip and raft to a
	// successor that is not serving yet (UnixNano; 0 otherwise): stalled.
	releasedAt atomic.Int64
	// predecessorMembers is, on an upgrade, the member count of the old
	// process's rate-limit ring (handover.Members): predecessorRing.
	predecessorMembers atomic.Int32
	shutdown           atomic.Bool
	// prebound holds, on an upgrade, the listeners the node file names
	// that the old process did not pass, bound before it releases the
	// cluster identity (prebind); listen takes them. Used only by the
	// parts' starts, one after the other, so it needs no lock.
	prebound map[string]net.Listener
	// released is what this process told the successor it released raft
	// to; a hand-off that fails reopens raft from it, not from what this
	// process's own predecessor told it long before.
	released atomic.Pointer[handover]

	started time.Time
	applied atomic.Pointer[appliedConfig]
	version atomic.Int64
	ready   atomic.Bool
	// drained: gossip's drain ran; the metadata says draining from then on
	drained atomic.Bool
	stopped chan struct{}

	parts      *lifecycle // see partList
	offerLoops *group     // the upgrade part's: OfferHandoff's loop
}

type boundListener struct {
	cfg config.Listener
	lc  proxy.ListenerConfig
	ln  net.Listener
}

// appliedConfig describes the cluster config the node serves.
type appliedConfig struct {
	Version   int64     `json:"version"`
	Hash      string    `json:"hash"`
	AppliedAt time.Time `json:"applied_at"`
	Source    string    `json:"source"`
	// Error is the last config that failed to apply here, if any; the node
	// keeps serving the version above.
	Error string `json:"error,omitempty"`

	content []byte // the source text
}

// New builds a node from its file: the engine, the routing table from the
// cluster config, and the metrics registry. It binds nothing; Start does.
func New(cfg *config.Node, opts Options) (*Node, error) {
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.AccessLog == nil {
		opts.AccessLog = os.Stdout
	}
	n := &Node{cfg: cfg, opts: opts, log: opts.Log, reg: prometheus.NewRegistry(), stopped: make(chan struct{}), superseded: make(chan struct{}),
		failed: make(chan error, 1), // the first failure is enough
		left:   make(chan struct{}, 1)}
	n.level.Set(parseLevel(cfg.LogLevel))
	if n.log == nil {
		n.log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: &n.level}))
	}
	clusterPath := cfg.Path(cfg.ClusterConfig)
	n.clusterPath.Store(&clusterPath)
	n.baseLog = n.log
	n.log = n.log.With("node", cfg.Name)
	if err := n.resolveAdvertise(); err != nil {
		return nil, err
	}
	if cfg.Clustered() {
		if err := n.checkMetaSize(n.worstMeta()); err != nil {
			return nil, err
		}
	}
	router, err := proxy.NewRouter(proxy.RouterOptions{Metrics: n.reg, Log: n.log.With("part", "health")})
	if err != nil {
		return nil, err
	}
	n.router = router
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pingora_admin_accept_failures_total",
			Help: "Accepts on the admin port that failed for want of descriptors (too many open files), buffers or memory, each retried after a back-off (5ms doubling to 1s). Compare process_open_fds with process_max_fds to see it coming.",
		}, func() float64 {
			if l := n.adminCap.Load(); l != nil {
				return float64(l.acceptFails.Load())
			}
			return 0
		}))
	n.tracing = newTracing(cfg, opts)
	if n.dial, err = n.newClusterDial(); err != nil {
		return nil, err
	}
	if n.rpcClient, err = wire.NewClient(wire.ClientConfig{Dialer: wire.DialerFunc(n.dial), Logger: n.log.With("part", "rpc"),
		Tracer: n.tracing.wireTracer()}); err != nil {
		return nil, err
	}
	if n.cache, err = n.newCache(cfg); err != nil {
		return nil, err
	}
	pc := proxyConfig(cfg, n.cache)
	if n.limits, err = n.newLimits(); err != nil {
		return nil, err
	}
	if err := n.registerClusterMetrics(); err != nil {
		return nil, fmt.Errorf("cluster metrics: %w", err)
	}
	pc.Limiter = limitHook{n.limits.l}
	pc.Metrics = n.reg
	pc.ErrorLog = n.log.With("part", "proxy")
	n.traffic = &trafficMeter{gather: n.reg.Gather, now: time.Now}
	rand.Read(n.redactSecret[:])
	pc.Tracer = n.tracing.proxyTracer()
	if cfg.AccessLog {
		pc.AccessLog = slog.New(slog.NewJSONHandler(opts.AccessLog, nil))
	}
	srv, err := proxy.New[struct{}](proxy.RouterApp{Router: n.router}, pc)
	if err != nil {
		return nil, err
	}
	n.srv = srv
	n.parts = &lifecycle{parts: n.partList(), log: n.log, beforeStop: func() { n.ready.Store(false) }}
	if cfg.Replicated() {
		// The routing config comes from raft, opened by Start; a cluster
		// config file only seeds a new cluster, but must be valid when it
		// may have to: openState decides once it knows whether data_dir
		// holds raft state. A successor (an upgrade) decides here, before
		// its predecessor releases anything.
		if cfg.ClusterConfig != "" {
			c, _, err := n.readClusterFile()
			if err == nil {
				if berr := checkCluster(c); berr != nil {
					err = fmt.Errorf("cluster config %s does not build: %w", *n.clusterPath.Load(), berr)
				}
			}
			if err != nil && opts.Inherit != nil {
				return nil, err
			}
			n.seedErr = err
		}
		return n, nil
	}
	if err := n.loadClusterFile(); err != nil {
		return nil, err
	}
	return n, nil
}

// resolveAdvertise decides the addresses the node advertises.
func (n *Node) resolveAdvertise() error {
	host := n.opts.Host
	if host == nil {
		h, err := config.LocalHost()
		if err != nil {
			return err
		}
		host = &h
	}
	adv, err := n.cfg.ResolveAdvertise(*host)
	if err != nil {
		return err
	}
	n.adv = adv
	return nil
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// readClusterFile reads and validates the cluster config file.
func (n *Node) readClusterFile() (*config.Cluster, []byte, error) {
	path := *n.clusterPath.Load()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster config: %w", err)
	}
	c, err := config.ParseNewCluster(path, data)
	if err != nil {
		return nil, nil, err
	}
	return c, data, nil
}

// loadClusterFile reads, validates and applies the cluster config file.
func (n *Node) loadClusterFile() error {
	c, data, err := n.readClusterFile()
	if err != nil {
		return err
	}
	return n.apply(c, data, 0, "file:"+*n.clusterPath.Load())
}

// warnClusterFileIgnored says, on a reload of a node whose cluster config
// is replicated, that an edited cluster_config file is not applied: an
// operator used to nginx edits the file and sends SIGHUP, and the node
// answered "reloaded", an invalid file included, while nothing changed.
// The reload itself is not refused (certificates and the log level apply).
// It returns the warning, for the reload's record in /status ("" when
// the file is as seeded).
func (n *Node) warnClusterFileIgnored() string {
	path := *n.clusterPath.Load()
	if n.cfg.ClusterConfig == "" || path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "" // a seed file removed once the cluster formed
	}
	if a := n.applied.Load(); a != nil && a.Hash == config.Hash(data) {
		return ""
	}
	fix := fmt.Sprintf("pingora-node config apply -f %s", path)
	if _, err := config.ParseNewCluster(path, data); err != nil {
		msg := "cluster config file not applied: the cluster config is replicated (data_dir), the file only seeds a new cluster; it does not parse either"
		n.log.Warn(msg, "file", path, "err", err, "apply_with", fix)
		return fmt.Sprintf("%s (%v); to change the running config: %s", msg, err, fix)
	}
	msg := "cluster config file not applied: the cluster config is replicated (data_dir), the file only seeds a new cluster, and it differs from the running version"
	n.log.Warn(msg, "file", path, "apply_with", fix)
	return fmt.Sprintf("%s %s; to apply it: %s", msg, path, fix)
}

// reloadClusterFile applies the cluster config file again, but refuses a
// file that routes nothing while the running config routes something: an
// emptied file must not take all routing away with one SIGHUP.
func (n *Node) reloadClusterFile() error {
	c, data, err := n.readClusterFile()
	if err != nil {
		return err
	}
	path := *n.clusterPath.Load()
	if why := c.RoutesNothing(); why != "" && n.router.Table().Routes() > 0 {
		return fmt.Errorf("cluster config %s: %s; the running config is kept (a node started on such a file runs, not ready)", path, why)
	}
	return n.apply(c, data, 0, "file:"+path)
}

// apply builds a table from c (whose source text is data) and swaps it
// in as version (0: the next local version); on failure the running table
// stays and the error is recorded for /status.
func (n *Node) apply(c *config.Cluster, data []byte, version int64, source string) error {
	hash := config.Hash(data)
	if cur := n.applied.Load(); cur != nil && cur.Hash == hash && (version == 0 || cur.Version == version) {
		return nil // nothing changed
	}
	prev := n.version.Load()
	if version == 0 {
		version = prev + 1
	}
	n.version.Store(version)
	_, shared := n.cache.stores()
	tbl, err := buildTable(n.router, c, fmt.Sprint(version), buildEnv{resolve: n.cfg.Path, shared: shared, readCA: true})
	if err == nil {
		err = n.applyLimits(c)
	}
	if err != nil {
		n.version.Store(prev)
		if cur := n.applied.Load(); cur != nil {
			failed := *cur
			failed.Error = fmt.Sprintf("%s (%s): %v", source, hash, err)
			n.applied.Store(&failed)
		}
		return fmt.Errorf("apply cluster config: %w", err)
	}
	n.router.Swap(tbl)
	n.applied.Store(&appliedConfig{Version: version, Hash: hash, AppliedAt: time.Now().UTC(), Source: source, content: data})
	n.pokeMeta() // readiness may have changed: gossip says so now (metaState)
	n.log.Info("cluster config applied", "version", version, "hash", hash, "upstreams", len(c.Upstreams), "routes", len(c.Routes))
	return nil
}

// Start opens the node's state (the raft data directory, after the old
// process released it on an upgrade), binds or inherits the listeners and
// the admin server, starts serving, then starts gossip, RPC and raft: the
// parts of partList, in order. On error everything started so far is
// stopped.
func (n *Node) Start() error {
	return n.parts.start(context.Background())
}

// partList is the node's parts in the order they start; they stop in the
// reverse one, after Shutdown drained them (again in reverse). So on
// SIGTERM: readiness off (beforeStop), the upgrade socket closes, the
// node leaves every ring (gossip's drain), the cache finishes the streams
// it sends other nodes, the proxy drains its requests, the rate limiter
// hands its counters over; then raft stops (without leaving as a voter),
// gossip is left, the cluster RPC, the cache, the proxy and the admin
// server stop, and the spans still queued go out.
func (n *Node) partList() []part {
	graceful := func() bool { return !n.handedOff.Load() }
	upgrade := &step{id: "upgrade", onStart: func(context.Context, *group) error { return n.takeOver() },
		onDrain: func(context.Context) error {
			n.stopOffer()
			if n.handedOff.Load() {
				n.leaveAdminSocket()
				n.leaveClusterSocket()
				n.handOverLimits()
			}
			return nil
		},
		onStop: func(context.Context) error { n.stopOffer(); return nil }}
	n.offerLoops = &upgrade.g
	return []part{
		// New starts the health checks with the first table; they stop
		// last, also when Start fails.
		&step{id: "health", onStop: func(context.Context) error { n.router.Close(); return nil }},
		&step{id: "tracing", onStart: func(context.Context, *group) error { return n.tracing.start() },
			onStop: func(context.Context) error { n.tracing.stop(); return nil }},
		// The old process keeps serving while it releases the cluster
		// state (gossip identity, raft data directory) to this one.
		// New listeners are bound before that: one that cannot bind (a
		// node file naming an address in use) fails the upgrade while the
		// old process still holds raft and gossip, and the cluster sees
		// nothing.
		&step{id: "prebind", onStart: func(context.Context, *group) error { return n.prebind() },
			onStop: func(context.Context) error { n.closePrebound(); return nil }},
		&step{id: "predecessor", onStart: func(context.Context, *group) error { return n.releasePredecessor() }},
		// The last applied cluster config is served from the first request.
		&step{id: "raft-state", identity: true, onStart: func(context.Context, *group) error { return n.openState() },
			onStop: func(context.Context) error { n.closeConsensus(); return nil }},
		// Running before the proxy takes requests; it hands its counters
		// over after the proxy drained, while the ring and RPC still run.
		&step{id: "limits", onStart: func(context.Context, *group) error {
			if n.opts.Inherit != nil {
				// The old process's leases are unknown here until its
				// counters arrive (handOverLimits, as it drains).
				n.limits.l.AwaitPredecessor(predecessorLimitsWait)
				n.predecessorMembers.Store(int32(min(n.inheritedHandover().Members, 1<<16)))
			}
			return n.limits.l.Start()
		},
			onDrain: func(context.Context) error { n.stopLimits(graceful()); return nil },
			onStop:  func(context.Context) error { n.stopLimits(false); return nil }},
		// Up until the very end: /readyz says "draining" while the others stop.
		&step{id: "admin", onStart: func(_ context.Context, g *group) error { return n.bindAdmin(g) },
			onStop: func(context.Context) error { n.stopAdmin(); return nil }},
		&step{id: "proxy", onStart: func(_ context.Context, g *group) error { return n.bindProxy(g) },
			onDrain: n.drainProxy, onStop: func(context.Context) error { n.stopProxy(); return nil }},
		// Stops after the cluster RPC, which serves other nodes' cache calls.
		&step{id: "cache",
			onDrain: func(ctx context.Context) error { n.drainCache(ctx); return nil },
			onStop:  func(context.Context) error { n.stopCache(); return nil }},
		&step{id: "rpc", onStart: func(_ context.Context, g *group) error { return n.startRPC(g) },
			onStop: func(context.Context) error { n.stopRPC(); return nil }},
		// Made, not started: raft subscribes to its events first.
		&step{id: "membership", identity: true, onStart: func(context.Context, *group) error { return n.newCluster() },
			onStop: func(context.Context) error { n.leaveCluster(graceful()); return nil }},
		&step{id: "consensus", identity: true, onStart: func(_ context.Context, g *group) error { return n.startConsensus(g) },
			onStop: func(context.Context) error { n.closeConsensus(); return nil }},
		// Announces the node as it is now (ready once /readyz is, with its
		// raft address);
		// its drain takes the node off every ring; membership's stop
		// leaves gossip.
		&step{id: "gossip", identity: true, onStart: func(context.Context, *group) error { return n.startGossip() },
			onDrain: func(context.Context) error { n.drainCluster(); return nil }},
		// The ring loop follows the membership: it stops for a hand-off
		// and starts again with gossip if the hand-off fails (a cache
		// that kept the released membership's ring for good).
		&step{id: "cache-ring", identity: true, onStart: func(context.Context, *group) error { return n.followCacheRing() },
			onStop: func(context.Context) error { n.unfollowCacheRing(); return nil }},
		upgrade,
	}
}

// prebind binds, on an upgrade, every listener of the node file (proxy
// listeners, admin API, cluster port) that the old process did not pass
// at the same address, before the old process releases raft and gossip:
// a successor that then failed to bind one (an address in use, or not on
// this host) ended only after the release, and the old process, which
// keeps serving, had stopped raft (a leader handing leadership over) and
// gossip and started them again.
func (n *Node) prebind() error {
	in := n.opts.Inherit
	if in == nil {
		return nil
	}
	passed := map[string]bool{}
	for _, e := range in.Entries() {
		passed[e.Name+" "+e.Addr] = true
	}
	want := [][2]string{{adminListenerName, n.cfg.AdminAddr}}
	for _, l := range n.cfg.Listeners {
		want = append(want, [2]string{l.Name, l.Addr})
	}
	if n.cfg.ClusterAddr != "" {
		want = append(want, [2]string{rpcListenerName, n.cfg.ClusterAddr})
	}
	n.prebound = map[string]net.Listener{}
	for _, w := range want {
		if passed[w[0]+" "+w[1]] {
			continue
		}
		ln, err := proxy.Listen(w[1])
		if err != nil {
			n.closePrebound()
			switch w[0] {
			case adminListenerName:
				return fmt.Errorf("admin: %w", inUse(err, "admin_addr", "--admin-addr"))
			case rpcListenerName:
				return fmt.Errorf("cluster_addr: %w", inUse(err, "cluster_addr", "--cluster-addr"))
			}
			return fmt.Errorf("listener %q: %w", w[0], inUse(err, "listeners[].addr", "--listen"))
		}
		n.prebound[w[0]] = ln
	}
	return nil
}

// closePrebound closes the listeners prebind bound that were not taken.
func (n *Node) closePrebound() {
	for name, ln := range n.prebound {
		ln.Close()
		delete(n.prebound, name)
	}
}

// releasePredecessor waits, on an upgrade, until the process this one
// replaces released the node's cluster state.
func (n *Node) releasePredecessor() error {
	if n.opts.Inherit == nil {
		return nil
	}
	n.inheritCache()
	return n.opts.Inherit.Release(successorTimeout)
}

// openState opens the raft data directory when the node replicates its
// cluster config.
func (n *Node) openState() error {
	if !n.cfg.Replicated() {
		return nil
	}
	if err := n.openConsensus(); err != nil {
		return err
	}
	if n.seedErr == nil {
		return nil
	}
	if st := n.store.Load(); st == nil || !st.StartedWithState() {
		n.closeConsensus()
		return fmt.Errorf("%w (cluster_config seeds a new cluster, and this node's data_dir %s holds no raft state yet: fix the file, or leave cluster_config out to join a cluster that has a config)",
			n.seedErr, n.cfg.Path(n.cfg.DataDir))
	}
	// A whole-cluster restart with a shared seed file that was edited
	// (or removed) since must not keep every node down: the config this
	// node serves is in raft, and the file is not read again.
	n.log.Warn("cluster config file not valid, ignored: this node's data_dir holds the cluster's raft state, so the file only seeds a new cluster; the replicated config is served",
		"file", *n.clusterPath.Load(), "err", n.seedErr, "fix", "correct or remove cluster_config; change the running config with pingora-node config apply -f FILE")
	return nil
}

// bindAdmin binds (or inherits) the admin listener and serves the admin
// API on it.
func (n *Node) bindAdmin(g *group) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.started = time.Now()
	aln, err := n.listen(adminListenerName, n.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin: %w", inUse(err, "admin_addr", "--admin-addr"))
	}
	n.adminLn = aln
	n.admin = newAdminServer(n.adminHandler(), defaultAdminTimeouts())
	admin := n.admin
	capped := newCapListener(aln, maxAdminConns, maxAdminConnsPerClient, maxAdminConnsLocalReserve, n.log)
	n.adminCap.Store(capped)
	g.goFunc(func() {
		if err := admin.Serve(capped); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "err", err)
		}
	})
	n.log.Info("admin listening", "addr", aln.Addr().String())
	return nil
}

// leaveAdminSocket stops taking connections on the admin socket, which
// this process shares with the successor it handed off to, and closes its
// idle ones: from the start of the drain every admin request reaches the
// process that serves, instead of half of them getting this one's
// "draining" /readyz, its /status, or a 503 for a config write (raft is
// the successor's). Requests in flight here finish; stopAdmin ends them.
func (n *Node) leaveAdminSocket() {
	n.mu.Lock()
	admin := n.admin
	n.mu.Unlock()
	if admin == nil {
		return
	}
	now, cancel := context.WithCancel(context.Background())
	cancel()
	admin.Shutdown(now) // closes the listener and idle connections, waits for nothing
}

// leaveClusterSocket stops taking connections on the cluster port, which
// this process shares with the successor it handed off to: raft and the
// RPCs of the other nodes are for the node's cluster identity, which is
// the successor's (raft is closed here). The other nodes' RPC connections
// get goaway as soon as no call runs on them, so their next calls (rate
// limit reports, cache fills) dial the successor instead of splitting the
// node's counters and cache between two processes for the whole drain;
// the calls in flight finish here, and stopRPC closes what is left.
func (n *Node) leaveClusterSocket() {
	n.mu.Lock()
	mux, srv := n.mux, n.rpc
	n.mu.Unlock()
	if mux != nil {
		mux.Close() // closes the listener and the connections not yet routed
	}
	if srv != nil {
		srv.Drain()
	}
}

// stopAdmin lets the admin requests in flight finish for up to 2 s (the
// grace period may be over by now), then closes what is left.
func (n *Node) stopAdmin() {
	n.mu.Lock()
	admin := n.admin
	n.mu.Unlock()
	if admin == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if admin.Shutdown(actx) != nil {
		admin.Close()
	}
}

// bindProxy binds (or inherits) the listeners, starts serving on them,
// and marks the node ready.
func (n *Node) bindProxy(g *group) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.cfg.Listeners {
		lc, err := listenerConfig(n.cfg, l)
		if err != nil {
			n.closeListeners()
			return err
		}
		ln, err := n.listen(l.Name, l.Addr)
		if err != nil {
			n.closeListeners()
			return fmt.Errorf("listener %q: %w", l.Name, inUse(err, "listeners[].addr", "--listen"))
		}
		n.listeners = append(n.listeners, &boundListener{cfg: l, lc: lc, ln: ln})
	}
	for _, b := range n.listeners {
		g.goFunc(func() {
			if err := n.srv.Serve(b.ln, b.lc); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
				n.log.Error("listener stopped", "listener", b.cfg.Name, "err", err)
			}
		})
		n.log.Info("listening", "listener", b.cfg.Name, "addr", b.ln.Addr().String(), "tls", b.lc.TLS != nil, "h2c", b.lc.H2C)
	}
	n.ready.Store(true)
	return nil
}

// drainProxy finishes the requests in flight, up to ctx.
func (n *Node) drainProxy(ctx context.Context) error {
	err := n.srv.Shutdown(ctx)
	if err != nil {
		n.log.Warn("grace period over, closing remaining connections", "err", err)
	}
	return err
}

// stopProxy closes the listeners and connections (at once, when the
// proxy was not drained).
func (n *Node) stopProxy() {
	n.ready.Store(false)
	n.srv.Close()
	n.mu.Lock()
	n.closeListeners()
	n.mu.Unlock()
}

// listen takes the listener from the process this one replaces, or binds
// it.
func (n *Node) listen(name, addr string) (net.Listener, error) {
	if ln, ok := n.prebound[name]; ok {
		delete(n.prebound, name)
		return ln, nil
	}
	ln, ok, err := n.opts.Inherit.Take(name, addr)
	if err != nil {
		return nil, err
	}
	if ok {
		n.log.Info("listener inherited", "listener", name, "addr", ln.Addr().String())
		adopted, err := proxy.AdoptListener(ln)
		if err != nil {
			ln.Close()
			return nil, err
		}
		return adopted, nil
	}
	return proxy.Listen(addr)
}

// closeListeners closes the proxy's listeners; n.mu is held.
func (n *Node) closeListeners() {
	for _, b := range n.listeners {
		b.ln.Close()
	}
	n.listeners = nil
}

// ListenerAddrs returns the bound address of each listener by name.
func (n *Node) ListenerAddrs() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]string{}
	for _, b := range n.listeners {
		out[b.cfg.Name] = b.ln.Addr().String()
	}
	return out
}

// AdminAddr returns the bound admin address.
func (n *Node) AdminAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}

// Reload re-reads the cluster config and the listeners' certificates. A
// file that does not validate or build is refused with the reason and the
// running config stays.
func (n *Node) Reload() error {
	var errs []error
	var warning string
	// A replicated config changes only through raft (PUT /v1/config); the
	// file then only seeds new clusters.
	if !n.cfg.Replicated() {
		if err := n.reloadClusterFile(); err != nil {
			errs = append(errs, err)
		}
	} else {
		warning = n.warnClusterFileIgnored()
	}
	n.mu.Lock()
	for _, b := range n.listeners {
		if b.lc.TLS != nil {
			if err := b.lc.TLS.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("listener %q: %w", b.cfg.Name, err))
			}
		}
	}
	n.mu.Unlock()
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error("reload refused, running config kept", "err", err)
		n.NoteReload("refused", err)
	} else {
		n.log.Info("reloaded")
		n.noteReload("applied", nil, warning)
	}
	return err
}

// Shutdown drains the node: /readyz fails at once, the node leaves the
// rings, requests in flight finish (up to ctx), then the parts stop in
// reverse order (see partList) and the admin server last.
func (n *Node) Shutdown(ctx context.Context) error {
	if !n.shutdown.CompareAndSwap(false, true) {
		<-n.stopped
		return nil
	}
	n.log.Info("draining", "active_connections", n.srv.ActiveConns())
	err := n.parts.shutdown(ctx)
	close(n.stopped)
	n.log.Info("stopped")
	return err
}

// Done is closed once Shutdown finished.
func (n *Node) Done() <-chan struct{} { return n.stopped }
