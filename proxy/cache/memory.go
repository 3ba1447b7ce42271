package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	// Policy chooses what to evict (default: NewLRU(MaxBytes)).
	Policy Policy
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
// by bytes, with a per-key lock for fills. A Lookup costs one map read
// under a mutex and the policy's Touch.
type Memory struct {
	cfg MemoryConfig

	mu     sync.Mutex
	objs   map[string]*memObject
	fills  map[string]*memFill
	policy Policy
	bytes  int64

	evictions atomic.Uint64
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
	if cfg.Policy == nil {
		cfg.Policy = NewLRU(cfg.MaxBytes)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &Memory{cfg: cfg, objs: map[string]*memObject{}, fills: map[string]*memFill{}, policy: cfg.Policy}, nil
}

// Lookup returns the stored object, or the one a fill is writing.
func (m *Memory) Lookup(_ context.Context, key string) (Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o := m.objs[key]; o != nil {
		m.policy.Touch(key)
		return o, nil
	}
	if f := m.fills[key]; f != nil && f.obj != nil {
		return f.obj, nil
	}
	return nil, nil
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
// published its head or ended.
func (m *Memory) afterFill(f *memFill) (Fill, Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case f.outcome == fillAborted:
	case f.obj != nil:
		return nil, f.obj, nil
	case f.outcome == fillRefreshed && m.objs[f.key] != nil:
		return nil, m.objs[f.key], nil
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
	o := m.objs[key]
	if o == nil {
		return false, nil
	}
	m.dropLocked(key, o)
	m.policy.Remove(key)
	return true, nil
}

// Stats returns the store's figures.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Objects: len(m.objs), Bytes: m.bytes, MaxBytes: m.cfg.MaxBytes, Evictions: m.evictions.Load(), Fills: len(m.fills)}
}

func (m *Memory) dropLocked(key string, o *memObject) {
	delete(m.objs, key)
	m.bytes -= o.weight
}

// storeLocked puts a complete object under key and evicts what the policy
// says.
func (m *Memory) storeLocked(key string, o *memObject) {
	o.weight = weigh(key, o)
	if old := m.objs[key]; old != nil {
		m.dropLocked(key, old)
	}
	m.objs[key] = o
	m.bytes += o.weight
	for _, k := range m.policy.Admit(key, o.weight) {
		if victim := m.objs[k]; victim != nil {
			m.dropLocked(k, victim)
			m.evictions.Add(1)
		}
	}
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
