package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
)

// A single-node store: it bootstraps at once, takes writes and serves them.
// In a cluster, node passes membership's view to Reconcile and forwards a
// write that fails with *NotLeaderError to the leader it names.
func Example() {
	dir, _ := os.MkdirTemp("", "consensus-example")
	defer os.RemoveAll(dir)

	applied := make(chan consensus.Doc, 8) // cap: more than this example writes
	cfg := consensus.DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "node-1", dir, 1
	cfg.OnApply = func(d consensus.Doc) { applied <- d }
	s, err := consensus.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	leader, _ := s.WaitForLeader(ctx)
	fmt.Println("leader:", leader)

	d, err := s.Put(ctx, "cluster", []byte("routes: []"), 0) // 0: create only
	fmt.Println("put:", d.Version, err)
	_, err = s.Put(ctx, "cluster", []byte("routes: [a]"), 0)
	fmt.Println("second create is a conflict:", errors.Is(err, consensus.ErrConflict))
	fmt.Printf("OnApply saw %s v%d\n", (<-applied).Name, d.Version)
	got, _ := s.Get("cluster")
	fmt.Printf("get: v%d %s\n", got.Version, got.Content)
	// Output:
	// leader: node-1
	// put: 1 <nil>
	// second create is a conflict: true
	// OnApply saw cluster v1
	// get: v1 routes: []
}
