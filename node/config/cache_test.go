package config

import (
	"strings"
	"testing"
	"time"
)

// TestRouteCache: a route's cache block parses (YAML and JSON), and each
// invalid field is refused by name.
func TestRouteCache(t *testing.T) {
	doc := goodCluster + `    cache:
      enabled: true
      shared: true
      max_object_bytes: 1048576
      key: {headers: [X-Tenant], cookies: [lang], query: [id]}
      status_header: edge
      lock_timeout: 2s
      default_stale_if_error: 1m
`
	c, err := ParseCluster("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	rc := c.Routes[0].Cache
	if !rc.Enabled || !rc.Shared || rc.MaxObjectBytes != 1<<20 || rc.Key.Headers[0] != "X-Tenant" || rc.Key.Cookies[0] != "lang" ||
		rc.Key.Query[0] != "id" || rc.StatusHeader != "edge" || rc.LockTimeout != 2*time.Second || rc.DefaultStaleIfError != time.Minute {
		t.Fatalf("parsed %+v", rc)
	}
	j, err := ParseCluster("", []byte(`{"upstreams":[{"name":"a","peers":[{"addr":"10.0.0.1:80"}]}],"routes":[{"upstream":"a","cache":{"enabled":true,"lock_timeout":"3s","key":{"query":[]}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if jc := j.Routes[0].Cache; !jc.Enabled || jc.LockTimeout != 3*time.Second || jc.Key.Query == nil || len(jc.Key.Query) != 0 {
		t.Fatalf("JSON parsed %+v", jc)
	}
	for _, tc := range []struct{ name, block, want string }{
		{"shared without enabled", "{shared: true}", `routes[0].cache.shared: needs enabled: true`},
		{"negative object size", "{enabled: true, max_object_bytes: -1}", `routes[0].cache.max_object_bytes: -1 is not between`},
		{"object over 1 GiB", "{enabled: true, max_object_bytes: 2147483648}", `routes[0].cache.max_object_bytes`},
		{"long lock timeout", "{enabled: true, lock_timeout: 1h}", `routes[0].cache.lock_timeout: 1h0m0s is not between`},
		{"negative stale-if-error", "{enabled: true, default_stale_if_error: -1s}", `routes[0].cache.default_stale_if_error`},
		{"status name with a space", `{enabled: true, status_header: "my cache"}`, `routes[0].cache.status_header: "my cache" is not a token`},
		{"header name with a colon", "{enabled: true, key: {headers: [\"a:b\"]}}", `routes[0].cache.key.headers[0]: "a:b" is not a name`},
		{"empty cookie name", "{enabled: true, key: {cookies: [\"\"]}}", `routes[0].cache.key.cookies[0]`},
		{"unknown field", "{enabled: true, ttl: 5s}", `unknown field "ttl"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCluster("c.yaml", []byte(goodCluster+"    cache: "+tc.block+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestCacheMemoryBytes: the node's cache cap from the file, a variable or
// a flag, with its default and bounds.
func TestCacheMemoryBytes(t *testing.T) {
	n, err := ParseNode("n.yaml", []byte(goodNode))
	if err != nil || n.CacheMemoryBytes != DefaultCacheMemoryBytes {
		t.Fatalf("default: %v %d", err, n.CacheMemoryBytes)
	}
	n, err = ParseNode("n.yaml", []byte(goodNode+"cache_memory_bytes: 67108864\n"))
	if err != nil || n.CacheMemoryBytes != 64<<20 {
		t.Fatalf("file: %v %d", err, n.CacheMemoryBytes)
	}
	file := writeNodeFile(t, goodNode)
	n, err = Load(Sources{File: file, Env: envOf("PINGORA_CACHE_MEMORY_BYTES=33554432"), Flags: flags("--cache-memory-bytes=16777216"), Hostname: hostname("h")})
	if err != nil || n.CacheMemoryBytes != 16<<20 {
		t.Fatalf("flag over variable: %v %d", err, n.CacheMemoryBytes)
	}
	for _, tc := range []struct{ doc, want string }{
		{goodNode + "cache_memory_bytes: 1000\n", `n.yaml:13: cache_memory_bytes: 1000 is not between 1 MiB`},
		{goodNode + "cache_memory_bytes: -5\n", `cache_memory_bytes: -5 is not between`},
	} {
		if _, err := ParseNode("n.yaml", []byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
		}
	}
	if _, err := Load(Sources{File: file, Flags: flags("--cache-memory-bytes=lots"), Hostname: hostname("h")}); err == nil || !strings.Contains(err.Error(), `flag --cache-memory-bytes: cache_memory_bytes: "lots" is not a whole number`) {
		t.Fatalf("bad flag: %v", err)
	}
}

// TestSplice: splice(2) relaying is on unless the node file turns it off;
// a value that is not a boolean is refused with its line.
func TestSplice(t *testing.T) {
	n, err := ParseNode("n.yaml", []byte(goodNode))
	if err != nil || n.Splice != nil {
		t.Fatalf("default: %v %v", err, n.Splice)
	}
	n, err = ParseNode("n.yaml", []byte(goodNode+"splice: false\n"))
	if err != nil || n.Splice == nil || *n.Splice {
		t.Fatalf("splice: false: %v %v", err, n.Splice)
	}
	if _, err := ParseNode("n.yaml", []byte(goodNode+"splice: sometimes\n")); err == nil || !strings.Contains(err.Error(), "n.yaml:13") {
		t.Fatalf("splice: sometimes: %v", err)
	}
}
