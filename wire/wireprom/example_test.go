package wireprom_test

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wireprom"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

func Example() {
	nw := wiretest.New()
	l, _ := nw.Listen("node-a:7947")
	srv, _ := wire.NewServer(wire.ServerConfig{})
	srv.Handle("ping", func(context.Context, []byte) ([]byte, error) { return nil, nil })
	go srv.Serve(l)
	defer srv.Close()
	cl, _ := wire.NewClient(wire.ClientConfig{Dialer: nw.Dialer()})
	defer cl.Close()

	reg := prometheus.NewRegistry() // node's own registry, never the default
	reg.MustRegister(wireprom.NewCollector(wireprom.Sources{Server: srv, Client: cl}))

	cl.CallRaw(context.Background(), "node-a:7947", "ping", nil)
	srv.Close() // waits for the handler, which counts after answering
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == "pingora_wire_server_calls_total" || f.GetName() == "pingora_wire_client_calls_total" {
			m := f.GetMetric()[0]
			fmt.Println(f.GetName(), m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
		}
	}
	// Output:
	// pingora_wire_client_calls_total ping 1
	// pingora_wire_server_calls_total ping 1
}
