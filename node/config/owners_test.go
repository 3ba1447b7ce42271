package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/proxy/health"
	"github.com/pingora-go/pingora-go/proxy/lb"
	"github.com/pingora-go/pingora-go/proxy/route"
	"github.com/pingora-go/pingora-go/ratelimit"
)

// ruleDoc is a valid document with one upstream, one route and one rate
// limit; up, peer, rt and rl are extra lines for each, indented in place.
func ruleDoc(up, peer, rt, rl string) string {
	return "upstreams:\n  - name: web\n" + up + "    peers:\n      - addr: 127.0.0.1:9001\n" + peer +
		"routes:\n  - upstream: web\n" + rt +
		"rate_limits:\n  - name: api\n    limit: 10\n" + rl
}

// TestRulesAgreeWithOwners (issue 13): for each rule of the cluster
// document, the same value through ParseCluster and through the package
// that owns the type gets the same verdict, and a refusal names the
// field. Before, node/config kept its own copies: "h1" and hash key
// "uri:x" passed the proxy and not the parser; a health check path
// "/%zz" or Host "a b", and hash key "header:x y", passed both and then
// failed at run time (every check erroring, every request hashing "").
func TestRulesAgreeWithOwners(t *testing.T) {
	t.Parallel()
	type tc struct {
		value string
		doc   string
		owner error
	}
	check := func(c health.Check) error { return c.Validate() }
	up := func(field, v string) string { return fmt.Sprintf("    %s: %s\n", field, v) }
	var cases []struct {
		rule, path string
		tc
	}
	add := func(rule, path string, list ...tc) {
		for _, c := range list {
			cases = append(cases, struct {
				rule, path string
				tc
			}{rule, path, c})
		}
	}
	for _, p := range append(lb.Policies(), "fastest", "Round_Robin") {
		add("lb policy", "upstreams[0].lb", tc{p, ruleDoc(up("lb", p), "", "", ""), lb.CheckPolicy(p)})
	}
	for _, w := range []int{-1, 0, 1, lb.MaxWeight, lb.MaxWeight + 1} {
		owner := lb.CheckWeight(w)
		if w == 0 { // the library's 0 means 1; a document's explicit 0 is refused (zeroWeights)
			owner = errors.New("an explicit weight 0")
		}
		add("weight", "upstreams[0].peers[0].weight", tc{fmt.Sprint(w), ruleDoc("", fmt.Sprintf("        weight: %d\n", w), "", ""), owner})
	}
	for _, k := range []string{"uri", "path", "client_ip", "uri:x", "client_ip:a", ":x", "header:X-User", "header:x y", "header:", "cookie:sid", "query:q", "body"} {
		_, err := proxy.ParseHashKey(k)
		add("hash key", "upstreams[0].hash_key", tc{k, ruleDoc(up("hash_key", fmt.Sprintf("%q", k)), "", "", ""), err})
	}
	for _, p := range []string{"http1", "h2", "h2c", "h1", "http/1.1", "spdy"} {
		_, err := proxy.ParseProtocol(p)
		add("protocol", "upstreams[0].protocol", tc{p, ruleDoc(up("protocol", p), "", "", ""), err})
	}
	for _, u := range []string{"websocket", "h2c", "H2", "HTTP", "websocket/13", "a b", ""} {
		add("upgrade", "routes[0].upgrade[0]", tc{u, ruleDoc("", "", fmt.Sprintf("    upgrade: [%q]\n", u), ""), proxy.CheckUpgrade(u)})
	}
	for _, h := range []string{"*", "a.example.com", "*.example.com", "Example.COM.", "foo_bar.internal", "10.0.0.1", "a b", "a..b", "-a.com", "a*.b", "*.", "x:80", "a,b"} {
		add("route host", "routes[0].host", tc{h, ruleDoc("", "", fmt.Sprintf("    host: %q\n", h), ""), route.CheckHostPattern(h)})
	}
	for _, n := range []int64{-1, 0, 1 << 20} {
		rc := proxy.RouteConfig{MaxBodyBytes: n}
		add("body cap", "routes[0].max_body_bytes", tc{fmt.Sprint(n), ruleDoc("", "", fmt.Sprintf("    max_body_bytes: %d\n", n), ""), rc.Validate()})
	}
	for _, p := range []string{"/", "/api/", "api"} {
		add("path prefix", "routes[0].path_prefix", tc{p, ruleDoc("", "", fmt.Sprintf("    path_prefix: %q\n", p), ""), route.CheckPathPrefix(p)})
	}
	hc := func(field, v string) string { return fmt.Sprintf("    health_check: {type: http, %s: %q}\n", field, v) }
	for _, p := range []string{"/healthz", "/a?b=1", "/%zz", "/a#b", "x"} {
		add("health path", "upstreams[0].health_check.path", tc{p, ruleDoc(hc("path", p), "", "", ""), check(health.Check{Type: "http", Path: p})})
	}
	for _, h := range []string{"ok.example", "ok.example:8080", "a b", "a\r\nx: y"} {
		add("health host", "upstreams[0].health_check.host", tc{h, ruleDoc(hc("host", h), "", "", ""), check(health.Check{Type: "http", Host: h})})
	}
	for _, d := range []time.Duration{50 * time.Millisecond, health.MinInterval, time.Second} {
		add("health interval", "upstreams[0].health_check.interval", tc{d.String(), ruleDoc(hc("interval", d.String()), "", "", ""), check(health.Check{Interval: d})})
	}
	for _, s := range []string{"204", "200-399", "400-200", "99", "200-600"} {
		lo, hi, err := health.ParseStatusRange(s)
		if err == nil {
			err = check(health.Check{StatusMin: lo, StatusMax: hi})
		}
		add("expected status", "upstreams[0].health_check.expected_status", tc{s, ruleDoc(hc("expected_status", s), "", "", ""), err})
	}
	for _, f := range []struct {
		name, v string
		owner   error
	}{{"timeout", "-1s", check(health.Check{Timeout: -time.Second})}, {"rise", "-1", check(health.Check{Rise: -1})}, {"fall", "-1", check(health.Check{Fall: -1})}} {
		doc := ruleDoc(fmt.Sprintf("    health_check: {%s: %s}\n", f.name, f.v), "", "", "")
		add("health "+f.name, "upstreams[0].health_check."+f.name, tc{f.v, doc, f.owner})
	}
	for _, f := range []struct {
		name string
		t    proxy.UpstreamTimeouts
	}{{"connect", proxy.UpstreamTimeouts{Connect: -1}}, {"tls_handshake", proxy.UpstreamTimeouts{TLSHandshake: -1}}, {"write_idle", proxy.UpstreamTimeouts{WriteIdle: -1}}} {
		add("timeouts", "upstreams[0].timeouts."+f.name, tc{"-1ns", ruleDoc(fmt.Sprintf("    timeouts: {%s: -1ns}\n", f.name), "", "", ""), f.t.Validate()})
	}
	for _, r := range []int{-2, -1, 0, proxy.MaxRetries, proxy.MaxRetries + 1} {
		u := proxy.UpstreamConfig{Retries: r}
		add("retries", "upstreams[0].retries", tc{fmt.Sprint(r), ruleDoc(up("retries", fmt.Sprint(r)), "", "", ""), u.Validate()})
	}
	for _, b := range []int{-1, 0, proxy.MaxReplayBufferBytes, proxy.MaxReplayBufferBytes + 1} {
		u := proxy.UpstreamConfig{ReplayBufferBytes: b}
		add("replay buffer", "upstreams[0].replay_buffer_bytes", tc{fmt.Sprint(b), ruleDoc(up("replay_buffer_bytes", fmt.Sprint(b)), "", "", ""), u.Validate()})
	}
	for _, c := range []struct {
		path, line string
		lim        proxy.ConnLimit
	}{
		{"max_conns", "max_conns: 64", proxy.ConnLimit{Max: 64}},
		{"max_conns", "max_conns: -1", proxy.ConnLimit{Max: -1}},
		{"queue", "max_conns: 64\n    queue: -1", proxy.ConnLimit{Max: 64, Queue: -1}},
		{"queue", "max_conns: 64\n    queue: -2", proxy.ConnLimit{Max: 64, Queue: -2}},
		{"queue", "queue: 10", proxy.ConnLimit{Queue: 10}},
		{"queue_timeout", "max_conns: 64\n    queue_timeout: 1m", proxy.ConnLimit{Max: 64, QueueTimeout: time.Minute}},
		{"queue_timeout", "max_conns: 64\n    queue_timeout: 2m", proxy.ConnLimit{Max: 64, QueueTimeout: 2 * time.Minute}},
		{"queue_timeout", "max_conns: 64\n    queue_timeout: -1s", proxy.ConnLimit{Max: 64, QueueTimeout: -time.Second}},
		{"queue_timeout", "queue_timeout: 1s", proxy.ConnLimit{QueueTimeout: time.Second}},
	} {
		add("max_conns", "upstreams[0]."+c.path, tc{c.line, ruleDoc("    "+c.line+"\n", "", "", ""), c.lim.Validate()})
	}
	for _, s := range []int{404, 502, 600} {
		u := proxy.UpstreamConfig{RetryOnStatus: []int{s}}
		add("retry_on_status", "upstreams[0].retry_on_status[0]", tc{fmt.Sprint(s), ruleDoc(up("retry_on_status", fmt.Sprintf("[%d]", s)), "", "", ""), u.Validate()})
	}
	for _, d := range []time.Duration{-1, 0, 10 * time.Second} {
		u := proxy.UpstreamConfig{Passive: health.Passive{CoolOff: d}}
		doc := ruleDoc(fmt.Sprintf("    passive: {max_fails: 1, cool_off: %s}\n", d), "", "", "")
		add("passive cool_off", "upstreams[0].passive.cool_off", tc{d.String(), doc, u.Validate()})
	}
	cache := func(line string) string { return "    cache:\n      enabled: true\n      " + line + "\n" }
	for _, c := range []struct {
		path, line string
		cfg        proxy.CacheConfig
	}{
		{"max_object_bytes", "max_object_bytes: 1073741824", proxy.CacheConfig{MaxObjectBytes: 1 << 30}},
		{"max_object_bytes", "max_object_bytes: 1073741825", proxy.CacheConfig{MaxObjectBytes: 1<<30 + 1}},
		{"lock_timeout", "lock_timeout: 5m", proxy.CacheConfig{LockTimeout: 5 * time.Minute}},
		{"lock_timeout", "lock_timeout: 6m", proxy.CacheConfig{LockTimeout: 6 * time.Minute}},
		{"default_stale_if_error", "default_stale_if_error: 200h", proxy.CacheConfig{DefaultStaleIfError: 200 * time.Hour}},
		{"status_header", "status_header: off", proxy.CacheConfig{StatusName: "off"}},
		{"status_header", `status_header: "a(b"`, proxy.CacheConfig{StatusName: "a(b"}},
		{"key.headers[0]", `key: {headers: ["x y"]}`, proxy.CacheConfig{Key: proxy.CacheKeySpec{Headers: []string{"x y"}}}},
		{"key.cookies[0]", `key: {cookies: ["s;d"]}`, proxy.CacheConfig{Key: proxy.CacheKeySpec{Cookies: []string{"s;d"}}}},
		{"key.query[0]", `key: {query: [page]}`, proxy.CacheConfig{Key: proxy.CacheKeySpec{Query: []string{"page"}}}},
	} {
		add("cache", "routes[0].cache."+c.path, tc{c.line, ruleDoc("", "", cache(c.line), ""), c.cfg.Validate()})
	}
	rule := func(r ratelimit.Rule) error {
		r.Name, r.Limit = "api", 10
		return r.Validate()
	}
	for _, c := range []struct {
		path, line string
		rule       ratelimit.Rule
	}{
		{"max_delay", "on_exceed: delay\n    max_delay: 60s", ratelimit.Rule{OnExceed: ratelimit.Delay, MaxDelay: time.Minute}},
		{"max_delay", "on_exceed: delay\n    max_delay: 2m", ratelimit.Rule{OnExceed: ratelimit.Delay, MaxDelay: 2 * time.Minute}},
		{"max_delay", "max_delay: 1s", ratelimit.Rule{MaxDelay: time.Second}},
		{"match.host", `match: {host: "foo_bar.internal"}`, ratelimit.Rule{Match: ratelimit.Match{Host: "foo_bar.internal"}}},
		{"match.host", `match: {host: "a..b"}`, ratelimit.Rule{Match: ratelimit.Match{Host: "a..b"}}},
		{"match.host", `match: {host: "a,b"}`, ratelimit.Rule{Match: ratelimit.Match{Host: "a,b"}}},
		{"match.methods[0]", `match: {methods: ["GET,POST"]}`, ratelimit.Rule{Match: ratelimit.Match{Methods: []string{"GET,POST"}}}},
		{"key", `key: "header:"`, ratelimit.Rule{Key: "header:"}},
		{"key", `key: "{route}:{header:x-api-key}"`, ratelimit.Rule{Key: "{route}:{header:x-api-key}"}},
		{"algorithm", "algorithm: leaky", ratelimit.Rule{Algorithm: "leaky"}},
		{"period", "period: 25h", ratelimit.Rule{Period: 25 * time.Hour}},
	} {
		add("rate limit", "rate_limits[0]."+c.path, tc{c.line, ruleDoc("", "", "", "    "+c.line+"\n"), rule(c.rule)})
	}

	for _, c := range cases {
		_, err := ParseCluster("c.yaml", []byte(c.doc))
		switch {
		case (err == nil) != (c.owner == nil):
			t.Errorf("%s %q: node/config says %v; the owner says %v", c.rule, c.value, err, c.owner)
		case err != nil && !strings.Contains(err.Error(), ": "+c.path+": "):
			t.Errorf("%s %q: %v does not name %s", c.rule, c.value, err, c.path)
		}
	}
}

// TestSnake: the owners' Go field names become the document's keys.
func TestSnake(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Interval": "interval", "TLSHandshake": "tls_handshake", "Key.Headers[1]": "key.headers[1]",
		"RetryOnStatus[0]": "retry_on_status[0]", "Match.PathPrefix": "match.path_prefix", "MaxCoolOff": "max_cool_off",
		"DefaultStaleIfError": "default_stale_if_error",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"Policy": "lb", "HealthCheck.StatusMin": "health_check.expected_status", "Peers[3].Timeouts.ReadIdle": "timeouts.read_idle",
		"Peers[0].Weight": "peers[0].weight", "Peers[1].Conns.Max": "max_conns", "Peers[0].Conns.QueueTimeout": "queue_timeout",
	} {
		if got := upstreamField(in); got != want {
			t.Errorf("upstreamField(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"Upgrades[2]": "upgrade[2]", "Cache.StatusName": "cache.status_header", "Cache.Key.Cookies[0]": "cache.key.cookies[0]",
		"MaxBodyBytes": "max_body_bytes", "PathPrefix": "path_prefix",
	} {
		if got := routeField(in); got != want {
			t.Errorf("routeField(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestQueueWithoutCapNamesMaxConns: queue or queue_timeout without
// max_conns is refused naming the setting as the document spells it (the
// message said "needs Max", the Go field, to a YAML writer; the README's
// own example hit it).
func TestQueueWithoutCapNamesMaxConns(t *testing.T) {
	for _, line := range []string{"    queue: 10\n", "    queue_timeout: 1s\n"} {
		_, err := ParseCluster("c.yaml", []byte(ruleDoc(line, "", "", "")))
		if err == nil || !strings.Contains(err.Error(), "max_conns") {
			t.Errorf("%q: %v, want a refusal naming max_conns", line, err)
		}
	}
}
