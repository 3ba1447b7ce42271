package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestTLSSessionResumption: a returning client resumes its session (a
// TLS 1.3 PSK from a session ticket, or a TLS 1.2 ticket) instead of a
// full handshake, on h2 and on HTTP/1.1 over TLS.
func TestTLSSessionResumption(t *testing.T) {
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, routerFor(t, h1Recorder(t).Peer), Config{}, ListenerConfig{Name: "tls", TLS: certs})
	for _, tc := range []struct {
		name    string
		version uint16
		alpn    string
	}{
		{"tls1.3 h2", tls.VersionTLS13, "h2"},
		{"tls1.3 http/1.1", tls.VersionTLS13, "http/1.1"},
		{"tls1.2 h2", tls.VersionTLS12, "h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{
				RootCAs: ca.pool, ServerName: "proxy.test", NextProtos: []string{tc.alpn},
				MinVersion: tc.version, MaxVersion: tc.version,
				ClientSessionCache: tls.NewLRUClientSessionCache(4),
			}
			if resumed := tlsVisit(t, p.addr, cfg); resumed {
				t.Fatal("the first handshake resumed")
			}
			if resumed := tlsVisit(t, p.addr, cfg); !resumed {
				t.Fatal("the second handshake did not resume")
			}
		})
	}
}

// tlsVisit handshakes with the proxy, reads what it sends first (a TLS 1.3
// server sends its session ticket after the handshake) and reports
// whether the session was resumed.
func tlsVisit(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	st := c.ConnectionState()
	if st.NegotiatedProtocol != cfg.NextProtos[0] {
		t.Fatalf("ALPN %q, want %q", st.NegotiatedProtocol, cfg.NextProtos[0])
	}
	if st.NegotiatedProtocol == "h2" {
		// The server's SETTINGS frame: the ticket came before it.
		if _, err := io.ReadFull(c, make([]byte, 9)); err != nil {
			t.Fatal(err)
		}
		return st.DidResume
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return st.DidResume
}
