package membership

import (
	"bufio"
	"bytes"
	"compress/lzw"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/internal/logthrottle"
	"github.com/pingora-go/pingora-go/internal/remoteip"
)

// memberlist v0.7.0 sizes its buffers for an incoming stream by what the
// stream's header declares, before the bytes arrive: a push/pull header
// saying 1,048,576 members (its limit) makes it allocate 104 MB at once,
// and one saying 20 MiB of user state 20 MiB more, for each of up to 128
// streams at a time; a user message header up to 20 MiB, for any number
// of streams; and it decompresses a compressed stream of a few KiB into
// up to 40 MiB. Anyone who can reach the gossip port without the gossip
// key could send those headers and nothing else: 4 rounds of 128 such
// streams took a node to 14.8 GB RSS. streamGate reads each incoming
// stream's header first, with memberlist's own msgpack codec (so it reads
// what memberlist will), and hands memberlist only streams whose header
// declares what a pingora node can send; memberlist then reads the same
// bytes again.
const (
	// maxGossipMembers bounds the members one push/pull may list: far
	// above any cluster this project runs (a few to a few hundred nodes),
	// and 426 KB of memberlist's buffer at most.
	maxGossipMembers = 4096
	// maxGossipUserBytes bounds a push/pull's user state and a user
	// message sent over a stream. A pingora node sends no user state
	// (delegate.LocalState) and its user messages (metadata sync, force
	// leave) go by UDP packet, under 64 KiB.
	maxGossipUserBytes = 64 << 10
	// maxGossipPlainBytes bounds a compressed stream once decompressed:
	// maxGossipMembers members with the largest metadata, with room.
	maxGossipPlainBytes = 8 << 20
	// maxGossipCompressedBytes bounds a compressed stream's body before
	// it is unpacked: LZW with 8-bit literals spends at most 12 bits on a
	// byte, so maxGossipPlainBytes compress to at most 1.5 times as many.
	maxGossipCompressedBytes = maxGossipPlainBytes*3/2 + 4<<10
	// maxGossipStreams bounds the streams screened or being read by
	// memberlist at once (memberlist's own cap is 128 push/pulls, and
	// none for the rest); one beyond it is closed at once. A node gets a
	// push/pull from each peer every 30 s (2 s in the fast profile) and
	// a TCP ping now and then, each over in milliseconds.
	maxGossipStreams = 64
	// maxGossipStreamsPerIP bounds the streams of one remote address
	// (loopback excepted: nodes of a cluster on one machine share it)
	// among those maxGossipStreams, so one client that opens connections
	// and sends nothing, which needs no gossip key, cannot hold every
	// slot and keep the node's peers' push/pulls and joins out. A peer
	// has one push/pull and now and then a TCP ping open at once.
	maxGossipStreamsPerIP = 8
	// maxGossipOtherStreamBytes bounds a stream that is neither a
	// push/pull, a user message, compressed nor encrypted: a TCP ping,
	// under a KiB.
	maxGossipOtherStreamBytes = 64 << 10
	// maxGossipStreamBytes bounds the bytes all the gossip streams hold at
	// once, read by the gate or by memberlist, from a stream's start to its
	// close. The bounds above are per stream, and memberlist's codec grows
	// a long string a copy at a time: 64 streams of 12 MiB compressed
	// bodies took a node to 3.2 GB of RSS. A stream that would pass it is
	// closed. One address (loopback aside) holds at most a quarter of
	// it; a cluster's push/pulls are a few KB a member.
	maxGossipStreamBytes = 128 << 20
)

// errGossipStreamTooLong is what memberlist reads past a stream's bound.
var errGossipStreamTooLong = errors.New("membership: gossip stream longer than a node sends")

// errGossipBudget is what a stream reads once the streams open hold
// maxGossipStreamBytes, or those of its address their share.
var errGossipBudget = fmt.Errorf("the gossip streams hold their %d MiB already, or this address its %d MiB", maxGossipStreamBytes>>20, maxGossipStreamBytes>>22)

// memberlist's message types (its net.go; part of its protocol).
const (
	gossipPushPull  = 6
	gossipUserMsg   = 8
	gossipCompress  = 9
	gossipEncrypt   = 10
	gossipHasLabel  = 244
	gossipLZWLitLen = 8
)

// Field names and types as memberlist's own structs, so the codec decodes
// the same values from the same bytes.
type pushPullHeader struct {
	Nodes        int
	UserStateLen int
	Join         bool
}

type userMsgHeader struct {
	UserMsgLen int
}

type compressed struct {
	Algo uint8
	Buf  []byte
}

// streamGate wraps the gossip transport's stream channel (see above).
type streamGate struct {
	memberlist.NodeAwareTransport
	timeout time.Duration
	ch      chan net.Conn
	slots   chan struct{}
	// perIP counts the streams each remote address holds slots for
	// (not loopback ones); guarded by smu.
	perIP   map[string]int
	done    chan struct{} // closed when Shutdown begins
	stopped chan struct{} // closed when the transport has stopped
	budget  streamBudget  // bytes held by the streams open
	// screening holds the streams whose header is being read, for
	// Shutdown to close: a slow one would hold it for the timeout.
	smu       sync.Mutex
	screening map[net.Conn]struct{}
	once      sync.Once
	log       *slog.Logger
	noise     *logthrottle.Throttle
	wg        sync.WaitGroup
}

func newStreamGate(t memberlist.NodeAwareTransport, timeout time.Duration, log *slog.Logger, noise *logthrottle.Throttle) *streamGate {
	g := &streamGate{
		NodeAwareTransport: t, timeout: timeout, log: log, noise: noise,
		ch: make(chan net.Conn), slots: make(chan struct{}, maxGossipStreams), done: make(chan struct{}),
		stopped: make(chan struct{}), screening: map[net.Conn]struct{}{}, perIP: map[string]int{},
		budget: streamBudget{size: maxGossipStreamBytes},
	}
	g.wg.Add(1)
	go g.run()
	return g
}

// StreamCh returns the streams that passed the gate.
func (g *streamGate) StreamCh() <-chan net.Conn { return g.ch }

// GetAutoBindPort returns the bound port, as memberlist.NetTransport's.
func (g *streamGate) GetAutoBindPort() int {
	return g.NodeAwareTransport.(interface{ GetAutoBindPort() int }).GetAutoBindPort()
}

// Shutdown stops the gate and the transport. The gate takes (and closes)
// the streams the transport still hands over until the transport has
// stopped: its accept loop blocks on handing one over, and its Shutdown
// waits for that loop.
func (g *streamGate) Shutdown() error {
	var err error
	g.once.Do(func() {
		close(g.done)
		g.smu.Lock()
		for c := range g.screening {
			c.Close()
		}
		g.smu.Unlock()
		err = g.NodeAwareTransport.Shutdown()
		close(g.stopped)
	})
	g.wg.Wait()
	return err
}

func (g *streamGate) run() {
	defer g.wg.Done()
	in := g.NodeAwareTransport.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case <-g.done:
				c.Close() // shutting down
				continue
			default:
			}
			ip := remoteip.Bounded(c)
			if !g.takeIP(ip) {
				g.refuse(c, fmt.Errorf("%d gossip streams from this address are open already", maxGossipStreamsPerIP))
				continue
			}
			select {
			case g.slots <- struct{}{}:
			default:
				g.releaseIP(ip)
				g.refuse(c, fmt.Errorf("%d gossip streams are open already", maxGossipStreams))
				continue
			}
			g.wg.Add(1)
			go g.screen(c, ip)
		case <-g.stopped:
			return
		}
	}
}

func (g *streamGate) release(ip string) {
	g.releaseIP(ip)
	<-g.slots
}

// takeIP counts a stream of ip, or reports that ip holds its share.
func (g *streamGate) takeIP(ip string) bool {
	if ip == "" {
		return true
	}
	g.smu.Lock()
	defer g.smu.Unlock()
	if g.perIP[ip] >= maxGossipStreamsPerIP {
		return false
	}
	g.perIP[ip]++
	return true
}

func (g *streamGate) releaseIP(ip string) {
	if ip == "" {
		return
	}
	g.smu.Lock()
	if g.perIP[ip]--; g.perIP[ip] <= 0 {
		delete(g.perIP, ip)
	}
	g.smu.Unlock()
}

// refuse closes c and logs why, throttled per kind of reason (the
// message up to its first number): anyone can cause it.
func (g *streamGate) refuse(c net.Conn, err error) {
	msg := "membership: gossip stream refused: " + err.Error()
	kind := msg
	if i := strings.IndexAny(msg, "0123456789"); i > 0 {
		kind = msg[:i]
	}
	g.noise.Log(g.log, slog.LevelWarn, kind, msg+" from="+c.RemoteAddr().String())
	c.Close()
}

// screen reads c's header within the transport's timeout and hands c on,
// its header bytes to be read again, or closes it.
func (g *streamGate) screen(c net.Conn, ip string) {
	defer g.wg.Done()
	g.smu.Lock()
	select {
	case <-g.done:
		g.smu.Unlock()
		g.release(ip)
		c.Close()
		return
	default:
	}
	g.screening[c] = struct{}{}
	g.smu.Unlock()
	defer func() {
		g.smu.Lock()
		delete(g.screening, c)
		g.smu.Unlock()
	}()
	c.SetReadDeadline(time.Now().Add(g.timeout))
	rec := &recorder{r: c, budget: &g.budget, ip: ip}
	err := checkStream(bufio.NewReader(rec))
	c.SetReadDeadline(time.Time{})
	if rec.spent { // checkStream may have taken the cut for a short header
		err = errGossipBudget
	}
	if err != nil {
		g.budget.put(ip, rec.held)
		g.release(ip)
		select {
		case <-g.done: // closed by Shutdown: nothing to warn of
			c.Close()
		default:
			g.refuse(c, err)
		}
		return
	}
	rc := &replayConn{Conn: c, pending: rec.buf.Bytes(), left: streamReadLimit(rec.buf.Bytes()),
		budget: &g.budget, ip: ip, held: rec.held, release: func() { g.release(ip) }}
	select {
	case g.ch <- rc:
	case <-g.done:
		rc.Close()
	}
}

// checkStream reads a stream's label, type and header as memberlist's
// handleConn and readStream do, and refuses a header that declares more
// than maxGossipMembers members or maxGossipUserBytes of user data, or a
// compressed body over maxGossipPlainBytes. An encrypted stream passes:
// memberlist reads its bytes as they come (at most 20 MiB), and only a
// holder of the key can make its header say anything.
func checkStream(r *bufio.Reader) error {
	if b, err := r.Peek(1); err != nil {
		return err
	} else if b[0] == gossipHasLabel {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return err
		}
		if _, err := r.Discard(int(h[1])); err != nil {
			return err
		}
	}
	t, err := r.ReadByte()
	if err != nil {
		return err
	}
	mh := &codec.MsgpackHandle{}
	switch t {
	case gossipEncrypt:
		return nil
	case gossipCompress:
		// The body is unpacked as it is read, never held: the codec grew
		// a byte string of untrusted declared length 256 KiB at a time,
		// copying all of it each time (40 MiB sent cost 3 GB of
		// allocations), and held it beside the gate's record of it.
		body, err := compressedBody(r)
		if err != nil {
			return fmt.Errorf("compressed stream: %w", err)
		}
		cr := &countReader{r: io.LimitReader(lzw.NewReader(body, lzw.LSB, gossipLZWLitLen), maxGossipPlainBytes+1)}
		br := bufio.NewReader(cr)
		inner, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("compressed stream: %w", err) // empty or corrupt: memberlist refuses it too
		}
		if err := checkHeader(inner, br, mh); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, br)
		if cr.n > maxGossipPlainBytes {
			return fmt.Errorf("compressed stream decompresses to over %d bytes", maxGossipPlainBytes)
		}
		if err != nil {
			return fmt.Errorf("compressed stream: %w", err)
		}
		if _, err := io.Copy(io.Discard, body); err != nil || body.N > 0 {
			return fmt.Errorf("compressed stream: body cut short (%v)", err)
		}
		return nil
	}
	return checkHeader(t, r, mh)
}

// compressedBody reads memberlist's compress struct up to its body, as
// memberlist's codec writes it (a map of Algo, a positive integer, then
// Buf, a byte string), and returns a reader of the body. Anything else,
// an algorithm but LZW, or a body over maxGossipCompressedBytes is an
// error: memberlist never sends it, or refuses it.
func compressedBody(r *bufio.Reader) (*io.LimitedReader, error) {
	var algo [1]byte
	var key [6]byte
	if _, err := io.ReadFull(r, key[:6]); err != nil {
		return nil, err
	}
	if string(key[:6]) != "\x82\xa4Algo" {
		return nil, fmt.Errorf("header %x is not memberlist's", key[:6])
	}
	if _, err := io.ReadFull(r, algo[:1]); err != nil {
		return nil, err
	}
	if algo[0] != 0 {
		return nil, fmt.Errorf("algorithm %#x", algo[0])
	}
	if _, err := io.ReadFull(r, key[:5]); err != nil {
		return nil, err
	}
	if string(key[:4]) != "\xa3Buf" {
		return nil, fmt.Errorf("field %x is not memberlist's", key[:4])
	}
	var n uint64
	var lenBytes int
	switch b := key[4]; {
	case b >= 0xa0 && b <= 0xbf:
		n = uint64(b & 0x1f)
	case b == 0xc4 || b == 0xd9:
		lenBytes = 1
	case b == 0xc5 || b == 0xda:
		lenBytes = 2
	case b == 0xc6 || b == 0xdb:
		lenBytes = 4
	default:
		return nil, fmt.Errorf("body type %#x", b)
	}
	var l [4]byte
	if _, err := io.ReadFull(r, l[:lenBytes]); err != nil {
		return nil, err
	}
	for _, b := range l[:lenBytes] {
		n = n<<8 | uint64(b)
	}
	if n > maxGossipCompressedBytes {
		return nil, fmt.Errorf("body of %d bytes, over %d", n, maxGossipCompressedBytes)
	}
	return &io.LimitedReader{R: r, N: int64(n)}, nil
}

// checkHeader checks the header of a stream of type t.
func checkHeader(t byte, r io.Reader, mh *codec.MsgpackHandle) error {
	switch t {
	case gossipPushPull:
		var h pushPullHeader
		if err := codec.NewDecoder(r, mh).Decode(&h); err != nil {
			return nil // memberlist refuses it
		}
		if h.Nodes > maxGossipMembers {
			return fmt.Errorf("push/pull header declares %d members, over the limit of %d", h.Nodes, maxGossipMembers)
		}
		if h.UserStateLen > maxGossipUserBytes {
			return fmt.Errorf("push/pull header declares %d bytes of user state, over the limit of %d", h.UserStateLen, maxGossipUserBytes)
		}
	case gossipUserMsg:
		var h userMsgHeader
		if err := codec.NewDecoder(r, mh).Decode(&h); err != nil {
			return nil
		}
		if h.UserMsgLen > maxGossipUserBytes {
			return fmt.Errorf("user message header declares %d bytes, over the limit of %d", h.UserMsgLen, maxGossipUserBytes)
		}
	}
	return nil
}

// recorder keeps every byte read through it, each taken from budget.
type recorder struct {
	r      io.Reader
	buf    bytes.Buffer
	budget *streamBudget
	ip     string // the budget's share (remoteip.Bounded; "" for loopback)
	held   int64  // taken from budget
	spent  bool   // budget refused a read
}

func (r *recorder) Read(p []byte) (int, error) {
	if r.spent {
		return 0, errGossipBudget
	}
	n, err := r.r.Read(p)
	if !r.budget.take(r.ip, int64(n)) {
		r.spent = true
		return 0, errGossipBudget
	}
	r.held += int64(n)
	r.buf.Write(p[:n])
	return n, err
}

// streamBudget counts the bytes the gossip streams hold (see
// maxGossipStreamBytes), in all and by remote address: one address (not
// loopback, "") holds at most a quarter, so that one client cannot spend
// it all and keep the peers' push/pulls out.
type streamBudget struct {
	mu         sync.Mutex
	used, size int64
	perIP      map[string]int64
}

func (b *streamBudget) take(ip string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.size || (ip != "" && b.perIP[ip]+n > b.size/4) {
		return false
	}
	b.used += n
	if ip != "" && n > 0 {
		if b.perIP == nil {
			b.perIP = map[string]int64{}
		}
		b.perIP[ip] += n
	}
	return true
}

func (b *streamBudget) put(ip string, n int64) {
	b.mu.Lock()
	b.used -= n
	if ip != "" {
		if b.perIP[ip] -= n; b.perIP[ip] <= 0 {
			delete(b.perIP, ip)
		}
	}
	b.mu.Unlock()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// streamReadLimit returns how many bytes memberlist may read from a stream
// that begins with first (what the gate read), or -1 for no bound. The
// header checks bound what a stream declares, not what it sends: the codec
// reads a string or byte string of untrusted length 256 KiB at a time,
// copying all of it each time, so a TCP ping naming a node with a 1 GiB
// name, sent for the TCP timeout, grew a node by tens of MB per stream
// (16 such streams: 32 MB to 759 MB of RSS). Each kind of stream is cut at
// what a node can send of it; an encrypted one is bounded by memberlist.
func streamReadLimit(first []byte) int64 {
	if len(first) > 1 && first[0] == gossipHasLabel {
		first = first[min(len(first), 2+int(first[1])):]
	}
	if len(first) == 0 {
		return maxGossipOtherStreamBytes
	}
	switch first[0] {
	case gossipEncrypt:
		return -1
	case gossipCompress:
		return maxGossipCompressedBytes + 4<<10
	case gossipPushPull:
		return maxGossipPlainBytes
	case gossipUserMsg:
		return maxGossipUserBytes + 4<<10
	}
	return maxGossipOtherStreamBytes
}

// replayConn reads the bytes the gate read first, then the connection, up
// to left bytes in all (streamReadLimit); closing it frees its gate slot.
type replayConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
	left    int64 // -1: no bound
	budget  *streamBudget
	ip      string // the budget's share
	held    int64  // taken from budget, given back at Close
	once    sync.Once
	release func()
}

func (c *replayConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.left == 0 {
		c.mu.Unlock()
		return 0, errGossipStreamTooLong
	}
	if c.left > 0 && int64(len(p)) > c.left {
		p = p[:c.left]
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.count(n)
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.budget.take(c.ip, int64(n)) {
		c.left = 0
		return 0, errGossipBudget
	}
	c.held += int64(n)
	c.count(n)
	return n, err
}

func (c *replayConn) count(n int) {
	if c.left > 0 {
		c.left -= int64(n)
	}
}

func (c *replayConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.budget.put(c.ip, c.held)
		c.held = 0
		c.mu.Unlock()
		c.release()
	})
	return c.Conn.Close()
}
