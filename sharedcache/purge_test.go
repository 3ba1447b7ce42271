package sharedcache

import (
	"context"
	"strings"
	"testing"
)

func TestKeyPrefixes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "https://Example.COM/a?b=1", want: []string{"GET https://example.com/a?b=1"}},
		{in: "http://example.com", want: []string{"GET http://example.com/"}},
		{in: "example.com:8080/x", want: []string{"GET http://example.com:8080/x", "GET https://example.com:8080/x"}},
		// The path as the proxy keys a request's: dot segments, runs of
		// slashes and needless escapes normalized, an encoded slash kept.
		{in: "http://shop.test/x/../u%31?q=1", want: []string{"GET http://shop.test/u1?q=1"}},
		{in: "http://shop.test//a/./b/%2e%2e/c", want: []string{"GET http://shop.test/a/c"}},
		{in: "https://example.com/x/../a%2Ecss", want: []string{"GET https://example.com/a.css"}},
		{in: "http://shop.test/a%2Fb", want: []string{"GET http://shop.test/a%2Fb"}},
		{in: "http://shop.test/static/.", want: []string{"GET http://shop.test/static/"}},
		{in: "ftp://example.com/x", err: "scheme"},
		{in: "/just/a/path", err: "host"},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := keyPrefixes(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Fatalf("%q: %v %v, want %v", c.in, got, err, c.want)
			}
		})
	}
}

func TestPurgeValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		p    Purge
		err  string
	}{
		{"empty", Purge{}, "selects nothing"},
		{"bad url", Purge{URLs: []string{"/x"}}, "urls[0]"},
		{"bad prefix", Purge{Prefixes: []string{"gopher://x/"}}, "prefixes[0]"},
		{"bad tag", Purge{Tags: []string{"a b"}}, "tags[0]"},
		{"too many", Purge{Tags: make([]string, maxPurgeItems+1)}, "at most"},
		{"ok", Purge{URLs: []string{"https://a/x"}, Prefixes: []string{"a/img/"}, Tags: []string{"t1"}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.Validate()
			if (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Validate = %v, want %q", err, c.err)
			}
		})
	}
}

func TestMatcher(t *testing.T) {
	t.Parallel()
	m, err := Purge{URLs: []string{"https://a.test/x"}, Prefixes: []string{"https://b.test/img/", "https://c.test"}}.compile()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{
		"GET https://a.test/x":                     true,
		"GET https://a.test/x\x00vary\x00g1\x00ab": true, // a variant
		"GET https://a.test/x\x00h:Accept=1":       true, // a key addition
		"GET https://a.test/xy":                    false,
		"GET https://a.test/x?q":                   false,
		"GET http://a.test/x":                      false,
		"GET https://b.test/img/1.png":             true,
		"GET https://b.test/css/1.css":             false,
		"GET https://c.test/anything":              true,
	} {
		if got := m.key(k); got != want {
			t.Errorf("key(%q) = %v, want %v", k, got, want)
		}
	}
}

// TestPurgeCluster: a purge on one node reaches every node and drops the
// owners' objects, hot copies, every Vary variant of a URL, and tagged
// objects; each node reports its count, and purged keys are fetched
// from the origin again.
func TestPurgeCluster(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	h.origin.size = 1 << 10
	h.origin.tags = "all group-1"
	ctx := context.Background()
	const keys = 30
	for i := range keys {
		for _, n := range []string{"a", "b", "c"} { // fills the owner, then hot copies
			h.get(h.nodes[n], testKey(i))
		}
	}
	waitFor(t, "hot copies", func() bool {
		total := 0
		for _, n := range h.nodes {
			total += n.c.Stats().Hot.Objects
		}
		return total == 2*keys
	})
	// Two variants of one URL, by hand at its owner.
	vkey := testKey(100)
	owner := h.nodes[ownerOf(vkey, "a", "b", "c")]
	for _, enc := range []string{"gzip", "br"} {
		f, _, _ := owner.c.local.Lock(ctx, vkey+"\x00vary\x00g1\x00"+enc, 0)
		h.origin.fill(vkey, f)
	}
	res, err := h.nodes["b"].c.PurgeCluster(ctx, Purge{URLs: []string{"http://origin.test/k1", "http://origin.test/k100"}})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range res {
		if r.Error != "" {
			t.Fatalf("%s: %s", r.Node, r.Error)
		}
		total += r.Dropped
	}
	if len(res) != 3 || res[0].Node != "b" || total != 3+2 { // k1 on its owner and two hot copies; k100's two variants
		t.Fatalf("purge by URL: %+v", res)
	}
	res, _ = h.nodes["a"].c.PurgeCluster(ctx, Purge{Tags: []string{"group-1"}})
	total = 0
	for _, r := range res {
		total += r.Dropped
	}
	if total != 3*(keys-1) {
		t.Fatalf("purge by tag dropped %d, want %d: %+v", total, 3*(keys-1), res)
	}
	before := h.origin.fetches.Load()
	h.get(h.nodes["c"], testKey(5))
	if h.origin.fetches.Load() != before+1 {
		t.Fatal("a purged key was served from the cache")
	}
	if st := h.nodes["c"].c.Stats(); st.Purges != 2 {
		t.Fatalf("purges counted: %d", st.Purges)
	}
}

// TestPurgeDoomsFillInFlight: a purge during a fill keeps the fill from
// storing: its readers get the whole body, and the next request goes to
// the origin again.
func TestPurgeDoomsFillInFlight(t *testing.T) {
	h := newHarness(t, Config{}, "a")
	h.origin.size = 256 << 10
	gate := make(chan struct{})
	h.origin.gate.Store(&gate)
	h.origin.half = make(chan string, 1) // the one gated fill
	done := make(chan error, 1)          // the one request
	go func() {
		_, _, err := h.get(h.nodes["a"], testKey(1))
		done <- err
	}()
	<-h.origin.half
	if _, err := h.nodes["a"].c.PurgeCluster(context.Background(), Purge{Prefixes: []string{"http://origin.test/"}}); err != nil {
		t.Fatal(err)
	}
	h.origin.gate.Store(nil)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.get(h.nodes["a"], testKey(1))
	if got := h.origin.fetches.Load(); got != 2 {
		t.Fatalf("origin fetched %d times, want 2: the purged fill was stored", got)
	}
}
