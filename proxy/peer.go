package proxy

import (
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
)

// Protocol is the protocol spoken to an upstream peer.
type Protocol uint8

// The upstream protocols.
const (
	// HTTP1 is HTTP/1.1, over TLS when Peer.TLS is set.
	HTTP1 Protocol = iota
	// H2 is HTTP/2 over TLS (ALPN "h2").
	H2
	// H2C is HTTP/2 over cleartext TCP with prior knowledge.
	H2C
)

func (p Protocol) String() string {
	switch p {
	case H2:
		return "h2"
	case H2C:
		return "h2c"
	}
	return "http1"
}

// ParseProtocol parses "http1", "h2" or "h2c".
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "http1", "", "h1", "http/1.1":
		return HTTP1, nil
	case "h2":
		return H2, nil
	case "h2c":
		return H2C, nil
	}
	return 0, fmt.Errorf("proxy: unknown protocol %q (want http1, h2 or h2c)", s)
}

// Peer is an upstream server a request is sent to. UpstreamPeer returns one;
// the engine never modifies it, so one Peer may serve many requests at once.
type Peer struct {
	// Addr is "host:port" (an IP literal, or a name resolved at dial time).
	Addr string
	// Protocol is the protocol spoken to the peer (default HTTP1).
	Protocol Protocol
	// TLS dials HTTP1 peers with TLS; H2 always uses TLS and H2C never does.
	TLS bool
	// SNI is the TLS server name sent and verified; "" means the host of Addr.
	SNI string
	// RootCAs verifies the peer's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// InsecureSkipVerify disables certificate verification. Only for tests
	// and trusted networks.
	InsecureSkipVerify bool
	// Timeouts overrides the server's upstream timeouts; zero fields keep them.
	Timeouts UpstreamTimeouts
	// Weight is the peer's share in its group's load balancing (default 1;
	// the engine itself ignores it).
	Weight int
	// Group names the upstream group the peer belongs to, for logs and
	// metrics (default "").
	Group string

	key atomic.Pointer[string]
}

// UsesTLS reports whether connections to p are TLS.
func (p *Peer) UsesTLS() bool { return p.Protocol == H2 || p.Protocol == HTTP1 && p.TLS }

// ServerName returns the TLS server name for p.
func (p *Peer) ServerName() string {
	if p.SNI != "" {
		return p.SNI
	}
	host, _, err := net.SplitHostPort(p.Addr)
	if err != nil {
		return p.Addr
	}
	return host
}

// poolKey identifies the connections that may be shared between requests to
// p: same address, protocol and TLS identity. It is computed once per Peer.
func (p *Peer) poolKey() string {
	if k := p.key.Load(); k != nil {
		return *k
	}
	var b strings.Builder
	b.WriteString(p.Protocol.String())
	b.WriteByte('|')
	b.WriteString(p.Addr)
	if p.UsesTLS() {
		b.WriteString("|tls|")
		b.WriteString(p.ServerName())
		b.WriteByte('|')
		b.WriteString(strconv.FormatBool(p.InsecureSkipVerify))
		fmt.Fprintf(&b, "|%p", p.RootCAs)
	}
	k := b.String()
	p.key.Store(&k)
	return k
}

func (p *Peer) String() string { return p.Addr }
