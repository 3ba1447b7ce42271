package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// countConn counts the Writes made to a connection and the bytes of each.
type countConn struct {
	net.Conn
	mu       sync.Mutex
	writes   []int
	fail     error // set: every Write fails with it
	noWriteD bool  // set: SetWriteDeadline does nothing
}

func (c *countConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	no := c.noWriteD
	c.mu.Unlock()
	if no {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *countConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes)
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		return 0, fail
	}
	return c.Conn.Write(p)
}

func (c *countConn) take() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

// tlsPair is a handshaken TLS server (made by mk over the counted raw
// connection) and its client, over a pipe.
func tlsPair(t *testing.T, version uint16, mk func(net.Conn, *tls.Config) net.Conn) (net.Conn, *tls.Conn, *countConn) {
	t.Helper()
	ca := newTestCA(t)
	cert := ca.issue(t, "localhost")
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	raw := &countConn{Conn: a}
	srv := mk(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	cl := tls.Client(b, &tls.Config{ServerName: "localhost", RootCAs: ca.pool, MaxVersion: version})
	errc := make(chan error, 1)
	go func() { errc <- cl.Handshake() }()
	if err := srv.(interface{ Handshake() error }).Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	raw.take()
	return srv, cl, raw
}

// serverWrite writes p on srv while the client reads it all, and returns
// the socket writes it took.
func serverWrite(t *testing.T, srv net.Conn, cl *tls.Conn, raw *countConn, p []byte) []int {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(p))
		_, err := io.ReadFull(cl, b)
		if err != nil {
			b = nil
		}
		got <- b
	}()
	if n, err := srv.Write(p); err != nil || n != len(p) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
	}
	if b := <-got; !bytes.Equal(b, p) {
		t.Fatal("the client read other bytes than were written")
	}
	return raw.take()
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return p
}

// TestTLSServerWriteOneSocketWrite: a Write of several records (a flush of
// the HTTP/2 server's 32 KiB buffer) reaches the socket in one write, where
// crypto/tls alone makes one per record; a Write of one record goes
// through as it is; one over tlsBatchMax in a few.
func TestTLSServerWriteOneSocketWrite(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) { testTLSServerWriteOneSocketWrite(t, version) })
	}
}

func testTLSServerWriteOneSocketWrite(t *testing.T, version uint16) {
	plain, plainCl, plainRaw := tlsPair(t, version, func(raw net.Conn, cfg *tls.Config) net.Conn { return tls.Server(raw, cfg) })
	// The control: crypto/tls writes a record at a time (dynamic record
	// sizing makes the first ones small).
	if w := serverWrite(t, plain, plainCl, plainRaw, pattern(32<<10)); len(w) < 3 {
		t.Fatalf("crypto/tls alone made %d socket writes (%v) for 32 KiB: the control no longer holds", len(w), w)
	}

	srv, cl, raw := tlsPair(t, version, func(raw net.Conn, cfg *tls.Config) net.Conn { return newTLSServerConn(raw, cfg) })
	for i := range 3 { // new connection (small records), then full ones
		if w := serverWrite(t, srv, cl, raw, pattern(32<<10)); len(w) != 1 {
			t.Fatalf("write %d: %d socket writes (%v) for 32 KiB, want 1", i, len(w), w)
		}
	}
	if w := serverWrite(t, srv, cl, raw, pattern(300)); len(w) != 1 || w[0] > 400 {
		t.Fatalf("a 300-byte write made socket writes %v, want one record", w)
	}
	w := serverWrite(t, srv, cl, raw, pattern(300<<10))
	// Whole records of up to 16 KiB each, up to tlsBatchMax a write.
	if len(w) < 300<<10/tlsBatchMax+1 || len(w) > 300<<10/(tlsBatchMax-(17<<10))+1 {
		t.Fatalf("a 300 KiB write made %d socket writes (%v), want about one per %d bytes", len(w), w, tlsBatchMax)
	}
	for _, n := range w {
		if n > tlsBatchMax {
			t.Fatalf("a socket write of %d bytes: more than tlsBatchMax", n)
		}
	}
}

// TestTLSServerWriteFailureSticks: a gathered Write whose socket write
// fails reports it, and so does every later one, small ones included: the
// TLS's records are out of step with what the client got.
func TestTLSServerWriteFailureSticks(t *testing.T) {
	srv, _, raw := tlsPair(t, tls.VersionTLS13, func(raw net.Conn, cfg *tls.Config) net.Conn { return newTLSServerConn(raw, cfg) })
	boom := errors.New("boom")
	raw.mu.Lock()
	raw.fail = boom
	raw.mu.Unlock()
	if n, err := srv.Write(pattern(20 << 10)); !errors.Is(err, boom) || n != 0 {
		t.Fatalf("Write = %d, %v; want 0, %v", n, err, boom)
	}
	before := len(raw.take())
	if _, err := srv.Write(pattern(10)); !errors.Is(err, boom) {
		t.Fatalf("a later Write: %v, want %v", err, boom)
	}
	if n := len(raw.take()); n != 0 || before != 1 {
		t.Fatalf("socket writes: %d for the failed Write (want 1), %d after it (want 0)", before, n)
	}
}

// TestTLSServerCloseEndsStuckWrite: a Close while a gathered Write waits on
// a client that stopped reading closes the socket and so ends the Write,
// as tls.Conn's Close does during its own Write. Sending close_notify
// first would wait behind the Write's records: for as long as the socket's
// write deadline allows (here none).
func TestTLSServerCloseEndsStuckWrite(t *testing.T) {
	srv, _, raw := tlsPair(t, tls.VersionTLS13, func(raw net.Conn, cfg *tls.Config) net.Conn { return newTLSServerConn(raw, cfg) })
	raw.mu.Lock()
	raw.noWriteD = true
	raw.mu.Unlock()
	wrote := make(chan error, 1)
	go func() { // the client reads nothing: the pipe's write waits
		_, err := srv.Write(pattern(32 << 10))
		wrote <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for raw.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the Write never reached the socket")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the stuck Write")
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("the stuck Write succeeded after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Write did not end with the Close")
	}
	if _, err := srv.Write(pattern(20 << 10)); err == nil {
		t.Fatal("a Write after Close succeeded")
	}
}
