package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Conditionals are the client precondition fields the cache answers itself
// (from a stored response) or replaces with its own when it validates.
var Conditionals = []string{"If-None-Match", "If-Modified-Since"}

// AddValidators sets the precondition fields that validate the stored
// response m with the origin (RFC 9111 §4.3.1): If-None-Match with its
// entity tag, If-Modified-Since with its Last-Modified. It reports whether
// m has a validator at all.
func AddValidators(h http.Header, m *Meta) bool {
	ok := false
	if v := m.Header.Get("Etag"); v != "" {
		h["If-None-Match"] = []string{v}
		ok = true
	}
	if v := m.Header.Get("Last-Modified"); v != "" {
		h["If-Modified-Since"] = []string{v}
		ok = true
	}
	return ok
}

// unmerged are the fields a 304 never replaces in a stored response (RFC
// 9111 §3.2): Content-Length describes the stored body, and the hop-by-hop
// fields were never stored.
var unmerged = map[string]bool{"Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Trailer": true, "Te": true, "Upgrade": true}

// Merge304 returns the stored fields updated by a 304's (RFC 9111 §3.2,
// §4.3.4): each field of the 304 replaces the stored one, except those
// that describe the stored body.
func Merge304(stored, notModified http.Header) http.Header {
	h := stored.Clone()
	for k, v := range notModified {
		if unmerged[k] {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	return h
}

// Selects reports whether a 304 answering a revalidation of the stored
// response with fields stored is about that response, so that it may
// update it (RFC 9111 §4.3.4): an entity tag in the 304 must match the
// stored one (strongly when the 304's is strong), and a Last-Modified in
// a 304 without one must equal the stored one. A 304 naming another
// representation (an origin that judged If-Modified-Since alone, after a
// change within the same second or a deploy that kept the files' times)
// must update nothing: merged, its validator labelled the old body as
// the new one, and every later revalidation sent that validator and was
// confirmed, so the old body was served for as long as the origin ran.
// A 304 with neither field selects the response whose validators were
// sent.
func Selects(stored, notModified http.Header) bool {
	if tag := notModified.Get("Etag"); tag != "" {
		return etagMatch(tag, stored.Get("Etag"), !strings.HasPrefix(tag, "W/"))
	}
	if lm := notModified.Get("Last-Modified"); lm != "" {
		if old := stored.Get("Last-Modified"); old != "" && old != lm {
			return false
		}
	}
	return true
}

// NotModified reports whether a GET or HEAD request's preconditions make a
// stored 200 response "304 Not Modified" for it (RFC 9111 §4.3.2, RFC 9110
// §13.1.2, §13.1.3): If-None-Match by weak comparison; else
// If-Modified-Since against Last-Modified, or Date when there is none.
func NotModified(req http.Header, status int, resp http.Header) bool {
	if status != http.StatusOK {
		return false
	}
	if inm := req["If-None-Match"]; len(inm) > 0 {
		return etagListMatch(inm, resp.Get("Etag"), false)
	}
	ims := req.Get("If-Modified-Since")
	if ims == "" {
		return false
	}
	since, err := parseTime(ims)
	if err != nil {
		return false // an invalid date is ignored (RFC 9110 §13.1.3)
	}
	lm := resp.Get("Last-Modified")
	if lm == "" {
		lm = resp.Get("Date")
	}
	mod, err := parseTime(lm)
	return err == nil && !mod.After(since)
}

// notModifiedFields are the fields a 304 carries (RFC 9110 §15.4.5), with
// Age and Cache-Status that the cache adds.
var notModifiedFields = []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary", "Age", "Cache-Status"}

// NotModifiedHeader returns the fields of a 304 answered from h.
func NotModifiedHeader(h http.Header) http.Header {
	out := make(http.Header, len(notModifiedFields))
	for _, k := range notModifiedFields {
		if v, ok := h[k]; ok {
			out[k] = v
		}
	}
	return out
}

// etagListMatch compares an If-None-Match or If-Match list with etag;
// "*" matches any representation, also one without an entity tag (RFC 9110
// §13.1.1, §13.1.2). strong selects strong comparison (§8.8.3.2).
func etagListMatch(list []string, etag string, strong bool) bool {
	for _, line := range list {
		for line != "" {
			var item string
			item, line = nextItem(line)
			item = strings.TrimSpace(item)
			if item == "*" || (etag != "" && etagMatch(item, etag, strong)) {
				return true
			}
		}
	}
	return false
}

func etagMatch(a, b string, strong bool) bool {
	weakA, weakB := strings.HasPrefix(a, "W/"), strings.HasPrefix(b, "W/")
	if strong && (weakA || weakB) {
		return false
	}
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// Range is one byte range of a representation.
type Range struct {
	Start, Length int64
}

// ContentRange is the Content-Range field of r in a body of size bytes.
func (r Range) ContentRange(size int64) string {
	return "bytes " + strconv.FormatInt(r.Start, 10) + "-" + strconv.FormatInt(r.Start+r.Length-1, 10) + "/" + strconv.FormatInt(size, 10)
}

// RangeKind classifies a Range request field.
type RangeKind int

// The kinds of Range field.
const (
	RangeNone          RangeKind = iota // absent, or not bytes, or invalid: serve the whole body
	RangeOne                            // one satisfiable range
	RangeMulti                          // several ranges (the cache sends these to the origin)
	RangeUnsatisfiable                  // no range overlaps the body: 416
)

// IsMultiRange reports whether a Range field asks for several ranges.
func IsMultiRange(h http.Header) bool {
	if len(h["Range"]) > 1 {
		// Range is a singleton: servers and caches differ on which line
		// of several they read, so none is answered here.
		return true
	}
	v := h.Get("Range")
	return strings.HasPrefix(v, "bytes=") && strings.Contains(v, ",")
}

// ParseRange reads a Range field against a body of size bytes (RFC 9110
// §14.1.2, §14.2). An invalid field is ignored, as the RFC allows.
func ParseRange(v string, size int64) (Range, RangeKind) {
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || spec == "" {
		return Range{}, RangeNone
	}
	if strings.Contains(spec, ",") {
		return Range{}, RangeMulti
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return Range{}, RangeNone
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return Range{}, RangeNone
		}
		if n == 0 || size == 0 {
			return Range{}, RangeUnsatisfiable
		}
		n = min(n, size)
		return Range{Start: size - n, Length: n}, RangeOne
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return Range{}, RangeNone
	}
	end := size - 1
	if last != "" {
		if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < start {
			return Range{}, RangeNone
		}
		end = min(end, size-1)
	}
	if start >= size {
		return Range{}, RangeUnsatisfiable
	}
	return Range{Start: start, Length: end - start + 1}, RangeOne
}

// IfRangeHolds reports whether an If-Range value still designates the
// stored response (RFC 9110 §13.1.5): a strong entity tag equal to its
// ETag, or a date equal to its Last-Modified. Absent holds.
func IfRangeHolds(v string, resp http.Header) bool {
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		return etagMatch(v, resp.Get("Etag"), true) && resp.Get("Etag") != ""
	}
	t, err := parseTime(v)
	if err != nil {
		return false
	}
	lm, err := parseTime(resp.Get("Last-Modified"))
	return err == nil && lm.Equal(t)
}

// Seconds formats d as delta-seconds, for Age and ttl.
func Seconds(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10)
}
