package proxy

import (
	"crypto/x509"
	"strings"
	"testing"
)

// TestPeerIdentity: peers equal in address, protocol, TLS settings and
// RootCAsID share a key whatever their pool's address; any difference in
// those fields gives another key, and so does another pool when no
// RootCAsID names it.
func TestPeerIdentity(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	clone := func(p *x509.CertPool) *x509.CertPool { return p.Clone() }
	base := func() *Peer {
		return &Peer{Addr: "127.0.0.1:8443", TLS: true, SNI: "a.test", RootCAs: clone(ca.pool), RootCAsID: "sha256:aa"}
	}
	cases := []struct {
		name string
		edit func(p *Peer)
		same bool
	}{
		{"new pool, same ID", func(p *Peer) {}, true},
		{"weight, group and timeouts", func(p *Peer) { p.Weight, p.Group, p.Timeouts.Connect = 5, "g", 1 }, true},
		{"address", func(p *Peer) { p.Addr = "127.0.0.1:9443" }, false},
		{"protocol", func(p *Peer) { p.Protocol = H2 }, false},
		{"SNI", func(p *Peer) { p.SNI = "b.test" }, false},
		{"no TLS", func(p *Peer) { p.TLS = false }, false},
		{"skip verify", func(p *Peer) { p.InsecureSkipVerify = true }, false},
		{"CA ID", func(p *Peer) { p.RootCAsID = "sha256:bb" }, false},
		{"system roots", func(p *Peer) { p.RootCAs, p.RootCAsID = nil, "" }, false},
		{"no ID: the pool's address", func(p *Peer) { p.RootCAsID = "" }, false},
	}
	want := base().poolKey()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.edit(p)
			if got := p.poolKey(); (got == want) != tc.same {
				t.Fatalf("key %q vs %q: same = %v, want %v", got, want, got == want, tc.same)
			}
		})
	}
	p := &Peer{Addr: "127.0.0.1:8443", TLS: true, RootCAs: other.pool}
	if k := p.poolKey(); !strings.Contains(k, "|pool:0x") || k != p.poolKey() {
		t.Fatalf("unnamed pool key %q", k)
	}
}

// TestRouterNamesEqualPools: Router.Build gives peers whose CA pool has no
// RootCAsID the identity of an equal pool in the live table, so state
// survives a rebuild with fresh pools; a pool with other certificates gets
// another identity.
func TestRouterNamesEqualPools(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	r := newTestRouter(t)
	build := func(pool *x509.CertPool) *Peer {
		t.Helper()
		p := &Peer{Addr: "127.0.0.1:8443", TLS: true, RootCAs: pool}
		tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: []*Peer{p}}}, []RouteConfig{{Upstream: "up"}}, "v")
		if err != nil {
			t.Fatal(err)
		}
		r.Swap(tbl)
		return p
	}
	first := build(ca.pool.Clone()).poolKey()
	for i := range 3 {
		if k := build(ca.pool.Clone()).poolKey(); k != first {
			t.Fatalf("rebuild %d with an equal pool: key %q, want %q", i, k, first)
		}
	}
	if k := build(other.pool.Clone()).poolKey(); k == first {
		t.Fatal("a pool with another CA kept the identity")
	}
	// Names are the Router's own: another Router's first pool (another
	// CA) does not collide with this one's.
	p := &Peer{Addr: "127.0.0.1:8443", TLS: true, RootCAs: other.pool.Clone()}
	if _, err := newTestRouter(t).Build([]UpstreamConfig{{Name: "up", Peers: []*Peer{p}}}, nil, "v"); err != nil {
		t.Fatal(err)
	}
	if p.poolKey() == first {
		t.Fatal("two Routers gave different pools the same identity")
	}
}
