//go:build linux

package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingora-go/pingora-go/clock"
)

// h1RateRig is a proxy in front of an origin of large responses whose
// accepted sockets have a small send buffer (inherited from the
// listener's, as nginx's sndbuf= sets), with clients whose receive buffer
// is as small as Linux allows: a trickling reader's pace reaches the
// proxy's writes at once instead of after megabytes of buffering.
type h1RateRig struct {
	clk  *clock.Fake
	p    *testProxy[struct{}]
	o    *sizedOrigin
	ca   *testCA
	tls  bool
	body int
}

func startH1RateRig(t *testing.T, useTLS, noSplice bool) *h1RateRig {
	r := &h1RateRig{clk: clock.NewFake(time.Unix(1e9, 0)), tls: useTLS, body: 4 << 20}
	r.o = startSizedOrigin(t, false, bodyHandler(r.body))
	r.o.peer.Conns = ConnLimit{Max: 100} // only counts
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.(*acceptListener).rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	})
	lc := ListenerConfig{Name: "h1"}
	if useTLS {
		r.ca = newTestCA(t)
		certs, err := NewCertStoreFromCerts([]tls.Certificate{r.ca.issue(t, "proxy.test")})
		if err != nil {
			t.Fatal(err)
		}
		lc = ListenerConfig{Name: "tls", TLS: certs}
	}
	r.p = startProxyOn(t, routerFor(t, r.o.peer), Config{Clock: r.clk, NoSplice: noSplice}, lc, ln)
	return r
}

// dial connects with a tiny receive buffer and sends GET /: raw is the
// TCP connection (to trickle from, under TLS too), c the one to speak
// HTTP on.
func (r *h1RateRig) dial(t *testing.T) (raw, c net.Conn) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1) })
	}}
	raw, err := d.Dial("tcp", r.p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	c = raw
	if r.tls {
		tc := tls.Client(raw, &tls.Config{RootCAs: r.ca.pool, ServerName: "proxy.test", NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = tc
	}
	r.get(t, c)
	return raw, c
}

func (r *h1RateRig) get(t *testing.T, c net.Conn) {
	if _, err := fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

func (r *h1RateRig) slow() map[string]float64 { return labelCounts(r.p.srv.metrics.slowClients) }

// waiting waits until the response write waits on the client (its rate
// timer is the fake clock's one waiter) or the client was cut.
func (r *h1RateRig) waiting(t *testing.T) {
	t.Helper()
	waitFor(t, 10*time.Second, "the response write to wait on the client", func() bool {
		return r.clk.Waiters() == 1 || r.slow()["send"] > 0
	})
}

// h1RateModes runs f over plain TCP, where a body may be spliced, over
// plain TCP copying (NoSplice), and over TLS.
func h1RateModes(t *testing.T, f func(t *testing.T, r *h1RateRig)) {
	for _, m := range []struct {
		name          string
		tls, noSplice bool
	}{{"plain", false, false}, {"copy", false, true}, {"tls", true, false}} {
		t.Run(m.name, func(t *testing.T) { f(t, startH1RateRig(t, m.tls, m.noSplice)) })
	}
}

// TestMinSendRateH1CutsTrickle: a client that takes a 4 MiB response a
// byte every 2 s (on the engine's clock), within every write idle timeout,
// is cut a few seconds after the grace period (the few kilobytes its
// kernel acknowledged bought the rest), counted, and the upstream
// connection, half read, is closed rather than pooled or held. Through
// TLS too, where the client trickles the encrypted stream.
func TestMinSendRateH1CutsTrickle(t *testing.T) {
	h1RateModes(t, func(t *testing.T, r *h1RateRig) {
		raw, _ := r.dial(t)
		start := r.clk.Now()
		one := make([]byte, 1)
		for round := 0; round < 100 && r.slow()["send"] == 0; round++ {
			r.waiting(t)
			if r.slow()["send"] > 0 {
				break
			}
			r.clk.Advance(2 * time.Second)
			raw.Read(one)
		}
		waitFor(t, 10*time.Second, "the client cut", func() bool { return r.slow()["send"] > 0 })
		took := r.clk.Now().Sub(start)
		t.Logf("cut after %v (bodies spliced so far in the package: %d)", took, splicedBodies.Load())
		if grace := 5 * time.Second; took <= grace || took > grace+20*time.Second {
			t.Errorf("cut after %v, want a few seconds after the 5s grace", took)
		}
		if v := r.slow(); v["send"] != 1 || v["recv"] != 0 {
			t.Errorf("pingora_downstream_slow_clients_total = %v, want send 1", v)
		}
		// The connection closes: what is buffered, then the end.
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, raw); err != nil && !isReset(err) {
			t.Errorf("the connection after the cut: %v", err)
		}
		waitFor(t, 10*time.Second, "the upstream connection closed and released", func() bool {
			r.o.mu.Lock()
			open := r.o.open
			r.o.mu.Unlock()
			return open == 0 && r.p.srv.slots.active(r.o.peer.poolKey()) == 0
		})
	})
}

func isReset(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && errno == syscall.ECONNRESET
}

// TestMinSendRateH1StallThenFast: a client that takes nothing for the
// whole grace period and then reads its response at once is not cut; nor,
// on the same connection after an hour idle between requests (the count
// is the request's), the next response taken alike.
func TestMinSendRateH1StallThenFast(t *testing.T) {
	h1RateModes(t, func(t *testing.T, r *h1RateRig) {
		_, c := r.dial(t)
		br := bufio.NewReader(c)
		for i := 0; i < 2; i++ {
			if i > 0 {
				r.clk.Advance(time.Hour)
				r.get(t, c)
			}
			r.waiting(t)
			r.clk.Advance(5 * time.Second)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != int64(r.body) {
				t.Fatalf("response %d: %d bytes, %v", i, n, err)
			}
		}
		if v := r.slow(); v["send"] != 0 {
			t.Errorf("pingora_downstream_slow_clients_total = %v, want 0", v)
		}
	})
}

// TestMinSendRateH1KilobyteASecond: a client taking 1 KiB a second, four
// times the default minimum, is not cut in the 64 s it reads 64 KiB of the
// (encrypted, under TLS) stream, whatever the proxy's writes were doing
// when the clock moved.
func TestMinSendRateH1KilobyteASecond(t *testing.T) {
	h1RateModes(t, func(t *testing.T, r *h1RateRig) {
		raw, _ := r.dial(t)
		buf := make([]byte, 1024)
		for i := 0; i < 64; i++ {
			r.clk.Advance(time.Second)
			if _, err := io.ReadFull(raw, buf); err != nil {
				t.Fatalf("KiB %d: %v", i, err)
			}
		}
		if v := r.slow(); v["send"] != 0 {
			t.Errorf("pingora_downstream_slow_clients_total = %v, want 0", v)
		}
	})
}

// TestMinSendRateH1SlowUpstream: an upstream that sends a byte every 10 s
// (on the engine's clock) to a client that takes each at once is not cut:
// the writes never wait on the client.
func TestMinSendRateH1SlowUpstream(t *testing.T) {
	origin, next := tricklingOrigin(t)
	clk := clock.NewFake(time.Unix(1e9, 0))
	p := startProxy(t, routerFor(t, origin), Config{Clock: clk}, ListenerConfig{Name: "h1"})
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprint(nc, "GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
	next <- true // the head goes out with the first byte
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	for i := 0; i < 10; i++ {
		if i > 0 {
			next <- true
		}
		if _, err := io.ReadFull(resp.Body, one); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
		clk.Advance(10 * time.Second)
	}
	next <- false
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if v := labelCounts(p.srv.metrics.slowClients); v["send"] != 0 {
		t.Errorf("pingora_downstream_slow_clients_total = %v, want 0", v)
	}
}
