package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// testCA is a throwaway certificate authority for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pingora-go test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a leaf certificate for names (DNS names or IPs).
func (ca *testCA) issue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

type originMode int

const (
	originH1 originMode = iota
	originH1TLS
	originH2TLS
	originH2C
)

// startOrigin serves h on 127.0.0.1 with the given protocol and returns a
// Peer for it.
func startOrigin(t testing.TB, mode originMode, ca *testCA, h http.Handler) *Peer {
	t.Helper()
	switch mode {
	case originH1:
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return &Peer{Addr: srv.Listener.Addr().String()}
	case originH2C:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: h, Protocols: new(http.Protocols)}
		hs.Protocols.SetUnencryptedHTTP2(true)
		hs.Protocols.SetHTTP1(true)
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
		return &Peer{Addr: ln.Addr().String(), Protocol: H2C}
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "origin.test", "127.0.0.1")}}
	srv.EnableHTTP2 = mode == originH2TLS
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p := &Peer{Addr: srv.Listener.Addr().String(), RootCAs: ca.pool, SNI: "origin.test", TLS: true}
	if mode == originH2TLS {
		p.Protocol = H2
	}
	return p
}

// testProxy is a running Server on 127.0.0.1.
type testProxy[C any] struct {
	srv  *Server[C]
	addr string
	done chan error
}

// startProxy serves app on a Listen listener, the node's own.
func startProxy[C any](t testing.TB, app App[C], cfg Config, lc ListenerConfig) *testProxy[C] {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startProxyOn(t, app, cfg, lc, ln)
}

// startProxyOn is startProxy on ln.
func startProxyOn[C any](t testing.TB, app App[C], cfg Config, lc ListenerConfig, ln net.Listener) *testProxy[C] {
	t.Helper()
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if cfg.Downstream.DrainLinger == 0 {
		cfg.Downstream.DrainLinger = 20 * time.Millisecond
	}
	srv, err := New(app, cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	p := &testProxy[C]{srv: srv, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(ln, lc) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-p.done
	})
	return p
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// routerFor returns a RouterApp sending every request to peers.
func routerFor(t testing.TB, peers ...*Peer) RouterApp {
	t.Helper()
	return routeWith(t, RouteConfig{}, peers...)
}

// routeWith is routerFor with one route of settings rc (Host, Upstream
// are filled in).
func routeWith(t testing.TB, rc RouteConfig, peers ...*Peer) RouterApp {
	t.Helper()
	r := newTestRouter(t)
	rc.Host, rc.Upstream = "*", "up"
	tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: peers}}, []RouteConfig{rc}, "test")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	return RouterApp{Router: r}
}

// h1Client is an HTTP/1.1 client for the proxy.
func h1Client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient() *http.Client {
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, n, a)
	}}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// tlsClient speaks HTTPS with ALPN h2 (when h2) or http/1.1.
func tlsClient(pool *x509.CertPool, serverName string, h2 bool) *http.Client {
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName}
	if h2 {
		return &http.Client{Transport: &http2.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, Timeout: 30 * time.Second}
}

func mustGet(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // sleep-ok: polling interval of a condition wait
	}
}

// startProxyServer serves srv on a loopback listener and returns the address.
func startProxyServer[C any](t testing.TB, srv *Server[C]) string {
	t.Helper()
	ln, err := Listen("127.0.0.1:0") // the node's listener, with its own accept
	if err != nil {
		t.Fatal(err)
	}
	return serveListener(t, srv, ln)
}

// serveListener serves srv on ln until the test ends and returns ln's
// address.
func serveListener[C any](t testing.TB, srv *Server[C], ln net.Listener) string {
	done := make(chan struct{})
	go func() {
		srv.Serve(ln, ListenerConfig{Name: "http"})
		close(done)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

type netDialer struct{}

func (netDialer) dial(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}

func newTestRouter(t testing.TB) *Router {
	t.Helper()
	r, err := NewRouter(RouterOptions{Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// rawPeer listens on loopback and runs serve on every accepted connection
// in its own goroutine: an upstream that speaks bytes, not HTTP.
func rawPeer(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}
