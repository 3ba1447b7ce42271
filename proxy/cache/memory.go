package cache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

// DefaultMaxBytes is a Memory store's default budget.
const DefaultMaxBytes = 256 << 20

// objectOverhead approximates the bytes an object costs beyond its body,
// head and key: the structs and map entries around them.
const objectOverhead = 256

// MemoryConfig configures a Memory store. Zero fields take their default.
type MemoryConfig struct {
	// MaxBytes caps what the stored objects weigh: bodies, heads and keys
	// (default 256 MiB). Fills under way are not counted until stored;
	// each is bounded by MaxObjectBytes.
	MaxBytes int64
	// MaxObjectBytes caps one object's body; larger ones stream through
	// uncached (default MaxBytes/8).
	MaxObjectBytes int64
	// Index holds the complete objects and chooses what to evict; give
	// it the same budget as MaxBytes (default: NewLRU(MaxBytes)).
	Index Index
	// Clock times lock waits (default: real time).
	Clock clock.Clock
}

// Validate reports the first invalid field, by name.
func (c MemoryConfig) Validate() error {
	switch {
	case c.MaxBytes < 0:
		return fmt.Errorf("cache: MaxBytes (%d) cannot be negative", c.MaxBytes)
	case c.MaxObjectBytes < 0:
		return fmt.Errorf("cache: MaxObjectBytes (%d) cannot be negative", c.MaxObjectBytes)
	case c.MaxBytes > 0 && c.MaxObjectBytes > c.MaxBytes:
		return fmt.Errorf("cache: MaxObjectBytes (%d) cannot be larger than MaxBytes (%d)", c.MaxObjectBytes, c.MaxBytes)
	}
	return nil
}

// Memory is a Store that holds objects in this process's memory, bounded
// by bytes (its Index), with a per-key lock for fills. A Lookup costs a
// map read under the fill mutex and the Index's Get.
type Memory struct {
	cfg   MemoryConfig
	index Index

	// mu guards fills, and orders storing into index against Remove.
	mu    sync.Mutex
	fills map[string]*memFill
}

var (
	_ Store         = (*Memory)(nil)
	_ StatsReporter = (*Memory)(nil)
)

// NewMemory returns an empty Memory store.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = cfg.MaxBytes / 8
	}
	if cfg.Index == nil {
		cfg.Index = NewLRU(cfg.MaxBytes)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &Memory{cfg: cfg, index: cfg.Index, fills: map[string]*memFill{}}, nil
}

// Lookup returns the object a fill is writing, else the stored one: the
// fill is checked first, so an object it stores in between is found.
func (m *Memory) Lookup(_ context.Context, key string) (Object, error) {
	m.mu.Lock()
	if f := m.fills[key]; f != nil && f.obj != nil {
		m.mu.Unlock()
		return f.obj, nil
	}
	m.mu.Unlock()
	if o := m.stored(key); o != nil {
		return o, nil
	}
	return nil, nil // not a nil *memObject in an interface
}

// stored returns the complete object under key, or nil.
func (m *Memory) stored(key string) *memObject {
	v, ok := m.index.Get(key)
	if !ok {
		return nil
	}
	o, _ := v.(*memObject)
	return o
}

// Lock gives the caller the fill of key, or waits for the one under way.
func (m *Memory) Lock(ctx context.Context, key string, wait time.Duration) (Fill, Object, error) {
	m.mu.Lock()
	f := m.fills[key]
	if f == nil {
		f = &memFill{m: m, key: key, signal: make(chan struct{})}
		m.fills[key] = f
		m.mu.Unlock()
		return f, nil, nil
	}
	if f.obj != nil {
		m.mu.Unlock()
		return nil, f.obj, nil
	}
	sig := f.signal
	m.mu.Unlock()
	if wait <= 0 {
		return nil, nil, ErrLockTimeout
	}
	t := m.cfg.Clock.NewTimer(wait)
	defer t.Stop()
	select {
	case <-sig:
	case <-t.C():
		return nil, nil, ErrLockTimeout
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	return m.afterFill(f)
}

// afterFill is what a Lock waiter gets once the fill it waited for
// published its head or ended (ErrFillFailed wraps the fill's
// *NotStorable, when it was aborted with one).
func (m *Memory) afterFill(f *memFill) (Fill, Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case f.outcome == fillAborted:
		if NotStorableReason(f.cause) != "" {
			return nil, nil, fmt.Errorf("%w: %w", ErrFillFailed, f.cause)
		}
	case f.obj != nil:
		return nil, f.obj, nil
	case f.outcome == fillRefreshed:
		if o := m.stored(f.key); o != nil {
			return nil, o, nil
		}
	}
	return nil, nil, ErrFillFailed
}

// Remove drops key and dooms a fill of it under way.
func (m *Memory) Remove(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.fills[key]; f != nil {
		f.doomed = true
	}
	return m.index.Remove(key), nil
}

// DoomFills keeps every fill under way that match selects from storing,
// as Remove does for one key, and returns how many it doomed. match gets
// the fill's key and its head, nil before the head is published. A purge
// calls it before it drops stored objects from the Index, so a fill that
// began before the purge cannot store what the purge dropped.
func (m *Memory) DoomFills(match func(key string, meta *Meta) bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for key, f := range m.fills {
		var meta *Meta
		if f.obj != nil {
			meta = f.obj.meta
		}
		if !f.doomed && match(key, meta) {
			f.doomed = true
			n++
		}
	}
	return n
}

// Stats returns the store's figures: objects, bytes and evictions as far
// as its Index reports them.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	st := Stats{MaxBytes: m.cfg.MaxBytes, Fills: len(m.fills)}
	m.mu.Unlock()
	if sz, ok := m.index.(indexSize); ok {
		st.Objects, st.Bytes = sz.Len(), sz.Weight()
	}
	if ev, ok := m.index.(indexEvictions); ok {
		st.Evictions = ev.Evictions()
	}
	return st
}

// storeLocked puts a complete object under key; an Index that refuses it
// must not keep an older object there either. It reports whether o was
// admitted.
func (m *Memory) storeLocked(key string, o *memObject) bool {
	o.weight = weigh(key, o)
	if m.index.Put(key, o, o.weight) {
		return true
	}
	m.index.Remove(key)
	return false
}

// weigh is what an object costs: its body, head and key.
func weigh(key string, o *memObject) int64 {
	w := o.size + int64(len(key)) + objectOverhead
	for k, vs := range o.meta.Header {
		w += int64(len(k))
		for _, v := range vs {
			w += int64(len(v)) + 16
		}
	}
	if v := o.meta.Variants; v != nil {
		w += int64(len(v.ID))
		for _, f := range v.Fields {
			w += int64(len(f))
		}
	}
	return w
}
