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
	cur    uint64        // the index of the document being delivered, or 0
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
		if len(n.queue) == 0 {
			n.cur = 0
			n.mu.Unlock()
			return
		}
		d := n.queue[0]
		n.queue = n.queue[1:]
		n.cur = max(d.Index, 1)
		n.mu.Unlock()
		n.fn(d)
	}
}

// doneThrough reports whether every document up to index pushed so far
// has been delivered.
func (n *notifier) doneThrough(index uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cur != 0 && n.cur <= index {
		return false
	}
	return len(n.queue) == 0 || n.queue[0].Index > index
}
