package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
)

// The WebSocket tests put github.com/coder/websocket on both ends of the
// proxy: the tunnel must carry its frames, pings and close codes intact.

const wsMaxMsg = 17 << 20

// wsEcho accepts a WebSocket and echoes every message with its type. A text
// message "close:CODE" makes it close with that code and reason "custom
// reason"; the close a client sends is reported on closed.
func wsEcho(closed chan<- websocket.CloseError) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(wsMaxMsg)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				var ce websocket.CloseError
				if errors.As(err, &ce) && closed != nil {
					closed <- ce
				}
				return
			}
			if typ == websocket.MessageText && bytes.Equal(msg, []byte("close:4001")) {
				c.Close(4001, "custom reason")
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
}

// wsClient returns an HTTP/1.1 client for ws:// or, with a CA, wss:// to
// the proxy's "proxy.test" certificate.
func wsClient(ca *testCA) *http.Client {
	if ca == nil {
		return &http.Client{Transport: &http.Transport{}}
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "proxy.test"},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}}
}

func wsDial(ctx context.Context, t *testing.T, url string, hc *http.Client) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	c.SetReadLimit(wsMaxMsg)
	return c
}

func tunnelsActive[C any](p *testProxy[C]) float64 {
	var m dto.Metric
	p.srv.metrics.tunnels.Write(&m)
	return m.GetGauge().GetValue()
}

func TestWebSocketThroughProxy(t *testing.T) {
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		down  bool // TLS listener
		up    originMode
		wsURL string
	}{
		{"h1-h1", false, originH1, "ws://"},
		{"tls-h1", true, originH1, "wss://"},
		{"h1-tlsh1", false, originH1TLS, "ws://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closed := make(chan websocket.CloseError, 1)
			lc := ListenerConfig{Name: "http"}
			var cca *testCA
			if tc.down {
				lc, cca = ListenerConfig{Name: "https", TLS: certs}, ca
			}
			p := startProxy(t, routerFor(t, startOrigin(t, tc.up, ca, wsEcho(closed))), Config{}, lc)
			url := tc.wsURL + p.addr + "/ws"
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			testWebSocketCases(ctx, t, url, wsClient(cca), closed)
			waitFor(t, 5*time.Second, "pingora_tunnels_active back to 0", func() bool { return tunnelsActive(p) == 0 })
		})
	}
}

func testWebSocketCases(ctx context.Context, t *testing.T, url string, hc *http.Client, closed <-chan websocket.CloseError) {
	c := wsDial(ctx, t, url, hc)
	defer c.CloseNow()
	echo := func(typ websocket.MessageType, msg []byte) {
		t.Helper()
		if err := c.Write(ctx, typ, msg); err != nil {
			t.Fatal(err)
		}
		gt, got, err := c.Read(ctx)
		if err != nil || gt != typ || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes (%v): got %d bytes (%v), %v", len(msg), typ, len(got), gt, err)
		}
	}
	t.Run("text", func(t *testing.T) { echo(websocket.MessageText, []byte("hello, pingora")) })
	t.Run("binary", func(t *testing.T) { echo(websocket.MessageBinary, []byte{0, 1, 2, 0xff, 0xfe}) })
	t.Run("16MiB", func(t *testing.T) {
		big := make([]byte, 16<<20)
		rand.Read(big)
		echo(websocket.MessageBinary, big)
	})
	t.Run("ping_pong", func(t *testing.T) {
		// A pong is read by a concurrent Read, as coder/websocket requires.
		got := make(chan []byte, 1)
		go func() {
			_, b, _ := c.Read(ctx)
			got <- b
		}()
		for range 3 {
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		}
		c.Write(ctx, websocket.MessageText, []byte("after ping"))
		if b := <-got; string(b) != "after ping" {
			t.Fatalf("after pings: %q", b)
		}
	})
	t.Run("server_close_code", func(t *testing.T) {
		c2 := wsDial(ctx, t, url, hc)
		defer c2.CloseNow()
		c2.Write(ctx, websocket.MessageText, []byte("close:4001"))
		_, _, err := c2.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "custom reason" {
			t.Fatalf("got %v, want close 4001 %q", err, "custom reason")
		}
	})
	t.Run("client_close_code", func(t *testing.T) {
		if err := c.Close(4002, "client says bye"); err != nil {
			t.Fatal(err)
		}
		select {
		case ce := <-closed:
			if ce.Code != 4002 || ce.Reason != "client says bye" {
				t.Fatalf("server saw close %d %q", ce.Code, ce.Reason)
			}
		case <-ctx.Done():
			t.Fatal("server never saw the close")
		}
	})
}

// raiseFDLimit lifts the soft open-file limit to the hard one and reports
// whether at least want descriptors are allowed.
func raiseFDLimit(t *testing.T, want uint64) bool {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return false
	}
	if rl.Cur < want && rl.Max > rl.Cur {
		old := rl.Cur
		rl.Cur = rl.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
			t.Cleanup(func() {
				rl.Cur = old
				syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
			})
		}
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur >= want
}

// TestWebSocketManyConns holds 1,000 tunnels open at once, each exchanging
// a message, and watches the tunnels gauge rise to 1,000 and fall to 0.
func TestWebSocketManyConns(t *testing.T) {
	const n = 1000
	// Each tunnel holds four descriptors in this process: client, proxy
	// downstream and upstream, origin.
	if !raiseFDLimit(t, 4*n+500) {
		t.Skipf("open-file limit below %d; raise ulimit -n to run this test", 4*n+500)
	}
	p := startProxy(t, routerFor(t, startOrigin(t, originH1, nil, wsEcho(nil))), Config{}, ListenerConfig{Name: "http"})
	url := "ws://" + p.addr + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	conns := make([]*websocket.Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 64) // bounded dialing, all kept open
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	})
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("dial: %v", err)
	}
	waitFor(t, 10*time.Second, "1000 open tunnels", func() bool { return tunnelsActive(p) == n })
	errs = make(chan error, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte{byte(i), byte(i >> 8), 'w', 's'}
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				errs <- err
				return
			}
			if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, msg) {
				errs <- errors.Join(errors.New("echo mismatch"), err)
				return
			}
			c.CloseNow()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("exchange: %v", err)
	}
	waitFor(t, 10*time.Second, "tunnels gauge back to 0", func() bool { return tunnelsActive(p) == 0 })
}
