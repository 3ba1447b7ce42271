package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/health"
	"github.com/pingora-go/pingora-go/proxy/lb"
	"github.com/pingora-go/pingora-go/proxy/route"
)

// UpstreamConfig describes an upstream group for Router.Build.
type UpstreamConfig struct {
	// Name is how routes refer to the group.
	Name string
	// Policy is the lb policy: round_robin, random, least_conn, p2c, ketama
	// or fnv (default round_robin).
	Policy string
	// HashKey is what ketama and fnv hash (default: the URI).
	HashKey HashKey
	// Peers are the group's servers; Peer.Weight weighs them.
	Peers []*Peer
	// Retries caps extra attempts for requests to this group; 0 keeps the
	// server default and -1 disables retries.
	Retries int
	// RetryTimeout stops starting new attempts once this long has passed
	// since the request arrived (default 0: only Retries bounds them).
	RetryTimeout time.Duration
	// RetryOnStatus lists upstream statuses (such as 502, 503, 504) that are
	// retried on another peer like a connection failure, as nginx's
	// proxy_next_upstream http_5xx; the last attempt's response is passed
	// on as is (default none).
	RetryOnStatus []int
	// ReplayBufferBytes is how much of a request body is kept so that it can
	// be replayed on another peer (default 64 KiB).
	ReplayBufferBytes int
	// TryUnhealthy sends requests to unhealthy peers when none is healthy,
	// instead of answering 503 (default false).
	TryUnhealthy bool
	// HealthCheck enables an active check of every peer (default nil: none).
	HealthCheck *health.Check
	// Passive ejects peers after consecutive proxy failures (default: off).
	Passive health.Passive
}

// RouteConfig sends requests matching Host and PathPrefix to an upstream group.
type RouteConfig struct {
	// Host is a name, "*.name" or "*"/"" for any host.
	Host string
	// PathPrefix is matched against the cleaned request path, "%2F" read
	// as "/" and ";" parameters dropped (route.MatchPath; default "/").
	PathPrefix string
	// CaseInsensitive matches PathPrefix without regard to the case of
	// ASCII letters (route.Rule.CaseInsensitive): for an origin that
	// serves "/ADMIN" as "/admin".
	CaseInsensitive bool
	// Upstream names the group.
	Upstream string
	// MaxBodyBytes caps request bodies on this route; 0 keeps the server
	// default.
	MaxBodyBytes int64
	// Name labels the route in metrics and logs (default: the upstream name).
	Name string
	// Upgrades lists the protocols an HTTP/1.1 Upgrade may switch to on
	// this route, by name without case; it becomes Session.Upgrades. nil
	// means [websocket]; an empty, non-nil list allows none. Build refuses
	// h2c, h2 and HTTP: they are never tunnelled (see Session.Upgrades).
	Upgrades []string
	// Cache turns the HTTP cache on for the route with these settings; it
	// becomes Session.Cache (default nil: no caching). Turning it on or
	// off is a table swap like any other change.
	Cache *CacheConfig
}

// Table is an immutable routing table built by Router.Build.
type Table struct {
	routes    *route.Table[*routeEntry]
	upstreams map[string]*upstreamGroup
	pools     []namedPool // the CA pools named by Build (see caNames)
	// Version is an opaque label of the config the table came from.
	Version string
}

type routeEntry struct {
	cfg   RouteConfig
	group *upstreamGroup
}

type upstreamGroup struct {
	cfg      UpstreamConfig
	selector lb.Selector
	records  []*health.Record
}

// RouterOptions are a Router's dependencies; zero fields take defaults.
type RouterOptions struct {
	// Metrics registers peer health metrics (default nil: not registered).
	Metrics prometheus.Registerer
	// Log receives health transitions (default: discarded).
	Log *slog.Logger
	// Clock drives health checks and ejection cool-offs (default: real time).
	Clock clock.Clock
}

// Router routes requests by host and path to upstream groups and picks a
// peer in each with the group's policy. Its Table is swapped atomically; a
// request keeps the table it matched against. Peer health (active checks,
// passive ejection, manual disable) and in-flight counts live in the Router,
// keyed by the peer's identity (address, protocol, TLS settings and
// Peer.RootCAsID), and survive table swaps that keep the peer; a swap frees
// the state and metric series of peers the new table drops.
type Router struct {
	table  atomic.Pointer[Table]
	health *health.Registry
	log    *slog.Logger
	clock  clock.Clock
	cas    caNames

	// metricsMu orders the peer series: Swap publishes and prunes them,
	// onHealthChange writes them, both against the live table.
	metricsMu   sync.Mutex
	peerUp      *prometheus.GaugeVec
	transitions *prometheus.CounterVec

	swapMu      sync.Mutex // serializes Swap and the watchers
	watchers    map[int]func([]*Peer)
	nextWatcher int

	checkMu     sync.Mutex
	stopChecks  context.CancelFunc
	checksDone  sync.WaitGroup
	checkedKeys map[string]*health.Record
	closed      bool
}

// NewRouter returns a Router with an empty table (every request gets 404).
func NewRouter(opts RouterOptions) (*Router, error) {
	r := &Router{log: opts.Log, clock: opts.Clock}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.clock == nil {
		r.clock = clock.Real{}
	}
	r.peerUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pingora_upstream_peer_healthy",
		Help: "1 when the peer may receive traffic, 0 when it is down, ejected or disabled.",
	}, []string{"upstream", "peer"})
	r.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pingora_upstream_health_transitions_total",
		Help: "Peer health flips, by new state.",
	}, []string{"peer", "to"})
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{r.peerUp, r.transitions} {
			if err := opts.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("proxy: register router metrics: %w", err)
			}
		}
	}
	r.health = health.NewRegistry(r.clock, r.onHealthChange)
	empty, _ := route.New[*routeEntry](nil)
	r.table.Store(&Table{routes: empty, upstreams: map[string]*upstreamGroup{}})
	return r, nil
}

// onHealthChange publishes a flip of a live table's peer; a record no live
// table uses (one a swap just dropped) makes no series.
func (r *Router) onHealthChange(c health.Change) {
	r.metricsMu.Lock()
	defer r.metricsMu.Unlock()
	live := false
	for _, g := range r.table.Load().upstreams {
		for i, rec := range g.records {
			if rec.Key() == c.Key {
				live = true
				r.peerUp.WithLabelValues(g.cfg.Name, g.cfg.Peers[i].Addr).Set(boolFloat(c.Healthy))
			}
		}
	}
	if !live {
		return
	}
	to := "down"
	if c.Healthy {
		to = "up"
	}
	r.transitions.WithLabelValues(c.Addr, to).Inc()
	r.log.Warn("peer health changed", "peer", c.Addr, "healthy", c.Healthy, "reason", c.Reason)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Build makes a Table from upstream groups and routes without installing
// it. It fails on unknown upstreams, duplicate names, duplicate routes and
// groups or routes that do not validate (UpstreamConfig.Validate,
// RouteConfig.Validate). The peers' health
// records are the Router's, so a table that is then swapped in keeps the
// health its peers had.
func (r *Router) Build(ups []UpstreamConfig, routes []RouteConfig, version string) (*Table, error) {
	return build(ups, routes, version, r)
}

// CheckTable reports whether Build would make a table of ups and routes,
// with the error Build would return. It is Build's own code, run as a dry
// run: it touches no Router (no health records, checks, metrics or CA
// names), starts nothing and leaves its arguments, peers included, as they
// were; what it builds is dropped. node runs it on a cluster config before
// the config is replicated (issue 13).
func CheckTable(ups []UpstreamConfig, routes []RouteConfig) error {
	_, err := build(ups, routes, "", nil)
	return err
}

// build is Build, on r's health registry, or a dry run (CheckTable) when r
// is nil.
func build(ups []UpstreamConfig, routes []RouteConfig, version string, r *Router) (*Table, error) {
	t := &Table{upstreams: map[string]*upstreamGroup{}, Version: version}
	for i, u := range ups {
		if u.Name == "" {
			return nil, fmt.Errorf("proxy: upstream %d has no name", i)
		}
		if _, dup := t.upstreams[u.Name]; dup {
			return nil, fmt.Errorf("proxy: duplicate upstream %q", u.Name)
		}
		g, err := buildGroup(u, &t.pools, r)
		if err != nil {
			return nil, err
		}
		t.upstreams[u.Name] = g
	}
	rules := make([]route.Rule[*routeEntry], 0, len(routes))
	for i, rc := range routes {
		g := t.upstreams[rc.Upstream]
		if g == nil {
			return nil, fmt.Errorf("proxy: route %d refers to unknown upstream %q", i, rc.Upstream)
		}
		if rc.Name == "" {
			rc.Name = rc.Upstream
		}
		if err := rc.Validate(); err != nil {
			return nil, fmt.Errorf("proxy: route %d: %w", i, err)
		}
		rules = append(rules, route.Rule[*routeEntry]{Host: rc.Host, PathPrefix: rc.PathPrefix, CaseInsensitive: rc.CaseInsensitive, Target: &routeEntry{cfg: rc, group: g}})
	}
	rt, err := route.New(rules)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	t.routes = rt
	return t, nil
}

// buildGroup builds one group's selector over its peers' health records:
// r's, or for a dry run (r nil) records of a registry of its own, made
// without naming CA pools or fixing the peers' identities.
func buildGroup(u UpstreamConfig, pools *[]namedPool, r *Router) (*upstreamGroup, error) {
	if len(u.Peers) == 0 {
		return nil, fmt.Errorf("proxy: upstream %q has no peers", u.Name)
	}
	if err := u.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: upstream %q: %w", u.Name, err)
	}
	g := &upstreamGroup{cfg: u}
	var scratch *health.Registry
	if r == nil {
		scratch = health.NewRegistry(clock.Real{}, nil) // starts nothing; dropped with the table
	}
	backends := make([]lb.Backend, len(u.Peers))
	for i, p := range u.Peers {
		var rec *health.Record
		if r != nil {
			if p.Group == "" {
				p.Group = u.Name
			}
			r.nameCA(p, pools)
			rec = r.health.Get(p.poolKey(), p.Addr)
		} else {
			rec = scratch.Get(strconv.Itoa(i), p.Addr)
		}
		g.records = append(g.records, rec)
		backends[i] = lb.Backend{Addr: p.Addr, Weight: p.Weight, State: rec.State()}
	}
	sel, err := lb.New(u.policy(), backends, lb.Options{})
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream %q: %w", u.Name, err)
	}
	g.selector = sel
	return g, nil
}

// Swap installs t, moves the active health checks to t's groups, and
// returns the previous table. State of peers t does not have is freed:
// their health records, peer metric series and, through the watchers
// (PeerWatcher), pooled connections; requests in flight on the previous
// table finish on it.
func (r *Router) Swap(t *Table) *Table {
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	peers := t.peers()
	for _, w := range r.watchers {
		w(peers) // first, so requests on t find their peers kept
	}
	r.health.Retain(t.records())
	r.cas.setLive(t.pools)
	r.metricsMu.Lock()
	old := r.table.Swap(t)
	r.publishPeerMetrics(old, t)
	r.metricsMu.Unlock()
	r.restartChecks(t)
	return old
}

// restartChecks stops the checkers of the previous table and starts one per
// group of t that has a health check. Peers no longer checked forget their
// active verdict.
func (r *Router) restartChecks(t *Table) {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	if r.stopChecks != nil {
		r.stopChecks()
		r.checksDone.Wait()
		r.stopChecks = nil
	}
	if r.closed {
		return
	}
	checked := map[string]*health.Record{}
	ctx, cancel := context.WithCancel(context.Background())
	r.stopChecks = cancel
	for _, g := range t.upstreams {
		if g.cfg.HealthCheck == nil {
			continue
		}
		targets := make([]health.Target, len(g.cfg.Peers))
		for i, p := range g.cfg.Peers {
			targets[i] = health.Target{Record: g.records[i], Addr: p.Addr, TLS: checkTLS(p)}
			checked[g.records[i].Key()] = g.records[i]
		}
		c := health.NewChecker(*g.cfg.HealthCheck, targets, r.clock)
		r.checksDone.Add(1)
		go func() {
			defer r.checksDone.Done()
			c.Run(ctx)
		}()
	}
	for k, rec := range r.checkedKeys {
		if checked[k] == nil {
			rec.StopActive()
		}
	}
	r.checkedKeys = checked
}

func checkTLS(p *Peer) *tls.Config {
	return &tls.Config{ServerName: p.ServerName(), RootCAs: p.RootCAs, InsecureSkipVerify: p.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
}

// Close stops the active health checks. The Router keeps routing.
func (r *Router) Close() {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	r.closed = true
	if r.stopChecks != nil {
		r.stopChecks()
		r.checksDone.Wait()
		r.stopChecks = nil
	}
}

// Table returns the current table.
func (r *Router) Table() *Table { return r.table.Load() }

// ErrNoSuchPeer is returned by SetPeerDisabled for an unknown group or peer.
var ErrNoSuchPeer = errors.New("proxy: no such upstream peer")

// SetPeerDisabled takes a peer of a group out of rotation by hand (true) or
// lets it back (false). It applies to the peer everywhere it appears.
func (r *Router) SetPeerDisabled(upstream, addr string, disabled bool) error {
	g := r.table.Load().upstreams[upstream]
	if g == nil {
		return fmt.Errorf("%w: upstream %q", ErrNoSuchPeer, upstream)
	}
	for i, p := range g.cfg.Peers {
		if p.Addr == addr {
			g.records[i].SetDisabled(disabled)
			return nil
		}
	}
	return fmt.Errorf("%w: %q in upstream %q", ErrNoSuchPeer, addr, upstream)
}

// routeMatch is a Session's routing decision.
type routeMatch struct {
	entry *routeEntry
	tried lb.Tried
}

// Route matches s against the current table and applies the route's and
// group's limits and retry settings to s. It returns ErrNoRoute when
// nothing matches.
func (r *Router) Route(s *Session) error {
	e, ok := r.table.Load().routes.Match(s.Req.Host, s.Req.Path())
	if !ok {
		return ErrNoRoute
	}
	ent := e.Target
	s.match = routeMatch{entry: ent}
	s.Route = ent.cfg.Name
	if u := ent.cfg.Upgrades; u != nil {
		s.Upgrades = u
	}
	s.Cache = ent.cfg.Cache
	if n := ent.cfg.MaxBodyBytes; n > 0 {
		s.MaxBodyBytes = n
	}
	g := &ent.group.cfg
	switch n := g.Retries; {
	case n > 0:
		s.MaxRetries = n
	case n < 0:
		s.MaxRetries = 0
	}
	s.RetryTimeout, s.RetryOnStatus = g.RetryTimeout, g.RetryOnStatus
	if g.ReplayBufferBytes > 0 {
		s.ReplayBufferBytes = g.ReplayBufferBytes
	}
	return nil
}

// ErrNoHealthyPeer is returned by Router.Peer when every peer of the group
// is unhealthy (503).
var ErrNoHealthyPeer = &Error{Kind: KindNoHealthyPeer, Source: Internal, Err: errors.New("no healthy peer")}

// Peer picks a peer of the matched route's group with the group's policy;
// on a retry it avoids peers already tried when another is healthy. The
// engine reports the attempt's outcome to the peer's health record.
func (r *Router) Peer(s *Session) (*Peer, error) {
	e := s.match.entry
	if e == nil {
		if err := r.Route(s); err != nil {
			return nil, err
		}
		e = s.match.entry
	}
	g := e.group
	key := g.cfg.HashKey.extract(s)
	var i int
	var ok bool
	if s.Retries > 0 {
		i, ok = g.selector.SelectExcluding(key, s.match.tried)
	}
	if !ok {
		i, ok = g.selector.Select(key)
	}
	if !ok && g.cfg.TryUnhealthy {
		i, ok = g.selector.SelectAny(key)
	}
	if !ok {
		return nil, ErrNoHealthyPeer
	}
	s.match.tried.Add(i)
	rec := g.records[i]
	rec.State().InFlight.Add(1)
	s.attempt = attemptTrack{rec: rec, passive: g.cfg.Passive}
	return g.cfg.Peers[i], nil
}

// HasOtherPeer reports whether a retry of s, after an attempt on peer,
// would be given a peer of another identity: a healthy peer of the
// group, not tried yet, that is neither peer nor one of s.Tried. Peer's
// retry pick (SelectExcluding) takes one when there is one, and comes
// back to a tried peer only when there is none. It is false for a group
// of one peer, or of one healthy peer, where a request at the peer's
// ConnLimit waits in its queue rather than spend a retry to come back.
func (r *Router) HasOtherPeer(s *Session, peer *Peer) bool {
	e := s.match.entry
	if e == nil {
		return true // not routed here: cannot tell
	}
	g := e.group
	busy := peer.poolKey()
	for i, p := range g.cfg.Peers {
		if s.match.tried.Has(i) || !g.records[i].State().Healthy() {
			continue
		}
		if k := p.poolKey(); k != busy && !triedKey(s, k) {
			return true
		}
	}
	return false
}

// RouterApp is a ready App that routes with a Router: RequestFilter matches
// the route (404 when none), UpstreamPeer picks the peer.
type RouterApp struct {
	Router *Router
}

var (
	_ App[struct{}]           = RouterApp{}
	_ RequestFilter[struct{}] = RouterApp{}
	_ HasOtherPeer[struct{}]  = RouterApp{}
)

// NewCtx returns the empty per-request context.
func (RouterApp) NewCtx() struct{} { return struct{}{} }

// RequestFilter matches the route.
func (a RouterApp) RequestFilter(s *Session, _ struct{}) (bool, error) {
	return false, a.Router.Route(s)
}

// UpstreamPeer picks the peer.
func (a RouterApp) UpstreamPeer(s *Session, _ struct{}) (*Peer, error) { return a.Router.Peer(s) }

// HasOtherPeer tells the engine whether a peer at its ConnLimit has
// another to fail over to (Router.HasOtherPeer).
func (a RouterApp) HasOtherPeer(s *Session, peer *Peer, _ struct{}) bool {
	return a.Router.HasOtherPeer(s, peer)
}
