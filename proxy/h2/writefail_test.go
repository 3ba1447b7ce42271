package h2

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// failingWriteConn is a client connection whose writes fail once it took
// okBytes (a client that stopped reading: the write deadline passed, or it
// reset the connection), while its read side stays open: what the client
// sent is read from r, and more may follow.
type failingWriteConn struct {
	net.Conn // nil: only what the server calls is implemented
	r        *io.PipeReader
	mu       sync.Mutex
	okBytes  int
	closed   bool
}

var errWriteBroken = errors.New("write: connection timed out")

func (c *failingWriteConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *failingWriteConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(p) > c.okBytes {
		n := c.okBytes
		c.okBytes = 0
		return n, errWriteBroken
	}
	c.okBytes -= len(p)
	return len(p), nil
}

func (c *failingWriteConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.r.CloseWithError(net.ErrClosed)
}

func (c *failingWriteConn) SetDeadline(time.Time) error      { return nil }
func (c *failingWriteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *failingWriteConn) SetWriteDeadline(time.Time) error { return nil }
func (c *failingWriteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *failingWriteConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }

// TestWriteFailureFailsWrites: once a write to the client's connection
// failed, a stream's Write fails too, and the connection is closed. A
// write can fail inside Write, when a frame overflows the connection's
// buffer, and the buffer keeps that error to itself: every later Write
// "succeeded" without sending a byte, so a proxy went on reading its
// upstream's body at full speed into the void (a client that opened its
// windows wide and then stopped reading had whole files pulled from the
// origin for nothing once the write timed out), and logged the response
// as sent whole.
func TestWriteFailureFailsWrites(t *testing.T) {
	pr, pw := io.Pipe()
	nc := &failingWriteConn{r: pr, okBytes: 4 << 10}
	type result struct {
		wrote int
		err   error
	}
	done := make(chan result, 1)
	const body, piece = 64 << 20, 16 << 10
	c := NewConn(nc, nil, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{})
		chunk := make([]byte, piece)
		wrote := 0
		var err error
		for wrote < body && err == nil {
			if err = st.Write(chunk); err == nil {
				wrote += piece
			}
		}
		if err == nil {
			err = st.Finish(nil)
		}
		done <- result{wrote, err}
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
		// The pipe stays open: the client still sends, it only stopped
		// reading.
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler never returned")
	}
	if r.err == nil {
		t.Fatalf("the response was written whole (%d bytes) over a connection whose writes failed after 4 KiB", r.wrote)
	}
	if r.wrote > 2*writeBufSize {
		t.Errorf("%d bytes written without error after the connection's write failed", r.wrote)
	}
	select {
	case <-served:
	case <-time.After(20 * time.Second):
		t.Fatal("the connection was not closed after its write failed")
	}
}

// TestFinishReportsFailedFlush: a response whose end the connection could
// not write is not reported as sent. Finish flushed and returned nil
// whatever the flush met, so a proxy logged a response its client never
// saw end as served whole.
func TestFinishReportsFailedFlush(t *testing.T) {
	pr, pw := io.Pipe()
	nc := &failingWriteConn{r: pr, okBytes: 1 << 30}
	done := make(chan error, 1)
	c := NewConn(nc, nil, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{})
		err := st.Write(make([]byte, 1000))
		if err == nil {
			nc.mu.Lock()
			nc.okBytes = 0 // the client stops reading now: the end cannot go out
			nc.mu.Unlock()
			err = st.Finish(nil)
		}
		done <- err
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
		fr.WriteSettings()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
			BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a")})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Finish returned nil, but the frames that end the response were never written")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler never returned")
	}
}
