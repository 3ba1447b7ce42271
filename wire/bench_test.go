package wire_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// bulkSize is the body the bulk stream sends, over and over, while small
// calls are timed.
const bulkSize = 64 << 20

// BenchmarkSmallCall times a small unary call to a peer on loopback TCP:
// idle, with a 64 MiB stream from the same peer in flight (the design: the
// stream on its own connection), and, for comparison, with the stream
// sharing the unary connection (frames interleaved on one TCP stream).
// p50/p99 are per-call latencies; bulk-MB/s shows the stream kept moving.
//
//	go test -run '^$' -bench BenchmarkSmallCall -benchtime 2000x ./wire/
func BenchmarkSmallCall(b *testing.B) {
	b.Run("idle", func(b *testing.B) { benchSmall(b, false, false) })
	b.Run("bulk_64MiB_in_flight", func(b *testing.B) { benchSmall(b, true, false) })
	b.Run("bulk_64MiB_same_conn", func(b *testing.B) { benchSmall(b, true, true) })
}

func benchSmall(b *testing.B, bulk, shared bool) {
	addr := benchServer(b)
	cl, err := wire.NewClient(wire.ClientConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if shared {
		wire.ShareStreamConn(cl)
	}
	req := echoReq{Msg: "rate-limit hits: 42"}
	if err := cl.Call(context.Background(), addr, "echo", req, nil); err != nil {
		b.Fatal(err) // dial before timing
	}
	var bytes atomic.Int64
	if bulk {
		stop := startBulk(b, cl, addr, &bytes)
		defer func() {
			if err := stop(); err != nil {
				b.Fatalf("bulk stream failed: %v", err)
			}
		}()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start, before := time.Now(), bytes.Load()
	for range b.N {
		t0 := time.Now()
		var resp echoResp
		if err := cl.Call(context.Background(), addr, "echo", req, &resp); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	elapsed, moved := time.Since(start), bytes.Load()-before
	if bulk && b.N >= 1000 && moved == 0 {
		b.Fatal("the bulk stream did not move while small calls were timed")
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(moved)/elapsed.Seconds()/1e6, "bulk-MB/s")
}

// benchServer serves "echo" and "bulk" (a 64 MiB stream) on loopback TCP.
func benchServer(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := wire.NewServer(wire.ServerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	wire.HandleFunc(srv, "echo", func(_ context.Context, r *echoReq) (*echoResp, error) {
		return &echoResp{Msg: r.Msg}, nil
	})
	payload := body(256 << 10)
	srv.HandleStream("bulk", func(ctx context.Context, _ []byte, w io.Writer) error {
		for sent := 0; sent < bulkSize; sent += len(payload) {
			if _, err := w.Write(payload); err != nil {
				return err
			}
		}
		return nil
	})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	b.Cleanup(func() { srv.Close(); <-done })
	return l.Addr().String()
}

// startBulk reads 64 MiB streams back to back until stopped, counting the
// bytes read; it returns once the first bytes have arrived. stop reports
// a stream that failed other than by being stopped.
func startBulk(b *testing.B, cl *wire.Client, addr string, n *atomic.Int64) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failed error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := readBulk(ctx, cl, addr, n); err != nil && ctx.Err() == nil {
				failed = err
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() == 0 {
		if time.Now().After(deadline) {
			b.Fatal("bulk stream did not start")
		}
		time.Sleep(time.Millisecond) // sleep-ok: polling for the stream's first bytes
	}
	return func() error { cancel(); wg.Wait(); return failed }
}

// readBulk reads one bulk stream to its end.
func readBulk(ctx context.Context, cl *wire.Client, addr string, n *atomic.Int64) error {
	r, err := cl.CallStream(ctx, addr, "bulk", nil)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]byte, 64<<10)
	total := 0
	for {
		k, err := r.Read(buf)
		n.Add(int64(k))
		total += k
		if err == io.EOF && total == bulkSize {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", total, err)
		}
	}
}
