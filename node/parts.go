package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// part is one piece of a running node: the proxy's listeners, the admin
// server, the cluster RPC, gossip, raft, the shared cache, the rate
// limiter (issue 13). The node holds its parts in one list (partList),
// starts them in that order and stops them in the reverse one, so a part
// may use every part listed before it for as long as it runs, and adding
// a part means adding one entry to the list.
//
// The interface is unexported: the parts are the node's own wiring of
// packages a library user can already assemble (proxy, membership,
// consensus, sharedcache, ratelimit, wire); exporting it would freeze
// that wiring into the API without giving the user a part to plug in.
type part interface {
	// name names the part in logs and errors.
	name() string
	// start starts the part. On error it leaves nothing of its own
	// running: the node then stops only the parts started before it.
	start(ctx context.Context) error
	// stop stops the part and returns once every goroutine the part
	// started has ended. It may be called more than once (an upgrade
	// stops some parts before Shutdown stops them all), and must finish
	// even when ctx is done: each stop bounds its own waits.
	stop(ctx context.Context) error
}

// drainer is a part with work to finish while every part still runs:
// Shutdown drains the parts (in reverse order) before it stops any, so
// the proxy finishes its requests while gossip, raft and the cluster RPC
// still answer.
type drainer interface {
	drain(ctx context.Context) error
}

// group runs a part's goroutines and waits for them (raft's goFunc,
// membership's too): a goroutine always has an owner and a join.
type group struct{ wg sync.WaitGroup }

// goFunc runs f in a goroutine of the group.
func (g *group) goFunc(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// wait returns once every goroutine of the group has ended.
func (g *group) wait() { g.wg.Wait() }

// step is a part made of the node's own start, drain and stop functions;
// a nil function does nothing. Its stop returns once the goroutines run
// through its group have ended.
type step struct {
	id string
	// identity marks a part that holds the node's cluster identity (its
	// gossip name, its raft data directory), or follows the membership
	// that does (the cache's ring loop): an upgrade stops it before
	// the successor takes the identity, and starts it again if the
	// hand-off fails (lifecycle.release, lifecycle.reopen).
	identity bool
	onStart  func(ctx context.Context, g *group) error
	onDrain  func(ctx context.Context) error
	onStop   func(ctx context.Context) error
	g        group
}

var (
	_ part    = (*step)(nil)
	_ drainer = (*step)(nil)
)

func (s *step) name() string { return s.id }

func (s *step) start(ctx context.Context) error {
	if s.onStart == nil {
		return nil
	}
	return s.onStart(ctx, &s.g)
}

func (s *step) drain(ctx context.Context) error {
	if s.onDrain == nil {
		return nil
	}
	return s.onDrain(ctx)
}

func (s *step) stop(ctx context.Context) error {
	var err error
	if s.onStop != nil {
		err = s.onStop(ctx)
	}
	s.g.wait()
	return err
}

func (s *step) holdsIdentity() bool { return s.identity }

// identityHolder is a part an upgrade hands to the successor (see
// step.identity).
type identityHolder interface{ holdsIdentity() bool }

// lifecycle starts and stops an ordered list of parts.
type lifecycle struct {
	parts []part
	log   *slog.Logger
	// beforeStop runs once before the first part drains or stops, on
	// Shutdown or on a failed start (the node turns its readiness off).
	beforeStop func()

	started atomic.Int64 // parts[:started] have started
	once    sync.Once    // beforeStop
}

// start starts the parts in order. When one fails, the ones started
// before it are stopped in reverse order, and start returns the part's
// error (with the errors of those stops, if any).
func (l *lifecycle) start(ctx context.Context) error {
	for i, p := range l.parts {
		if err := p.start(ctx); err != nil {
			err = errors.Join(err, l.stop(ctx))
			l.started.Store(0) // stopped: a later shutdown has nothing to do
			return err
		}
		l.started.Store(int64(i + 1))
	}
	return nil
}

// shutdown drains the started parts in reverse order, then stops them in
// reverse order. It returns every drain and stop error, each named by its
// part.
func (l *lifecycle) shutdown(ctx context.Context) error {
	l.stopping()
	running := l.running()
	var errs []error
	for i := len(running) - 1; i >= 0; i-- {
		if d, ok := running[i].(drainer); ok {
			if err := d.drain(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", running[i].name(), err))
			}
		}
	}
	return errors.Join(append(errs, l.stop(ctx))...)
}

// stop stops the started parts in reverse order, without draining, and
// returns their errors, each named by its part. Every stop runs, whatever
// the earlier ones return; ctx's cancellation does not cut them short.
func (l *lifecycle) stop(ctx context.Context) error {
	l.stopping()
	ctx = context.WithoutCancel(ctx)
	running := l.running()
	var errs []error
	for i := len(running) - 1; i >= 0; i-- {
		if err := running[i].stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", running[i].name(), err))
		}
	}
	return errors.Join(errs...)
}

// release stops, in reverse order, the started parts that hold the
// node's cluster identity, for a successor process to take it.
func (l *lifecycle) release(ctx context.Context) error {
	running := l.running()
	var errs []error
	for i := len(running) - 1; i >= 0; i-- {
		if p := running[i]; holdsIdentity(p) {
			if err := p.stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// reopen starts the parts release stopped again, in order, after a
// hand-off that failed. A part that fails is logged and the next ones
// still start (each copes with one before it that did not: gossip
// without a membership, raft without a store), so the node keeps as
// much of its cluster role as it can while it keeps serving.
func (l *lifecycle) reopen(ctx context.Context) {
	for _, p := range l.running() {
		if !holdsIdentity(p) {
			continue
		}
		if err := p.start(ctx); err != nil {
			l.log.Error("restarting after a failed upgrade", "part", p.name(), "err", err)
		}
	}
}

func (l *lifecycle) running() []part { return l.parts[:l.started.Load()] }

func (l *lifecycle) stopping() {
	if l.beforeStop != nil {
		l.once.Do(l.beforeStop)
	}
}

func holdsIdentity(p part) bool {
	h, ok := p.(identityHolder)
	return ok && h.holdsIdentity()
}
