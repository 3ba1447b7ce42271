package proxy

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The per-address cap (DownstreamConfig.MaxConnsPerIP), nginx's limit_conn
// on $binary_remote_addr and HAProxy's src_conn_cur: the client
// connections open from one address are counted from the accept, before
// the connection costs a goroutine, a buffer, a TLS handshake or one of
// MaxConns's slots for longer than the accept itself, and one over the cap
// is reset at once. Without it one address holding MaxConns idle
// connections shuts every other client out.

// ipKey is a client address as the cap counts it, in 16 bytes: an IPv4
// address (and an IPv4-mapped IPv6 one, which is the same client) in its
// mapped form, an IPv6 address by its /64, the rest zeroed, since one
// host is commonly given a whole /64 (RFC 6177) and takes a new address
// from it at will.
type ipKey [16]byte

// ipKeyOf returns the key of a client's address; ok is false for an
// address that is no IP (a Unix socket, a test's in-memory pipe): such a
// client is not counted.
func ipKeyOf(a net.Addr) (k ipKey, ok bool) {
	ta, isTCP := a.(*net.TCPAddr)
	if !isTCP {
		return k, false
	}
	switch ip := ta.IP; len(ip) {
	case net.IPv4len:
		k[10], k[11] = 0xff, 0xff
		copy(k[12:], ip)
	case net.IPv6len:
		copy(k[:], ip)
		if !isMapped(&k) {
			clear(k[8:])
		}
	default:
		return k, false
	}
	return k, true
}

// ipKeyOfAddr is ipKeyOf for a netip.Addr.
func ipKeyOfAddr(a netip.Addr) ipKey {
	k, _ := ipKeyOf(&net.TCPAddr{IP: a.AsSlice()})
	return k
}

// isMapped reports whether k is an IPv4-mapped address (::ffff:a.b.c.d).
func isMapped(k *ipKey) bool {
	return binary.BigEndian.Uint64(k[0:8]) == 0 && binary.BigEndian.Uint32(k[8:12]) == 0xffff
}

// String is the key as logs name it: "192.0.2.7", or "2001:db8:1:2::/64".
func (k ipKey) String() string {
	a := netip.AddrFrom16(k)
	if isMapped(&k) {
		return a.Unmap().String()
	}
	return a.String() + "/64"
}

// perIPShards spreads the counts over this many locks, so that accepts on
// several listeners (or from a future accept loop per core) seldom meet
// on one; a power of two.
const perIPShards = 64

// perIPWarnEvery is how often an address over the cap is logged at most:
// the first refusal, then one line a minute while it keeps being refused,
// saying how many were refused meanwhile.
const perIPWarnEvery = time.Minute

// perIPConns counts the open client connections of each address. An entry
// is deleted when its count falls to 0, so the map holds the addresses
// with a live connection, never every address ever seen.
type perIPConns struct {
	max     int32
	refused prometheus.Counter
	log     *slog.Logger
	now     func() time.Time // time.Now, a test's clock
	// logBudget bounds the lines of many addresses refused at once (a
	// botnet); each address's own lines are spaced by perIPWarnEvery.
	logBudget logBudget
	shards    [perIPShards]perIPShard
}

type perIPShard struct {
	mu sync.Mutex
	m  map[ipKey]perIPCount
	_  [64 - 16]byte // a cache line each: shards locked together do not share one
}

// perIPCount is one address's connections, and its refusals since the
// last line logged of it.
type perIPCount struct {
	open     int32
	refused  uint32
	loggedAt int64 // unix nanoseconds of the last line logged (0: none)
}

// newPerIPConns returns the counts for a cap of max connections an
// address; nil when max is 0 (no cap), which is the only thing the
// accept path then looks at.
func newPerIPConns(max int, m *metrics, log *slog.Logger) *perIPConns {
	if max <= 0 {
		return nil
	}
	p := &perIPConns{max: int32(min(max, 1<<30)), refused: m.connsRefused.WithLabelValues(refusedPerIP), log: log, now: time.Now}
	for i := range p.shards {
		p.shards[i].m = map[ipKey]perIPCount{}
	}
	return p
}

func (p *perIPConns) shard(k *ipKey) *perIPShard {
	// The bytes that differ between clients are the last four (IPv4) or
	// the first eight (IPv6): fold both halves, then multiply (Fibonacci
	// hashing) so that the top bits the shard is taken from mix them all.
	h := binary.LittleEndian.Uint64(k[0:8]) ^ binary.LittleEndian.Uint64(k[8:16])
	h *= 0x9e3779b97f4a7c15
	return &p.shards[h>>(64-6)]
}

// acquire counts a new connection from k, unless k has max open already:
// then it reports false and, at most once per perIPWarnEvery for k (and
// within a budget over every address), logs it.
func (p *perIPConns) acquire(k ipKey, listener string) bool {
	return p.acquireFor(k, listener, "client connection refused: the address is at downstream.max_conns_per_ip")
}

// acquireFor is acquire, logging msg for a refusal.
func (p *perIPConns) acquireFor(k ipKey, listener, msg string) bool {
	sh := p.shard(&k)
	sh.mu.Lock()
	c := sh.m[k]
	if c.open < p.max {
		c.open++
		sh.m[k] = c
		sh.mu.Unlock()
		return true
	}
	c.refused++
	var warn bool
	var refused uint32
	now := p.now()
	if now.UnixNano()-c.loggedAt >= int64(perIPWarnEvery) && p.logBudget.allow(now.Unix()) {
		warn, refused, c.refused, c.loggedAt = true, c.refused, 0, now.UnixNano()
	}
	sh.m[k] = c
	sh.mu.Unlock()
	p.refused.Inc()
	if warn {
		p.log.Warn(msg, "listener", listener,
			"client", k.String(), "max_conns_per_ip", p.max, "refused_since_last_line", refused, "next_line_after", perIPWarnEvery.String())
	}
	return false
}

// release uncounts a connection from k, which acquire counted.
func (p *perIPConns) release(k ipKey) {
	sh := p.shard(&k)
	sh.mu.Lock()
	c := sh.m[k]
	if c.open <= 1 {
		delete(sh.m, k)
	} else {
		c.open--
		sh.m[k] = c
	}
	sh.mu.Unlock()
}

// open returns the connections counted for k (tests).
func (p *perIPConns) open(k ipKey) int {
	sh := p.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return int(sh.m[k].open)
}

// addresses returns how many addresses have a connection counted (tests:
// the map holds no more).
func (p *perIPConns) addresses() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// refusedPerIP is the reason label of pingora_downstream_connections_refused_total
// for a connection over MaxConnsPerIP.
const refusedPerIP = "max_conns_per_ip"

// admitPerIP counts nc, accepted on lc, against its address's cap; ok is
// false when the address is at the cap: nc is then closed already, at
// once, with a reset (SO_LINGER 0). The server closes first, and a plain
// close would leave the socket in FIN_WAIT and TIME_WAIT on the server
// for each refused connection (or orphaned, sending its FIN again to a
// client that never answers): with a reset a flood of refused
// connections leaves no kernel state behind. The client learns as much
// either way (and with TCP_DEFER_ACCEPT it has usually sent its request
// already, which a close with unread data turns into a reset anyway).
// counted says whether k was counted, to be released (releasePerIP): not
// for an address that is no IP, nor for a client in the listener's
// TrustedProxies (a load balancer carrying many clients' connections).
func (s *Server[C]) admitPerIP(nc net.Conn, lc *ListenerConfig) (k ipKey, counted, ok bool) {
	a := nc.RemoteAddr()
	k, counted = ipKeyOf(a)
	if !counted || trustedPeer(lc.TrustedProxies, a) {
		return k, false, true
	}
	if !s.perIP.acquire(k, lc.Name) {
		resetConn(nc)
		return k, false, false
	}
	return k, true, true
}

// perIPStream counts an HTTP/2 stream of c against its address's cap, as
// nginx's limit_conn counts each concurrent HTTP/2 request: k streams
// being served on c hold k counts, the connection's own and k-1 more
// (none while none runs). Without it one address within the cap opened
// 250 streams on each connection, each with an upstream connection of
// its own: 8 connections held 2000 upstream sockets, and
// max_conns_per_ip connections the node's open-file limit. The counts
// are the connection's, not a stream's: whichever stream ends, one more
// than run goes back. (The first stream to begin used to keep the
// connection's count to itself; once it ended, every stream begun beside
// another took a count of its own, and two at a time cost three.) ok is
// false when the address is at the cap: the stream is then refused; else
// endPerIPStream(c, sc) ends the count. Without a cap on c it costs
// nothing: no lock, no allocation per stream.
func (s *Server[C]) perIPStream(c *clientConn) (sc streamCount, ok bool) {
	if !c.ipCounted || s.perIP == nil {
		return streamFree, true
	}
	c.h2mu.Lock()
	defer c.h2mu.Unlock()
	if c.h2Streams > 0 && !s.perIP.acquireFor(c.ipKey, c.lc.Name, "HTTP/2 stream refused: the address is at downstream.max_conns_per_ip") {
		return streamFree, false
	}
	c.h2Streams++
	return streamCounted, true
}

// streamCount is what an HTTP/2 stream holds of its address's count
// (perIPStream).
type streamCount uint8

const (
	streamFree    streamCount = iota // nothing: no cap on the connection
	streamCounted                    // a place among the connection's streams
)

// endPerIPStream gives back what perIPStream took for a stream of c: a
// count when other streams still run on c.
func (s *Server[C]) endPerIPStream(c *clientConn, sc streamCount) {
	if sc == streamFree {
		return
	}
	c.h2mu.Lock()
	defer c.h2mu.Unlock()
	c.h2Streams--
	if c.h2Streams > 0 {
		s.perIP.release(c.ipKey)
	}
}

// releasePerIP uncounts c's address once c has ended: connWorker calls it
// once for every connection, after serveConn, beside freeing its MaxConns
// slot.
func (s *Server[C]) releasePerIP(c *clientConn) {
	if c.ipCounted {
		c.ipCounted = false
		s.perIP.release(c.ipKey)
	}
}

// connsFromIP returns the client connections counted for ip's address (an
// IPv6 one's /64); 0 without the cap. For tests.
func (s *Server[C]) connsFromIP(ip netip.Addr) int {
	if s.perIP == nil {
		return 0
	}
	return s.perIP.open(ipKeyOfAddr(ip))
}

// resetConn closes nc with a reset rather than a FIN.
func resetConn(nc net.Conn) {
	switch c := nc.(type) {
	case interface{ SetLinger(int) error }: // *net.TCPConn
		c.SetLinger(0)
	case syscall.Conn: // tcpConn (acceptListener)
		if rc, err := c.SyscallConn(); err == nil {
			rc.Control(resetOnClose)
		}
	}
	nc.Close()
}
