package route

import (
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		// Unchanged, returned as is.
		{"/", "/"},
		{"/limited/a", "/limited/a"},
		{"/a/", "/a/"},
		{"/a%20b", "/a%20b"},
		{"/a%2Fb", "/a%2Fb"},
		// Unreserved characters decoded (RFC 3986 §2.3).
		{"/%6cimited/a", "/limited/a"},
		{"/%73mall", "/small"},
		{"/%7e", "/~"},
		{"/%7E%2d%5f%2E", "/~-_."},
		{"/%41%5A%30%39", "/AZ09"},
		// Others stay encoded, hex upper-cased (§6.2.2.1).
		{"/a%2fb", "/a%2Fb"},
		{"/%2f", "/%2F"},
		{"/%2F", "/%2F"},
		{"/%00", "/%00"},
		{"/%25", "/%25"},
		{"/%2573", "/%2573"},
		{"/%c3%a9", "/%C3%A9"},
		{"/%3f%23", "/%3F%23"},
		// Dot segments, encoded or not, and slash runs.
		{"/x/%2e%2e/limited/a", "/limited/a"},
		{"/x/%2E%2e/limited/a", "/limited/a"},
		{"/x/.%2e/limited/a", "/limited/a"},
		{"/%2e%2e/%2e%2e/a", "/a"},
		{"/a/%2e/b", "/a/b"},
		{"/a/..%2fb", "/a/..%2Fb"}, // one segment, not a dot segment
		{"/public/../admin/x", "/admin/x"},
		{"//admin", "/admin"},
		{"/a//b/", "/a/b/"},
		{"/admin/.", "/admin/"},
		{"/admin/x/..", "/admin/"},
		{"/admin/%2e", "/admin/"},
		{"/..", "/"},
		// A '%' without two hex digits is kept as it is.
		{"/%zz", "/%zz"},
		{"/%4", "/%4"},
		{"/a%", "/a%"},
		{"/%4g%6c", "/%4gl"},
		// ... and a decoded hex digit never completes a new escape with it
		// ("/%%36%31dmin" must not become "/%61dmin", which is "/admin").
		{"/%%36%31dmin", "/%%361dmin"},
		{"/%%34%31", "/%%341"},
		{"/%4%31", "/%4%31"},
		{"/%%6c", "/%l"},
		// Not a path.
		{"", "/"},
		{"*", "/"},
	} {
		if got := CleanPath(tc.in); got != tc.want {
			t.Errorf("CleanPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMatchPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"/api/login", "/api/login"},
		{"/api%2Flogin", "/api/login"},
		{"/api%2flogin", "/api/login"},
		{"/a%2F%2Fb", "/a/b"},
		{"/a%2F..%2Fb", "/b"},
		{"/a%2F.", "/a/"},
		{"/%2F", "/"},
		{"/a%252Fb", "/a%252Fb"},
		{"/%%2F41", "/%/41"},
		{"/%73%2Fx/../y", "/y"},
		// Path parameters, as Tomcat and Jetty drop them.
		{"/public/..;/admin", "/admin"},
		{"/api;v=1/login", "/api/login"},
		{"/api/login;jsessionid=x", "/api/login"},
		{"/a/;x/b", "/a/b"},
		{"/;", "/"},
		{"/a;x%2F..%2F/b", "/a/b"}, // parameters first: Tomcat drops them before it decodes
		{"/a/b%3Bx", "/a/b%3Bx"},   // an encoded ';' is no delimiter
		// Backslashes, raw or encoded, as IIS reads them.
		{`/api\login`, "/api/login"},
		{"/api%5clogin", "/api/login"},
		{"/api%5Clogin", "/api/login"},
		{`/a\\b\`, "/a/b/"},
		{"/a%255Cb", "/a%255Cb"},
	} {
		if got := MatchPath(tc.in); got != tc.want {
			t.Errorf("MatchPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"/api", "/api"},
		{"/a%2fb/", "/a/b/"},
		{"/%73mall", "/small"},
		{"/a/..", "/a/.."},
		{"/a;x/b", "/a/b"},
		{`/a\b/`, "/a/b/"},
		{"/a%5cb/", "/a/b/"},
	} {
		if got := MatchPrefix(tc.in); got != tc.want {
			t.Errorf("MatchPrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCleanPathAllocs(t *testing.T) {
	for _, p := range []string{"/api/v1/users", "/a%20b/%2F", "/caf%C3%A9/x"} {
		if n := testing.AllocsPerRun(100, func() { CleanPath(p) }); n != 0 {
			t.Errorf("CleanPath(%q) allocates %v times", p, n)
		}
		if strings.Contains(p, "%2F") || strings.Contains(p, ";") {
			continue
		}
		if n := testing.AllocsPerRun(100, func() { MatchPath(p) }); n != 0 {
			t.Errorf("MatchPath(%q) allocates %v times", p, n)
		}
	}
}

// FuzzCleanPath checks that CleanPath is idempotent (a second pass, as a
// second proxy would make, finds nothing more to change) and that it keeps
// the path an origin decodes, but for dot segments and slash runs.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/%6cimited/a", "/x/%2e%2e/a", "/%%34%31", "/%4%31", "/a%2fb/", "/%zz", "/a/.", "//%2e/", `/a\..\b`, "/a%5c%2e/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		p = "/" + p
		c := CleanPath(p)
		if again := CleanPath(c); again != c {
			t.Fatalf("CleanPath(%q) = %q, but CleanPath(%q) = %q", p, c, c, again)
		}
		if strings.Contains(c, "//") {
			t.Fatalf("CleanPath(%q) = %q keeps a slash run", p, c)
		}
		if m := MatchPath(p); MatchPath(m) != m || strings.Contains(m, "%2F") || strings.Contains(m, "%5C") || strings.ContainsAny(m, ";\\") || strings.Contains(m, "//") {
			t.Fatalf("MatchPath(%q) = %q, and MatchPath of that is %q", p, m, MatchPath(m))
		}
		// Without dot segments or slash runs in the decoded path, an
		// origin decodes the result to what it decodes the input to.
		dp := lenientUnescape(p)
		if strings.Contains(dp, "/.") || strings.Contains(dp, "//") {
			return
		}
		if dc := lenientUnescape(c); dc != dp {
			t.Fatalf("CleanPath(%q) = %q: decodes to %q, want %q", p, c, dc, dp)
		}
	})
}

// lenientUnescape decodes every "%" and two hex digits once and keeps any
// other '%', as a lenient origin does.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
