package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/pingora-go/pingora-go/proxy"
)

// myCtx is the per-request state of the example's App.
type myCtx struct{ beta bool }

// gateway sends users who ask for the beta to a second origin, and tags
// every request on its way up.
type gateway struct {
	stable, beta *proxy.Peer
}

func (g *gateway) NewCtx() *myCtx { return &myCtx{} }

// RequestFilter (optional phase) reads the request before anything else.
func (g *gateway) RequestFilter(s *proxy.Session, ctx *myCtx) (bool, error) {
	ctx.beta = s.Req.Header.Get("X-Beta") == "1"
	return false, nil
}

// UpstreamPeer (required) picks the peer.
func (g *gateway) UpstreamPeer(s *proxy.Session, ctx *myCtx) (*proxy.Peer, error) {
	if ctx.beta {
		return g.beta, nil
	}
	return g.stable, nil
}

// UpstreamRequestFilter (optional phase) adds a header for the origin.
func (g *gateway) UpstreamRequestFilter(s *proxy.Session, req *proxy.RequestHeader, ctx *myCtx) error {
	req.Header.Set("X-Gateway", "pingora-go")
	return nil
}

func Example() {
	origin := func(name string) *proxy.Peer {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s saw X-Gateway=%s", name, r.Header.Get("X-Gateway"))
		}))
		return &proxy.Peer{Addr: srv.Listener.Addr().String()}
	}
	srv, err := proxy.New[*myCtx](&gateway{stable: origin("stable"), beta: origin("beta")}, proxy.Config{})
	if err != nil {
		panic(err)
	}
	ln, _ := proxy.Listen("127.0.0.1:0")
	go srv.Serve(ln, proxy.ListenerConfig{Name: "http"})
	defer srv.Shutdown(context.Background())

	for _, beta := range []string{"0", "1"} {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		req.Header.Set("X-Beta", beta)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
	}
	// Output:
	// stable saw X-Gateway=pingora-go
	// beta saw X-Gateway=pingora-go
}
