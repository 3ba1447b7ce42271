package proxy

import (
	"crypto/x509"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pingora-go/pingora-go/proxy/health"
)

// TestCheckTableAgreesWithBuild (issue 13): CheckTable, the dry run node
// runs before a config is written, refuses what Build refuses, with
// Build's error, because it is Build's code.
func TestCheckTableAgreesWithBuild(t *testing.T) {
	r := newTestRouter(t)
	group := func(mod func(*UpstreamConfig)) []UpstreamConfig {
		u := UpstreamConfig{Name: "web", Peers: []*Peer{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2", Weight: 2}}}
		mod(&u)
		return []UpstreamConfig{u}
	}
	web := []RouteConfig{{Upstream: "web"}}
	for _, tc := range []struct {
		name   string
		ups    []UpstreamConfig
		routes []RouteConfig
		ok     bool
	}{
		{"valid", group(func(*UpstreamConfig) {}), web, true},
		{"ketama with a check", group(func(u *UpstreamConfig) {
			u.Policy, u.HealthCheck = "ketama", &health.Check{Type: "http", Interval: time.Second}
		}), web, true},
		{"no peers", group(func(u *UpstreamConfig) { u.Peers = nil }), web, false},
		{"policy", group(func(u *UpstreamConfig) { u.Policy = "fastest" }), web, false},
		{"weight", group(func(u *UpstreamConfig) { u.Peers[0].Weight = -1 }), web, false},
		{"retries", group(func(u *UpstreamConfig) { u.Retries = MaxRetries + 1 }), web, false},
		{"check", group(func(u *UpstreamConfig) { u.HealthCheck = &health.Check{Interval: time.Millisecond} }), web, false},
		{"passive", group(func(u *UpstreamConfig) { u.Passive.CoolOff = -1 }), web, false},
		{"timeouts", group(func(u *UpstreamConfig) { u.Peers[1].Timeouts.Connect = -1 }), web, false},
		{"unknown upstream", group(func(*UpstreamConfig) {}), []RouteConfig{{Upstream: "api"}}, false},
		{"upgrade", group(func(*UpstreamConfig) {}), []RouteConfig{{Upstream: "web", Upgrades: []string{"h2c"}}}, false},
		{"cache", group(func(*UpstreamConfig) {}), []RouteConfig{{Upstream: "web", Cache: &CacheConfig{LockTimeout: time.Hour}}}, false},
		{"body cap", group(func(*UpstreamConfig) {}), []RouteConfig{{Upstream: "web", MaxBodyBytes: -1}}, false},
		{"host", group(func(*UpstreamConfig) {}), []RouteConfig{{Upstream: "web", Host: "a,b"}}, false},
		{"duplicate route", group(func(*UpstreamConfig) {}), []RouteConfig{{Upstream: "web"}, {Host: "*", Upstream: "web"}}, false},
	} {
		checked := CheckTable(tc.ups, tc.routes)
		_, built := r.Build(tc.ups, tc.routes, "v")
		switch {
		case (checked == nil) != tc.ok:
			t.Errorf("%s: CheckTable %v, want ok %v", tc.name, checked, tc.ok)
		case (checked == nil) != (built == nil) || checked != nil && checked.Error() != built.Error():
			t.Errorf("%s: CheckTable %v, Build %v", tc.name, checked, built)
		}
	}
}

// TestCheckTableHasNoSideEffects: the dry run starts nothing and leaves
// its peers as they were (no group filled in, no identity fixed), so a
// Router that builds from the same peers later names them itself.
func TestCheckTableHasNoSideEffects(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	pool := x509.NewCertPool()
	peers := []*Peer{{Addr: "127.0.0.1:1", TLS: true, RootCAs: pool}, {Addr: "127.0.0.1:2"}}
	ups := []UpstreamConfig{{Name: "web", Policy: "p2c", Peers: peers, HealthCheck: &health.Check{Type: "https", Interval: 100 * time.Millisecond},
		Passive: health.Passive{MaxFails: 1}}}
	if err := CheckTable(ups, []RouteConfig{{Upstream: "web", Cache: &CacheConfig{}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Group != "" || p.key.Load() != nil || p.RootCAsID != "" {
			t.Fatalf("CheckTable changed peer %s: group %q, identity fixed %v, CA id %q", p.Addr, p.Group, p.key.Load() != nil, p.RootCAsID)
		}
	}
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("CheckTable left goroutines: %v", err)
	}
	r := newTestRouter(t)
	_, err := r.Build(ups, nil, "v")
	if err != nil {
		t.Fatal(err)
	}
	if r.health.Len() != 2 || peers[0].Group != "web" || peers[0].key.Load() == nil {
		t.Fatalf("Build: %d records, group %q", r.health.Len(), peers[0].Group)
	}
}
