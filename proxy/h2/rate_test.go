package h2

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/clock"
)

// rateClient is a raw client of one stream, whose frames a goroutine
// sorts: body bytes received, and how the stream ended.
type rateClient struct {
	fr   *http2.Framer
	wmu  sync.Mutex
	got  atomic.Int64 // DATA bytes on stream 1
	end  chan http2.ErrCode
	done atomic.Bool
}

// endStream is the code a clean end (END_STREAM) reports on end.
const endStream = http2.ErrCode(0xffff)

func dialRate(t *testing.T, addr string, initWin uint32, get bool) *rateClient {
	t.Helper()
	fr, _ := rawConn(t, addr)
	c := &rateClient{fr: fr, end: make(chan http2.ErrCode, 1)}
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: initWin}); err != nil {
		t.Fatal(err)
	}
	method := "POST"
	if get {
		method = "GET"
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: get, EndHeaders: true,
		BlockFragment: headerBlock(":method", method, ":scheme", "http", ":path", "/", ":authority", "a")}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					c.write(func() error { return fr.WriteSettingsAck() })
				}
			case *http2.DataFrame:
				if f.StreamID == 1 {
					c.got.Add(int64(len(f.Data())))
					if f.StreamEnded() {
						c.finish(endStream)
					}
				}
			case *http2.MetaHeadersFrame:
				if f.StreamID == 1 && f.StreamEnded() {
					c.finish(endStream)
				}
			case *http2.RSTStreamFrame:
				if f.StreamID == 1 {
					c.finish(f.ErrCode)
				}
			}
		}
	}()
	return c
}

func (c *rateClient) finish(code http2.ErrCode) {
	if c.done.CompareAndSwap(false, true) {
		c.end <- code
	}
}

func (c *rateClient) write(f func() error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f()
}

// waitFor polls cond (a state other goroutines reach) with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // sleep-ok: polls a condition with a deadline
	}
}

// slowLog records OnSlowClient's calls.
type slowLog struct {
	mu   sync.Mutex
	dirs []string
}

func (l *slowLog) add(dir string) {
	l.mu.Lock()
	l.dirs = append(l.dirs, dir)
	l.mu.Unlock()
}

func (l *slowLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.dirs...)
}

func rateConfig(clk clock.Clock, l *slowLog) Config {
	return Config{MinSendRate: 240, MinRecvRate: 240, MinRateGrace: 5 * time.Second, Clock: clk,
		StreamWriteTimeout: time.Hour, StreamIdleTimeout: time.Hour, OnSlowClient: l.add}
}

// sendRounds serves a 1000-byte response to a client that opens its
// window by grant bytes after each pause (on the fake clock), and returns how the stream ended, the handler's error, the
// bytes the client got and the fake time passed.
func sendRounds(t *testing.T, pauses []time.Duration, grant uint32) (http2.ErrCode, error, int64, time.Duration) {
	t.Helper()
	clk := clock.NewFake(time.Unix(0, 0))
	var l slowLog
	wrote := make(chan error, 1)
	s := serve(t, rateConfig(clk, &l), func(st *Stream) {
		st.WriteHead(200, http.Header{})
		err := st.Write(make([]byte, 1000))
		if err == nil {
			err = st.Finish(nil)
		}
		wrote <- err
	})
	c := dialRate(t, s.addr, 0, true)
	var want int64
	for _, p := range pauses {
		// The write waits on its timer, the bytes granted before came;
		// or the stream ended.
		waitFor(t, "the write to wait", func() bool { return c.done.Load() || c.got.Load() == want && clk.Waiters() == 1 })
		if c.done.Load() {
			break
		}
		clk.Advance(p)
		want += int64(grant)
		c.write(func() error { return c.fr.WriteWindowUpdate(1, grant) })
	}
	code := <-c.end
	err := <-wrote
	if (err == ErrTooSlow) != (len(l.get()) == 1) {
		t.Errorf("OnSlowClient calls %v, handler error %v", l.get(), err)
	}
	return code, err, c.got.Load(), clk.Now().Sub(time.Unix(0, 0))
}

// TestMinSendRateCutsTrickle: a client that opens its window one byte
// every 2 s (0.5 B/s) holds its stream no longer than the grace period
// and a little: at the third wait its budget (5 s, plus 1/240 s a byte,
// less 4 s waited) is spent, and the stream is reset with
// ENHANCE_YOUR_CALM while its other streams could go on.
func TestMinSendRateCutsTrickle(t *testing.T) {
	pauses := make([]time.Duration, 10)
	for i := range pauses {
		pauses[i] = 2 * time.Second
	}
	code, err, got, took := sendRounds(t, pauses, 1)
	if code != http2.ErrCodeEnhanceYourCalm || !errors.Is(err, ErrTooSlow) {
		t.Fatalf("stream ended with %v, handler error %v; want ENHANCE_YOUR_CALM, ErrTooSlow", code, err)
	}
	if took != 6*time.Second || got != 2 {
		t.Errorf("cut after %v and %d bytes, want 6s and 2 (the third 2 s wait)", took, got)
	}
}

// TestMinSendRateSpares: clients the minimum must not cut. A client that
// stalls for the whole grace period and then reads at once; one that
// reads slowly but above the rate (500 bytes every 2 s, 250 B/s).
func TestMinSendRateSpares(t *testing.T) {
	t.Run("stall then fast", func(t *testing.T) {
		code, err, got, _ := sendRounds(t, []time.Duration{5 * time.Second}, 1000)
		if code != endStream || err != nil || got != 1000 {
			t.Fatalf("stream ended with %v, handler error %v, %d bytes; want END_STREAM, 1000", code, err, got)
		}
	})
	t.Run("slow above the rate", func(t *testing.T) {
		// 1000 bytes in 2 s steps of 500: above 240 B/s on average.
		code, err, got, _ := sendRounds(t, []time.Duration{2 * time.Second, 2 * time.Second}, 500)
		if code != endStream || err != nil || got != 1000 {
			t.Fatalf("stream ended with %v, handler error %v, %d bytes; want END_STREAM, 1000", code, err, got)
		}
	})
}

// TestMinSendRateNotForUpstreamPace: a response whose source is slow (an
// upstream sending a byte every 10 s) to a client that takes each byte
// at once is never cut: the stream never waits on its client.
func TestMinSendRateNotForUpstreamPace(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	var l slowLog
	next := make(chan bool)
	wrote := make(chan error, 1)
	s := serve(t, rateConfig(clk, &l), func(st *Stream) {
		st.WriteHead(200, http.Header{})
		var err error
		for <-next {
			if err = st.Write([]byte("x")); err == nil {
				err = st.Flush()
			}
		}
		if err == nil {
			err = st.Finish(nil)
		}
		wrote <- err
	})
	c := dialRate(t, s.addr, 1<<20, true)
	for i := 1; i <= 10; i++ {
		next <- true
		waitFor(t, "the byte", func() bool { return c.got.Load() == int64(i) })
		clk.Advance(10 * time.Second)
	}
	next <- false
	if code, err := <-c.end, <-wrote; code != endStream || err != nil || len(l.get()) != 0 {
		t.Fatalf("stream ended with %v, handler error %v, slow clients %v", code, err, l.get())
	}
}

// recvRounds has a client send its request body in pieces of piece bytes,
// each after a pause on the fake clock, while the handler reads it; it
// returns how the stream ended and the handler's read error.
func recvRounds(t *testing.T, pauses []time.Duration, piece int, noMin bool) (http2.ErrCode, error) {
	t.Helper()
	clk := clock.NewFake(time.Unix(0, 0))
	var l slowLog
	var read atomic.Int64
	readErr := make(chan error, 1)
	s := serve(t, rateConfig(clk, &l), func(st *Stream) {
		if noMin {
			st.NoMinRate()
		}
		buf := make([]byte, 64)
		var err error
		for err == nil {
			var n int
			n, err = st.Read(buf)
			read.Add(int64(n))
		}
		if err == io.EOF {
			err = nil
			st.WriteHead(200, http.Header{})
			st.Finish(nil)
		}
		readErr <- err
	})
	c := dialRate(t, s.addr, 1<<20, false)
	var sent int64
	for _, p := range pauses {
		waitFor(t, "the read to wait", func() bool { return c.done.Load() || read.Load() == sent && clk.Waiters() == 1 })
		if c.done.Load() {
			break
		}
		clk.Advance(p)
		sent += int64(piece)
		c.write(func() error { return c.fr.WriteData(1, false, make([]byte, piece)) })
	}
	if !c.done.Load() {
		c.write(func() error { return c.fr.WriteData(1, true, nil) })
	}
	code := <-c.end
	err := <-readErr
	if (err == ErrTooSlow) != (len(l.get()) == 1) {
		t.Errorf("OnSlowClient calls %v, handler error %v", l.get(), err)
	}
	return code, err
}

// TestMinRecvRate: a request body trickled a byte every 2 s (slow POST)
// is cut at its third wait with ENHANCE_YOUR_CALM; one sent 1000 bytes
// every 2 s, one that stalls for the grace period first, and a stream
// exempted (NoMinRate: gRPC, which sends at its application's pace) are
// not.
func TestMinRecvRate(t *testing.T) {
	twos := func(n int) []time.Duration {
		p := make([]time.Duration, n)
		for i := range p {
			p[i] = 2 * time.Second
		}
		return p
	}
	code, err := recvRounds(t, twos(10), 1, false)
	if code != http2.ErrCodeEnhanceYourCalm || !errors.Is(err, ErrTooSlow) {
		t.Fatalf("trickle: stream ended with %v, read error %v; want ENHANCE_YOUR_CALM, ErrTooSlow", code, err)
	}
	for _, tc := range []struct {
		name   string
		pauses []time.Duration
		piece  int
		noMin  bool
	}{
		{"above the rate", twos(10), 1000, false},
		{"stall then fast", []time.Duration{5 * time.Second, 0}, 10000, false},
		{"exempt", twos(10), 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, err := recvRounds(t, tc.pauses, tc.piece, tc.noMin); code != endStream || err != nil {
				t.Fatalf("stream ended with %v, read error %v; want END_STREAM", code, err)
			}
		})
	}
}
