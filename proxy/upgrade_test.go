package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

func TestAllowedUpgrade(t *testing.T) {
	t.Parallel()
	ws := []string{"websocket"}
	for _, tc := range []struct {
		offer   string
		allowed []string
		want    string
	}{
		{"websocket", ws, "websocket"},
		{"WebSocket", ws, "WebSocket"},
		{"websocket/13", ws, "websocket/13"},
		{" websocket ,\th2c", ws, "websocket"},
		{"h2c, websocket", ws, "websocket"},
		{"h2c", ws, ""},
		{"h2c", []string{"h2c", "websocket"}, ""},
		{"H2C", []string{"H2C"}, ""},
		{"h2, HTTP/2.0, http/1.1", []string{"h2", "http"}, ""},
		{"web socket", ws, ""},
		{"websocket/", ws, ""},
		{"/13", ws, ""},
		{"websocket", nil, ""},
		{"websocket", []string{}, ""},
		{"echo, websocket", []string{"echo", "websocket"}, "echo, websocket"},
		{"", ws, ""},
	} {
		if got := allowedUpgrade(tc.offer, tc.allowed); got != tc.want {
			t.Errorf("allowedUpgrade(%q, %q) = %q, want %q", tc.offer, tc.allowed, got, tc.want)
		}
	}
}

// checkForwarded checks what an origin received for an upgrade request:
// the Upgrade value forwarded (with "Connection: Upgrade") or, when want
// is "", a plain request with no trace of the upgrade; never
// HTTP2-Settings.
func checkForwarded(t *testing.T, rec *recorder, want, body string) {
	t.Helper()
	raw, seen := rec.take()
	if len(seen) != 1 {
		t.Fatalf("origin received %d requests", len(seen))
	}
	h := seen[0].Header
	got := strings.Join(h["Upgrade"], ", ")
	conn := strings.ToLower(strings.Join(h["Connection"], ", "))
	switch {
	case got != want:
		t.Fatalf("origin received Upgrade %q, want %q", got, want)
	case want != "" && conn != "upgrade":
		t.Fatalf("origin received Connection %q with Upgrade %q", conn, got)
	case want == "" && (conn != "" || strings.Contains(strings.ToLower(raw), "upgrade")):
		t.Fatalf("a plain request carried Connection %q, bytes %q", conn, raw)
	case h.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(raw), "http2-settings"):
		t.Fatalf("origin received HTTP2-Settings: %q", raw)
	case seen[0].Body != body:
		t.Fatalf("origin received body %q, want %q", seen[0].Body, body)
	}
	if rec.Peer.Protocol == HTTP1 && want == "" && strings.Contains(strings.ToLower(raw), "h2c") {
		t.Fatalf("h2c reached the origin: %q", raw)
	}
}

// TestUpgradeSmugglingRefused (issue 11, class 2): every member of the h2c
// smuggling class, on the HTTP/1.1 cleartext and TLS listeners, to an
// HTTP/1.1 and an HTTP/2 upstream: only an allowed protocol (websocket by
// default) is forwarded as an upgrade, to HTTP/1.1 upstreams only; the
// rest is served as a plain request with its upgrade fields removed.
func TestUpgradeSmugglingRefused(t *testing.T) {
	e := newHostileEnv(t, routerApp(t))
	for _, up := range upstreamKinds {
		for _, ln := range []string{"h1", "h1tls"} {
			for _, tc := range hostile.Upgrades {
				t.Run(ln+"->"+up+"/"+tc.Name, func(t *testing.T) {
					resp, body := e.h1(t, up, ln, tc.Head+"Host: proxy.test\r\n\r\n"+tc.Body)
					if resp.StatusCode != 200 || body != "ok" {
						t.Fatalf("%d %q, want the origin's 200", resp.StatusCode, body)
					}
					want := tc.Forwarded
					if up == "h2" {
						want = "" // HTTP/2 upstreams are never upgraded
					}
					checkForwarded(t, e.origins[up], want, tc.Body)
				})
			}
		}
	}
}

// upgradesApp is a RouterApp whose RequestFilter then sets
// Session.Upgrades, as a phase may.
type upgradesApp struct {
	RouterApp
	set []string
}

func (a upgradesApp) RequestFilter(s *Session, c struct{}) (bool, error) {
	handled, err := a.RouterApp.RequestFilter(s, c)
	s.Upgrades = a.set
	return handled, err
}

// TestUpgradePerRoute: a route's list replaces the default, an empty one
// allows nothing, and h2c stays refused when a phase lists it.
func TestUpgradePerRoute(t *testing.T) {
	rec := h1Recorder(t)
	for _, tc := range []struct {
		name, offer, want string
		app               App[struct{}]
	}{
		{"route allows echo: echo", "echo", "echo", routeWith(t, RouteConfig{Upgrades: []string{"echo"}}, rec.Peer)},
		{"route allows echo: websocket", "websocket", "", routeWith(t, RouteConfig{Upgrades: []string{"echo"}}, rec.Peer)},
		{"route allows echo: both", "websocket, echo", "echo", routeWith(t, RouteConfig{Upgrades: []string{"echo"}}, rec.Peer)},
		{"route allows none", "websocket", "", routeWith(t, RouteConfig{Upgrades: []string{}}, rec.Peer)},
		{"phase lists h2c", "h2c", "", upgradesApp{routerFor(t, rec.Peer), []string{"h2c", "websocket"}}},
		{"phase lists h2c: websocket", "h2c, websocket", "websocket", upgradesApp{routerFor(t, rec.Peer), []string{"h2c", "websocket"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, tc.app, Config{}, ListenerConfig{Name: "http"})
			resp, body := rawRequest(t, p.addr, "GET / HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: "+tc.offer+"\r\nConnection: Upgrade\r\n"+
				"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			checkForwarded(t, rec, tc.want, "")
		})
	}
}

func TestRouteUpgradesValidated(t *testing.T) {
	r := newTestRouter(t)
	peers := []*Peer{{Addr: "127.0.0.1:1"}}
	for _, tc := range []struct {
		list []string
		ok   bool
	}{
		{nil, true}, {[]string{}, true}, {[]string{"websocket", "echo"}, true},
		{[]string{"h2c"}, false}, {[]string{"websocket", "H2C"}, false}, {[]string{"h2"}, false}, {[]string{"HTTP"}, false},
		{[]string{"websocket/13"}, false}, {[]string{""}, false}, {[]string{"web socket"}, false},
	} {
		_, err := r.Build([]UpstreamConfig{{Name: "up", Peers: peers}}, []RouteConfig{{Upstream: "up", Upgrades: tc.list}}, "v")
		if (err == nil) != tc.ok {
			t.Errorf("Upgrades %q: err %v, want ok=%v", tc.list, err, tc.ok)
		}
	}
}

// switchingOrigin answers every request with the raw response head resp
// and then closes.
func switchingOrigin(t *testing.T, resp string) *Peer {
	return &Peer{Addr: rawPeer(t, func(nc net.Conn) {
		defer nc.Close()
		if _, err := http.ReadRequest(bufio.NewReader(nc)); err != nil {
			return
		}
		io.WriteString(nc, resp)
	})}
}

// TestUnexpected101Refused: a 101 is followed only when its Upgrade names
// a protocol the request offered; a 101 to a plain request (an upgrade the
// proxy refused) or to another protocol is a 502, on both HTTP/1.1
// listener kinds.
func TestUnexpected101Refused(t *testing.T) {
	const (
		toH2C   = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
		toWS    = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
		noField = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"
		twoWays = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n"
	)
	for _, tc := range []struct {
		name, origin, upgrade string
		status                int
	}{
		{"101 h2c to a plain request", toH2C, "", 502},
		{"101 h2c to refused h2c", toH2C, "h2c", 502},
		{"101 h2c to websocket", toH2C, "websocket", 502},
		{"101 websocket to a plain request", toWS, "", 502},
		{"101 websocket to refused foo", toWS, "foo", 502},
		{"101 without Upgrade", noField, "websocket", 502},
		{"101 to two protocols", twoWays, "websocket", 502},
		{"101 websocket to websocket", toWS, "websocket", 101},
	} {
		for _, ln := range []string{"h1", "h1tls"} {
			t.Run(ln+"/"+tc.name, func(t *testing.T) {
				e := newHostileEnv(t, func(*Peer) App[struct{}] { return routerFor(t, switchingOrigin(t, tc.origin)) })
				head := "GET / HTTP/1.1\r\nHost: proxy.test\r\n"
				if tc.upgrade != "" {
					head += "Connection: Upgrade\r\nUpgrade: " + tc.upgrade + "\r\n"
				}
				resp, _ := e.h1(t, "h1", ln, head+"\r\n")
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
			})
		}
	}
}

// logErrApp is a RouterApp whose Logging phase passes on each request's
// error.
type logErrApp struct {
	RouterApp
	errs chan error
}

func (a logErrApp) Logging(s *Session, _ struct{}, err error) { a.errs <- err }

// TestUpgradeRefusedErrorNamesOrigin: the error of a 101 to another
// protocol than the one offered names the origin's Upgrade, read before
// its connection is released. It was formatted after: the connection's
// parser, recycled with it (upConnPool), had already blanked the value
// ("to [\"\"]"), and another request taking the upConn at once wrote its
// own response's field values there, which the error log then showed.
func TestUpgradeRefusedErrorNamesOrigin(t *testing.T) {
	addr := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		// Four fields first: the parser's value arena has grown to its
		// size for this head by the time it holds Upgrade's value.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nUpgrade: other-proto\r\nConnection: upgrade\r\n\r\n")
	})
	app := logErrApp{routerFor(t, &Peer{Addr: addr}), make(chan error, 1)}
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	err = <-app.errs
	if err == nil || !strings.Contains(err.Error(), `"other-proto"`) {
		t.Fatalf("error %v, want it to name the origin's Upgrade \"other-proto\"", err)
	}
}
