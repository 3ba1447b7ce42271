package proxy

import (
	"bufio"
	"net"
	"strconv"
	"testing"
)

// BenchmarkCacheHit measures a cache hit through the engine over loopback
// (a keep-alive HTTP/1.1 client, the proxy, the memory store), beside
// the same request proxied to an origin with the cache off: the cost of
// the proxy path the cache saves. allocs/op counts the whole process.
func BenchmarkCacheHit(b *testing.B) {
	for _, size := range []int{100, 100 << 10} {
		name := strconv.Itoa(size) + "B"
		if size >= 1<<10 {
			name = strconv.Itoa(size>>10) + "KiB"
		}
		resp := "HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + string(make([]byte, size))
		b.Run("hit/"+name, func(b *testing.B) { benchCacheRoute(b, resp, &CacheConfig{}) })
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
	for b.Loop() {
		get()
	}
}
