package membership_test

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pingora-go/pingora-go/membership"
)

// Example starts two nodes on loopback; the second joins the first, and both
// end up with the same ring. A node is on the ring once it says it is
// ready and gossips the address it answers cluster calls at.
func Example() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := func(rpc string) membership.Meta {
		return membership.Meta{State: membership.StateReady, Addrs: membership.Addrs{Cluster: rpc}}
	}
	a, _ := membership.New(membership.Config{
		Name: "a", BindAddr: "127.0.0.1:0", Profile: membership.ProfileFast, Logger: quiet,
		Meta: ready("127.0.0.1:7001"),
	})
	if err := a.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer a.Shutdown()
	b, _ := membership.New(membership.Config{
		Name: "b", BindAddr: "127.0.0.1:0", Profile: membership.ProfileFast, Logger: quiet,
		Join: []string{a.Addr()}, // host:port of any running node
		Meta: ready("127.0.0.1:7002"),
	})
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer b.Shutdown()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for a.Ring().Len() < 2 || a.Ring().Digest() != b.Ring().Digest() {
		select {
		case <-tick.C: // check again
		case <-deadline:
			fmt.Println("no convergence")
			return
		}
	}
	owner, addr, _ := a.Ring().OwnerAddr("user:42")
	fmt.Println(a.Ring().Members(), a.Ring().Digest() == b.Ring().Digest(), owner, addr)
	// Output: [a b] true a 127.0.0.1:7001
}

// ExampleRing places keys on a fixed ring, as sharedcache and ratelimit do
// with Cluster.Ring().
func ExampleRing() {
	r := membership.NewRing(1, "node-b", map[string]int{"node-a": 1, "node-b": 1, "node-c": 2})
	owner, self := r.Owner("user:42")
	fmt.Println(owner, self)
	fmt.Println(r.Owners("user:42", 2))
	fmt.Println(r.Digest())
	// Output:
	// node-c false
	// [node-c node-b]
	// 3ab37f788a421da1
}
