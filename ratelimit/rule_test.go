package ratelimit

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRuleValidate(t *testing.T) {
	t.Parallel()
	ok := Rule{Name: "api", Limit: 10}
	for _, tc := range []struct {
		name string
		mod  func(*Rule)
		want string // substring of the error, "" for valid
	}{
		{"minimal", func(*Rule) {}, ""},
		{"full", func(r *Rule) {
			*r = Rule{Name: "api-per-key", Match: Match{Route: "api", Host: "*.example.com", PathPrefix: "/v1/", Methods: []string{"GET", "POST"}},
				Key: "header:x-api-key", Limit: 1000, Period: time.Second, Burst: 200, Algorithm: TokenBucket, Scope: Global, OnExceed: Delay, MaxDelay: time.Second}
		}, ""},
		{"no name", func(r *Rule) { r.Name = "" }, "Name"},
		{"bad name", func(r *Rule) { r.Name = "a b" }, "Name"},
		{"zero limit", func(r *Rule) { r.Limit = 0 }, "Limit: 0"},
		{"tiny period", func(r *Rule) { r.Period = time.Microsecond }, "Period"},
		{"negative burst", func(r *Rule) { r.Burst = -1 }, "Burst"},
		{"algorithm", func(r *Rule) { r.Algorithm = "leaky" }, "Algorithm"},
		{"scope", func(r *Rule) { r.Scope = "cluster" }, "Scope"},
		{"on_exceed", func(r *Rule) { r.OnExceed = "drop" }, "OnExceed"},
		{"key", func(r *Rule) { r.Key = "header:" }, "Key"},
		{"constant key", func(r *Rule) { r.Key = "{}" }, "Key"},
		{"host", func(r *Rule) { r.Match.Host = "a*.b" }, "Match.Host"},
		{"prefix", func(r *Rule) { r.Match.PathPrefix = "v1" }, "Match.PathPrefix"},
		{"method", func(r *Rule) { r.Match.Methods = []string{"get"} }, "Match.Methods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ok
			tc.mod(&r)
			err := r.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	req := &Request{Route: "api", Host: "API.example.com:8443", Method: "GET", Path: "/v1/x", RawQuery: "a=1&token=t%20k&b",
		ClientIP: "10.1.2.3", Header: http.Header{"X-Api-Key": {"K1"}, "Cookie": {"x=1; session=s9; y=2"}}}
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"client_ip", "10.1.2.3", true},
		{"route", "api", true},
		{"method", "GET", true},
		{"host", "api.example.com", true},
		{"path", "/v1/x", true},
		{"header:x-api-key", "K1", true},
		{"header:X-API-KEY", "K1", true},
		{"header:absent", "", false},
		{"cookie:session", "s9", true},
		{"cookie:none", "", false},
		{"query:token", "t k", true},
		{"query:b", "", false},
		{"{route}/{header:x-api-key}", "api/K1", true},
		{"ip={client_ip} key={header:x-api-key}", "ip=10.1.2.3 key=K1", true},
		{"{route}:{header:absent}", "", false},
	} {
		k, err := ParseKey(tc.key)
		if err != nil {
			t.Fatalf("ParseKey(%q): %v", tc.key, err)
		}
		var buf [maxKeyLen]byte
		got, ok := k.build(req, func() *[maxKeyLen]byte { return &buf })
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: got %q, %v; want %q, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
	for _, bad := range []string{"", "ip", "header", "header:", "client_ip:x", "{route", "route}", "lit{", "{nope}"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	long := &Request{Header: http.Header{"K": {strings.Repeat("x", 1000)}}}
	k, _ := ParseKey("{header:k}-{header:k}")
	var buf [maxKeyLen]byte
	if got, _ := k.build(long, func() *[maxKeyLen]byte { return &buf }); len(got) != maxKeyLen {
		t.Errorf("a long key is %d bytes, want it cut to %d", len(got), maxKeyLen)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	m := compileMatch(Match{Route: "api", Host: "*.example.com", PathPrefix: "/v1/", Methods: []string{"GET", "POST"}})
	base := Request{Route: "api", Host: "a.example.com", Path: "/v1/users", Method: "GET"}
	for _, tc := range []struct {
		name string
		mod  func(*Request)
		want bool
	}{
		{"all match", func(*Request) {}, true},
		{"port and case", func(r *Request) { r.Host = "A.Example.COM:8080" }, true},
		{"other route", func(r *Request) { r.Route = "web" }, false},
		{"apex host", func(r *Request) { r.Host = "example.com" }, false},
		{"other host", func(r *Request) { r.Host = "a.example.org" }, false},
		{"path", func(r *Request) { r.Path = "/v2/users" }, false},
		{"method", func(r *Request) { r.Method = "DELETE" }, false},
		{"HEAD with GET", func(r *Request) { r.Method = "HEAD" }, true},
	} {
		r := base
		tc.mod(&r)
		if got := m.match(&r); got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.name, got, tc.want)
		}
	}
	if post := compileMatch(Match{Methods: []string{"POST"}}); post.match(&Request{Method: "HEAD"}) {
		t.Error("HEAD matches a rule for POST only")
	}
	if any := compileMatch(Match{}); !any.match(&Request{}) {
		t.Error("the zero Match does not match everything")
	}
	// An origin that serves "/V1/" as "/v1/": case_insensitive counts
	// every spelling of the prefix's ASCII letters; by default the prefix
	// is matched as written.
	for _, tc := range []struct {
		prefix, path string
		fold, want   bool
	}{
		{"/v1/", "/V1/users", true, true},
		{"/v1/", "/v1/users", true, true},
		{"/v1/", "/V1/users", false, false},
		{"/k1/", "/\u212a1/", true, false}, // the Kelvin sign is no k
	} {
		m := compileMatch(Match{PathPrefix: tc.prefix, CaseInsensitive: tc.fold})
		if got := m.match(&Request{Path: tc.path}); got != tc.want {
			t.Errorf("prefix %q, path %q, case_insensitive %v: match = %v, want %v", tc.prefix, tc.path, tc.fold, got, tc.want)
		}
	}
	exact := compileMatch(Match{Host: "example.com"})
	if !exact.match(&Request{Host: "EXAMPLE.com."}) || exact.match(&Request{Host: "a.example.com"}) {
		t.Error("an exact host matches wrongly")
	}
}

// TestMatchMethodOverride: a rule for some methods counts a request that
// asks for one of them in a field or parameter frameworks read as the real
// method: Rails (Rack::MethodOverride) serves "POST" with
// "X-HTTP-Method-Override: DELETE" as a DELETE, so a DELETE rule never
// counted it, nor a GET rule a POST overridden to GET.
func TestMatchMethodOverride(t *testing.T) {
	t.Parallel()
	del := compileMatch(Match{Methods: []string{"DELETE"}})
	get := compileMatch(Match{Methods: []string{"GET"}})
	for _, tc := range []struct {
		name  string
		m     matcher
		r     Request
		match bool
	}{
		{"X-HTTP-Method-Override", del, Request{Method: "POST", Header: http.Header{"X-Http-Method-Override": {"DELETE"}}}, true},
		{"lower case value", del, Request{Method: "POST", Header: http.Header{"X-Http-Method-Override": {" delete"}}}, true},
		{"X-HTTP-Method", del, Request{Method: "POST", Header: http.Header{"X-Http-Method": {"DELETE"}}}, true},
		{"X-Method-Override", del, Request{Method: "POST", Header: http.Header{"X-Method-Override": {"DELETE"}}}, true},
		{"CGI spelling", del, Request{Method: "POST", Header: http.Header{"X_http_method_override": {"DELETE"}}}, true},
		{"second line", del, Request{Method: "POST", Header: http.Header{"X-Http-Method-Override": {"PUT", "DELETE"}}}, true},
		{"_method in the query", del, Request{Method: "POST", RawQuery: "a=1&_method=DELETE"}, true},
		{"POST overridden to GET", get, Request{Method: "POST", Header: http.Header{"X-Http-Method-Override": {"GET"}}}, true},
		{"another method", del, Request{Method: "POST", Header: http.Header{"X-Http-Method-Override": {"PUT"}}}, false},
		{"another field", del, Request{Method: "POST", Header: http.Header{"X-Method": {"DELETE"}}}, false},
		{"no override", del, Request{Method: "POST", Header: http.Header{}}, false},
	} {
		if got := tc.m.match(&tc.r); got != tc.match {
			t.Errorf("%s: match = %v, want %v", tc.name, got, tc.match)
		}
	}
}

func TestPolicyItem(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r    Rule
		want string
	}{
		{Rule{Name: "api", Limit: 1000, Period: time.Second}, `"api";q=1000;w=1`},
		{Rule{Name: "m", Limit: 60, Period: time.Minute}, `"m";q=60;w=60`},
		{Rule{Name: "fast", Limit: 5, Period: 100 * time.Millisecond}, `"fast";q=5;w=1`},
	} {
		if got := policyItem(tc.r); got != tc.want {
			t.Errorf("policyItem(%+v) = %s, want %s", tc.r, got, tc.want)
		}
	}
}
