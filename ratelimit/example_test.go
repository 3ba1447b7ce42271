package ratelimit_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/pingora-go/pingora-go/ratelimit"
)

// ExampleLimiter limits each API key to 3 requests a second on this node.
// With Scope Global and a Config that names the ring, the peers and a wire
// client, the same rule holds across the cluster.
func ExampleLimiter() {
	l, _ := ratelimit.New(ratelimit.Config{})
	l.SetRules([]ratelimit.Rule{{Name: "api", Key: "header:x-api-key", Limit: 3, Period: time.Second}})
	r := &ratelimit.Request{Header: http.Header{"X-Api-Key": {"k1"}}}
	for i := 0; i < 4; i++ {
		d := l.Decide(r, 0, 0)
		fmt.Printf("allow=%v fields=%q\n", d.Allow, d.State)
	}
	// Output:
	// allow=true fields=""
	// allow=true fields=""
	// allow=true fields=""
	// allow=false fields="\"api\";r=0;t=1"
}
