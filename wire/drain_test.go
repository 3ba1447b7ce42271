package wire_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// successor serves "ping" with "successor" on a listener of its own, and
// sends p's client's dials there.
func successor(t *testing.T, p stalled) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{})
	srv.Handle("ping", func(context.Context, []byte) ([]byte, error) { return []byte("successor"), nil })
	go srv.Serve(l)
	to := l.Addr().String()
	p.redirect.Store(&to)
}

// TestDrainMovesCallsToANewConnection: a draining server lets the call
// running on a connection finish, then sends goaway; the peer's client
// closes that connection and calls again on a new one (which, after a
// hand-off, reaches the successor), and no call fails.
func TestDrainMovesCallsToANewConnection(t *testing.T) {
	p := stalledPeer(t)
	if _, err := p.cl.CallRaw(ctxT(t, 5*time.Second), p.addr, "ping", nil); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		out, err := p.cl.CallRaw(ctxT(t, 10*time.Second), p.addr, "hold", nil)
		if err == nil && string(out) != "late" {
			t.Errorf("held call answered %q", out)
		}
		held <- err
	}()
	<-p.entered
	successor(t, p)
	p.srv.Drain()
	select {
	case <-p.conns()[0]:
		t.Fatal("the connection closed with a call running on it")
	case <-time.After(50 * time.Millisecond): // a goaway sent now would close it by then
	}
	p.release()
	if err := <-held; err != nil {
		t.Fatalf("the call running when the drain began: %v", err)
	}
	select {
	case <-p.conns()[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("the drained connection is still open after its last call")
	}
	if out, err := p.cl.CallRaw(ctxT(t, 5*time.Second), p.addr, "ping", nil); err != nil || string(out) != "successor" {
		t.Fatalf("call after the drain: %q, %v; want the successor's answer", out, err)
	}
	if n := len(p.conns()); n != 2 {
		t.Fatalf("%d connections dialled, want 2", n)
	}
}

// TestDrainIdleConnection: an idle connection gets goaway at once.
func TestDrainIdleConnection(t *testing.T) {
	p := stalledPeer(t)
	if _, err := p.cl.CallRaw(ctxT(t, 5*time.Second), p.addr, "ping", nil); err != nil {
		t.Fatal(err)
	}
	successor(t, p)
	p.srv.Drain()
	select {
	case <-p.conns()[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection is still open after the drain")
	}
	if out, err := p.cl.CallRaw(ctxT(t, 5*time.Second), p.addr, "ping", nil); err != nil || string(out) != "successor" {
		t.Fatalf("call after the drain: %q, %v; want the successor's answer", out, err)
	}
}

// TestDrainBusyConnection: a connection whose calls never pause gets
// goaway after drainIdleWait anyway; the call running on it is still
// answered there, and the next calls go to the successor.
func TestDrainBusyConnection(t *testing.T) {
	defer wire.SetDrainIdleWait(50 * time.Millisecond)()
	p := stalledPeer(t)
	if _, err := p.cl.CallRaw(ctxT(t, 5*time.Second), p.addr, "ping", nil); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		_, err := p.cl.CallRaw(ctxT(t, 10*time.Second), p.addr, "hold", nil)
		held <- err
	}()
	<-p.entered
	successor(t, p)
	p.srv.Drain()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := p.cl.CallRaw(ctxT(t, 5*time.Second), p.addr, "ping", nil)
		if err != nil {
			t.Fatalf("ping during the drain: %v", err)
		}
		if string(out) == "successor" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("calls still reach the draining server with a call running there")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.release()
	if err := <-held; err != nil {
		t.Fatalf("the call running when goaway was forced: %v", err)
	}
	select {
	case <-p.conns()[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("the drained connection is still open after its last call")
	}
}
