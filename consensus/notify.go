package consensus

import "sync"

// notifier delivers committed documents to OnApply, in order, on its own
// goroutine, so that FSM.Apply never waits for the node's callback. The queue
// is unbounded by design: it holds one entry per committed write, and
// config writes are rare; a slow consumer delays delivery, never raft.
type notifier struct {
	fn func(Doc)

	mu     sync.Mutex
	queue  []Doc
	wake   chan struct{} // cap 1: a pending wake-up is enough
	closed bool
}

func newNotifier(fn func(Doc)) *notifier {
	if fn == nil {
		fn = func(Doc) {}
	}
	return &notifier{fn: fn, wake: make(chan struct{}, 1)}
}

// push enqueues d; it never blocks.
func (n *notifier) push(d Doc) {
	n.mu.Lock()
	n.queue = append(n.queue, d)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run delivers until stop is closed, then delivers what is left.
func (n *notifier) run(stop <-chan struct{}) {
	for {
		n.drain()
		select {
		case <-n.wake:
		case <-stop:
			n.drain()
			return
		}
	}
}

func (n *notifier) drain() {
	for {
		n.mu.Lock()
		q := n.queue
		n.queue = nil
		n.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, d := range q {
			n.fn(d)
		}
	}
}
