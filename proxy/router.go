package proxy

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

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
	// Peers are the group's servers; Peer.Weight weighs them.
	Peers []*Peer
	// Retries caps extra attempts for requests to this group; 0 keeps the
	// server default and -1 disables retries.
	Retries int
	// TryUnhealthy sends requests to unhealthy peers when none is healthy,
	// instead of answering 503 (default false).
	TryUnhealthy bool
}

// RouteConfig sends requests matching Host and PathPrefix to an upstream group.
type RouteConfig struct {
	// Host is a name, "*.name" or "*"/"" for any host.
	Host string
	// PathPrefix is matched against the cleaned request path (default "/").
	PathPrefix string
	// Upstream names the group.
	Upstream string
	// MaxBodyBytes caps request bodies on this route; 0 keeps the server
	// default.
	MaxBodyBytes int64
	// Name labels the route in metrics and logs (default: the upstream name).
	Name string
}

// Table is an immutable routing table built by Router.Build.
type Table struct {
	routes    *route.Table[*routeEntry]
	upstreams map[string]*upstreamGroup
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
	states   []*lb.State
}

// Router routes requests by host and path to upstream groups and picks a
// peer in each with the group's policy. Its Table is swapped atomically;
// a request keeps the table it matched against. Peer health and in-flight
// counts live in the Router and survive table swaps.
type Router struct {
	table  atomic.Pointer[Table]
	mu     sync.Mutex
	states map[string]*lb.State
}

// NewRouter returns a Router with an empty table (every request gets 404).
func NewRouter() *Router {
	r := &Router{states: map[string]*lb.State{}}
	r.table.Store(&Table{routes: mustEmptyTable(), upstreams: map[string]*upstreamGroup{}})
	return r
}

func mustEmptyTable() *route.Table[*routeEntry] {
	t, _ := route.New[*routeEntry](nil)
	return t
}

// State returns the shared health and load state of the peer at addr.
func (r *Router) State(peerKey string) *lb.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.states[peerKey]
	if st == nil {
		st = lb.NewState()
		r.states[peerKey] = st
	}
	return st
}

// Build makes a Table from upstream groups and routes without installing
// it. It fails on unknown upstreams, duplicate names, duplicate routes and
// invalid policies.
func (r *Router) Build(ups []UpstreamConfig, routes []RouteConfig, version string) (*Table, error) {
	t := &Table{upstreams: map[string]*upstreamGroup{}, Version: version}
	for i, u := range ups {
		if u.Name == "" {
			return nil, fmt.Errorf("proxy: upstream %d has no name", i)
		}
		if _, dup := t.upstreams[u.Name]; dup {
			return nil, fmt.Errorf("proxy: duplicate upstream %q", u.Name)
		}
		g, err := r.buildGroup(u)
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
		rules = append(rules, route.Rule[*routeEntry]{Host: rc.Host, PathPrefix: rc.PathPrefix, Target: &routeEntry{cfg: rc, group: g}})
	}
	rt, err := route.New(rules)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	t.routes = rt
	return t, nil
}

func (r *Router) buildGroup(u UpstreamConfig) (*upstreamGroup, error) {
	if len(u.Peers) == 0 {
		return nil, fmt.Errorf("proxy: upstream %q has no peers", u.Name)
	}
	policy := u.Policy
	if policy == "" {
		policy = "round_robin"
	}
	g := &upstreamGroup{cfg: u}
	backends := make([]lb.Backend, len(u.Peers))
	for i, p := range u.Peers {
		if p.Group == "" {
			p.Group = u.Name
		}
		st := r.State(p.poolKey())
		g.states = append(g.states, st)
		backends[i] = lb.Backend{Addr: p.Addr, Weight: p.Weight, State: st}
	}
	sel, err := lb.New(policy, backends, lb.Options{})
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream %q: %w", u.Name, err)
	}
	g.selector = sel
	return g, nil
}

// Swap installs t and returns the previous table.
func (r *Router) Swap(t *Table) *Table { return r.table.Swap(t) }

// Table returns the current table.
func (r *Router) Table() *Table { return r.table.Load() }

// routeMatch is a Session's routing decision.
type routeMatch struct {
	entry *routeEntry
	tried lb.Tried
}

// Route matches s against the current table and applies the route's limits
// and labels to s. It returns ErrNoRoute when nothing matches.
func (r *Router) Route(s *Session) error {
	e, ok := r.table.Load().routes.Match(s.Req.Host, s.Req.Path())
	if !ok {
		return ErrNoRoute
	}
	s.match = routeMatch{entry: e.Target}
	s.Route = e.Target.cfg.Name
	if n := e.Target.cfg.MaxBodyBytes; n > 0 {
		s.MaxBodyBytes = n
	}
	switch n := e.Target.group.cfg.Retries; {
	case n > 0:
		s.MaxRetries = n
	case n < 0:
		s.MaxRetries = 0
	}
	return nil
}

// ErrNoHealthyPeer is returned by Router.Peer when every peer of the group
// is unhealthy (503).
var ErrNoHealthyPeer = &Error{Kind: KindNoHealthyPeer, Source: Internal, Err: errors.New("no healthy peer")}

// Peer picks a peer of the matched route's group with the group's policy;
// on a retry it avoids peers already tried when another is healthy.
func (r *Router) Peer(s *Session) (*Peer, error) {
	e := s.match.entry
	if e == nil {
		if err := r.Route(s); err != nil {
			return nil, err
		}
		e = s.match.entry
	}
	g := e.group
	key := s.Req.URI
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
	st := g.states[i]
	st.InFlight.Add(1)
	s.inflight = st
	return g.cfg.Peers[i], nil
}

// RouterApp is a ready App that routes with a Router: RequestFilter matches
// the route (404 when none), UpstreamPeer picks the peer.
type RouterApp struct {
	Router *Router
}

var (
	_ App[struct{}]           = RouterApp{}
	_ RequestFilter[struct{}] = RouterApp{}
)

// NewCtx returns the empty per-request context.
func (RouterApp) NewCtx() struct{} { return struct{}{} }

// RequestFilter matches the route.
func (a RouterApp) RequestFilter(s *Session, _ struct{}) (bool, error) {
	return false, a.Router.Route(s)
}

// UpstreamPeer picks the peer.
func (a RouterApp) UpstreamPeer(s *Session, _ struct{}) (*Peer, error) { return a.Router.Peer(s) }

// UpstreamStatus describes an upstream group of a Table for status pages.
type UpstreamStatus struct {
	Name     string       `json:"name"`
	Policy   string       `json:"lb"`
	Protocol string       `json:"protocol"`
	Peers    []PeerStatus `json:"peers"`
}

// PeerStatus is one peer's live state.
type PeerStatus struct {
	Addr     string `json:"addr"`
	Weight   int    `json:"weight"`
	Healthy  bool   `json:"healthy"`
	InFlight int64  `json:"in_flight"`
}

// Upstreams lists the table's groups, sorted by name, with live peer state.
func (t *Table) Upstreams() []UpstreamStatus {
	out := make([]UpstreamStatus, 0, len(t.upstreams))
	for _, g := range t.upstreams {
		us := UpstreamStatus{Name: g.cfg.Name, Policy: g.cfg.Policy, Protocol: g.cfg.Peers[0].Protocol.String()}
		if us.Policy == "" {
			us.Policy = "round_robin"
		}
		for i, p := range g.cfg.Peers {
			w := p.Weight
			if w == 0 {
				w = 1
			}
			us.Peers = append(us.Peers, PeerStatus{Addr: p.Addr, Weight: w, Healthy: g.states[i].Healthy(), InFlight: g.states[i].InFlight.Load()})
		}
		out = append(out, us)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Routes returns the number of routes in the table.
func (t *Table) Routes() int { return t.routes.Len() }
