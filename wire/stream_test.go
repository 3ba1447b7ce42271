package wire_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// body returns n bytes of a pattern that shows misplaced chunks.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// streamPair is pair plus stream handlers: "body" writes the requested
// number of bytes in odd-sized writes; "half" writes n bytes, signals, then
// waits for its context or a failure order; "first-fail" fails before
// writing.
type streamPair struct {
	nw      *wiretest.Network
	srv     *wire.Server
	cl      *wire.Client
	wrote   chan struct{} // "half" wrote its bytes
	fail    chan error    // "half" returns this
	stopped chan error    // "half" ended with its context's error
}

func newStreamPair(t *testing.T) *streamPair {
	t.Helper()
	nw, srv, cl, _ := pair(t, wire.ServerConfig{StreamChunkSize: 4096}, wire.ClientConfig{})
	p := &streamPair{nw: nw, srv: srv, cl: cl, wrote: make(chan struct{}, 8), fail: make(chan error, 1), stopped: make(chan error, 8)}
	srv.HandleStream("body", func(_ context.Context, req []byte, w io.Writer) error {
		var n int
		if _, err := fmt.Sscan(string(req[1:]), &n); err != nil { // req is a msgpack fixstr
			return err
		}
		b := body(n)
		for len(b) > 0 {
			k := min(len(b), 1000+len(b)%3000)
			if _, err := w.Write(b[:k]); err != nil {
				return err
			}
			b = b[k:]
		}
		return nil
	})
	srv.HandleStream("half", func(ctx context.Context, _ []byte, w io.Writer) error {
		if _, err := w.Write(body(10000)); err != nil {
			return err
		}
		p.wrote <- struct{}{}
		select {
		case err := <-p.fail:
			return err
		case <-ctx.Done():
			p.stopped <- ctx.Err()
			return ctx.Err()
		}
	})
	srv.HandleStream("first-fail", func(context.Context, []byte, io.Writer) error {
		return wire.NotOwner(3)
	})
	return p
}

// openHalf opens a "half" stream and waits until its bytes are written;
// the reader is closed at cleanup.
func (p *streamPair) openHalf(t *testing.T) io.ReadCloser {
	t.Helper()
	r, err := p.cl.CallStream(ctxT(t, 10*time.Second), "srv:1", "half", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	<-p.wrote // the stream is open and stalled
	return r
}

func TestStreamBody(t *testing.T) {
	p := newStreamPair(t)
	for _, n := range []int{0, 1, 4096, 4097, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r, err := p.cl.CallStream(ctxT(t, 10*time.Second), "srv:1", "body", fmt.Sprint(n))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, body(n)) {
				t.Fatalf("read %d bytes, err %v; want %d pattern bytes", len(got), err, n)
			}
		})
	}
	// Five sequential streams reuse one stream connection.
	if d := p.nw.Dials("srv:1"); d != 1 {
		t.Fatalf("dials = %d, want 1", d)
	}
}

// TestStreamOwnConnection: a stream never shares the unary connection, so
// a unary call made while a stream stalls is answered at once.
func TestStreamOwnConnection(t *testing.T) {
	p := newStreamPair(t)
	p.openHalf(t)
	var resp echoResp
	if err := p.cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{"small"}, &resp); err != nil || resp.Msg != "small" {
		t.Fatalf("unary call beside a stream: %v", err)
	}
	if d := p.nw.Dials("srv:1"); d != 2 {
		t.Fatalf("dials = %d, want 2 (one for the stream, one for unary calls)", d)
	}
}

// TestStreamPeerDiesMidStream: the reader gets an error, never io.EOF,
// when the peer goes away before the end.
func TestStreamPeerDiesMidStream(t *testing.T) {
	p := newStreamPair(t)
	r := p.openHalf(t)
	p.nw.SetDown("srv:1", true)
	got, err := io.ReadAll(r)
	if !errors.Is(err, wire.ErrPeerGone) || errors.Is(err, io.EOF) {
		t.Fatalf("ReadAll after %d bytes: err = %v, want ErrPeerGone and not io.EOF", len(got), err)
	}
	if len(got) > 10000 || !bytes.Equal(got, body(10000)[:len(got)]) {
		t.Fatalf("read %d bytes that are not a prefix of the body", len(got))
	}
}

// TestStreamPeerDiesTCP: the same over TCP, the server closing mid-stream.
func TestStreamPeerDiesTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{})
	wrote := make(chan struct{})
	srv.HandleStream("half", func(ctx context.Context, _ []byte, w io.Writer) error {
		w.Write(body(1 << 20))
		close(wrote)
		<-ctx.Done()
		return nil // as if it finished: the end frame cannot go out on a closed connection
	})
	go srv.Serve(l)
	cl, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { cl.Close() })
	r, err := cl.CallStream(ctxT(t, 10*time.Second), l.Addr().String(), "half", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	<-wrote
	srv.Close()
	got, err := io.ReadAll(r)
	if !errors.Is(err, wire.ErrPeerGone) || errors.Is(err, io.EOF) || len(got) > 1<<20 {
		t.Fatalf("ReadAll: %d bytes, err = %v; want a prefix and ErrPeerGone, not io.EOF", len(got), err)
	}
}

// TestStreamHandlerErrorMidStream: a handler failing after some bytes gives
// the reader its error after exactly those bytes.
func TestStreamHandlerErrorMidStream(t *testing.T) {
	p := newStreamPair(t)
	r := p.openHalf(t)
	p.fail <- errors.New("upstream reset")
	got, err := io.ReadAll(r)
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Code != wire.CodeHandler || re.Message != "upstream reset" {
		t.Fatalf("err = %v, want the handler's error", err)
	}
	if !bytes.Equal(got, body(10000)) {
		t.Fatalf("read %d bytes before the error, want the 10000 written", len(got))
	}
	// A stream that ended with an error frame leaves its connection clean.
	if _, err := p.cl.CallStream(ctxT(t, 5*time.Second), "srv:1", "body", "1"); err != nil {
		t.Fatal(err)
	}
	if d := p.nw.Dials("srv:1"); d != 1 {
		t.Fatalf("dials = %d, want 1", d)
	}
}

// TestStreamPanicMidStream: a panic after some bytes is an error too.
func TestStreamPanicMidStream(t *testing.T) {
	p := newStreamPair(t)
	p.srv.HandleStream("panic", func(_ context.Context, _ []byte, w io.Writer) error {
		w.Write([]byte("partial"))
		panic("nil map")
	})
	r, err := p.cl.CallStream(ctxT(t, 5*time.Second), "srv:1", "panic", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if string(got) != "partial" || err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("ReadAll = %q, %v; want the partial body and an error", got, err)
	}
	if p.srv.Stats().Panics != 1 {
		t.Fatalf("panics = %d", p.srv.Stats().Panics)
	}
}

// TestStreamErrorBeforeFirstByte: errors before any data come back from
// CallStream with their code.
func TestStreamErrorBeforeFirstByte(t *testing.T) {
	p := newStreamPair(t)
	cases := []struct {
		method string
		is     error
	}{
		{"first-fail", wire.ErrNotOwner},
		{"nope", wire.ErrUnknownMethod},
		{"echo", wire.ErrUnknownMethod}, // a unary method asked for a stream
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			r, err := p.cl.CallStream(ctxT(t, 5*time.Second), "srv:1", tc.method, nil)
			if !errors.Is(err, tc.is) || r != nil {
				t.Fatalf("CallStream = %v, %v; want %v", r, err, tc.is)
			}
		})
	}
	if err := p.cl.Call(ctxT(t, 5*time.Second), "srv:1", "body", "1", nil); !errors.Is(err, wire.ErrUnknownMethod) {
		t.Fatalf("Call on a stream method: %v, want ErrUnknownMethod", err)
	}
}

// TestStreamCloseEarlyStopsHandler: closing the reader before the end ends
// the handler's context, and the next stream dials afresh.
func TestStreamCloseEarlyStopsHandler(t *testing.T) {
	p := newStreamPair(t)
	r := p.openHalf(t)
	r.Close()
	if err := <-p.stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler stopped with %v, want Canceled", err)
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	r2, err := p.cl.CallStream(ctxT(t, 5*time.Second), "srv:1", "body", "5")
	if err != nil {
		t.Fatal(err)
	}
	r2.Close()
	if d := p.nw.Dials("srv:1"); d != 2 {
		t.Fatalf("dials = %d, want 2: an abandoned stream's connection is not reused", d)
	}
}

// TestStreamDeadline: the caller's deadline ends a stalled stream on both
// sides.
func TestStreamDeadline(t *testing.T) {
	p := newStreamPair(t)
	r, err := p.cl.CallStream(ctxT(t, 200*time.Millisecond), "srv:1", "half", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if !errors.Is(err, context.DeadlineExceeded) || len(got) != 10000 {
		t.Fatalf("ReadAll: %d bytes, %v; want 10000 and DeadlineExceeded", len(got), err)
	}
	select {
	case err := <-p.stopped:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("handler stopped with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler still running after the caller's deadline")
	}
}

// TestCancelReachesHandler: cancelling a unary call ends the handler's
// context through a cancel frame; the connection stays.
func TestCancelReachesHandler(t *testing.T) {
	nw, srv, cl, entered := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	stopped := make(chan error, 1) // why the handler's context ended
	srv.Handle("wait", func(ctx context.Context, _ []byte) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // the call's result
	go func() { done <- cl.Call(ctx, "srv:1", "wait", nil, nil) }()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("call: %v", err)
	}
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler: %v", err)
	}
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{}, nil); err != nil || nw.Dials("srv:1") != 1 {
		t.Fatalf("call after cancel: %v, dials %d", err, nw.Dials("srv:1"))
	}
}
