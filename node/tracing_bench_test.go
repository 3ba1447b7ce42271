package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy"
)

// discardExporter drops spans: the benchmark measures making them.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkProxyTracing measures one proxied HTTP/1.1 request (a
// keep-alive client, the engine, a pooled connection to a minimal origin,
// as proxy's BenchmarkProxyH1) with tracing off (a nil Tracer) and with
// the node's OpenTelemetry Tracer at sample ratios 0.01 and 1 (spans
// batched to an exporter that drops them). Compare ns/op and allocs/op.
func BenchmarkProxyTracing(b *testing.B) {
	for _, tc := range []struct {
		name  string
		ratio float64 // -1: tracing off
	}{{"off", -1}, {"ratio=0.01", 0.01}, {"ratio=1", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			var tr proxy.Tracer
			if tc.ratio >= 0 {
				t := &tracing{on: true, cfg: config.Tracing{Endpoint: "http://127.0.0.1:1", SampleRatio: &tc.ratio}}
				t.export = nil
				if err := t.startWith(sdktrace.WithBatcher(discardExporter{})); err != nil {
					b.Fatal(err)
				}
				defer t.stop()
				tr = t
			}
			benchProxy(b, proxy.Config{Tracer: tr}, "GET /small HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
		})
	}
}

// benchProxy measures req, proxied by an engine of cfg to a minimal origin
// over loopback, again and again on one keep-alive connection.
func benchProxy(b *testing.B, cfg proxy.Config, req string) {
	origin := rawOrigin(b, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+string(make([]byte, 100)))
	r, err := proxy.NewRouter(proxy.RouterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	tbl, err := r.Build([]proxy.UpstreamConfig{{Name: "up", Peers: []*proxy.Peer{{Addr: origin}}}}, []proxy.RouteConfig{{Host: "*", Upstream: "up"}}, "1")
	if err != nil {
		b.Fatal(err)
	}
	r.Swap(tbl)
	srv, err := proxy.New[struct{}](proxy.RouterApp{Router: r}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln, proxy.ListenerConfig{Name: "http"})
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if _, err := io.WriteString(c, req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(fmt.Errorf("status %d", resp.StatusCode))
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time (user and system) this process used: a
// request's cost in CPU, less sensitive than ns/op to the other work on a
// shared machine. It covers the client and origin too, as the comparison
// between the cases needs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawOrigin answers every request with resp, doing as little as it can.
func rawOrigin(b *testing.B, resp string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkTracerHooks measures what tracing adds to one request the
// sampler passes over (ratio 0.01): the request's and the attempt's
// hooks, with the trace context written upstream, for a client that sent
// no trace context and for one that sent an unsampled one; "sdk" is the
// same through the SDK (OTEL_TRACES_SAMPLER set), for comparison.
func BenchmarkTracerHooks(b *testing.B) {
	ratio := 0.01
	for _, tc := range []struct {
		name, parent string
		sdk          bool
	}{
		{"new trace", "", false},
		{"unsampled parent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", false},
		{"new trace/sdk", "", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			t := &tracing{on: true, cfg: config.Tracing{SampleRatio: &ratio}}
			opts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(discardExporter{})}
			if tc.sdk { // as with OTEL_TRACES_SAMPLER=parentbased_traceidratio
				opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
			}
			if err := t.startWith(opts...); err != nil {
				b.Fatal(err)
			}
			defer t.stop()
			if tc.sdk {
				t.fast = fastSampling{}
			}
			req := &proxy.RequestHeader{Method: "GET", URI: "/", Host: "bench", Header: http.Header{}}
			if tc.parent != "" {
				req.Header["Traceparent"] = []string{tc.parent}
			}
			s := &proxy.Session{Req: req, Peer: &proxy.Peer{Addr: "127.0.0.1:8080"}}
			up := http.Header{}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				rctx, rsp := t.Start(ctx, proxy.SpanRequest, s, nil)
				_, asp := t.Start(rctx, proxy.SpanAttempt, s, up)
				if asp != nil {
					asp.End(s, proxy.SpanEnd{Status: 200})
				}
				if rsp != nil {
					rsp.End(s, proxy.SpanEnd{Status: 200})
				}
			}
			if len(up["Traceparent"]) != 1 {
				b.Fatal("no traceparent written upstream")
			}
		})
	}
}
