package proxy

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

// TestForbiddenTrailersDropped sends trailers RFC 9110 section 6.5.1 keeps
// out of trailer sections (framing, routing, authentication, response
// control) both ways through the proxy, HTTP/1.1 and HTTP/2 clients to
// HTTP/1.1 and h2c origins: they are dropped, and their names go from the
// Trailer field, while the allowed ones (gRPC's among them) pass.
func TestForbiddenTrailersDropped(t *testing.T) {
	got := make(chan http.Header, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Clone()
		w.Header().Set("Trailer", "X-Ok, Content-Length")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.(http.Flusher).Flush() // else Go's HTTP/2 server sends a Content-Length
		w.Header().Set("X-Ok", "yes")
		for k, v := range map[string]string{"Grpc-Status": "0", "Content-Length": "99", "Set-Cookie": "a=b",
			"Transfer-Encoding": "chunked", "Host": "evil", "Location": "/elsewhere"} {
			w.Header().Set(http.TrailerPrefix+k, v)
		}
	})
	wantReq := func(t *testing.T) {
		t.Helper()
		var tr http.Header
		select {
		case tr = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the origin saw no request")
		}
		if tr.Get("X-Req-Ok") != "yes" {
			t.Errorf("request trailers at the origin %v: X-Req-Ok lost", tr)
		}
		for _, k := range []string{"Content-Length", "Host", "Transfer-Encoding", "Cookie", "Authorization"} {
			if _, ok := tr[k]; ok {
				t.Errorf("request trailers at the origin %v: forbidden %s passed", tr, k)
			}
		}
	}
	forbiddenResp := []string{"Content-Length", "Set-Cookie", "Transfer-Encoding", "Host", "Location"}
	for _, mode := range []originMode{originH1, originH2C} {
		origin := startOrigin(t, mode, nil, handler)
		p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true})
		t.Run("h1->"+origin.Protocol.String(), func(t *testing.T) {
			resp, body := rawRequest(t, p.addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"+
				"Trailer: X-Req-Ok, Content-Length\r\n\r\n2\r\nup\r\n0\r\nContent-Length: 5\r\nHost: evil\r\n"+
				"Transfer-Encoding: chunked\r\nCookie: c=d\r\nAuthorization: Basic Zm9v\r\nX-Req-Ok: yes\r\n\r\n")
			if resp.StatusCode != 200 || body != "body" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			wantReq(t)
			if resp.Trailer.Get("X-Ok") != "yes" || resp.Trailer.Get("Grpc-Status") != "0" {
				t.Errorf("response trailers %v: allowed ones lost", resp.Trailer)
			}
			for _, k := range forbiddenResp {
				if _, ok := resp.Trailer[k]; ok {
					t.Errorf("response trailers %v: forbidden %s passed", resp.Trailer, k)
				}
			}
		})
		t.Run("h2->"+origin.Protocol.String(), func(t *testing.T) {
			c, err := hostile.NewH2Conn(dialTCP(t, p.addr), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			id, err := c.SendBody(hostile.Fields(":method", "POST", ":scheme", "http", ":path", "/", ":authority", "x",
				"trailer", "x-req-ok"), "up",
				hostile.Fields("content-length", "5", "host", "evil", "cookie", "c=d", "authorization", "Basic Zm9v", "x-req-ok", "yes"))
			if err != nil {
				t.Fatal(err)
			}
			o, err := c.Await(id)
			if err != nil {
				t.Fatal(err)
			}
			if o.Status != "200" || o.Body != "body" {
				t.Fatalf("outcome %v", o)
			}
			wantReq(t)
			if !slices.Contains(o.Trailer, hostile.Field{Name: "x-ok", Value: "yes"}) ||
				!slices.Contains(o.Trailer, hostile.Field{Name: "grpc-status", Value: "0"}) {
				t.Errorf("response trailers %v: allowed ones lost", o.Trailer)
			}
			for _, f := range o.Trailer {
				if slices.Contains(forbiddenResp, http.CanonicalHeaderKey(f.Name)) {
					t.Errorf("response trailers %v: forbidden %s passed", o.Trailer, f.Name)
				}
			}
			for _, f := range o.Header {
				if f.Name == "trailer" && strings.Contains(strings.ToLower(f.Value), "content-length") {
					t.Errorf("response head announces %q", f.Value)
				}
			}
		})
	}
}

// TestH2NoContentLengthOn204: an HTTP/2 client gets a 204 without the
// Content-Length its HTTP/1.1 origin sent (RFC 9110 section 8.6; clients
// reset the stream), and a 304 with it, as it is the selected
// representation's length.
func TestH2NoContentLengthOn204(t *testing.T) {
	addr := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/204" {
				io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
			} else {
				io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nEtag: \"a\"\r\n\r\n")
			}
		}
	})
	p := startProxy(t, routerFor(t, &Peer{Addr: addr}), Config{}, ListenerConfig{Name: "http", H2C: true})
	c, err := hostile.NewH2Conn(dialTCP(t, p.addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, status string
		cl           bool
	}{{"/204", "204", false}, {"/304", "304", true}} {
		id, err := c.Send(hostile.Fields(":method", "GET", ":scheme", "http", ":path", tc.path, ":authority", "x"), false)
		if err != nil {
			t.Fatal(err)
		}
		o, err := c.Await(id)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != tc.status || o.Body != "" {
			t.Fatalf("%s: outcome %v", tc.path, o)
		}
		if has := slices.Contains(o.Header, hostile.Field{Name: "content-length", Value: "5"}); has != tc.cl {
			t.Errorf("%s: head %v, content-length: 5 wanted %v", tc.path, o.Header, tc.cl)
		}
	}
}

// TestH2TrailersOverContentLengthToH1: an HTTP/2 origin's response that
// declares a Content-Length and ends with trailers reaches an HTTP/1.1
// client that sent "TE: trailers" chunked, without the Content-Length,
// with its trailers (those the head announces, or a gRPC response's), as
// nginx does; a client that did not ask for trailers, or a response that
// announces none, keeps its Content-Length and goes without them (a
// recipient may drop trailers, RFC 9110 section 6.5.1). Forbidden
// trailers are dropped as ever. A body shorter than its Content-Length
// still fails, chunked or not.
func TestH2TrailersOverContentLengthToH1(t *testing.T) {
	origin := startOrigin(t, originH2C, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/announced", "/short":
			h.Set("Trailer", "X-Sum, Set-Cookie")
		case "/grpc":
			h.Set("Content-Type", "application/grpc")
		}
		h.Set("Content-Length", "4")
		if r.URL.Path == "/short" {
			h.Set("Content-Length", "8")
		}
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/grpc" {
			h.Set(http.TrailerPrefix+"Grpc-Status", "0")
		} else {
			h.Set(http.TrailerPrefix+"X-Sum", "abc")
			h.Set(http.TrailerPrefix+"Set-Cookie", "a=b")
		}
	}))
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true})
	for _, tc := range []struct {
		path, te string
		chunked  bool
		trailer  string // the one trailer wanted
	}{
		{"/announced", "TE: trailers\r\n", true, "X-Sum"},
		{"/grpc", "TE: trailers\r\n", true, "Grpc-Status"},
		{"/announced", "", false, ""},
		{"/announced", "TE: gzip\r\n", false, ""},
		{"/plain", "TE: trailers\r\n", false, ""},
	} {
		resp, body := rawRequest(t, p.addr, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n"+tc.te+"\r\n")
		name := tc.path + " " + strings.TrimSpace(tc.te)
		if resp.StatusCode != 200 || body != "body" {
			t.Fatalf("%s: %d %q", name, resp.StatusCode, body)
		}
		chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
		if chunked != tc.chunked || chunked == (resp.ContentLength == 4) || chunked == (resp.Header.Get("Content-Length") == "4") {
			t.Errorf("%s: Transfer-Encoding %v, Content-Length %d (field %q)", name, resp.TransferEncoding,
				resp.ContentLength, resp.Header.Get("Content-Length"))
		}
		var want []string
		if tc.trailer != "" {
			want = []string{tc.trailer}
		}
		if got := slices.Sorted(maps.Keys(resp.Trailer)); !slices.Equal(got, want) {
			t.Errorf("%s: trailers %v, want %v", name, resp.Trailer, want)
		}
		if v := resp.Trailer.Get(tc.trailer); tc.trailer != "" && v == "" {
			t.Errorf("%s: trailer %s has no value", name, tc.trailer)
		}
	}
	// Four bytes of eight: the chunked body never ends.
	c := dialTCP(t, p.addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /short HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) == 0 {
		t.Fatalf("/short: not chunked: Content-Length %d", resp.ContentLength)
	}
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("/short: a short body read as complete: %q", b)
	}
}

// TestTrailerAnnouncedOnlyWhenSent: the Trailer field goes to a client
// only with a response whose trailers reach it. An HTTP/1.1 client gets
// trailers only in a chunked body: an HTTP/2 origin's response with a
// Content-Length comes chunked to a client that sent "TE: trailers" and
// keeps its length otherwise, and an HTTP/1.0 client never gets chunked;
// a response that cannot carry trailers (an HTTP/1.1 origin's with a
// Content-Length) announces none to any client, HTTP/2 ones too. What is
// announced and sent stays as it was: an HTTP/1.1 origin's chunked
// trailers pass on chunked to an HTTP/1.1 client.
func TestTrailerAnnouncedOnlyWhenSent(t *testing.T) {
	h2origin := startOrigin(t, originH2C, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Trailer", "X-Sum")
		if r.URL.Path == "/length" {
			h.Set("Content-Length", "4")
		}
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		h.Set(http.TrailerPrefix+"X-Sum", "abc")
	}))
	h1origin := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/length" { // announces trailers it cannot send
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nContent-Length: 4\r\n\r\nbody")
			} else {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"4\r\nbody\r\n0\r\nX-Sum: abc\r\n\r\n")
			}
		}
	})
	proxies := map[string]string{
		"h2c": startProxy(t, routerFor(t, h2origin), Config{}, ListenerConfig{Name: "http", H2C: true}).addr,
		"h1":  startProxy(t, routerFor(t, &Peer{Addr: h1origin}), Config{}, ListenerConfig{Name: "http", H2C: true}).addr,
	}
	for _, tc := range []struct {
		origin, path, proto, te string
		sent                    bool // the trailer reaches the client, and only then is it announced
	}{
		{"h2c", "/length", "HTTP/1.1", "TE: trailers\r\n", true},
		{"h2c", "/length", "HTTP/1.1", "", false},
		{"h2c", "/length", "HTTP/1.1", "TE: gzip\r\n", false},
		{"h2c", "/length", "HTTP/1.0", "TE: trailers\r\n", false},
		{"h2c", "/chunked", "HTTP/1.1", "", true},
		{"h2c", "/chunked", "HTTP/1.0", "", false},
		{"h1", "/chunked", "HTTP/1.1", "", true},
		{"h1", "/chunked", "HTTP/1.1", "TE: trailers\r\n", true},
		{"h1", "/chunked", "HTTP/1.0", "", false},
		{"h1", "/length", "HTTP/1.1", "TE: trailers\r\n", false},
		{"h1", "/length", "HTTP/1.0", "", false},
	} {
		name := tc.origin + " " + tc.path + " " + tc.proto + " " + strings.TrimSpace(tc.te)
		c := dialTCP(t, proxies[tc.origin])
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET "+tc.path+" "+tc.proto+"\r\nHost: x\r\n"+tc.te+"\r\n")
		var raw strings.Builder
		resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, &raw)), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, err := io.ReadAll(resp.Body)
		c.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "body" {
			t.Fatalf("%s: %d %q %v", name, resp.StatusCode, body, err)
		}
		head, _, _ := strings.Cut(raw.String(), "\r\n\r\n")
		announced := strings.Contains(strings.ToLower(head), "\r\ntrailer:")
		if got := resp.Trailer.Get("X-Sum") == "abc"; got != tc.sent || announced != tc.sent {
			t.Errorf("%s: trailer sent %v, announced %v, want both %v; head:\n%s", name, got, announced, tc.sent, head)
		}
	}
	for origin, addr := range proxies {
		c, err := hostile.NewH2Conn(dialTCP(t, addr), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/length", "/chunked"} {
			id, err := c.Send(hostile.Fields(":method", "GET", ":scheme", "http", ":path", path, ":authority", "x"), false)
			if err != nil {
				t.Fatal(err)
			}
			o, err := c.Await(id)
			if err != nil {
				t.Fatal(err)
			}
			if o.Status != "200" || o.Body != "body" {
				t.Fatalf("h2 %s %s: outcome %v", origin, path, o)
			}
			sent := slices.Contains(o.Trailer, hostile.Field{Name: "x-sum", Value: "abc"})
			announced := slices.ContainsFunc(o.Header, func(f hostile.Field) bool { return f.Name == "trailer" })
			want := origin == "h2c" || path == "/chunked"
			if sent != want || announced != want {
				t.Errorf("h2 %s %s: trailer sent %v, announced %v, want both %v; head %v", origin, path, sent, announced, want, o.Header)
			}
		}
	}
}

// TestForwardingFieldsNotInRequestTrailers: a client's request trailers
// naming forwarding fields (X-Forwarded-For, -Host, Forwarded, X-Real-IP,
// the '_' spellings) are dropped on the way upstream, from an untrusted
// client and a trusted proxy alike, HTTP/1.1 and HTTP/2 clients to
// HTTP/1.1 and h2c origins, and their names go from the announced
// Trailer field. This proxy removes an untrusted client's forwarding
// fields from the head and writes its own there; an origin that merges
// trailers into the head (Apache httpd's MergeTrailers, Tomcat's
// allowedTrailerHeaders) took the client's "X-Forwarded-For: 6.6.6.6"
// trailer for a hop this proxy reported. Other trailers still pass.
func TestForwardingFieldsNotInRequestTrailers(t *testing.T) {
	type seen struct{ head, trailer http.Header }
	got := make(chan seen, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- seen{r.Header.Clone(), r.Trailer.Clone()}
		io.WriteString(w, "body")
	})
	spoofed := []string{"X-Forwarded-For", "X-Forwarded-Host", "X_forwarded_proto", "Forwarded", "X-Real-Ip"}
	check := func(t *testing.T) {
		t.Helper()
		var s seen
		select {
		case s = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the origin saw no request")
		}
		if s.trailer.Get("X-Req-Ok") != "yes" {
			t.Errorf("request trailers at the origin %v: X-Req-Ok lost", s.trailer)
		}
		for k, v := range s.trailer {
			if isForwardingField(k) {
				t.Errorf("request trailers at the origin %v: %s %q passed", s.trailer, k, v)
			}
		}
		for _, v := range s.head["Trailer"] {
			if l := strings.ToLower(v); strings.Contains(l, "forward") || strings.Contains(l, "real") {
				t.Errorf("the head at the origin announces %q", v)
			}
		}
	}
	for _, trusted := range []bool{false, true} {
		var nets []netip.Prefix
		if trusted {
			nets = prefixes(t, "127.0.0.0/8")
		}
		for _, mode := range []originMode{originH1, originH2C} {
			origin := startOrigin(t, mode, nil, handler)
			p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true, TrustedProxies: nets})
			name := fmt.Sprintf("trusted=%v/", trusted)
			t.Run(name+"h1->"+origin.Protocol.String(), func(t *testing.T) {
				var tr strings.Builder
				for _, k := range spoofed {
					tr.WriteString(k + ": 6.6.6.6\r\n")
				}
				resp, body := rawRequest(t, p.addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"+
					"Trailer: X-Req-Ok, X-Forwarded-For, X-Real-IP\r\n\r\n2\r\nup\r\n0\r\n"+tr.String()+"X-Req-Ok: yes\r\n\r\n")
				if resp.StatusCode != 200 || body != "body" {
					t.Fatalf("%d %q", resp.StatusCode, body)
				}
				check(t)
			})
			t.Run(name+"h2->"+origin.Protocol.String(), func(t *testing.T) {
				c, err := hostile.NewH2Conn(dialTCP(t, p.addr), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				tr := []string{"x-req-ok", "yes"}
				for _, k := range spoofed {
					tr = append(tr, strings.ToLower(k), "6.6.6.6")
				}
				id, err := c.SendBody(hostile.Fields(":method", "POST", ":scheme", "http", ":path", "/", ":authority", "x",
					"trailer", "x-req-ok, x-forwarded-for, x-real-ip"), "up", hostile.Fields(tr...))
				if err != nil {
					t.Fatal(err)
				}
				o, err := c.Await(id)
				if err != nil {
					t.Fatal(err)
				}
				if o.Status != "200" || o.Body != "body" {
					t.Fatalf("outcome %v", o)
				}
				check(t)
			})
		}
	}
}
