package proxy

import (
	"net"
	"sync"
	"time"
)

// pool keeps idle HTTP/1.1 upstream connections per peer key, newest last
// (LIFO: the warmest connection is reused first, cold ones age out).
type pool struct {
	cfg     PoolConfig
	metrics *metrics

	mu     sync.Mutex
	idle   map[string][]*upConn
	live   peerKeys // the keys connections are pooled for (nil: all; see retain)
	closed bool
	start  sync.Once // the reaper starts with the first idle connection
	stop   chan struct{}
	done   chan struct{}

	// afterPut, when set (tests), runs after put made c idle: another
	// request may take c from then on.
	afterPut func(c *upConn)
}

func newPool(cfg PoolConfig, m *metrics) *pool {
	p := &pool{cfg: cfg, metrics: m, idle: map[string][]*upConn{}, stop: make(chan struct{}), done: make(chan struct{})}
	return p
}

// get returns an idle connection for key that is still open and quiet, or
// nil. Every connection is peeked at (a non-blocking recv, one syscall)
// however recently it was used: an upstream that sent bytes after the
// response it owed (a second response, a late body to HEAD) would
// otherwise have them read as the answer to the next request, which may be
// another client's, and every later request on the connection would get the
// answer meant for the one before it. A close that races the peek is still
// handled by sending an idempotent request again (see h1RoundTrip).
func (p *pool) get(key string) *upConn {
	now := monoNow()
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[key] = list[:len(list)-1]
		p.mu.Unlock()
		idle := now - c.idleSince
		if idle < p.cfg.IdleTimeout && c.aliveAt(now) {
			return c
		}
		p.metrics.poolEvictions.Inc()
		c.close()
	}
}

// put returns c to the pool, or closes it when the pool for its key is
// full or its peer left the live table.
func (p *pool) put(c *upConn) {
	c.idleSince = monoNow()
	p.start.Do(func() { go p.run() })
	p.mu.Lock()
	if p.closed || !p.live.has(c.key) {
		p.mu.Unlock()
		c.close()
		return
	}
	list := p.idle[c.key]
	var evict *upConn
	if len(list) >= p.cfg.MaxIdlePerPeer {
		evict = list[0]
		copy(list, list[1:])
		list = list[:len(list)-1]
	}
	p.idle[c.key] = append(list, c)
	p.mu.Unlock()
	if evict != nil {
		p.metrics.poolEvictions.Inc()
		evict.close()
	}
	if p.afterPut != nil {
		p.afterPut(c)
	}
}

// run closes connections idle past the timeout, so a quiet proxy does not
// hold sockets the upstream already gave up on.
func (p *pool) run() {
	defer close(p.done)
	t := time.NewTicker(max(p.cfg.IdleTimeout/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.reap(now)
		}
	}
}

func (p *pool) reap(now time.Time) {
	var dead []*upConn
	p.mu.Lock()
	for k, list := range p.idle {
		keep := list[:0]
		for _, c := range list {
			if now.Sub(clockBase)-c.idleSince >= p.cfg.IdleTimeout {
				dead = append(dead, c)
			} else {
				keep = append(keep, c)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = keep
		}
	}
	p.mu.Unlock()
	for _, c := range dead {
		c.close()
	}
}

// idleCount returns the number of idle connections for key.
func (p *pool) idleCount(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[key])
}

func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	all := p.idle
	p.idle = map[string][]*upConn{}
	p.mu.Unlock()
	close(p.stop)
	started := true
	p.start.Do(func() { started = false })
	if started {
		<-p.done
	}
	for _, list := range all {
		for _, c := range list {
			c.close()
		}
	}
}

var _ net.Conn = (*net.TCPConn)(nil)
