package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pingora-go/pingora-go/internal/asciifold"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/proxy/health"
	"github.com/pingora-go/pingora-go/proxy/lb"
	"github.com/pingora-go/pingora-go/proxy/route"

	"go.yaml.in/yaml/v3"
)

// Cluster is the cluster config: upstream groups, the routes to them, and
// rate limits. It is the document the cluster replicates; every node
// applies it.
type Cluster struct {
	Upstreams  []Upstream  `yaml:"upstreams" json:"upstreams"`
	Routes     []Route     `yaml:"routes" json:"routes"`
	RateLimits []RateLimit `yaml:"rate_limits" json:"rate_limits,omitempty"`
}

// Upstream is a group of peers.
type Upstream struct {
	// Name is how routes refer to the group (required, unique).
	Name string `yaml:"name" json:"name"`
	// Peers are the group's servers (at least one).
	Peers []Peer `yaml:"peers" json:"peers"`
	// Protocol is http1, h2 (over TLS) or h2c (default http1).
	Protocol string `yaml:"protocol" json:"protocol,omitempty"`
	// TLS enables TLS to http1 peers and sets verification for h2 peers.
	TLS *UpstreamTLS `yaml:"tls" json:"tls,omitempty"`
	// Timeouts override the engine's upstream timeouts.
	Timeouts Timeouts `yaml:"timeouts" json:"timeouts,omitzero"`
	// LB is the selection policy: round_robin, random, least_conn, p2c,
	// ketama or fnv (default round_robin).
	LB string `yaml:"lb" json:"lb,omitempty"`
	// HashKey is what ketama and fnv hash: uri, path, client_ip,
	// header:NAME, cookie:NAME or query:NAME (default uri).
	HashKey string `yaml:"hash_key" json:"hash_key,omitempty"`
	// Retries caps extra attempts on other peers (default: engine's, 2; -1: none).
	Retries int `yaml:"retries" json:"retries,omitempty"`
	// RetryTimeout stops new attempts this long after the request arrived
	// (default 0: no bound beyond retries).
	RetryTimeout time.Duration `yaml:"retry_timeout" json:"retry_timeout,omitempty"`
	// RetryOnStatus lists upstream statuses retried on another peer, like
	// nginx's proxy_next_upstream http_502 (default none).
	RetryOnStatus []int `yaml:"retry_on_status" json:"retry_on_status,omitempty"`
	// ReplayBufferBytes is how much of a request body is kept for a replay
	// (default 65536).
	ReplayBufferBytes int `yaml:"replay_buffer_bytes" json:"replay_buffer_bytes,omitempty"`
	// TryUnhealthy sends requests to unhealthy peers when none is healthy,
	// instead of answering 503 (default false).
	TryUnhealthy bool `yaml:"try_unhealthy" json:"try_unhealthy,omitempty"`
	// MaxConns caps the connections a node has in use to each peer (over
	// HTTP/2, the streams in flight), as nginx's max_conns; a request over
	// it fails over to another peer, or waits in the peer's queue, or gets
	// 503 (proxy.ConnLimit) (default 0: no cap).
	MaxConns int `yaml:"max_conns" json:"max_conns,omitempty"`
	// Queue is how many requests may wait for a connection of a peer at
	// max_conns; -1: none wait (default: as many as max_conns).
	Queue int `yaml:"queue" json:"queue,omitempty"`
	// QueueTimeout is how long a request waits in a peer's queue before it
	// fails over or gets 503 (default 1s, at most 1m).
	QueueTimeout time.Duration `yaml:"queue_timeout" json:"queue_timeout,omitempty"`
	// HealthCheck enables active checks of every peer (default: none).
	HealthCheck *HealthCheck `yaml:"health_check" json:"health_check,omitempty"`
	// Passive ejects a peer after consecutive proxy failures (default: off).
	Passive *Passive `yaml:"passive" json:"passive,omitempty"`
}

// HealthCheck is an active health check.
type HealthCheck struct {
	// Type is tcp, http or https (default tcp).
	Type string `yaml:"type" json:"type,omitempty"`
	// Path is the HTTP request path (default /).
	Path string `yaml:"path" json:"path,omitempty"`
	// Host is the HTTP Host header (default: the peer address).
	Host string `yaml:"host" json:"host,omitempty"`
	// ExpectedStatus is the range of statuses that count as up, "200-399"
	// or a single "204" (default 200-399).
	ExpectedStatus string `yaml:"expected_status" json:"expected_status,omitempty"`
	// Interval between checks (default 5s, at least 100ms).
	Interval time.Duration `yaml:"interval" json:"interval,omitempty"`
	// Timeout of one check (default 2s).
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Rise is how many successes in a row mark a peer up (default 2).
	Rise int `yaml:"rise" json:"rise,omitempty"`
	// Fall is how many failures in a row mark a peer down (default 3).
	Fall int `yaml:"fall" json:"fall,omitempty"`
}

// StatusRange parses ExpectedStatus (health.ParseStatusRange).
func (h *HealthCheck) StatusRange() (lo, hi int, err error) {
	return health.ParseStatusRange(h.ExpectedStatus)
}

// Passive is passive health: ejection after consecutive proxy failures.
type Passive struct {
	// MaxFails is how many failures in a row eject a peer (required, >= 1).
	MaxFails int `yaml:"max_fails" json:"max_fails"`
	// CoolOff is the first ejection's length; it doubles on repeat (default 10s).
	CoolOff time.Duration `yaml:"cool_off" json:"cool_off,omitempty"`
	// MaxCoolOff caps the doubling (default 5m).
	MaxCoolOff time.Duration `yaml:"max_cool_off" json:"max_cool_off,omitempty"`
}

// Peer is one server of a group.
type Peer struct {
	// Addr is host:port (required).
	Addr string `yaml:"addr" json:"addr"`
	// Weight is the peer's share (1 to 10000; default 1).
	Weight int `yaml:"weight" json:"weight,omitempty"`
}

// UpstreamTLS configures TLS to a group's peers.
type UpstreamTLS struct {
	// SNI is the server name sent and verified (default: the peer's host).
	SNI string `yaml:"sni" json:"sni,omitempty"`
	// CA is a PEM file of the CAs that verify the peers (default: system roots).
	CA string `yaml:"ca" json:"ca,omitempty"`
	// InsecureSkipVerify disables verification (default false; tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" json:"insecure_skip_verify,omitempty"`
}

// Timeouts override upstream timeouts (zero: engine default).
type Timeouts struct {
	Connect        time.Duration `yaml:"connect" json:"connect,omitempty"`
	TLSHandshake   time.Duration `yaml:"tls_handshake" json:"tls_handshake,omitempty"`
	ResponseHeader time.Duration `yaml:"response_header" json:"response_header,omitempty"`
	ReadIdle       time.Duration `yaml:"read_idle" json:"read_idle,omitempty"`
	WriteIdle      time.Duration `yaml:"write_idle" json:"write_idle,omitempty"`
}

// Route sends requests matching Host and PathPrefix to an upstream group.
type Route struct {
	// Host is a name, "*.name" or "*" (default "*": any host).
	Host string `yaml:"host" json:"host,omitempty"`
	// PathPrefix is the path prefix (default "/").
	PathPrefix string `yaml:"path_prefix" json:"path_prefix,omitempty"`
	// CaseInsensitive matches PathPrefix without regard to the case of
	// ASCII letters, for origins that serve "/ADMIN" as "/admin" (IIS, a
	// case-insensitive file system); default false, as Envoy's
	// case_sensitive: true.
	CaseInsensitive bool `yaml:"case_insensitive" json:"case_insensitive,omitempty"`
	// Upstream names the group (required).
	Upstream string `yaml:"upstream" json:"upstream"`
	// MaxBodyBytes caps request bodies on the route (default 0: node's limit).
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes,omitempty"`
	// Upgrade lists the protocols an HTTP/1.1 Upgrade may switch to on the
	// route, such as websocket; any other Upgrade is served as a plain
	// request without its upgrade headers. h2c (and h2, HTTP) is never
	// tunnelled and refused here (default [websocket]; [] allows none).
	Upgrade []string `yaml:"upgrade" json:"upgrade,omitzero"`
	// Cache turns the HTTP cache on for the route (default: none).
	Cache *RouteCache `yaml:"cache" json:"cache,omitempty"`
}

// ParseCluster parses and validates a cluster config. file names it in
// errors ("" for a request body).
func ParseCluster(file string, data []byte) (*Cluster, error) {
	c, _, err := parseCluster(file, data)
	return c, err
}

// ParseNewCluster is ParseCluster for a document about to be written (an
// admin PUT, a forwarded write, a rollback, a seed, config apply's own
// check, a node's cluster_config file), held to rules that came after
// versions already committed: a committed version is applied with
// ParseCluster, so that a node upgraded to a stricter build still applies
// what the cluster wrote before (a version it refused would leave it with
// no config at all after a restart). Today: a whole-number field given a
// number with a fraction (weight: 1.5 was truncated to 1).
func ParseNewCluster(file string, data []byte) (*Cluster, error) {
	c, root, err := parseCluster(file, data)
	if err != nil {
		return nil, err
	}
	if err := wholeNumbers(file, root, c); err != nil {
		return nil, err
	}
	return c, nil
}

func parseCluster(file string, data []byte) (*Cluster, *yaml.Node, error) {
	var c Cluster
	root, err := decode(file, data, &c)
	if err != nil {
		return nil, nil, err
	}
	if err := controlChars(file, root); err != nil {
		return nil, nil, err
	}
	var e errs
	c.validate(&e)
	zeroWeights(root, &e)
	if err := e.result(file, root); err != nil {
		return nil, nil, err
	}
	return &c, root, nil
}

// controlChars refuses a key or value that holds a control character
// (written as a YAML or JSON escape: the parser refuses them raw). No
// field needs one, and names, hosts and paths are printed by the CLI, the
// logs and /metrics: "\e[2J" in an upstream name reached the terminal of
// whoever ran pingora-node status.
func controlChars(file string, root *yaml.Node) error {
	var out *Errors
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch {
		case n == nil || n.Kind == yaml.AliasNode: // an alias's node is walked where it is defined
		case n.Kind == yaml.ScalarNode:
			if strings.IndexFunc(n.Value, unicode.IsControl) >= 0 {
				if out == nil {
					out = &Errors{File: file}
				}
				out.List = append(out.List, FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("%q holds a control character", n.Value)})
			}
		case n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				walk(k, path)
				walk(n.Content[i+1], strings.TrimPrefix(path+"."+k.Value, "."))
			}
		case n.Kind == yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		default:
			for _, c := range n.Content {
				walk(c, path)
			}
		}
	}
	walk(root, "")
	if out == nil {
		return nil
	}
	return out
}

// zeroWeights refuses a peer's weight written as 0. The field's zero value
// means the default, 1, so a document that leaves weight out is fine; but
// an operator who writes "weight: 0" means to drain the peer, as in
// HAProxy, and silently sending it a full share is the opposite.
func zeroWeights(root *yaml.Node, e *errs) {
	doc := root
	if doc != nil && doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	for i, u := range seqOf(valueOf(doc, "upstreams")) {
		for j, p := range seqOf(valueOf(u, "peers")) {
			if w := valueOf(p, "weight"); w != nil && w.Kind == yaml.ScalarNode {
				if v, err := strconv.ParseInt(w.Value, 0, 64); err == nil && v == 0 {
					e.add(fmt.Sprintf("upstreams[%d].peers[%d].weight", i, j),
						"0 is not between 1 and %d: to stop sending a peer requests, disable it (pingora-node peer disable UPSTREAM ADDR) or remove it", lb.MaxWeight)
				}
			}
		}
	}
}

// valueOf returns the value of key in mapping node n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// seqOf returns the items of sequence node n (none for another kind).
func seqOf(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

// RoutesNothing says why c would send no request anywhere ("" when it
// routes some): a document with no routes, or no upstreams, makes every
// node answer 404 to every request. Writers refuse such a document unless
// the operator says it is meant (issue 12).
func (c *Cluster) RoutesNothing() string {
	switch {
	case len(c.Upstreams) == 0 && len(c.Routes) == 0:
		return "the document has no upstreams and no routes: every request would get 404"
	case len(c.Routes) == 0:
		return "the document has no routes: every request would get 404"
	case len(c.Upstreams) == 0:
		return "the document has no upstreams: every request would get 404"
	}
	return ""
}

// Same reports whether a and b hold the same values: documents that
// differ only in layout, comments, key order, YAML versus JSON, or a value
// left out versus spelled out at its documented default (host: "*",
// weight: 1), are the same.
func Same(a, b *Cluster) bool {
	ja, errA := a.canonical()
	jb, errB := b.canonical()
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// canonical is c as JSON with every default filled in, an absent list and
// an empty one alike.
func (c *Cluster) canonical() ([]byte, error) {
	n := Cluster{Upstreams: []Upstream{}, Routes: []Route{}, RateLimits: canonicalRateLimits(c.RateLimits)}
	for _, r := range c.Routes {
		r.Host, r.PathPrefix = route.PatternKey(r.Host), defaultStr(r.PathPrefix, "/")
		n.Routes = append(n.Routes, r)
	}
	for _, u := range c.Upstreams {
		u.Peers = append([]Peer(nil), u.Peers...)
		for i := range u.Peers {
			u.Peers[i].Weight = max(u.Peers[i].Weight, 1)
		}
		u.Protocol, u.LB, u.HashKey = defaultStr(u.Protocol, proxy.HTTP1.String()), defaultStr(u.LB, lb.DefaultPolicy), defaultStr(u.HashKey, "uri")
		u.ReplayBufferBytes, u.Retries = defaultInt(u.ReplayBufferBytes, 64<<10), defaultInt(u.Retries, 2)
		if u.MaxConns > 0 {
			u.Queue, u.QueueTimeout = defaultInt(u.Queue, u.MaxConns), defaultDur(u.QueueTimeout, proxy.DefaultQueueTimeout)
		}
		if h := u.HealthCheck; h != nil {
			d := *h
			d.Type, d.Path, d.ExpectedStatus = defaultStr(d.Type, "tcp"), defaultStr(d.Path, "/"), defaultStr(d.ExpectedStatus, "200-399")
			d.Interval, d.Timeout = defaultDur(d.Interval, 5*time.Second), defaultDur(d.Timeout, 2*time.Second)
			d.Rise, d.Fall = defaultInt(d.Rise, 2), defaultInt(d.Fall, 3)
			u.HealthCheck = &d
		}
		if p := u.Passive; p != nil {
			d := *p
			d.CoolOff, d.MaxCoolOff = defaultDur(d.CoolOff, 10*time.Second), defaultDur(d.MaxCoolOff, 5*time.Minute)
			u.Passive = &d
		}
		n.Upstreams = append(n.Upstreams, u)
	}
	return json.Marshal(&n)
}

func defaultInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func defaultDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Hash returns a short digest of a document's bytes, to tell versions apart.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

func (c *Cluster) validate(e *errs) {
	names := map[string]int{}
	for i, u := range c.Upstreams {
		p := fmt.Sprintf("upstreams[%d]", i)
		if u.Name == "" {
			e.add(p+".name", "required")
		} else if j, dup := names[u.Name]; dup {
			e.add(p+".name", "%q is also the name of upstreams[%d]", u.Name, j)
		} else {
			names[u.Name] = i
		}
		u.validate(e, p)
	}
	routes := map[string]int{}
	folded := map[string]int{} // by the prefix's lower case: the first route
	routeNames := map[string]bool{}
	for i, r := range c.Routes {
		routeNames[r.Upstream] = true
		p := fmt.Sprintf("routes[%d]", i)
		if _, ok := names[r.Upstream]; !ok && r.Upstream != "" {
			e.add(p+".upstream", "no upstream is named %q", r.Upstream)
		}
		r.validate(e, p)
		key := route.PatternKey(r.Host) + " " + defaultStr(r.PathPrefix, "/")
		if j, dup := routes[key]; dup {
			e.add(p, "same host and path_prefix as routes[%d]", j)
		} else if j, dup := folded[asciifold.Lower(key)]; dup && (r.CaseInsensitive || c.Routes[j].CaseInsensitive) {
			e.add(p, "path_prefix differs from routes[%d]'s only in case, and one of them is case_insensitive: a path would match both", j)
		}
		routes[key] = i
		if _, ok := folded[asciifold.Lower(key)]; !ok {
			folded[asciifold.Lower(key)] = i
		}
	}
	c.validateRateLimits(e, routeNames)
}

// validate checks the route's own fields, by the rules of proxy
// (RouteConfig.Validate); validate of Cluster checks what needs the others
// (the upstream's name, duplicate routes). A cache block is checked also
// while enabled is false, so turning it on later cannot fail.
func (r *Route) validate(e *errs, p string) {
	if r.Upstream == "" {
		e.add(p+".upstream", "required")
	}
	rc := r.ProxyRoute()
	if c := r.Cache; c != nil {
		if c.Shared && !c.Enabled {
			e.add(p+".cache.shared", "needs enabled: true (a route that does not cache shares nothing)")
		}
		rc.Cache = c.proxyCache()
	}
	e.owner(p, rc.Validate(), routeField)
}

// validate checks the group's own fields: the peers' addresses here (a
// peer is host:port, named once), the rest by the rules of proxy,
// proxy/lb and proxy/health on the group translated (translate).
func (u *Upstream) validate(e *errs, p string) {
	if len(u.Peers) == 0 {
		e.add(p+".peers", "at least one peer is required")
	}
	seen := map[string]int{}
	for i, peer := range u.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", p, i)
		if _, err := strconv.Atoi(peer.Addr); err == nil {
			e.add(pp+".addr", "%q is a port alone: a peer is \"HOST:%s\"", peer.Addr, peer.Addr)
		} else if err := checkHostPort(peer.Addr); err != nil {
			e.add(pp+".addr", "%v", err)
		} else if strings.HasSuffix(peer.Addr, ":0") || strings.HasPrefix(peer.Addr, ":") {
			e.add(pp+".addr", "%q: a peer needs a host and a non-zero port", peer.Addr)
		}
		if j, dup := seen[peer.Addr]; dup {
			e.add(pp+".addr", "%q is also peers[%d]", peer.Addr, j)
		}
		seen[peer.Addr] = i
	}
	if u.Protocol == proxy.H2C.String() && u.TLS != nil {
		e.add(p+".tls", "h2c is cleartext; use protocol h2 for HTTP/2 over TLS")
	}
	if ps := u.Passive; ps != nil && ps.MaxFails == 0 {
		e.add(p+".passive.max_fails", "must be at least 1")
	}
	uc := u.translate(e, p)
	e.owner(p, uc.Validate(), upstreamField)
}

func defaultStr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
