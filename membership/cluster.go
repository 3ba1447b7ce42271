package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// ErrNotStarted is returned by methods that need the gossip layer before
// Start succeeded or after Shutdown.
var ErrNotStarted = errors.New("membership: not started")

// Cluster is this node's view of the cluster. Make one with New, then Start.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	noise *logthrottle.Throttle // memberlist's lines about what senders sent

	ml    *memberlist.Memberlist
	addr  string // advertised gossip address, set by Start
	bound string // the gossip port's bound "ip:port" (the IP may be unspecified), set by Start

	metaMu    sync.Mutex // guards meta; serialises UpdateMeta
	meta      Meta
	metaBytes atomic.Pointer[[]byte]       // the encoding of meta
	announced atomic.Pointer[announcement] // read by memberlist's NodeMeta
	metaKick  chan struct{}
	syncKick  chan struct{} // announce: the sync loop checks again (meta_sync.go)
	pushMu    sync.Mutex    // serialises metadata broadcasts with Leave
	pushWait  time.Duration // how long a push waits for its broadcast to go out (pushConfirmWait)
	left      bool          // set by Leave under pushMu
	leaving   atomic.Bool   // set by Leave: the metadata sync stops

	inbox     chan []byte     // sync messages from peers (meta_sync.go)
	pushPulls chan syncTarget // lagging peers for pushPullLoop
	pending   atomic.Pointer[[]string]

	join       joinState
	lookupHost func(ctx context.Context, host string) ([]string, error)
	joining    atomic.Bool   // joinStep's ml.Join is running
	joinKick   chan struct{} // another member is alive (kickJoin)
	selfAddr   atomic.Pointer[string]
	clash      atomic.Pointer[nameClash]
	addrClash  atomic.Pointer[nameClash]
	failOnce   sync.Once
	failed     atomic.Pointer[error]
	errc       chan error

	queue *eventQueue
	fl    *forceLeaves
	guard *guard

	mu      sync.RWMutex // guards members
	members map[string]*Member
	ring    atomic.Pointer[Ring]

	subMu sync.Mutex
	subs  map[chan Event]struct{}

	// tweak, set by tests before Start, adjusts the memberlist config.
	tweak func(*memberlist.Config)
	// sentSync, set by tests, sees every sync message sent.
	sentSync func(name string, m syncMsg)

	stop    chan struct{}
	wg      sync.WaitGroup
	stateMu sync.Mutex
	// gossipEvery is memberlist's gossip interval, set by Start: a leave
	// whose peers are all leaving too waits a couple of rounds (leaveWait).
	gossipEvery time.Duration
	// probeEvery is memberlist's probe interval, set by Start: the join
	// retry while peers are still to declare a node dead (awaitingDead).
	probeEvery time.Duration
	// awaitingDead: the last join attempt failed only because peers still
	// list a node at this node's address, or with its name elsewhere,
	// that does not answer (checkAddrConflict, checkConflict).
	awaitingDead atomic.Bool
	started      bool
	shutdown     bool

	subDrops, metaErrs, pushes, joinFails atomic.Uint64
	queries, resends, msgErrs, inboxDrops atomic.Uint64
}

// New validates cfg and returns a Cluster. It starts nothing.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	enc, err := encodeMeta(cfg.Meta)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.Name),
		noise:    logthrottle.New(cfg.Clock, 0, 0),
		meta:     cfg.Meta,
		metaKick: make(chan struct{}, 1), // one pending push is enough: pushes send the latest meta
		pushWait: pushConfirmWait,
		syncKick: make(chan struct{}, 1),
		// A burst of acknowledgements from a large cluster; one dropped is
		// recovered by the next query (counted in Stats.SyncDrops).
		inbox: make(chan []byte, 256),
		// Lagging peers waiting for a push/pull; a full queue defers the
		// rest to the next check.
		pushPulls:  make(chan syncTarget, 16),
		queue:      newEventQueue(),
		fl:         newForceLeaves(),
		lookupHost: net.DefaultResolver.LookupHost,
		errc:       make(chan error, 1), // the one failure, sent once
		joinKick:   make(chan struct{}, 1),
		members:    make(map[string]*Member),
		subs:       make(map[chan Event]struct{}),
		stop:       make(chan struct{}),
	}
	c.metaBytes.Store(&enc)
	c.announce()
	c.join.st.Seeds = slices.Clone(cfg.Join)
	c.guard = newGuard(&c.metaBytes, cfg.Name, &c.selfAddr)
	c.guard.liveAt = c.liveAt
	c.ring.Store(NewRing(0, cfg.Name, nil))
	return c, nil
}

// Start binds the gossip port, starts memberlist and the background loops,
// and begins joining the seeds (in the background: Start does not wait for
// a seed to answer).
func (c *Cluster) Start() error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.started || c.shutdown {
		return fmt.Errorf("membership: Start called twice or after Shutdown")
	}
	mc, err := c.cfg.memberlistConfig()
	if err != nil {
		return err
	}
	if err := c.setTransport(mc); err != nil {
		return err
	}
	if c.tweak != nil {
		c.tweak(mc)
	}
	d := &delegate{meta: &c.announced, queue: c.queue, inbox: c.inbox, drops: &c.inboxDrops, fl: c.fl}
	mc.Delegate, mc.Events = d, d
	mc.Merge = merges{c.guard, &mergeGuard{name: c.cfg.Name, self: &c.selfAddr, clash: &c.clash, addrClash: &c.addrClash,
		ours: &c.joining, log: c.log}}
	mc.Alive = c.guard
	mc.Logger = newLogBridge(c.log, c.noise)
	c.announce() // what Create gossips
	ml, err := memberlist.Create(mc)
	if err != nil {
		mc.Transport.Shutdown()
		return fmt.Errorf("membership: start: %w", err)
	}
	c.ml = ml
	c.gossipEvery = mc.GossipInterval
	c.probeEvery = mc.ProbeInterval
	c.addr = ml.LocalNode().Address()
	c.selfAddr.Store(&c.addr)
	c.bound = net.JoinHostPort(mc.BindAddr, strconv.Itoa(mc.BindPort))
	c.started = true
	c.goFunc(c.eventLoop)
	c.goFunc(c.pushLoop)
	c.goFunc(c.syncLoop)
	c.goFunc(c.pushPullLoop)
	c.goFunc(c.joinLoop)
	c.goFunc(c.forceLeaveLoop)
	c.log.Info("membership: started", "addr", c.addr, "profile", c.cfg.Profile, "seeds", c.cfg.Join)
	return nil
}

// setTransport binds the real network transport (retrying a racy port 0
// bind as memberlist does), puts the stream gate in front (streamgate.go)
// and applies WrapTransport.
func (c *Cluster) setTransport(mc *memberlist.Config) error {
	var nt *memberlist.NetTransport
	var err error
	for range pick(mc.BindPort == 0, 10, 1) {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: newLogBridge(c.log, c.noise),
		})
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("membership: bind %s: %w", c.cfg.BindAddr, err)
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
	}
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = mc.BindPort // no advertise port, or port 0: the bound one
	}
	var t memberlist.NodeAwareTransport = newStreamGate(nt, mc.TCPTimeout, c.log, c.noise)
	if len(c.cfg.SecretKey) == 0 { // with a key, memberlist drops what does not decrypt first
		t = newPacketGate(t, c.log, c.noise)
	}
	if c.cfg.WrapTransport != nil {
		t = c.cfg.WrapTransport(t)
	}
	mc.Transport = t
	return nil
}

func (c *Cluster) goFunc(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// Name returns this node's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// ProbeInterval returns memberlist's probe interval (0 before Start): a
// node whose gossip stops is declared dead by the others no sooner than
// a probe interval and the suspicion timeout after it.
func (c *Cluster) ProbeInterval() time.Duration {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.probeEvery
}

// Addr returns the advertised gossip "ip:port" (with the real port when
// BindAddr had port 0), or "" before Start.
func (c *Cluster) Addr() string {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.addr
}

// Ring returns the current ring. It never returns nil.
func (c *Cluster) Ring() *Ring { return c.ring.Load() }

// Meta returns this node's current metadata.
func (c *Cluster) Meta() Meta {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	m := c.meta
	m.Addrs.Proxy = slices.Clone(m.Addrs.Proxy)
	return m
}

// Members returns every known member, including dead and left ones until
// ReapAfter has passed since they went, sorted by name.
func (c *Cluster) Members() []Member {
	c.mu.RLock()
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		cp := *m
		cp.Meta.Addrs.Proxy = slices.Clone(cp.Meta.Addrs.Proxy)
		cp.metaRaw = nil
		out = append(out, cp)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// liveAt returns the name of a live (or suspect) member other than except
// at gossip address addr, or "". It runs in memberlist's alive delegate,
// under memberlist's node lock: c.mu is never held while calling
// memberlist.
func (c *Cluster) liveAt(addr, except string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for name, m := range c.members {
		if name != except && m.Addr == addr && (m.State == Alive || m.State == Suspect) {
			return name
		}
	}
	return ""
}

// Status returns the members and the ring for the admin API.
func (c *Cluster) Status() Status {
	r := c.Ring()
	return Status{
		Self: c.cfg.Name, Addr: c.Addr(), Members: c.Members(),
		Ring: RingStatus{Version: r.Version(), Digest: r.Digest(), Members: r.Members(), Shares: r.Shares()},
		Join: c.join.get(), MetaPending: c.pendingPeers(),
	}
}

// JoinStatus returns the join loop's state alone (Status has it too),
// for callers that ask often, such as a readiness check.
func (c *Cluster) JoinStatus() JoinStatus { return c.join.get() }

// Stats returns the drop and error counters.
func (c *Cluster) Stats() Stats {
	return Stats{
		SubscriberDrops:  c.subDrops.Load(),
		MetaDecodeErrors: c.metaErrs.Load(), MetaPushes: c.pushes.Load(), JoinFailures: c.joinFails.Load(),
		MetaQueries: c.queries.Load(), MetaResends: c.resends.Load(),
		SyncErrors: c.msgErrs.Load(), SyncDrops: c.inboxDrops.Load(),
		ForceLeaveDrops: c.fl.drops.Load(),
	}
}

// Subscribe returns a channel of events with room for buffer events (at
// least 1) and a cancel function that closes it. Events are never allowed
// to block gossip: when the channel is full the event is dropped and
// counted in Stats.SubscriberDrops, so treat events as hints and read
// Members or Ring for the truth. Shutdown closes every channel.
func (c *Cluster) Subscribe(buffer int) (<-chan Event, func()) {
	ch := make(chan Event, max(buffer, 1)) // sized by the subscriber
	c.subMu.Lock()
	if c.subs == nil {
		close(ch)
	} else {
		c.subs[ch] = struct{}{}
	}
	c.subMu.Unlock()
	return ch, func() {
		c.subMu.Lock()
		defer c.subMu.Unlock()
		if _, ok := c.subs[ch]; ok {
			delete(c.subs, ch)
			close(ch)
		}
	}
}

func (c *Cluster) publish(ev Event) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- ev:
		default:
			c.subDrops.Add(1)
		}
	}
}

// Leave marks this node draining (so peers take it off their rings), then
// leaves the cluster, waiting up to timeout for each broadcast. Peers drop
// the node at once and report it as left, not failed. To finish in-flight
// work first, call UpdateMeta with StateDraining, wait, then Leave. Call
// Shutdown afterwards; metadata updates after Leave are not sent.
//
// A broadcast is done once gossiped to enough peers, and a peer that
// stops is no longer gossiped to: with every peer leaving at once (a whole
// cluster stopped), a broadcast would never finish and each wait would
// last the whole timeout. So when no live peer is staying (every one is
// draining, see leaveWait) Leave waits two gossip rounds for each, enough
// for a peer still up to hear it, and a broadcast not done by then is no
// error.
func (c *Cluster) Leave(timeout time.Duration) error {
	ml, err := c.memberlist()
	if err != nil {
		return err
	}
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	if c.left {
		return nil
	}
	c.left = true
	c.leaving.Store(true)
	if _, err := c.setLocalMeta(func(m *Meta) { m.State = StateDraining }); err != nil {
		return err
	}
	c.announce()
	// Peers must see draining before the leave, or they will take the
	// leave for a failure (see delegate.NotifyLeave).
	wait, staying := c.leaveWait(timeout)
	if err := ml.UpdateNode(wait); err != nil {
		c.log.Debug("membership: draining broadcast not confirmed", "err", err, "peers_staying", staying)
	}
	wait, staying = c.leaveWait(timeout)
	if err := ml.Leave(wait); err != nil {
		if !staying {
			c.log.Debug("membership: leave broadcast not confirmed; every live peer is leaving too", "err", err)
			return nil
		}
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// leaveWait is how long Leave waits for a broadcast: timeout while a live
// peer is staying (alive, and not draining: it must learn of the leave
// from us, not by failure detection), else two gossip rounds (at most
// timeout). A peer whose metadata could not be read counts as staying.
func (c *Cluster) leaveWait(timeout time.Duration) (time.Duration, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for name, m := range c.members {
		if name == c.cfg.Name || (m.State != Alive && m.State != Suspect) {
			continue
		}
		if !m.metaOK || m.Meta.State != StateDraining {
			return timeout, true
		}
	}
	if c.gossipEvery <= 0 {
		return timeout, false
	}
	return min(timeout, 2*c.gossipEvery), false
}

// Shutdown stops gossip (without leaving: peers will detect a failure) and
// every goroutine, and closes subscriber channels. It may be called more
// than once.
func (c *Cluster) Shutdown() error {
	c.stateMu.Lock()
	if c.shutdown {
		c.stateMu.Unlock()
		return nil
	}
	c.shutdown = true
	started := c.started
	c.stateMu.Unlock()
	close(c.stop)
	var err error
	if started {
		err = c.ml.Shutdown()
	}
	c.wg.Wait()
	c.noise.Flush() // junk counted since the last summary
	c.subMu.Lock()
	for ch := range c.subs {
		close(ch)
	}
	c.subs = nil
	c.subMu.Unlock()
	return err
}

// memberlist returns the running memberlist, ErrNotStarted, or the
// failure that stopped gossip (see fail).
func (c *Cluster) memberlist() (*memberlist.Memberlist, error) {
	if err := c.failure(); err != nil {
		return nil, err
	}
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if !c.started || c.shutdown {
		return nil, ErrNotStarted
	}
	return c.ml, nil
}
