package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// dialer opens upstream connections: TCP with a connect timeout, then TLS
// with SNI, certificate verification and ALPN when the peer needs it.
type dialer struct {
	metrics  *metrics
	sessions tls.ClientSessionCache // shared, so reconnects resume TLS sessions
}

func newDialer(m *metrics) *dialer {
	return &dialer{metrics: m, sessions: tls.NewLRUClientSessionCache(1024)}
}

// dial connects to peer. alpn is the protocol to offer over TLS ("h2" or
// "http/1.1"); it is ignored for cleartext peers.
func (d *dialer) dial(ctx context.Context, peer *Peer, t UpstreamTimeouts, alpn string) (net.Conn, error) {
	start := time.Now()
	var nc net.Conn
	var err error
	if ap, perr := netip.ParseAddrPort(peer.Addr); perr == nil {
		nc, err = dialIP(ctx, ap, t.Connect)
	} else {
		// A name to resolve. TCP keep-alive off, as dialIP's.
		nd := net.Dialer{Timeout: t.Connect, KeepAlive: -1}
		nc, err = nd.DialContext(ctx, "tcp", peer.Addr)
		if err == nil {
			nc = wrapDialed(nc)
		}
	}
	if err != nil {
		e := classifyDial(err)
		d.metrics.upstreamErrors.WithLabelValues(e.Kind.String()).Inc()
		return nil, e
	}
	d.metrics.connectDuration.Observe(time.Since(start).Seconds())
	if !peer.UsesTLS() {
		return nc, nil
	}
	cfg := &tls.Config{
		ServerName:         peer.ServerName(),
		RootCAs:            peer.RootCAs,
		InsecureSkipVerify: peer.InsecureSkipVerify,
		NextProtos:         []string{alpn},
		ClientSessionCache: d.sessions,
		MinVersion:         tls.VersionTLS12,
	}
	tc := tls.Client(&tlsUnder{Conn: nc}, cfg)
	hctx, cancel := context.WithTimeout(ctx, t.TLSHandshake)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		d.metrics.upstreamErrors.WithLabelValues(KindTLSHandshake.String()).Inc()
		return nil, &Error{Kind: KindTLSHandshake, Source: Upstream, Retry: true, Err: err}
	}
	if alpn == "h2" && tc.ConnectionState().NegotiatedProtocol != "h2" {
		tc.Close()
		return nil, &Error{Kind: KindTLSHandshake, Source: Upstream, Retry: true,
			Err: fmt.Errorf("peer %s did not negotiate h2 by ALPN", peer.Addr)}
	}
	return tc, nil
}

// tlsUnder is the socket under an upstream connection's TLS. Records
// that came after the response the TLS client needed stay in its
// buffers, read off the socket with the response: an idle connection's
// socket can then be empty (the pool's peek sees nothing) while the
// connection holds bytes the next request would read as its answer.
// tlsBuffered looks for them.
type tlsUnder struct {
	net.Conn
	probing bool // Read fails at once (tlsBuffered); the owner's goroutine only
}

// errTLSProbe is what tlsUnder.Read returns while probing. Temporary, so
// the TLS client does not keep it as the connection's error.
var errTLSProbe error = timeoutError("proxy: probing an idle TLS connection's buffers")

func (u *tlsUnder) Read(b []byte) (int, error) {
	if u.probing {
		return 0, errTLSProbe
	}
	return u.Conn.Read(b)
}

// SyscallConn is the socket's raw connection (the pool's peek).
func (u *tlsUnder) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := u.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("proxy: no raw connection under TLS")
}

// peekRawConn: see peekRawConner.
func (u *tlsUnder) peekRawConn() syscall.RawConn {
	if pc, ok := u.Conn.(peekRawConner); ok {
		return pc.peekRawConn()
	}
	rc, _ := u.SyscallConn()
	return rc
}

// tlsBuffered reports whether tc, over u, holds bytes read from the
// socket and not yet read from it: whole records, or what one decrypted
// held beyond what was read. A read that would ask the socket fails at
// once instead; nothing is read from the socket.
func (u *tlsUnder) tlsBuffered(tc *tls.Conn) bool {
	var b [1]byte
	u.probing = true
	n, err := tc.Read(b[:])
	u.probing = false
	return n > 0 || err != errTLSProbe
}

// clockBase anchors the engine's monotonic clock readings: monoNow costs
// one clock read where time.Now costs two (wall and monotonic), and the
// hot path reads the clock several times per request.
var clockBase = time.Now()

// monoNow is the time since clockBase.
func monoNow() time.Duration { return time.Since(clockBase) }

// deadlines sets a connection's deadlines lazily: a refresh moves the
// deadline only when it is more than a slack (an eighth of the timeout, at
// most a second) short of the timeout from now, or later than that, so a
// busy connection costs a clock read per I/O call rather than a timer
// update. A stalled peer is cut off after between the timeout less the
// slack and the whole timeout. Deadlines are kept as monoNow readings;
// 0 means none.
type deadlines struct {
	read, write time.Duration
}

// due reports whether a deadline at cur needs moving to now+timeout.
func due(cur, now, timeout time.Duration) bool {
	want := now + timeout
	return cur == 0 || cur > want || cur < want-min(timeout/8, time.Second)
}

func (d *deadlines) refreshRead(nc net.Conn, timeout time.Duration) {
	d.refreshReadAt(nc, monoNow(), timeout)
}

func (d *deadlines) refreshReadAt(nc net.Conn, now, timeout time.Duration) {
	if due(d.read, now, timeout) {
		d.read = now + timeout
		nc.SetReadDeadline(clockBase.Add(d.read))
	}
}

func (d *deadlines) refreshWrite(nc net.Conn, timeout time.Duration) {
	now := monoNow()
	if due(d.write, now, timeout) {
		d.write = now + timeout
		nc.SetWriteDeadline(clockBase.Add(d.write))
	}
}

// setRead sets an exact read deadline (t zero clears it).
func (d *deadlines) setRead(nc net.Conn, t time.Time) {
	d.read = 0
	if !t.IsZero() {
		d.read = max(t.Sub(clockBase), 1)
	}
	nc.SetReadDeadline(t)
}

// adoptRead records t as the read deadline already set on the connection.
func (d *deadlines) adoptRead(t time.Time) { d.read = max(t.Sub(clockBase), 1) }

// readPassed reports whether the read deadline is set and passed at now.
func (d *deadlines) readPassed(now time.Duration) bool { return d.read != 0 && d.read <= now }
