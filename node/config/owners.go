package config

import (
	"errors"
	"regexp"
	"strings"

	"github.com/pingora-go/pingora-go/internal/errjoin"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/proxy/health"
	"github.com/pingora-go/pingora-go/proxy/route"
	"github.com/pingora-go/pingora-go/ratelimit"
)

// The cluster document's rules live in the packages that own its types
// (issue 13): proxy (groups, routes, cache, protocols, hash keys), proxy/lb
// (policies, weights), proxy/route (host patterns, path prefixes),
// proxy/health (checks, passive ejection) and ratelimit (rules). This file
// translates the document into those types, once, for both validation
// and node's build, and turns the owners' errors into field paths of the
// document. What is left in this package's validate methods is what only
// the document has: names and references between its parts, duplicates,
// and the presence of a block.

// ProxyUpstream translates u into the proxy's type, with every peer. The
// peers have no CA pool: the CA file is read by the node that builds the
// table (a node-local input; see node's build).
func (u *Upstream) ProxyUpstream() (proxy.UpstreamConfig, error) {
	var e errs
	uc := u.translate(&e, "")
	return uc, e.err()
}

// translate is ProxyUpstream, adding what does not parse to e under p.
func (u *Upstream) translate(e *errs, p string) proxy.UpstreamConfig {
	proto, err := proxy.ParseProtocol(u.Protocol)
	if err != nil {
		e.add(joinPath(p, "protocol"), "%q is not one of %s", u.Protocol, strings.Join(proxy.Protocols(), ", "))
	}
	hk, err := proxy.ParseHashKey(u.HashKey)
	if err != nil {
		e.add(joinPath(p, "hash_key"), "%s", strings.TrimPrefix(err.Error(), "proxy: "))
	}
	uc := proxy.UpstreamConfig{
		Name: u.Name, Policy: u.LB, HashKey: hk, Retries: u.Retries, RetryTimeout: u.RetryTimeout,
		RetryOnStatus: u.RetryOnStatus, ReplayBufferBytes: u.ReplayBufferBytes, TryUnhealthy: u.TryUnhealthy,
	}
	if h := u.HealthCheck; h != nil {
		lo, hi, err := health.ParseStatusRange(h.ExpectedStatus)
		if err != nil {
			e.add(joinPath(p, "health_check.expected_status"), "%v", err)
		}
		uc.HealthCheck = &health.Check{Type: h.Type, Path: h.Path, Host: h.Host, StatusMin: lo, StatusMax: hi,
			Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall}
	}
	if ps := u.Passive; ps != nil {
		uc.Passive = health.Passive{MaxFails: ps.MaxFails, CoolOff: ps.CoolOff, MaxCoolOff: ps.MaxCoolOff}
	}
	t := u.Timeouts
	conns := proxy.ConnLimit{Max: u.MaxConns, Queue: u.Queue, QueueTimeout: u.QueueTimeout}
	for _, peer := range u.Peers {
		pp := &proxy.Peer{Addr: peer.Addr, Protocol: proto, Weight: peer.Weight, Group: u.Name, Conns: conns,
			Timeouts: proxy.UpstreamTimeouts{Connect: t.Connect, TLSHandshake: t.TLSHandshake,
				ResponseHeader: t.ResponseHeader, ReadIdle: t.ReadIdle, WriteIdle: t.WriteIdle}}
		if u.TLS != nil {
			pp.TLS, pp.SNI, pp.InsecureSkipVerify = true, u.TLS.SNI, u.TLS.InsecureSkipVerify
		}
		uc.Peers = append(uc.Peers, pp)
	}
	return uc
}

// upstreamField names a field of proxy.UpstreamConfig in the document:
// the timeouts and the connection cap, which the proxy keeps per peer,
// are the group's here.
func upstreamField(f string) string {
	switch {
	case f == "Policy":
		return "lb"
	case f == "HealthCheck.StatusMin" || f == "HealthCheck.StatusMax":
		return "health_check.expected_status"
	case peerTimeouts.MatchString(f):
		return "timeouts." + snake(peerTimeouts.ReplaceAllString(f, ""))
	case peerConns.MatchString(f):
		if f = peerConns.ReplaceAllString(f, ""); f == "Max" {
			return "max_conns"
		}
		return snake(f)
	}
	return snake(f)
}

var (
	peerTimeouts = regexp.MustCompile(`^Peers\[\d+\]\.Timeouts\.`)
	peerConns    = regexp.MustCompile(`^Peers\[\d+\]\.Conns\.`)
)

// ProxyRoute translates r into the proxy's type. A cache goes to the
// proxy's default store; node puts a shared route's in the cluster tier.
func (r *Route) ProxyRoute() proxy.RouteConfig {
	rc := proxy.RouteConfig{Host: r.Host, PathPrefix: r.PathPrefix, CaseInsensitive: r.CaseInsensitive, Upstream: r.Upstream, MaxBodyBytes: r.MaxBodyBytes, Upgrades: r.Upgrade}
	if c := r.Cache; c != nil && c.Enabled {
		rc.Cache = c.proxyCache()
	}
	return rc
}

func (c *RouteCache) proxyCache() *proxy.CacheConfig {
	return &proxy.CacheConfig{
		MaxObjectBytes:      c.MaxObjectBytes,
		Key:                 proxy.CacheKeySpec{Headers: c.Key.Headers, Cookies: c.Key.Cookies, Query: c.Key.Query},
		StatusName:          c.StatusHeader,
		LockTimeout:         c.LockTimeout,
		DefaultStaleIfError: c.DefaultStaleIfError,
	}
}

// routeField names a field of proxy.RouteConfig in the document.
func routeField(f string) string {
	switch {
	case f == "Cache.StatusName":
		return "cache.status_header"
	case strings.HasPrefix(f, "Upgrades["):
		return "upgrade" + strings.TrimPrefix(f, "Upgrades")
	}
	return snake(f)
}

// Rule translates r into the rate limiter's type. Its path prefix is in
// the form the proxy's paths are matched in (route.MatchPrefix), as the
// node hands the limiter each request's route.MatchPath.
func (r *RateLimit) Rule() ratelimit.Rule {
	return ratelimit.Rule{
		Name: r.Name, Key: r.Key, Limit: r.Limit, Period: r.Period, Burst: r.Burst,
		Match:     ratelimit.Match{Route: r.Match.Route, Host: r.Match.Host, PathPrefix: route.MatchPrefix(r.Match.PathPrefix), CaseInsensitive: r.Match.CaseInsensitive, Methods: r.Match.Methods},
		Algorithm: ratelimit.Algorithm(r.Algorithm), Scope: ratelimit.Scope(r.Scope), OnExceed: ratelimit.OnExceed(r.OnExceed),
		MaxDelay: r.MaxDelay, Fields: r.Headers,
	}
}

// ruleField names a field of ratelimit.Rule in the document.
func ruleField(f string) string {
	if f == "Fields" {
		return "headers"
	}
	return snake(f)
}

// fieldReason is what the owners' field errors (proxy.FieldError,
// health.FieldError, ratelimit.FieldError) have in common.
type fieldReason interface {
	FieldReason() (field, reason string)
}

// owner adds the errors of an owner's Validate under p: a field error at
// the field named by name (the owner's Go name in, the document's key
// out), any other at p itself. The same path and reason are added once
// (the proxy checks the group's timeouts once per peer).
func (e *errs) owner(p string, err error, name func(string) string) {
	for _, le := range errjoin.Leaves(err) {
		path, msg := p, le.Error()
		var fr fieldReason
		if errors.As(le, &fr) {
			f, reason := fr.FieldReason()
			path, msg = joinPath(p, name(f)), reason
		}
		e.addOnce(path, msg)
	}
}

// snake turns a Go field path into the document's: "Key.Headers[1]" is
// "key.headers[1]", "TLSHandshake" "tls_handshake".
func snake(goPath string) string {
	var b strings.Builder
	for _, seg := range strings.Split(goPath, ".") {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if c >= 'A' && c <= 'Z' {
				prevLower := i > 0 && (seg[i-1] >= 'a' && seg[i-1] <= 'z' || seg[i-1] >= '0' && seg[i-1] <= '9')
				nextLower := i > 0 && i+1 < len(seg) && seg[i+1] >= 'a' && seg[i+1] <= 'z' && seg[i-1] >= 'A' && seg[i-1] <= 'Z'
				if prevLower || nextLower {
					b.WriteByte('_')
				}
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

func joinPath(p, field string) string {
	if p == "" {
		return field
	}
	return p + "." + field
}

// err returns the collected errors as *Errors, or nil; for callers with
// no document to take lines from.
func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	return &Errors{List: e.list}
}

func (e *errs) addOnce(path, msg string) {
	for _, fe := range e.list {
		if fe.Path == path && fe.Msg == msg {
			return
		}
	}
	e.list = append(e.list, FieldError{Path: path, Msg: msg})
}
