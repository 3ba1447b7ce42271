package node

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/proxy/health"
)

// buildTable translates a validated cluster config into a routing table.
// It reads CA files named by the config, so it can fail on one node (a
// missing file) where validation passed everywhere; the caller then keeps
// the table it has.
func buildTable(r *proxy.Router, c *config.Cluster, version string, resolve func(string) string, cp *cachePart) (*proxy.Table, error) {
	_, shared := cp.stores()
	ups := make([]proxy.UpstreamConfig, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		uc, err := buildUpstream(u, resolve)
		if err != nil {
			return nil, err
		}
		ups = append(ups, uc)
	}
	routes := make([]proxy.RouteConfig, 0, len(c.Routes))
	for _, rt := range c.Routes {
		routes = append(routes, proxy.RouteConfig{Host: rt.Host, PathPrefix: rt.PathPrefix, Upstream: rt.Upstream,
			MaxBodyBytes: rt.MaxBodyBytes, Upgrades: rt.Upgrade, Cache: routeCache(rt.Cache, shared)})
	}
	return r.Build(ups, routes, version)
}

// routeCache translates a route's cache settings: nil when the route does
// not cache. A shared route's objects go to the cluster tier (shared:
// each key's ring owner holds it); the others stay in this node's local
// tier, the proxy's default store.
func routeCache(c *config.RouteCache, shared cache.Store) *proxy.CacheConfig {
	if c == nil || !c.Enabled {
		return nil
	}
	var store cache.Store
	if c.Shared {
		store = shared
	}
	return &proxy.CacheConfig{
		Store:               store,
		MaxObjectBytes:      c.MaxObjectBytes,
		Key:                 proxy.CacheKeySpec{Headers: c.Key.Headers, Cookies: c.Key.Cookies, Query: c.Key.Query},
		StatusName:          c.StatusHeader,
		LockTimeout:         c.LockTimeout,
		DefaultStaleIfError: c.DefaultStaleIfError,
	}
}

func buildUpstream(u config.Upstream, resolve func(string) string) (proxy.UpstreamConfig, error) {
	proto, err := proxy.ParseProtocol(u.Protocol)
	if err != nil {
		return proxy.UpstreamConfig{}, err
	}
	pool, poolID, err := loadCA(u, resolve)
	if err != nil {
		return proxy.UpstreamConfig{}, err
	}
	hk, err := proxy.ParseHashKey(u.HashKey)
	if err != nil {
		return proxy.UpstreamConfig{}, err
	}
	uc := proxy.UpstreamConfig{
		Name: u.Name, Policy: u.LB, HashKey: hk, Retries: u.Retries, RetryTimeout: u.RetryTimeout,
		RetryOnStatus: u.RetryOnStatus, ReplayBufferBytes: u.ReplayBufferBytes, TryUnhealthy: u.TryUnhealthy,
	}
	if h := u.HealthCheck; h != nil {
		lo, hi, err := h.StatusRange()
		if err != nil {
			return proxy.UpstreamConfig{}, err
		}
		uc.HealthCheck = &health.Check{Type: h.Type, Path: h.Path, Host: h.Host, StatusMin: lo, StatusMax: hi,
			Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall}
	}
	if p := u.Passive; p != nil {
		uc.Passive = health.Passive{MaxFails: p.MaxFails, CoolOff: p.CoolOff, MaxCoolOff: p.MaxCoolOff}
	}
	for _, p := range u.Peers {
		peer := &proxy.Peer{
			Addr:     p.Addr,
			Protocol: proto,
			Weight:   p.Weight,
			Group:    u.Name,
			RootCAs:  pool,
			// The CA file's digest, not the fresh pool's address, names
			// the roots: peer health and pooled connections survive an
			// apply that reads the same file again (issue 11).
			RootCAsID: poolID,
			Timeouts: proxy.UpstreamTimeouts{
				Connect: u.Timeouts.Connect, TLSHandshake: u.Timeouts.TLSHandshake,
				ResponseHeader: u.Timeouts.ResponseHeader, ReadIdle: u.Timeouts.ReadIdle, WriteIdle: u.Timeouts.WriteIdle,
			},
		}
		if u.TLS != nil {
			peer.TLS = true
			peer.SNI = u.TLS.SNI
			peer.InsecureSkipVerify = u.TLS.InsecureSkipVerify
		}
		uc.Peers = append(uc.Peers, peer)
	}
	return uc, nil
}

// loadCA reads the upstream's CA file into a pool and names it by the
// SHA-256 of the file's bytes; no CA file gives a nil pool.
func loadCA(u config.Upstream, resolve func(string) string) (*x509.CertPool, string, error) {
	if u.TLS == nil || u.TLS.CA == "" {
		return nil, "", nil
	}
	pem, err := os.ReadFile(resolve(u.TLS.CA))
	if err != nil {
		return nil, "", fmt.Errorf("upstream %q: read CA: %w", u.Name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, "", fmt.Errorf("upstream %q: CA file %s holds no PEM certificate", u.Name, u.TLS.CA)
	}
	sum := sha256.Sum256(pem)
	return pool, "sha256:" + hex.EncodeToString(sum[:]), nil
}

// proxyConfig translates the node file into the engine's Config, with the
// node's HTTP cache as the default store: the cache part's local tier.
func proxyConfig(n *config.Node, cp *cachePart) proxy.Config {
	local, _ := cp.stores()
	cfg := proxy.Config{Via: n.Via, CacheStore: local}
	d := n.Downstream
	cfg.Downstream = proxy.DownstreamConfig{
		HeaderTimeout:    d.HeaderTimeout,
		KeepAliveTimeout: d.KeepAliveTimeout,
		ReadIdleTimeout:  d.ReadIdleTimeout,
		WriteIdleTimeout: d.WriteIdleTimeout,
		MaxHeaderBytes:   d.MaxHeaderBytes,
		MaxConns:         d.MaxConns,
		MaxBodyBytes:     d.MaxBodyBytes,
	}
	return cfg
}

// listenerConfig builds a listener's engine config, loading certificates.
func listenerConfig(n *config.Node, l config.Listener) (proxy.ListenerConfig, error) {
	lc := proxy.ListenerConfig{Name: l.Name, H2C: l.H2C, DisableH2: l.DisableH2}
	if l.TLS != nil {
		var files []proxy.CertFile
		for _, p := range l.TLS.Pairs(n) {
			files = append(files, proxy.CertFile{CertFile: p.Cert, KeyFile: p.Key})
		}
		store, err := proxy.NewCertStore(files)
		if err != nil {
			return lc, fmt.Errorf("listener %q: %w", l.Name, err)
		}
		lc.TLS = store
	}
	return lc, nil
}
