package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/ratelimit"
)

const goodNode = `name: node1
admin_addr: 127.0.0.1:9090
listeners:
  - name: http
    addr: 127.0.0.1:8080
    h2c: true
  - name: https
    addr: 127.0.0.1:8443
    tls: {cert: cert.pem, key: key.pem}
cluster_config: cluster.yaml
downstream:
  header_timeout: 5s
`

const goodCluster = `upstreams:
  - name: web
    protocol: http1
    lb: round_robin
    peers:
      - {addr: 127.0.0.1:9001, weight: 2}
      - addr: 127.0.0.1:9002
    timeouts: {connect: 2s}
routes:
  - host: "*"
    path_prefix: /
    upstream: web
`

func TestParseNode(t *testing.T) {
	n, err := ParseNode("conf/node.yaml", []byte(goodNode))
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "node1" || len(n.Listeners) != 2 || !n.Listeners[0].H2C || n.Downstream.HeaderTimeout != 5*time.Second {
		t.Fatalf("parsed %+v", n)
	}
	if got := n.Listeners[1].TLS.Pairs(n)[0].Cert; got != "conf/cert.pem" {
		t.Fatalf("relative path resolved to %q", got)
	}
	if n.GracePeriod != 30*time.Second || n.LogLevel != "info" {
		t.Fatalf("defaults not applied: %+v", n)
	}
	if n.Downstream.MaxConnsPerIP != 0 {
		t.Fatalf("downstream.max_conns_per_ip unset = %d, want 0 (no cap)", n.Downstream.MaxConnsPerIP)
	}
}

// TestParseNodeMaxConnsPerIP: downstream.max_conns_per_ip parses, in a
// block and in a flow mapping.
func TestParseNodeMaxConnsPerIP(t *testing.T) {
	for _, doc := range []string{goodNode + "  max_conns_per_ip: 10\n", strings.Replace(goodNode, "downstream:\n  header_timeout: 5s\n", "downstream: {max_conns_per_ip: 10}\n", 1)} {
		n, err := ParseNode("n.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if n.Downstream.MaxConnsPerIP != 10 {
			t.Fatalf("max_conns_per_ip = %d, want 10\n%s", n.Downstream.MaxConnsPerIP, doc)
		}
	}
}

func TestParseClusterRefuses(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"unknown key", strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    colour: blue\n", 1), `c.yaml:5: unknown field "colour"`},
		{"bad addr", strings.Replace(goodCluster, "127.0.0.1:9002", "127.0.0.1", 1), `c.yaml:7: upstreams[0].peers[1].addr: "127.0.0.1": missing port in address`},
		{"bad port", strings.Replace(goodCluster, "127.0.0.1:9002", "127.0.0.1:99999", 1), `c.yaml:7: upstreams[0].peers[1].addr: "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{"missing upstream", strings.Replace(goodCluster, "upstream: web", "upstream: api", 1), `c.yaml:12: routes[0].upstream: no upstream is named "api"`},
		{"bad policy", strings.Replace(goodCluster, "lb: round_robin", "lb: fastest", 1), `c.yaml:4: upstreams[0].lb: "fastest" is not one of`},
		{"bad protocol", strings.Replace(goodCluster, "protocol: http1", "protocol: spdy", 1), `c.yaml:3: upstreams[0].protocol: "spdy" is not one of http1, h2, h2c`},
		{"bad weight", strings.Replace(goodCluster, "weight: 2", "weight: -2", 1), `c.yaml:6: upstreams[0].peers[0].weight`},
		{"zero weight", strings.Replace(goodCluster, "weight: 2", "weight: 0", 1), `c.yaml:6: upstreams[0].peers[0].weight: 0 is not between 1 and 10000: to stop sending a peer requests, disable it`},
		{"zero weight, JSON", `{"upstreams":[{"name":"a","peers":[{"addr":"10.0.0.1:80","weight":0}]}],"routes":[{"upstream":"a"}]}`, `upstreams[0].peers[0].weight: 0 is not between 1`},
		{"bad duration", strings.Replace(goodCluster, "connect: 2s", "connect: soon", 1), `c.yaml:8: upstreams[0].timeouts.connect: want a duration such as 500ms, 10s or 1m30s, got "soon"`},
		{"wrong type", strings.Replace(goodCluster, "weight: 2", "weight: heavy", 1), `c.yaml:6: upstreams[0].peers[0].weight: want a whole number, got "heavy"`},
		{"duplicate route", goodCluster + "  - host: \"*\"\n    upstream: web\n", `c.yaml:13: routes[1]: same host and path_prefix as routes[0]`},
		{"route differing in case only", goodCluster + "  - host: \"*\"\n    path_prefix: /Admin\n    upstream: web\n  - host: \"*\"\n    path_prefix: /ADMIN\n    case_insensitive: true\n    upstream: web\n",
			`c.yaml:16: routes[2]: path_prefix differs from routes[1]'s only in case, and one of them is case_insensitive: a path would match both`},
		{"bad path", strings.Replace(goodCluster, "path_prefix: /", "path_prefix: api", 1), `c.yaml:11: routes[0].path_prefix: "api" must start with /`},
		{"bad host", strings.Replace(goodCluster, `host: "*"`, `host: "a b"`, 1), `c.yaml:10: routes[0].host`},
		{"no peers", "upstreams:\n  - name: x\n", `c.yaml:2: upstreams[0].peers: at least one peer is required`},
		{"not yaml", "upstreams: [", `c.yaml:1:`},
		{"two docs", goodCluster + "---\nroutes: []\n", `more than one document`},
		{"bad hash key", strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: ketama\n    hash_key: body\n", 1), `c.yaml:5: upstreams[0].hash_key`},
		{"retry on 404", strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    retry_on_status: [502, 404]\n", 1), `upstreams[0].retry_on_status[1]: 404 is not a 5xx status`},
		{"bad check type", strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    health_check: {type: icmp}\n", 1), `c.yaml:5: upstreams[0].health_check.type: "icmp" is not one of tcp, http, https`},
		{"bad status range", strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    health_check: {type: http, expected_status: 400-200}\n", 1), `upstreams[0].health_check.expected_status`},
		{"check too often", strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    health_check: {interval: 1ms}\n", 1), `upstreams[0].health_check.interval: 1ms is below the 100ms minimum`},
		{"h2c upgrade", goodCluster + "    upgrade: [websocket, h2c]\n", `c.yaml:13: routes[0].upgrade[1]: "h2c" is never tunnelled`},
		{"H2C upgrade", goodCluster + "    upgrade: [H2C]\n", `routes[0].upgrade[0]: "H2C" is never tunnelled`},
		{"http upgrade", goodCluster + "    upgrade: [HTTP]\n", `routes[0].upgrade[0]: "HTTP" is never tunnelled`},
		{"upgrade with version", goodCluster + "    upgrade: [websocket/13]\n", `routes[0].upgrade[0]: "websocket/13" is not a protocol name`},
		{"empty upgrade", goodCluster + "    upgrade: [\"\"]\n", `routes[0].upgrade[0]: empty protocol name`},
		{"peer port alone", strings.Replace(goodCluster, "127.0.0.1:9002", "9002", 1), `upstreams[0].peers[1].addr: "9002" is a port alone: a peer is "HOST:9002"`},
		{"passive without fails", strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    passive: {cool_off: 5s}\n", 1), `upstreams[0].passive.max_fails: must be at least 1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCluster("c.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *Errors
			if !errors.As(err, &ce) {
				t.Fatalf("error type %T: %v", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseNodeRefuses(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"bad name", strings.Replace(goodNode, "name: node1\n", "name: a b\n", 1), `n.yaml:1: name: "a b" is not a valid node name`},
		{"dup listener", strings.Replace(goodNode, "name: https", "name: http", 1), `n.yaml:7: listeners[1].name: "http" is also the name of listeners[0]`},
		{"h2c on tls", strings.Replace(goodNode, "tls: {cert: cert.pem, key: key.pem}", "tls: {cert: cert.pem, key: key.pem}\n    h2c: true", 1), `listeners[1].h2c`},
		{"cert without key", strings.Replace(goodNode, ", key: key.pem", "", 1), `n.yaml:9: listeners[1].tls: cert and key go together`},
		{"unknown key", goodNode + "colour: blue\n", `n.yaml:13: unknown field "colour"`},
		// A typo of a known key names the key it is near, in the file
		// and in a nested type.
		{"typo of a key", goodNode + "bootstrap_expcet: 3\n", `n.yaml:13: unknown field "bootstrap_expcet" (did you mean "bootstrap_expect"?)`},
		{"typo of a nested key", strings.Replace(goodNode, "header_timeout", "header_timout", 1), `n.yaml:12: unknown field "header_timout" (did you mean "header_timeout"?)`},
		{"bad level", goodNode + "log_level: loud\n", `log_level: "loud" is not one of`},
		{"exposed raft admin without token", strings.Replace(goodNode, "admin_addr: 127.0.0.1:9090", "admin_addr: 0.0.0.0:9090", 1) + "data_dir: data\n", `admin_token: required when admin_addr "0.0.0.0:9090" is reachable beyond loopback`},
		{"bad join", goodNode + "join: [nohost]\n", `join[0]: "nohost"`},
		{"port alone", strings.Replace(goodNode, "127.0.0.1:8080", "8080", 1), `listeners[0].addr: "8080" is a port alone: write ":8080" (every address) or "HOST:8080"`},
		{"fractional bootstrap_expect", goodNode + "data_dir: d\nbootstrap_expect: 2.5\n", `n.yaml:14: bootstrap_expect: want a whole number, got 2.5`},
		{"join port out of range", goodNode + "join: [10.0.0.1:7946, 10.0.0.2:79460]\n", `join[1]: "10.0.0.2:79460": port "79460" is not a number from 1 to 65535`},
		{"join port 0", goodNode + "join: [10.0.0.1:0]\n", `join[0]: "10.0.0.1:0": port "0" is not a number from 1 to 65535`},
		{"join port alone", goodNode + "join: [7946]\n", `join[0]: "7946" is a port alone: a seed is another node's gossip address, "HOST:7946"`},
		{"join IP without port", goodNode + "join: [10.0.0.5]\n", `join[0]: "10.0.0.5" has no port: a seed is another node's gossip address, host:port (10.0.0.5:7946 with the default gossip port)`},
		{"join IPv6 without port", goodNode + "join: [\"[fd00::5]\"]\n", `join[0]: "[fd00::5]" has no port: a seed is another node's gossip address, host:port ([fd00::5]:7946 with the default gossip port)`},
		{"join name without port", goodNode + "join: [seed1.internal]\n", `join[0]: "seed1.internal" has no port: a seed is another node's gossip address, host:port (seed1.internal:7946 with the default gossip port)`},
		{"join without host", goodNode + "join: [\":7946\"]\n", `join[0]: ":7946": no host`},
		{"join bad IPv4", goodNode + "join: [10.0.0.300:7946]\n", `join[0]: "10.0.0.300:7946": "10.0.0.300" is not an IP address`},
		{"join bad host", goodNode + "join: [\"seed_1.internal:7946\"]\n", `join[0]: "seed_1.internal:7946": "seed_1.internal" is not an IP address or host name`},
		{"bad gossip key", goodNode + "gossip_key: c2hvcnQ=\n", `gossip_key: 5 bytes; want 16, 24 or 32`},
		{"bad profile", goodNode + "gossip_profile: wan\n", `gossip_profile: "wan" is not one of lan, fast`},
		{"bad bootstrap", goodNode + "data_dir: d\nbootstrap_expect: 9\n", `bootstrap_expect: 9 is not between 0 and 7`},
		{"negative reap_after", goodNode + "reap_after: -1s\n", `reap_after: cannot be negative`},
		{"negative max_conns_per_ip", goodNode + "  max_conns_per_ip: -1\n", `n.yaml:13: downstream.max_conns_per_ip: cannot be negative`},
		{"typo of max_conns_per_ip", goodNode + "  max_conn_per_ip: 10\n", `n.yaml:13: unknown field "max_conn_per_ip" (did you mean "max_conns_per_ip"?)`},
		{"fractional max_conns_per_ip", goodNode + "  max_conns_per_ip: 2.5\n", `downstream.max_conns_per_ip: want a whole number, got 2.5`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNode("n.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestRouteUpgrade: an absent upgrade list stays nil (the proxy's default,
// websocket) and an empty one stays empty (no upgrade), in YAML and JSON.
func TestRouteUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, json string
		want             []string
	}{
		{"absent", "", "", nil},
		{"listed", "    upgrade: [websocket, Custom-Proto]\n", `,"upgrade":["websocket","Custom-Proto"]`, []string{"websocket", "Custom-Proto"}},
		{"none", "    upgrade: []\n", `,"upgrade":[]`, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCluster("c.yaml", []byte(goodCluster+tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			c2, err := ParseCluster("", []byte(`{"upstreams":[{"name":"a","peers":[{"addr":"10.0.0.1:80"}]}],"routes":[{"upstream":"a"`+tc.json+`}]}`))
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range [][]string{c.Routes[0].Upgrade, c2.Routes[0].Upgrade} {
				if (got == nil) != (tc.want == nil) || strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Fatalf("upgrade %#v, want %#v", got, tc.want)
				}
			}
		})
	}
}

func TestJSONAccepted(t *testing.T) {
	c, err := ParseCluster("", []byte(`{"upstreams":[{"name":"a","peers":[{"addr":"10.0.0.1:80"}]}],"routes":[{"upstream":"a"}]}`))
	if err != nil || c.Upstreams[0].Peers[0].Addr != "10.0.0.1:80" {
		t.Fatalf("%v %+v", err, c)
	}
}

// FuzzParseCluster: what parses builds (issue 13). Every document
// ParseCluster takes translates without error and passes the dry run of
// the owners' build code, proxy.CheckTable and ratelimit.CheckRules.
func FuzzParseCluster(f *testing.F) {
	f.Add([]byte(goodCluster))
	f.Add([]byte(`{"upstreams":[]}`))
	f.Add([]byte("routes:\n  - upstream: x\n"))
	f.Add([]byte(ruleDoc("    lb: ketama\n    hash_key: header:x-user\n    health_check: {type: http, path: /h, host: a.example}\n    passive: {max_fails: 2}\n",
		"        weight: 3\n", "    host: \"*.example.com\"\n    upgrade: [websocket]\n    cache: {enabled: true, key: {headers: [accept]}}\n",
		"    key: \"{route}:{header:x-api-key}\"\n    match: {host: api.example.com, methods: [GET]}\n    on_exceed: delay\n    max_delay: 2s\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCluster("f.yaml", data)
		if err != nil {
			return
		}
		if err := buildable(c); err != nil {
			t.Fatalf("a document that parses does not build: %v\n%s", err, data)
		}
	})
}

// buildable runs the owners' build code on c as node's dry run does.
func buildable(c *Cluster) error {
	var ups []proxy.UpstreamConfig
	for _, u := range c.Upstreams {
		uc, err := u.ProxyUpstream()
		if err != nil {
			return err
		}
		ups = append(ups, uc)
	}
	var routes []proxy.RouteConfig
	for _, r := range c.Routes {
		routes = append(routes, r.ProxyRoute())
	}
	if err := proxy.CheckTable(ups, routes); err != nil {
		return err
	}
	var rules []ratelimit.Rule
	for _, r := range c.RateLimits {
		rules = append(rules, r.Rule())
	}
	return ratelimit.CheckRules(rules)
}

func ExampleParseCluster() {
	_, err := ParseCluster("cluster.yaml", []byte("upstreams:\n  - name: web\n    peers:\n      - addr: 10.0.0.1\n"))
	fmt.Println(err)
	// Output: cluster.yaml:4: upstreams[0].peers[0].addr: "10.0.0.1": missing port in address
}

// TestYAMLErrorLines (issue 12): syntax errors name the file and the line
// of the fault (the YAML parser counts some from 0), in cluster configs and
// node files alike.
func TestYAMLErrorLines(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unclosed flow mapping", "upstreams:\n  - name: web\n    peers: [{addr: 127.0.0.1:1}]\nroutes:\n  - {upstream: web\n", "f.yaml:5: did not find expected ',' or '}'"},
		{"unclosed flow sequence", "upstreams:\n  - name: web\n    peers: [{addr: 127.0.0.1:1}\nroutes: []\n", "f.yaml:3: did not find expected ',' or ']'"},
		{"bad indentation", "upstreams:\n  - name: web\n    peers: [{addr: 127.0.0.1:1}]\n routes: []\n", "f.yaml:4: did not find expected key"},
		{"sequence item in a mapping", "upstreams: []\n- routes\n", "f.yaml:2: did not find expected key"},
		{"mapping in a scalar", "upstreams: []\n\nroutes: a: b\n", "f.yaml:3: mapping values are not allowed in this context"},
		{"tab", "upstreams: []\n\troutes: []\n", "f.yaml:2: found character that cannot start any token"},
		{"unclosed at the end", "upstreams: [", "f.yaml:1: did not find expected node content"},
		{"unterminated quote", "upstreams: []\nroutes:\n  - host: \"x\n", "f.yaml:3: found unexpected end of stream"},
		{"duplicate key", "routes: []\nupstreams: []\nroutes: []\n", `f.yaml:3: mapping key "routes" already defined at line 1`},
		{"second document", "upstreams: []\nroutes: []\n---\n\nroutes: []\n", "f.yaml:5: more than one document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseCluster("f.yaml", []byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("cluster config: %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestYAMLErrorLinesNodeFile(t *testing.T) {
	head := "name: n1\nlisteners: [{name: a, addr: 127.0.0.1:1}]\ncluster_config: c.yaml\n"
	for _, tc := range []struct{ doc, want string }{
		{head + "join: [a:1,\nzone: z\n", "n.yaml:4: did not find expected ',' or ']'"},
		{head + "downstream:\n  header_timeout: 5s\n max_conns: 3\n", "n.yaml:6: did not find expected key"},
		{head + "zone: a\nzone: b\n", `n.yaml:5: mapping key "zone" already defined at line 4`},
		{head + "---\nname: n2\n", "n.yaml:5: more than one document"},
		// a wrong type names the field and the whole value, not only the
		// line and the YAML library's "cannot unmarshal !!str `10.213....`
		// into []string"
		{head + "grace_period: soon\n", `n.yaml:4: grace_period: want a duration such as 500ms, 10s or 1m30s, got "soon"`},
		{head + "join: 10.213.0.1:7946\n", `n.yaml:4: join: want a list, got "10.213.0.1:7946" (a list of one: [10.213.0.1:7946])`},
		{head + "join: {a: b}\n", `n.yaml:4: join: want a list, got a mapping`},
		{head + "downstream: {header_timeout: 5s, max_conns: many}\n", `n.yaml:4: downstream.max_conns: want a whole number, got "many"`},
		{"listeners: [{name: a, addr: 127.0.0.1:1, h2c: yes-please}]\ncluster_config: c.yaml\n", `n.yaml:1: listeners[0].h2c: want true or false, got "yes-please"`},
	} {
		if _, err := ParseNode("n.yaml", []byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v\nwant %q", tc.doc, err, tc.want)
		}
	}
}

func TestRoutesNothingAndSame(t *testing.T) {
	parse := func(doc string) *Cluster {
		c, err := ParseCluster("c", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for doc, want := range map[string]string{
		"": "no upstreams and no routes", "{}": "no upstreams and no routes", "routes: []\n": "no upstreams and no routes",
		strings.Split(goodCluster, "routes:")[0]: "has no routes", goodCluster: "",
	} {
		if got := parse(doc).RoutesNothing(); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("RoutesNothing(%q) = %q, want %q", doc, got, want)
		}
	}
	base := parse(goodCluster)
	for name, tc := range map[string]struct {
		doc  string
		same bool
	}{
		"comments and blank lines": {"# header\n\n" + goodCluster, true},
		"JSON": {`{"routes":[{"host":"*","path_prefix":"/","upstream":"web"}],"upstreams":[{"name":"web","protocol":"http1","lb":"round_robin",` +
			`"peers":[{"addr":"127.0.0.1:9001","weight":2},{"addr":"127.0.0.1:9002"}],"timeouts":{"connect":"2s"}}]}`, true},
		"defaults left out":    {strings.NewReplacer("    protocol: http1\n", "", "    lb: round_robin\n", "", "  - host: \"*\"\n    path_prefix: /\n    upstream: web\n", "  - upstream: web\n").Replace(goodCluster), true},
		"weight 1 spelled out": {strings.Replace(goodCluster, "- addr: 127.0.0.1:9002", "- {addr: 127.0.0.1:9002, weight: 1}", 1), true},
		"another weight":       {strings.Replace(goodCluster, "weight: 2", "weight: 3", 1), false},
		"peers reordered":      {strings.NewReplacer("9001", "9002", "9002", "9001").Replace(goodCluster), false},
		"health check added":   {strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    health_check: {}\n", 1), false},
		"max_conns added":      {strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    max_conns: 8\n", 1), false},
	} {
		if got := Same(base, parse(tc.doc)); got != tc.same {
			t.Errorf("%s: Same = %v, want %v", name, got, tc.same)
		}
	}
	capped := parse(strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    max_conns: 8\n", 1))
	spelled := parse(strings.Replace(goodCluster, "    lb: round_robin\n", "    lb: round_robin\n    max_conns: 8\n    queue: 8\n    queue_timeout: 1s\n", 1))
	if !Same(capped, spelled) {
		t.Error("max_conns with its queue defaults spelled out is not Same as without")
	}
}

// TestClusterRefusesControlCharacters: a control character written as an
// escape (the YAML parser refuses raw ones) is refused wherever it is, with
// its line; before, an upstream named "web\e[31m...\r\nFAKE LINE" was
// written and printed as is by pingora-node status.
func TestClusterRefusesControlCharacters(t *testing.T) {
	for _, doc := range []string{
		"upstreams:\n  - name: \"web\\e[31mRED\\r\\nFAKE\"\n    peers: [{addr: 127.0.0.1:1}]\nroutes:\n  - {upstream: \"web\\e[31mRED\\r\\nFAKE\"}\n",
		"upstreams:\n  - name: \"a\\0b\"\n    peers: [{addr: 127.0.0.1:1}]\nroutes:\n  - {upstream: \"a\\0b\"}\n",
		"upstreams:\n  - name: w\n    peers: [{addr: 127.0.0.1:1}]\nroutes:\n  - {upstream: w, path_prefix: \"/a\\nb\"}\n",
		"upstreams:\n  - name: w\n    peers: [{addr: 127.0.0.1:1}]\n    tls: {sni: \"a\\u0085b\"}\nroutes:\n  - {upstream: w}\n",
		`{"upstreams": [{"name": "w\u001b", "peers": [{"addr": "127.0.0.1:1"}]}], "routes": [{"upstream": "w\u001b"}]}`,
	} {
		_, err := ParseCluster("c.yaml", []byte(doc))
		if err == nil || !strings.Contains(err.Error(), "holds a control character") || !strings.Contains(err.Error(), "c.yaml:") {
			t.Errorf("%q: %v", doc, err)
		}
	}
	if _, err := ParseCluster("c.yaml", []byte("upstreams:\n  - name: \"wéb ☃\"\n    peers: [{addr: 127.0.0.1:1}]\nroutes:\n  - {upstream: \"wéb ☃\"}\n")); err != nil {
		t.Errorf("a name with non-ASCII letters: %v", err)
	}
}

// TestFractionalWholeNumbers: the YAML library truncates 1.5 into an int
// field (weight: 1.5 ran as 1, retries: 0.5 as 0). A document about to be
// written is refused (ParseNewCluster); a committed version is still
// applied as before (ParseCluster), or a node upgraded to this build would
// refuse what the cluster already runs and be left with no config.
func TestFractionalWholeNumbers(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"weight", strings.Replace(goodCluster, "weight: 2", "weight: 1.5", 1), `c.yaml:6: upstreams[0].peers[0].weight: want a whole number, got 1.5`},
		{"limit", goodCluster + "rate_limits: [{name: r, limit: 10.5}]\n", `c.yaml:13: rate_limits[0].limit: want a whole number, got 10.5`},
		{"retries in JSON", `{"upstreams": [{"name": "web", "retries": 0.5, "peers": [{"addr": "127.0.0.1:9001"}]}], "routes": [{"upstream": "web"}]}`, `c.yaml:1: upstreams[0].retries: want a whole number, got 0.5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseNewCluster("c.yaml", []byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseNewCluster: %v\nwant it to contain %q", err, tc.want)
			}
			if _, err := ParseCluster("c.yaml", []byte(tc.doc)); err != nil {
				t.Fatalf("ParseCluster (a committed version) refused: %v", err)
			}
		})
	}
	if c, err := ParseNewCluster("c.yaml", []byte(strings.Replace(goodCluster, "weight: 2", "weight: 2.0", 1))); err != nil || c.Upstreams[0].Peers[0].Weight != 2 {
		t.Fatalf("weight: 2.0: %v", err)
	}
}

// TestErrorsInDocumentOrder: a document with several problems lists them
// by line, though validation finds them in another order (a peer's zero
// weight after the routes and rate limits; a node's log_level before its
// listeners), and values from flags or the environment after the file's.
func TestErrorsInDocumentOrder(t *testing.T) {
	lines := func(t *testing.T, err error) []int {
		t.Helper()
		var ce *Errors
		if !errors.As(err, &ce) {
			t.Fatalf("want *Errors, got %v", err)
		}
		var out []int
		for _, fe := range ce.List {
			if fe.Source == "" {
				out = append(out, fe.Line)
			}
		}
		return out
	}
	sorted := func(t *testing.T, err error, n int) {
		t.Helper()
		ls := lines(t, err)
		if len(ls) != n {
			t.Fatalf("want %d problems, got %d:\n%v", n, len(ls), err)
		}
		for i := 1; i < len(ls); i++ {
			if ls[i] < ls[i-1] {
				t.Fatalf("line %d reported before line %d:\n%v", ls[i-1], ls[i], err)
			}
		}
	}
	t.Run("cluster", func(t *testing.T) {
		doc := "upstreams:\n" +
			"  - name: web\n" +
			"    peers:\n" +
			"      - addr: 127.0.0.1:8080\n" +
			"        weight: 0\n" +
			"    max_conns: -1\n" +
			"routes:\n" +
			"  - upstream: nope\n" +
			"    path_prefix: api\n"
		_, err := ParseCluster("c.yaml", []byte(doc))
		sorted(t, err, 4)
	})
	t.Run("node", func(t *testing.T) {
		doc := "name: n1\n" +
			"cluster_config: c.yaml\n" +
			"listeners:\n" +
			"  - name: http\n" +
			"    addr: 127.0.0.1:99999\n" +
			"log_level: loud\n"
		_, err := ParseNode("n.yaml", []byte(doc))
		sorted(t, err, 2)
	})
	t.Run("flags after the file", func(t *testing.T) {
		dir := t.TempDir()
		file := dir + "/n.yaml"
		if err := os.WriteFile(file, []byte("name: n1\ncluster_config: c.yaml\nlog_level: loud\nlisteners: [{name: http, addr: 127.0.0.1:8080}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(Sources{File: file, Flags: []Override{{Key: "name", Value: "not valid!", Source: "flag --name"}}})
		var ce *Errors
		if !errors.As(err, &ce) || len(ce.List) != 2 || ce.List[0].Line != 3 || ce.List[1].Source != "flag --name" {
			t.Fatalf("want the file's line 3, then flag --name:\n%v", err)
		}
	})
}

// TestShapeErrorsInOperatorWords: a document of the wrong shape (a list or
// a string at the top, a string where a list or a mapping goes, a string
// as a list's item) is refused in the words of the document, with its
// line, never the YAML library's "cannot unmarshal !!seq into
// config.Cluster".
func TestShapeErrorsInOperatorWords(t *testing.T) {
	const up = "upstreams:\n  - name: web\n    peers: [{addr: 127.0.0.1:8080}]\n"
	check := func(t *testing.T, err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatalf("accepted; want %q", want)
		}
		msg := err.Error()
		if !strings.Contains(msg, want) {
			t.Errorf("got %q\nwant %q", msg, want)
		}
		for _, leak := range []string{"!!", "config.", "unmarshal", "[]"} {
			if strings.Contains(msg, leak) {
				t.Errorf("%q names the YAML library's types (%q)", msg, leak)
			}
		}
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"list at the top", "- upstreams: []\n- routes: []\n", "c.yaml:1: the document must be a mapping with upstreams and routes, got a list"},
		{"JSON list at the top", `[{"upstreams": []}]`, "c.yaml:1: the document must be a mapping with upstreams and routes, got a list"},
		{"string at the top", "\n# a comment\njust a string\n", `c.yaml:3: the document must be a mapping with upstreams and routes, got "just a string"`},
		{"number at the top", "42\n", `c.yaml:1: the document must be a mapping with upstreams and routes, got 42`},
		{"string for routes", up + "routes: /api\n", `c.yaml:4: routes: want a list of routes (mappings), got "/api"`},
		{"mapping for routes", up + "routes: {upstream: web}\n", `c.yaml:4: routes: want a list of routes (mappings), got a mapping`},
		{"string for upstreams", "upstreams: web\nroutes: [{upstream: web}]\n", `c.yaml:1: upstreams: want a list of upstreams (mappings), got "web"`},
		{"string as a route", up + "routes:\n  - upstream: web\n  - /api\n", `c.yaml:6: routes[1]: want a mapping, got "/api"`},
		{"string as a peer", "upstreams:\n  - name: web\n    peers: [127.0.0.1:8080]\nroutes: [{upstream: web}]\n", `c.yaml:3: upstreams[0].peers[0]: want a mapping, got "127.0.0.1:8080"`},
		{"string for peers", "upstreams:\n  - name: web\n    peers: 127.0.0.1:8080\nroutes: [{upstream: web}]\n", `c.yaml:3: upstreams[0].peers: want a list of peers (mappings), got "127.0.0.1:8080"`},
		{"string for timeouts", up + "    timeouts: 5s\nroutes: [{upstream: web}]\n", `c.yaml:4: upstreams[0].timeouts: want a mapping, got "5s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCluster("c.yaml", []byte(tc.doc))
			check(t, err, tc.want)
		})
	}
	t.Run("node file", func(t *testing.T) {
		_, err := ParseNode("n.yaml", []byte("- name: n1\n"))
		check(t, err, "n.yaml:1: the document must be a mapping of node settings (name, listeners, cluster_config, ...), got a list")
	})
	t.Run("null document", func(t *testing.T) {
		if _, err := ParseCluster("c.yaml", []byte("~\n")); err != nil {
			t.Fatalf("an empty document (null) is the empty config: %v", err)
		}
	})
}

// TestCaseInsensitiveReachesTheOwners: case_insensitive on a route and on
// a rate limit's match reaches the router's and the limiter's rules.
func TestCaseInsensitiveReachesTheOwners(t *testing.T) {
	doc := strings.Replace(goodCluster, "    path_prefix: /\n", "    path_prefix: /Admin/\n    case_insensitive: true\n", 1) +
		"rate_limits:\n  - name: r\n    limit: 10\n    match: {path_prefix: /API/, case_insensitive: true}\n"
	c, err := ParseCluster("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.Routes[0].ProxyRoute(); !rc.CaseInsensitive || rc.PathPrefix != "/Admin/" {
		t.Errorf("route: %+v, want /Admin/ case-insensitive", rc)
	}
	if m := c.RateLimits[0].Rule().Match; !m.CaseInsensitive || m.PathPrefix != "/API/" {
		t.Errorf("rate limit match: %+v, want /API/ case-insensitive", m)
	}
	if c2, err := ParseCluster("c.yaml", []byte(goodCluster)); err != nil || c2.Routes[0].CaseInsensitive {
		t.Errorf("default: %v, case_insensitive %v, want false", err, c2 != nil && c2.Routes[0].CaseInsensitive)
	}
}
