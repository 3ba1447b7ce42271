package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/health"
)

// routerWith builds a RouterApp over one group configured by u.
func routerWith(t testing.TB, u UpstreamConfig) RouterApp {
	t.Helper()
	r := newTestRouter(t)
	if u.Name == "" {
		u.Name = "up"
	}
	tbl, err := r.Build([]UpstreamConfig{u}, []RouteConfig{{Host: "*", Upstream: u.Name}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	return RouterApp{Router: r}
}

// resetPeer accepts connections and closes them at once, counting them:
// a peer that dies before answering.
func resetPeer(t testing.TB) (*Peer, *atomic.Int32) {
	var n atomic.Int32
	addr := rawPeer(t, func(c net.Conn) {
		n.Add(1)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	return &Peer{Addr: addr}, &n
}

func namedOrigin(t testing.TB, name string, hits *atomic.Int32) *Peer {
	return startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil {
			hits.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	}))
}

func TestRetryOnDeadPeer(t *testing.T) {
	var hits atomic.Int32
	live := namedOrigin(t, "live", &hits)
	for _, dead := range []*Peer{{Addr: deadAddr(t)}} {
		reset, _ := resetPeer(t)
		app := routerWith(t, UpstreamConfig{Peers: []*Peer{dead, reset, live}, Retries: 2})
		p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
		for i := range 9 {
			resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/")
			if resp.StatusCode != 200 || body != "live" {
				t.Fatalf("request %d: %d %q — the client saw the failure", i, resp.StatusCode, body)
			}
		}
	}
	if hits.Load() != 9 {
		t.Fatalf("live peer served %d, want 9", hits.Load())
	}
}

func TestRetryBudget(t *testing.T) {
	a, na := resetPeer(t)
	b, nb := resetPeer(t)
	c, nc := resetPeer(t)
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{a, b, c}, Retries: 1})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if got := na.Load() + nb.Load() + nc.Load(); got != 2 {
		t.Fatalf("%d attempts, want 2 (1 + 1 retry)", got)
	}
}

// TestStreamedPOSTNotReplayed: a POST whose body was streamed beyond the
// replay buffer is not sent again after the peer dies mid-body.
func TestStreamedPOSTNotReplayed(t *testing.T) {
	var bHits atomic.Int32
	dyingAddr := rawPeer(t, func(c net.Conn) {
		buf := make([]byte, 200<<10)
		io.ReadAtLeast(c, buf, 150<<10) // take part of the body, then die
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	dying := &Peer{Addr: dyingAddr}
	good := namedOrigin(t, "good", &bHits)
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{dying, good}, Retries: 2})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	body := strings.Repeat("x", 1<<20)
	resp, err := h1Client().Post("http://"+p.addr+"/upload", "application/octet-stream", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if bHits.Load() != 0 {
		t.Fatal("a streamed POST was replayed to another peer")
	}
	// A small POST is held in memory whole, so it is replayed.
	resp, err = h1Client().Post("http://"+p.addr+"/small", "text/plain", strings.NewReader("tiny"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "good" {
		t.Fatalf("small POST: %d %q", resp.StatusCode, b)
	}
}

func TestRetryOnStatus(t *testing.T) {
	unavailable := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	good := namedOrigin(t, "good", nil)
	for _, tc := range []struct {
		retryOn []int
		want    []int
	}{{nil, []int{503, 200}}, {[]int{503}, []int{200, 200}}} {
		app := routerWith(t, UpstreamConfig{Peers: []*Peer{unavailable, good}, RetryOnStatus: tc.retryOn})
		p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
		var got []int
		for range 2 {
			resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/")
			got = append(got, resp.StatusCode)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Fatalf("retry_on_status %v: statuses %v, want %v", tc.retryOn, got, tc.want)
		}
	}
	// When every peer answers 503 the last answer is passed on, not a 502.
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{unavailable}, RetryOnStatus: []int{503}})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.StatusCode != 503 || body != "busy\n" {
		t.Fatalf("exhausted: %d %q", resp.StatusCode, body)
	}
}

func TestRetryTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	slow.Timeouts.ResponseHeader = 150 * time.Millisecond
	var goodHits atomic.Int32
	good := namedOrigin(t, "good", &goodHits)
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{slow, good}, RetryOnStatus: []int{504}, RetryTimeout: 100 * time.Millisecond})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.StatusCode != 504 || goodHits.Load() != 0 {
		t.Fatalf("status %d, good hits %d: a retry started after the retry timeout", resp.StatusCode, goodHits.Load())
	}
}

// TestHealthCheckSteersTraffic: an active HTTP check takes a failing peer
// out of rotation and brings it back.
func TestHealthCheckSteersTraffic(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	flaky := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, "flaky")
	}))
	stable := namedOrigin(t, "stable", nil)
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{flaky, stable},
		HealthCheck: &health.Check{Type: "http", Path: "/health", Interval: 100 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	seen := func() map[string]int {
		m := map[string]int{}
		for range 6 {
			_, body := mustGet(t, h1Client(), "http://"+p.addr+"/")
			m[body]++
		}
		return m
	}
	if m := seen(); m["flaky"] == 0 || m["stable"] == 0 {
		t.Fatalf("both peers should serve while healthy: %v", m)
	}
	healthy.Store(false)
	waitFor(t, 5*time.Second, "flaky marked down", func() bool { return !app.Router.Table().upstreams["up"].records[0].State().Healthy() })
	if m := seen(); m["flaky"] != 0 {
		t.Fatalf("unhealthy peer still served: %v", m)
	}
	st := app.Router.Table().Upstreams()[0].Peers[0]
	if st.Healthy || st.ActiveCheck != "down" || !strings.Contains(st.LastError, "status 500") {
		t.Fatalf("status of the down peer: %+v", st)
	}
	healthy.Store(true)
	waitFor(t, 5*time.Second, "flaky back up", func() bool { return app.Router.Table().upstreams["up"].records[0].State().Healthy() })
}

func TestAllUnhealthy503(t *testing.T) {
	a := namedOrigin(t, "a", nil)
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{a}})
	app.Router.SetPeerDisabled("up", a.Addr, true)
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.StatusCode != 503 || body != "503 Service Unavailable\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	try := routerWith(t, UpstreamConfig{Peers: []*Peer{a}, TryUnhealthy: true})
	try.Router.SetPeerDisabled("up", a.Addr, true)
	p2 := startProxy(t, try, Config{}, ListenerConfig{Name: "http"})
	if resp, body := mustGet(t, h1Client(), "http://"+p2.addr+"/"); resp.StatusCode != 200 || body != "a" {
		t.Fatalf("try_unhealthy: %d %q", resp.StatusCode, body)
	}
}

// TestPassiveEjectionAndRecovery: consecutive failures eject a peer; after
// the cool-off it serves again.
func TestPassiveEjectionAndRecovery(t *testing.T) {
	reset, resets := resetPeer(t)
	good := namedOrigin(t, "good", nil)
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{reset, good}, Passive: health.Passive{MaxFails: 2, CoolOff: 300 * time.Millisecond}})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	for range 6 {
		if resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if n := resets.Load(); n != 2 {
		t.Fatalf("the failing peer got %d attempts, want 2 before ejection", n)
	}
	rec := app.Router.Table().upstreams["up"].records[0]
	if rec.State().Healthy() {
		t.Fatal("not ejected")
	}
	waitFor(t, 5*time.Second, "cool-off to end", rec.State().Healthy)
	for range 2 {
		mustGet(t, h1Client(), "http://"+p.addr+"/")
	}
	if n := resets.Load(); n != 3 {
		t.Fatalf("after the cool-off the peer got %d attempts in total, want 3", n)
	}
}

// TestLeastConnAvoidsSlowPeer: with requests stuck on a slow peer,
// least_conn and p2c send new requests to the free one.
func TestLeastConnAvoidsSlowPeer(t *testing.T) {
	for _, policy := range []string{"least_conn", "p2c"} {
		t.Run(policy, func(t *testing.T) {
			releaseSlow, releaseFast := make(chan struct{}), make(chan struct{})
			slow := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-releaseSlow
				io.WriteString(w, "slow")
			}))
			fast := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-releaseFast
				io.WriteString(w, "fast")
			}))
			app := routerWith(t, UpstreamConfig{Peers: []*Peer{slow, fast}, Policy: policy})
			p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
			recs := app.Router.Table().upstreams["up"].records
			slowSt, fastSt := recs[0].State(), recs[1].State()
			// Both peers hold their requests: six concurrent requests spread
			// over them by in-flight count.
			var wg sync.WaitGroup
			for range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if resp, err := h1Client().Get("http://" + p.addr + "/"); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			waitFor(t, 5*time.Second, "six requests in flight", func() bool {
				return slowSt.InFlight.Load()+fastSt.InFlight.Load() == 6
			})
			if slowSt.InFlight.Load() == 0 {
				t.Fatalf("%s put all six requests on one peer", policy)
			}
			// The fast peer drains; the slow one keeps its share.
			close(releaseFast)
			waitFor(t, 5*time.Second, "fast peer drained", func() bool { return fastSt.InFlight.Load() == 0 })
			for range 20 {
				if _, body := mustGet(t, h1Client(), "http://"+p.addr+"/"); body != "fast" {
					t.Fatalf("a request went to the slow peer holding %d", slowSt.InFlight.Load())
				}
			}
			close(releaseSlow)
			wg.Wait()
		})
	}
}

func TestKetamaHashKey(t *testing.T) {
	var peers []*Peer
	for i := range 4 {
		peers = append(peers, namedOrigin(t, fmt.Sprint("p", i), nil))
	}
	hk, _ := ParseHashKey("header:X-User")
	app := routerWith(t, UpstreamConfig{Peers: peers, Policy: "ketama", HashKey: hk})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	owner := map[string]string{}
	for round := range 3 {
		for u := range 20 {
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/r%d", p.addr, round), nil)
			req.Header.Set("X-User", fmt.Sprint("user-", u))
			resp, err := h1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			key := fmt.Sprint(u)
			if prev, ok := owner[key]; ok && prev != string(b) {
				t.Fatalf("user-%d moved from %s to %s", u, prev, b)
			}
			owner[key] = string(b)
		}
	}
	distinct := map[string]bool{}
	for _, v := range owner {
		distinct[v] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("20 users all hashed to %v", distinct)
	}
}

func TestHashKeyExtract(t *testing.T) {
	s := &Session{Req: &RequestHeader{URI: "/a/b?x=1&id=42&y", Header: http.Header{
		"Cookie": {"theme=dark; sid=\"abc\"", "other=1"}, "X-User": {"u1"}}}, ClientIP: "10.1.2.3"}
	for spec, want := range map[string]string{
		"": "/a/b?x=1&id=42&y", "uri": "/a/b?x=1&id=42&y", "path": "/a/b", "client_ip": "10.1.2.3",
		"header:x-user": "u1", "cookie:sid": "abc", "cookie:other": "1", "cookie:none": "", "query:id": "42", "query:y": "",
	} {
		k, err := ParseHashKey(spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.extract(s); got != want {
			t.Errorf("%q: %q, want %q", spec, got, want)
		}
		if n := testing.AllocsPerRun(50, func() { k.extract(s) }); n != 0 {
			t.Errorf("%q: %v allocs", spec, n)
		}
	}
	for _, bad := range []string{"header:", "body", "cookie"} {
		if _, err := ParseHashKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestClientAbortNotCountedAgainstPeer: a client that sends part of its
// body and leaves fails the attempt, but the failure is the client's: the
// peer, under passive health with max_fails 2, stays in service after
// three such requests, and the next request is served.
func TestClientAbortNotCountedAgainstPeer(t *testing.T) {
	entered := make(chan struct{}, 8) // one token per request the origin began
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{origin}, Passive: health.Passive{MaxFails: 2, CoolOff: time.Hour}})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	st := app.Router.Table().upstreams["up"].records[0].State()
	for i := range 3 {
		c := dialTCP(t, p.addr)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
		select { // the attempt is under way, the body half sent
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d never reached the origin: the peer was ejected", i+1)
		}
		c.Close()
		waitFor(t, 5*time.Second, "the attempt to end", func() bool { return st.InFlight.Load() == 0 })
	}
	if !st.Healthy() {
		t.Fatal("three client aborts ejected the peer")
	}
	if resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after the aborts: %d %q", resp.StatusCode, body)
	}
}

// TestClientFault: an attempt error is the client's when its body failed
// or its context ended (a reset stream, a closed connection), not when the
// gRPC deadline ended it or nothing ended it.
func TestClientFault(t *testing.T) {
	dial := classifyDial(errors.New("dial tcp: operation was canceled"))
	live := &Session{ctx: context.Background()}
	gone, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("stream reset by client"))
	left := &Session{ctx: gone}
	deadline, cancel2 := context.WithCancelCause(context.Background())
	cancel2(errGRPCDeadline)
	grpcEnded := &Session{ctx: deadline}
	var noBody reqBody
	for _, tc := range []struct {
		name string
		sess *Session
		body *reqBody
		want Source
	}{
		{"upstream failure", live, &noBody, Upstream},
		{"client left while dialling", left, &noBody, Downstream},
		{"grpc deadline", grpcEnded, &noBody, Upstream},
		{"client body failed", live, &reqBody{err: io.ErrUnexpectedEOF}, Downstream},
	} {
		var pe *Error
		if err := clientFault(tc.sess, tc.body, dial); !errors.As(err, &pe) || pe.Source != tc.want {
			t.Errorf("%s: %v, want source %v", tc.name, err, tc.want)
		}
	}
}
