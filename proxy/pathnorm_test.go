package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// TestPercentEncodedPathRoutedAsDecoded: a path spelled with percent-encoded
// unreserved characters or "%2e%2e" segments is routed as its decoded form,
// and the upstream receives that form, so a rule for "/small" (its body
// limit, rate limits, cache settings) cannot be dodged with "/%73mall" that
// the origin would serve as "/small" anyway. The query is left alone.
func TestPercentEncodedPathRoutedAsDecoded(t *testing.T) {
	origin := func(name string, got chan<- string) *Peer {
		return startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r.RequestURI
			w.Header().Set("X-Upstream", name)
		}))
	}
	smallURIs, restURIs := make(chan string, 1), make(chan string, 1)
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{
		{Name: "small", Peers: []*Peer{origin("small", smallURIs)}},
		{Name: "rest", Peers: []*Peer{origin("rest", restURIs)}},
	}, []RouteConfig{{Host: "*", PathPrefix: "/small", Upstream: "small"}, {Host: "*", Upstream: "rest"}}, "v1")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	p := startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http", H2C: true})

	cases := []struct{ target, want string }{
		{"/%73mall/a?q=%73", "/small/a?q=%73"},
		{"/x/%2e%2e/small/a", "/small/a"},
		{"/sm%61ll%2fb", "/small%2Fb"},
	}
	for _, c := range cases {
		check := func(proto string, resp *http.Response) {
			t.Helper()
			if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "small" {
				<-restURIs
				t.Fatalf("%s %s: status %d, routed to %q, want the /small route", proto, c.target, resp.StatusCode, resp.Header.Get("X-Upstream"))
			}
			if got := <-smallURIs; got != c.want {
				t.Fatalf("%s %s: upstream received %q, want %q", proto, c.target, got, c.want)
			}
		}
		resp, _ := rawRequest(t, p.addr, "GET "+c.target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		check("HTTP/1.1", resp)

		req, err := http.NewRequest(http.MethodGet, "http://"+p.addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = c.target // sent as :path byte for byte
		resp, err = h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check("h2c", resp)
	}
}

// TestEncodedSlashRoutedAsSlash: a path that spells a route's slash as
// "%2F" takes that route (an origin that decodes "%2F" serves it the
// route's path), and the upstream receives it as sent, "%2F" and all,
// for an origin that tells the two apart.
func TestEncodedSlashRoutedAsSlash(t *testing.T) {
	got := make(chan string, 1)
	login := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.RequestURI
		w.Header().Set("X-Upstream", "login")
	}))
	rest := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "rest")
	}))
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{{Name: "login", Peers: []*Peer{login}}, {Name: "rest", Peers: []*Peer{rest}}},
		[]RouteConfig{{Host: "*", PathPrefix: "/api/login", Upstream: "login"}, {Host: "*", Upstream: "rest"}}, "v1")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	p := startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http"})
	resp, _ := rawRequest(t, p.addr, "GET /api%2flogin?a=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "login" {
		t.Fatalf("status %d, routed to %q, want the /api/login route", resp.StatusCode, resp.Header.Get("X-Upstream"))
	}
	if uri := <-got; uri != "/api%2Flogin?a=b" {
		t.Fatalf("upstream received %q, want /api%%2Flogin?a=b", uri)
	}
}

func TestNormalizeURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/a/b?x=%61&y=/../", "/a/b?x=%61&y=/../"},
		{"/%61/../b?%2e%2e", "/b?%2e%2e"},
		{"/x/%2e%2e/", "/"},
		{"*", "*"},
		{"example.com:443", "example.com:443"},
		{"", ""},
	} {
		if got := normalizeURI(tc.in); got != tc.want {
			t.Errorf("normalizeURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { normalizeURI("/api/v1/users?id=1&x=%2e") }); n != 0 {
		t.Errorf("a normal URI costs %v allocations", n)
	}
}

// TestParamHidingSlashRefused: a path whose ';' parameter holds an
// encoded slash is answered 400 over HTTP/1.1 and HTTP/2 and never
// forwarded. Tomcat reads "/static/x;%2F..%2Faccount" as "/static/x", Go
// and nginx as "/account"; matched as the first (route.MatchPath drops
// parameters before it reads "%2F"), it took a caching "/static/" route
// to a Go origin's "/account" (cache deception), and matched as the
// second, "/api/login;%2F..%2Fx" would dodge a rate limit on a Tomcat
// origin's "/api/login".
func TestParamHidingSlashRefused(t *testing.T) {
	reached := make(chan string, 4)
	up := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached <- r.RequestURI }))
	p := startProxy(t, routerFor(t, up), Config{}, ListenerConfig{Name: "http", H2C: true})
	resp, _ := rawRequest(t, p.addr, "GET /static/x;%2F..%2Faccount HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 400 {
		t.Fatalf("HTTP/1.1: status %d, want 400", resp.StatusCode)
	}
	c := h2cClient()
	res, err := c.Do(&http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: p.addr, Opaque: "/static/x;%2f..%2faccount"}, Host: "x", Header: http.Header{}})
	var se http2.StreamError
	switch {
	case err == nil:
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("HTTP/2: status %d, want 400 (or a reset stream)", res.StatusCode)
		}
	case !errors.As(err, &se):
		t.Fatalf("HTTP/2: %v, want 400 or a reset stream", err)
	}
	select {
	case u := <-reached:
		t.Fatalf("the origin got %q", u)
	default:
	}
}

// TestParamOnDotSegmentRefused: a dot segment with a ';' parameter
// ("..;", ".;x", "%2e%2e;") is answered 400 over HTTP/1.1 (origin and
// absolute form) and HTTP/2, and never forwarded. Tomcat reads
// "/private/..;/public/x" as "/public/x", Go, nginx and Express as a path
// under "/private/": matched as the first (route.MatchPath), it took a
// route for "/public/" (a caching one: the private page a Go origin
// served under that URL was stored, cache deception) and dodged the
// rules for "/private/"; matched as the second, it would dodge a Tomcat
// origin's "/public/" rules. No reading serves every origin: Jetty
// refuses such a path by default (an ambiguous path parameter), and so
// does the proxy, as it does a parameter that hides a slash.
func TestParamOnDotSegmentRefused(t *testing.T) {
	addr, reached := twoRouteProxy(t, func(r *http.Request) string { return r.RequestURI })
	wantRefused(t, addr, reached, []string{"/private/..;/public/x", "/private/%2e%2e;x=1/public/x", "/private/.;/x",
		"http://x/private/..;/public/x"}, "/private/..;/public/x")
	// A parameter on any other segment is still forwarded as it was.
	wantForwarded(t, addr, reached, "/public/x;v=1/y;z", "public /public/x;v=1/y;z")
}

// TestEncodedSlashDotSegmentRefused: a dot segment that only an encoded
// slash bounds ("/private/..%2Fpublic/x") is answered 400 over HTTP/1.1
// and HTTP/2, and never forwarded. Go and nginx decode "%2F" and read
// "/public/x", as route.MatchPath does; Express and Rack route on the
// path as sent, where ".." is no segment, and serve a page under
// "/private/" (this test's origins route so): matched as the first, the
// request took a caching "/public/" route to that page (cache
// deception) and dodged the rules for "/private/". Tomcat and Jetty
// refuse an encoded slash by default; the proxy refuses the ones that
// make a dot segment, which no reading agrees on.
func TestEncodedSlashDotSegmentRefused(t *testing.T) {
	addr, reached := twoRouteProxy(t, func(r *http.Request) string { return r.URL.EscapedPath() })
	wantRefused(t, addr, reached, []string{"/private/..%2Fpublic/x", "/private/..%2fpublic/x", "/private%2F..%2Fpublic/x",
		"/private/x%2F%2e%2E/../public/x", "http://x/private/..%2Fpublic/x", "/public/x%2F.",
		"/private%2F..;x/public/x"}, // Go: "/private/..;x/public/x"
		"/private/..%2Fpublic/x")
	// An encoded slash that makes no dot segment is forwarded as it was.
	wantForwarded(t, addr, reached, "/public%2Fx..%2F.y", "public /public%2Fx..%2F.y")
	wantForwarded(t, addr, reached, "/private/../public/x%2Fy", "public /public/x%2Fy")
}

// TestBackslashDotSegmentRefused: IIS and ASP.NET read a backslash, raw or
// encoded ("%5C"), as a slash. "/public/..\private/x" is "/private/x" to
// them and a page under "/public/" to Go, nginx and Express: it took a
// caching "/public/" route to an IIS origin's private page (cache
// deception) and dodged the rules for "/private/". It is answered 400 over
// HTTP/1.1 and HTTP/2 and never forwarded; a backslash that makes no dot
// segment is matched as a slash ("/public\x" takes the "/public/" route)
// and forwarded as it came.
func TestBackslashDotSegmentRefused(t *testing.T) {
	addr, reached := twoRouteProxy(t, func(r *http.Request) string { return r.RequestURI })
	wantRefused(t, addr, reached, []string{`/public/..\private/x`, "/public/..%5Cprivate/x", "/public/..%5cprivate/x",
		`/public/x\..\..\private/y`, `http://x/public/..\private/x`, `/public/x;\..\private`}, "/public/..%5Cprivate/x")
	wantForwarded(t, addr, reached, `/public\x`, `public /public\x`)
	wantForwarded(t, addr, reached, "/public%5Cx", "public /public%5Cx")
	wantForwarded(t, addr, reached, `/publicx\y`, `rest /publicx\y`)
}

// TestPercentUNotationRefused: IIS's HTTP.sys decodes %uNNNN by default
// (PercentUAllowed) before it resolves dot segments, so
// "/public/%u002e%u002e/private/x" is "/private/x" to an IIS origin,
// while the proxy matched it as a path under "/public/" (a caching route
// stored the private page) and "/api%u002flogin" dodged a rule for
// "/api/login". Such a path is refused (400; HTTP/2: or the stream reset)
// and reaches no origin. The origin here is raw, as IIS is: Go's server
// refuses the escape itself. Another character so spelt is forwarded.
func TestPercentUNotationRefused(t *testing.T) {
	reached := make(chan string, 8)
	origin := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		reached <- strings.TrimSpace(line)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http", H2C: true})
	wantRefused(t, p.addr, reached, []string{"/public/%u002e%u002e/private/x", "/public/%U002E%u002E/private/x",
		"/public/..%u005cprivate/x", "/api%u002flogin", "http://x/public/%u002e%u002e/private/x"},
		"/public/%u002e%u002e/private/x")
	wantForwarded(t, p.addr, reached, "/a%u0041", "GET /a%u0041 HTTP/1.1")
}

// twoRouteProxy starts a proxy (HTTP/1.1 and h2c) that routes "/public/"
// to one origin and every other path to another; each origin sends to
// reached its name ("public", "rest") and the request's path as uri reads
// it.
func twoRouteProxy(t *testing.T, uri func(*http.Request) string) (string, chan string) {
	t.Helper()
	reached := make(chan string, 8)
	origin := func(name string) *Peer {
		return startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached <- name + " " + uri(r)
		}))
	}
	public, rest := origin("public"), origin("rest")
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{{Name: "public", Peers: []*Peer{public}}, {Name: "rest", Peers: []*Peer{rest}}},
		[]RouteConfig{{Host: "*", PathPrefix: "/public/", Upstream: "public"}, {Host: "*", Upstream: "rest"}}, "v1")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	return startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http", H2C: true}).addr, reached
}

// wantRefused checks that each HTTP/1.1 target, and h2 as an HTTP/2
// :path, is answered 400 (HTTP/2: or the stream reset) and reaches no
// origin.
func wantRefused(t *testing.T, addr string, reached <-chan string, h1 []string, h2 string) {
	t.Helper()
	for _, target := range h1 {
		resp, _ := rawRequest(t, addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 400 {
			t.Errorf("HTTP/1.1 %s: status %d, want 400", target, resp.StatusCode)
		}
	}
	res, err := h2cClient().Do(&http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: addr, Opaque: h2}, Host: "x", Header: http.Header{}})
	var se http2.StreamError
	switch {
	case err == nil:
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("HTTP/2 %s: status %d, want 400 (or a reset stream)", h2, res.StatusCode)
		}
	case !errors.As(err, &se):
		t.Fatalf("HTTP/2 %s: %v, want 400 or a reset stream", h2, err)
	}
	select {
	case u := <-reached:
		t.Fatalf("an origin got %q", u)
	default:
	}
}

// wantForwarded checks that target is answered 200 and reached as want.
func wantForwarded(t *testing.T, addr string, reached <-chan string, target, want string) {
	t.Helper()
	resp, _ := rawRequest(t, addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d, want 200", target, resp.StatusCode)
	}
	if u := <-reached; u != want {
		t.Fatalf("%s reached %q, want %q", target, u, want)
	}
}

// TestCaseInsensitiveRoute: a route marked CaseInsensitive takes every
// spelling of its prefix's letters, for an origin that serves "/ADMIN" as
// "/admin"; a case-sensitive route only its own. The upstream receives
// the path as sent.
func TestCaseInsensitiveRoute(t *testing.T) {
	got := make(chan string, 1)
	admin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.RequestURI
		w.Header().Set("X-Upstream", "admin")
	}))
	rest := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "rest")
	}))
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{{Name: "admin", Peers: []*Peer{admin}}, {Name: "rest", Peers: []*Peer{rest}}},
		[]RouteConfig{{Host: "*", PathPrefix: "/admin/", CaseInsensitive: true, Upstream: "admin"}, {Host: "*", Upstream: "rest"}}, "v1")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	p := startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http"})
	for target, want := range map[string]string{"/admin/x": "/admin/x", "/ADMIN/x": "/ADMIN/x", "/Admin/x": "/Admin/x", "/%41dmin/x": "/Admin/x"} {
		resp, _ := rawRequest(t, p.addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "admin" {
			t.Fatalf("%s: status %d, routed to %q, want the /admin/ route", target, resp.StatusCode, resp.Header.Get("X-Upstream"))
		}
		if uri := <-got; uri != want {
			t.Fatalf("%s: upstream received %q, want %q", target, uri, want)
		}
	}
	resp, _ := rawRequest(t, p.addr, "GET /admins HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.Header.Get("X-Upstream") != "rest" {
		t.Fatalf("/admins routed to %q, want rest", resp.Header.Get("X-Upstream"))
	}
}
