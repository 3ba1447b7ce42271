package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// linkOrigin answers as an origin behind a proxy that reads the first
// X-Forwarded-Proto and -Host (as Express with "trust proxy" does) and
// builds an absolute link from them; seen records every Host it built
// one for.
func linkOrigin(cc string, seen chan<- string) func(int64, http.ResponseWriter, *http.Request) {
	return func(_ int64, w http.ResponseWriter, r *http.Request) {
		first := func(k, def string) string {
			if v, _, _ := strings.Cut(r.Header.Get(k), ","); v != "" {
				return strings.TrimSpace(v)
			}
			return def
		}
		host := first("X-Forwarded-Host", r.Host)
		select {
		case seen <- host:
		default:
		}
		w.Header().Set("Cache-Control", cc)
		fmt.Fprintf(w, `<a href="%s://%s/next">`, first("X-Forwarded-Proto", "http"), host)
	}
}

const cleanLink = `<a href="http://shop.test/next">`

// TestCacheForwardedHostPoisoning: a client that sends its own
// X-Forwarded-Host and -Proto on a caching route must not set the links
// of the page every other client gets from the cache. Before the
// listener's trusted networks, the proxy appended to the client's fields,
// the origin built links to evil.test from the first value, and the page
// was stored under a key without the field (unkeyed-header poisoning);
// over HTTP/2 as over HTTP/1.1.
func TestCacheForwardedHostPoisoning(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			seen := make(chan string, 8)
			s := startCacheSetup(t, nil, linkOrigin("max-age=60", seen))
			c := h1Client()
			if proto == "HTTP/2" {
				c = h2cClient()
			}
			_, body := s.doHost(t, c, "shop.test", forgedFields)
			if body != cleanLink {
				t.Errorf("the attacker's own answer: %q", body)
			}
			if host := <-seen; host != "shop.test" {
				t.Errorf("the origin built links for %q", host)
			}
			resp, body := s.doHost(t, h1Client(), "shop.test", nil)
			if body != cleanLink || !strings.HasPrefix(cacheStatusOf(resp), "hit") {
				t.Fatalf("the next client got %q (%s), want the stored %q", body, cacheStatusOf(resp), cleanLink)
			}
		})
	}
}

// TestCacheForwardedHostRefresh: the background refresh a client's
// request starts (stale-while-revalidate) copies that client's request; a
// forged X-Forwarded-Host in it must not reach the origin either, or the
// refreshed page stored for everyone carries the attacker's links.
func TestCacheForwardedHostRefresh(t *testing.T) {
	seen := make(chan string, 8)
	s := startCacheSetup(t, nil, linkOrigin("max-age=10, stale-while-revalidate=60", seen))
	c := h1Client()
	s.doHost(t, c, "shop.test", nil)
	<-seen
	s.fc.Advance(20 * time.Second)
	if resp, body := s.doHost(t, c, "shop.test", forgedFields); body != cleanLink || !strings.Contains(cacheStatusOf(resp), "stale-while-revalidate") {
		t.Fatalf("the attacker's request: %q (%s)", body, cacheStatusOf(resp))
	}
	if host := <-seen; host != "shop.test" {
		t.Fatalf("the background refresh built links for %q", host)
	}
	waitFor(t, 10*time.Second, "the refreshed page stored", func() bool {
		resp, _ := s.doHost(t, c, "shop.test", nil)
		return cacheStatusOf(resp) == "hit; ttl=10"
	})
	if _, body := s.doHost(t, c, "shop.test", nil); body != cleanLink {
		t.Fatalf("after the refresh the cache serves %q", body)
	}
}

// TestCacheForwardedRequestSentAlong: the request the engine hands a
// store (the one a cluster tier sends to the key's owner, which fills it
// as a request from a trusted peer) carries no forwarding field of an
// untrusted client, and a trusted proxy's as it sent them.
func TestCacheForwardedRequestSentAlong(t *testing.T) {
	for _, tc := range []struct {
		name string
		nets []netip.Prefix
		want string
	}{
		{"untrusted", nil, ""},
		{"trusted", prefixes(t, "127.0.0.1/32"), "evil.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startCacheSetupApp(t, nil, serve("x", "Cache-Control", "max-age=60"), nil,
				ListenerConfig{Name: "http", TrustedProxies: tc.nets})
			rec := &recordingStore{Store: s.store, reqs: make(chan cache.Request, 1)} // one Lock below
			s.locks.Store = rec
			s.doHost(t, h1Client(), "shop.test", forgedFields)
			q := <-rec.reqs
			if got := q.Header.Get("X-Forwarded-Host"); got != tc.want {
				t.Fatalf("X-Forwarded-Host sent along: %q, want %q", got, tc.want)
			}
			if got := q.Header.Get("Forwarded") != ""; got != (tc.want != "") {
				t.Fatalf("Forwarded sent along: %v (%q)", got, q.Header.Get("Forwarded"))
			}
			if want := map[bool]string{true: "203.0.113.9"}[tc.want != ""]; q.ForwardedIP != want {
				t.Fatalf("ForwardedIP sent along: %q, want %q", q.ForwardedIP, want)
			}
		})
	}
}

// doHost sends a GET of / for host with the fields h.
func (cs *cacheSetup) doHost(t testing.TB, c *http.Client, host string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+cs.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestCacheForwardedTrustedKeyed: behind a trusted load balancer the
// forwarding fields it sends reach the origin, which builds its page from
// them, so they are in the cache key: the page made for a client that
// came in over http ("X-Forwarded-Proto: http", http:// links) is not
// served to the clients that came in over https, nor is the page made for
// a client's own X-Forwarded-Host (a balancer such as AWS's ALB passes it
// on) served to clients without one. The fields that name the client
// (X-Forwarded-For, X-Real-IP, Forwarded's for=) are not in the key: two
// clients of one balancer share their pages.
func TestCacheForwardedTrustedKeyed(t *testing.T) {
	seen := make(chan string, 8)
	s := startCacheSetupApp(t, nil, linkOrigin("max-age=60", seen), nil,
		ListenerConfig{Name: "http", TrustedProxies: prefixes(t, "127.0.0.1/32")})
	c := h1Client()
	do := func(fields ...string) (string, string) {
		t.Helper()
		h := http.Header{}
		for i := 0; i < len(fields); i += 2 {
			h.Add(fields[i], fields[i+1])
		}
		resp, body := s.doHost(t, c, "shop.test", h)
		return body, cacheStatusOf(resp)
	}
	httpLink, httpsLink := cleanLink, `<a href="https://shop.test/next">`
	if body, _ := do("X-Forwarded-Proto", "http", "X-Forwarded-For", "198.51.100.1"); body != httpLink {
		t.Fatalf("first http client: %q", body)
	}
	if body, st := do("X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.2"); body != httpsLink {
		t.Fatalf("an https client got %q (%s), want %q", body, st, httpsLink)
	}
	if body, st := do("X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.3"); body != httpsLink || !strings.HasPrefix(st, "hit") {
		t.Fatalf("the next https client got %q (%s), want the stored %q", body, st, httpsLink)
	}
	if body, _ := do("X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.test"); body != `<a href="https://evil.test/next">` {
		t.Fatalf("the client's own X-Forwarded-Host: %q", body)
	}
	if body, st := do("X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.4"); body != httpsLink || !strings.HasPrefix(st, "hit") {
		t.Fatalf("after a forged X-Forwarded-Host, an https client got %q (%s), want the stored %q", body, st, httpsLink)
	}
	// Forwarded: its for= names the client and stays out of the key.
	do("Forwarded", "for=198.51.100.5;proto=https", "X-Forwarded-Proto", "https")
	if body, st := do("Forwarded", "for=198.51.100.6;proto=https", "X-Forwarded-Proto", "https"); body != httpsLink || !strings.HasPrefix(st, "hit") {
		t.Fatalf("a second client by Forwarded got %q (%s), want a hit", body, st)
	}
}

func TestWithoutForwardedFor(t *testing.T) {
	for in, want := range map[string]string{
		"for=1.2.3.4;proto=https":                   "proto=https",
		"proto=https; For=\"[2001:db8::1]\";host=a": "proto=https;host=a",
		"for=1.2.3.4, for=10.0.0.1;by=10.0.0.2":     ",by=10.0.0.2",
		"host=a":                                    "host=a",
	} {
		if got := withoutForwardedFor(in); got != want {
			t.Errorf("withoutForwardedFor(%q) = %q, want %q", in, got, want)
		}
	}
}
