package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/pingora-go/pingora-go/wire"
)

// These tests run raft's network transport, as transport() builds it, over
// a port shared through a wire.Mux the way node does (the dialer sends
// wire.ProtoRaft, raft's side of the Mux takes it off), and check that no
// failure on one connection (a peer killed halfway through an RPC, an
// answer later than the caller's timeout, garbage either way, a peer
// restarted at the same address) leaves the next RPC reading anything but
// its own answer. Each RPC carries a term of its own, which the echo
// server sends back.

// muxPort is one server's shared port: the Mux, and raft's side of it.
type muxPort struct {
	mux    *wire.Mux
	raft   net.Listener
	served chan struct{}
}

// listenMux opens a Mux on addr ("127.0.0.1:0" for a new port) and
// raft's listener on it.
func listenMux(t *testing.T, addr string) *muxPort {
	t.Helper()
	var tcp net.Listener
	var err error
	for try := 0; ; try++ { // the same port again: its old sockets may linger a moment
		if tcp, err = net.Listen("tcp", addr); err == nil || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond) // sleep-ok: retrying a bind under a bounded count
	}
	if err != nil {
		t.Fatal(err)
	}
	mux, err := wire.NewMux(tcp, wire.MuxConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ml, err := mux.Listen(wire.ProtoRaft, FirstBytes()...)
	if err != nil {
		t.Fatal(err)
	}
	p := &muxPort{mux: mux, raft: protoByteStripper{ml}, served: make(chan struct{})}
	go func() { mux.Serve(); close(p.served) }()
	t.Cleanup(p.close)
	return p
}

func (p *muxPort) close() {
	p.mux.Close()
	<-p.served
}

func (p *muxPort) addr() string { return p.raft.Addr().String() }

// protoByteStripper takes wire.ProtoRaft off each connection, as node's
// raft listener does.
type protoByteStripper struct{ net.Listener }

func (l protoByteStripper) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != wire.ProtoRaft {
			c.Close()
			continue
		}
		return c, nil
	}
}

// dialProtoRaft dials addr and sends wire.ProtoRaft, as node's raftDial
// does.
func dialProtoRaft(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{wire.ProtoRaft}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// muxTransport is raft's network transport over p, with the pool and the
// pipelining transport() uses and the given RPC timeout.
func muxTransport(t *testing.T, p *muxPort, timeout time.Duration) *raft.NetworkTransport {
	t.Helper()
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: p.raft, addr: tcpAddr(p.raft.Addr().String()), dial: dialProtoRaft},
		MaxPool: 3, Timeout: timeout, MaxRPCsInFlight: noPipelining,
		Logger: hclog.NewNullLogger(),
	})
	t.Cleanup(func() { tr.Close(); tr.CloseStreams() })
	return tr
}

// serveEcho answers every AppendEntries with its term (after hold(term),
// when hold is set) and every InstallSnapshot, once its body is read, with
// its term, until the test ends.
func serveEcho(t *testing.T, tr *raft.NetworkTransport, hold func(term uint64)) {
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case rpc := <-tr.Consumer():
				answer(rpc, hold)
			}
		}
	}()
}

func answer(rpc raft.RPC, hold func(term uint64)) {
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		if hold != nil {
			hold(req.Term)
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry, Success: true}, nil)
	case *raft.InstallSnapshotRequest:
		n, err := io.Copy(io.Discard, io.LimitReader(rpc.Reader, req.Size))
		if err == nil && n != req.Size {
			err = io.ErrUnexpectedEOF
		}
		rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: err == nil}, err)
	default:
		rpc.Respond(nil, fmt.Errorf("unexpected %T", req))
	}
}

// appendTerm sends an AppendEntries carrying term to target and reports
// an answer that is not its own through t (from any goroutine).
func appendTerm(t *testing.T, tr *raft.NetworkTransport, target string, term uint64) error {
	t.Helper()
	var resp raft.AppendEntriesResponse
	err := tr.AppendEntries("peer", raft.ServerAddress(target),
		&raft.AppendEntriesRequest{Term: term, PrevLogEntry: term, Entries: []*raft.Log{{Index: term + 1, Term: term, Data: []byte("x")}}}, &resp)
	if err == nil && (resp.Term != term || resp.LastLog != term) {
		t.Errorf("AppendEntries with term %d answered with the answer to term %d (last log %d)", term, resp.Term, resp.LastLog)
		return errMisframed
	}
	return err
}

var errMisframed = errors.New("another RPC's answer")

// proxy accepts raft connections on p and hands the i-th (from 0) to
// serve, with a connection to backend opened as raft's dialer would;
// pass forwards both ways. Connections are closed when the test ends.
func proxy(t *testing.T, p *muxPort, backend string, serve func(i int, c, b net.Conn)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		p.close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := p.raft.Accept()
			if err != nil {
				return
			}
			b, err := dialProtoRaft(context.Background(), backend)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, b)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); serve(i, c, b) }()
		}
	}()
}

// pass forwards c and b both ways until either ends.
func pass(c, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }()
	go func() { io.Copy(c, b); done <- struct{}{} }()
	<-done
	c.Close()
	b.Close()
	<-done
}

// TestMuxTransportFaults: after each fault on a connection, the next
// RPCs (on a fresh connection, or a pooled one) read their own answers.
func TestMuxTransportFaults(t *testing.T) {
	garbage := []byte{0xc1, 0xff, 0x00, 0x93, 0xa3, 'b', 'a', 'd', 0xc1}
	snap := make([]byte, 64<<10)
	for _, tc := range []struct {
		name     string
		snapshot bool // the faulty RPC is an InstallSnapshot
		fault    func(c, b net.Conn)
	}{
		{"peer killed mid-AppendEntries", false, func(c, b net.Conn) {
			io.ReadFull(c, make([]byte, 20))
			c.Close()
		}},
		{"peer killed mid-InstallSnapshot", true, func(c, b net.Conn) {
			io.ReadFull(c, make([]byte, len(snap)/2))
			c.Close()
		}},
		{"garbage answer, connection kept open", false, func(c, b net.Conn) {
			io.ReadFull(c, make([]byte, 20))
			c.Write(garbage)
			io.Copy(io.Discard, c) // until the caller drops it (or the test ends)
		}},
		{"answer cut short", false, func(c, b net.Conn) {
			go io.Copy(b, c)
			var buf [3]byte // the start of the answer only
			io.ReadFull(b, buf[:])
			c.Write(buf[:])
			c.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := listenMux(t, "127.0.0.1:0")
			serveEcho(t, muxTransport(t, backend, 5*time.Second), nil)
			front := listenMux(t, "127.0.0.1:0")
			proxy(t, front, backend.addr(), func(i int, c, b net.Conn) {
				if i == 0 {
					tc.fault(c, b)
					return
				}
				pass(c, b)
			})
			tr := muxTransport(t, listenMux(t, "127.0.0.1:0"), 2*time.Second)
			var err error
			if tc.snapshot {
				var resp raft.InstallSnapshotResponse
				err = tr.InstallSnapshot("peer", raft.ServerAddress(front.addr()),
					&raft.InstallSnapshotRequest{Term: 1, Size: int64(len(snap))}, &resp, bytesReader(snap))
			} else {
				err = appendTerm(t, tr, front.addr(), 1)
			}
			if err == nil {
				t.Fatal("the faulty RPC succeeded")
			}
			for term := uint64(2); term < 6; term++ {
				if err := appendTerm(t, tr, front.addr(), term); err != nil {
					t.Fatalf("RPC %d after the fault: %v", term, err)
				}
			}
			var resp raft.InstallSnapshotResponse
			if err := tr.InstallSnapshot("peer", raft.ServerAddress(front.addr()),
				&raft.InstallSnapshotRequest{Term: 9, Size: int64(len(snap))}, &resp, bytesReader(snap)); err != nil || resp.Term != 9 || !resp.Success {
				t.Fatalf("InstallSnapshot after the fault: %+v, %v", resp, err)
			}
		})
	}
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestMuxTransportLateAnswer: an answer that comes after the caller's
// timeout is never read as the answer to the next RPC.
func TestMuxTransportLateAnswer(t *testing.T) {
	server := listenMux(t, "127.0.0.1:0")
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	serveEcho(t, muxTransport(t, server, 5*time.Second), func(term uint64) {
		if term == 1 {
			<-release
		}
	})
	t.Cleanup(free) // before serveEcho's, which waits for the held answer
	tr := muxTransport(t, listenMux(t, "127.0.0.1:0"), 300*time.Millisecond)
	if err := appendTerm(t, tr, server.addr(), 7); err != nil { // a pooled connection
		t.Fatal(err)
	}
	// raft's decoder reports the timeout as "msgpack decode error [pos 0]:
	// read tcp ...: i/o timeout", with no Unwrap: only its text tells.
	if err := appendTerm(t, tr, server.addr(), 1); err == nil || !strings.Contains(err.Error(), "i/o timeout") {
		t.Fatalf("an RPC answered after the timeout: %v, want a timeout", err)
	}
	free() // the answer to term 1 goes out now, on the connection the caller gave up
	for term := uint64(2); term < 6; term++ {
		if err := appendTerm(t, tr, server.addr(), term); err != nil {
			t.Fatalf("RPC %d after the late answer: %v", term, err)
		}
	}
}

// TestMuxTransportPeerRestarted: a peer restarted at the same address
// (raft's pool holds connections to its old process) is reached again
// within a pool's worth of failed RPCs, and no answer is another RPC's.
func TestMuxTransportPeerRestarted(t *testing.T) {
	server := listenMux(t, "127.0.0.1:0")
	addr := server.addr()
	st := muxTransport(t, server, 5*time.Second)
	serveEcho(t, st, nil)
	tr := muxTransport(t, listenMux(t, "127.0.0.1:0"), 2*time.Second)
	var wg sync.WaitGroup
	for g := range 3 { // three pooled connections
		wg.Add(1)
		go func() {
			defer wg.Done()
			appendTerm(t, tr, addr, uint64(100+g))
		}()
	}
	wg.Wait()
	st.Close()
	st.CloseStreams()
	server.close()

	again := listenMux(t, addr)
	serveEcho(t, muxTransport(t, again, 5*time.Second), nil)
	failed := 0
	for term := uint64(1); term < 10; term++ {
		if err := appendTerm(t, tr, addr, term); err != nil {
			failed++
		}
	}
	if failed > 3 {
		t.Fatalf("%d of 9 RPCs failed after the restart; want at most the 3 pooled connections", failed)
	}
}

// TestMuxTransportConcurrent: RPCs from many goroutines at once each get
// their own answer, and garbage sent to raft's side of the port by
// another client changes nothing.
func TestMuxTransportConcurrent(t *testing.T) {
	server := listenMux(t, "127.0.0.1:0")
	serveEcho(t, muxTransport(t, server, 5*time.Second), nil)
	tr := muxTransport(t, listenMux(t, "127.0.0.1:0"), 5*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g%4 == 0 { // garbage on a raft connection of its own
				if c, err := dialProtoRaft(context.Background(), server.addr()); err == nil {
					c.Write([]byte{0xff, 0xc1, 0x00, 0x01})
					c.Close()
				}
			}
			for i := range 25 {
				if err := appendTerm(t, tr, server.addr(), uint64(1000*g+i+1)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
