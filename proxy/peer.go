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

// ParseProtocol parses "http1", "h2" or "h2c" (Protocols); "" means
// http1. These are the only spellings: a config document that says "h1"
// is refused everywhere alike (issue 13: node's parser refused it, the
// proxy took it).
func ParseProtocol(s string) (Protocol, error) {
	if s == "" {
		return HTTP1, nil
	}
	for _, p := range []Protocol{HTTP1, H2, H2C} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("proxy: unknown protocol %q (want %s)", s, strings.Join(Protocols(), ", "))
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
	// RootCAsID names the contents of RootCAs, for instance a digest of the
	// PEM bytes it was built from (node sets "sha256:<hex>"). Peers that
	// agree on address, protocol, TLS settings and RootCAsID share pooled
	// connections, health and metrics, also across routing tables that
	// were built with distinct but equal pools. When it is "" and RootCAs
	// is set, Router.Build fills it in by comparing RootCAs with the pools
	// of the live table (x509.CertPool.Equal), so an equal pool keeps its
	// identity; a Peer that no Router built is then told apart by the
	// pool's address, so only peers sharing the same *x509.CertPool share
	// connections (default "").
	RootCAsID string
	// InsecureSkipVerify disables certificate verification. Only for tests
	// and trusted networks.
	InsecureSkipVerify bool
	// Timeouts overrides the server's upstream timeouts; zero fields keep them.
	Timeouts UpstreamTimeouts
	// Conns caps the connections in use to the peer, with a queue for
	// the requests over the cap (see ConnLimit; default: no cap).
	Conns ConnLimit
	// Weight is the peer's share in its group's load balancing (default 1;
	// the engine itself ignores it).
	Weight int
	// Group names the upstream group the peer belongs to, for logs and
	// metrics (default "").
	Group string

	key atomic.Pointer[peerKey]
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

// peerKey is a Peer's identity, computed once: the whole key and its CA
// part.
type peerKey struct {
	key, ca string
}

// poolKey is the peer's stable identity: same address, protocol and TLS
// identity (server name, verification, RootCAsID). It keys the pooled
// connections, HTTP/2 transports and health records shared between
// requests and between routing tables, so it must never depend on a
// pointer that a config rebuild replaces (see issue 11). It is computed
// once per Peer.
func (p *Peer) poolKey() string {
	if k := p.key.Load(); k != nil {
		return k.key
	}
	k := p.identity(p.caIdentity())
	p.key.CompareAndSwap(nil, k)
	return p.key.Load().key
}

// caIdentity names the roots that verify the peer: the system's, the
// caller's RootCAsID, or else the pool's address (see RootCAsID).
func (p *Peer) caIdentity() string {
	switch {
	case p.RootCAs == nil:
		return "system"
	case p.RootCAsID != "":
		return "ca:" + p.RootCAsID
	}
	return fmt.Sprintf("pool:%p", p.RootCAs)
}

// identity builds p's key with ca as the identity of its roots.
func (p *Peer) identity(ca string) *peerKey {
	var b strings.Builder
	b.WriteString(p.Protocol.String())
	b.WriteByte('|')
	b.WriteString(p.Addr)
	if p.UsesTLS() {
		b.WriteString("|tls|")
		b.WriteString(p.ServerName())
		b.WriteByte('|')
		b.WriteString(strconv.FormatBool(p.InsecureSkipVerify))
		b.WriteByte('|')
		b.WriteString(ca)
	}
	return &peerKey{key: b.String(), ca: ca}
}

func (p *Peer) String() string { return p.Addr }
