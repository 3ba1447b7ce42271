package proxy

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// BenchmarkCacheHit measures a cache hit through the engine over loopback
// (a keep-alive HTTP/1.1 client, the proxy, the memory store), beside
// the same request proxied to an origin with the cache off: the cost of
// the proxy path the cache saves. allocs/op and cpu-ns/op (the CPU time
// of the process, less sensitive than ns/op to other work on a shared
// machine) count the whole process, client included. hit-h2c is the hit
// from an HTTP/2 client.
func BenchmarkCacheHit(b *testing.B) {
	for _, size := range []int{100, 100 << 10} {
		name := strconv.Itoa(size) + "B"
		if size >= 1<<10 {
			name = strconv.Itoa(size>>10) + "KiB"
		}
		resp := "HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + string(make([]byte, size))
		b.Run("hit/"+name, func(b *testing.B) { benchCacheRoute(b, resp, &CacheConfig{}) })
		b.Run("hit-h2c/"+name, func(b *testing.B) { benchCacheRouteH2C(b, resp) })
		b.Run("proxied/"+name, func(b *testing.B) { benchCacheRoute(b, resp, nil) })
	}
}

func benchCacheRoute(b *testing.B, resp string, cc *CacheConfig) {
	origin := startRawOrigin(b, resp)
	p := startProxy(b, routeWith(b, RouteConfig{Cache: cc}, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	req := []byte("GET /object HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	get := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readRawResponse(br); err != nil {
			b.Fatal(err)
		}
	}
	get() // fills the cache when it is on
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		get()
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// benchCacheRouteH2C is the hit of benchCacheRoute from an HTTP/2 client
// (prior knowledge) that speaks frames itself, one stream at a time, its
// windows wide open: the proxy's HTTP/2 side of a hit dominates, not a
// client library's.
func benchCacheRouteH2C(b *testing.B, resp string) {
	origin := startRawOrigin(b, resp)
	p := startProxy(b, routeWith(b, RouteConfig{Cache: &CacheConfig{}}, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http", H2C: true})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bw := bufio.NewWriter(c)
	fr := http2.NewFramer(bw, bufio.NewReaderSize(c, 64<<10))
	bw.WriteString(http2.ClientPreface)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	fr.WriteWindowUpdate(0, 1<<30)
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "bench"}, {":path", "/object"}, {"user-agent", "bench"}, {"accept", "*/*"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	id := uint32(1)
	get := func() {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			b.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		var got uint32
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
				continue
			case *http2.DataFrame:
				got += uint32(len(f.Data()))
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				b.Fatalf("%v", f)
			}
			if f.Header().StreamID == id && f.Header().Flags.Has(http2.FlagDataEndStream) {
				break
			}
		}
		if got > 0 {
			fr.WriteWindowUpdate(0, got) // the connection's window; the stream's never runs out
		}
		id += 2
	}
	get() // fills the cache
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		get()
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time (user and system) this process used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
