package h2

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// gatherConn is a client connection that writes several buffers in one
// call, as the proxy's own TCP connections do, and counts those calls.
type gatherConn struct {
	net.Conn
	calls atomic.Int32
}

func (c *gatherConn) WriteBuffers(bufs [][]byte) (int64, error) {
	c.calls.Add(1)
	nb := net.Buffers(bufs)
	return nb.WriteTo(c.Conn)
}

// serveGather is serveWith whose connections are gatherConns.
func serveGather(t *testing.T, h Handler) (addr string, conns *[]*gatherConn, mu *sync.Mutex) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		list []*gatherConn
		lmu  sync.Mutex
	)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			gc := &gatherConn{Conn: nc}
			lmu.Lock()
			list = append(list, gc)
			lmu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				NewConn(gc, nil, Config{}, h).Serve()
				nc.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		lmu.Lock()
		for _, c := range list {
			c.Close()
		}
		lmu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), &list, &lmu
}

// pattern is n bytes that differ with seed and position, so a frame sent
// out of place or a byte lost shows.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7 + i>>9)
	}
	return b
}

// TestGatheredDataFrames: on a connection that writes several buffers in
// one call, a body handed to End larger than the write buffer goes out in
// gathered writes (the frames' headers and the caller's bytes, after what
// the buffer held), and concurrent streams still get their own bodies
// whole and in order, each after its head.
func TestGatheredDataFrames(t *testing.T) {
	addr, conns, mu := serveGather(t, func(st *Stream) {
		var seed int
		fmt.Sscanf(st.Path, "/%d", &seed)
		body := pattern(seed, 300<<10+seed)
		if st.WriteHead(200, http.Header{"X-Seed": {fmt.Sprint(seed)}}) != nil {
			return
		}
		// A small piece stays in the buffer; the rest cannot fit and is
		// gathered with it.
		if st.Write(body[:100]) != nil {
			return
		}
		st.End(body[100:200<<10], nil, body[200<<10:])
	})
	c := client()
	var wg sync.WaitGroup
	for seed := 1; seed <= 8; seed++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(fmt.Sprintf("http://%s/%d", addr, seed))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Errorf("stream %d: %v", seed, err)
				return
			}
			if resp.Header.Get("X-Seed") != fmt.Sprint(seed) || !bytes.Equal(got, pattern(seed, 300<<10+seed)) {
				t.Errorf("stream %d: head %q, %d bytes: not its body", seed, resp.Header.Get("X-Seed"), len(got))
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	var calls int32
	for _, gc := range *conns {
		calls += gc.calls.Load()
	}
	if calls == 0 {
		t.Fatal("no gathered write: every body went through the buffer")
	}
}

// failingGatherConn is failingWriteConn with gathered writes, which fail
// the same way once okBytes are taken.
type failingGatherConn struct{ *failingWriteConn }

func (c failingGatherConn) WriteBuffers(bufs [][]byte) (int64, error) {
	var n int64
	for _, b := range bufs {
		k, err := c.Write(b)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestGatheredWriteFailure: a gathered write that fails fails the End
// that made it, and closes the connection, as a failed buffered write
// does (TestWriteFailureFailsWrites).
func TestGatheredWriteFailure(t *testing.T) {
	pr, pw := io.Pipe()
	nc := failingGatherConn{&failingWriteConn{r: pr, okBytes: 4 << 10}}
	done := make(chan error, 1)
	c := NewConn(nc, nil, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{})
		done <- st.End(make([]byte, 100<<10))
	})
	served := make(chan struct{})
	go func() {
		c.Serve()
		close(served)
	}()
	t.Cleanup(func() {
		nc.Close()
		<-served
	})
	go func() {
		pw.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(pw, nil)
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
		fr.WriteWindowUpdate(0, maxWindow-initialWindow)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
			BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a")})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a 100 KiB End succeeded over a connection whose writes fail after 4 KiB")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler never returned")
	}
	select {
	case <-served:
	case <-time.After(20 * time.Second):
		t.Fatal("the connection was not closed after its gathered write failed")
	}
}

// TestEndCarriesEndStream: End sends the body with END_STREAM on its last
// DATA frame and no empty DATA frame after it, through the buffer (small
// body), gathered (large body), and when the client's window holds the
// body back until it opens it.
func TestEndCarriesEndStream(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		window uint32 // the client's stream window; 0: wide open
	}{
		{"buffered", 1000, 0},
		{"gathered", 100 << 10, 0},
		{"window", 100 << 10, 40 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := pattern(tc.size, tc.size)
			addr, _, _ := serveGather(t, func(st *Stream) {
				if st.WriteHead(200, http.Header{}) == nil {
					st.End(body)
				}
			})
			fr, _ := rawConn(t, addr)
			win := tc.window
			if win == 0 {
				win = maxWindow
			}
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: win})
			fr.WriteWindowUpdate(0, maxWindow-initialWindow)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a")})
			var got []byte
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				df, ok := f.(*http2.DataFrame)
				if !ok || df.StreamID != 1 {
					if _, rst := f.(*http2.RSTStreamFrame); rst {
						t.Fatalf("reset after %d bytes", len(got))
					}
					continue
				}
				if len(df.Data()) == 0 {
					t.Fatalf("an empty DATA frame (end %v) after %d bytes", df.StreamEnded(), len(got))
				}
				got = append(got, df.Data()...)
				if df.StreamEnded() {
					break
				}
				if tc.window > 0 {
					fr.WriteWindowUpdate(1, uint32(len(df.Data())))
				}
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("got %d bytes, not the body of %d", len(got), len(body))
			}
		})
	}
}
