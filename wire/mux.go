package wire

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
	"github.com/pingora-go/pingora-go/internal/remoteip"
)

// MuxConfig configures a Mux. Zero fields take their defaults.
type MuxConfig struct {
	// HandshakeTimeout is how long a new connection has to send its first
	// byte, and how long a routed connection waits for its protocol's
	// Accept before it is closed (default 5s).
	HandshakeTimeout time.Duration
	// MaxPending bounds the connections whose first byte is awaited at
	// once, and MaxPendingPerAddr those from one remote IP address (an
	// IPv6 one's /64; loopback is bounded by MaxPending alone, as a cluster
	// on one machine shares it); one beyond either is closed as it is
	// accepted (defaults 1024 and 64). A protocol's limits count only the
	// connections handed to it, so without these a client that opened
	// connections and sent nothing held a descriptor, a goroutine and,
	// behind TLS, a handshake for HandshakeTimeout each, as many as it
	// could open: 11,668 descriptors of a node from one address.
	MaxPending, MaxPendingPerAddr int
	// Logger receives dropped connections at Debug (default slog.Default());
	// the counts are in Stats.
	Logger *slog.Logger
}

// The defaults of MuxConfig.MaxPending and MaxPendingPerAddr. A peer's
// connection sends its first byte at once (after its TLS handshake), so
// few are pending at any time.
const (
	DefaultMuxMaxPending        = 1024
	DefaultMuxMaxPendingPerAddr = 64
)

// Validate reports the first invalid field.
func (c MuxConfig) Validate() error {
	if c.HandshakeTimeout < 0 {
		return fmt.Errorf("wire: HandshakeTimeout (%s) cannot be negative", c.HandshakeTimeout)
	}
	if c.MaxPending < 0 || c.MaxPendingPerAddr < 0 {
		return fmt.Errorf("wire: MaxPending (%d) and MaxPendingPerAddr (%d) cannot be negative", c.MaxPending, c.MaxPendingPerAddr)
	}
	return nil
}

// MuxStats is a snapshot of a Mux's counters.
type MuxStats struct {
	Accepted    uint64 // connections accepted on the shared listener
	UnknownByte uint64 // closed: a first byte no protocol listens for
	NoFirstByte uint64 // closed: no first byte within HandshakeTimeout
	NotAccepted uint64 // closed: the protocol's listener did not accept in time
	OverLimit   uint64 // closed: the protocol had its limit of connections open, or MaxPending (MaxPendingPerAddr) had yet to send their first byte
	// AcceptFailures counts accepts that failed for want of descriptors,
	// buffers or memory (each retried after a back-off).
	AcceptFailures uint64
}

// DefaultMuxConnLimit is how many connections of one protocol a Mux lets
// be open at once unless ListenLimit says otherwise (wire.Server's own
// MaxConns default).
const DefaultMuxConnLimit = 4096

// Mux shares one listener between protocols by the first byte each
// connection sends, as Consul's server port does: ProtoRPC for wire,
// ProtoRaft for raft. A connection is handed to its protocol's listener
// with the first byte still unread, so wire.Server checks its own magic
// byte whether it runs behind a Mux or not.
//
// With TLS, give the Mux a TLS listener: the byte is then read inside the
// encrypted stream (the handshake runs in the Mux's per-connection
// goroutine, bounded by HandshakeTimeout), and every protocol on the port
// gets the same mutual TLS. Routed connections' NetConn method returns
// the *tls.Conn for its ConnectionState.
type Mux struct {
	l   net.Listener
	cfg MuxConfig

	mu      sync.Mutex
	subs    map[byte]*muxListener
	pending map[net.Conn]string // connections whose first byte is awaited: their bounded IP (remoteip.Bounded)
	byAddr  map[string]int      // pending connections per bounded IP
	closed  bool
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup

	accepted, unknown, noByte, notAccepted, overLimit atomic.Uint64
	acceptFails                                       atomic.Uint64 // retryable accept errors (EMFILE)
	noise                                             *logthrottle.Throttle
}

// NewMux returns a Mux over l; it starts nothing until Serve.
func NewMux(l net.Listener, cfg MuxConfig) (*Mux, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMuxMaxPending
	}
	if cfg.MaxPendingPerAddr == 0 {
		cfg.MaxPendingPerAddr = DefaultMuxMaxPendingPerAddr
	}
	return &Mux{
		l: l, cfg: cfg, subs: make(map[byte]*muxListener),
		pending: make(map[net.Conn]string), byAddr: make(map[string]int), done: make(chan struct{}),
		noise: logthrottle.New(clock.Real{}, 0, 0),
	}, nil
}

// Listen returns the listener for connections whose first byte is proto
// or one of more (a protocol that has more than one first byte, such as
// raft's own message types from a peer that sends no protocol byte).
// Closing it refuses those connections from then on. At most
// DefaultMuxConnLimit of them are open at once (see ListenLimit).
func (m *Mux) Listen(proto byte, more ...byte) (net.Listener, error) {
	return m.ListenLimit(DefaultMuxConnLimit, proto, more...)
}

// ListenLimit is Listen with at most limit connections of the protocol
// open at once: one beyond it is closed as soon as its first byte is read,
// whatever the protocol would do with it (raft, for one, keeps a
// connection open for as long as the peer likes, with no deadline).
func (m *Mux) ListenLimit(limit int, proto byte, more ...byte) (net.Listener, error) {
	return m.ListenLimits(limit, 0, proto, more...)
}

// ListenLimits is ListenLimit with, besides, at most perAddr of those
// connections from one remote IP address at once (0: no such bound;
// loopback addresses are not bounded so, as a cluster on one machine
// shares them). For a protocol whose connections may idle for ever, it
// keeps one client from holding every place and locking the others out.
func (m *Mux) ListenLimits(limit, perAddr int, proto byte, more ...byte) (net.Listener, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("wire: mux: connection limit %d is not positive", limit)
	}
	if perAddr < 0 {
		return nil, fmt.Errorf("wire: mux: per-address connection limit %d is negative", perAddr)
	}
	protos := append([]byte{proto}, more...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	for _, p := range protos {
		if m.subs[p] != nil {
			return nil, fmt.Errorf("wire: mux: protocol byte 0x%02x already has a listener", p)
		}
	}
	sl := &muxListener{m: m, protos: protos, limit: int64(limit), perAddr: perAddr, addrs: map[string]int{}, ch: make(chan net.Conn), done: make(chan struct{})}
	for _, p := range protos {
		m.subs[p] = sl
	}
	return sl, nil
}

// Stats returns the Mux's counters. A nil Mux has none.
func (m *Mux) Stats() MuxStats {
	if m == nil {
		return MuxStats{}
	}
	return MuxStats{Accepted: m.accepted.Load(), UnknownByte: m.unknown.Load(), NoFirstByte: m.noByte.Load(), NotAccepted: m.notAccepted.Load(), OverLimit: m.overLimit.Load(), AcceptFailures: m.acceptFails.Load()}
}

// Serve accepts connections until the listener fails or Close is called;
// it returns ErrClosed after Close, or the accept error (after closing the
// Mux, so every protocol's Accept returns).
func (m *Mux) Serve() error {
	var backoff time.Duration
	for {
		c, err := m.l.Accept()
		if err != nil {
			var ne net.Error
			switch {
			case m.isClosed():
				return ErrClosed
			case errors.As(err, &ne) && ne.Timeout():
				continue
			case AcceptRetryable(err):
				// out of descriptors: connections wait in the backlog
				// until some close (the port must not shut for good)
				m.acceptFails.Add(1)
				backoff = AcceptBackoff(backoff)
				m.noise.Log(m.cfg.Logger, slog.LevelWarn, "accept", "wire: mux: accept failed, retrying", "err", err, "retry_in", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-m.done:
					t.Stop()
					return ErrClosed
				}
				continue
			}
			m.Close()
			return fmt.Errorf("wire: mux: accept: %w", err)
		}
		backoff = 0
		m.accepted.Add(1)
		switch m.track(c) {
		case trackClosed:
			c.Close()
			return ErrClosed
		case trackFull:
			m.overLimit.Add(1)
			m.noise.Log(m.cfg.Logger, slog.LevelWarn, "pending", "wire: mux: connection closed: too many connections have yet to send their first byte",
				"remote", c.RemoteAddr().String(), "max_pending", m.cfg.MaxPending, "max_pending_per_addr", m.cfg.MaxPendingPerAddr)
			c.Close()
			continue
		}
		go m.route(c)
	}
}

// route reads c's first byte and hands c to its protocol's listener.
func (m *Mux) route(c net.Conn) {
	defer m.wg.Done()
	c.SetReadDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	var b [1]byte
	_, err := c.Read(b[:])
	c.SetReadDeadline(time.Time{})
	m.untrack(c)
	var sl *muxListener
	if err == nil {
		m.mu.Lock()
		sl = m.subs[b[0]]
		m.mu.Unlock()
	}
	switch {
	case err != nil:
		m.noByte.Add(1)
		m.cfg.Logger.Debug("wire: mux: no first byte", "remote", c.RemoteAddr().String(), "err", err)
	case sl == nil:
		m.unknown.Add(1)
		m.cfg.Logger.Debug("wire: mux: no listener for first byte", "remote", c.RemoteAddr().String(), "byte", b[0])
	case sl.open.Add(1) > sl.limit:
		sl.open.Add(-1)
		m.overLimit.Add(1)
		m.cfg.Logger.Debug("wire: mux: connection closed: its protocol has its limit open", "remote", c.RemoteAddr().String(), "byte", b[0], "limit", sl.limit)
	default:
		ip := boundedIP(c, sl.perAddr)
		if !sl.takeAddr(ip) {
			sl.open.Add(-1)
			m.overLimit.Add(1)
			m.cfg.Logger.Debug("wire: mux: connection closed: its address has its protocol's per-address limit open", "remote", c.RemoteAddr().String(), "byte", b[0], "limit", sl.perAddr)
			break
		}
		release := func() {
			sl.releaseAddr(ip)
			sl.open.Add(-1)
		}
		if sl.handoff(&muxConn{Conn: c, first: b[0], release: release}) {
			return
		}
		release()
	}
	c.Close()
}

// track's answers.
const (
	tracked = iota
	trackClosed
	trackFull // MaxPending, or MaxPendingPerAddr for its address, pending
)

// track counts c as pending, or says why not.
func (m *Mux) track(c net.Conn) int {
	ip := remoteip.Bounded(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return trackClosed
	case len(m.pending) >= m.cfg.MaxPending, ip != "" && m.byAddr[ip] >= m.cfg.MaxPendingPerAddr:
		return trackFull
	}
	m.pending[c] = ip
	if ip != "" {
		m.byAddr[ip]++
	}
	m.wg.Add(1)
	return tracked
}

func (m *Mux) untrack(c net.Conn) {
	m.mu.Lock()
	if ip, ok := m.pending[c]; ok {
		delete(m.pending, c)
		if ip != "" {
			if m.byAddr[ip]--; m.byAddr[ip] <= 0 {
				delete(m.byAddr, ip)
			}
		}
	}
	m.mu.Unlock()
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Close closes the shared listener, every protocol's listener and the
// connections not yet handed over, and waits for the Mux's goroutines.
// Connections already accepted by a protocol are that protocol's to close.
// It may be called more than once.
func (m *Mux) Close() error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.done)
		m.l.Close()
		for c := range m.pending {
			c.Close()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// muxListener is one protocol's listener on a Mux.
type muxListener struct {
	m      *Mux
	protos []byte // the first bytes it takes; read-only
	limit  int64  // connections open at once, at most
	open   atomic.Int64
	// perAddr bounds the connections open at once from one remote IP
	// (0: no bound); addrs counts them, under amu.
	perAddr int
	amu     sync.Mutex
	addrs   map[string]int
	ch      chan net.Conn
	once    sync.Once
	done    chan struct{}
}

var _ net.Listener = (*muxListener)(nil)

// boundedIP is the remote IP of c that a per-address bound counts, or ""
// when there is no bound, the address is loopback or not an IP.
func boundedIP(c net.Conn, perAddr int) string {
	if perAddr <= 0 {
		return ""
	}
	return remoteip.Bounded(c)
}

// takeAddr counts a connection from ip, or reports that ip has its
// per-address limit open.
func (l *muxListener) takeAddr(ip string) bool {
	if ip == "" {
		return true
	}
	l.amu.Lock()
	defer l.amu.Unlock()
	if l.addrs[ip] >= l.perAddr {
		return false
	}
	l.addrs[ip]++
	return true
}

func (l *muxListener) releaseAddr(ip string) {
	if ip == "" {
		return
	}
	l.amu.Lock()
	if l.addrs[ip]--; l.addrs[ip] <= 0 {
		delete(l.addrs, ip)
	}
	l.amu.Unlock()
}

// handoff gives c to the protocol's Accept, waiting at most the handshake
// timeout; it reports whether c was taken.
func (l *muxListener) handoff(c net.Conn) bool {
	t := time.NewTimer(l.m.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case l.ch <- c:
		return true
	case <-t.C:
		l.m.notAccepted.Add(1)
	case <-l.done:
	case <-l.m.done:
	}
	return false
}

// Accept returns the next connection that sent this listener's byte.
func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
	case <-l.m.done:
	}
	return nil, fmt.Errorf("wire: mux listener 0x%02x: %w", l.protos[0], net.ErrClosed)
}

// Close stops this protocol's connections; others are not affected.
func (l *muxListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		for _, p := range l.protos {
			if l.m.subs[p] == l {
				delete(l.m.subs, p)
			}
		}
		l.m.mu.Unlock()
	})
	return nil
}

// Addr returns the shared listener's address.
func (l *muxListener) Addr() net.Addr { return l.m.l.Addr() }

// muxConn is a routed connection whose first byte is read again first.
type muxConn struct {
	net.Conn
	first   byte
	read    atomic.Bool // the first byte was returned
	release func()      // frees the connection's place under its protocol's limit
	closed  sync.Once
}

// Close closes the connection and frees its place.
func (c *muxConn) Close() error {
	c.closed.Do(c.release)
	return c.Conn.Close()
}

// Read returns the first byte the Mux read, then reads the connection.
func (c *muxConn) Read(p []byte) (int, error) {
	if len(p) > 0 && c.read.CompareAndSwap(false, true) {
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the connection the Mux accepted (a *tls.Conn behind a
// TLS listener).
func (c *muxConn) NetConn() net.Conn { return c.Conn }
