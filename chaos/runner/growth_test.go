package main

import (
	"slices"
	"testing"
)

// TestGrowthAllowsIdleWorkers: a node that served a burst of client
// connections keeps the proxy's 128 idle connection workers (pause, once
// the node resumes: 57→186 goroutines, fds back to 43); that is within the
// bound. It was failed before. A node that grew past them still is not.
func TestGrowthAllowsIdleWorkers(t *testing.T) {
	r := &Run{faultAt: 10, samp: &sampler{samples: map[string][]sample{
		"resumed": {{T: 5, Goroutines: 57, FDs: 33}, {T: 200, Goroutines: 186, FDs: 43}},
		"leaking": {{T: 5, Goroutines: 57, FDs: 33}, {T: 200, Goroutines: 57*1.5 + 50 + 128 + 1, FDs: 43}},
	}}}
	bad, rows := r.growth()
	if len(rows) != 2 || !slices.Equal(bad, []string{"leaking"}) {
		t.Fatalf("outside the bound: %v (rows %v), want only the node past the idle workers", bad, rows)
	}
}
