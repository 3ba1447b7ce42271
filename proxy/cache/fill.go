package cache

import (
	"errors"
	"strconv"
)

// fillOutcome is how a memFill ended.
type fillOutcome int

const (
	fillOpen fillOutcome = iota
	fillCommitted
	fillRefreshed
	fillAborted
)

// memFill is a Memory store's Fill: the key's lock while it runs. Its
// fields are guarded by the store's mutex, except limit and written, which
// only the filling goroutine touches.
type memFill struct {
	m       *Memory
	key     string
	signal  chan struct{} // closed at Start or at the end: wakes Lock waiters
	obj     *memObject    // set by Start
	doomed  bool          // Remove ran during the fill: never store it
	outcome fillOutcome
	cause   error // what Abort ended it with: a *NotStorable reaches waiters

	limit   int64
	written int64
}

var _ Fill = (*memFill)(nil)

// errFillState is returned for calls out of order.
var errFillState = errors.New("cache: fill used out of order")

// errDeclaredTooLarge is Start's refusal of a head whose Content-Length
// is over the limit.
var errDeclaredTooLarge = &NotStorable{Reason: "too_large"}

// Start publishes the head; Lock waiters and Lookups get the object. A
// head whose Content-Length is over the limit is refused (see Fill).
func (f *memFill) Start(meta *Meta, limit int64) error {
	m := f.m
	if limit <= 0 || limit > m.cfg.MaxObjectBytes {
		limit = m.cfg.MaxObjectBytes
	}
	f.limit = limit
	hint := int64(0)
	if cl, err := strconv.ParseInt(meta.Header.Get("Content-Length"), 10, 64); err == nil && cl >= 0 {
		if cl > limit {
			return errDeclaredTooLarge // nothing published: the caller aborts
		}
		hint = cl
	}
	o := newMemObject(meta, hint)
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.outcome != fillOpen || f.obj != nil {
		return errFillState
	}
	f.obj = o
	close(f.signal)
	return nil
}

// Write appends body bytes; past the limit the object streams through:
// the lock is released (the next request fills again) and nothing is
// stored.
func (f *memFill) Write(p []byte) (int, error) {
	o := f.obj
	if o == nil || f.outcome != fillOpen {
		return 0, errFillState
	}
	f.written += int64(len(p))
	if f.written > f.limit && !o.relay {
		f.release()
		o.startRelay()
	}
	o.write(p)
	return len(p), nil
}

// Commit stores the complete object, unless it went over the limit or its
// key was removed meanwhile.
func (f *memFill) Commit() error {
	o := f.obj
	if o == nil {
		return errFillState
	}
	o.end(nil)
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.outcome != fillOpen {
		return errFillState
	}
	relay, doomed := o.relay, f.doomed
	f.endLocked(fillCommitted)
	switch {
	case relay:
		return ErrTooLarge
	case doomed:
		return ErrNotStored
	}
	if !m.storeLocked(f.key, o) {
		return ErrNotAdmitted
	}
	return nil
}

// Refresh gives the stored object a new head, keeping its body.
func (f *memFill) Refresh(meta *Meta) error {
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.outcome != fillOpen || f.obj != nil {
		return errFillState
	}
	old := m.stored(f.key)
	if old == nil || f.doomed || meta.Variants != nil {
		f.endLocked(fillAborted)
		return ErrNotStored
	}
	f.endLocked(fillRefreshed)
	if !m.storeLocked(f.key, old.withMeta(meta)) {
		return ErrNotAdmitted
	}
	return nil
}

// Abort ends the fill without storing; readers get err.
func (f *memFill) Abort(err error) {
	if err == nil {
		err = ErrIncomplete
	}
	m := f.m
	m.mu.Lock()
	open := f.outcome == fillOpen
	if open {
		f.cause = err
		f.endLocked(fillAborted)
	}
	m.mu.Unlock()
	if open && f.obj != nil {
		f.obj.end(err)
	}
}

// release lets go of the key's lock with the fill still running.
func (f *memFill) release() {
	m := f.m
	m.mu.Lock()
	if m.fills[f.key] == f {
		delete(m.fills, f.key)
	}
	m.mu.Unlock()
}

// endLocked records the outcome, releases the lock and wakes its waiters.
func (f *memFill) endLocked(out fillOutcome) {
	m := f.m
	if m.fills[f.key] == f {
		delete(m.fills, f.key)
	}
	f.outcome = out
	if f.obj == nil {
		close(f.signal)
	}
}
