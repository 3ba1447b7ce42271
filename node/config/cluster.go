package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Cluster is the cluster config: upstream groups and the routes to them.
// It is the document the cluster replicates; every node applies it.
type Cluster struct {
	Upstreams []Upstream `yaml:"upstreams" json:"upstreams"`
	Routes    []Route    `yaml:"routes" json:"routes"`
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
	// Retries caps extra attempts on other peers (default: engine's, 2; -1: none).
	Retries int `yaml:"retries" json:"retries,omitempty"`
	// TryUnhealthy sends requests to unhealthy peers when none is healthy,
	// instead of answering 503 (default false).
	TryUnhealthy bool `yaml:"try_unhealthy" json:"try_unhealthy,omitempty"`
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
	// Upstream names the group (required).
	Upstream string `yaml:"upstream" json:"upstream"`
	// MaxBodyBytes caps request bodies on the route (default 0: node's limit).
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes,omitempty"`
}

// Policies lists the lb values.
var Policies = []string{"round_robin", "random", "least_conn", "p2c", "ketama", "fnv"}

// ParseCluster parses and validates a cluster config. file names it in
// errors ("" for a request body).
func ParseCluster(file string, data []byte) (*Cluster, error) {
	var c Cluster
	root, err := decode(file, data, &c)
	if err != nil {
		return nil, err
	}
	var e errs
	c.validate(&e)
	if err := e.result(file, root); err != nil {
		return nil, err
	}
	return &c, nil
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
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r.Upstream == "" {
			e.add(p+".upstream", "required")
		} else if _, ok := names[r.Upstream]; !ok {
			e.add(p+".upstream", "no upstream is named %q", r.Upstream)
		}
		if err := checkHostPattern(r.Host); err != nil {
			e.add(p+".host", "%v", err)
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			e.add(p+".path_prefix", "%q must start with /", r.PathPrefix)
		}
		if r.MaxBodyBytes < 0 {
			e.add(p+".max_body_bytes", "cannot be negative")
		}
		key := normHost(r.Host) + " " + defaultStr(r.PathPrefix, "/")
		if j, dup := routes[key]; dup {
			e.add(p, "same host and path_prefix as routes[%d]", j)
		}
		routes[key] = i
	}
}

func (u *Upstream) validate(e *errs, p string) {
	if len(u.Peers) == 0 {
		e.add(p+".peers", "at least one peer is required")
	}
	seen := map[string]int{}
	for i, peer := range u.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", p, i)
		if err := checkHostPort(peer.Addr); err != nil {
			e.add(pp+".addr", "%v", err)
		} else if strings.HasSuffix(peer.Addr, ":0") || strings.HasPrefix(peer.Addr, ":") {
			e.add(pp+".addr", "%q: a peer needs a host and a non-zero port", peer.Addr)
		}
		if j, dup := seen[peer.Addr]; dup {
			e.add(pp+".addr", "%q is also peers[%d]", peer.Addr, j)
		}
		seen[peer.Addr] = i
		if peer.Weight < 0 || peer.Weight > 10000 {
			e.add(pp+".weight", "%d is not between 1 and 10000", peer.Weight)
		}
	}
	switch u.Protocol {
	case "", "http1", "h2", "h2c":
	default:
		e.add(p+".protocol", "%q is not one of http1, h2, h2c", u.Protocol)
	}
	if u.Protocol == "h2c" && u.TLS != nil {
		e.add(p+".tls", "h2c is cleartext; use protocol h2 for HTTP/2 over TLS")
	}
	if u.LB != "" && !contains(Policies, u.LB) {
		e.add(p+".lb", "%q is not one of %s", u.LB, strings.Join(Policies, ", "))
	}
	if u.Retries < -1 || u.Retries > 16 {
		e.add(p+".retries", "%d is not between -1 (never) and 16", u.Retries)
	}
	t := u.Timeouts
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"connect", t.Connect}, {"tls_handshake", t.TLSHandshake}, {"response_header", t.ResponseHeader}, {"read_idle", t.ReadIdle}, {"write_idle", t.WriteIdle}} {
		if f.d < 0 {
			e.add(p+".timeouts."+f.name, "cannot be negative")
		}
	}
}

func checkHostPattern(h string) error {
	if h == "" || h == "*" {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") || !validHostname(name) {
		return fmt.Errorf("%q is not a host name, *.name or *", h)
	}
	return nil
}

func normHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" {
		return "*"
	}
	return h
}

func defaultStr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
