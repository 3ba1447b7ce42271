package cache

import (
	"net/http"
	"time"
)

// maxHeuristic caps a heuristic freshness lifetime: past a day RFC 7234
// asked for a warning, and a guess that long is rarely what anyone wants.
const maxHeuristic = 24 * time.Hour

// Exchange is a response and the request that got it, as Decide sees them.
type Exchange struct {
	// Method and Request are the request's method (GET for a HEAD the
	// cache turned into a GET) and fields.
	Method  string
	Request http.Header
	// Status and Header are the response's.
	Status int
	Header http.Header
	// Now is when the response head arrived: the Date of a response that
	// has none.
	Now time.Time
	// DefaultStaleIfError is the stale-if-error window of a response that
	// states none (a route's default_stale_if_error; 0: none).
	DefaultStaleIfError time.Duration
}

// Decision says whether a response may be stored and for how long it is
// fresh. A ResponseCacheFilter receives the engine's and may return
// another.
type Decision struct {
	// Store allows storing the response.
	Store bool
	// Reason says why not, when Store is false: a short token such as
	// "no-store", "private", "authorization" or "status".
	Reason string
	// Fresh is the freshness lifetime.
	Fresh time.Duration
	// StaleWhileRevalidate and StaleIfError are the RFC 5861 windows.
	StaleWhileRevalidate, StaleIfError time.Duration
	// MustRevalidate forbids stale use; NoCache requires validation on
	// every use (see Meta).
	MustRevalidate, NoCache bool
}

// Decide applies RFC 9111 to a response for a shared cache: whether it may
// be stored (§3, §3.5), its freshness lifetime (§4.2.1) or a heuristic one
// (§4.2.2), and the RFC 5861 windows. Two choices go beyond the RFC and
// can be overridden by a ResponseCacheFilter: a response that sets a
// cookie is not stored (as nginx and Varnish do), and a response with no
// freshness, no validator and no stale window is not stored, as it could
// never be used.
func Decide(x Exchange) Decision {
	cc := ParseDirectives(x.Header)
	d := Decision{
		Fresh:          lifetime(x, cc),
		MustRevalidate: cc.MustRevalidate || cc.ProxyRevalidate || cc.SMaxAge != Absent,
		NoCache:        cc.NoCache,
	}
	if cc.StaleWhileRevalidate > 0 {
		d.StaleWhileRevalidate = cc.StaleWhileRevalidate
	}
	d.StaleIfError = x.DefaultStaleIfError
	if cc.StaleIfError != Absent {
		d.StaleIfError = cc.StaleIfError
	}
	d.Reason = refusal(x, cc)
	if d.Reason == "" && d.Fresh <= 0 && !hasValidator(x.Header) && d.StaleIfError <= 0 && d.StaleWhileRevalidate <= 0 {
		d.Reason = "no-freshness"
	}
	d.Store = d.Reason == ""
	return d
}

// refusal returns why the response may not be stored, or "".
func refusal(x Exchange, cc Directives) string {
	rq := ParseDirectives(x.Request)
	switch {
	case x.Method != http.MethodGet:
		return "method" // §3: only GET responses are stored here
	case x.Status == http.StatusPartialContent:
		return "partial" // never stored as a full response
	case x.Status < 200 || x.Status == http.StatusNotModified:
		return "status"
	case rq.NoStore:
		return "request-no-store" // §5.2.1.5
	case cc.MustUnderstand && !understood(x.Status):
		return "must-understand" // §5.2.2.3
	case cc.NoStore && !cc.MustUnderstand:
		return "no-store" // §5.2.2.5; must-understand with a known status overrides it
	case cc.Private:
		return "private" // §5.2.2.7: a shared cache
	case len(x.Request["Authorization"]) > 0 && !cc.Public && !cc.MustRevalidate && cc.SMaxAge == Absent:
		return "authorization" // §3.5
	case varyStar(x.Header):
		return "vary-star" // §4.1: it can never match
	case len(x.Header["Set-Cookie"]) > 0:
		return "set-cookie"
	case !cc.Public && cc.MaxAge == Absent && cc.SMaxAge == Absent && len(x.Header["Expires"]) == 0 && !heuristicStatus(x.Status):
		return "status" // §3: nothing makes this status storable
	}
	return ""
}

// lifetime is the freshness lifetime (§4.2.1): s-maxage, max-age, Expires
// minus Date, else the heuristic of §4.2.2.
func lifetime(x Exchange, cc Directives) time.Duration {
	switch {
	case cc.SMaxAge != Absent:
		return cc.SMaxAge
	case cc.MaxAge != Absent:
		return cc.MaxAge
	}
	date := headerTime(x.Header, "Date", x.Now)
	if v := x.Header["Expires"]; len(v) > 0 {
		exp, err := parseTime(v[0])
		if err != nil {
			return 0 // §5.3: an invalid Expires, such as "0", is in the past
		}
		return max(exp.Sub(date), 0)
	}
	if !heuristicStatus(x.Status) && !cc.Public {
		return 0
	}
	lm, err := parseTime(x.Header.Get("Last-Modified"))
	if err != nil || !lm.Before(date) {
		return 0
	}
	return min(date.Sub(lm)/10, maxHeuristic)
}

// heuristicStatus reports a status that is heuristically cacheable (RFC
// 9110 §15.1).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understood lists the statuses whose caching rules this cache implements
// (for must-understand).
func understood(code int) bool {
	switch code {
	case 302, 303, 307, 451:
		return true
	}
	return heuristicStatus(code) && code != 206
}

func hasValidator(h http.Header) bool {
	return len(h["Etag"]) > 0 || len(h["Last-Modified"]) > 0
}

func headerTime(h http.Header, k string, def time.Time) time.Time {
	if v := h[k]; len(v) > 0 {
		if t, err := parseTime(v[0]); err == nil {
			return t
		}
	}
	return def
}

// NewMeta builds the stored head of a response that Decide (or a filter)
// allowed: the fields are copied, a Date is added when the origin sent
// none, and the Trailer field goes, as trailers are not stored (RFC 9111
// §3 lets a cache discard them).
func NewMeta(x Exchange, requestTime time.Time, d Decision) *Meta {
	h := x.Header.Clone()
	if len(h["Date"]) == 0 {
		h["Date"] = []string{x.Now.UTC().Format(http.TimeFormat)}
	}
	delete(h, "Trailer")
	return &Meta{
		Status: x.Status, Header: h, RequestTime: requestTime, ResponseTime: x.Now,
		Fresh: d.Fresh, StaleWhileRevalidate: d.StaleWhileRevalidate, StaleIfError: d.StaleIfError,
		MustRevalidate: d.MustRevalidate, NoCache: d.NoCache,
	}
}

// Age returns m's current age at now (§4.2.3).
func (m *Meta) Age(now time.Time) time.Duration {
	ageValue := time.Duration(0)
	if v := m.Header["Age"]; len(v) > 0 {
		ageValue = parseDelta(v[0])
	}
	date := headerTime(m.Header, "Date", m.ResponseTime)
	apparent := max(m.ResponseTime.Sub(date), 0)
	delay := max(m.ResponseTime.Sub(m.RequestTime), 0)
	initial := max(apparent, ageValue+delay)
	return initial + max(now.Sub(m.ResponseTime), 0)
}

// Use says how a stored response may satisfy a request.
type Use int

// The uses of a stored response.
const (
	// UseFresh: it is fresh and the request accepts it.
	UseFresh Use = iota
	// UseStale: it is stale, and the request's max-stale accepts that.
	UseStale
	// UseValidate: it must be validated with the origin first.
	UseValidate
)

// Verdict is Check's answer.
type Verdict struct {
	Use Use
	// Age is the current age; TTL the freshness left (Fresh - Age),
	// negative once stale.
	Age, TTL time.Duration
}

// Check decides how the stored response m may satisfy a request with
// directives rq at now (§4.2, §4.2.4, §5.2.1).
func Check(m *Meta, rq Directives, now time.Time) Verdict {
	age := m.Age(now)
	v := Verdict{Use: UseValidate, Age: age, TTL: m.Fresh - age}
	switch {
	case m.NoCache || rq.NoCache: // §5.2.2.4, §5.2.1.4
	case rq.MaxAge != Absent && age > rq.MaxAge: // §5.2.1.1
	case rq.MinFresh != Absent && v.TTL < rq.MinFresh: // §5.2.1.3
	case v.TTL > 0:
		v.Use = UseFresh
	case m.MustRevalidate: // §4.2.4, §5.2.2.2
	case rq.MaxStaleAny || rq.MaxStale != Absent && -v.TTL <= rq.MaxStale: // §5.2.1.2
		v.Use = UseStale
	}
	return v
}

// ServeStaleWhileRevalidating reports whether the stale response may be
// served while one background request revalidates it (RFC 5861 §3).
func (m *Meta) ServeStaleWhileRevalidating(v Verdict) bool {
	return v.TTL <= 0 && m.StaleWhileRevalidate > 0 && -v.TTL <= m.StaleWhileRevalidate && !m.MustRevalidate && !m.NoCache
}

// ServeStaleOnError reports whether the stale response may be served
// instead of an origin error (RFC 5861 §4).
func (m *Meta) ServeStaleOnError(v Verdict) bool {
	return m.StaleIfError > 0 && -v.TTL <= m.StaleIfError && !m.MustRevalidate && !m.NoCache
}
