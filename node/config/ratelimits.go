package config

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// RateLimit is one rule of the cluster config's rate_limits: requests
// matching Match are counted by Key and admitted up to Limit per Period.
type RateLimit struct {
	// Name identifies the rule in the RateLimit fields, metrics and
	// "pingora-node limits" (required, unique; letters, digits, '-', '_',
	// '.'; at most 64).
	Name string `yaml:"name" json:"name"`
	// Match selects the requests the rule counts (default: all).
	Match RateLimitMatch `yaml:"match" json:"match,omitzero"`
	// Key is what is counted apart: client_ip, route, method, host, path,
	// header:NAME, cookie:NAME, query:NAME, or a template of several such
	// as "{route}:{header:x-api-key}". A request without the key's parts
	// is not counted by the rule (default client_ip).
	Key string `yaml:"key" json:"key,omitempty"`
	// Limit is the requests admitted per period (required, 1 to 2^31-1).
	Limit int64 `yaml:"limit" json:"limit"`
	// Period is the window (default 1s; 1ms to 24h).
	Period time.Duration `yaml:"period" json:"period,omitempty"`
	// Burst is the token bucket's size (default: limit); sliding_window
	// ignores it.
	Burst int64 `yaml:"burst" json:"burst,omitempty"`
	// Algorithm is sliding_window or token_bucket (default sliding_window).
	Algorithm string `yaml:"algorithm" json:"algorithm,omitempty"`
	// Scope is local (per node) or global (across the cluster) (default
	// local).
	Scope string `yaml:"scope" json:"scope,omitempty"`
	// OnExceed is reject (429 at once) or delay (hold the request until it
	// fits, up to max_delay, then 429) (default reject).
	OnExceed string `yaml:"on_exceed" json:"on_exceed,omitempty"`
	// MaxDelay bounds a delay (default 1s with on_exceed delay; at most
	// 60s; only with delay).
	MaxDelay time.Duration `yaml:"max_delay" json:"max_delay,omitempty"`
	// Headers adds RateLimit-Policy and RateLimit to admitted responses
	// too; refusals always carry them (default false).
	Headers bool `yaml:"headers" json:"headers,omitempty"`
}

// RateLimitMatch selects requests; every field set must match.
type RateLimitMatch struct {
	// Route is a route's name: today a route is named by its upstream
	// (default: any route).
	Route string `yaml:"route" json:"route,omitempty"`
	// Host is a name, "*.name" or "*" (default "*": any host).
	Host string `yaml:"host" json:"host,omitempty"`
	// PathPrefix matches paths starting with it (default "/": any path).
	PathPrefix string `yaml:"path_prefix" json:"path_prefix,omitempty"`
	// Methods lists the methods counted, upper case (default: all).
	Methods []string `yaml:"methods" json:"methods,omitempty"`
}

// rateLimitKeys lists the key parts that take no name, and those that do.
var (
	rateLimitPlainKeys = []string{"client_ip", "route", "method", "host", "path"}
	rateLimitNamedKeys = []string{"header", "cookie", "query"}
)

// validateRateLimits checks c.RateLimits; routeNames are the names a
// match.route may use.
func (c *Cluster) validateRateLimits(e *errs, routeNames map[string]bool) {
	names := map[string]int{}
	for i, r := range c.RateLimits {
		p := fmt.Sprintf("rate_limits[%d]", i)
		if err := checkRuleName(r.Name); err != nil {
			e.add(p+".name", "%v", err)
		} else if j, dup := names[r.Name]; dup {
			e.add(p+".name", "%q is also the name of rate_limits[%d]", r.Name, j)
		} else {
			names[r.Name] = i
		}
		if m := r.Match.Route; m != "" && !routeNames[m] {
			e.add(p+".match.route", "no route is named %q (a route is named by its upstream)", m)
		}
		r.validate(e, p)
	}
}

func (r *RateLimit) validate(e *errs, p string) {
	if err := checkHostPattern(r.Match.Host); err != nil {
		e.add(p+".match.host", "%v", err)
	}
	if pp := r.Match.PathPrefix; pp != "" && !strings.HasPrefix(pp, "/") {
		e.add(p+".match.path_prefix", "%q must start with /", pp)
	}
	for j, m := range r.Match.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/:,") {
			e.add(fmt.Sprintf("%s.match.methods[%d]", p, j), "%q is not an upper-case method such as GET", m)
		}
	}
	if r.Key != "" {
		if err := checkRateLimitKey(r.Key); err != nil {
			e.add(p+".key", "%v", err)
		}
	}
	if r.Limit < 1 || r.Limit > math.MaxInt32 {
		e.add(p+".limit", "%d is not between 1 and %d", r.Limit, math.MaxInt32)
	}
	if r.Period != 0 && (r.Period < time.Millisecond || r.Period > 24*time.Hour) {
		e.add(p+".period", "%s is not between 1ms and 24h", r.Period)
	}
	if r.Burst < 0 || r.Burst > math.MaxInt32 {
		e.add(p+".burst", "%d is not between 0 (default: limit) and %d", r.Burst, math.MaxInt32)
	}
	checkOneOf(e, p+".algorithm", r.Algorithm, "sliding_window", "token_bucket")
	checkOneOf(e, p+".scope", r.Scope, "local", "global")
	checkOneOf(e, p+".on_exceed", r.OnExceed, "reject", "delay")
	switch {
	case r.MaxDelay < 0 || r.MaxDelay > time.Minute:
		e.add(p+".max_delay", "%s is not between 0 and 60s", r.MaxDelay)
	case r.MaxDelay != 0 && r.OnExceed != "delay":
		e.add(p+".max_delay", "applies only with on_exceed: delay")
	}
}

func checkOneOf(e *errs, p, v string, allowed ...string) {
	if v != "" && !contains(allowed, v) {
		e.add(p, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func checkRuleName(s string) error {
	if s == "" {
		return fmt.Errorf("required")
	}
	if len(s) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q may hold only letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}

// checkRateLimitKey checks a key: one part, or a template with parts in
// braces among literal text, naming at least one part.
func checkRateLimitKey(k string) error {
	if !strings.ContainsAny(k, "{}") {
		return checkKeyPart(k)
	}
	parts := 0
	for rest := k; rest != ""; {
		open, closing := strings.IndexByte(rest, '{'), strings.IndexByte(rest, '}')
		switch {
		case open < 0 && closing < 0:
			rest = ""
			continue
		case closing >= 0 && (open < 0 || closing < open):
			return fmt.Errorf("%q: '}' without '{'", k)
		case closing < 0:
			return fmt.Errorf("%q: '{' without '}'", k)
		}
		if err := checkKeyPart(rest[open+1 : closing]); err != nil {
			return fmt.Errorf("%q: %w", k, err)
		}
		parts++
		rest = rest[closing+1:]
	}
	if parts == 0 {
		return fmt.Errorf("%q names no request part", k)
	}
	return nil
}

func checkKeyPart(s string) error {
	kind, name, hasName := strings.Cut(s, ":")
	switch {
	case contains(rateLimitPlainKeys, kind) && !hasName:
		return nil
	case contains(rateLimitPlainKeys, kind):
		return fmt.Errorf("%q takes no name", kind)
	case contains(rateLimitNamedKeys, kind) && name != "" && !strings.ContainsAny(name, " \t{}:;=&"):
		return nil
	case contains(rateLimitNamedKeys, kind):
		return fmt.Errorf("%q needs a name, like %s:NAME", s, kind)
	}
	return fmt.Errorf("%q is not one of client_ip, route, method, host, path, header:NAME, cookie:NAME, query:NAME", s)
}

// canonicalRateLimits returns the rules with every default spelled out,
// for Same.
func canonicalRateLimits(in []RateLimit) []RateLimit {
	out := make([]RateLimit, 0, len(in))
	for _, r := range in {
		r.Key, r.Algorithm = defaultStr(r.Key, "client_ip"), defaultStr(r.Algorithm, "sliding_window")
		r.Scope, r.OnExceed = defaultStr(r.Scope, "local"), defaultStr(r.OnExceed, "reject")
		r.Period = defaultDur(r.Period, time.Second)
		r.Match.Host, r.Match.PathPrefix = normHost(r.Match.Host), defaultStr(r.Match.PathPrefix, "/")
		if r.Burst == 0 {
			r.Burst = r.Limit
		}
		if r.OnExceed == "delay" {
			r.MaxDelay = defaultDur(r.MaxDelay, time.Second)
		}
		out = append(out, r)
	}
	return out
}
