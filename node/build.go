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
	"github.com/pingora-go/pingora-go/ratelimit"
)

// A cluster config becomes a routing table and rate-limit rules in two
// places that must agree (issue 13): on every node when a version is
// applied (apply), and before a version is written, as a dry run on the
// node that takes the write (checkCluster). Both translate with tableConfig
// and build with the proxy's and the rate limiter's own code (Router.Build
// and proxy.CheckTable share it; SetRules runs CheckRules), so the dry run
// refuses exactly what an apply would fail on, except node-local inputs.
//
// What is node-local: what a node reads from its own disk or its own
// settings rather than from the document, today an upstream's CA file
// (tls.ca, resolved against the node's config directory). The document is
// the same on every node; a file can be missing on one node and present on
// the others, and the writer cannot tell which is wrong. So the dry run
// does not read CA files: a missing or unreadable one fails the apply on
// the nodes that lack it, which keep their previous version and report it
// in /status, as before. Everything else a build can fail on is a function
// of the document's bytes, so it fails the same on every node and is
// refused before it is written.

// buildEnv is what a build takes from the node: how to find files, and
// the store of shared cache routes. readCA false is the dry run's: CA
// files are node-local and not read.
type buildEnv struct {
	resolve func(string) string
	shared  cache.Store
	readCA  bool
}

// buildTable translates a validated cluster config into a routing table.
// It reads CA files named by the config, so it can fail on one node (a
// missing file) where the dry run passed; the caller then keeps the table
// it has.
func buildTable(r *proxy.Router, c *config.Cluster, version string, env buildEnv) (*proxy.Table, error) {
	ups, routes, err := tableConfig(c, env)
	if err != nil {
		return nil, err
	}
	return r.Build(ups, routes, version)
}

// checkCluster is the dry run of apply: c builds into a table and rules,
// with nothing started, registered or changed, and CA files not read.
func checkCluster(c *config.Cluster) error {
	ups, routes, err := tableConfig(c, buildEnv{resolve: func(p string) string { return p }})
	if err == nil {
		err = proxy.CheckTable(ups, routes)
	}
	if err == nil {
		err = ratelimit.CheckRules(limitRules(c.RateLimits))
	}
	return err
}

// tableConfig translates c into the router's types.
func tableConfig(c *config.Cluster, env buildEnv) ([]proxy.UpstreamConfig, []proxy.RouteConfig, error) {
	ups := make([]proxy.UpstreamConfig, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		uc, err := buildUpstream(u, env)
		if err != nil {
			return nil, nil, err
		}
		ups = append(ups, uc)
	}
	routes := make([]proxy.RouteConfig, 0, len(c.Routes))
	for _, rt := range c.Routes {
		rc := rt.ProxyRoute()
		if rc.Cache != nil && rt.Cache.Shared {
			// A shared route's objects go to the cluster tier (each key's
			// ring owner holds it); the others stay in this node's local
			// tier, the proxy's default store.
			rc.Cache.Store = env.shared
		}
		routes = append(routes, rc)
	}
	return ups, routes, nil
}

func buildUpstream(u config.Upstream, env buildEnv) (proxy.UpstreamConfig, error) {
	uc, err := u.ProxyUpstream()
	if err != nil {
		return proxy.UpstreamConfig{}, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	if !env.readCA {
		return uc, nil
	}
	pool, poolID, err := loadCA(u, env.resolve)
	if err != nil {
		return proxy.UpstreamConfig{}, err
	}
	for _, p := range uc.Peers {
		p.RootCAs = pool
		// The CA file's digest, not the fresh pool's address, names the
		// roots: peer health and pooled connections survive an apply that
		// reads the same file again (issue 11).
		p.RootCAsID = poolID
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
	cfg := proxy.Config{Via: n.Via, CacheStore: local, NoSplice: n.Splice != nil && !*n.Splice}
	d := n.Downstream
	cfg.Downstream = proxy.DownstreamConfig{
		HeaderTimeout:     d.HeaderTimeout,
		KeepAliveTimeout:  d.KeepAliveTimeout,
		ReadIdleTimeout:   d.ReadIdleTimeout,
		WriteIdleTimeout:  d.WriteIdleTimeout,
		TunnelIdleTimeout: d.TunnelIdleTimeout,
		MaxHeaderBytes:    d.MaxHeaderBytes,
		MaxConns:          d.MaxConns,
		MaxConnsPerIP:     d.MaxConnsPerIP,
		MaxBodyBytes:      d.MaxBodyBytes,
		MinSendRate:       minRate(d.MinSendRate),
		MinRecvRate:       minRate(d.MinRecvRate),
		MinRateGrace:      d.MinRateGrace,
	}
	return cfg
}

// minRate maps a node file minimum rate onto the engine's: unset is the
// default (0 there), 0 is off (-1 there).
func minRate(p *int) int {
	switch {
	case p == nil:
		return 0
	case *p == 0:
		return -1
	}
	return *p
}

// listenerConfig builds a listener's engine config, loading certificates.
func listenerConfig(n *config.Node, l config.Listener) (proxy.ListenerConfig, error) {
	lc := proxy.ListenerConfig{Name: l.Name, H2C: l.H2C, DisableH2: l.DisableH2}
	nets, err := l.TrustedPrefixes()
	if err != nil {
		return lc, err
	}
	lc.TrustedProxies = nets
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
