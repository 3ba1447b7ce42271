package ratelimit

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// benchRequest is a request as the proxy hands it over: an API key in a
// header, a client address, a route.
func benchRequest(key string) *Request {
	return &Request{Route: "api", Host: "api.example.com", Method: "GET", Path: "/v1/items", ClientIP: "10.0.0.7",
		Header: http.Header{"X-Api-Key": {key}, "User-Agent": {"bench"}, "Accept": {"*/*"}}}
}

// benchLimiter runs on the real clock, with its sync loop, as a node does.
func benchLimiter(b *testing.B, r Rule) *Limiter {
	l, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.SetRules([]Rule{r}); err != nil {
		b.Fatal(err)
	}
	l.Start()
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkDecide is the decision the proxy makes per request: match,
// key, count. The limits are high enough that every request is admitted,
// so the figure is the cost on the path every request takes.
func BenchmarkDecide(b *testing.B) {
	for _, tc := range []struct {
		name string
		rule Rule
	}{
		{"local-sliding", Rule{Name: "r", Key: "header:x-api-key", Limit: 1 << 30}},
		{"local-bucket", Rule{Name: "r", Key: "header:x-api-key", Limit: 1 << 30, Algorithm: TokenBucket}},
		{"global", Rule{Name: "r", Key: "header:x-api-key", Limit: 1 << 30, Scope: Global}},
		{"global-template", Rule{Name: "r", Key: "{route}:{header:x-api-key}", Limit: 1 << 30, Scope: Global}},
		{"no-match", Rule{Name: "r", Limit: 1, Match: Match{PathPrefix: "/admin/"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := benchLimiter(b, tc.rule)
			reqs := make([]*Request, 1024)
			for i := range reqs {
				reqs[i] = benchRequest("key-" + strconv.Itoa(i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if !l.Decide(reqs[i&1023], 0, 0).Allow {
						b.Fatal("refused")
					}
					i++
				}
			})
		})
	}
}

// BenchmarkServe is an owner answering one batch of 100 report lines
// (decode, apply, encode, as the sync handler does): the owner's share of
// the sync cost per key.
func BenchmarkServe(b *testing.B) {
	l := benchLimiter(b, Rule{Name: "r", Key: "header:x-api-key", Limit: 1 << 30, Scope: Global})
	reps := make([]report, 100)
	for i := range reps {
		reps[i] = report{rule: "r", key: "key-" + strconv.Itoa(i), used: 3, span: int64(50 * time.Millisecond)}
	}
	body := encodeReports(nil, "peer", reps)
	var sc scratch
	b.ReportAllocs()
	for b.Loop() {
		from, rs, err := decodeReportsInto(sc.reps, body)
		if err != nil {
			b.Fatal(err)
		}
		sc.reps = rs
		if len(sc.answers) < len(rs) {
			sc.answers = make([]answer, len(rs))
		}
		encodeAnswers(nil, l.serveInto(sc.answers[:len(rs)], from, rs))
	}
}
