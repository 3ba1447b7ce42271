package node

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/ratelimit"
)

// BenchmarkProxyLimit is one proxied HTTP/1.1 request over loopback with
// the node's limiter hook in the engine, beside the same request without
// it: the difference is what the decision adds to a request (cpu-ns/op,
// the process's CPU per request). The rules never refuse (the limit is
// far above the load), so every request takes the whole path.
func BenchmarkProxyLimit(b *testing.B) {
	for _, tc := range []struct {
		name  string
		rules []ratelimit.Rule
	}{
		{"none", nil},
		{"local", []ratelimit.Rule{{Name: "ip", Limit: 1 << 30}}},
		{"global", []ratelimit.Rule{{Name: "api", Key: "header:x-api-key", Limit: 1 << 30, Scope: ratelimit.Global}}},
		{"both", []ratelimit.Rule{{Name: "ip", Limit: 1 << 30}, {Name: "api", Key: "header:x-api-key", Limit: 1 << 30, Scope: ratelimit.Global}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var cfg proxy.Config
			if tc.rules != nil {
				l, err := ratelimit.New(ratelimit.Config{})
				if err != nil {
					b.Fatal(err)
				}
				l.SetRules(tc.rules)
				l.Start()
				b.Cleanup(func() { l.Close() })
				cfg.Limiter = limitHook{l}
			}
			benchProxy(b, cfg, "GET /v1/items HTTP/1.1\r\nHost: api\r\nX-Api-Key: key-1\r\nAccept: */*\r\n\r\n")
		})
	}
}

// BenchmarkLimitHook is the hook alone, as the engine calls it: the
// session's request handed to the limiter and the decision back.
func BenchmarkLimitHook(b *testing.B) {
	l, err := ratelimit.New(ratelimit.Config{})
	if err != nil {
		b.Fatal(err)
	}
	l.SetRules([]ratelimit.Rule{{Name: "ip", Limit: 1 << 30}, {Name: "api", Key: "header:x-api-key", Limit: 1 << 30, Scope: ratelimit.Global}})
	l.Start()
	b.Cleanup(func() { l.Close() })
	hook := limitHook{l}
	sessions := make([]*proxy.Session, 1024)
	for i := range sessions {
		sessions[i] = &proxy.Session{ClientIP: "10.0.0." + strconv.Itoa(i&255), Route: "api",
			Req: &proxy.RequestHeader{Method: "GET", URI: "/v1/items?x=1", Host: "api", Header: http.Header{"X-Api-Key": {"key-" + strconv.Itoa(i)}}}}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if hook.Limit(sessions[i&1023], nil).Deny {
			b.Fatal("refused")
		}
		i++
	}
}
