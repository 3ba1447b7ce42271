package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pingora-go/pingora-go/internal/asciifold"
	"github.com/pingora-go/pingora-go/internal/cginame"
)

// Algorithm is how a rule counts.
type Algorithm string

// The algorithms.
const (
	// SlidingWindow admits while the proportional estimate of the events
	// in the last Period, prev·(1−f) + curr, stays within Limit. Burst is
	// ignored.
	SlidingWindow Algorithm = "sliding_window"
	// TokenBucket refills Limit tokens per Period into a bucket of Burst
	// tokens; a request spends its cost (GCRA with a burst).
	TokenBucket Algorithm = "token_bucket"
)

// Scope says where a rule's counters live.
type Scope string

// The scopes.
const (
	// Local counts on each node alone: Limit per node.
	Local Scope = "local"
	// Global counts across the cluster: each key's counter is held by its
	// ring owner and the other nodes hold leases of it (see the package
	// doc for what it promises).
	Global Scope = "global"
)

// OnExceed says what happens to a request over the limit.
type OnExceed string

// The actions.
const (
	// Reject answers 429 (RESOURCE_EXHAUSTED for gRPC) at once.
	Reject OnExceed = "reject"
	// Delay holds the request until it fits, for at most MaxDelay, then
	// rejects it.
	Delay OnExceed = "delay"
)

// Match selects the requests a rule applies to. Every field that is set
// must match; the zero Match matches every request.
type Match struct {
	// Route is the route's name as Request.Route carries it (default "":
	// any route).
	Route string
	// Host is a host name, "*.name" (any subdomain of name) or "*"/""
	// (any host); compared without case and without a port.
	Host string
	// PathPrefix matches paths that start with it (default "": any path).
	PathPrefix string
	// CaseInsensitive matches PathPrefix without regard to the case of
	// ASCII letters (internal/asciifold), for an origin that serves
	// "/API/" as "/api/": a rule that matched by case was dodged there.
	CaseInsensitive bool
	// Methods lists the methods that match, upper case (default none: any).
	Methods []string
}

// Rule is one rate limit. Its zero fields take the defaults named on them.
type Rule struct {
	// Name identifies the rule: in the RateLimit fields, the metrics, and
	// the key space of its global counters (required, unique; letters,
	// digits, '-', '_' and '.').
	Name string
	// Match selects the requests it counts.
	Match Match
	// Key says what is counted apart (see ParseKey): header:NAME,
	// client_ip, cookie:NAME, query:NAME, route, method, host, path, or a
	// template of several such as "{route}:{header:x-api-key}" (default
	// client_ip). A request that lacks one of the key's parts is not
	// counted by the rule. host is taken in lower case without a port or
	// a trailing dot, and query:NAME decoded (name and value), so that
	// another spelling of the same value is not a new counter; client_ip
	// counts an IPv6 client by its /64.
	Key string
	// Limit is the number of requests admitted per Period (required, >= 1).
	Limit int64
	// Period is the window (sliding_window) or the time Limit tokens take
	// to refill (token_bucket) (default 1s, at least 1ms).
	Period time.Duration
	// Burst is the token bucket's size (default: Limit); sliding_window
	// ignores it.
	Burst int64
	// Algorithm is sliding_window or token_bucket (default sliding_window).
	Algorithm Algorithm
	// Scope is local or global (default local).
	Scope Scope
	// OnExceed is reject or delay (default reject).
	OnExceed OnExceed
	// MaxDelay bounds the wait of on_exceed delay (default 1s; ignored for
	// reject).
	MaxDelay time.Duration
	// Fields sends RateLimit-Policy and RateLimit on admitted responses
	// too; rejected ones always carry them (default false).
	Fields bool
}

// Defaults of Rule.
const (
	DefaultPeriod   = time.Second
	DefaultMaxDelay = time.Second
	DefaultKey      = "client_ip"
)

// withDefaults fills the zero fields.
func (r Rule) withDefaults() Rule {
	if r.Period == 0 {
		r.Period = DefaultPeriod
	}
	if r.Key == "" {
		r.Key = DefaultKey
	}
	if r.Algorithm == "" {
		r.Algorithm = SlidingWindow
	}
	if r.Scope == "" {
		r.Scope = Local
	}
	if r.OnExceed == "" {
		r.OnExceed = Reject
	}
	if r.MaxDelay == 0 {
		r.MaxDelay = DefaultMaxDelay
	}
	if r.Burst == 0 {
		r.Burst = r.Limit
	}
	return r
}

// MaxMaxDelay bounds Rule.MaxDelay: a request held longer holds its
// connection past any client's patience.
const MaxMaxDelay = time.Minute

// Validate reports every field of r that is out of range, joined
// (errors.Join), each a *FieldError naming it.
func (r Rule) Validate() error {
	f := fieldErrs{rule: r.Name}
	if err := validName(r.Name); err != nil {
		f.add("Name", "%v", err)
	}
	if r.Limit < 1 || r.Limit > math.MaxInt32 {
		f.add("Limit", "%d is not between 1 and %d", r.Limit, math.MaxInt32)
	}
	if r.Period != 0 && (r.Period < time.Millisecond || r.Period > 24*time.Hour) {
		f.add("Period", "%s is not between 1ms and 24h", r.Period)
	}
	if r.Burst < 0 || r.Burst > math.MaxInt32 {
		f.add("Burst", "%d is not between 0 (default: limit) and %d", r.Burst, math.MaxInt32)
	}
	f.oneOf("Algorithm", string(r.Algorithm), string(SlidingWindow), string(TokenBucket))
	f.oneOf("Scope", string(r.Scope), string(Local), string(Global))
	f.oneOf("OnExceed", string(r.OnExceed), string(Reject), string(Delay))
	switch {
	case r.MaxDelay < 0 || r.MaxDelay > MaxMaxDelay:
		f.add("MaxDelay", "%s is not between 0 and 60s", r.MaxDelay)
	case r.MaxDelay != 0 && r.OnExceed != Delay:
		f.add("MaxDelay", "applies only with on_exceed: delay")
	}
	if _, err := ParseKey(r.withDefaults().Key); err != nil {
		f.add("Key", "%v", err)
	}
	r.Match.validate(&f)
	return errors.Join(f.list...)
}

func (m Match) validate(f *fieldErrs) {
	if err := checkHostPattern(m.Host); err != nil {
		f.add("Match.Host", "%v", err)
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		f.add("Match.PathPrefix", "%q must start with /", m.PathPrefix)
	}
	for i, meth := range m.Methods {
		if meth == "" || strings.ToUpper(meth) != meth || strings.ContainsAny(meth, " \t/:,") {
			f.add(fmt.Sprintf("Match.Methods[%d]", i), "%q is not an upper-case method such as GET", meth)
		}
	}
}

// checkHostPattern accepts what proxy/route accepts as a route's host
// (which this package may not import): a name of labels of letters,
// digits, '-' and '_', "*.name", or "*" / "" for any host.
func checkHostPattern(h string) error {
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	if name == "" || name == "*" {
		return nil
	}
	name = strings.TrimPrefix(name, "*.")
	ok := name != "" && len(name) <= 253 && !strings.HasSuffix(h, "*.")
	for _, label := range strings.Split(name, ".") {
		ok = ok && label != "" && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-' &&
			strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-_") == ""
	}
	if !ok {
		return fmt.Errorf("%q is not a host name, *.name or *", h)
	}
	return nil
}

// validName accepts rule names that are safe in a structured-field string,
// a metric label and a counter key.
func validName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q may hold only letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}

// FieldError is one invalid field of a Rule, found by Validate.
type FieldError struct {
	// Rule is the rule's name.
	Rule string
	// Field is the field's Go name, such as "Match.Host" or "MaxDelay".
	Field string
	// Reason says what is wrong with its value.
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("ratelimit: rule %q: %s: %s", e.Rule, e.Field, e.Reason)
}

// FieldReason returns the field and the reason, for callers that name
// the field their own way (a config file's key).
func (e *FieldError) FieldReason() (field, reason string) { return e.Field, e.Reason }

type fieldErrs struct {
	rule string
	list []error
}

func (f *fieldErrs) add(field, format string, args ...any) {
	f.list = append(f.list, &FieldError{Rule: f.rule, Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (f *fieldErrs) oneOf(field, v string, allowed ...string) {
	if v != "" && !slices.Contains(allowed, v) {
		f.add(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// identity is what must stay equal for a rule's counters to survive a
// rule swap: the name and what a count means. Limit, Burst, Match,
// OnExceed and Fields may change under live counters.
func (r Rule) identity() string {
	return r.Name + "\x00" + r.Key + "\x00" + string(r.Algorithm) + "\x00" + string(r.Scope) + "\x00" + r.Period.String()
}

// Request is what a rule looks at: the parts of an HTTP request that Match
// and Key read. The proxy fills it from its session; it holds only
// standard types so that ratelimit imports no proxy package.
type Request struct {
	Route    string      // the matched route's name
	Host     string      // the authority, possibly with a port
	Method   string      // upper case
	Path     string      // the path, without the query
	RawQuery string      // the query, without '?'
	ClientIP string      // the client's address without port
	Header   http.Header // canonical keys; Host is not among them
	Cost     int64       // units the request spends (default 1)
}

// matcher is a compiled Match.
type matcher struct {
	route, prefix string
	fold          bool   // prefix matched without case (Match.CaseInsensitive)
	host          string // lower case; "" any
	suffix        bool   // host was "*.name": host holds ".name"
	methods       []string
}

func compileMatch(m Match) matcher {
	c := matcher{route: m.Route, prefix: m.PathPrefix, fold: m.CaseInsensitive, methods: m.Methods}
	// GET covers HEAD, as nginx's limit_except GET does: a HEAD is a GET
	// whose body is not sent, and would otherwise dodge a GET limit.
	if slices.Contains(c.methods, "GET") && !slices.Contains(c.methods, "HEAD") {
		c.methods = append(slices.Clone(c.methods), "HEAD")
	}
	switch h := strings.ToLower(strings.TrimSuffix(m.Host, ".")); {
	case h == "" || h == "*":
	case strings.HasPrefix(h, "*."):
		c.host, c.suffix = h[1:], true
	default:
		c.host = h
	}
	return c
}

func (m *matcher) match(r *Request) bool {
	if m.route != "" && r.Route != m.route {
		return false
	}
	if m.prefix != "" && !(strings.HasPrefix(r.Path, m.prefix) || m.fold && asciifold.HasPrefix(r.Path, m.prefix)) {
		return false
	}
	if len(m.methods) > 0 && !containsStr(m.methods, r.Method) && !overriddenTo(r, m.methods) {
		return false
	}
	if m.host == "" {
		return true
	}
	h := hostOnly(r.Host)
	if m.suffix {
		return len(h) > len(m.host) && strings.EqualFold(h[len(h)-len(m.host):], m.host)
	}
	return strings.EqualFold(h, m.host)
}

// methodOverrides are the request fields that frameworks read as the
// request's real method (Rails' Rack::MethodOverride, Express's
// method-override, Symfony, ASP.NET Web API), as the cache's
// request-override check knows them; '_method' in the query is Symfony's
// and Laravel's.
var methodOverrides = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// overriddenTo reports whether r asks, in a field or parameter some
// origin reads as the real method, for one of methods. "POST" with
// "X-HTTP-Method-Override: DELETE" is a DELETE to a Rails origin: a rule
// for DELETE (or a GET rule, dodged by a POST overridden to GET) did not
// count it. A field in another case or with '_' for '-' counts too
// (cginame.Same).
func overriddenTo(r *Request, methods []string) bool {
	for k, vals := range r.Header {
		override := false
		for _, f := range methodOverrides {
			if cginame.Same(k, f) {
				override = true
				break
			}
		}
		if !override {
			continue
		}
		for _, v := range vals {
			if methodIn(strings.TrimSpace(v), methods) {
				return true
			}
		}
	}
	if v, ok := queryValue(r.RawQuery, "_method"); ok && methodIn(strings.TrimSpace(v), methods) {
		return true
	}
	return false
}

// methodIn reports whether m, in any case (an override's value is read
// so), is one of methods.
func methodIn(m string, methods []string) bool {
	for _, x := range methods {
		if strings.EqualFold(m, x) {
			return true
		}
	}
	return false
}

// hostOnly strips a port and a trailing dot from an authority.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// policyItem is the rule's RateLimit-Policy list member (draft-ietf-httpapi
// -ratelimit-headers): "name";q=LIMIT;w=SECONDS. The window is whole
// seconds, rounded up.
func policyItem(r Rule) string {
	w := int64(math.Ceil(r.Period.Seconds()))
	return strconv.Quote(r.Name) + ";q=" + strconv.FormatInt(r.Limit, 10) + ";w=" + strconv.FormatInt(max(w, 1), 10)
}
