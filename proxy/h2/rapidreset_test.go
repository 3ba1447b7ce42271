package h2

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// holdOrAnswer holds a stream for /hold until the client resets it and
// answers any other path at once.
func holdOrAnswer(st *Stream) {
	if st.Path == "/hold" {
		<-st.Context().Done()
		return
	}
	if st.WriteHead(200, nil) == nil {
		st.Finish(nil)
	}
}

// rapidClient drives one connection to a holdOrAnswer server.
type rapidClient struct {
	t    *testing.T
	fr   *http2.Framer
	id   uint32 // the next stream
	conn *atomic.Pointer[Conn]
	gone bool // the server ended the connection
}

// serveRapid serves holdOrAnswer with the flood guard on clk and OnFlood
// in fl, and connects a client to it.
func serveRapid(t *testing.T, clk *fakeClock, fl *floods) *rapidClient {
	conn := new(atomic.Pointer[Conn])
	s := serveWith(t, Config{OnFlood: fl.add}, holdOrAnswer, func(c *Conn) { c.flood.now = clk.now; conn.Store(c) })
	fr, _ := rawConn(t, s.addr)
	return &rapidClient{t: t, fr: fr, id: 1, conn: conn}
}

// batch opens n streams, the i-th for /hold and reset at once when
// reset(i), else answered; then it waits until the server has read them
// all (the ACK of a PING sent after them) and its handlers have returned,
// so that none of the next batch's streams is refused for too many
// running handlers: every request runs, as on a route fast enough to keep
// up. It reports false once the server sent GOAWAY, with its code.
func (r *rapidClient) batch(n int, reset func(i int) bool) (ok bool, code http2.ErrCode) {
	hold := headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/hold")
	answer := headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")
	for i := range n {
		block := answer
		if reset(i) {
			block = hold
		}
		if r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: r.id, BlockFragment: block, EndStream: true, EndHeaders: true}) != nil {
			break // the server closed; its GOAWAY is read below
		}
		if reset(i) && r.fr.WriteRSTStream(r.id, http2.ErrCodeCancel) != nil {
			break
		}
		r.id += 2
	}
	mark := [8]byte{'b', byte(r.id), byte(r.id >> 8), byte(r.id >> 16)}
	r.fr.WritePing(false, mark)
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.t.Fatalf("read: %v (no GOAWAY)", err)
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return false, f.ErrCode
		case *http2.PingFrame:
			if f.IsAck() && f.Data == mark {
				r.idle()
				return true, 0
			}
		}
	}
}

// idle waits until the server's handlers have all returned.
func (r *rapidClient) idle() {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := r.conn.Load()
		c.mu.Lock()
		running := c.running
		c.mu.Unlock()
		if running == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d handlers still running after 10 s", running)
		}
		time.Sleep(time.Millisecond) // sleep-ok: polling a condition under a deadline
	}
}

func always(int) bool { return true }

// TestRapidResetEndsConnection: a client that opens streams only to
// reset them (CVE-2023-44487) gets GOAWAY ENHANCE_YOUR_CALM and OnFlood
// hears rapid_reset. Before, each pair earned the flood budget a
// request's credit when the handlers kept up, so the server started every
// request and went on for as long as the client sent them (the ops round
// ran 142,000 cancelled requests on one connection; here the PING after
// 5,000 pairs was answered).
func TestRapidResetEndsConnection(t *testing.T) {
	var fl floods
	r := serveRapid(t, new(fakeClock), &fl)
	for i := 0; i < 5*rapidResetLimit; i += 100 {
		ok, code := r.batch(100, always)
		if ok {
			continue
		}
		if code != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
		}
		if got := fl.take(); len(got) != 1 || got[0] != FloodRapidReset {
			t.Fatalf("OnFlood told %q, want [%s]", got, FloodRapidReset)
		}
		if i+100 < rapidResetLimit {
			t.Fatalf("GOAWAY after %d resets, under the limit of %d", i+100, rapidResetLimit)
		}
		return
	}
	t.Fatalf("the server took %d HEADERS+RST_STREAM pairs and went on", 5*rapidResetLimit)
}

// TestResetsWithinReason: resets short of the guard's rule end nothing:
// just under the limit in each of two seconds, and many resets that are
// fewer than half the streams opened (a proxy in front multiplexing its
// users' cancels).
func TestResetsWithinReason(t *testing.T) {
	var fl floods
	clk := new(fakeClock)
	r := serveRapid(t, clk, &fl)
	for range 2 {
		for n := rapidResetLimit - 1; n > 0; n -= min(n, 100) {
			if ok, code := r.batch(min(n, 100), always); !ok {
				t.Fatalf("GOAWAY %v under the limit", code)
			}
		}
		clk.advance(rapidResetWindow)
	}
	// 2 of every 5 streams reset, 5 times the limit in all, in one second.
	for range 5 * rapidResetLimit / 100 {
		if ok, code := r.batch(100, func(i int) bool { return i%5 < 2 }); !ok {
			t.Fatalf("GOAWAY %v with 40 %% of streams reset", code)
		}
	}
	checkNoFlood(t, &fl)
}
