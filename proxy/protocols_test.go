package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestProtocolMatrix proxies requests across every downstream/upstream
// protocol pair the engine supports.
func TestProtocolMatrix(t *testing.T) {
	ca := newTestCA(t)
	origins := map[string]originMode{"h1": originH1, "h1tls": originH1TLS, "h2tls": originH2TLS, "h2c": originH2C}
	wantProto := map[string]string{"h1": "HTTP/1.1", "h1tls": "HTTP/1.1", "h2tls": "HTTP/2.0", "h2c": "HTTP/2.0"}
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	for oname, mode := range origins {
		origin := startOrigin(t, mode, ca, echoHandler())
		app := routerFor(t, origin)
		plain := startProxy(t, app, Config{}, ListenerConfig{Name: "plain", H2C: true})
		secure := startProxy(t, app, Config{}, ListenerConfig{Name: "tls", TLS: certs})
		clients := map[string]struct {
			c     *http.Client
			url   string
			proto string
		}{
			"h1":    {h1Client(), "http://" + plain.addr, "HTTP/1.1"},
			"h2c":   {h2cClient(), "http://" + plain.addr, "HTTP/2.0"},
			"h1tls": {tlsClient(ca.pool, "proxy.test", false), "https://" + secure.addr, "HTTP/1.1"},
			"h2tls": {tlsClient(ca.pool, "proxy.test", true), "https://" + secure.addr, "HTTP/2.0"},
		}
		for cname, cl := range clients {
			t.Run(cname+"->"+oname, func(t *testing.T) {
				resp, body := mustGet(t, cl.c, cl.url+"/a/b?q=1")
				if resp.StatusCode != 200 || body != "GET /a/b?q=1 " {
					t.Fatalf("GET: %d %q", resp.StatusCode, body)
				}
				if resp.Proto != cl.proto {
					t.Fatalf("client got %s, want %s", resp.Proto, cl.proto)
				}
				if got := resp.Header.Get("X-Origin-Proto"); got != wantProto[oname] {
					t.Fatalf("origin saw %s, want %s", got, wantProto[oname])
				}
				if got := resp.Header.Get("X-Origin-Host"); !strings.HasPrefix(got, "127.0.0.1:") && got != "proxy.test" {
					t.Fatalf("origin saw Host %q", got)
				}
				presp, err := cl.c.Post(cl.url+"/p", "text/plain", strings.NewReader(strings.Repeat("x", 100000)))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(presp.Body)
				presp.Body.Close()
				if string(b) != "POST /p "+strings.Repeat("x", 100000) {
					t.Fatalf("POST echo mismatch: %d bytes", len(b))
				}
			})
		}
	}
}

// TestH2ResponseHeadOutlivesPooledUpstream: an HTTP/2 response head is
// encoded after its HTTP/1.1 upstream connection may have gone back to
// the pool (a response whose last bytes came with EOF); it must not read
// header values that the connection's next response overwrote. Each
// response's header names its own body; many streams share few upstream
// connections.
func TestH2ResponseHeadOutlivesPooledUpstream(t *testing.T) {
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.URL.Path)
		w.Header().Set("Content-Length", fmt.Sprint(len(r.URL.Path)))
		io.WriteString(w, r.URL.Path)
	}))
	cfg := Config{}
	cfg.Pool.MaxIdlePerPeer = 2
	p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "h2c", H2C: true})
	c := h2cClient()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				path := fmt.Sprintf("/g%d/%s", g, strings.Repeat("x", i%37))
				resp, err := c.Get("http://" + p.addr + path)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(body) != path || resp.Header.Get("X-Echo") != path {
					errs <- fmt.Errorf("%s: body %q, X-Echo %q, err %v", path, body, resp.Header.Get("X-Echo"), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
