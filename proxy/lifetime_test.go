package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora-go/proxy/h2"
)

// TestRevalidated304MergedBeforePooled: a stale response the origin
// revalidated with a 304 takes the 304's fields, read from the upstream
// connection's response head; the connection went back to the pool (drain)
// before they were merged, and another request that took it in between
// read its own response into that head. Its fields, a Set-Cookie among
// them, were stored with the revalidated response and served to every
// later client (and with the two requests in parallel, the merge's map
// iteration raced the other request's parse: a fatal concurrent map
// access). The other request runs in the pool's afterPut hook, at the
// moment the 304's connection becomes idle.
func TestRevalidated304MergedBeforePooled(t *testing.T) {
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/other" {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Set-Cookie", "session=other-client")
			w.Header().Set("X-Seen", "other")
			io.WriteString(w, "other")
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", `"t"`)
		w.Header().Set("X-Seen", fmt.Sprint(n))
		if r.Header.Get("If-None-Match") == `"t"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "body")
	})
	c := h1Client()
	if _, body := s.do(t, c, http.MethodGet, "/a", nil); body != "body" {
		t.Fatalf("first response body %q", body)
	}
	s.fc.Advance(61 * time.Second)
	var armed atomic.Bool
	armed.Store(true)
	other := h1Client()
	ran := false
	s.srv.pool.afterPut = func(uc *upConn) {
		if !armed.CompareAndSwap(true, false) {
			return
		}
		ran = true
		if n := s.srv.pool.idleCount(uc.key); n != 1 {
			t.Errorf("%d idle connections when the 304's was pooled, want 1 (the other request must take it)", n)
		}
		resp, body := s.do(t, other, http.MethodGet, "/other", nil)
		if body != "other" || resp.Header.Get("X-Seen") != "other" {
			t.Errorf("the other request: body %q, X-Seen %q", body, resp.Header.Get("X-Seen"))
		}
	}
	resp, body := s.do(t, c, http.MethodGet, "/a", nil)
	if !ran {
		t.Fatal("the revalidation's connection never went back to the pool")
	}
	check := func(step string, resp *http.Response, body string) {
		t.Helper()
		if body != "body" {
			t.Errorf("%s: body %q, want the stored one", step, body)
		}
		if got := resp.Header.Get("X-Seen"); got != "2" {
			t.Errorf("%s: X-Seen %q, want the 304's \"2\"", step, got)
		}
		if got := resp.Header.Values("Set-Cookie"); len(got) > 0 {
			t.Errorf("%s: Set-Cookie %q: another client's response field", step, got)
		}
	}
	check("revalidated", resp, body)
	s.fc.Advance(10 * time.Second)
	resp, body = s.do(t, c, http.MethodGet, "/a", nil)
	if got := cacheStatusOf(resp); !strings.HasPrefix(got, "hit") {
		t.Fatalf("third request: Cache-Status %q, want a hit", got)
	}
	check("hit after the revalidation", resp, body)
}

// holdConn is an origin's socket under its TLS that can hold what TLS
// writes and send it in one write: two records in one segment, which the
// reader's TLS then reads from the socket together.
type holdConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (h *holdConn) Write(b []byte) (int, error) {
	if h.hold {
		h.buf = append(h.buf, b...)
		return len(b), nil
	}
	return h.Conn.Write(b)
}

func (h *holdConn) flush() error {
	h.hold = false
	_, err := h.Conn.Write(h.buf)
	h.buf = nil
	return err
}

// TestTLSUpstreamStrayBytesNotPooled: an HTTPS upstream that sends bytes
// after the response it owed (a second response) in a record of their
// own, in the same segment, leaves them in the connection's TLS buffers,
// read off the socket with the response: the pool's peek at the socket
// saw nothing, and the next request to take the connection, another
// client's, got them as its answer. The connection is not reused.
func TestTLSUpstreamStrayBytesNotPooled(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, "origin.test", "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var first atomic.Bool
	first.Store(true)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				hc := &holdConn{Conn: nc}
				tc := tls.Server(hc, &tls.Config{Certificates: []tls.Certificate{cert}})
				br := bufio.NewReader(tc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if first.CompareAndSwap(true, false) {
						hc.hold = true
						io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
						io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
						if hc.flush() != nil {
							return
						}
						continue
					}
					body := "fresh" + req.URL.Path
					fmt.Fprintf(tc, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	peer := &Peer{Addr: ln.Addr().String(), RootCAs: ca.pool, SNI: "origin.test", TLS: true}
	p := startProxy(t, routerFor(t, peer), Config{}, ListenerConfig{Name: "http"})
	if _, body := mustGet(t, h1Client(), "http://"+p.addr+"/a"); body != "first" {
		t.Fatalf("first response %q", body)
	}
	waitFor(t, 5*time.Second, "the connection back in the pool", func() bool { return p.srv.pool.idleCount(peer.poolKey()) == 1 })
	if _, body := mustGet(t, h1Client(), "http://"+p.addr+"/b"); body != "fresh/b" {
		t.Fatalf("another client's response %q, want \"fresh/b\": the bytes the upstream sent after the first response", body)
	}
	// A connection whose TLS holds nothing more is reused as before.
	waitFor(t, 5*time.Second, "the second connection back in the pool", func() bool { return p.srv.pool.idleCount(peer.poolKey()) == 1 })
	if _, body := mustGet(t, h1Client(), "http://"+p.addr+"/c"); body != "fresh/c" {
		t.Fatalf("third response %q", body)
	}
	if reused, created := counterValue(p.srv.metrics.connsReused), counterValue(p.srv.metrics.connsCreated); reused != 1 || created != 2 {
		t.Fatalf("%v connections reused and %v created, want 1 and 2", reused, created)
	}
}

// crossTalkBody is the body the cross-talk origin answers request id
// with: size bytes that name the request all along, so that a piece of
// another request's body anywhere in it shows.
func crossTalkBody(id string, size int) []byte {
	unit := []byte("<" + id + ">")
	b := make([]byte, 0, size+len(unit))
	for len(b) < size {
		b = append(b, unit...)
	}
	return b[:size]
}

var crossTalkSizes = []int{0, 7, 3000, 20 << 10, 40 << 10, 300 << 10}

// TestPooledConnectionsNoCrossTalk is a stress test of the lifetimes of
// connections, buffers and pooled objects: clients over HTTP/1.1 (kept
// alive, and a connection per request) and HTTP/2 send requests at once
// through one proxy to one origin (plain and TLS), with bodies of every
// size (the small ones go out with their head, the large ones through
// splice over plain TCP), request bodies echoed, HEAD requests, and
// clients that leave in the middle of a response. Every response that
// arrives whole must be its own request's: a socket, a buffer or an
// upstream connection that served two requests at once, or went back to
// a pool while in use, mixes them. Run it with -race.
func TestPooledConnectionsNoCrossTalk(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	for _, mode := range []originMode{originH1, originH1TLS} {
		t.Run(map[originMode]string{originH1: "plain", originH1TLS: "tls"}[mode], func(t *testing.T) {
			var ca *testCA
			if mode == originH1TLS {
				ca = newTestCA(t)
			}
			peer := startOrigin(t, mode, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				id := r.Header.Get("X-Id")
				var size int
				fmt.Sscan(r.URL.Query().Get("size"), &size)
				w.Header().Set("X-Id", id)
				if r.Header.Get("X-Close") != "" {
					// The proxy closes this upstream connection after the
					// response: its upConn is recycled (upConnPool).
					w.Header().Set("Connection", "close")
				}
				if r.Method == http.MethodPost {
					b, err := io.ReadAll(r.Body)
					if err != nil {
						return
					}
					w.Header().Set("Content-Length", fmt.Sprint(len(b)))
					w.Write(b)
					return
				}
				w.Header().Set("Content-Length", fmt.Sprint(size))
				if r.Method == http.MethodHead {
					return
				}
				w.Write(crossTalkBody(id, size))
			}))
			p := startProxy(t, routerFor(t, peer), Config{Pool: PoolConfig{MaxIdlePerPeer: 4}}, ListenerConfig{Name: "http", H2C: true})
			clients := map[string]*http.Client{
				"keepalive": h1Client(),
				"perconn":   {Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}, Timeout: 30 * time.Second},
				"h2c":       h2cClient(),
			}
			const workers, perWorker = 12, 25
			errs := make(chan error, workers*perWorker)
			done := make(chan struct{})
			var running atomic.Int32
			running.Store(workers)
			for w := range workers {
				name := []string{"keepalive", "perconn", "h2c"}[w%3]
				c := clients[name]
				go func() {
					defer func() {
						if running.Add(-1) == 0 {
							close(done)
						}
					}()
					for i := range perWorker {
						id := fmt.Sprintf("%s-%d-%d", name, w, i)
						size := crossTalkSizes[(w+i)%len(crossTalkSizes)]
						if err := crossTalkOnce(p.addr, c, id, size, i%7); err != nil {
							errs <- fmt.Errorf("%s (size %d): %w", id, size, err)
						}
					}
				}()
			}
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				t.Fatal("the clients did not finish in 2 minutes")
			}
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// crossTalkOnce sends one request of TestPooledConnectionsNoCrossTalk;
// kind picks the method, whether the client leaves early, and whether the
// origin closes its connection after the response (4 and 5).
func crossTalkOnce(addr string, c *http.Client, id string, size, kind int) error {
	method, body := http.MethodGet, io.Reader(nil)
	switch kind {
	case 1:
		method = http.MethodHead
	case 2:
		method, body = http.MethodPost, bytes.NewReader(crossTalkBody(id, size))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://%s/x?size=%d", addr, size), body)
	if err != nil {
		return err
	}
	req.Header.Set("X-Id", id)
	if kind >= 4 && kind <= 5 {
		req.Header.Set("X-Close", "1") // the origin closes after answering
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if got := resp.Header.Get("X-Id"); resp.StatusCode != http.StatusOK || got != id {
		return fmt.Errorf("status %d, X-Id %q; want 200 and its own", resp.StatusCode, got)
	}
	if kind == 3 && size > 0 { // the client leaves after the first bytes
		_, err := io.ReadFull(resp.Body, make([]byte, 1))
		cancel()
		return err
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	want := crossTalkBody(id, size)
	if method == http.MethodHead {
		want = nil
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		return fmt.Errorf("body of %d bytes differs from the %d expected at byte %d: %.40q", len(got), len(want), i, got[i:])
	}
	return nil
}

// earlyApp answers every request itself, without reading its body.
type earlyApp struct{}

func (earlyApp) NewCtx() struct{} { return struct{}{} }
func (earlyApp) UpstreamPeer(*Session, struct{}) (*Peer, error) {
	return nil, errors.New("earlyApp has no peer")
}
func (earlyApp) RequestFilter(s *Session, _ struct{}) (bool, error) {
	return true, s.Respond(http.StatusOK, nil, []byte("early"))
}

// TestH2ResetAfterSessionPooled: an HTTP/2 stream's reset hook is its
// session's abortUpstream, which cuts the session's upstream head wait.
// The h2 server clears the hook when the handler has returned, after
// serve put the session back in its pool, where another stream, another
// client's, may have taken it: a reset of the first stream in between
// (a client that cancels its request body after an early answer) cut the
// second one's upstream wait. serve clears the hook itself before it
// pools the session. The reset comes in the h2SessionPooled hook, and a
// stand-in upstream wait shows whether it was cut.
func TestH2ResetAfterSessionPooled(t *testing.T) {
	p := startProxy[struct{}](t, earlyApp{}, Config{}, ListenerConfig{Name: "h2c", H2C: true})
	inWindow := make(chan struct{})
	result := make(chan bool, 1) // whether the pooled session's wait was cut
	h2SessionPooled = func(d *h2Downstream, st *h2.Stream) {
		pc, peer := net.Pipe()
		defer pc.Close()
		defer peer.Close()
		stand := &upConn{nc: pc}
		d.sess.upWait.Store(stand)
		close(inWindow)
		select {
		case <-st.Context().Done(): // the client's RST_STREAM failed the stream
		case <-time.After(10 * time.Second):
			t.Error("the stream was not reset")
		}
		st.OnReset(nil) // waits for a hook that runs
		result <- d.sess.upWait.Load() != stand
		d.sess.upWait.Store(nil)
	}
	defer func() { h2SessionPooled = nil }()
	nc := dialTCP(t, p.addr)
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(nc, http2.ClientPreface)
	fr := http2.NewFramer(nc, nc)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, h := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/"}, {":authority", "proxy.test"}} {
		enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The body never ends: the stream stays open after the answer.
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for { // read what the server sends, so that it never waits on us
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	select {
	case <-inWindow:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's session was never pooled")
	}
	if err := fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	if <-result {
		t.Fatal("a reset of a stream whose handler had returned cut the upstream wait of the session it had given back to the pool")
	}
}

// TestUpConnRecycle: a closed upConn goes back to upConnPool with nothing
// of its connection or its last response left, and one an aborted wait
// took never does: abortUpstream may set the read deadline of its
// connection at any time after, which on a recycled upConn would be
// another request's connection.
func TestUpConnRecycle(t *testing.T) {
	newConn := func() *upConn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return newUpConn(a, "peer")
	}
	aborted := newConn()
	aborted.aborted = true
	aborted.close()
	if aborted.reader != nil || aborted.br != nil {
		t.Fatal("an aborted upConn kept its reader or buffers after close")
	}
	for range 100 {
		c := newConn()
		if c == aborted {
			t.Fatal("an aborted upConn was recycled")
		}
		if c.resp.Header == nil { // as ReadResponse makes it
			c.resp.Header = http.Header{}
		}
		c.resp.Header["X-Last"] = []string{"a response's field"}
		c.resp.Status = 200
		c.close()
		if c.nc != nil || c.br != nil || c.bw != nil || c.key != "" || c.rc != nil || c.resp.Status != 0 {
			t.Fatalf("a recycled upConn kept its connection's state: %+v", c)
		}
		if len(c.resp.Header) != 0 {
			t.Fatalf("a recycled upConn kept its last response's fields: %v", c.resp.Header)
		}
		c.close() // a second close is a no-op
	}
}
