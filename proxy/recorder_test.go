package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pingora-go/pingora-go/proxy/h2"
	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

// seenRequest is a request an origin received.
type seenRequest struct {
	Method, Target, Host string
	Header               http.Header
	Body                 string
}

// recorder is an origin that records every request it receives and, for
// HTTP/1.1, every raw byte; it answers 200 "ok".
type recorder struct {
	Peer *Peer
	mu   sync.Mutex
	raw  bytes.Buffer
	seen []seenRequest
}

func (r *recorder) add(s seenRequest) {
	r.mu.Lock()
	r.seen = append(r.seen, s)
	r.mu.Unlock()
}

// take returns what was received since the last take, and forgets it.
func (r *recorder) take() (string, []seenRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	raw, seen := r.raw.String(), r.seen
	r.raw.Reset()
	r.seen = nil
	return raw, seen
}

type teeConn struct {
	net.Conn
	r *recorder
}

func (c teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.r.mu.Lock()
	c.r.raw.Write(p[:n])
	c.r.mu.Unlock()
	return n, err
}

// h1Recorder is an HTTP/1.1 origin that reads requests from raw bytes.
func h1Recorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Peer = &Peer{Addr: rawPeer(t, func(nc net.Conn) {
		defer nc.Close()
		br := bufio.NewReader(teeConn{nc, r})
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			r.add(seenRequest{Method: req.Method, Target: req.RequestURI, Host: req.Host, Header: req.Header, Body: string(body)})
			if _, err := io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})}
	return r
}

// h2Recorder is an HTTP/2 origin (h2c with prior knowledge) on proxy/h2.
func h2Recorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Peer = &Peer{Addr: rawPeer(t, func(nc net.Conn) {
		defer nc.Close()
		c := h2.NewConn(nc, nil, h2.Config{}, func(st *h2.Stream) {
			body, _ := io.ReadAll(st)
			r.add(seenRequest{Method: st.Method, Target: st.Path, Host: st.Authority, Header: st.Header, Body: string(body)})
			st.WriteHead(200, http.Header{"Content-Length": {"2"}})
			st.Write([]byte("ok"))
			st.Finish(nil)
		})
		c.Serve()
	}), Protocol: H2C}
	return r
}

// hostileEnv is one proxy per upstream kind, each with a cleartext
// listener (HTTP/1.1 and h2c) and a TLS one (h2 and HTTP/1.1 by ALPN).
type hostileEnv struct {
	ca *testCA
	// per upstream kind ("h1", "h2"): the origin and the two listeners
	origins map[string]*recorder
	plain   map[string]*testProxy[struct{}]
	secure  map[string]*testProxy[struct{}]
}

// newHostileEnv starts the origins and proxies; app makes each proxy's
// App for its origin's peer.
func newHostileEnv(t *testing.T, app func(*Peer) App[struct{}]) *hostileEnv {
	t.Helper()
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	e := &hostileEnv{ca: ca, origins: map[string]*recorder{"h1": h1Recorder(t), "h2": h2Recorder(t)},
		plain: map[string]*testProxy[struct{}]{}, secure: map[string]*testProxy[struct{}]{}}
	for kind, rec := range e.origins {
		a := app(rec.Peer)
		e.plain[kind] = startProxy(t, a, Config{}, ListenerConfig{Name: "plain", H2C: true})
		e.secure[kind] = startProxy(t, a, Config{}, ListenerConfig{Name: "tls", TLS: certs})
	}
	return e
}

// dial connects to the proxy of upstream kind up on listener ln: "h1" and
// "h2c" on the cleartext listener, "h1tls" and "h2tls" on the TLS one
// (ALPN http/1.1 or h2).
func (e *hostileEnv) dial(t *testing.T, up, ln string) net.Conn {
	t.Helper()
	nc := dialTCP(t, e.proxy(up, ln).addr)
	if !strings.HasSuffix(ln, "tls") {
		return nc
	}
	proto := "http/1.1"
	if ln == "h2tls" {
		proto = "h2"
	}
	tc := tls.Client(nc, &tls.Config{RootCAs: e.ca.pool, ServerName: "proxy.test", NextProtos: []string{proto}})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != proto {
		t.Fatalf("TLS to the proxy: %v, ALPN %q", err, tc.ConnectionState().NegotiatedProtocol)
	}
	return tc
}

// h2 opens a raw HTTP/2 connection to the proxy of upstream kind up.
func (e *hostileEnv) h2(t *testing.T, up, ln string) *hostile.H2Conn {
	t.Helper()
	c, err := hostile.NewH2Conn(e.dial(t, up, ln), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// h1 sends raw bytes to the proxy of upstream kind up and reads one
// response.
func (e *hostileEnv) h1(t *testing.T, up, ln, raw string) (*http.Response, string) {
	t.Helper()
	return rawExchange(t, e.dial(t, up, ln), raw)
}

// proxy is the proxy of upstream kind up that serves listener kind ln.
func (e *hostileEnv) proxy(up, ln string) *testProxy[struct{}] {
	if strings.HasSuffix(ln, "tls") {
		return e.secure[up]
	}
	return e.plain[up]
}

// expectOnly checks that the origin received exactly one request since the
// last take, the valid one for path.
func (r *recorder) expectOnly(t *testing.T, path string) {
	t.Helper()
	raw, seen := r.take()
	if len(seen) != 1 || seen[0].Target != path {
		t.Fatalf("origin received %d requests %+v, want only %s", len(seen), seen, path)
	}
	if r.Peer.Protocol == HTTP1 && !strings.HasPrefix(raw, "GET "+path+" HTTP/1.1\r\n") {
		t.Fatalf("origin received bytes %q before the valid request", raw)
	}
}

// rejectedCounts returns pingora_downstream_rejected_total by reason.
func rejectedCounts(p *testProxy[struct{}]) map[string]float64 {
	return labelCounts(p.srv.metrics.rejected)
}

// labelCounts returns a one-label counter vector's values by label value.
func labelCounts(c prometheus.Collector) map[string]float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	out := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		m.Write(&d)
		for _, l := range d.GetLabel() {
			out[l.GetValue()] = d.GetCounter().GetValue()
		}
	}
	return out
}

// countedOnce checks that between two rejectedCounts exactly one request
// was counted, under reason.
func countedOnce(t *testing.T, before, after map[string]float64, reason string) {
	t.Helper()
	var total float64
	for k, v := range after {
		total += v - before[k]
	}
	if after[reason]-before[reason] != 1 || total != 1 {
		t.Fatalf("counted %v -> %v; want exactly one more under %q", before, after, reason)
	}
}
