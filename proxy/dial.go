package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	nd := net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", peer.Addr)
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
	tc := tls.Client(nc, cfg)
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

// deadlines refreshes a connection's deadlines lazily: only when less than
// three quarters of the timeout remain, so a busy stream costs a clock read
// per I/O call rather than a timer update. A stalled peer is cut off after
// between 3/4 and all of the timeout.
type deadlines struct {
	read, write time.Time
}

func (d *deadlines) refreshRead(nc net.Conn, timeout time.Duration) {
	now := time.Now()
	if d.read.Sub(now) < timeout*3/4 {
		d.read = now.Add(timeout)
		nc.SetReadDeadline(d.read)
	}
}

func (d *deadlines) refreshWrite(nc net.Conn, timeout time.Duration) {
	now := time.Now()
	if d.write.Sub(now) < timeout*3/4 {
		d.write = now.Add(timeout)
		nc.SetWriteDeadline(d.write)
	}
}

// setRead sets an exact read deadline (t zero clears it).
func (d *deadlines) setRead(nc net.Conn, t time.Time) {
	d.read = t
	nc.SetReadDeadline(t)
}
