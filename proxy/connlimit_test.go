package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/proxy/health"
)

func TestConnLimitValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lim   ConnLimit
		field string // "" for valid
	}{
		{"zero", ConnLimit{}, ""},
		{"cap", ConnLimit{Max: 8}, ""},
		{"cap and queue", ConnLimit{Max: 8, Queue: 100, QueueTimeout: 5 * time.Second}, ""},
		{"no queue", ConnLimit{Max: 8, Queue: -1}, ""},
		{"negative max", ConnLimit{Max: -1}, "Max"},
		{"queue below -1", ConnLimit{Max: 8, Queue: -2}, "Queue"},
		{"negative timeout", ConnLimit{Max: 8, QueueTimeout: -time.Second}, "QueueTimeout"},
		{"timeout too long", ConnLimit{Max: 8, QueueTimeout: 2 * MaxQueueTimeout}, "QueueTimeout"},
		{"queue without cap", ConnLimit{Queue: 10}, "Queue"},
		{"timeout without cap", ConnLimit{QueueTimeout: time.Second}, "QueueTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.lim.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate = %v, want a FieldError for %s", err, tc.field)
			}
		})
	}
}

// TestUpstreamConfigRefusesNegativeMaxConns: Router.Build (and so the
// node's validation before replication, which calls the same code)
// refuses a group whose peers have a negative cap, naming the field.
func TestUpstreamConfigRefusesNegativeMaxConns(t *testing.T) {
	t.Parallel()
	u := UpstreamConfig{Name: "up", Peers: []*Peer{{Addr: "127.0.0.1:1", Conns: ConnLimit{Max: -3}}}}
	err := CheckTable([]UpstreamConfig{u}, []RouteConfig{{Upstream: "up"}})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "Peers[0].Conns.Max" || !strings.Contains(fe.Reason, "negative") {
		t.Fatalf("CheckTable = %v, want Peers[0].Conns.Max refused as negative", err)
	}
}

// heldOrigin is an HTTP/1.1 origin whose handler blocks until released,
// counting requests and the connections open at once.
type heldOrigin struct {
	connCounter
	peer    *Peer
	release chan struct{}
	once    sync.Once
	served  atomic.Int64
}

func startHeldOrigin(t *testing.T, name string, h2c bool) *heldOrigin {
	o := &heldOrigin{release: make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.served.Add(1)
		if r.URL.Path == "/hold" {
			<-o.release
		}
		io.WriteString(w, name)
	}))
	srv.Config.ConnState = o.connState
	if h2c {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { o.unblock() })
	o.peer = &Peer{Addr: srv.Listener.Addr().String()}
	if h2c {
		o.peer.Protocol = H2C
	}
	return o
}

func (o *heldOrigin) unblock() { o.once.Do(func() { close(o.release) }) }

// getAsync sends GET url in the background; the result comes on the
// channel.
type getResult struct {
	status int
	body   string
	err    error
}

func getAsync(c *http.Client, url string) <-chan getResult {
	req, _ := http.NewRequest("GET", url, nil)
	return doAsync(c, req)
}

// doAsync sends req with c and delivers the result on the channel.
func doAsync(c *http.Client, req *http.Request) <-chan getResult {
	ch := make(chan getResult, 1) // one result, never blocks the sender
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			ch <- getResult{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- getResult{status: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

// TestMaxConnsQueues: with max_conns 1 on the only peer, a second request
// waits while the first holds the connection and is sent when it is
// freed, over HTTP/1.1 and HTTP/2 alike; the origin never sees two at once
// and the slot is free afterwards. With no other peer to go to, the
// second waits on its first attempt: it spends no retry, and counts as
// waited, not failed_over (it did both before).
func TestMaxConnsQueues(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		name := "h1"
		if h2c {
			name = "h2c"
		}
		t.Run(name, func(t *testing.T) {
			o := startHeldOrigin(t, "a", h2c)
			o.peer.Conns = ConnLimit{Max: 1, QueueTimeout: time.Minute}
			var logged logtest.Buffer
			cfg := Config{AccessLog: slog.New(slog.NewJSONHandler(&logged, nil))}
			p := startProxy(t, routerFor(t, o.peer), cfg, ListenerConfig{Name: "http"})
			c := h1Client()
			first := getAsync(c, "http://"+p.addr+"/hold")
			waitFor(t, 5*time.Second, "the first request at the origin", func() bool { return o.served.Load() == 1 })
			second := getAsync(c, "http://"+p.addr+"/quick")
			key := o.peer.poolKey()
			waitFor(t, 5*time.Second, "the second request queued", func() bool {
				ps := p.srv.slots.of(key)
				ps.mu.Lock()
				defer ps.mu.Unlock()
				return len(ps.waiters) == 1
			})
			if n := o.served.Load(); n != 1 {
				t.Fatalf("origin saw %d requests while the cap of 1 was held", n)
			}
			o.unblock()
			for i, ch := range []<-chan getResult{first, second} {
				r := <-ch
				if r.err != nil || r.status != 200 || r.body != "a" {
					t.Fatalf("request %d: %d %q %v", i, r.status, r.body, r.err)
				}
			}
			if _, peak := o.counts(); peak != 1 {
				t.Errorf("origin had %d connections open at once, want 1", peak)
			}
			// The client may have read the whole response before the
			// proxy's exchange ended and freed its slot.
			waitFor(t, 5*time.Second, "every slot free after both requests ended", func() bool { return p.srv.slots.active(key) == 0 })
			if w := counterValue(p.srv.slots.waited); w != 1 {
				t.Errorf("waited counter %v, want 1", w)
			}
			checkNoFailover(t, p.srv.slots, p.srv.metrics, &logged)
		})
	}
}

// checkNoFailover checks that no request failed over from a peer at its
// cap: the failed_over and retries counters are 0, and so is every
// access log record's retries.
func checkNoFailover(t *testing.T, slots *connSlots, m *metrics, logged *logtest.Buffer) {
	t.Helper()
	if v := counterValue(slots.skipped); v != 0 {
		t.Errorf("failed_over counter %v with no other peer to go to, want 0", v)
	}
	if v := counterValue(m.retries); v != 0 {
		t.Errorf("retries counter %v, want 0", v)
	}
	waitFor(t, 5*time.Second, "both access log records", func() bool { return strings.Count(logged.String(), "\n") >= 2 })
	for _, line := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
		var rec struct {
			Path    string
			Retries int
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("access log %q: %v", line, err)
		}
		if rec.Retries != 0 {
			t.Errorf("access log: %s logged %d retries, want 0", rec.Path, rec.Retries)
		}
	}
}

// TestMaxConnsOneHealthyPeerQueues: in a group of two whose other peer
// is out of rotation, a request at the healthy peer's cap waits in its
// queue on its first attempt, as with one peer: nothing fails over, no
// retry is spent, and the disabled peer gets nothing.
func TestMaxConnsOneHealthyPeerQueues(t *testing.T) {
	a := startHeldOrigin(t, "a", false)
	b := startHeldOrigin(t, "b", false)
	for _, o := range []*heldOrigin{a, b} {
		o.peer.Conns = ConnLimit{Max: 1, QueueTimeout: time.Minute}
	}
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: []*Peer{a.peer, b.peer}}},
		[]RouteConfig{{Host: "*", Upstream: "up"}}, "t")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	if err := r.SetPeerDisabled("up", b.peer.Addr, true); err != nil {
		t.Fatal(err)
	}
	var logged logtest.Buffer
	cfg := Config{AccessLog: slog.New(slog.NewJSONHandler(&logged, nil))}
	p := startProxy(t, RouterApp{Router: r}, cfg, ListenerConfig{Name: "http"})
	c := h1Client()
	first := getAsync(c, "http://"+p.addr+"/hold")
	waitFor(t, 5*time.Second, "the first request at a", func() bool { return a.served.Load() == 1 })
	second := getAsync(c, "http://"+p.addr+"/quick")
	waitFor(t, 5*time.Second, "the second request queued", func() bool { return queued(p.srv.slots, a.peer) == 1 })
	a.unblock()
	for i, ch := range []<-chan getResult{first, second} {
		if r := <-ch; r.err != nil || r.status != 200 || r.body != "a" {
			t.Fatalf("request %d: %d %q %v, want 200 from a", i, r.status, r.body, r.err)
		}
	}
	if n := b.served.Load(); n != 0 {
		t.Errorf("the disabled peer served %d requests", n)
	}
	checkNoFailover(t, p.srv.slots, p.srv.metrics, &logged)
}

// queued returns how many requests wait in peer's queue.
func queued(cs *connSlots, peer *Peer) int {
	ps := cs.of(peer.poolKey())
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.waiters)
}

// TestMaxConnsRefuses503: the only peer at its cap, a request that cannot
// wait (queue -1) or waits in vain (queue timeout) gets 503, and the peer
// is not charged a failure for it.
func TestMaxConnsRefuses503(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  ConnLimit
	}{
		{"queue none", ConnLimit{Max: 1, Queue: -1}},
		{"queue timeout", ConnLimit{Max: 1, QueueTimeout: 20 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startHeldOrigin(t, "a", false)
			o.peer.Conns = tc.lim
			r := newTestRouter(t)
			tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: []*Peer{o.peer}, Passive: health.Passive{MaxFails: 1}}},
				[]RouteConfig{{Host: "*", Upstream: "up"}}, "t")
			if err != nil {
				t.Fatal(err)
			}
			r.Swap(tbl)
			p := startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http"})
			c := h1Client()
			first := getAsync(c, "http://"+p.addr+"/hold")
			waitFor(t, 5*time.Second, "the first request at the origin", func() bool { return o.served.Load() == 1 })
			resp, body := mustGet(t, c, "http://"+p.addr+"/quick")
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("second request: %d %q, want 503", resp.StatusCode, body)
			}
			if n := o.served.Load(); n != 1 {
				t.Fatalf("origin saw %d requests past a cap of 1", n)
			}
			if !r.Table().upstreams["up"].records[0].State().Healthy() {
				t.Fatal("a peer at its cap was ejected by passive health")
			}
			if st := r.Table().Upstreams()[0].Peers[0]; st.MaxConns != 1 || st.InFlight != 1 {
				t.Errorf("status of the peer at its cap: max_conns %d, in_flight %d; want 1 and 1", st.MaxConns, st.InFlight)
			}
			if v := counterValue(p.srv.slots.refused); v < 1 {
				t.Errorf("refused counter %v, want at least 1", v)
			}
			o.unblock()
			if r := <-first; r.err != nil || r.status != 200 {
				t.Fatalf("first request: %d %v", r.status, r.err)
			}
		})
	}
}

// TestMaxConnsFailsOver: a request whose peer is at its cap goes to
// another peer of the group at once, without waiting in the queue.
func TestMaxConnsFailsOver(t *testing.T) {
	a := startHeldOrigin(t, "a", false)
	b := startHeldOrigin(t, "b", false)
	for _, o := range []*heldOrigin{a, b} {
		o.peer.Conns = ConnLimit{Max: 1, QueueTimeout: time.Minute}
	}
	hk, err := ParseHashKey("header:X-Key")
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{{Name: "up", Policy: "ketama", HashKey: hk, Peers: []*Peer{a.peer, b.peer}}},
		[]RouteConfig{{Host: "*", Upstream: "up"}}, "t")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	p := startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http"})
	c := h1Client()
	get := func(path string) <-chan getResult {
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		req.Header.Set("X-Key", "same")
		return doAsync(c, req)
	}
	first := get("/hold")
	waitFor(t, 5*time.Second, "the first request at an origin", func() bool { return a.served.Load()+b.served.Load() == 1 })
	holder, other := "a", "b"
	if b.served.Load() == 1 {
		holder, other = "b", "a"
	}
	second := <-get("/quick") // same key, same peer first: at its cap
	if second.err != nil || second.status != 200 || second.body != other {
		t.Fatalf("second request: %d %q %v, want 200 from %s (the peer not at its cap)", second.status, second.body, second.err, other)
	}
	if v := counterValue(p.srv.slots.skipped); v != 1 {
		t.Errorf("failed_over counter %v, want 1", v)
	}
	a.unblock()
	b.unblock()
	if r := <-first; r.err != nil || r.body != holder {
		t.Fatalf("first request: %q %v, want %s", r.body, r.err, holder)
	}
}

// BenchmarkProxyH1MaxConns is BenchmarkProxyH1 with the peer capped
// (max_conns 64, never reached): the cost of taking and freeing a slot.
func BenchmarkProxyH1MaxConns(b *testing.B) {
	origin := startRawOrigin(b, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+string(make([]byte, 100)))
	benchProxyH1Peer(b, &Peer{Addr: origin, Conns: ConnLimit{Max: 64}})
}

// TestMaxConnsTunnelHoldsSlot: an upgraded WebSocket tunnel holds its
// upstream connection, and so its slot, until it closes: at max_conns 1 a
// plain request meanwhile is refused, and the slot is free once the
// tunnel ends.
func TestMaxConnsTunnelHoldsSlot(t *testing.T) {
	origin := startOrigin(t, originH1, nil, wsEcho(nil))
	origin.Conns = ConnLimit{Max: 1, Queue: -1}
	p := startProxy(t, routerFor(t, origin), Config{Retries: -1}, ListenerConfig{Name: "http"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws := wsDial(ctx, t, "ws://"+p.addr+"/", wsClient(nil))
	key := origin.poolKey()
	if n := p.srv.slots.active(key); n != 1 {
		t.Fatalf("%d slots in use with the tunnel open, want 1", n)
	}
	if resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("request beside the tunnel: %d %q, want 503", resp.StatusCode, body)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, "the tunnel's slot freed", func() bool { return p.srv.slots.active(key) == 0 })
}

// TestMaxConnsWaiterLeaves: a client that goes away while its request
// waits in the queue leaves it, holding nothing: after the holder ends,
// no slot is in use and nobody waits.
func TestMaxConnsWaiterLeaves(t *testing.T) {
	o := startHeldOrigin(t, "a", false)
	o.peer.Conns = ConnLimit{Max: 1, QueueTimeout: time.Minute}
	p := startProxy(t, routerFor(t, o.peer), Config{Retries: -1}, ListenerConfig{Name: "h2c", H2C: true})
	c := h2cClient()
	first := getAsync(c, "http://"+p.addr+"/hold")
	waitFor(t, 5*time.Second, "the first request at the origin", func() bool { return o.served.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.addr+"/quick", nil)
	second := make(chan error, 1) // one result
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		second <- err
	}()
	ps := p.srv.slots.of(o.peer.poolKey())
	waiting := func() int {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		return len(ps.waiters)
	}
	waitFor(t, 5*time.Second, "the second request queued", func() bool { return waiting() == 1 })
	cancel() // the client resets its stream
	if err := <-second; err == nil {
		t.Fatal("the canceled request succeeded")
	}
	waitFor(t, 5*time.Second, "the canceled request out of the queue", func() bool { return waiting() == 0 })
	o.unblock()
	if r := <-first; r.err != nil || r.status != 200 {
		t.Fatalf("first request: %d %v", r.status, r.err)
	}
	waitFor(t, 5*time.Second, "every slot free", func() bool { return p.srv.slots.active(o.peer.poolKey()) == 0 })
	if n := o.served.Load(); n != 1 {
		t.Fatalf("origin saw %d requests; the canceled one must not reach it", n)
	}
}
