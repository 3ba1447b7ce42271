package h2

import (
	"bytes"
	"net/http"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
)

// TestShutWindowWakesWriter: a response write that waits for window is
// woken by whatever opens it (a stream or connection WINDOW_UPDATE, a
// larger SETTINGS_INITIAL_WINDOW_SIZE) or fails the stream (RST_STREAM),
// not by its timeout: the stream's wake channel, made by the first write
// that waits, is found by each of them.
func TestShutWindowWakesWriter(t *testing.T) {
	const connWin = 65535
	for _, tc := range []struct {
		name     string
		initWin  uint32 // the client's SETTINGS_INITIAL_WINDOW_SIZE
		size     int    // response body bytes
		open     func(fr *http2.Framer) error
		wantFail bool
	}{
		{"stream WINDOW_UPDATE", 0, 10, func(fr *http2.Framer) error { return fr.WriteWindowUpdate(1, 10) }, false},
		{"SETTINGS", 0, 10, func(fr *http2.Framer) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		}, false},
		{"connection WINDOW_UPDATE", 1 << 20, connWin + 10, func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 10) }, false},
		{"RST_STREAM", 0, 10, func(fr *http2.Framer) error { return fr.WriteRSTStream(1, http2.ErrCodeCancel) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			streams := make(chan *Stream, 1)
			wrote := make(chan error, 1)
			s := serve(t, Config{StreamWriteTimeout: time.Minute}, func(st *Stream) {
				streams <- st
				st.WriteHead(200, http.Header{})
				err := st.Write(make([]byte, tc.size))
				if err == nil {
					err = st.Finish(nil)
				}
				wrote <- err
			})
			fr, _ := rawConn(t, s.addr)
			if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: tc.initWin}); err != nil {
				t.Fatal(err)
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a")})
			// A reader drains what the server sends; the window it takes
			// is not given back.
			go func() {
				for {
					if _, err := fr.ReadFrame(); err != nil {
						return
					}
				}
			}()
			st := <-streams
			deadline := time.Now().Add(20 * time.Second)
			for {
				st.c.mu.Lock()
				waiting := st.wait != nil
				st.c.mu.Unlock()
				if waiting {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the write never waited for window")
				}
				time.Sleep(time.Millisecond) // sleep-ok: polls a condition with a deadline
			}
			if err := tc.open(fr); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-wrote:
				if (err != nil) != tc.wantFail {
					t.Fatalf("write: %v", err)
				}
			case <-time.After(20 * time.Second): // a guard, well under StreamWriteTimeout (a lost wake ends there)
				t.Fatal("the waiting write was not woken")
			}
		})
	}
}

// TestStreamSize: a Stream, allocated per request, fills its size class
// with no padding; a field added or moved carelessly costs 32 bytes a
// request (the next size class).
func TestStreamSize(t *testing.T) {
	if n := unsafe.Sizeof(Stream{}); n > 288 {
		t.Fatalf("Stream is %d bytes, over the 288-byte size class: order its fields to leave no padding", n)
	}
}

// TestHeadNotHeldByShutWindow: a client whose windows are shut still gets
// the response head at once (HEADERS are not flow-controlled): before, the
// head waited with the first body bytes for window the client never gave,
// and the client saw only the RST_STREAM at StreamWriteTimeout, without
// the status.
func TestHeadNotHeldByShutWindow(t *testing.T) {
	s := serve(t, Config{StreamWriteTimeout: time.Minute}, func(st *Stream) {
		st.WriteHead(200, http.Header{"X-A": {"1"}})
		st.Write(bytes.Repeat([]byte("b"), 100))
		st.Finish(nil)
	})
	fr, _ := rawConn(t, s.addr)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"), EndStream: true, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no response head while the window is shut: %v", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.PseudoValue("status") != "200" || f.StreamEnded() {
				t.Fatalf("head %v, end %v", f.Fields, f.StreamEnded())
			}
			return
		case *http2.DataFrame, *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("%v before the head", f.Header().Type)
		}
	}
}
