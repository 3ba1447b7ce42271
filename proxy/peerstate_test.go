package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/health"
)

// openConns counts an origin's open client connections.
type openConns struct{ n atomic.Int32 }

func (o *openConns) track(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		o.n.Add(1)
	case http.StateClosed, http.StateHijacked:
		o.n.Add(-1)
	}
}

// countedOrigin serves h over mode (originH1, originH1TLS or originH2TLS)
// and counts its open connections.
func countedOrigin(t testing.TB, mode originMode, ca *testCA, h http.Handler) (string, *openConns) {
	t.Helper()
	conns := &openConns{}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = conns.track
	if mode == originH1 {
		srv.Start()
	} else {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "origin.test", "127.0.0.1")}}
		srv.EnableHTTP2 = mode == originH2TLS
		srv.StartTLS()
	}
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), conns
}

// stateFixture is a proxy with a Router, as node wires them, in front of
// two HTTP/1.1 TLS origins verified with a CA file (tls, and tlsb which the
// operator disables), an HTTP/2 TLS origin, a plain HTTP/1.1 origin and a
// dead TLS peer (ejected). Each apply builds the table from scratch, as
// node does: new Peers and a new CA pool read from the same PEM.
type stateFixture struct {
	t       *testing.T
	caPEM   []byte
	addrs   map[string]string // group -> origin address
	conns   map[string]*openConns
	reg     *prometheus.Registry
	clk     *clock.Fake
	router  *Router
	srv     *Server[struct{}]
	addr    string
	client  *http.Client
	applies int
}

func newStateFixture(t *testing.T) *stateFixture {
	ca := newTestCA(t)
	f := &stateFixture{t: t, addrs: map[string]string{}, conns: map[string]*openConns{}, reg: prometheus.NewRegistry(),
		clk: clock.NewFake(time.Unix(1e9, 0)), client: h1Client()}
	f.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	for name, mode := range map[string]originMode{"tls": originH1TLS, "tlsb": originH1TLS, "h2": originH2TLS, "h1": originH1} {
		f.addrs[name], f.conns[name] = countedOrigin(t, mode, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
	}
	f.addrs["dead"] = deadAddr(t)
	r, err := NewRouter(RouterOptions{Metrics: f.reg, Clock: f.clk, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	f.router = r
	f.apply(fixtureConfig{})
	srv, err := New[struct{}](RouterApp{Router: r}, Config{Metrics: f.reg, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.addr = startProxyServer(t, srv)
	return f
}

// fixtureConfig varies what a config apply changes.
type fixtureConfig struct {
	unrelated bool            // change only fields that are not peer identity
	drop      map[string]bool // groups left out
	noCAID    bool            // leave Peer.RootCAsID empty on every peer
}

func (f *stateFixture) pool() *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(f.caPEM) {
		f.t.Fatal("bad CA PEM")
	}
	return p
}

// caID names the CA as node does: the digest of the PEM file.
func (f *stateFixture) caID() string {
	sum := sha256.Sum256(f.caPEM)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (f *stateFixture) apply(c fixtureConfig) {
	f.t.Helper()
	caID := f.caID()
	if c.noCAID {
		caID = ""
	}
	w, to := 1, UpstreamTimeouts{}
	if c.unrelated {
		w, to = 3, UpstreamTimeouts{Connect: time.Second, ResponseHeader: 7 * time.Second}
	}
	pool := f.pool() // one per upstream group, as node loads it
	tlsPeer := func(name string) *Peer {
		return &Peer{Addr: f.addrs[name], TLS: true, SNI: "origin.test", RootCAs: pool, RootCAsID: caID, Weight: w, Timeouts: to}
	}
	peers := map[string][]*Peer{
		"tls": {tlsPeer("tls"), tlsPeer("tlsb")},
		// No RootCAsID: Router.Build names the pool by its contents.
		"h2":   {{Addr: f.addrs["h2"], Protocol: H2, SNI: "origin.test", RootCAs: f.pool(), Weight: w, Timeouts: to}},
		"h1":   {{Addr: f.addrs["h1"], Weight: w, Timeouts: to}},
		"dead": {{Addr: f.addrs["dead"], TLS: true, RootCAs: f.pool(), RootCAsID: caID}},
	}
	var ups []UpstreamConfig
	var routes []RouteConfig
	for _, name := range []string{"tls", "h2", "h1", "dead"} {
		if c.drop[name] {
			continue
		}
		u := UpstreamConfig{Name: name, Peers: peers[name], Passive: health.Passive{MaxFails: 1, CoolOff: time.Hour}}
		if c.unrelated {
			u.Retries, u.Policy, u.ReplayBufferBytes = 1, "least_conn", 1024
		}
		ups = append(ups, u)
		routes = append(routes, RouteConfig{Host: name + ".test", Upstream: name})
	}
	f.applies++
	tbl, err := f.router.Build(ups, routes, fmt.Sprint(f.applies))
	if err != nil {
		f.t.Fatal(err)
	}
	f.router.Swap(tbl)
}

func (f *stateFixture) get(host string) (int, string) {
	f.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
	req.Host = host
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// peer returns the live status of the peer at addr in group.
func (f *stateFixture) peer(group, addr string) (PeerStatus, bool) {
	for _, u := range f.router.Table().Upstreams() {
		for _, p := range u.Peers {
			if u.Name == group && p.Addr == addr {
				return p, true
			}
		}
	}
	return PeerStatus{}, false
}

// counts is what must stay flat: health records, idle-pool keys, HTTP/2
// transports, metric series, connections dialed and fake-clock timers.
type counts struct {
	records, poolKeys, transports, series, timers int
	dialed                                        float64
}

func (f *stateFixture) counts() counts {
	f.t.Helper()
	fams, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	c := counts{records: f.router.health.Len(), poolKeys: f.srv.pool.idleKeys(), transports: f.srv.h2up.count(), timers: f.clk.Waiters()}
	for _, mf := range fams {
		c.series += len(mf.GetMetric())
	}
	c.dialed = counterValue(f.srv.metrics.connsCreated)
	return c
}

// seriesFor lists the metric series that carry addr as a label value.
func (f *stateFixture) seriesFor(addr string) []string {
	fams, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, mf := range fams {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == addr {
					out = append(out, mf.GetName()+"{"+l.GetName()+"}")
				}
			}
		}
	}
	return out
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// warm takes tlsb out by hand and the dead peer by ejection and serves one
// request per route, so every series and pooled connection exists.
func (f *stateFixture) warm() {
	f.t.Helper()
	if err := f.router.SetPeerDisabled("tls", f.addrs["tlsb"], true); err != nil {
		f.t.Fatal(err)
	}
	for _, g := range []string{"tls", "h2", "h1"} {
		if code, body := f.get(g + ".test"); code != 200 || body != g {
			f.t.Fatalf("%s: %d %q", g, code, body)
		}
	}
	if code, _ := f.get("dead.test"); code != 502 && code != 503 {
		f.t.Fatalf("dead peer: %d", code)
	}
}

func (f *stateFixture) checkHealthKept(when string) {
	f.t.Helper()
	if p, ok := f.peer("tls", f.addrs["tlsb"]); !ok || !p.Disabled || p.Healthy {
		f.t.Fatalf("%s: disabled peer is %+v (found %v)", when, p, ok)
	}
	if p, ok := f.peer("dead", f.addrs["dead"]); !ok || p.Healthy || p.EjectedUntil.IsZero() {
		f.t.Fatalf("%s: ejected peer is %+v (found %v)", when, p, ok)
	}
	for _, g := range []string{"tls", "h2", "h1"} {
		if p, ok := f.peer(g, f.addrs[g]); !ok || !p.Healthy {
			f.t.Fatalf("%s: peer of %s is %+v", when, g, p)
		}
	}
}

// TestApplySameConfig1000Times applies a config 1,000 times, rebuilt from
// scratch each time (new Peers, a new CA pool from the same PEM), with a
// request between applies: the disabled peer stays disabled, the ejected
// one ejected, and health records, pooled connections, HTTP/2 transports,
// metric series, timers and heap stay flat; no connection is dialed again.
func TestApplySameConfig1000Times(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(i int) fixtureConfig
	}{
		{"same config", func(int) fixtureConfig { return fixtureConfig{} }},
		{"unrelated fields change", func(i int) fixtureConfig { return fixtureConfig{unrelated: i%2 == 0} }},
		{"CA pools without an ID", func(int) fixtureConfig { return fixtureConfig{noCAID: true} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newStateFixture(t)
			f.apply(tc.cfg(0))
			f.warm()
			f.apply(tc.cfg(1))
			for _, g := range []string{"tls", "h2", "h1"} {
				f.get(g + ".test")
			}
			f.checkHealthKept("before")
			before, heap := f.counts(), heapAfterGC()
			groups := []string{"tls", "h2", "h1"}
			for i := range 1000 {
				f.apply(tc.cfg(i))
				g := groups[i%len(groups)]
				if code, body := f.get(g + ".test"); code != 200 || body != g {
					t.Fatalf("apply %d: %s answered %d %q", i, g, code, body)
				}
			}
			f.checkHealthKept("after 1,000 applies")
			after, heap2 := f.counts(), heapAfterGC()
			if after != before {
				t.Fatalf("state grew over 1,000 applies:\nbefore %+v\nafter  %+v", before, after)
			}
			// A leak of one pooled TLS connection per apply alone is
			// several MiB; the bound leaves room for GC noise.
			if heap2 > heap+2<<20 {
				t.Fatalf("heap grew from %d to %d bytes over 1,000 applies", heap, heap2)
			}
			t.Logf("%+v; heap %d -> %d bytes", after, heap, heap2)
		})
	}
}

// TestRemovedPeerStateFreed drops the TLS (one of them disabled) and
// HTTP/2 peers from the config: their health records, idle connections,
// HTTP/2 transport and metric series go; a peer that comes back starts
// afresh.
func TestRemovedPeerStateFreed(t *testing.T) {
	f := newStateFixture(t)
	f.warm()
	before := f.counts()
	if before.transports != 1 || before.poolKeys < 2 || before.records != 5 {
		t.Fatalf("warm state %+v", before)
	}
	for _, a := range []string{f.addrs["tls"], f.addrs["h2"], f.addrs["tlsb"]} {
		if len(f.seriesFor(a)) == 0 {
			t.Fatalf("no series for %s before the removal", a)
		}
	}
	tbl, err := f.router.Build([]UpstreamConfig{
		{Name: "h1", Peers: []*Peer{{Addr: f.addrs["h1"]}}},
		{Name: "dead", Peers: []*Peer{{Addr: f.addrs["dead"], TLS: true, RootCAs: f.pool(), RootCAsID: f.caID()}}},
	}, []RouteConfig{{Host: "h1.test", Upstream: "h1"}, {Host: "dead.test", Upstream: "dead"}}, "removed")
	if err != nil {
		t.Fatal(err)
	}
	f.router.Swap(tbl)
	after := f.counts()
	if after.records != 2 || after.transports != 0 || after.poolKeys != before.poolKeys-1 {
		t.Fatalf("after removal %+v, before %+v", after, before)
	}
	if p, ok := f.peer("dead", f.addrs["dead"]); !ok || p.Healthy {
		t.Fatalf("kept dead peer lost its ejection: %+v", p)
	}
	for _, g := range []string{"tls", "h2", "tlsb"} {
		if s := f.seriesFor(f.addrs[g]); len(s) != 0 {
			t.Fatalf("series left for removed peer %s: %v", g, s)
		}
		waitFor(t, 5*time.Second, g+" origin's connections closed", func() bool { return f.conns[g].n.Load() == 0 })
	}
	if f.conns["h1"].n.Load() != 1 {
		t.Fatalf("kept peer's pooled connection: %d open", f.conns["h1"].n.Load())
	}
	f.apply(fixtureConfig{})
	if p, ok := f.peer("tls", f.addrs["tlsb"]); !ok || p.Disabled || !p.Healthy {
		t.Fatalf("peer back in the config: %+v", p)
	}
	if code, body := f.get("tls.test"); code != 200 || body != "tls" {
		t.Fatalf("tls after re-adding: %d %q", code, body)
	}
}

// TestSwapDuringInFlightRequests removes every peer while requests to them
// are in flight, half-way through their bodies: each finishes whole, and
// its connection is then closed, not pooled.
func TestSwapDuringInFlightRequests(t *testing.T) {
	f := newStateFixture(t)
	release := make(chan struct{})
	var entered sync.WaitGroup
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first half,")
		w.(http.Flusher).Flush()
		entered.Done()
		<-release
		io.WriteString(w, "second half")
	})
	ca := newTestCA(t)
	f.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	for name, mode := range map[string]originMode{"tls": originH1TLS, "tlsb": originH1TLS, "h2": originH2TLS, "h1": originH1} {
		f.addrs[name], f.conns[name] = countedOrigin(t, mode, ca, slow)
	}
	f.apply(fixtureConfig{})
	const perGroup = 20
	groups := []string{"tls", "h2", "h1"}
	entered.Add(perGroup * len(groups))
	errs := make(chan error, perGroup*len(groups))
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	for _, g := range groups {
		for range perGroup {
			go func() {
				req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
				req.Host = g + ".test"
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && (resp.StatusCode != 200 || string(b) != "first half,second half") {
					err = fmt.Errorf("%s: %d %q", g, resp.StatusCode, b)
				}
				errs <- err
			}()
		}
	}
	entered.Wait()
	for i := range 50 {
		f.apply(fixtureConfig{drop: map[string]bool{"tls": true, "h2": true, "h1": i%2 == 0}})
	}
	f.apply(fixtureConfig{drop: map[string]bool{"tls": true, "h2": true, "h1": true}})
	close(release)
	for range perGroup * len(groups) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := f.srv.h2up.count(); n != 0 {
		t.Fatalf("%d HTTP/2 transports kept for removed peers", n)
	}
	for _, g := range []string{"tls", "tlsb", "h1"} {
		waitFor(t, 5*time.Second, g+" connections closed after their requests", func() bool { return f.conns[g].n.Load() == 0 })
	}
	if n := f.srv.pool.idleKeys(); n != 0 {
		t.Fatalf("idle pool holds %d keys of removed peers", n)
	}
	if s := strings.Join(f.seriesFor(f.addrs["h1"]), " "); s != "" {
		t.Fatalf("series left for a removed peer: %s", s)
	}
}

// gatedApp is RouterApp (WatchPeers included) with an UpstreamRequestFilter
// that holds each attempt after its peer was chosen from the table.
type gatedApp struct {
	RouterApp
	chosen, resume chan struct{}
}

func (a gatedApp) UpstreamRequestFilter(*Session, *RequestHeader, struct{}) error {
	a.chosen <- struct{}{}
	<-a.resume
	return nil
}

// TestOldTableRequestToDroppedPeer: a request that chose its peer from a
// table, then connects after a swap dropped that peer, is served, and its
// connection closes after it instead of staying pooled.
func TestOldTableRequestToDroppedPeer(t *testing.T) {
	ca := newTestCA(t)
	for name, mode := range map[string]originMode{"h1 over TLS": originH1TLS, "h2": originH2TLS} {
		t.Run(name, func(t *testing.T) {
			addr, conns := countedOrigin(t, mode, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "old") }))
			peer := &Peer{Addr: addr, TLS: true, SNI: "origin.test", RootCAs: ca.pool, RootCAsID: "test-ca"}
			if mode == originH2TLS {
				peer.Protocol = H2
			}
			r := newTestRouter(t)
			tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: []*Peer{peer}}}, []RouteConfig{{Upstream: "up"}}, "v1")
			if err != nil {
				t.Fatal(err)
			}
			r.Swap(tbl)
			app := gatedApp{RouterApp: RouterApp{Router: r}, chosen: make(chan struct{}, 1), resume: make(chan struct{})}
			srv, err := New[struct{}](app, Config{})
			if err != nil {
				t.Fatal(err)
			}
			proxyAddr := startProxyServer(t, srv)
			done := make(chan string, 1)
			go func() {
				resp, err := h1Client().Get("http://" + proxyAddr + "/")
				if err != nil {
					done <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- fmt.Sprint(resp.StatusCode, " ", string(b))
			}()
			<-app.chosen
			empty, err := r.Build(nil, nil, "v2")
			if err != nil {
				t.Fatal(err)
			}
			r.Swap(empty)
			close(app.resume)
			if got := <-done; got != "200 old" {
				t.Fatalf("request of the old table: %s", got)
			}
			waitFor(t, 5*time.Second, "the dropped peer's connection closed", func() bool { return conns.n.Load() == 0 })
			if k, n := srv.pool.idleKeys(), srv.h2up.count(); k != 0 || n != 0 {
				t.Fatalf("kept for a dropped peer: %d pool keys, %d transports", k, n)
			}
		})
	}
}
