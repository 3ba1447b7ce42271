package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

var (
	upstreamKinds = []string{"h1", "h2"}
	okHead        = hostile.Fields(":method", "GET", ":scheme", "https", ":path", "/ok", ":authority", "proxy.test")
)

func routerApp(t *testing.T) func(*Peer) App[struct{}] {
	return func(p *Peer) App[struct{}] { return routerFor(t, p) }
}

// TestH2MalformedRefused (issue 11, class 1): every malformed HTTP/2
// request head, on the h2c and the TLS listener, to an HTTP/1.1 and an
// HTTP/2 upstream, is reset with PROTOCOL_ERROR, counted once under its
// reason, and never forwarded: after a valid request on the same
// connection, the origin has received that one alone (its raw bytes, for
// HTTP/1.1).
func TestH2MalformedRefused(t *testing.T) {
	e := newHostileEnv(t, routerApp(t))
	for _, up := range upstreamKinds {
		for _, ln := range []string{"h2c", "h2tls"} {
			p, rec := e.proxy(up, ln), e.origins[up]
			for _, tc := range hostile.H2Malformed {
				t.Run(ln+"->"+up+"/"+tc.Name, func(t *testing.T) {
					before := rejectedCounts(p)
					c := e.h2(t, up, ln)
					id, err := c.Send(tc.Fields, tc.Split)
					if err != nil {
						t.Fatal(err)
					}
					if o, err := c.Await(id); err != nil || !o.Reset || o.Code != http2.ErrCodeProtocol {
						t.Fatalf("got %v (%v), want RST_STREAM PROTOCOL_ERROR", o, err)
					}
					countedOnce(t, before, rejectedCounts(p), tc.Reason)
					id, _ = c.Send(okHead, false)
					if o, err := c.Await(id); err != nil || o.Status != "200" {
						t.Fatalf("valid request after: %v %v", o, err)
					}
					rec.expectOnly(t, "/ok")
				})
			}
		}
	}
}

// TestH2EdgeCasesForwarded: the valid edge cases of the same class reach
// either upstream with the target and Host the client meant, and without
// HTTP2-Settings.
func TestH2EdgeCasesForwarded(t *testing.T) {
	e := newHostileEnv(t, routerApp(t))
	for _, up := range upstreamKinds {
		for _, ln := range []string{"h2c", "h2tls"} {
			c := e.h2(t, up, ln)
			for _, tc := range hostile.H2Accepted {
				id, err := c.Send(tc.Fields, tc.Split)
				if err != nil {
					t.Fatal(err)
				}
				if o, err := c.Await(id); err != nil || o.Status != "200" {
					t.Fatalf("%s->%s %s: %v %v", ln, up, tc.Name, o, err)
				}
				_, seen := e.origins[up].take()
				if len(seen) != 1 || seen[0].Target != tc.Upstream() || seen[0].Host != tc.Host || seen[0].Header.Get("Http2-Settings") != "" {
					t.Fatalf("%s->%s %s: origin received %+v, want %s for %s", ln, up, tc.Name, seen, tc.Upstream(), tc.Host)
				}
			}
		}
	}
}

// TestH1MalformedRefused: the HTTP/1.1 forms of the class and the
// smuggling shapes, on the cleartext and TLS listeners, to either
// upstream: answered with their status, counted under their reason,
// nothing forwarded.
func TestH1MalformedRefused(t *testing.T) {
	e := newHostileEnv(t, routerApp(t))
	for _, up := range upstreamKinds {
		for _, ln := range []string{"h1", "h1tls"} {
			p, rec := e.proxy(up, ln), e.origins[up]
			for _, tc := range hostile.H1Malformed {
				t.Run(ln+"->"+up+"/"+tc.Name, func(t *testing.T) {
					before := rejectedCounts(p)
					if resp, _ := e.h1(t, up, ln, tc.Raw); resp.StatusCode != tc.Status {
						t.Fatalf("status %d, want %d", resp.StatusCode, tc.Status)
					}
					countedOnce(t, before, rejectedCounts(p), tc.Reason)
					if resp, body := e.h1(t, up, ln, "GET /ok HTTP/1.1\r\nHost: proxy.test\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
						t.Fatalf("valid request after: %d %q", resp.StatusCode, body)
					}
					rec.expectOnly(t, "/ok")
				})
			}
		}
	}
}

// spoiler is a RouterApp whose UpstreamRequestFilter spoils the request
// as hostile.Unwritable[X-Spoil] says, and whose Logging passes each
// request's error on (Logging may run after the client has its response).
type spoiler struct {
	RouterApp
	logged chan error
}

func (a *spoiler) UpstreamRequestFilter(s *Session, req *RequestHeader, _ struct{}) error {
	v := req.Header.Get("X-Spoil")
	if v == "" {
		return nil
	}
	delete(req.Header, "X-Spoil")
	i, _ := strconv.Atoi(v)
	hostile.Unwritable[i].Apply(&req.Method, &req.URI, &req.Host, req.Header)
	return nil
}

func (a *spoiler) Logging(_ *Session, _ struct{}, err error) { a.logged <- err }

func (a *spoiler) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-a.logged:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no Logging call")
		return nil
	}
}

// TestUnwritableUpstreamRequest (defence in depth): a phase that puts CR,
// LF, a space or another bad byte into the method, URI, Host or a field
// fails the request with 500 and KindInvalidUpstreamRequest, and the
// upstream receives nothing, over every listener kind and to either
// upstream protocol.
func TestUnwritableUpstreamRequest(t *testing.T) {
	apps := map[*Peer]*spoiler{}
	e := newHostileEnv(t, func(p *Peer) App[struct{}] {
		a := &spoiler{RouterApp: routerFor(t, p), logged: make(chan error, 4)}
		apps[p] = a
		return a
	})
	clients := map[string]func(up string) (*http.Client, string){
		"h1":  func(up string) (*http.Client, string) { return h1Client(), "http://" + e.plain[up].addr },
		"h2c": func(up string) (*http.Client, string) { return h2cClient(), "http://" + e.plain[up].addr },
		"h2tls": func(up string) (*http.Client, string) {
			return tlsClient(e.ca.pool, "proxy.test", true), "https://" + e.secure[up].addr
		},
	}
	for _, up := range upstreamKinds {
		rec := e.origins[up]
		app := apps[rec.Peer]
		for ln, mk := range clients {
			c, base := mk(up)
			for i, sp := range hostile.Unwritable {
				req, _ := http.NewRequest("GET", base+"/spoil", nil)
				req.Header.Set("X-Spoil", strconv.Itoa(i))
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s->%s %s: %v", ln, up, sp.Name, err)
				}
				resp.Body.Close()
				lastErr := app.next(t)
				var pe *Error
				if resp.StatusCode != 500 || !errors.As(lastErr, &pe) || pe.Kind != KindInvalidUpstreamRequest {
					t.Fatalf("%s->%s %s: status %d, error %v; want 500 invalid_upstream_request", ln, up, sp.Name, resp.StatusCode, lastErr)
				}
				if resp, body := mustGet(t, c, base+"/ok"); resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("%s->%s valid request after %s: %d %q", ln, up, sp.Name, resp.StatusCode, body)
				}
				app.next(t)
				rec.expectOnly(t, "/ok")
			}
		}
	}
}

// TestRejectedLoggedAndTimeoutCounted: a head that does not arrive within
// HeaderTimeout is answered 408 and counted as header_timeout, and a
// refused request is logged with its reason.
func TestRejectedLoggedAndTimeoutCounted(t *testing.T) {
	var logged logtest.Buffer
	cfg := Config{ErrorLog: slog.New(slog.NewTextHandler(&logged, nil))}
	cfg.Downstream.HeaderTimeout = 200 * time.Millisecond
	p := startProxy(t, routerFor(t, h1Recorder(t).Peer), cfg, ListenerConfig{Name: "plain", H2C: true})
	before := rejectedCounts(p)
	if resp, _ := rawRequest(t, p.addr, "GET / HTTP/1.1\r\nHost: proxy.test\r\n"); resp.StatusCode != 408 {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	countedOnce(t, before, rejectedCounts(p), "header_timeout")
	c, err := hostile.NewH2Conn(dialTCP(t, p.addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := c.Send(hostile.Fields(":method", "GET", ":scheme", "http", ":path", "/a b", ":authority", "proxy.test"), false)
	if o, err := c.Await(id); err != nil || !o.Reset {
		t.Fatalf("%v %v", o, err)
	}
	waitFor(t, 5*time.Second, "the log line", func() bool {
		s := logged.String()
		return strings.Contains(s, `msg="request refused"`) && strings.Contains(s, "reason=invalid_target") && strings.Contains(s, "proto=HTTP/2")
	})
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// TestFirstHeadTimeoutFromAccept: a connection's first request head must
// be whole HeaderTimeout after the accept, the wait for its first byte
// included: a client that waits, then sends half a head and waits again,
// each time for less than HeaderTimeout, gets 408, on a plain listener and
// on one that sniffs for the h2c preface alike. The listener is the net
// package's: Listen's TCP_DEFER_ACCEPT has the kernel accept only at the
// first byte (TestDeferAcceptTimeouts covers that one).
func TestFirstHeadTimeoutFromAccept(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) {
			t.Parallel()
			var cfg Config
			cfg.Downstream.HeaderTimeout = time.Second
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			p := startProxyOn(t, routerFor(t, h1Recorder(t).Peer), cfg, ListenerConfig{Name: "plain", H2C: h2c}, ln)
			c := dialTCP(t, p.addr)
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// 0.7 s, then the first bytes, then 0.7 s more: 1.4 s in all
			// against a 1 s timeout, 0.7 s from the first byte.
			time.Sleep(700 * time.Millisecond)
			io.WriteString(c, "GET / HTTP/1.1\r\n")
			time.Sleep(700 * time.Millisecond)
			io.WriteString(c, "Host: proxy.test\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d, want 408", resp.StatusCode)
			}
		})
	}
}
