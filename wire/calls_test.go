package wire_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// TestDeadlineTravels: the handler's context carries the caller's deadline
// and ends with it, and the handler sees it end.
func TestDeadlineTravels(t *testing.T) {
	_, srv, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	seen := make(chan time.Duration, 1) // the handler's time left
	ended := make(chan error, 1)        // why the handler's context ended
	srv.Handle("wait", func(ctx context.Context, _ []byte) ([]byte, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			seen <- -1
		} else {
			seen <- time.Until(dl)
		}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	// Under silentAfter (200 ms): a call that waited longer with nothing
	// received leaves its connection behind, and its closing may end the
	// handler's context (canceled) at the moment its deadline does; that
	// rule has its own test (TestSilentConnectionDropped).
	const timeout = 150 * time.Millisecond
	err := cl.Call(ctxT(t, timeout), "srv:1", "wait", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if left := <-seen; left <= 0 || left > timeout {
		t.Fatalf("handler's time left = %s, want in (0, %s]", left, timeout)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("handler's context ended with %v, want DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context did not end with the caller's deadline")
	}
}

// TestNoDeadlineNoHandlerDeadline: a call without a deadline gives the
// handler none.
func TestNoDeadlineNoHandlerDeadline(t *testing.T) {
	_, srv, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	srv.Handle("has-deadline", func(ctx context.Context, _ []byte) ([]byte, error) {
		_, ok := ctx.Deadline()
		return fmt.Appendf(nil, "%v", ok), nil
	})
	out, err := cl.CallRaw(context.Background(), "srv:1", "has-deadline", nil)
	if err != nil || string(out) != "false" {
		t.Fatalf("CallRaw = %q, %v; want false", out, err)
	}
}

// TestExpiredCallNotSent: a call whose deadline passed is neither dialled
// nor sent.
func TestExpiredCallNotSent(t *testing.T) {
	nw, _, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err := cl.Call(ctx, "srv:1", "echo", echoReq{"x"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("err = %v, want DeadlineExceeded, not sent", err)
	}
	if d := nw.Dials("srv:1"); d != 0 {
		t.Fatalf("dials = %d, want 0", d)
	}
}

// TestDeadlinePassedOnArrivalNotStarted: a request whose deadline passed
// before its handler could start is answered CodeDeadline and not run.
func TestDeadlinePassedOnArrivalNotStarted(t *testing.T) {
	_, srv, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	var ran atomic.Int32
	srv.Handle("count", func(context.Context, []byte) ([]byte, error) { ran.Add(1); return nil, nil })
	// Requests "arrive" an hour ago, so a 10s timeout is long gone.
	wire.SetArrivalClock(srv, func() time.Time { return time.Now().Add(-time.Hour) })
	_, err := cl.CallRaw(ctxT(t, 10*time.Second), "srv:1", "count", nil)
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Code != wire.CodeDeadline || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a RemoteError with CodeDeadline", err)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("handler ran %d times", n)
	}
	if _, err := cl.CallRaw(context.Background(), "srv:1", "count", nil); err != nil || ran.Load() != 1 {
		t.Fatalf("a call without a deadline: %v, ran %d", err, ran.Load())
	}
}

// TestPanicAnswersErrorServerLives: a panicking handler gives the caller an
// error frame, is counted, and the connection and server keep serving.
func TestPanicAnswersErrorServerLives(t *testing.T) {
	nw, srv, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	srv.Handle("panic", func(context.Context, []byte) ([]byte, error) { panic("bad index") })
	for range 3 {
		_, err := cl.CallRaw(ctxT(t, 5*time.Second), "srv:1", "panic", nil)
		var re *wire.RemoteError
		if !errors.As(err, &re) || re.Code != wire.CodeHandler || !strings.Contains(re.Message, "panicked: bad index") {
			t.Fatalf("err = %v, want a handler error naming the panic", err)
		}
	}
	var resp echoResp
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{"alive"}, &resp); err != nil || resp.Msg != "alive" {
		t.Fatalf("call after panics: %v %q", err, resp.Msg)
	}
	if st := srv.Stats(); st.Panics != 3 {
		t.Fatalf("Panics = %d, want 3", st.Panics)
	}
	if d := nw.Dials("srv:1"); d != 1 {
		t.Fatalf("dials = %d, want 1: the connection survives a panic", d)
	}
}

// TestErrorCodes: each way a handler fails arrives as its code.
func TestErrorCodes(t *testing.T) {
	_, srv, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	srv.Handle("not-owner", func(ctx context.Context, _ []byte) ([]byte, error) {
		if wire.CallerRingVersion(ctx) != 5 {
			return nil, fmt.Errorf("caller ring %d, want 5", wire.CallerRingVersion(ctx))
		}
		return nil, fmt.Errorf("key k: %w", wire.NotOwner(9))
	})
	srv.Handle("shed", func(context.Context, []byte) ([]byte, error) {
		return nil, fmt.Errorf("queue full: %w", wire.ErrOverloaded)
	})
	cases := []struct {
		method string
		code   wire.Code
		is     error
	}{
		{"fail", wire.CodeHandler, nil},
		{"nope", wire.CodeUnknownMethod, wire.ErrUnknownMethod},
		{"not-owner", wire.CodeNotOwner, wire.ErrNotOwner},
		{"shed", wire.CodeOverloaded, wire.ErrOverloaded},
	}
	ctx := wire.WithRingVersion(ctxT(t, 5*time.Second), 5)
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			_, err := cl.CallRaw(ctx, "srv:1", tc.method, nil)
			var re *wire.RemoteError
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("errors.Is(%v, %v) = false", err, tc.is)
			}
			if tc.code == wire.CodeNotOwner && (re.CallerRing != 5 || re.ServerRing != 9) {
				t.Fatalf("rings = caller %d server %d, want 5 and 9", re.CallerRing, re.ServerRing)
			}
		})
	}
}

// TestOverloadedRefusesAtOnce: past MaxConcurrentCalls on a connection a
// call is refused with CodeOverloaded while the others keep running.
func TestOverloadedRefusesAtOnce(t *testing.T) {
	_, srv, cl, entered := pair(t, wire.ServerConfig{MaxConcurrentCalls: 2}, wire.ClientConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2) // the two blocked calls' results
	for range 2 {
		go func() { done <- cl.Call(ctx, "srv:1", "block", nil, nil) }()
		<-entered
	}
	err := cl.Call(ctxT(t, 30*time.Second), "srv:1", "echo", echoReq{}, nil)
	if !errors.Is(err, wire.ErrOverloaded) {
		t.Fatalf("third call: %v, want ErrOverloaded", err)
	}
	cancel()
	<-done
	<-done
	waitFor(t, 5*time.Second, "handlers to finish", func() bool { return inFlight(srv.Stats(), "block") == 0 })
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{}, nil); err != nil {
		t.Fatalf("call after load fell: %v", err)
	}
	if st := srv.Stats(); st.Overloaded != 1 {
		t.Fatalf("Overloaded = %d, want 1", st.Overloaded)
	}
}

func inFlight(st wire.ServerStats, method string) int64 {
	for _, m := range st.Methods {
		if m.Method == method {
			return m.InFlight
		}
	}
	return -1
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond) // sleep-ok: polling interval of a bounded wait
	}
}

// TestRingVersionContext: a ring version reads back through contexts
// derived from the one that carries it, the innermost one wins, other
// values and cancellation pass through it, and a context without one
// reads 0.
func TestRingVersionContext(t *testing.T) {
	type otherKey struct{}
	base := context.WithValue(context.Background(), otherKey{}, "kept")
	if v := wire.CallerRingVersion(base); v != 0 {
		t.Fatalf("no version: got %d, want 0", v)
	}
	ctx := wire.WithRingVersion(base, 1<<40)
	ctx, cancel := context.WithCancelCause(wire.WithIdempotent(ctx))
	if v := wire.CallerRingVersion(ctx); v != 1<<40 {
		t.Fatalf("got %d, want %d", v, uint64(1<<40))
	}
	if v := wire.CallerRingVersion(wire.WithRingVersion(ctx, 7)); v != 7 {
		t.Fatalf("innermost: got %d, want 7", v)
	}
	if ctx.Value(otherKey{}) != "kept" {
		t.Fatal("a value under the ring version was lost")
	}
	why := errors.New("why")
	cancel(why)
	if context.Cause(ctx) != why {
		t.Fatalf("cause %v, want %v", context.Cause(ctx), why)
	}
}
