package wire_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

type echoReq struct{ Msg string }
type echoResp struct{ Msg string }

// pair starts a server on an in-memory network with an echo, a block-until-
// cancelled and a failing method, and a client on the same network.
func pair(t *testing.T, scfg wire.ServerConfig, ccfg wire.ClientConfig) (*wiretest.Network, *wire.Server, *wire.Client, chan struct{}) {
	t.Helper()
	nw := wiretest.New()
	l, err := nw.Listen("srv:1")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, scfg)
	entered := make(chan struct{}, 128) // one token per blocking call entered
	srv.Handle("block", func(ctx context.Context, _ []byte) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	go srv.Serve(l)
	ccfg.Dialer = nw.Dialer()
	cl, err := wire.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return nw, srv, cl, entered
}

func newServer(t *testing.T, cfg wire.ServerConfig) *wire.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := wire.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wire.HandleFunc(srv, "echo", func(_ context.Context, r *echoReq) (*echoResp, error) {
		return &echoResp{Msg: r.Msg}, nil
	})
	srv.Handle("fail", func(context.Context, []byte) ([]byte, error) { return nil, errors.New("boom") })
	t.Cleanup(func() { srv.Close() })
	return srv
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestConcurrentCallsShareOneConnection(t *testing.T) {
	nw, _, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n) // one slot per call
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp echoResp
			msg := string(rune('a' + i%26))
			if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{Msg: msg}, &resp); err != nil {
				errs <- err
			} else if resp.Msg != msg {
				errs <- errors.New("crossed responses: got " + resp.Msg + " want " + msg)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := nw.Dials("srv:1"); d != 1 {
		t.Fatalf("dials = %d, want 1", d)
	}
}

// TestCallsInFlightTogether proves multiplexing: many calls are inside the
// handler at once over the single connection.
func TestCallsInFlightTogether(t *testing.T) {
	nw, _, cl, entered := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	const n = 20
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); cl.Call(ctx, "srv:1", "block", nil, nil) }()
	}
	for range n {
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("calls did not all reach the handler concurrently")
		}
	}
	cancel()
	wg.Wait()
	if d := nw.Dials("srv:1"); d != 1 {
		t.Fatalf("dials = %d, want 1", d)
	}
}

func TestDeadline(t *testing.T) {
	_, _, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	start := time.Now()
	err := cl.Call(ctxT(t, 50*time.Millisecond), "srv:1", "block", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("deadline honoured after %s", el)
	}
	var resp echoResp // the connection survives a timed-out call
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{"x"}, &resp); err != nil || resp.Msg != "x" {
		t.Fatalf("call after timeout: %v %q", err, resp.Msg)
	}
}

func TestPeerGoneMidCallFailsFast(t *testing.T) {
	nw, _, cl, entered := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	done := make(chan error, 1) // the call's result
	start := time.Now()
	go func() { done <- cl.Call(ctxT(t, 30*time.Second), "srv:1", "block", nil, nil) }()
	<-entered
	nw.SetDown("srv:1", true)
	select {
	case err := <-done:
		if !errors.Is(err, wire.ErrPeerGone) {
			t.Fatalf("err = %v, want ErrPeerGone", err)
		}
		t.Logf("pending call failed %s after start: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("pending call did not fail when the peer went away")
	}
	err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{}, nil)
	if !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("call to downed peer: %v, want ErrPeerGone", err)
	}
	nw.SetDown("srv:1", false)
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{}, nil); err != nil {
		t.Fatalf("call after peer came back: %v", err)
	}
}

func TestPeerGoneTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{})
	entered := make(chan struct{})
	srv.Handle("block", func(ctx context.Context, _ []byte) ([]byte, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	go srv.Serve(l)
	cl, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { cl.Close() })
	done := make(chan error, 1) // the call's result
	go func() { done <- cl.Call(ctxT(t, 30*time.Second), l.Addr().String(), "block", nil, nil) }()
	<-entered
	srv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, wire.ErrPeerGone) {
			t.Fatalf("err = %v, want ErrPeerGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending call did not fail when the server closed")
	}
	if err := cl.Call(ctxT(t, 5*time.Second), l.Addr().String(), "echo", echoReq{}, nil); !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("dial to closed port: %v, want ErrPeerGone", err)
	}
}

func TestOversizedFrame(t *testing.T) {
	nw, srv, cl, _ := pair(t, wire.ServerConfig{MaxFrameSize: 1024}, wire.ClientConfig{})
	big := echoReq{Msg: string(bytes.Repeat([]byte("x"), 4096))}
	err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", big, nil)
	if !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("server refusing a big frame: err = %v, want ErrPeerGone", err)
	}
	if got := srv.Stats().ProtocolErrors; got != 1 {
		t.Fatalf("ProtocolErrors = %d, want 1", got)
	}
	small, _ := wire.NewClient(wire.ClientConfig{Dialer: nw.Dialer(), MaxFrameSize: 1024})
	t.Cleanup(func() { small.Close() })
	before := nw.Dials("srv:1")
	err = small.Call(ctxT(t, 5*time.Second), "srv:1", "echo", big, nil)
	if !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("client refusing a big frame: err = %v, want ErrFrameTooLarge", err)
	}
	if nw.Dials("srv:1") != before {
		t.Fatal("client dialled for a request it must refuse")
	}
}

func TestRemoteError(t *testing.T) {
	_, _, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "fail", nil, nil)
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Message != "boom" || re.Method != "fail" {
		t.Fatalf("err = %#v, want RemoteError boom", err)
	}
	err = cl.Call(ctxT(t, 5*time.Second), "srv:1", "nope", nil, nil)
	if !errors.Is(err, wire.ErrUnknownMethod) {
		t.Fatalf("err = %v, want ErrUnknownMethod", err)
	}
}

func TestClientCloseFailsPending(t *testing.T) {
	_, _, cl, entered := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	done := make(chan error, 1) // the call's result
	go func() { done <- cl.Call(ctxT(t, 30*time.Second), "srv:1", "block", nil, nil) }()
	<-entered
	cl.Close()
	if err := <-done; !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("err = %v", err)
	}
	if err := cl.Call(ctxT(t, time.Second), "srv:1", "echo", nil, nil); !errors.Is(err, wire.ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}
}

// TestGarbage sends junk to a real TCP port: each connection is closed by the
// server, nothing large is allocated, and the server still answers.
func TestGarbage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{})
	go srv.Serve(l)
	addr := l.Addr().String()
	junk := map[string][]byte{
		"random":         {0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3},
		"http":           []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"huge length":    {wire.ProtoRPC, 0xff, 0xff, 0xff, 0xff, 1, 2, 3},
		"short length":   {wire.ProtoRPC, 0, 0, 0, 2, 1, 2},
		"unknown type":   {wire.ProtoRPC, 0, 0, 0, 9, 99, 0, 0, 0, 0, 0, 0, 0, 1},
		"response frame": {wire.ProtoRPC, 0, 0, 0, 9, 2, 0, 0, 0, 0, 0, 0, 0, 1},
	}
	for name, b := range junk {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(b)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("server did not close the connection: %v", err)
			}
		})
	}
	cl, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { cl.Close() })
	var resp echoResp
	if err := cl.Call(ctxT(t, 5*time.Second), addr, "echo", echoReq{"ok"}, &resp); err != nil || resp.Msg != "ok" {
		t.Fatalf("server unusable after garbage: %v", err)
	}
	st := srv.Stats()
	if st.BadMagic != 2 || st.ProtocolErrors != 4 {
		t.Fatalf("stats = %+v, want 2 bad magic and 4 protocol errors", st)
	}
}

func BenchmarkCallLoopback(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv, _ := wire.NewServer(wire.ServerConfig{})
	wire.HandleFunc(srv, "echo", func(_ context.Context, r *echoReq) (*echoResp, error) {
		return &echoResp{Msg: r.Msg}, nil
	})
	go srv.Serve(l)
	defer srv.Close()
	cl, _ := wire.NewClient(wire.ClientConfig{})
	defer cl.Close()
	ctx := context.Background()
	req := echoReq{Msg: "hello, cluster"}
	b.ReportAllocs()
	for b.Loop() {
		var resp echoResp
		if err := cl.Call(ctx, l.Addr().String(), "echo", req, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLyingLengthBody: a call whose msgpack body declares a 4 GiB string
// and holds none of it is refused as undecodable, and the server allocates
// nothing like it (msgpack grew a pooled buffer by a megabyte per such
// call, kept it, and 2,000 calls took a node to 1.2 GB).
func TestLyingLengthBody(t *testing.T) {
	_, _, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	// {"Msg": str32 of 0xffffffff bytes}, and no bytes
	body := []byte{0x81, 0xa3, 'M', 's', 'g', 0xdb, 0xff, 0xff, 0xff, 0xff}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 200 {
		_, err := cl.CallRaw(ctxT(t, 5*time.Second), "srv:1", "echo", body)
		var re *wire.RemoteError
		if !errors.As(err, &re) || !strings.Contains(re.Message, "length beyond the input") {
			t.Fatalf("err = %v, want a remote decode error", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("200 lying calls allocated %d MiB", grew>>20)
	}
	var resp echoResp
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{"ok"}, &resp); err != nil || resp.Msg != "ok" {
		t.Fatalf("echo after: %v %q", err, resp.Msg)
	}
}

// TestSlowFrameClosed: a frame begun and not finished within FrameTimeout
// closes its connection, while a connection idle between frames stays.
func TestSlowFrameClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{FrameTimeout: 200 * time.Millisecond})
	go srv.Serve(l)
	addr := l.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.Write([]byte{wire.ProtoRPC})
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// a 1 MiB request frame, of which 10 bytes come
	slow.Write([]byte{wire.ProtoRPC, 0, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 'x'})
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, slow); err != nil {
		t.Fatalf("the unfinished frame's connection was not closed: %v", err)
	}
	// The idle one outlived the timeout many times over and still works.
	idle.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: %v, want it open", err)
	}
}

// TestMaxConns: beyond MaxConns a connection is closed at once and
// counted; once one closes, calls are served again.
func TestMaxConns(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{MaxConns: 2})
	go srv.Serve(l)
	addr := l.Addr().String()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{wire.ProtoRPC})
		held = append(held, c)
	}
	waitFor(t, 10*time.Second, "two connections served", func() bool { return srv.Stats().Accepted == 2 })
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, extra); err != nil {
		t.Fatalf("the third connection was not closed: %v", err)
	}
	if st := srv.Stats(); st.Refused != 1 {
		t.Fatalf("Refused = %d, want 1", st.Refused)
	}
	held[0].Close()
	cl, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { cl.Close() })
	var resp echoResp
	waitFor(t, 10*time.Second, "a call served after one connection closed", func() bool {
		return cl.Call(ctxT(t, 5*time.Second), addr, "echo", echoReq{"ok"}, &resp) == nil && resp.Msg == "ok"
	})
}

// TestFrameBudget: while one connection is part-way through a large frame
// that holds the whole FrameBudget, a second large frame closes its
// connection (a protocol error); small calls go on, and the budget is
// free again once the first connection goes.
func TestFrameBudget(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{MaxFrameSize: 1 << 20, FrameBudget: 1 << 20})
	go srv.Serve(l)
	addr := l.Addr().String()
	// a request frame of 1 MiB - 1 (its 9-byte header counted), of which 100 KiB come
	big := append([]byte{wire.ProtoRPC, 0, 0x0f, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 100<<10)...)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.Write(big)
	waitFor(t, 10*time.Second, "the first frame to hold the budget", func() bool { return srv.Stats().FrameBytes > 0 })
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.Write(big)
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	// closed with its unread bytes: a reset is as good as a close
	if _, err := io.Copy(io.Discard, second); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the second large frame's connection was not closed: %v", err)
	}
	if st := srv.Stats(); st.ProtocolErrors != 1 {
		t.Fatalf("ProtocolErrors = %d, want 1", st.ProtocolErrors)
	}
	cl, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { cl.Close() })
	var resp echoResp
	if err := cl.Call(ctxT(t, 5*time.Second), addr, "echo", echoReq{"ok"}, &resp); err != nil || resp.Msg != "ok" {
		t.Fatalf("small call while the budget is held: %v", err)
	}
	first.Close()
	waitFor(t, 10*time.Second, "the budget to be free", func() bool { return srv.Stats().FrameBytes == 0 })
}
