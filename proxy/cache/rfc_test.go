package cache

import (
	"net/http"
	"testing"
	"time"
)

// t0 is the tests' "now"; dates are written relative to it.
var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func date(d time.Duration) string { return t0.Add(d).Format(http.TimeFormat) }

// hdr builds a header from key, value pairs.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// TestRFC9111Storable: one case per storability rule, each naming the
// section it checks.
func TestRFC9111Storable(t *testing.T) {
	get := func(status int, resp http.Header) Exchange {
		return Exchange{Method: "GET", Request: http.Header{}, Status: status, Header: resp, Now: t0}
	}
	withReq := func(x Exchange, req http.Header) Exchange { x.Request = req; return x }
	cases := []struct {
		section string
		x       Exchange
		store   bool
		reason  string
	}{
		{"§3 max-age makes a 200 storable", get(200, hdr("Cache-Control", "max-age=60")), true, ""},
		{"§3 only GET responses are stored here", Exchange{Method: "POST", Status: 200, Header: hdr("Cache-Control", "max-age=60"), Now: t0}, false, "method"},
		{"§3 a 206 is not stored as a full response", get(206, hdr("Cache-Control", "max-age=60")), false, "partial"},
		{"§3 a 304 is not a storable final response", get(304, hdr("Cache-Control", "max-age=60")), false, "status"},
		{"§3 a status neither heuristically cacheable nor explicit is not stored", get(302, hdr("Etag", `"a"`)), false, "status"},
		{"§3 explicit freshness makes any final status storable", get(302, hdr("Cache-Control", "max-age=5")), true, ""},
		{"§3 public makes a non-heuristic status storable", get(307, hdr("Cache-Control", "public", "Etag", `"a"`)), true, ""},
		{"§3 heuristically cacheable 404 with a validator", get(404, hdr("Last-Modified", date(-time.Hour))), true, ""},
		{"§3 a 200 with no freshness and no validator could never be used", get(200, http.Header{}), false, "no-freshness"},
		{"§5.2.2.5 no-store", get(200, hdr("Cache-Control", "no-store, max-age=60")), false, "no-store"},
		{"§5.2.2.3 must-understand with a known status overrides no-store", get(200, hdr("Cache-Control", "must-understand, no-store, max-age=60")), true, ""},
		{"§5.2.2.3 must-understand with an unknown status is not stored", get(299, hdr("Cache-Control", "must-understand, no-store, max-age=60")), false, "must-understand"},
		{"§5.2.2.7 private: a shared cache does not store it", get(200, hdr("Cache-Control", "private, max-age=60")), false, "private"},
		{"§5.2.2.7 qualified private is taken as private", get(200, hdr("Cache-Control", `private="Set-Cookie", max-age=60`)), false, "private"},
		{"§5.2.2.4 no-cache may be stored (validated on use)", get(200, hdr("Cache-Control", "no-cache", "Etag", `"a"`)), true, ""},
		{"§5.2.1.5 request no-store", withReq(get(200, hdr("Cache-Control", "max-age=60")), hdr("Cache-Control", "no-store")), false, "request-no-store"},
		{"§3.5 Authorization: not stored without public, s-maxage or must-revalidate", withReq(get(200, hdr("Cache-Control", "max-age=60")), hdr("Authorization", "Bearer x")), false, "authorization"},
		{"§3.5 Authorization with public is stored", withReq(get(200, hdr("Cache-Control", "public, max-age=60")), hdr("Authorization", "Bearer x")), true, ""},
		{"§3.5 Authorization with s-maxage is stored", withReq(get(200, hdr("Cache-Control", "s-maxage=60")), hdr("Authorization", "Bearer x")), true, ""},
		{"§3.5 Authorization with must-revalidate is stored", withReq(get(200, hdr("Cache-Control", "must-revalidate, max-age=60")), hdr("Authorization", "Bearer x")), true, ""},
		{"§4.1 Vary: * never matches, so it is not stored", get(200, hdr("Cache-Control", "max-age=60", "Vary", "Accept, *")), false, "vary-star"},
		{"§4.1 Vary on fields is stored (as variants)", get(200, hdr("Cache-Control", "max-age=60", "Vary", "Accept-Encoding")), true, ""},
		{"§7.3 (policy) Set-Cookie is not stored by default", get(200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "a=b")), false, "set-cookie"},
		{"RFC 5861 §4 a stale-if-error window alone makes it usable", get(200, hdr("Cache-Control", "max-age=0, stale-if-error=60")), true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			d := Decide(tc.x)
			if d.Store != tc.store || d.Reason != tc.reason {
				t.Fatalf("Decide = store %v reason %q, want %v %q", d.Store, d.Reason, tc.store, tc.reason)
			}
		})
	}
}

// TestRFC9111Lifetime: the freshness lifetime, per rule.
func TestRFC9111Lifetime(t *testing.T) {
	cases := []struct {
		section string
		h       http.Header
		status  int
		want    time.Duration
	}{
		{"§4.2.1 s-maxage wins over max-age in a shared cache", hdr("Cache-Control", "max-age=10, s-maxage=20"), 200, 20 * time.Second},
		{"§4.2.1 max-age wins over Expires", hdr("Cache-Control", "max-age=10", "Expires", date(time.Hour), "Date", date(0)), 200, 10 * time.Second},
		{"§4.2.1 Expires minus Date", hdr("Expires", date(90*time.Second), "Date", date(0)), 200, 90 * time.Second},
		{"§4.2.1 Expires minus the arrival time when Date is absent", hdr("Expires", date(30*time.Second)), 200, 30 * time.Second},
		{"§5.3 an invalid Expires (\"0\") is in the past", hdr("Expires", "0", "Date", date(0)), 200, 0},
		{"§4.2.1 the first max-age counts", hdr("Cache-Control", "max-age=5, max-age=50"), 200, 5 * time.Second},
		{"§5.2 a quoted max-age is accepted", hdr("Cache-Control", `max-age="7"`), 200, 7 * time.Second},
		{"§1.2.2 an invalid delta is taken as 0", hdr("Cache-Control", "max-age=ten"), 200, 0},
		{"§1.2.2 an overflowing delta is 2^31 seconds", hdr("Cache-Control", "max-age=99999999999999999999"), 200, maxDelta},
		{"§4.2.2 heuristic: 10% of the time since Last-Modified", hdr("Date", date(0), "Last-Modified", date(-10*time.Hour)), 200, time.Hour},
		{"§4.2.2 heuristic capped at a day", hdr("Date", date(0), "Last-Modified", date(-100*24*time.Hour)), 200, maxHeuristic},
		{"§4.2.2 no heuristic for a status that is not heuristically cacheable", hdr("Date", date(0), "Last-Modified", date(-10*time.Hour)), 302, 0},
		{"§4.2.2 no heuristic without Last-Modified", hdr("Date", date(0)), 200, 0},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			d := Decide(Exchange{Method: "GET", Request: http.Header{}, Status: tc.status, Header: tc.h, Now: t0})
			if d.Fresh != tc.want {
				t.Fatalf("Fresh = %s, want %s", d.Fresh, tc.want)
			}
		})
	}
}

// TestRFC9111Age: the current age (§4.2.3) from Age, Date and the
// request and response times.
func TestRFC9111Age(t *testing.T) {
	cases := []struct {
		section  string
		h        http.Header
		req, now time.Duration // request time and now, relative to the response time t0
		want     time.Duration
	}{
		{"§4.2.3 resident time only", hdr("Date", date(0)), 0, 30 * time.Second, 30 * time.Second},
		{"§4.2.3 Age from upstream plus response delay", hdr("Date", date(0), "Age", "100"), -2 * time.Second, 10 * time.Second, 112 * time.Second},
		{"§4.2.3 apparent age from a Date in the past", hdr("Date", date(-50*time.Second)), 0, 0, 50 * time.Second},
		{"§4.2.3 a Date in the future gives no negative age", hdr("Date", date(time.Hour)), 0, 5 * time.Second, 5 * time.Second},
		{"§4.2.3 an invalid Age counts as 0", hdr("Date", date(0), "Age", "-3"), 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			m := &Meta{Header: tc.h, RequestTime: t0.Add(tc.req), ResponseTime: t0}
			if got := m.Age(t0.Add(tc.now)); got != tc.want {
				t.Fatalf("Age = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRFC9111Use: how a stored response satisfies a request, per rule.
func TestRFC9111Use(t *testing.T) {
	meta := func(cc string, fresh time.Duration) *Meta {
		h := hdr("Date", date(0), "Cache-Control", cc)
		d := Decide(Exchange{Method: "GET", Request: http.Header{}, Status: 200, Header: h, Now: t0})
		m := NewMeta(Exchange{Status: 200, Header: h, Now: t0}, t0, d)
		m.Fresh = fresh
		return m
	}
	cases := []struct {
		section string
		m       *Meta
		req     http.Header
		age     time.Duration
		want    Use
	}{
		{"§4.2 fresh while age < lifetime", meta("max-age=60", time.Minute), http.Header{}, 59 * time.Second, UseFresh},
		{"§4.2 stale once age reaches the lifetime", meta("max-age=60", time.Minute), http.Header{}, time.Minute, UseValidate},
		{"§5.2.1.4 request no-cache validates a fresh response", meta("max-age=60", time.Minute), hdr("Cache-Control", "no-cache"), 0, UseValidate},
		{"§5.4 Pragma: no-cache without Cache-Control is no-cache", meta("max-age=60", time.Minute), hdr("Pragma", "no-cache"), 0, UseValidate},
		{"§5.4 Pragma is ignored when Cache-Control is present", meta("max-age=60", time.Minute), hdr("Pragma", "no-cache", "Cache-Control", "max-stale"), 0, UseFresh},
		{"§5.2.1.1 request max-age below the age validates", meta("max-age=60", time.Minute), hdr("Cache-Control", "max-age=10"), 20 * time.Second, UseValidate},
		{"§5.2.1.1 request max-age above the age serves", meta("max-age=60", time.Minute), hdr("Cache-Control", "max-age=30"), 20 * time.Second, UseFresh},
		{"§5.2.1.3 min-fresh more than what is left validates", meta("max-age=60", time.Minute), hdr("Cache-Control", "min-fresh=30"), 40 * time.Second, UseValidate},
		{"§5.2.1.2 max-stale accepts a stale response within it", meta("max-age=60", time.Minute), hdr("Cache-Control", "max-stale=30"), 80 * time.Second, UseStale},
		{"§5.2.1.2 max-stale refuses beyond it", meta("max-age=60", time.Minute), hdr("Cache-Control", "max-stale=10"), 80 * time.Second, UseValidate},
		{"§5.2.1.2 max-stale without a value accepts any staleness", meta("max-age=60", time.Minute), hdr("Cache-Control", "max-stale"), time.Hour, UseStale},
		{"§5.2.2.2 must-revalidate forbids stale use, even with max-stale", meta("max-age=60, must-revalidate", time.Minute), hdr("Cache-Control", "max-stale"), 80 * time.Second, UseValidate},
		{"§5.2.2.8 proxy-revalidate forbids stale use in a shared cache", meta("max-age=60, proxy-revalidate", time.Minute), hdr("Cache-Control", "max-stale"), 80 * time.Second, UseValidate},
		{"§5.2.2.10 s-maxage implies proxy-revalidate", meta("s-maxage=60", time.Minute), hdr("Cache-Control", "max-stale"), 80 * time.Second, UseValidate},
		{"§5.2.2.4 response no-cache validates every use", meta("no-cache, max-age=60", time.Minute), http.Header{}, 0, UseValidate},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			v := Check(tc.m, ParseRequest(tc.req), t0.Add(tc.age))
			if v.Use != tc.want {
				t.Fatalf("Use = %d, want %d (age %s ttl %s)", v.Use, tc.want, v.Age, v.TTL)
			}
		})
	}
}

// TestRFC5861Windows: stale-while-revalidate and stale-if-error.
func TestRFC5861Windows(t *testing.T) {
	cases := []struct {
		section  string
		cc       string
		def      time.Duration
		age      time.Duration
		swr, sie bool
	}{
		{"RFC 5861 §3 within stale-while-revalidate", "max-age=10, stale-while-revalidate=30", 0, 20 * time.Second, true, false},
		{"RFC 5861 §3 past stale-while-revalidate", "max-age=10, stale-while-revalidate=30", 0, 41 * time.Second, false, false},
		{"RFC 5861 §4 within stale-if-error", "max-age=10, stale-if-error=60", 0, 30 * time.Second, false, true},
		{"RFC 5861 §4 past stale-if-error", "max-age=10, stale-if-error=60", 0, 71 * time.Second, false, false},
		{"RFC 5861 §4 a route's default window", "max-age=10", time.Minute, 30 * time.Second, false, true},
		{"RFC 5861 §4 the response's window overrides the default", "max-age=10, stale-if-error=5", time.Minute, 30 * time.Second, false, false},
		{"§4.2.4 must-revalidate forbids both", "max-age=10, must-revalidate, stale-while-revalidate=30, stale-if-error=30", 0, 20 * time.Second, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			x := Exchange{Method: "GET", Request: http.Header{}, Status: 200, Header: hdr("Date", date(0), "Cache-Control", tc.cc), Now: t0, DefaultStaleIfError: tc.def}
			m := NewMeta(x, t0, Decide(x))
			v := Check(m, Directives{MaxAge: Absent, MinFresh: Absent, MaxStale: Absent}, t0.Add(tc.age))
			if got := m.ServeStaleWhileRevalidating(v); got != tc.swr {
				t.Fatalf("stale-while-revalidate = %v, want %v", got, tc.swr)
			}
			if got := m.ServeStaleOnError(v); got != tc.sie {
				t.Fatalf("stale-if-error = %v, want %v", got, tc.sie)
			}
		})
	}
}

// TestRFC9111Validation: conditional requests answered from a stored
// response, and the 304 merge.
func TestRFC9111Validation(t *testing.T) {
	stored := hdr("Etag", `"v1"`, "Last-Modified", date(-time.Hour), "Date", date(0), "Content-Length", "5")
	cases := []struct {
		section string
		req     http.Header
		want    bool
	}{
		{"§4.3.2 If-None-Match with the stored entity tag", hdr("If-None-Match", `"v1"`), true},
		{"§4.3.2 If-None-Match compares weakly", hdr("If-None-Match", `W/"v1"`), true},
		{"§4.3.2 If-None-Match from a list", hdr("If-None-Match", `"x", "v1"`), true},
		{"§4.3.2 If-None-Match: * matches", hdr("If-None-Match", "*"), true},
		{"§4.3.2 another entity tag", hdr("If-None-Match", `"v2"`), false},
		{"§4.3.2 If-Modified-Since at Last-Modified", hdr("If-Modified-Since", date(-time.Hour)), true},
		{"§4.3.2 If-Modified-Since before Last-Modified", hdr("If-Modified-Since", date(-2*time.Hour)), false},
		{"§4.3.2 If-None-Match wins over If-Modified-Since", hdr("If-None-Match", `"v2"`, "If-Modified-Since", date(0)), false},
		{"RFC 9110 §13.1.3 an invalid If-Modified-Since is ignored", hdr("If-Modified-Since", "yesterday"), false},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			if got := NotModified(tc.req, 200, stored); got != tc.want {
				t.Fatalf("NotModified = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("RFC 9110 §13.1.2 If-None-Match: * matches a response without an entity tag", func(t *testing.T) {
		if !NotModified(hdr("If-None-Match", "*"), 200, hdr("Date", date(0))) {
			t.Fatal("a stored response without Etag was answered whole to If-None-Match: *")
		}
		if NotModified(hdr("If-None-Match", `"v1"`), 200, hdr("Date", date(0))) {
			t.Fatal("an entity tag matched a response without one")
		}
	})
	t.Run("§4.3.2 only a stored 200 is answered 304", func(t *testing.T) {
		if NotModified(hdr("If-None-Match", `"v1"`), 404, stored) {
			t.Fatal("a 404 became 304")
		}
	})
	t.Run("§4.3.1 validators of the stored response go to the origin", func(t *testing.T) {
		h := http.Header{}
		if !AddValidators(h, &Meta{Header: stored}) || h.Get("If-None-Match") != `"v1"` || h.Get("If-Modified-Since") != date(-time.Hour) {
			t.Fatalf("conditional fields %v", h)
		}
	})
	t.Run("§3.2 §4.3.4 a 304 replaces stored fields but not Content-Length", func(t *testing.T) {
		m := Merge304(stored, hdr("Etag", `"v1"`, "Cache-Control", "max-age=99", "Content-Length", "0", "X-New", "1"))
		if m.Get("Cache-Control") != "max-age=99" || m.Get("X-New") != "1" || m.Get("Content-Length") != "5" || m.Get("Last-Modified") == "" {
			t.Fatalf("merged %v", m)
		}
	})
	t.Run("§4.3.4 a 304 updates only the representation it names", func(t *testing.T) {
		weak := hdr("Etag", `W/"v1"`, "Last-Modified", date(-time.Hour))
		for _, tc := range []struct {
			name         string
			stored, resp http.Header
			want         bool
		}{
			{"the same strong tag", stored, hdr("Etag", `"v1"`), true},
			{"another strong tag", stored, hdr("Etag", `"v2"`, "Last-Modified", date(-time.Hour)), false},
			{"a strong tag for a weak stored one", weak, hdr("Etag", `"v1"`), false},
			{"the same weak tag", weak, hdr("Etag", `W/"v1"`), true},
			{"a weak tag of the stored strong one", stored, hdr("Etag", `W/"v1"`), true},
			{"a tag, the stored response has none", hdr("Last-Modified", date(-time.Hour)), hdr("Etag", `"v1"`), false},
			{"no tag, the same Last-Modified", stored, hdr("Last-Modified", date(-time.Hour)), true},
			{"no tag, another Last-Modified", stored, hdr("Last-Modified", date(0)), false},
			{"no validator at all", stored, hdr("Cache-Control", "max-age=60"), true},
		} {
			if got := Selects(tc.stored, tc.resp); got != tc.want {
				t.Errorf("%s: Selects = %v, want %v", tc.name, got, tc.want)
			}
		}
	})
	t.Run("RFC 9110 §15.4.5 a 304 carries only its fields", func(t *testing.T) {
		h := NotModifiedHeader(hdr("Etag", `"v1"`, "Content-Type", "text/plain", "Content-Length", "5", "Age", "3"))
		if len(h) != 2 || h.Get("Etag") == "" || h.Get("Age") != "3" {
			t.Fatalf("304 fields %v", h)
		}
	})
}

// TestRFC9111Vary: secondary keys (§4.1).
func TestRFC9111Vary(t *testing.T) {
	v := &Variants{ID: "g1", Fields: []string{"Accept-Encoding", "Accept-Language"}}
	key := func(h http.Header) string { return VariantKey("k", v, h) }
	cases := []struct {
		section string
		a, b    http.Header
		same    bool
	}{
		{"§4.1 equal values select the same variant", hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "gzip"), true},
		{"§4.1 different values select different variants", hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "br"), false},
		// §4.1 allows normalizing; the cache does not (VariantKey): an
		// origin reading the first line as it is answers these apart.
		{"§4.1 values are compared as sent, blanks too", hdr("Accept-Encoding", "gzip, br"), hdr("Accept-Encoding", "gzip,br"), false},
		{"§4.1 several lines stay apart from one", hdr("Accept-Encoding", "gzip", "Accept-Encoding", "br"), hdr("Accept-Encoding", "gzip, br"), false},
		{"§4.1 an empty item is not dropped", hdr("Accept-Encoding", "gzip,"), hdr("Accept-Encoding", "gzip"), false},
		{"§4.1 an empty line is not dropped", hdr("Accept-Encoding", "", "Accept-Encoding", "gzip"), hdr("Accept-Encoding", "gzip"), false},
		{"§4.1 an absent field differs from an empty one", http.Header{}, hdr("Accept-Encoding", ""), false},
		{"§4.1 lines are not run together", hdr("Accept-Encoding", "ab", "Accept-Encoding", "c"), hdr("Accept-Encoding", "a", "Accept-Encoding", "bc"), false},
		{"§4.1 an absent field differs from a present one", http.Header{}, hdr("Accept-Encoding", "gzip"), false},
		{"§4.1 a field not listed in Vary does not matter", hdr("User-Agent", "a"), hdr("User-Agent", "b"), true},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			if got := key(tc.a) == key(tc.b); got != tc.same {
				t.Fatalf("same variant = %v, want %v", got, tc.same)
			}
		})
	}
	t.Run("§4.1 Vary fields are canonical, sorted and unique", func(t *testing.T) {
		f, star := VaryFields(hdr("Vary", "accept-language, Accept-Encoding", "Vary", "ACCEPT-ENCODING"))
		if star || !SameFields(f, []string{"Accept-Encoding", "Accept-Language"}) {
			t.Fatalf("fields %v star %v", f, star)
		}
	})
	t.Run("§4.1 a new index generation never finds the old variants", func(t *testing.T) {
		if VariantKey("k", v, http.Header{}) == VariantKey("k", &Variants{ID: "g2", Fields: v.Fields}, http.Header{}) {
			t.Fatal("generations share keys")
		}
	})
}

// TestRFC9110Range: single ranges served from a stored full response.
func TestRFC9110Range(t *testing.T) {
	cases := []struct {
		section string
		v       string
		size    int64
		want    Range
		kind    RangeKind
	}{
		{"RFC 9110 §14.1.2 first-last", "bytes=0-9", 100, Range{0, 10}, RangeOne},
		{"RFC 9110 §14.1.2 last past the end is clamped", "bytes=90-200", 100, Range{90, 10}, RangeOne},
		{"RFC 9110 §14.1.2 open-ended", "bytes=95-", 100, Range{95, 5}, RangeOne},
		{"RFC 9110 §14.1.2 suffix", "bytes=-3", 100, Range{97, 3}, RangeOne},
		{"RFC 9110 §14.1.2 suffix larger than the body", "bytes=-300", 100, Range{0, 100}, RangeOne},
		{"RFC 9110 §15.5.17 start past the end is unsatisfiable", "bytes=100-", 100, Range{}, RangeUnsatisfiable},
		{"RFC 9110 §14.2 several ranges", "bytes=0-1,5-6", 100, Range{}, RangeMulti},
		{"RFC 9110 §14.2 an invalid range is ignored", "bytes=9-1", 100, Range{}, RangeNone},
		{"RFC 9110 §14.2 another unit is ignored", "items=0-1", 100, Range{}, RangeNone},
	}
	for _, tc := range cases {
		t.Run(tc.section, func(t *testing.T) {
			r, k := ParseRange(tc.v, tc.size)
			if r != tc.want || k != tc.kind {
				t.Fatalf("ParseRange = %+v %d, want %+v %d", r, k, tc.want, tc.kind)
			}
		})
	}
	stored := hdr("Etag", `"v1"`, "Last-Modified", date(-time.Hour))
	for _, tc := range []struct {
		section, ifRange string
		want             bool
	}{
		{"RFC 9110 §13.1.5 If-Range with the strong entity tag", `"v1"`, true},
		{"RFC 9110 §13.1.5 If-Range with a weak tag never holds", `W/"v1"`, false},
		{"RFC 9110 §13.1.5 If-Range with the Last-Modified date", date(-time.Hour), true},
		{"RFC 9110 §13.1.5 If-Range with another date", date(0), false},
	} {
		t.Run(tc.section, func(t *testing.T) {
			if got := IfRangeHolds(tc.ifRange, stored); got != tc.want {
				t.Fatalf("IfRangeHolds = %v, want %v", got, tc.want)
			}
		})
	}
}
