package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type phaseCtx struct {
	trace []string
}

// phaseApp implements every phase, each changing something a test can see.
type phaseApp struct {
	origin, dead *Peer
	mu           sync.Mutex
	logged       []string // one line per request from Logging
}

func (a *phaseApp) NewCtx() *phaseCtx { return &phaseCtx{} }

func (a *phaseApp) EarlyRequestFilter(s *Session, c *phaseCtx) error {
	c.trace = append(c.trace, "early")
	s.Req.Header.Set("X-Early", "1")
	return nil
}

func (a *phaseApp) RequestFilter(s *Session, c *phaseCtx) (bool, error) {
	c.trace = append(c.trace, "request")
	switch s.Req.Path() {
	case "/direct":
		return true, s.Respond(http.StatusTeapot, http.Header{"X-Direct": {"yes"}}, []byte("short and stout"))
	case "/deny":
		return false, &Error{Kind: KindInternal, Status: http.StatusForbidden, Err: errors.New("denied")}
	}
	return false, nil
}

func (a *phaseApp) UpstreamPeer(s *Session, c *phaseCtx) (*Peer, error) {
	c.trace = append(c.trace, "peer")
	if s.Req.Path() == "/failover" && s.Retries == 0 {
		return a.dead, nil
	}
	return a.origin, nil
}

func (a *phaseApp) FailToConnect(s *Session, p *Peer, c *phaseCtx, err *Error) *Error {
	c.trace = append(c.trace, "fail_to_connect")
	err.Retry = true
	return err
}

func (a *phaseApp) UpstreamRequestFilter(s *Session, req *RequestHeader, c *phaseCtx) error {
	c.trace = append(c.trace, "upstream_request")
	req.Header.Set("X-Upstream-Filter", "set")
	if req.Path() == "/rewrite" {
		req.URI = "/rewritten?by=filter"
	}
	return nil
}

func (a *phaseApp) UpstreamResponseFilter(s *Session, resp *ResponseHeader, c *phaseCtx) error {
	c.trace = append(c.trace, "upstream_response")
	resp.Header.Set("X-Upstream-Response", "seen")
	return nil
}

func (a *phaseApp) ResponseFilter(s *Session, resp *ResponseHeader, c *phaseCtx) error {
	c.trace = append(c.trace, "response")
	resp.Header.Set("X-Trace", strings.Join(c.trace, ","))
	if s.Req.Path() == "/upper" {
		resp.Header.Del("Content-Length") // the body filter changes the length
	}
	return nil
}

func (a *phaseApp) ResponseBodyFilter(s *Session, chunk []byte, end bool, c *phaseCtx) ([]byte, error) {
	if s.Req.Path() == "/upper" {
		out := bytes.ToUpper(chunk)
		if end {
			out = append(out, "!"...)
		}
		return out, nil
	}
	return chunk, nil
}

func (a *phaseApp) FailToProxy(s *Session, c *phaseCtx, err error) int {
	c.trace = append(c.trace, "fail_to_proxy")
	code := StatusFor(err)
	s.Respond(code, http.Header{"X-Custom-Error": {"yes"}}, []byte("custom error page"))
	return code
}

func (a *phaseApp) Logging(s *Session, c *phaseCtx, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logged = append(a.logged, s.Req.Path())
}

var (
	_ EarlyRequestFilter[*phaseCtx]     = (*phaseApp)(nil)
	_ RequestFilter[*phaseCtx]          = (*phaseApp)(nil)
	_ UpstreamRequestFilter[*phaseCtx]  = (*phaseApp)(nil)
	_ UpstreamResponseFilter[*phaseCtx] = (*phaseApp)(nil)
	_ ResponseFilter[*phaseCtx]         = (*phaseApp)(nil)
	_ ResponseBodyFilter[*phaseCtx]     = (*phaseApp)(nil)
	_ FailToConnect[*phaseCtx]          = (*phaseApp)(nil)
	_ FailToProxy[*phaseCtx]            = (*phaseApp)(nil)
	_ Logging[*phaseCtx]                = (*phaseApp)(nil)
)

func TestPhases(t *testing.T) {
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Saw-Early", r.Header.Get("X-Early"))
		w.Header().Set("X-Saw-Filter", r.Header.Get("X-Upstream-Filter"))
		io.WriteString(w, "uri="+r.URL.RequestURI())
	}))
	app := &phaseApp{origin: origin, dead: &Peer{Addr: deadAddr(t)}}
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	c := h1Client()
	base := "http://" + p.addr

	resp, body := mustGet(t, c, base+"/plain")
	if body != "uri=/plain" || resp.Header.Get("X-Saw-Early") != "1" || resp.Header.Get("X-Saw-Filter") != "set" ||
		resp.Header.Get("X-Upstream-Response") != "seen" {
		t.Fatalf("plain: %q %v", body, resp.Header)
	}
	if got := resp.Header.Get("X-Trace"); got != "early,request,peer,upstream_request,upstream_response,response" {
		t.Fatalf("phase order %q", got)
	}
	if _, body = mustGet(t, c, base+"/rewrite"); body != "uri=/rewritten?by=filter" {
		t.Fatalf("rewrite: %q", body)
	}
	resp, body = mustGet(t, c, base+"/direct")
	if resp.StatusCode != http.StatusTeapot || body != "short and stout" || resp.Header.Get("X-Direct") != "yes" ||
		resp.Header.Get("X-Trace") != "early,request,response" {
		t.Fatalf("direct: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = mustGet(t, c, base+"/deny")
	if resp.StatusCode != http.StatusForbidden || body != "custom error page" || resp.Header.Get("X-Custom-Error") != "yes" {
		t.Fatalf("deny: %d %q", resp.StatusCode, body)
	}
	resp, body = mustGet(t, c, base+"/failover")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("X-Trace"), "peer,upstream_request,fail_to_connect,peer,upstream_request") {
		t.Fatalf("failover: %d %q trace %q", resp.StatusCode, body, resp.Header.Get("X-Trace"))
	}
	resp, body = mustGet(t, c, base+"/upper")
	if body != "URI=/UPPER!" || resp.ContentLength != -1 {
		t.Fatalf("body filter: %q (length %d)", body, resp.ContentLength)
	}
	// Logging runs after the last byte reaches the client, so the final
	// call may land just after the client has read the response.
	want := "/plain /rewrite /direct /deny /failover /upper"
	logged := func() string {
		app.mu.Lock()
		defer app.mu.Unlock()
		return strings.Join(app.logged, " ")
	}
	waitFor(t, 5*time.Second, "six Logging calls", func() bool { return len(logged()) >= len(want) })
	if got := logged(); got != want {
		t.Fatalf("Logging calls %q, want %q (exactly once each)", got, want)
	}
}
