package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// issueRateLimits is the rate_limits document of issue 15, on a route
// named api.
const issueRateLimits = `upstreams:
  - name: api
    peers: [{addr: 127.0.0.1:9001}]
routes:
  - upstream: api
rate_limits:
  - name: api-per-key
    match: {route: api, host: "*.example.com", path_prefix: /v1/, methods: [GET, POST]}
    key: "header:x-api-key"          # or client_ip, cookie:, query:, route, a template of several
    limit: 1000
    period: 1s
    burst: 200                        # token bucket / GCRA; sliding_window ignores it
    algorithm: sliding_window         # or token_bucket
    scope: global                     # or local (per node)
    on_exceed: reject                 # or delay up to max_delay
  - name: per-ip
    key: "{route}:{client_ip}"
    limit: 10
    period: 1m
    algorithm: token_bucket
    on_exceed: delay
    max_delay: 500ms
    headers: true
`

func TestRateLimitsParse(t *testing.T) {
	c, err := ParseCluster("c.yaml", []byte(issueRateLimits))
	if err != nil {
		t.Fatal(err)
	}
	want := []RateLimit{
		{Name: "api-per-key", Match: RateLimitMatch{Route: "api", Host: "*.example.com", PathPrefix: "/v1/", Methods: []string{"GET", "POST"}},
			Key: "header:x-api-key", Limit: 1000, Period: time.Second, Burst: 200, Algorithm: "sliding_window", Scope: "global", OnExceed: "reject"},
		{Name: "per-ip", Key: "{route}:{client_ip}", Limit: 10, Period: time.Minute, Algorithm: "token_bucket", OnExceed: "delay", MaxDelay: 500 * time.Millisecond, Headers: true},
	}
	if !reflect.DeepEqual(c.RateLimits, want) {
		t.Fatalf("got %+v\nwant %+v", c.RateLimits, want)
	}
	// Spelling out the defaults changes nothing (no new config version).
	spelled := strings.Replace(issueRateLimits, "    headers: true\n", "    headers: true\n    scope: local\n", 1)
	c2, err := ParseCluster("c.yaml", []byte(spelled))
	if err != nil || !Same(c, c2) {
		t.Fatalf("defaults spelled out differ: %v", err)
	}
	c2.RateLimits[0].Limit = 999
	if Same(c, c2) {
		t.Fatal("a changed limit reads as the same document")
	}
}

func TestRateLimitsRefused(t *testing.T) {
	repl := func(old, new string) string { return strings.Replace(issueRateLimits, old, new, 1) }
	cases := []struct{ name, doc, want string }{
		{"no name", repl("  - name: per-ip\n", "  - name: \"\"\n"), `c.yaml:16: rate_limits[1].name: required`},
		{"bad name", repl("name: per-ip", "name: per ip"), `rate_limits[1].name: "per ip" may hold only`},
		{"duplicate", repl("name: per-ip", "name: api-per-key"), `rate_limits[1].name: "api-per-key" is also the name of rate_limits[0]`},
		{"unknown route", repl("route: api,", "route: web,"), `c.yaml:8: rate_limits[0].match.route: no route is named "web"`},
		{"bad host", repl(`host: "*.example.com"`, `host: "a*b"`), `rate_limits[0].match.host`},
		{"bad prefix", repl("path_prefix: /v1/", "path_prefix: v1"), `rate_limits[0].match.path_prefix: "v1" must start with /`},
		{"lower-case method", repl("[GET, POST]", "[get]"), `rate_limits[0].match.methods[0]: "get" is not an upper-case method`},
		{"bad key", repl(`key: "header:x-api-key"`, `key: "header"`), `c.yaml:9: rate_limits[0].key: "header" needs a name`},
		{"unknown key", repl(`key: "header:x-api-key"`, `key: "body"`), `rate_limits[0].key: "body" is not one of`},
		{"bad template", repl(`key: "{route}:{client_ip}"`, `key: "{route}:{client_ip"`), `rate_limits[1].key: "{route}:{client_ip": '{' without '}'`},
		{"zero limit", repl("limit: 1000", "limit: 0"), `c.yaml:10: rate_limits[0].limit: 0 is not between 1 and`},
		{"tiny period", repl("period: 1s", "period: 1us"), `rate_limits[0].period: 1µs is not between 1ms and 24h`},
		{"negative burst", repl("burst: 200", "burst: -1"), `rate_limits[0].burst`},
		{"algorithm", repl("algorithm: sliding_window", "algorithm: leaky_bucket"), `rate_limits[0].algorithm: "leaky_bucket" is not one of sliding_window, token_bucket`},
		{"scope", repl("scope: global", "scope: cluster"), `rate_limits[0].scope: "cluster" is not one of local, global`},
		{"on_exceed", repl("on_exceed: reject", "on_exceed: drop"), `rate_limits[0].on_exceed: "drop" is not one of reject, delay`},
		{"max_delay with reject", repl("on_exceed: reject", "on_exceed: reject\n    max_delay: 1s"), `rate_limits[0].max_delay: applies only with on_exceed: delay`},
		{"long max_delay", repl("max_delay: 500ms", "max_delay: 2m"), `rate_limits[1].max_delay: 2m0s is not between 0 and 60s`},
		{"unknown field", repl("headers: true", "header: true"), `unknown field "header"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCluster("c.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
