package proxy

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/internal/logtest"
)

func prefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// fakeAddr is a net.Addr of another network than TCP.
type fakeAddr struct{ network, s string }

func (a fakeAddr) Network() string { return a.network }
func (a fakeAddr) String() string  { return a.s }

func tcpAddr(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// TestTrustedPeer: a peer is trusted when its address lies in one of the
// listener's networks, the first and last address of a network included
// and the neighbours outside it not; IPv4-mapped peers match IPv4
// networks; no network, or a peer that is no IP address, is never trusted.
func TestTrustedPeer(t *testing.T) {
	t.Parallel()
	nets := prefixes(t, "192.0.2.8/30", "10.0.0.0/8", "2001:db8:1::/48", "fe80::/10", "198.51.100.7/32")
	cases := []struct {
		name string
		nets []netip.Prefix
		addr net.Addr
		want bool
	}{
		{"no networks", nil, tcpAddr("10.1.2.3:5000"), false},
		{"IPv4 inside", nets, tcpAddr("10.1.2.3:5000"), true},
		{"IPv4 first of /30", nets, tcpAddr("192.0.2.8:1"), true},
		{"IPv4 last of /30", nets, tcpAddr("192.0.2.11:1"), true},
		{"IPv4 below /30", nets, tcpAddr("192.0.2.7:1"), false},
		{"IPv4 above /30", nets, tcpAddr("192.0.2.12:1"), false},
		{"IPv4 /32 itself", nets, tcpAddr("198.51.100.7:1"), true},
		{"IPv4 next to /32", nets, tcpAddr("198.51.100.6:1"), false},
		{"IPv4 last of /8", nets, tcpAddr("10.255.255.255:1"), true},
		{"IPv4 after /8", nets, tcpAddr("11.0.0.0:1"), false},
		{"IPv4-mapped IPv6", nets, tcpAddr("[::ffff:10.9.8.7]:1"), true},
		{"IPv6 first of /48", nets, tcpAddr("[2001:db8:1::]:1"), true},
		{"IPv6 last of /48", nets, tcpAddr("[2001:db8:1:ffff:ffff:ffff:ffff:ffff]:1"), true},
		{"IPv6 after /48", nets, tcpAddr("[2001:db8:2::]:1"), false},
		{"IPv6 before /48", nets, tcpAddr("[2001:db8:0:ffff:ffff:ffff:ffff:ffff]:1"), false},
		{"IPv6 link-local with zone", nets, &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, true},
		{"IPv6 outside", nets, tcpAddr("[2001:db9::1]:1"), false},
		{"other network, IP address", nets, fakeAddr{"udp", "10.0.0.1:53"}, true},
		{"unix socket", nets, fakeAddr{"unix", "/run/p.sock"}, false},
		{"everything", prefixes(t, "0.0.0.0/0", "::/0"), tcpAddr("[2001:db8::1]:1"), true},
	}
	for _, tc := range cases {
		if got := trustedPeer(tc.nets, tc.addr); got != tc.want {
			t.Errorf("%s: trustedPeer(%v) = %v, want %v", tc.name, tc.addr, got, tc.want)
		}
	}
}

// TestIsForwardingField: the X-Forwarded-* family, Forwarded and
// X-Real-Ip, in any case and with '_' for '-', and nothing else.
func TestIsForwardingField(t *testing.T) {
	t.Parallel()
	yes := []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix",
		"X-Forwarded-Ssl", "X-Forwarded-Client-Cert", "Forwarded", "X-Real-Ip", "X_forwarded_host", "X-forwarded_proto",
		"x-forwarded-for", "X_real_ip", "FORWARDED"}
	no := []string{"", "X", "X-Forwarded", "X-Forwarded-", "Forward", "Forwarded-For", "Xforwarded-For", "X-Real-Ip-Addr",
		"X-Forwardedfor", "Accept", "Via", "X-Request-Id", "X-Real-Ipx", "Y-Forwarded-For"}
	for _, k := range yes {
		if !isForwardingField(k) {
			t.Errorf("isForwardingField(%q) = false", k)
		}
	}
	for _, k := range no {
		if isForwardingField(k) {
			t.Errorf("isForwardingField(%q) = true", k)
		}
	}
}

// forgedFields are what a client that lies about earlier hops sends.
var forgedFields = http.Header{
	"X-Forwarded-For":   {"203.0.113.9"},
	"X-Forwarded-Proto": {"https"},
	"X-Forwarded-Host":  {"evil.test"},
	"X-Forwarded-Port":  {"1337"},
	"Forwarded":         {"for=203.0.113.9;host=evil.test;proto=https"},
	"X-Real-Ip":         {"203.0.113.9"},
}

// TestForwardingFieldsUpstream: through HTTP/1.1 and HTTP/2, an
// untrusted client's forwarding fields never reach the upstream, which
// gets X-Forwarded-For, -Proto and -Host as the proxy saw the connection,
// one value each; a trusted client's pass on with the proxy's values
// appended. The listener's networks are 127.0.0.2/31 (untrusted: the
// client at 127.0.0.1 is just below it) and 127.0.0.0/31 (trusted: it is
// its last address).
func TestForwardingFieldsUpstream(t *testing.T) {
	seen := make(chan http.Header, 1)
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	for _, tc := range []struct {
		name    string
		nets    []netip.Prefix
		trusted bool
	}{
		{"untrusted, no networks", nil, false},
		{"untrusted, next network", prefixes(t, "127.0.0.2/31", "::1/128"), false},
		{"trusted", prefixes(t, "127.0.0.0/31"), true},
	} {
		p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true, TrustedProxies: tc.nets})
		for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				c := h1Client()
				if proto == "HTTP/2" {
					c = h2cClient()
				}
				req, _ := http.NewRequest("GET", "http://"+p.addr+"/f", nil)
				req.Host = "shop.test"
				for k, v := range forgedFields {
					req.Header[k] = v
				}
				if proto == "HTTP/1.1" {
					req.Header["X_Forwarded_Host"] = []string{"evil2.test"}
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				h := <-seen
				checkForwardingFields(t, h, tc.trusted)
			})
		}
	}
}

func checkForwardingFields(t *testing.T, h http.Header, trusted bool) {
	t.Helper()
	want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "shop.test"}
	if trusted {
		for k, v := range want {
			want[k] = forgedFields.Get(k) + ", " + v
		}
		for _, k := range []string{"Forwarded", "X-Forwarded-Port", "X-Real-Ip"} {
			want[k] = forgedFields.Get(k)
		}
	}
	for k, v := range want {
		if got := strings.Join(h[k], " | "); got != v {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
	if !trusted {
		for k, v := range h {
			if isForwardingField(k) && want[k] == "" {
				t.Errorf("upstream received the client's %s: %q", k, v)
			}
		}
	}
}

// BenchmarkForwardingFields measures a request's forwarding work as a
// connection of each kind does it: the arrival's dropForwarding for an
// untrusted client, then the upstream copy (buildUpstreamRequest), on a
// typical browser head with and without forged fields. "trusted" is what
// every client cost before listeners had trusted networks (the append).
// Each iteration first refills the head, alike in every case.
func BenchmarkForwardingFields(b *testing.B) {
	plain := http.Header{
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},
		"Accept":          {"*/*"},
		"Accept-Language": {"en-US,en;q=0.9"},
		"Accept-Encoding": {"gzip, deflate, br"},
		"Referer":         {"https://www.example.com/"},
		"Cookie":          {"session=0123456789abcdef; theme=dark"},
		"Sec-Fetch-Mode":  {"no-cors"},
		"Sec-Fetch-Site":  {"same-origin"},
	}
	forged := plain.Clone()
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
		forged[k] = forgedFields[k]
	}
	for _, bc := range []struct {
		name    string
		head    http.Header
		trusted bool
	}{
		{"untrusted/plain", plain, false},
		{"untrusted/forged", forged, false},
		{"trusted/plain", plain, true},
		{"trusted/forged", forged, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := &RequestHeader{Method: "GET", URI: "/assets/app.js", Host: "www.example.com", ProtoMajor: 1, ProtoMinor: 1,
				Header: make(http.Header, 16)}
			sess := &Session{Req: req, ClientIP: "192.0.2.10"}
			var dst RequestHeader
			b.ReportAllocs()
			for b.Loop() {
				clear(req.Header)
				for k, v := range bc.head {
					req.Header[k] = v
				}
				if !bc.trusted {
					dropForwarding(req.Header)
				}
				buildUpstreamRequest(sess, &dst, "https", "", "")
			}
			if got := dst.Header.Get("X-Forwarded-Host"); got == "" {
				b.Fatal("no X-Forwarded-Host")
			}
		})
	}
}

// ipLimiter records the client address each request is limited by.
type ipLimiter struct{ seen chan string }

func (l ipLimiter) Limit(s *Session, _ *LimitDecision) LimitDecision {
	l.seen <- s.RealIP()
	return LimitDecision{}
}

// TestRealIPBehindTrustedProxy: behind a trusted proxy the client is the
// rightmost X-Forwarded-For address outside trusted_proxies (nginx's
// real_ip_recursive), which the rate limiter and client_ip hashing use.
// Before, they used the connection's peer, the balancer: behind one, every
// client shared one per-IP limit, so one client's flood had everyone
// refused (measured on a node: a second client's first request got 429).
func TestRealIPBehindTrustedProxy(t *testing.T) {
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	l := ipLimiter{seen: make(chan string, 1)}
	var logged logtest.Buffer
	trusted := startProxy(t, routerFor(t, origin), Config{Limiter: l, AccessLog: slog.New(slog.NewJSONHandler(&logged, nil))}, ListenerConfig{Name: "lb", H2C: true,
		TrustedProxies: prefixes(t, "127.0.0.0/8", "10.1.0.0/16")})
	untrusted := startProxy(t, routerFor(t, origin), Config{Limiter: l}, ListenerConfig{Name: "edge", H2C: true})
	for _, tc := range []struct {
		addr string
		xff  []string
		want string
	}{
		{trusted.addr, []string{"203.0.113.9, 198.51.100.7"}, "198.51.100.7"},
		{trusted.addr, []string{"203.0.113.9", "198.51.100.7, 10.1.2.3"}, "198.51.100.7"}, // a trusted hop skipped, across lines
		{trusted.addr, []string{"203.0.113.9,2001:db8::1"}, "2001:db8::1"},
		{trusted.addr, []string{"198.51.100.7, not-an-ip"}, "127.0.0.1"}, // unreadable: the peer
		{trusted.addr, []string{"10.1.0.1"}, "127.0.0.1"},                // all trusted: the peer
		{trusted.addr, nil, "127.0.0.1"},                                 // nothing said
		{untrusted.addr, []string{"198.51.100.7"}, "127.0.0.1"},          // not believed
	} {
		for _, c := range []*http.Client{h1Client(), h2cClient()} {
			req, _ := http.NewRequest("GET", "http://"+tc.addr+"/x", nil)
			req.Header["X-Forwarded-For"] = tc.xff
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := <-l.seen; got != tc.want {
				t.Errorf("X-Forwarded-For %q on %s: limited as %q, want %q", tc.xff, tc.addr, got, tc.want)
			}
		}
	}
	// The access log keeps the peer as "client" and adds the client it
	// reported as "real_ip" (nginx's $realip_remote_addr and $remote_addr).
	waitFor(t, 5*time.Second, "the trusted listener's 12 access log records", func() bool { return len(logged.Lines()) >= 12 })
	var withReal int
	for _, line := range logged.Lines() {
		var rec struct {
			Client string `json:"client"`
			RealIP string `json:"real_ip"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Client != "127.0.0.1" {
			t.Fatalf("access log line %s: %v", line, err)
		}
		if rec.RealIP != "" {
			withReal++
			if rec.RealIP != "198.51.100.7" && rec.RealIP != "2001:db8::1" {
				t.Errorf("real_ip %q in %s", rec.RealIP, line)
			}
		}
	}
	if withReal != 6 {
		t.Errorf("%d access log lines carry real_ip, want 6 (the three cases that name a client, over h1 and h2c)", withReal)
	}
}

// TestAppendFieldInKeepsSlotUnwritten: rebuilding a forwarding field with
// the value its slot holds writes nothing. A failed HTTP/2 attempt leaves
// its header map, whose X-Forwarded-For names the slot, with the
// transport, whose writer may still read it while the next attempt
// rebuilds the fields: the race detector flagged the write before.
func TestAppendFieldInKeepsSlotUnwritten(t *testing.T) {
	var slot [1]string
	left := http.Header{}
	appendFieldIn(left, "X-Forwarded-For", "192.0.2.1", &slot)
	done := make(chan struct{})
	go func() { // the transport's writer, reading the map it was left
		defer close(done)
		for range 1000 {
			if v := left["X-Forwarded-For"][0]; v != "192.0.2.1" {
				t.Errorf("the left map's field reads %q", v)
				return
			}
		}
	}()
	next := http.Header{}
	for range 1000 { // the next attempt's rebuilds
		clear(next)
		appendFieldIn(next, "X-Forwarded-For", "192.0.2.1", &slot)
	}
	<-done
	if got := next["X-Forwarded-For"]; len(got) != 1 || got[0] != "192.0.2.1" {
		t.Fatalf("rebuilt field %q", got)
	}
}

// TestConnectionCannotDropForwarding: a Connection token naming a
// forwarding field does not remove a trusted proxy's report. A balancer
// that passes the client's Connection on (nginx's "proxy_set_header
// Connection $http_connection", a common WebSocket setup) let the client
// send "Connection: X-Forwarded-For, X-Real-IP": the balancer's fields
// were dropped as hop-by-hop, the origin saw the request come from the
// balancer's own (internal) address alone, and the rate limiter counted
// the client as the balancer. Other named fields still go; an untrusted
// client's forwarding fields are still removed.
func TestConnectionCannotDropForwarding(t *testing.T) {
	type seen struct{ xff, realIP, custom string }
	got := make(chan seen, 1)
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{strings.Join(r.Header.Values("X-Forwarded-For"), "|"), r.Header.Get("X-Real-Ip"), r.Header.Get("X-Custom")}
	}))
	l := ipLimiter{seen: make(chan string, 1)}
	trusted := startProxy(t, routerFor(t, origin), Config{Limiter: l}, ListenerConfig{Name: "lb", TrustedProxies: prefixes(t, "127.0.0.0/8")})
	untrusted := startProxy(t, routerFor(t, origin), Config{Limiter: l}, ListenerConfig{Name: "edge"})
	for _, tc := range []struct {
		addr                string
		wantXFF, wantRealIP string
		wantLimited         string
	}{
		{trusted.addr, "198.51.100.7, 127.0.0.1", "198.51.100.7", "198.51.100.7"},
		{untrusted.addr, "127.0.0.1", "", "127.0.0.1"},
	} {
		resp, _ := rawRequest(t, tc.addr, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Forwarded-For, x-real-ip, X-Custom\r\n"+
			"X-Forwarded-For: 198.51.100.7\r\nX-Real-IP: 198.51.100.7\r\nX-Custom: 1\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", tc.addr, resp.StatusCode)
		}
		if ip := <-l.seen; ip != tc.wantLimited {
			t.Errorf("%s: limited as %q, want %q", tc.addr, ip, tc.wantLimited)
		}
		s := <-got
		if s.xff != tc.wantXFF || s.realIP != tc.wantRealIP {
			t.Errorf("%s: the origin saw X-Forwarded-For %q, X-Real-IP %q; want %q, %q", tc.addr, s.xff, s.realIP, tc.wantXFF, tc.wantRealIP)
		}
		if s.custom != "" {
			t.Errorf("%s: X-Custom, named by Connection, reached the origin", tc.addr)
		}
	}
}
