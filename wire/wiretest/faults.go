package wiretest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/wire"
)

// ErrDialDropped is returned by a faulty Dialer for a dial that LinkFaults
// DropDials refused.
var ErrDialDropped = errors.New("wiretest: dial dropped by fault injection")

// Link is one direction between two named nodes.
type Link struct{ From, To string }

// LinkFaults are the faults on one direction of a link. The zero value is
// a healthy link.
type LinkFaults struct {
	// Cut holds every byte sent From→To until the cut is lifted, as TCP
	// does across a partition (calls time out; nothing is lost or
	// reordered). A dial waits while either direction is cut.
	Cut bool
	// Delay is added to every byte sent From→To.
	Delay time.Duration
	// DropFrames is the fraction (0..1) of wire frames From→To that are
	// lost whole, so the stream stays in step and the call times out.
	// Connections that are not wire (their first byte is not
	// wire.ProtoRPC, raft for one) are never dropped from.
	DropFrames float64
	// DropDials is the fraction (0..1) of dials From→To refused with
	// ErrDialDropped.
	DropDials float64
}

// FaultsConfig configures a Faults. Zero fields take their defaults.
type FaultsConfig struct {
	// Seed makes the drop decisions repeatable (default 1).
	Seed uint64
	// Clock times delays (default clock.Real{}); a clock.Fake makes
	// delays step with the test.
	Clock clock.Clock
	// MaxQueued is how many bytes one direction of a connection may hold
	// (cut or delayed) before the connection is reset, as TCP gives up
	// (default 64 MiB).
	MaxQueued int
}

// FaultStats counts what a Faults did.
type FaultStats struct {
	DroppedFrames uint64 // wire frames lost
	DroppedDials  uint64 // dials refused
	Queued        int64  // units (frames or chunks) waiting to be delivered now
}

// Faults injects faults between named nodes. It decorates a node's Dialer
// (Dialer) and names its listeners' addresses (Listener); faults apply per
// direction of each link and may change at any time, affecting open
// connections too. It is the fault half of wiretest, usable over TCP as
// well as over a Network.
type Faults struct {
	cfg FaultsConfig

	mu      sync.Mutex
	rnd     *rand.Rand
	links   map[Link]LinkFaults
	names   map[string]string // listener address -> node name
	conns   map[*faultConn]struct{}
	changed chan struct{} // closed (and replaced) when faults change
	closed  bool
	wg      sync.WaitGroup

	droppedFrames, droppedDials atomic.Uint64
	queued                      atomic.Int64
}

// NewFaults returns a Faults with every link healthy.
func NewFaults(cfg FaultsConfig) *Faults {
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 64 << 20
	}
	return &Faults{
		cfg: cfg, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed)),
		links: make(map[Link]LinkFaults), names: make(map[string]string),
		conns: make(map[*faultConn]struct{}), changed: make(chan struct{}),
	}
}

// Set replaces the faults on the direction from→to.
func (f *Faults) Set(from, to string, lf LinkFaults) {
	f.mu.Lock()
	if lf == (LinkFaults{}) {
		delete(f.links, Link{from, to})
	} else {
		f.links[Link{from, to}] = lf
	}
	f.notifyLocked()
	f.mu.Unlock()
}

// Get returns the faults on the direction from→to.
func (f *Faults) Get(from, to string) LinkFaults {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.links[Link{from, to}]
}

// update changes the faults on from→to with fn.
func (f *Faults) update(from, to string, fn func(*LinkFaults)) {
	lf := f.Get(from, to)
	fn(&lf)
	f.Set(from, to, lf)
}

// CutOneWay cuts from→to only: from's bytes stop reaching to, while to's
// still reach from.
func (f *Faults) CutOneWay(from, to string) {
	f.update(from, to, func(lf *LinkFaults) { lf.Cut = true })
}

// Partition cuts every link, both ways, between nodes of different groups.
func (f *Faults) Partition(groups ...[]string) {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					f.CutOneWay(a, b)
					f.CutOneWay(b, a)
				}
			}
		}
	}
}

// Heal removes every fault; held bytes flow again.
func (f *Faults) Heal() {
	f.mu.Lock()
	clear(f.links)
	f.notifyLocked()
	f.mu.Unlock()
}

// Reset closes every open connection between a and b (either way), as a
// reset would.
func (f *Faults) Reset(a, b string) {
	f.mu.Lock()
	var victims []*faultConn
	for c := range f.conns {
		if (c.from == a && c.to == b) || (c.from == b && c.to == a) {
			victims = append(victims, c)
		}
	}
	f.mu.Unlock()
	for _, c := range victims {
		c.abort()
	}
}

// Stats returns what the Faults did so far.
func (f *Faults) Stats() FaultStats {
	return FaultStats{DroppedFrames: f.droppedFrames.Load(), DroppedDials: f.droppedDials.Load(), Queued: f.queued.Load()}
}

// Close closes every connection it made and waits for its goroutines.
func (f *Faults) Close() error {
	f.mu.Lock()
	f.closed = true
	conns := make([]*faultConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.notifyLocked()
	f.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
	f.wg.Wait()
	return nil
}

func (f *Faults) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// watch returns the faults on l and a channel closed at the next change.
func (f *Faults) watch(l Link) (LinkFaults, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.links[l], f.changed
}

// chance reports true with probability p, from the seeded source.
func (f *Faults) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rnd.Float64() < p
}

// Listener names l's address after node name, so that dials to it are
// faulted as links to name. Closing the result forgets the name.
func (f *Faults) Listener(name string, l net.Listener) net.Listener {
	f.mu.Lock()
	f.names[l.Addr().String()] = name
	f.mu.Unlock()
	return &namedListener{Listener: l, f: f}
}

type namedListener struct {
	net.Listener
	f *Faults
}

func (l *namedListener) Close() error {
	l.f.mu.Lock()
	delete(l.f.names, l.Addr().String())
	l.f.mu.Unlock()
	return l.Listener.Close()
}

// nameOf returns the node name of addr: the name its listener was given,
// or addr itself.
func (f *Faults) nameOf(addr string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.names[addr]; ok {
		return n
	}
	return addr
}

// Dialer decorates d, the dialer of node from, with the faults of from's
// links.
func (f *Faults) Dialer(from string, d wire.Dialer) wire.Dialer {
	return wire.DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		return f.dial(ctx, from, addr, d)
	})
}

func (f *Faults) dial(ctx context.Context, from, addr string, d wire.Dialer) (net.Conn, error) {
	to := f.nameOf(addr)
	out, in := Link{from, to}, Link{to, from}
	if lf, _ := f.watch(out); f.chance(lf.DropDials) {
		f.droppedDials.Add(1)
		return nil, fmt.Errorf("wiretest: dial %s → %s: %w", from, to, ErrDialDropped)
	}
	for { // a handshake needs both directions
		lo, changed := f.watch(out)
		li, _ := f.watch(in)
		if !lo.Cut && !li.Cut {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("wiretest: dial %s → %s across a cut link: %w", from, to, ctx.Err())
		}
	}
	conn, err := d.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	return f.wrap(conn, out, in)
}
