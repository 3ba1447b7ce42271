package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/proxy/h2"
)

// ListenerConfig describes how a listener's connections are served.
type ListenerConfig struct {
	// Name labels the listener in logs, metrics and Session.Listener.
	Name string
	// TLS terminates TLS with certificates chosen by SNI; nil means cleartext.
	TLS *CertStore
	// H2C accepts HTTP/2 with prior knowledge on a cleartext listener,
	// beside HTTP/1.1 on the same port (default false).
	H2C bool
	// DisableH2 stops offering "h2" in TLS ALPN (default false: offered).
	DisableH2 bool
	// TrustedProxies lists the networks of the proxies and load balancers
	// in front of this listener, whose forwarding fields are believed
	// (default none: no client is trusted). From any other client,
	// Forwarded, X-Real-IP and every X-Forwarded-* field are removed as
	// the request arrives, and the upstream receives X-Forwarded-For,
	// -Proto and -Host as this proxy saw the connection; from a trusted
	// one they pass on, this proxy's values appended (see forwarded.go).
	// An IPv4 client is matched in its IPv4 form, unmapped.
	TrustedProxies []netip.Prefix
}

// Server is a proxy: it serves client connections on listeners and runs each
// request through the phases of an App. Make one with New.
type Server[C any] struct {
	cfg     Config
	app     App[C]
	ph      phases[C]
	pool    *pool
	h2up    *h2Upstream
	slots   *connSlots // the in-use counts of capped peers (ConnLimit)
	unwatch func()     // ends the PeerWatcher subscription (nil: none)
	dialer  *dialer
	metrics *metrics
	errLog  *slog.Logger
	// acceptNoise throttles the accept failures' warnings.
	acceptNoise *logthrottle.Throttle
	// rejectLog bounds the log lines of refused requests (see rejected).
	rejectLog logBudget
	// floodLog bounds the log lines of connections ended for flooding.
	floodLog logBudget
	// slowLog bounds the log lines of clients cut for a minimum rate.
	slowLog logBudget
	// slowClientFn is slowClient, taken once: a method value taken per
	// connection would be an allocation each.
	slowClientFn func(listener, client, proto, dir string)
	// limitActive is Config.Limiter's LimiterActive, if it has one.
	limitActive LimiterActive

	cacheStore cache.Store
	clock      clock.Clock
	bg         *background // the cache's background revalidations
	varyIDs    varyIDs
	hitPass    passSet // hit-for-pass markers (cache_pass.go)

	h2cfg   h2.Config
	connSem chan struct{}
	// perIP counts the client connections of each address against
	// Downstream.MaxConnsPerIP (nil: no cap).
	perIP *perIPConns
	// idle hands accepted connections to workers waiting for one;
	// quit, closed when draining begins, ends those waits.
	idle        chan *clientConn
	idleWorkers atomic.Int32
	quit        chan struct{}
	quitOnce    sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	draining  atomic.Bool
	graceful  bool // Shutdown (not Close) began; guarded by mu
	wg        sync.WaitGroup
	closed    chan struct{}
	closeOnce sync.Once
}

// New builds a Server for app. It validates cfg and starts nothing: call
// Serve for each listener.
func New[C any](app App[C], cfg Config) (*Server[C], error) {
	if app == nil {
		return nil, errors.New("proxy: nil App")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server[C]{
		cfg:         cfg,
		app:         app,
		ph:          resolvePhases(app),
		errLog:      cfg.ErrorLog,
		acceptNoise: logthrottle.New(clock.Real{}, 0, 0),
		connSem:     make(chan struct{}, cfg.Downstream.MaxConns), // one slot per allowed client connection
		listeners:   map[net.Listener]struct{}{},
		conns:       map[*clientConn]struct{}{},
		closed:      make(chan struct{}),
		idle:        make(chan *clientConn),
		quit:        make(chan struct{}),
	}
	if err := s.initCache(cfg); err != nil {
		return nil, err
	}
	var err error
	if s.metrics, err = newMetrics(cfg.Metrics, s.cacheStore); err != nil {
		return nil, err
	}
	if s.errLog == nil {
		s.errLog = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.perIP = newPerIPConns(cfg.Downstream.MaxConnsPerIP, s.metrics, s.errLog)
	s.dialer = newDialer(s.metrics)
	s.pool = newPool(cfg.Pool, s.metrics)
	s.h2up = newH2Upstream(s.dialer, cfg)
	s.slots = newConnSlots(s.metrics)
	s.h2cfg = h2Config(cfg.Downstream)
	s.h2cfg.Clock = cfg.Clock
	s.slowClientFn = s.slowClient
	if w, ok := app.(PeerWatcher); ok {
		s.unwatch = w.WatchPeers(s.retainPeers)
	}
	s.limitActive, _ = cfg.Limiter.(LimiterActive)
	return s, nil
}

// Config returns the server's configuration with defaults filled in.
func (s *Server[C]) Config() Config { return s.cfg }

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// Serve accepts connections on ln and serves them until Shutdown or Close;
// it then returns ErrServerClosed. ln may come from Listen (the socket
// options a proxy wants), net.Listen, or a listener hand-off.
func (s *Server[C]) Serve(ln net.Listener, lc ListenerConfig) error {
	if !s.trackListener(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrackListener(ln)
	acceptFailures := s.metrics.acceptFailures.WithLabelValues(lc.Name) // at 0 from the start
	backoff := time.Duration(0)
	for {
		if !s.acquireConnSlot() {
			return ErrServerClosed
		}
		nc, err := ln.Accept()
		if err != nil {
			<-s.connSem
			if s.draining.Load() || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			acceptFailures.Inc()
			backoff = acceptBackoff(backoff)
			// At the open-file limit under churn each freed descriptor
			// is taken by one accept and the next fails again: a line
			// per failure would be a line per connection.
			s.acceptNoise.Log(s.errLog, slog.LevelWarn, "accept failed "+lc.Name, "accept failed", "listener", lc.Name, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.closed:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		var ipk ipKey
		counted := false
		if s.perIP != nil {
			// Before anything is spent on the connection; a refused one
			// gives its MaxConns slot straight back.
			var ok bool
			if ipk, counted, ok = s.admitPerIP(nc, &lc); !ok {
				<-s.connSem
				continue
			}
		}
		c := s.newClientConn(nc, lc)
		c.ipKey, c.ipCounted = ipk, counted
		select {
		case s.idle <- c: // a worker that finished its last connection takes it
		default:
			s.wg.Add(1)
			go s.connWorker(c)
		}
	}
}

// maxIdleWorkers bounds the goroutines kept waiting for a next connection.
const maxIdleWorkers = 128

// connWorker serves c, then waits for another connection rather than
// ending: a new connection handed to a waiting worker costs a channel
// hand-off, where a new goroutine costs its creation, its exit and the
// growth of its stack to what serving a request needs. In a profile of
// a new connection per request (bench/run.sh's churn-small) those took
// 2.3 % of the CPU and the hand-off 0.9 %. At most maxIdleWorkers wait;
// the rest end, and every one ends when the server starts to drain.
func (s *Server[C]) connWorker(c *clientConn) {
	defer s.wg.Done()
	for {
		s.serveConn(c)
		s.releasePerIP(c)
		<-s.connSem
		if s.idleWorkers.Add(1) > maxIdleWorkers {
			s.idleWorkers.Add(-1)
			return
		}
		select {
		case c = <-s.idle:
			s.idleWorkers.Add(-1)
		case <-s.quit:
			s.idleWorkers.Add(-1)
			return
		}
	}
}

func acceptBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}

func (s *Server[C]) acquireConnSlot() bool {
	select {
	case s.connSem <- struct{}{}:
		return true
	default:
	}
	s.metrics.connLimitWaits.Inc()
	select {
	case s.connSem <- struct{}{}:
		return true
	case <-s.closed:
		return false
	}
}

func (s *Server[C]) trackListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1) // held while the accept loop runs, so its wg.Add calls never race Wait at zero
	return true
}

func (s *Server[C]) untrackListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	s.wg.Done()
}

// serveConn runs one client connection: TLS handshake, protocol choice, then
// the HTTP/1.1 loop or the HTTP/2 server.
func (s *Server[C]) serveConn(c *clientConn) {
	s.metrics.activeConns.Inc()
	defer s.metrics.activeConns.Dec()
	defer s.untrackConn(c)
	defer c.nc.Close()
	if !s.trackConn(c) {
		return
	}
	proto, err := c.handshake(s.cfg.Downstream.HeaderTimeout)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.errLog.Debug("client handshake failed", "listener", c.lc.Name, "client", c.clientIP, "err", err)
		}
		c.releaseBuffers()
		return
	}
	if proto == "h2" {
		c.state.Store(connH2)
		s.serveH2(c)
		return
	}
	s.serveH1(c)
	c.releaseBuffers()
}

func (s *Server[C]) trackConn(c *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		if !s.graceful {
			return false
		}
		// Accepted just before Shutdown closed the listener: the client
		// may have sent its request already, so answer it (with
		// "Connection: close") rather than reset it.
		s.conns[c] = struct{}{}
		c.startDrain(time.Now().Add(s.cfg.Downstream.DrainLinger))
		return true
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server[C]) untrackConn(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Draining reports whether Shutdown has begun.
func (s *Server[C]) Draining() bool { return s.draining.Load() }

// Shutdown stops the server gracefully: listeners close at once, HTTP/2
// clients get a two-phase GOAWAY (h2.Conn.Shutdown), idle keep-alive
// connections close after Downstream.DrainLinger, and requests in flight finish (their HTTP/1.1
// responses carry "Connection: close"). It returns when the last connection
// ended, or with ctx's error after closing the rest abruptly.
func (s *Server[C]) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.graceful = !s.draining.Load() // a Close already under way stays abrupt
	s.draining.Store(true)
	s.quitOnce.Do(func() { close(s.quit) })
	for ln := range s.listeners {
		ln.Close()
	}
	linger := time.Now().Add(s.cfg.Downstream.DrainLinger)
	var h2conns []*h2.Conn
	for c := range s.conns {
		c.startDrain(linger)
		if h := c.h2.Load(); h != nil {
			h2conns = append(h2conns, h)
		}
	}
	s.mu.Unlock()
	// Each drain writes to its connection, which a client that does not
	// read can block for up to WriteIdleTimeout: one goroutine each, not
	// under s.mu.
	for _, h := range h2conns {
		go h.Shutdown()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.closeConns()
		<-done
	}
	s.finish()
	return err
}

// Close closes every listener and connection at once.
func (s *Server[C]) Close() error {
	s.mu.Lock()
	s.draining.Store(true)
	s.quitOnce.Do(func() { close(s.quit) })
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.closeConns()
	s.wg.Wait()
	s.finish()
	return nil
}

func (s *Server[C]) closeConns() {
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
}

func (s *Server[C]) finish() {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.unwatch != nil {
			s.unwatch()
		}
		s.bg.close()
		s.pool.close()
		s.h2up.close()
	})
}

// ActiveConns returns the number of open client connections.
func (s *Server[C]) ActiveConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
