package proxy

import (
	"sync"
	"time"
)

// workerPool runs HTTP/2 streams on long-lived goroutines.
//
// The HTTP/2 server starts a goroutine per stream with the runtime's
// starting stack (8 KiB); a proxied request outgrows it twice, and every
// growth copies the stack and adjusts each frame on it: 9.5% of an h2c
// proxy's CPU under load, more than the request's own work in this
// package. A worker keeps its grown stack from one stream to the next; the
// stream's goroutine hands its request over and waits, one goroutine switch
// each way.
//
// Idle workers form a stack (LIFO), so a steady load keeps reusing the same
// few warm workers and the ones a burst created stay idle; the reaper ends
// those after they sat idle for two sweeps.
type workerPool struct {
	mu      sync.Mutex
	idle    []*worker // the most recently idle last
	sweep   uint64    // reaper generation
	reaping bool      // the reaper runs
	stop    chan struct{}
	closed  bool
	every   time.Duration // the reaper's sweep interval; 0: workerIdleSweep
}

type worker struct {
	jobs chan *workerJob // capacity 1: a hand-over never blocks
	gen  uint64          // the sweep in which it became idle
}

type workerJob struct {
	fn    func()
	done  chan struct{}
	panic any // a panic in fn, raised again on the stream's goroutine
}

var jobPool = sync.Pool{New: func() any { return &workerJob{done: make(chan struct{}, 1)} }}

// workerIdleSweep is how often the reaper looks for idle workers; a worker
// idle through two sweeps ends.
const workerIdleSweep = 10 * time.Second

// run runs fn on a worker and waits for it, re-raising its panic here.
func (p *workerPool) run(fn func()) {
	j := jobPool.Get().(*workerJob)
	j.fn = fn
	p.mu.Lock()
	var w *worker
	if n := len(p.idle); n > 0 {
		w = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	} else if !p.reaping && !p.closed {
		p.reaping = true
		p.stop = make(chan struct{})
		go p.reap(p.stop)
	}
	p.mu.Unlock()
	if w != nil {
		w.jobs <- j
	} else {
		w = &worker{jobs: make(chan *workerJob, 1)}
		w.jobs <- j
		go p.work(w)
	}
	<-j.done
	pv := j.panic
	j.fn, j.panic = nil, nil
	jobPool.Put(j)
	if pv != nil {
		panic(pv)
	}
}

func (p *workerPool) work(w *worker) {
	for j := range w.jobs {
		p.runJob(j)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		w.gen = p.sweep
		p.idle = append(p.idle, w)
		p.mu.Unlock()
	}
}

func (p *workerPool) runJob(j *workerJob) {
	defer func() {
		j.panic = recover()
		j.done <- struct{}{}
	}()
	j.fn()
}

// reap ends workers idle for two sweeps. Idle workers are oldest first, so
// it stops at the first recent one.
func (p *workerPool) reap(stop chan struct{}) {
	every := p.every
	if every <= 0 {
		every = workerIdleSweep
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		p.sweep++
		n := 0
		for n < len(p.idle) && p.sweep-p.idle[n].gen >= 2 {
			close(p.idle[n].jobs)
			n++
		}
		if n > 0 {
			rest := copy(p.idle, p.idle[n:])
			clear(p.idle[rest:])
			p.idle = p.idle[:rest]
		}
		p.mu.Unlock()
	}
}

// close ends the idle workers and the reaper; busy workers end after their
// job.
func (p *workerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, w := range p.idle {
		close(w.jobs)
	}
	p.idle = nil
	if p.reaping {
		close(p.stop)
	}
}
