package consensus

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPut measures a committed, applied write on a single-node store
// (raft log fsync plus the applied-state file fsync).
func BenchmarkPut(b *testing.B) {
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "bench", b.TempDir(), 1
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	for !s.IsLeader() {
		if _, err := s.WaitForLeader(ctx); err != nil {
			b.Fatal(err)
		}
	}
	content := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Put(context.Background(), "cfg", content, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet measures the local stale read.
func BenchmarkGet(b *testing.B) {
	f := &fsm{maxHistory: 20}
	f.st.put(putCmd{Name: "cfg", Content: make([]byte, 4096), IfVersion: -1}, 1, 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := f.get("cfg"); !ok {
			b.Fatal("missing")
		}
	}
}
