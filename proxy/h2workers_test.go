package proxy

import (
	"sync"
	"testing"
	"time"
)

func (p *workerPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// TestWorkerPool: jobs run on reused workers, a burst's extra workers end
// once idle for two sweeps, and a job's panic reaches the caller.
func TestWorkerPool(t *testing.T) {
	p := &workerPool{every: 20 * time.Millisecond}
	defer p.close()

	// A burst of 8 concurrent jobs needs 8 workers.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(func() { <-release })
		}()
	}
	waitFor(t, 5*time.Second, "8 busy workers", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.closed && p.reaping
	})
	close(release)
	wg.Wait()
	waitFor(t, 5*time.Second, "8 idle workers", func() bool { return p.idleCount() == 8 })

	// Sequential jobs reuse the most recently idle worker.
	for range 100 {
		ran := false
		p.run(func() { ran = true })
		if !ran {
			t.Fatal("job did not run")
		}
	}

	// Idle workers end after two sweeps.
	waitFor(t, 5*time.Second, "idle workers reaped", func() bool { return p.idleCount() == 0 })

	// A panic in the job is raised again in the caller.
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Fatalf("recovered %v, want boom", v)
			}
		}()
		p.run(func() { panic("boom") })
	}()
	ran := false
	p.run(func() { ran = true })
	if !ran {
		t.Fatal("pool unusable after a panic")
	}
}
