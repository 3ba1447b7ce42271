package wire_test

import (
	"context"
	"fmt"

	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

func Example() {
	type addReq struct{ A, B int }
	type addResp struct{ Sum int }

	nw := wiretest.New() // net.Listen("tcp", ...) and the default Dialer in production
	l, _ := nw.Listen("node-a:7947")

	srv, _ := wire.NewServer(wire.ServerConfig{})
	wire.HandleFunc(srv, "add", func(_ context.Context, r *addReq) (*addResp, error) {
		return &addResp{Sum: r.A + r.B}, nil
	})
	go srv.Serve(l)
	defer srv.Close()

	cl, _ := wire.NewClient(wire.ClientConfig{Dialer: nw.Dialer()})
	defer cl.Close()
	var resp addResp
	err := cl.Call(context.Background(), "node-a:7947", "add", addReq{A: 2, B: 40}, &resp)
	fmt.Println(resp.Sum, err)
	// Output: 42 <nil>
}
