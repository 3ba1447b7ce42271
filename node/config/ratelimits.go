package config

import (
	"fmt"
	"time"

	"github.com/pingora-go/pingora-go/proxy/route"
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
	// CaseInsensitive matches PathPrefix without regard to the case of
	// ASCII letters (default false).
	CaseInsensitive bool `yaml:"case_insensitive" json:"case_insensitive,omitempty"`
	// Methods lists the methods counted, upper case (default: all).
	Methods []string `yaml:"methods" json:"methods,omitempty"`
}

// validateRateLimits checks c.RateLimits; routeNames are the names a
// match.route may use.
func (c *Cluster) validateRateLimits(e *errs, routeNames map[string]bool) {
	names := map[string]int{}
	for i, r := range c.RateLimits {
		p := fmt.Sprintf("rate_limits[%d]", i)
		if j, dup := names[r.Name]; dup && r.Name != "" {
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

// validate checks the rule by ratelimit's rules; validateRateLimits
// checks what needs the others (names, routes).
func (r *RateLimit) validate(e *errs, p string) {
	e.owner(p, r.Rule().Validate(), ruleField)
}

// canonicalRateLimits returns the rules with every default spelled out,
// for Same.
func canonicalRateLimits(in []RateLimit) []RateLimit {
	out := make([]RateLimit, 0, len(in))
	for _, r := range in {
		r.Key, r.Algorithm = defaultStr(r.Key, "client_ip"), defaultStr(r.Algorithm, "sliding_window")
		r.Scope, r.OnExceed = defaultStr(r.Scope, "local"), defaultStr(r.OnExceed, "reject")
		r.Period = defaultDur(r.Period, time.Second)
		r.Match.Host, r.Match.PathPrefix = route.PatternKey(r.Match.Host), defaultStr(r.Match.PathPrefix, "/")
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
