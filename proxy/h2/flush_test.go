package h2

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// countConn counts the writes made on a server connection.
type countConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// serveCounted serves one h2c connection, wrapped to count its writes, and
// returns a raw framer client on it.
func serveCounted(t *testing.T, h Handler) (*http2.Framer, *countConn, *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *Conn, 1)
	var cc *countConn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		cc = &countConn{Conn: nc}
		c := NewConn(cc, nil, Config{}, h)
		accepted <- c
		c.Serve()
		nc.Close()
	}()
	fr, nc := rawConn(t, ln.Addr().String())
	c := <-accepted
	if c == nil {
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() {
		nc.Close()
		c.nc.Close()
		wg.Wait()
	})
	return fr, cc, c
}

// readEnds reads frames until n streams ended, and returns their ids in
// the order their ends arrived.
func readEnds(t *testing.T, fr *http2.Framer, n int) []uint32 {
	t.Helper()
	var ended []uint32
	for len(ended) < n {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d of %d responses: %v", len(ended), n, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				ended = append(ended, f.StreamID)
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				ended = append(ended, f.StreamID)
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset", f.StreamID)
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
	return ended
}

func openStreams(t *testing.T, fr *http2.Framer, ids ...uint32) {
	t.Helper()
	for _, id := range ids {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
			BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "x")}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeferredFlushCoalesces: responses that end together, while other
// streams of their connection run, go out in fewer writes than there are
// responses, and all of them arrive whole.
func TestDeferredFlushCoalesces(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector randomizes the scheduling order the batching relies on")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 8
	var waiting atomic.Int32
	release := make(chan struct{})
	fr, cc, _ := serveCounted(t, func(st *Stream) {
		waiting.Add(1)
		<-release
		st.WriteHead(200, nil)
		st.Write([]byte("hello"))
		st.Finish(nil)
	})
	openStreams(t, fr, 1, 3, 5, 7, 9, 11, 13, 15)
	poll(t, "every handler waiting", func() bool { return waiting.Load() == n })
	before := cc.writes.Load()
	close(release) // every handler runnable at once
	readEnds(t, fr, n)
	if w := cc.writes.Load() - before; w >= n {
		t.Fatalf("%d responses took %d writes, want fewer", n, w)
	} else {
		t.Logf("%d responses in %d writes", n, w)
	}
}

// TestDeferredFlushNoStall: a response that ends while another stream of
// its connection waits reaches the client without that stream.
func TestDeferredFlushNoStall(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	var started atomic.Int32
	fr, _, c := serveCounted(t, func(st *Stream) {
		if started.Add(1) == 1 {
			<-block // the first stream holds on
		}
		st.WriteHead(200, nil)
		st.Write([]byte("hello"))
		st.Finish(nil)
	})
	openStreams(t, fr, 1)
	poll(t, "the first stream running", func() bool { return started.Load() == 1 })
	openStreams(t, fr, 3)
	if got := readEnds(t, fr, 1); got[0] != 3 {
		t.Fatalf("stream %d ended, want 3", got[0])
	}
	c.wmu.Lock()
	up := c.flusherUp
	c.wmu.Unlock()
	if !up {
		t.Fatal("stream 3 ended while stream 1 ran, but no flusher started")
	}
}

// TestFlusherEnds: a lone stream flushes itself and starts no flusher; a
// flusher that had nothing to do for workerIdle ends while its connection
// stays open, and the connection still serves.
func TestFlusherEnds(t *testing.T) {
	setWorkerIdle(t, time.Millisecond)
	block := make(chan struct{})
	var calls atomic.Int32
	fr, _, c := serveCounted(t, func(st *Stream) {
		if calls.Add(1) == 1 {
			<-block
		}
		st.WriteHead(204, nil)
		st.Finish(nil)
	})
	flusherUp := func() bool {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return c.flusherUp
	}
	openStreams(t, fr, 1)
	poll(t, "the first stream running", func() bool { return calls.Load() == 1 })
	openStreams(t, fr, 3) // ends while stream 1 runs: deferred
	readEnds(t, fr, 1)
	close(block)
	readEnds(t, fr, 1)
	ended := make(chan struct{})
	go func() {
		c.handlers.Wait() // the workers and the flusher ended, the connection open
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second): // a guard against a hang, not a measure
		t.Fatal("the idle flusher did not end")
	}
	if flusherUp() {
		t.Fatal("the flusher ended but is still marked up")
	}
	openStreams(t, fr, 5) // alone: flushed by its own stream
	readEnds(t, fr, 1)
	if flusherUp() {
		t.Fatal("a lone stream started the flusher")
	}
}

// TestWriteAfterQuietPeriod: a response write that overflows the
// connection's buffer after the stream was quiet for longer than
// WriteTimeout goes out: the buffer writes through under a deadline moved
// for that write, not the one left from the last flush (which had passed,
// so the write failed at once and took the connection down: a gRPC or SSE
// stream that sent a large message after a quiet minute).
func TestWriteAfterQuietPeriod(t *testing.T) {
	const timeout = 200 * time.Millisecond
	big := make([]byte, 100<<10)
	s := serve(t, Config{WriteTimeout: timeout}, func(st *Stream) {
		if st.WriteHead(200, http.Header{}) != nil || st.Write([]byte("a")) != nil || st.Flush() != nil {
			return
		}
		<-time.After(timeout + timeout/2) // sleep-ok: the last flush's deadline must pass
		if st.Write(big) != nil {
			return
		}
		st.Finish(nil)
	})
	resp, err := client().Get("http://" + s.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(b) != 1+len(big) {
		t.Fatalf("read %d bytes, %v; want %d", len(b), err, 1+len(big))
	}
}
