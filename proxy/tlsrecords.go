package proxy

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
)

// A client connection's TLS writes each record with a Write of its own to
// the socket under it: crypto/tls encrypts a Write's bytes into records
// of at most 16 KiB (smaller ones, about one TCP segment each and growing,
// for the first 128 KiB of a connection: dynamic record sizing), and
// hands each to the socket as it is sealed. A flush of the HTTP/2
// server's 32 KiB buffer was so two send(2)s, and more early in a
// connection: under h2load -c10 -m10 on 100 KiB responses over TLS, 6.4
// writes to the client per response, 3.3 with the records gathered
// (bench/README.md, issue 18).
//
// tlsServerConn gathers the records of one Write in tlsRecords, the
// socket under the TLS, and sends them with one write when the Write
// ends. A Write small enough to be one record (every response of a few
// hundred bytes, every HTTP/2 batch of them) goes straight through:
// nothing is copied.

// tlsBatchMin is the largest Write sent without gathering: it fits in one
// record whatever the record size in force (crypto/tls's smallest is
// about 1.1 KiB of payload, a TCP segment less its overheads).
const tlsBatchMin = 1024

// tlsBatchMax bounds the records a gathered Write holds before it sends:
// a larger Write goes out in pieces of at most this size, whole records
// each. It is the HTTP/2 server's 32 KiB flush with its records' overheads
// (up to 7 records early in a connection), so that flush is one write; a
// Write that waits on a slow client holds no more than this besides what
// it held before (the buffer goes back to a pool when the Write ends).
const tlsBatchMax = 33 << 10

var tlsBatchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, tlsBatchMax)
	return &b
}}

// tlsRecords is the socket under a client connection's TLS.
type tlsRecords struct {
	net.Conn

	// mu orders the records on the socket: taken by every Write (the
	// TLS's records, an alert from Close), and held across the socket
	// write, so a record written directly never overtakes gathered ones.
	mu     sync.Mutex
	depth  int     // gathering Writes in progress
	buf    *[]byte // the gathered records, from tlsBatchPool while depth > 0
	err    error   // the first failed socket write: every later one fails
	writes int     // socket writes made (tests)
}

// Write is the TLS's write of one record (or of a handshake flight).
func (u *tlsRecords) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return 0, u.err
	}
	if u.depth > 0 {
		b := *u.buf
		if len(b) > 0 && len(b)+len(p) > tlsBatchMax {
			if err := u.sendLocked(b); err != nil {
				return 0, err
			}
			b = b[:0]
		}
		*u.buf = append(b, p...)
		return len(p), nil
	}
	if err := u.sendLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sendLocked writes p to the socket; u.mu is held.
func (u *tlsRecords) sendLocked(p []byte) error {
	u.writes++
	if _, err := u.Conn.Write(p); err != nil {
		// The TLS keeps a failed write's error too: its records are
		// out of step with what the client received.
		u.err = err
		return err
	}
	return nil
}

// gather makes the records written until done wait and go out together.
func (u *tlsRecords) gather() {
	u.mu.Lock()
	if u.depth == 0 {
		u.buf = tlsBatchPool.Get().(*[]byte)
	}
	u.depth++
	u.mu.Unlock()
}

// done sends the gathered records, and returns the socket's error if any
// write failed.
func (u *tlsRecords) done() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.depth--
	if b := *u.buf; len(b) > 0 && u.err == nil {
		u.sendLocked(b)
	}
	*u.buf = (*u.buf)[:0]
	if u.depth == 0 {
		tlsBatchPool.Put(u.buf)
		u.buf = nil
	}
	return u.err
}

// tlsServerConn is a client connection's TLS over tlsRecords: a Write
// larger than one record goes out in one socket write (up to
// tlsBatchMax), not in one per record.
type tlsServerConn struct {
	*tls.Conn
	u *tlsRecords

	// writing counts the gathering Writes under way, closed is set by
	// Close: a Close during such a Write closes the socket (see Close).
	writing atomic.Int32
	closed  atomic.Bool
}

// newTLSServerConn is tls.Server over raw, with the records of a Write
// gathered.
func newTLSServerConn(raw net.Conn, cfg *tls.Config) *tlsServerConn {
	u := &tlsRecords{Conn: raw}
	return &tlsServerConn{Conn: tls.Server(u, cfg), u: u}
}

func (c *tlsServerConn) Write(p []byte) (int, error) {
	if len(p) <= tlsBatchMin {
		return c.Conn.Write(p)
	}
	c.writing.Add(1)
	defer c.writing.Add(-1)
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.u.gather()
	n, err := c.Conn.Write(p)
	if ferr := c.u.done(); ferr != nil && err == nil {
		// Some records did not reach the socket: what the client has
		// is unknown, and the connection is done for.
		return 0, ferr
	}
	return n, err
}

// Close sends close_notify and closes the socket, as tls.Conn's does;
// during a gathering Write it closes the socket at once, which ends that
// Write, as tls.Conn's Close does during its own Writes: the alert would
// wait for the Write's records to be sent, and a Close is what ends a
// Write stuck on a client that stopped reading (the alert's own 5 s write
// deadline bounded that wait, not the Close's caller). Either Close sees
// the Write's count or the Write sees closed: both are sequentially
// consistent.
func (c *tlsServerConn) Close() error {
	c.closed.Store(true)
	if c.writing.Load() != 0 {
		return c.u.Conn.Close()
	}
	return c.Conn.Close()
}
