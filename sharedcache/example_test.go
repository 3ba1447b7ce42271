package sharedcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/sharedcache"
)

// Example uses a Cache on a node outside any cluster (no ring, no
// client): every key is its own, and it behaves as a local cache.Store.
// In a node, the ring comes from SetRing and the engine makes these calls.
func Example() {
	c, err := sharedcache.New(sharedcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx := context.Background()
	key := "GET http://example.com/a"

	// A miss takes the key's lock and fills it, as the engine does with
	// the origin's response.
	f, _, _ := c.Lock(ctx, key, time.Second)
	now := time.Now()
	h := http.Header{"Cache-Control": {"max-age=60"}, "Surrogate-Key": {"page"}}
	f.Start(&cache.Meta{Status: 200, Header: h, RequestTime: now, ResponseTime: now, Fresh: time.Minute}, 0)
	f.Write([]byte("hello"))
	f.Commit()

	o, _ := c.Lookup(ctx, key)
	r, _ := o.NewReader(ctx, 0)
	b, _ := io.ReadAll(r)
	fmt.Printf("%s (%d object)\n", b, c.Stats().Local.Objects)

	// A purge by surrogate key drops it.
	n, _ := c.PurgeLocal(sharedcache.Purge{Tags: []string{"page"}})
	fmt.Println("purged", n)
	// Output:
	// hello (1 object)
	// purged 1
}
