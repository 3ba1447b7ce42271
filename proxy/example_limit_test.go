package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/ratelimit/estimator"
)

// perIP admits Max requests per second per client address, counted in a
// count-min sketch: a Limiter an embedding user builds from
// ratelimit/estimator alone.
type perIP struct {
	rate *estimator.Rate
	Max  float64
}

func (l perIP) Limit(s *proxy.Session, _ *proxy.LimitDecision) proxy.LimitDecision {
	if l.rate.Sliding(s.ClientIP) >= l.Max {
		return proxy.LimitDecision{Deny: true, RetryAfter: time.Second,
			Policy: fmt.Sprintf(`"per-ip";q=%d;w=1`, int(l.Max)), State: `"per-ip";r=0;t=1`}
	}
	l.rate.Observe(s.ClientIP, 1)
	return proxy.LimitDecision{}
}

// ExampleLimiter limits each client address to 2 requests per second.
func ExampleLimiter() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer origin.Close()
	router, _ := proxy.NewRouter(proxy.RouterOptions{})
	tbl, _ := router.Build([]proxy.UpstreamConfig{{Name: "web", Peers: []*proxy.Peer{{Addr: origin.Listener.Addr().String()}}}},
		[]proxy.RouteConfig{{Host: "*", Upstream: "web"}}, "v1")
	router.Swap(tbl)

	rate, _ := estimator.NewRate(estimator.RateConfig{Interval: time.Second})
	srv, _ := proxy.New[struct{}](proxy.RouterApp{Router: router}, proxy.Config{Limiter: perIP{rate: rate, Max: 2}})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln, proxy.ListenerConfig{Name: "http"})
	defer srv.Close()

	for i := 0; i < 3; i++ {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("%d retry-after=%q policy=%s\n", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Ratelimit-Policy"))
	}
	// Output:
	// 200 retry-after="" policy=
	// 200 retry-after="" policy=
	// 429 retry-after="1" policy="per-ip";q=2;w=1
}
