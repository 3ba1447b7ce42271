package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/clock"
)

// TestMinSendRateH2CutsTrickle: the red team's attack on the defaults
// (240 B/s after 5 s). An HTTP/2 client opens its window one byte every
// 2 s on a 1 MiB response, inside every idle timeout; its stream is reset
// with ENHANCE_YOUR_CALM at the third wait (6 s on the engine's clock),
// counted, and the upstream connection, half read, is closed rather than
// pooled or held.
func TestMinSendRateH2CutsTrickle(t *testing.T) {
	o := startSizedOrigin(t, false, bodyHandler(1<<20))
	o.peer.Conns = ConnLimit{Max: 100} // only counts
	clk := clock.NewFake(time.Unix(1e9, 0))
	p := startProxy(t, routerFor(t, o.peer), Config{Clock: clk}, ListenerConfig{Name: "h2c", H2C: true})
	c := dialSlowH2(t, p.addr)
	c.get(t, "/")
	cut := func() bool { _, ok := c.rsts.Load(uint32(1)); return ok }
	var want int64
	for round := 0; round < 20 && !cut(); round++ {
		waitFor(t, 10*time.Second, "the stream to wait for window", func() bool {
			return cut() || c.data.Load() == want && clk.Waiters() == 1
		})
		if cut() {
			break
		}
		clk.Advance(2 * time.Second)
		want++
		c.write(func() error { return c.fr.WriteWindowUpdate(1, 1) })
	}
	waitFor(t, 10*time.Second, "the stream reset", cut)
	if code, _ := c.rsts.Load(uint32(1)); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("stream reset with %v, want ENHANCE_YOUR_CALM", code)
	}
	if got, took := c.data.Load(), clk.Now().Sub(time.Unix(1e9, 0)); got != 2 || took != 6*time.Second {
		t.Errorf("cut after %d bytes and %v, want 2 and 6s", got, took)
	}
	if v := labelCounts(p.srv.metrics.slowClients); v["send"] != 1 || v["recv"] != 0 {
		t.Errorf("pingora_downstream_slow_clients_total = %v, want send 1", v)
	}
	waitFor(t, 10*time.Second, "the upstream connection closed and released", func() bool {
		o.mu.Lock()
		open := o.open
		o.mu.Unlock()
		return open == 0 && p.srv.slots.active(o.peer.poolKey()) == 0
	})
}

// TestMinSendRateH2SlowUpstream: an upstream that sends a byte every 10 s
// to a client that takes each at once is not cut: the stream never waits
// on its client. Nor is the connection, idle for an hour between its
// requests.
func TestMinSendRateH2SlowUpstream(t *testing.T) {
	origin, next := tricklingOrigin(t)
	clk := clock.NewFake(time.Unix(1e9, 0))
	p := startProxy(t, routerFor(t, origin), Config{Clock: clk}, ListenerConfig{Name: "h2c", H2C: true})
	c := dialSlowH2(t, p.addr)
	c.write(func() error {
		return c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	})
	for stream := 0; stream < 2; stream++ {
		c.get(t, "/")
		for i := 1; i <= 10; i++ {
			next <- true
			want := int64(stream*10 + i)
			waitFor(t, 10*time.Second, "the byte", func() bool { return c.data.Load() == want })
			clk.Advance(10 * time.Second)
		}
		next <- false
		waitFor(t, 10*time.Second, "the stream's end", func() bool { return c.endsSeen() == stream+1 })
		clk.Advance(time.Hour) // idle between requests
	}
	c.rsts.Range(func(id, code any) bool {
		t.Errorf("stream %v reset with %v", id, code)
		return true
	})
	if v := labelCounts(p.srv.metrics.slowClients); v["send"] != 0 || v["recv"] != 0 {
		t.Errorf("pingora_downstream_slow_clients_total = %v, want 0", v)
	}
}

// TestMinRecvRateH1 holds HTTP/1.1 request bodies to a minimum rate no
// client can meet while the proxy waits on it (a nanosecond of grace, a
// terabyte a second), so that any wait for body bytes cuts. A body whose
// first byte came with the head and the rest never (a slow POST) is cut
// with 408 and counted; the same client whose body came whole with its
// head is not, nor its keep-alive connection between requests, nor the
// time the upstream takes to answer.
func TestMinRecvRateH1(t *testing.T) {
	release := make(chan struct{})
	origin := &Peer{Addr: rawPeer(t, func(nc net.Conn) {
		defer nc.Close()
		br := bufio.NewReader(nc)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.URL.Path == "/slow" {
				<-release // the upstream takes its time
			}
			fmt.Fprint(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})}
	cfg := Config{Downstream: DownstreamConfig{MinRecvRate: 1 << 40, MinRateGrace: time.Nanosecond}}
	p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "h1"})

	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	roundTrip := func(path string, then func()) int {
		t.Helper()
		fmt.Fprintf(nc, "POST %s HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n\r\nhello", path)
		if then != nil {
			then()
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := roundTrip("/", nil); st != 200 {
		t.Fatalf("whole body: status %d", st)
	}
	if st := roundTrip("/slow", func() {
		waitFor(t, 10*time.Second, "the upstream's request", func() bool { return len(release) == 0 })
		release <- struct{}{}
	}); st != 200 {
		t.Fatalf("slow upstream: status %d", st)
	}
	if st := roundTrip("/", nil); st != 200 {
		t.Fatalf("after the keep-alive wait: status %d", st)
	}
	if v := labelCounts(p.srv.metrics.slowClients); v["recv"] != 0 {
		t.Fatalf("pingora_downstream_slow_clients_total = %v before the slow body", v)
	}

	fmt.Fprint(nc, "POST / HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n\r\nh")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("slow body: status %d, Connection: close %v; want 408 and close", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Errorf("the connection stays open after the slow body")
	}
	if v := labelCounts(p.srv.metrics.slowClients); v["recv"] != 1 || v["send"] != 0 {
		t.Errorf("pingora_downstream_slow_clients_total = %v, want recv 1", v)
	}
}

// TestMinRateConfig: the defaults are on (Kestrel's 240 B/s after 5 s),
// -1 turns a minimum off, and less is refused.
func TestMinRateConfig(t *testing.T) {
	d := Config{}.withDefaults().Downstream
	if d.MinSendRate != 240 || d.MinRecvRate != 240 || d.MinRateGrace != 5*time.Second {
		t.Errorf("defaults %d, %d, %v; want 240, 240, 5s", d.MinSendRate, d.MinRecvRate, d.MinRateGrace)
	}
	off := Config{Downstream: DownstreamConfig{MinSendRate: -1, MinRecvRate: -1}}.withDefaults()
	if h := h2Config(off.Downstream); h.MinSendRate != 0 || h.MinRecvRate != 0 {
		t.Errorf("-1 gives HTTP/2 rates %d, %d; want 0 (off)", h.MinSendRate, h.MinRecvRate)
	}
	for _, c := range []Config{
		{Downstream: DownstreamConfig{MinSendRate: -2}},
		{Downstream: DownstreamConfig{MinRecvRate: -2}},
		{Downstream: DownstreamConfig{MinRateGrace: -time.Second}},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "Min") {
			t.Errorf("%+v: %v, want an error naming the field", c.Downstream, err)
		}
	}
}

// tricklingOrigin is an upstream that answers each request with a chunked
// body of one byte per true sent on next, ended by a false: a slow
// upstream, whose pace the test sets.
func tricklingOrigin(t *testing.T) (*Peer, chan<- bool) {
	next := make(chan bool)
	return &Peer{Addr: rawPeer(t, func(nc net.Conn) {
		defer nc.Close()
		br := bufio.NewReader(nc)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			fmt.Fprint(nc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for <-next {
				fmt.Fprint(nc, "1\r\nx\r\n")
			}
			fmt.Fprint(nc, "0\r\n\r\n")
		}
	})}, next
}
