package route

import (
	"fmt"
	"testing"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	tbl, err := New([]Rule[string]{
		{Host: "api.example.com", PathPrefix: "/", Target: "api-root"},
		{Host: "api.example.com", PathPrefix: "/v2/", Target: "api-v2"},
		{Host: "*.example.com", PathPrefix: "/", Target: "wild"},
		{Host: "*.b.example.com", PathPrefix: "/", Target: "wild-b"},
		{Host: "*", PathPrefix: "/static", Target: "static"},
		{Host: "", PathPrefix: "/admin", Target: "admin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ host, path, want string }{
		{"api.example.com", "/x", "api-root"},
		{"API.Example.com:8080", "/v2/users", "api-v2"},
		{"api.example.com.", "/v2/users", "api-v2"},
		{"api.example.com", "/v2", "api-root"},
		{"x.example.com", "/", "wild"},
		{"y.x.example.com", "/", "wild"},
		{"c.b.example.com", "/", "wild-b"},
		{"example.com", "/static/a.css", "static"},
		{"other", "/static/a.css", "static"},
		{"other", "/public/../admin/x", "admin"},
		{"other", "//admin", "admin"},
		{"other", "/%61dmin", "admin"},
		{"other", "/public/%2e%2e/admin", "admin"},
		{"other", "/%2561dmin", ""},
		{"other", "/nothing", ""},
		{"[::1]:80", "/static", "static"},
	}
	for _, tc := range cases {
		r, ok := tbl.Match(tc.host, tc.path)
		got := ""
		if ok {
			got = r.Target
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q) = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

// TestMatchEncodedSlash: a path that spells a rule's slash as "%2F", or
// that holds path parameters (";v=1", "..;"), meets that rule, as an
// origin that decodes "%2F" (Go's URL.Path, WSGI's PATH_INFO, nginx) or
// drops parameters (Tomcat, Jetty) serves it the rule's path;
// "/api%2Flogin" and "/x/..;/api/login" dodged the rules for
// "/api/login". A prefix written with "%2F" matches both spellings.
func TestMatchEncodedSlash(t *testing.T) {
	t.Parallel()
	tbl, err := New([]Rule[string]{
		{Host: "*", PathPrefix: "/", Target: "rest"},
		{Host: "*", PathPrefix: "/api/login", Target: "login"},
		{Host: "*", PathPrefix: "/files/a%2fb/", Target: "ab"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/api/login", "login"},
		{"/api%2Flogin", "login"},
		{"/api%2flogin/x", "login"},
		{"%2Fapi%2Flogin", "rest"}, // not a path
		{"/x%2F..%2Fapi/login", "login"},
		// The route of a path's first segment is no longer taken by one
		// that an origin decoding "%2F" resolves out of it (a caching
		// route for /files/ made such a page stored: cache deception).
		{"/files/a%2Fb/..%2F..%2F..%2Fapi/login", "login"},
		// Path parameters, which Tomcat and Jetty drop: "..;" is "..".
		{"/files/a%2Fb/..;/..;/..;/api/login", "login"},
		{"/api;v=1/login", "login"},
		{"/files;x/a%2fb/c", "ab"},
		{"/api%252Flogin", "rest"}, // an encoded '%': "%2F" to an origin that decodes once
		{"/files/a%2Fb/c", "ab"},
		{"/files/a/b/c", "ab"},
		{"/files/ab/c", "rest"},
	} {
		r, ok := tbl.Match("h", tc.path)
		got := ""
		if ok {
			got = r.Target
		}
		if got != tc.want {
			t.Errorf("Match(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	for _, rules := range [][]Rule[int]{
		{{Host: "a", PathPrefix: "/"}, {Host: "A", PathPrefix: "/"}},
		{{Host: "a*b"}},
		{{Host: "a", PathPrefix: "x"}},
		{{Host: "*."}},
		{{Host: "a b"}},
	} {
		if _, err := New(rules); err == nil {
			t.Errorf("New(%v) accepted", rules)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	tbl, _ := New([]Rule[int]{{Host: "a.example.com", PathPrefix: "/api"}, {Host: "*.example.com"}})
	if n := testing.AllocsPerRun(100, func() { tbl.Match("b.example.com:443", "/api/x") }); n != 0 {
		t.Fatalf("Match allocates %v times", n)
	}
}

func BenchmarkMatch(b *testing.B) {
	var rules []Rule[int]
	for i := range 50 {
		rules = append(rules, Rule[int]{Host: fmt.Sprintf("h%d.example.com", i), PathPrefix: "/"},
			Rule[int]{Host: fmt.Sprintf("h%d.example.com", i), PathPrefix: fmt.Sprintf("/api/v%d/", i)})
	}
	rules = append(rules, Rule[int]{Host: "*.example.com"})
	tbl, _ := New(rules)
	b.ReportAllocs()
	for b.Loop() {
		tbl.Match("h25.example.com", "/api/v25/users/1")
	}
}

func ExampleTable() {
	tbl, _ := New([]Rule[string]{
		{Host: "*.example.com", PathPrefix: "/", Target: "web"},
		{Host: "*.example.com", PathPrefix: "/api/", Target: "api"},
	})
	r, _ := tbl.Match("www.example.com", "/api/users")
	fmt.Println(r.Target)
	// Output: api
}

// TestMatchCaseInsensitive: a case-insensitive rule meets every spelling
// of its prefix's ASCII letters, escapes included ("/%41dmin" decodes to
// "/Admin"), and nothing else; a case-sensitive one only its own.
func TestMatchCaseInsensitive(t *testing.T) {
	t.Parallel()
	tbl, err := New([]Rule[string]{
		{Host: "*", PathPrefix: "/", Target: "rest"},
		{Host: "*", PathPrefix: "/admin", CaseInsensitive: true, Target: "admin"},
		{Host: "*", PathPrefix: "/Static/", Target: "static"},
		{Host: "*", PathPrefix: "/caf%C3%A9", CaseInsensitive: true, Target: "cafe"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/admin", "admin"},
		{"/ADMIN/users", "admin"},
		{"/aDmIn", "admin"},
		{"/%41dmin", "admin"},
		{"/x/../AdMin", "admin"},
		{"/\u212admin", "rest"}, // the Kelvin sign is no 'k', and no 'a' either
		{"/admi", "rest"},
		{"/Static/a.css", "static"},
		{"/static/a.css", "rest"},
		{"/CAF%C3%A9", "cafe"},
		{"/CAF%c3%a9", "cafe"}, // escapes' hex in either case
		{"/caf%C3%89", "rest"}, // É is not é: non-ASCII is compared as bytes
	} {
		r, ok := tbl.Match("h", tc.path)
		got := ""
		if ok {
			got = r.Target
		}
		if got != tc.want {
			t.Errorf("Match(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name  string
		rules []Rule[string]
		ok    bool
	}{
		{"two case-sensitive spellings", []Rule[string]{{PathPrefix: "/a"}, {PathPrefix: "/A"}}, true},
		{"one case-insensitive", []Rule[string]{{PathPrefix: "/a"}, {PathPrefix: "/A", CaseInsensitive: true}}, false},
		{"the first case-insensitive", []Rule[string]{{PathPrefix: "/A", CaseInsensitive: true}, {PathPrefix: "/a"}}, false},
		{"after two case-sensitive", []Rule[string]{{PathPrefix: "/a"}, {PathPrefix: "/A"}, {PathPrefix: "/a", CaseInsensitive: true}}, false},
		{"other hosts", []Rule[string]{{Host: "x", PathPrefix: "/a", CaseInsensitive: true}, {Host: "y", PathPrefix: "/A"}}, true},
	} {
		if _, err := New(tc.rules); (err == nil) != tc.ok {
			t.Errorf("%s: New error %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
