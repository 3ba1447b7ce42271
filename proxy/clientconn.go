package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/proxy/h2"
)

// clientConn is one accepted client connection.
type clientConn struct {
	nc       net.Conn // the connection as served: a *tlsServerConn after the handshake
	raw      net.Conn
	lc       ListenerConfig
	clientIP string
	// trusted: the client is one of lc.TrustedProxies, whose forwarding
	// fields are believed (dropForwarding)
	trusted bool
	tls     *tls.ConnectionState
	br      *bufio.Reader
	bw      *bufio.Writer

	// state is one of the conn* constants.
	state    atomic.Int32
	drainMu  sync.Mutex
	drainAt  time.Time // zero until shutdown starts
	draining atomic.Bool
	h2       atomic.Pointer[h2.Conn] // set when handed to the HTTP/2 server
	// headDeadline is the read deadline handshake left set for the first
	// HTTP/1.1 head (zero: none)
	headDeadline time.Time
	// ipKey is the client's address as Downstream.MaxConnsPerIP counts
	// it; ipCounted while it is counted (releasePerIP).
	ipKey     ipKey
	ipCounted bool
	// h2Streams is the HTTP/2 streams being served on the connection,
	// under h2mu: each beyond the first counts against MaxConnsPerIP
	// (perIPStream), and the counts change with it.
	h2mu      sync.Mutex
	h2Streams int32
}

const (
	connNew    int32 = iota // handshake, protocol not chosen yet
	connIdle                // HTTP/1.1, waiting for the next request
	connActive              // HTTP/1.1, serving a request
	connH2                  // handed to the HTTP/2 server, which drains by GOAWAY
)

const (
	readBufSize  = 16 << 10
	writeBufSize = 16 << 10
)

// The client connections' buffers are reused: a new connection per
// request otherwise allocates and clears 32 KiB each time (15% of the CPU
// with a new connection per request).
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
)

// releaseBuffers returns the connection's buffers to their pools. Only an
// HTTP/1.1 connection's: the HTTP/2 server may still read through br (the
// sniffed preface) from a goroutine of its own after it returns.
func (c *clientConn) releaseBuffers() {
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

func (s *Server[C]) newClientConn(nc net.Conn, lc ListenerConfig) *clientConn {
	a := nc.RemoteAddr()
	return &clientConn{nc: nc, raw: nc, lc: lc, clientIP: clientIP(a), trusted: trustedPeer(lc.TrustedProxies, a)}
}

// clientIP is the address's host: for TCP straight from the IP, one
// allocation where formatting host:port and splitting it takes two.
func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().String()
	}
	ip := a.String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return ip
}

// handshake runs the TLS handshake (if the listener terminates TLS) and
// chooses the protocol: "h2" by ALPN or by the HTTP/2 preface on an h2c
// listener, else "http/1.1".
func (c *clientConn) handshake(timeout time.Duration) (string, error) {
	if c.lc.TLS != nil {
		tc := newTLSServerConn(c.raw, c.lc.TLS.serverConfig(!c.lc.DisableH2))
		c.raw.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			return "", fmt.Errorf("tls handshake: %w", err)
		}
		c.raw.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		c.nc, c.tls = tc, &st
		if st.NegotiatedProtocol == "h2" {
			return "h2", nil
		}
	}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.nc)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(c.nc)
	if c.lc.TLS == nil && c.lc.H2C {
		at := time.Now().Add(timeout)
		c.nc.SetReadDeadline(at)
		isH2, err := sniffPreface(c.br)
		if err != nil {
			return "", err
		}
		if isH2 {
			c.nc.SetReadDeadline(time.Time{})
			return "h2", nil
		}
		// The deadline stays for the first request's head: the header
		// timeout counts from the connection's first byte awaited, and
		// the runtime's deadline timer is set once a connection, not
		// three times (set, cleared, set again by serveH1).
		c.headDeadline = at
	}
	return "http/1.1", nil
}

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// sniffPreface reports whether the connection starts with the HTTP/2 client
// preface. It reads only as much as needed to tell: an HTTP/1.1 request
// differs from the preface within its first bytes, so a short HTTP/1.0
// request is never waited on.
func sniffPreface(br *bufio.Reader) (bool, error) {
	n := 1
	for {
		b, err := br.Peek(n)
		if err != nil {
			return false, err
		}
		if !bytes.Equal(b, h2Preface[:n]) {
			return false, nil
		}
		if n == len(h2Preface) {
			return true, nil
		}
		n = min(len(h2Preface), max(n+1, br.Buffered()))
	}
}

// drainDeadline returns when an idle connection must close, or zero.
func (c *clientConn) drainDeadline() time.Time {
	if !c.draining.Load() {
		return time.Time{}
	}
	c.drainMu.Lock()
	defer c.drainMu.Unlock()
	return c.drainAt
}

// startDrain asks the connection to finish: an idle HTTP/1.1 connection
// closes by at; an active one closes after its response.
func (c *clientConn) startDrain(at time.Time) {
	c.drainMu.Lock()
	c.drainAt = at
	c.drainMu.Unlock()
	c.draining.Store(true)
	if c.state.Load() == connIdle {
		c.raw.SetReadDeadline(at) // under TLS too: the deadline lives on the socket
	}
}
