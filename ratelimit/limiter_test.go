package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

func newTestLimiter(t testing.TB, rules ...Rule) (*Limiter, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	l, err := New(Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetRules(rules); err != nil {
		t.Fatal(err)
	}
	return l, clk
}

func req(ip string) *Request {
	return &Request{ClientIP: ip, Method: "GET", Path: "/", Header: http.Header{}}
}

// count decides n requests from ip and returns how many were admitted.
func count(l *Limiter, ip string, n int) int {
	ok := 0
	for i := 0; i < n; i++ {
		if l.Decide(req(ip), 0, 0).Allow {
			ok++
		}
	}
	return ok
}

// TestLocalSlidingWindow: a local limit of 10/s admits 10 in a second,
// refuses the 11th with the fields and a Retry-After, counts keys apart,
// and admits again as the window slides.
func TestLocalSlidingWindow(t *testing.T) {
	l, clk := newTestLimiter(t, Rule{Name: "ip", Limit: 10, Period: time.Second})
	if got := count(l, "1.1.1.1", 15); got != 10 {
		t.Fatalf("admitted %d of 15, want 10", got)
	}
	if got := count(l, "2.2.2.2", 3); got != 3 {
		t.Fatalf("another key admitted %d of 3", got)
	}
	d := l.Decide(req("1.1.1.1"), 0, 0)
	if d.Allow || d.Rule != "ip" || d.Policy != `"ip";q=10;w=1` || d.State != `"ip";r=0;t=1` || d.RetryAfter != 1100*time.Millisecond { // the window ends in 1s, then prev=10 decays to 9 in 0.1s
		t.Fatalf("refusal: %+v", d)
	}
	clk.Advance(1500 * time.Millisecond) // prev=10 at f=0.5: 5 left
	if got := count(l, "1.1.1.1", 10); got != 5 {
		t.Fatalf("half a window later admitted %d, want 5", got)
	}
	s := l.Stats().Rules[0]
	if s.Allowed != 18 || s.Denied != 11 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestLocalTokenBucket: a bucket of 5 refilling 10/s admits a burst of 5,
// then one per 100ms.
func TestLocalTokenBucket(t *testing.T) {
	l, clk := newTestLimiter(t, Rule{Name: "tb", Limit: 10, Period: time.Second, Burst: 5, Algorithm: TokenBucket})
	if got := count(l, "a", 8); got != 5 {
		t.Fatalf("burst admitted %d, want 5", got)
	}
	clk.Advance(100 * time.Millisecond)
	if got := count(l, "a", 3); got != 1 {
		t.Fatalf("after 100ms admitted %d, want 1", got)
	}
	d := l.Decide(req("a"), 0, 0)
	if d.Allow || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("refusal: %+v", d)
	}
	clk.Advance(2 * time.Second)
	l.step() // sweeps idle buckets
	if got := count(l, "a", 8); got != 5 {
		t.Fatalf("after the refill admitted %d, want 5", got)
	}
}

// TestDelay: on_exceed delay asks to wait the time until the request
// fits, within MaxDelay, and resumes at the rule that delayed it.
func TestDelay(t *testing.T) {
	l, clk := newTestLimiter(t,
		Rule{Name: "first", Limit: 100, Period: time.Second},
		Rule{Name: "tb", Limit: 10, Period: time.Second, Burst: 1, Algorithm: TokenBucket, OnExceed: Delay, MaxDelay: 150 * time.Millisecond})
	if d := l.Decide(req("a"), 0, 0); !d.Allow {
		t.Fatalf("first request: %+v", d)
	}
	d := l.Decide(req("a"), 0, 0)
	if d.Allow || d.Wait != 100*time.Millisecond || d.Resume != 1 || d.Rule != "tb" {
		t.Fatalf("second request: %+v, want a wait of 100ms at rule 1", d)
	}
	clk.Advance(d.Wait)
	if d := l.Decide(req("a"), d.Resume, d.Wait); !d.Allow {
		t.Fatalf("after the wait: %+v", d)
	}
	if got := l.Stats().Rules[0].Allowed; got != 2 {
		t.Fatalf("rule first counted %d, want 2 (the resumed decision skips it)", got)
	}
	// Three in a row need 200ms, over MaxDelay: the third is refused.
	l.Decide(req("b"), 0, 0)
	l.Decide(req("b"), 0, 0)
	if d := l.Decide(req("b"), 1, 100*time.Millisecond); d.Allow || d.Wait != 0 {
		t.Fatalf("past MaxDelay: %+v, want a refusal", d)
	}
}

// TestFields: a rule with Fields adds its fields to admitted requests;
// a refusal carries the refusing rule's.
func TestFields(t *testing.T) {
	l, _ := newTestLimiter(t,
		Rule{Name: "shown", Limit: 100, Period: time.Minute, Fields: true},
		Rule{Name: "hidden", Limit: 1, Period: time.Second})
	d := l.Decide(req("a"), 0, 0)
	if !d.Allow || d.Policy != `"shown";q=100;w=60` || d.State != `"shown";r=99;t=60` {
		t.Fatalf("admitted: %+v", d)
	}
	d = l.Decide(req("a"), 0, 0)
	if d.Allow || d.Policy != `"shown";q=100;w=60, "hidden";q=1;w=1` || d.State != `"shown";r=98;t=60, "hidden";r=0;t=1` {
		t.Fatalf("refused: %+v", d)
	}
}

// TestSetRulesKeepsCounters: a swap that changes a rule's limit keeps
// its counts; one that changes what it counts (the key) starts afresh;
// a duplicate name is refused and changes nothing.
func TestSetRulesKeepsCounters(t *testing.T) {
	r := Rule{Name: "ip", Limit: 10, Period: time.Second}
	l, _ := newTestLimiter(t, r)
	count(l, "a", 10)
	r.Limit = 12
	if err := l.SetRules([]Rule{r}); err != nil {
		t.Fatal(err)
	}
	if got := count(l, "a", 5); got != 2 {
		t.Fatalf("after raising the limit admitted %d, want 2", got)
	}
	if err := l.SetRules([]Rule{r, r}); !errors.Is(err, ErrDuplicateRule) {
		t.Fatalf("duplicate: %v", err)
	}
	if got := len(l.Rules()); got != 1 {
		t.Fatalf("a refused swap left %d rules", got)
	}
	r.Key = "header:x"
	l.SetRules([]Rule{r})
	r.Key = "client_ip"
	l.SetRules([]Rule{r})
	if got := count(l, "a", 15); got != 12 {
		t.Fatalf("after the key changed and back admitted %d, want a fresh 12", got)
	}
}

// TestNoMatchNoKey: a request the rule does not match, or that lacks its
// key, is not counted.
func TestNoMatchNoKey(t *testing.T) {
	l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 1, Key: "header:x-api-key", Match: Match{Methods: []string{"POST"}}})
	r := &Request{Method: "POST", Header: http.Header{}}
	for i := 0; i < 3; i++ {
		if !l.Decide(r, 0, 0).Allow {
			t.Fatal("a request without the key was limited")
		}
	}
	r.Header.Set("X-Api-Key", "k1")
	if !l.Decide(r, 0, 0).Allow || l.Decide(r, 0, 0).Allow {
		t.Fatal("the keyed request is not limited to 1")
	}
	r.Method = "GET"
	if !l.Decide(r, 0, 0).Allow {
		t.Fatal("a request the rule does not match was limited")
	}
}

// TestKeySpellingsShareACounter: another spelling of the same host (case,
// port, trailing dot) or of the same query parameter (percent-escapes in
// its name or value, '+' for a space) is the same key, so a client cannot
// dodge a limit by respelling what the origin reads as one value.
func TestKeySpellingsShareACounter(t *testing.T) {
	for _, tc := range []struct {
		key       string
		spellings []Request
	}{
		{"host", []Request{{Host: "victim.test"}, {Host: "Victim.test"}, {Host: "VICTIM.TEST:8080"}, {Host: "vIctim.test."}}},
		{"{route}:{host}", []Request{{Route: "r", Host: "victim.test"}, {Route: "r", Host: "VICTIM.test"}}},
		{"query:k", []Request{{RawQuery: "k=abc"}, {RawQuery: "k=%61bc"}, {RawQuery: "x=1&%6b=a%62c"}, {RawQuery: "%6B=%61%62%63"}}},
		{"query:k", []Request{{RawQuery: "k=a+b"}, {RawQuery: "k=a%20b"}, {RawQuery: "k=%61 b"}}},
	} {
		l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 1, Period: time.Minute, Key: tc.key})
		for i, r := range tc.spellings {
			r.Method, r.Path, r.Header = "GET", "/", http.Header{}
			if got := l.Decide(&r, 0, 0).Allow; got != (i == 0) {
				t.Errorf("%s: spelling %d (%+v) allowed=%v, want %v: it is the first's key", tc.key, i, r, got, i == 0)
			}
		}
	}
	// Values that differ once decoded stay apart; an invalid escape is
	// kept as it came.
	l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 1, Period: time.Minute, Key: "query:k"})
	for _, q := range []string{"k=abc", "k=abd", "k=%zz", "k=ab%"} {
		if !l.Decide(&Request{Method: "GET", Path: "/", RawQuery: q, Header: http.Header{}}, 0, 0).Allow {
			t.Errorf("query %q was refused: counted with another value", q)
		}
	}
}

// TestKeyHeaderSpellingsShareACounter: a key header spelt with '_' for
// '-' or in another case is the same key: CGI-style origins (PHP, WSGI,
// Rack) read "X_Api_Key" as HTTP_X_API_KEY, as they read X-Api-Key, and
// the proxy passes it on; it was no key at all, so a client sending its
// key so spelt was never counted by the rule.
func TestKeyHeaderSpellingsShareACounter(t *testing.T) {
	l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 1, Period: time.Minute, Key: "header:x-api-key"})
	for i, h := range []http.Header{{"X-Api-Key": {"k1"}}, {"X_Api_Key": {"k1"}}, {"X_api_key": {"k1"}}, {"X-Api_Key": {"k1"}}} {
		if got := l.Decide(&Request{Method: "GET", Path: "/", Header: h}, 0, 0).Allow; got != (i == 0) {
			t.Errorf("spelling %d (%v) allowed=%v, want %v: it is the first's key", i, h, got, i == 0)
		}
	}
	if !l.Decide(&Request{Method: "GET", Path: "/", Header: http.Header{"X_Api_Key": {"k2"}}}, 0, 0).Allow {
		t.Error("another key so spelt was counted with k1")
	}
}

// TestKeyParamSpellingsShareACounter: a key query parameter or cookie sent
// under a name some origin reads as the key's is the same key: "API_KEY"
// (ASP.NET ignores case), "api_key[]" and "api.key" (PHP), one after a
// ';' (Rack 2), "session " before the '=' (Node's cookie parser trims),
// "sess%69on" (PHP decodes cookie names). Such a request had no key at
// all, so a client sending its own key so spelt was never counted by the
// rule while its origin served it as that key (reproduced on the binary:
// "?API_KEY=mine" and "Cookie: session =s1" never got a 429).
func TestKeyParamSpellingsShareACounter(t *testing.T) {
	for _, tc := range []struct {
		key       string
		spellings []Request
	}{
		{"query:api_key", []Request{{RawQuery: "api_key=k1"}, {RawQuery: "API_KEY=k1"}, {RawQuery: "Api_Key=k1"},
			{RawQuery: "api_key[]=k1"}, {RawQuery: "api_key[0]=k1"}, {RawQuery: "api.key=k1"}, {RawQuery: "x=1;api_key=k1"},
			{RawQuery: "%20api_key=k1"}, {RawQuery: "api+key=k1"}, {RawQuery: "API%5FKEY=k%31"}}},
		{"cookie:session", []Request{{Header: http.Header{"Cookie": {"session=k1"}}}, {Header: http.Header{"Cookie": {"SESSION=k1"}}},
			{Header: http.Header{"Cookie": {"a=1; session =k1"}}}, {Header: http.Header{"Cookie": {"sess%69on=k1"}}},
			{Header: http.Header{"Cookie": {"session[]=k1"}}}, {Header: http.Header{"Cookie": {"Session= k1 "}}}}},
	} {
		l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 1, Period: time.Minute, Key: tc.key})
		for i, r := range tc.spellings {
			r.Method, r.Path = "GET", "/"
			if r.Header == nil {
				r.Header = http.Header{}
			}
			if got := l.Decide(&r, 0, 0).Allow; got != (i == 0) {
				t.Errorf("%s: spelling %d (%q %v) allowed=%v, want %v: it is the first's key", tc.key, i, r.RawQuery, r.Header, got, i == 0)
			}
		}
	}
	// The name as configured comes first, whatever the order; other names
	// and other values stay apart.
	l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 1, Period: time.Minute, Key: "query:api_key"})
	for i, q := range []string{"API_KEY=k2&api_key=k1", "api_key=k1", "API_KEY=k3", "api_keys=k1&x=1", "apikey=k1"} {
		r := &Request{Method: "GET", Path: "/", RawQuery: q, Header: http.Header{}}
		if got := l.Decide(r, 0, 0).Allow; got != (i != 1) {
			t.Errorf("query %q allowed=%v, want %v", q, got, i != 1)
		}
	}
}

// TestGlobalSolo: with no ring a global rule is global over one node: it
// holds its limit, through leases from itself.
func TestGlobalSolo(t *testing.T) {
	l, clk := newTestLimiter(t, Rule{Name: "g", Limit: 100, Period: time.Second, Scope: Global})
	admitted := 0
	for ms := 0; ms < 3000; ms++ {
		for i := 0; i < 3; i++ {
			if l.Decide(req("a"), 0, 0).Allow {
				admitted++
			}
		}
		if ms%10 == 0 {
			l.step()
		}
		clk.Advance(time.Millisecond)
	}
	if admitted < 290 || admitted > 300 {
		t.Fatalf("admitted %d over 3 s, want 290-300", admitted)
	}
	st := l.Status(5)
	if len(st.Rules) != 1 || len(st.Rules[0].Top) != 1 || st.Rules[0].Top[0].Owner != "self" || st.Rules[0].Owned != 1 {
		t.Fatalf("status: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{SyncInterval: time.Millisecond}, {LeaseTerm: -1}, {MaxKeys: -1}, {SyncInterval: time.Second, LeaseTerm: time.Second}, {SketchWidth: 1 << 25}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if !reflect.DeepEqual(DefaultConfig().SyncInterval, DefaultSyncInterval) {
		t.Error("default sync interval")
	}
}

// TestIdleKeysEvicted: keys of a global rule that went idle are dropped
// by the sweep, on the user side and the owner side, and a table never
// holds more than MaxKeys: keys past it are decided by the local share and
// counted as untracked. Memory follows the keys in use, whatever the
// number of distinct keys seen.
func TestIdleKeysEvicted(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	l, err := New(Config{Clock: clk, MaxKeys: 100})
	if err != nil {
		t.Fatal(err)
	}
	l.SetRules([]Rule{{Name: "g", Limit: 10, Period: time.Second, Scope: Global}})
	for i := 0; i < 150; i++ {
		l.Decide(req("10.0."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250)), 0, 0)
	}
	l.step()
	s := l.Stats().Rules[0]
	if s.Keys != 100 || s.Owned != 100 || s.Untracked != 50 {
		t.Fatalf("after 150 keys with MaxKeys 100: %+v", s)
	}
	for i := 0; i < 12; i++ { // past max(period, 2×LeaseTerm) = 10 s, one sweep a second
		clk.Advance(time.Second)
		l.step()
	}
	if s := l.Stats().Rules[0]; s.Keys != 0 || s.Owned != 0 {
		t.Fatalf("after 12 idle seconds: %d keys, %d owned, want none", s.Keys, s.Owned)
	}
}

// TestMeasureMemoryPerKey reports the heap a tracked key of a global rule
// costs, on the node that uses it (the entry) and on its owner (the
// counter and one lease), over 100,000 keys. A measurement: it runs with
// PINGORA_MEASURE=1.
func TestMeasureMemoryPerKey(t *testing.T) {
	if os.Getenv("PINGORA_MEASURE") != "1" {
		t.Skip("a measurement: set PINGORA_MEASURE=1")
	}
	const n = 100_000
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	l, _ := New(Config{Clock: clk})
	l.SetRules([]Rule{{Name: "g", Key: "header:x-api-key", Limit: 10, Period: time.Second, Scope: Global}})
	reqs := make([]*Request, n)
	for i := range reqs {
		reqs[i] = &Request{Header: http.Header{"X-Api-Key": {fmt.Sprintf("api-key-%08d", i)}}}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for _, r := range reqs {
		l.Decide(r, 0, 0)
	}
	l.step() // reports every key to its owner, this node: a counter and a lease each
	both := heap()
	c := l.rules.Load().list[0].c
	c.owned = newTable[counter](1)
	users := heap()
	t.Logf("heap before %d, with both sides %d, user side only %d", before, both, users)
	t.Logf("per key: %d bytes on the node using it (entry, map slot), %d bytes on its owner (counter, one lease, map slot); keys of 16 bytes",
		(users-before)/n, (both-users)/n)
	runtime.KeepAlive(reqs)
	runtime.KeepAlive(l)
}

// TestClientIPv6ByPrefix: client_ip counts an IPv6 client by its /64, as
// the per-address connection cap does: one host holds a whole /64 and
// may send each request from a new address in it, and every address was
// a counter of its own, so the limit held it back not at all. Another
// /64 has its own counter; an IPv4 address, and the same address
// IPv4-mapped, share one.
func TestClientIPv6ByPrefix(t *testing.T) {
	l, _ := newTestLimiter(t, Rule{Name: "ip", Limit: 2, Period: time.Minute})
	for i, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::3", "2001:db8:1:2::4%eth0"} {
		if got := l.Decide(req(ip), 0, 0).Allow; got != (i < 2) {
			t.Errorf("%s allowed=%v, want %v: one /64, limit 2", ip, got, i < 2)
		}
	}
	if !l.Decide(req("2001:db8:1:3::1"), 0, 0).Allow {
		t.Error("another /64 was counted with the first")
	}
	for i, ip := range []string{"192.0.2.7", "::ffff:192.0.2.7", "192.0.2.7"} {
		if got := l.Decide(req(ip), 0, 0).Allow; got != (i < 2) {
			t.Errorf("%s allowed=%v, want %v", ip, got, i < 2)
		}
	}
	if !l.Decide(req("192.0.2.8"), 0, 0).Allow {
		t.Error("the next IPv4 address was counted with 192.0.2.7")
	}
}

// TestLongKeysApart: values longer than a key may be are still counters
// of their own: cut to their first 256 bytes, every JWT of one issuer
// (whose fixed claims come first) keyed by header:Authorization shared
// one counter, which a client's forged tokens with that start spent for
// every user. Keys stay bounded; a value sent again is the same key.
func TestLongKeysApart(t *testing.T) {
	prefix := "Bearer eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIn0", 8)
	for _, key := range []string{"header:authorization", "{route}:{header:authorization}"} {
		l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 1, Period: time.Minute, Key: key})
		do := func(tok string) bool {
			return l.Decide(&Request{Route: "r", Method: "GET", Path: "/", Header: http.Header{"Authorization": {tok}}}, 0, 0).Allow
		}
		if !do(prefix+".alice") || !do(prefix+".bob") {
			t.Errorf("%s: two tokens alike in their first %d bytes share a counter", key, len(prefix))
		}
		if do(prefix + ".alice") {
			t.Errorf("%s: a long token sent again was a new counter", key)
		}
	}
	if k := fitKey(strings.Repeat("x", 10000)); len(k) != maxKeyLen {
		t.Errorf("a long value's key has %d bytes, want %d", len(k), maxKeyLen)
	}
}

// TestKeyCountedUnderEveryValue: a request that gives a rule's key more
// than one value (a parameter, cookie or header sent twice, or spelt two
// ways) is counted under each. The origin may read any of them: PHP,
// Django and Rails the last "api_key", PHP "api.key" as "api_key". Keyed
// by the first value alone, "?api_key=junkN&api_key=REAL" with a new junk
// each time was admitted every time (10 of 10 here) while the origin
// served each as REAL's.
func TestKeyCountedUnderEveryValue(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		req       func(i int) Request
	}{
		{"query twice", "query:api_key", func(i int) Request { return Request{RawQuery: fmt.Sprintf("api_key=junk%d&api_key=REAL", i)} }},
		{"query spelt", "query:api_key", func(i int) Request { return Request{RawQuery: fmt.Sprintf("api_key=junk%d&api.key=REAL", i)} }},
		{"query spelt first", "query:api_key", func(i int) Request { return Request{RawQuery: fmt.Sprintf("API_KEY=REAL&api_key=junk%d", i)} }},
		{"query after ;", "query:api_key", func(i int) Request { return Request{RawQuery: fmt.Sprintf("api_key=junk%d&x=1;api_key=REAL", i)} }},
		{"cookie twice", "cookie:session", func(i int) Request {
			return Request{Header: http.Header{"Cookie": {fmt.Sprintf("session=junk%d; session=REAL", i)}}}
		}},
		{"cookie lines", "cookie:session", func(i int) Request {
			return Request{Header: http.Header{"Cookie": {fmt.Sprintf("session=junk%d", i), "SESSION=REAL"}}}
		}},
		{"header twice", "header:x-api-key", func(i int) Request {
			return Request{Header: http.Header{"X-Api-Key": {fmt.Sprintf("junk%d", i), "REAL"}}}
		}},
		{"template", "{route}/{query:api_key}", func(i int) Request {
			return Request{Route: "api", RawQuery: fmt.Sprintf("api_key=junk%d&api_key=REAL", i)}
		}},
	} {
		l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 2, Period: time.Minute, Key: tc.key})
		admitted := 0
		for i := range 10 {
			r := tc.req(i)
			r.Method, r.Path = "GET", "/"
			if r.Header == nil {
				r.Header = http.Header{}
			}
			if l.Decide(&r, 0, 0).Allow {
				admitted++
			}
		}
		if admitted != 2 {
			t.Errorf("%s: %d of 10 admitted, want 2 (REAL's limit)", tc.name, admitted)
		}
	}

	// The same value twice is one key, counted once; more than
	// maxKeyValues different ones is refused; a template with two parts
	// of several values too.
	l, _ := newTestLimiter(t, Rule{Name: "k", Limit: 2, Period: time.Minute, Key: "query:k"})
	var got []bool
	for _, q := range []string{"k=a&k=a", "k=a&K=a", "k=a&k=a", "k=1&k=2&k=3&k=4", "k=5&k=6&k=7&k=8&k=9", "k=5"} {
		got = append(got, l.Decide(&Request{Method: "GET", Path: "/", RawQuery: q, Header: http.Header{}}, 0, 0).Allow)
	}
	if want := []bool{true, true, false, true, false, true}; !slices.Equal(got, want) {
		t.Errorf("query:k: allowed %v, want %v", got, want)
	}
	l, _ = newTestLimiter(t, Rule{Name: "k", Limit: 5, Period: time.Minute, Key: "{query:a}/{query:b}"})
	if l.Decide(&Request{Method: "GET", Path: "/", RawQuery: "a=1&a=2&b=1&b=2", Header: http.Header{}}, 0, 0).Allow {
		t.Error("two parts of two values each: admitted, want refused")
	}
	if !l.Decide(&Request{Method: "GET", Path: "/", RawQuery: "a=1&a=2&b=1", Header: http.Header{}}, 0, 0).Allow {
		t.Error("one part of two values: refused, want admitted")
	}
}
