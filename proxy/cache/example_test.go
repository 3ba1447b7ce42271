package cache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// Example fills a key while a second request, collapsed onto the same
// fill by the lock, reads the body as it is written.
func Example() {
	store, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 64 << 20})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

	// The first miss takes the lock and gets the fill.
	fill, _, _ := store.Lock(ctx, "GET http://example.com/a", time.Second)

	// The origin answered: decide, then publish the head.
	x := cache.Exchange{Method: "GET", Request: http.Header{}, Status: 200,
		Header: http.Header{"Cache-Control": {"max-age=60"}}, Now: now}
	d := cache.Decide(x)
	fill.Start(cache.NewMeta(x, now, d), 0)

	// A second miss waits on the lock and gets the same fill.
	_, obj, _ := store.Lock(ctx, "GET http://example.com/a", time.Second)
	r, _ := obj.NewReader(ctx, 0)
	fill.Write([]byte("hello, "))
	buf := make([]byte, 32)
	n, _ := r.Read(buf)
	fmt.Printf("streamed before the end: %q\n", buf[:n])
	fill.Write([]byte("world"))
	fill.Commit()
	rest, _ := io.ReadAll(r)
	fmt.Printf("then: %q\n", rest)

	// Later requests hit the stored object while it is fresh.
	hit, _ := store.Lookup(ctx, "GET http://example.com/a")
	v := cache.Check(hit.Meta(), cache.ParseRequest(http.Header{}), now.Add(10*time.Second))
	fmt.Println("fresh:", v.Use == cache.UseFresh, "age:", cache.Seconds(v.Age), "length:", hit.Len())
	// Output:
	// streamed before the end: "hello, "
	// then: "world"
	// fresh: true age: 10 length: 12
}
