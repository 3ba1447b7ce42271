package membership

import (
	"bufio"
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// forgedStream is a gossip stream of type t whose msgpack header is h,
// and nothing more: what an attacker without the gossip key can send.
func forgedStream(t *testing.T, typ byte, h any) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte(typ)
	if err := codec.NewEncoder(&b, &codec.MsgpackHandle{}).Encode(h); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compressedStream wraps plain (type byte and body) as memberlist's
// compressMsg does.
func compressedStream(t *testing.T, plain []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	w := lzw.NewWriter(&z, lzw.LSB, gossipLZWLitLen)
	w.Write(plain)
	w.Close()
	return forgedStream(t, gossipCompress, &compressed{Algo: 0, Buf: z.Bytes()})
}

// TestGossipStreamForgedHeaders: a stream whose header declares a million
// members, 20 MiB of user state or a 20 MiB user message, plainly,
// compressed or behind a label, is closed by the gate without memberlist
// allocating for it (before the gate, each push/pull allocated 104 MB and
// held the connection for the TCP timeout), a warning names the reason,
// and gossip goes on.
func TestGossipStreamForgedHeaders(t *testing.T) {
	sink := newLogSink(t)
	// The LAN profile's TCP timeout (memberlist's 10 s) is longer than the
	// read deadline below: a stream the gate did not close fails the read
	// instead of ending in time, with no clock in the assertion.
	a := startNode(t, sink, Config{Name: "a", Profile: ProfileLAN})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "two members", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })

	huge := forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: 1 << 20})
	label := append([]byte{gossipHasLabel, 2, 'x', 'y'}, huge...)
	for name, s := range map[string][]byte{
		"members":         huge,
		"user state":      forgedStream(t, gossipPushPull, &pushPullHeader{UserStateLen: 20 << 20}),
		"user message":    forgedStream(t, gossipUserMsg, &userMsgHeader{UserMsgLen: 20 << 20}),
		"compressed":      compressedStream(t, huge),
		"labelled":        label,
		"compressed bomb": compressedStream(t, append(forgedStream(t, gossipPushPull, &pushPullHeader{}), make([]byte, maxGossipPlainBytes+1)...)),
	} {
		least := uint64(math.MaxUint64)
		for range 3 { // TotalAlloc counts every goroutine's: the least of three tries
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			c, err := net.Dial("tcp", a.Addr())
			if err != nil {
				t.Fatal(err)
			}
			c.Write(s)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(c) // the gate closes at once; memberlist waited out its TCP timeout
			c.Close()
			if err != nil {
				t.Fatalf("%s: the stream was not closed by the gate: %v", name, err)
			}
			runtime.ReadMemStats(&after)
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		if least > 16<<20 && name != "compressed bomb" { // the bomb's own 8 MiB of zeros, compressed, are built here
			t.Errorf("%s: %d bytes allocated", name, least)
		}
	}
	waitFor(t, 5*time.Second, "the refusal logged", func() bool { return sink.contains("over the limit of 4096") })
	if !sink.contains("decompresses to over") || !sink.contains("user message header declares") {
		t.Error("a refusal was not logged")
	}
	if len(a.Members()) != 2 {
		t.Errorf("members after the attack: %v", a.Members())
	}
}

// TestGossipStreamGatePassesRealStreams: a real push/pull (compressed, as
// memberlist sends it) and a header at the limits pass the gate with their
// bytes intact.
func TestGossipStreamGatePassesRealStreams(t *testing.T) {
	for _, s := range [][]byte{
		forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: maxGossipMembers, UserStateLen: maxGossipUserBytes}),
		compressedStream(t, forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: 3})),
		forgedStream(t, gossipUserMsg, &userMsgHeader{UserMsgLen: 100}),
		{gossipEncrypt, 0xff, 0xff, 0xff, 0xff},
		{0, 1, 2},
	} {
		if err := checkStream(bufioOf(s)); err != nil {
			t.Errorf("%x refused: %v", s, err)
		}
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], 7)
	if err := checkStream(bufioOf(forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: maxGossipMembers + 1}))); err == nil {
		t.Error("one member over the limit passed")
	}
}

func bufioOf(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// lateTransport hands over one more stream while it shuts down, as
// memberlist's NetTransport does when its accept loop took a connection
// just before its listener closed: its Shutdown waits for that loop, which
// waits for someone to take the stream.
type lateTransport struct {
	memberlist.NodeAwareTransport
	ch   chan net.Conn
	late net.Conn
}

func (t *lateTransport) StreamCh() <-chan net.Conn { return t.ch }

func (t *lateTransport) Shutdown() error {
	t.ch <- t.late
	return nil
}

// TestGossipGateShutdownTakesLateStream: the gate's Shutdown returns, and
// closes the stream the transport hands over while it stops. The gate used
// to stop taking streams first, and a node's shutdown hung for good (seen
// in CI: TestConfigWritesThatChangeNothing timed out in NetTransport's
// Shutdown).
func TestGossipGateShutdownTakesLateStream(t *testing.T) {
	late, peer := net.Pipe()
	defer peer.Close()
	tr := &lateTransport{ch: make(chan net.Conn), late: late}
	g := newStreamGate(tr, time.Second, slog.New(slog.DiscardHandler), logthrottle.New(clock.Real{}, 0, 0))
	done := make(chan error, 1)
	go func() { done <- g.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown hung: nothing took the stream the transport handed over while it stopped")
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the late stream: read %v, want it closed (EOF)", err)
	}
}

// TestGossipGateShutdownClosesScreening: Shutdown closes a stream whose
// header is still being read rather than waiting out the read timeout.
func TestGossipGateShutdownClosesScreening(t *testing.T) {
	tr := &lateTransport{ch: make(chan net.Conn)}
	g := newStreamGate(tr, time.Hour, slog.New(slog.DiscardHandler), logthrottle.New(clock.Real{}, 0, 0))
	slow, peer := net.Pipe()
	defer peer.Close()
	tr.ch <- slow // taken by the gate, which now waits for its header
	tr.late, _ = net.Pipe()
	waitScreening := time.Now().Add(10 * time.Second)
	for {
		g.smu.Lock()
		n := len(g.screening)
		g.smu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(waitScreening) {
			t.Fatal("the stream never reached the screen")
		}
		time.Sleep(time.Millisecond) // sleep-ok: polling interval of a condition wait
	}
	done := make(chan error, 1)
	go func() { done <- g.Shutdown() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown waited for a stream's header (read timeout: an hour)")
	}
}

// fromConn is one end of a net.Pipe that says it comes from addr.
type fromConn struct {
	net.Conn
	addr net.Addr
}

func (c fromConn) RemoteAddr() net.Addr { return c.addr }

// TestGossipGateOneAddressCannotTakeEverySlot: a client that opens gossip
// connections and sends nothing (no gossip key needed) held every one of
// the gate's slots, each for the TCP timeout, and opened the next as one
// closed: a peer's push/pull, and a new node's join through this node,
// were refused ("64 gossip streams are open already"; seen with the real
// binary: ten join attempts over 10 s failed). One address now holds at
// most maxGossipStreamsPerIP of them; a stream from another address is
// screened and handed on, and loopback streams (a cluster on one machine)
// are not bounded by address.
func TestGossipGateOneAddressCannotTakeEverySlot(t *testing.T) {
	tr := &lateTransport{ch: make(chan net.Conn)}
	g := newStreamGate(tr, time.Hour, slog.New(slog.DiscardHandler), logthrottle.New(clock.Real{}, 0, 0))
	defer func() {
		tr.late, _ = net.Pipe()
		g.Shutdown()
	}()
	attacker := &net.TCPAddr{IP: net.ParseIP("10.0.0.6"), Port: 40000}
	var held []net.Conn
	for i := 0; i < maxGossipStreams+10; i++ {
		c, p := net.Pipe()
		held = append(held, p)
		tr.ch <- fromConn{c, attacker} // idle: never writes a byte
	}
	defer func() {
		for _, p := range held {
			p.Close()
		}
	}()
	send := func(from net.Addr) {
		t.Helper()
		c, p := net.Pipe()
		defer p.Close()
		tr.ch <- fromConn{c, from}
		go p.Write(forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: 3}))
		select {
		case got := <-g.StreamCh():
			if got.RemoteAddr().String() != from.String() {
				t.Fatalf("handed on a stream from %v, want the one from %v", got.RemoteAddr(), from)
			}
			got.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("a push/pull from %v was not handed on while one address held idle streams", from)
		}
	}
	send(&net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 7946})
	send(&net.TCPAddr{IP: net.ParseIP("10.0.0.3"), Port: 7946})

	// Loopback is not bounded by address: more than maxGossipStreamsPerIP
	// idle streams from 127.0.0.1 all take slots.
	g2tr := &lateTransport{ch: make(chan net.Conn)}
	g2 := newStreamGate(g2tr, time.Hour, slog.New(slog.DiscardHandler), logthrottle.New(clock.Real{}, 0, 0))
	defer func() {
		g2tr.late, _ = net.Pipe()
		g2.Shutdown()
	}()
	for i := 0; i < maxGossipStreamsPerIP+2; i++ {
		c, p := net.Pipe()
		held = append(held, p)
		g2tr.ch <- fromConn{c, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000 + i}}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g2.slots) != maxGossipStreamsPerIP+2 {
		if time.Now().After(deadline) {
			t.Fatalf("loopback streams hold %d slots, want %d", len(g2.slots), maxGossipStreamsPerIP+2)
		}
		time.Sleep(time.Millisecond) // sleep-ok: polling interval of a condition wait
	}
}

// TestGossipGateBoundsCompressedSize: a compressed stream whose body
// declares 1 GiB (no gossip key needed: the gate reads it before
// memberlist refuses anything) is refused without the gate reading more
// than a compressed push/pull can hold, or copying what it read over and
// over. Before, the gate read whatever came until the TCP
// timeout, growing the body 256 KiB at a time with a copy of all of it
// each time: 40 MiB sent cost 3 GB of allocations, and eight such streams
// took a node from 33 MB to 790 MB of RSS.
func TestGossipGateBoundsCompressedSize(t *testing.T) {
	var head bytes.Buffer
	head.WriteByte(gossipCompress)
	head.Write([]byte{0x82, 0xa4, 'A', 'l', 'g', 'o', 0x00, 0xa3, 'B', 'u', 'f', 0xdb}) // Buf: raw32
	head.Write(binary.BigEndian.AppendUint32(nil, 1<<30))
	body := &countReader{r: io.LimitReader(zeros{}, 40<<20)}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := checkStream(bufio.NewReader(io.MultiReader(&head, body)))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("a 1 GiB compressed body: %v, want a refusal for its size", err)
	}
	if body.n > maxGossipCompressedBytes+64<<10 {
		t.Errorf("the gate read %d bytes of the body, want at most %d", body.n, maxGossipCompressedBytes)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 128<<20 {
		t.Errorf("%d bytes allocated", alloc)
	}
}

// TestGossipCompressedLimitFitsPlainLimit: LZW with 8-bit literals spends
// at most 12 bits on a byte that does not compress, so the largest
// push/pull the gate lets through unpacked (maxGossipPlainBytes) fits
// maxGossipCompressedBytes packed, and the size bound refuses no stream a
// node can send; one of a MiB that does not compress passes the gate.
func TestGossipCompressedLimitFitsPlainLimit(t *testing.T) {
	plain := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(plain)
	s := compressedStream(t, append(forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: 3}), plain...))
	if len(s) > len(plain)*3/2+1<<10 {
		t.Fatalf("%d bytes compressed to %d, over 1.5 times", len(plain), len(s))
	}
	if maxGossipCompressedBytes < maxGossipPlainBytes*3/2 {
		t.Fatalf("maxGossipCompressedBytes %d is under 1.5 times maxGossipPlainBytes", maxGossipCompressedBytes)
	}
	if err := checkStream(bufioOf(s)); err != nil {
		t.Fatal(err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestGossipStreamReadBounded: a TCP ping whose node name declares 1 GiB
// and keeps coming is cut by the node after what a ping can hold, well
// before memberlist's TCP timeout (10 s with the LAN profile). Before, the
// node read it for the whole timeout, growing the name 256 KiB at a time
// with a copy of all of it each time: 16 such streams took a node from
// 32 MB to 759 MB of RSS.
func TestGossipStreamReadBounded(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a", Profile: ProfileLAN})
	c, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := []byte{0, 0x82, 0xa5, 'S', 'e', 'q', 'N', 'o', 0x01, 0xa4, 'N', 'o', 'd', 'e', 0xdb}
	head = binary.BigEndian.AppendUint32(head, 1<<30)
	go func() {
		c.Write(head)
		chunk := bytes.Repeat([]byte{'a'}, 1<<20)
		for range 256 { // more than the kernel's buffers hold, less than the name
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the node still reads the stream")
	}
	waitFor(t, 5*time.Second, "the decode failure logged", func() bool { return sink.contains("longer than a node sends") })
}

// TestGossipStreamReadLimits: each kind of stream gets its bound, a label
// in front or not.
func TestGossipStreamReadLimits(t *testing.T) {
	for _, tc := range []struct {
		first []byte
		want  int64
	}{
		{[]byte{gossipEncrypt, 1}, -1},
		{[]byte{gossipHasLabel, 1, 'x', gossipEncrypt}, -1},
		{[]byte{gossipCompress, 0x82}, maxGossipCompressedBytes + 4<<10},
		{[]byte{gossipPushPull, 0x83}, maxGossipPlainBytes},
		{[]byte{gossipHasLabel, 2, 'x', 'y', gossipUserMsg}, maxGossipUserBytes + 4<<10},
		{[]byte{0, 0x82}, maxGossipOtherStreamBytes},
		{[]byte{gossipHasLabel, 9}, maxGossipOtherStreamBytes},
	} {
		if got := streamReadLimit(tc.first); got != tc.want {
			t.Errorf("%x: %d, want %d", tc.first, got, tc.want)
		}
	}
}

// TestGossipStreamsShareABudget: the bytes the gossip streams hold, read
// by the gate or by memberlist, come from one budget, of which one address
// (loopback aside) holds at most a quarter: a stream that would pass
// either is cut, and a closed stream gives its bytes back. Before, each
// stream had bounds of its own only, and 64 streams of 12 MiB compressed
// bodies took a node to 3.2 GB of RSS.
func TestGossipStreamsShareABudget(t *testing.T) {
	tr := &lateTransport{ch: make(chan net.Conn)}
	g := newStreamGate(tr, time.Hour, slog.New(slog.DiscardHandler), logthrottle.New(clock.Real{}, 0, 0))
	g.budget.size = 4 << 20
	defer func() {
		tr.late, _ = net.Pipe()
		g.Shutdown()
	}()
	waitUsed := func(what string, cond func(int64) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			g.budget.mu.Lock()
			used := g.budget.used
			g.budget.mu.Unlock()
			if cond(used) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %d bytes held", what, used)
			}
			time.Sleep(time.Millisecond) // sleep-ok: polling interval of a condition wait
		}
	}
	// hold starts a compressed stream from ip whose body stops short: the
	// gate holds what came.
	var held []net.Conn
	defer func() {
		for _, p := range held {
			p.Close()
		}
	}()
	hold := func(ip string, n int) {
		c, p := net.Pipe()
		held = append(held, p)
		tr.ch <- fromConn{c, &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
		head := []byte{gossipCompress, 0x82, 0xa4, 'A', 'l', 'g', 'o', 0x00, 0xa3, 'B', 'u', 'f', 0xdb}
		head = binary.BigEndian.AppendUint32(head, uint32(n+1<<10))
		go func() {
			p.Write(head)
			p.Write(make([]byte, n)) // LZW of zeros: unpacked as it comes
		}()
	}
	// push sends a push/pull from ip, which passes the gate on its
	// header, and reads its body as memberlist would.
	push := func(ip string, n int) error {
		t.Helper()
		c, p := net.Pipe()
		defer p.Close()
		tr.ch <- fromConn{c, &net.TCPAddr{IP: net.ParseIP(ip), Port: 7946}}
		go func() {
			p.Write(forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: 3}))
			p.Write(make([]byte, n))
			p.Close()
		}()
		select {
		case got := <-g.StreamCh():
			defer got.Close()
			b, err := io.ReadAll(got)
			if err == nil && len(b) < n {
				t.Fatalf("read %d bytes of %d", len(b), n)
			}
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("the push/pull from %s was not handed on", ip)
		}
		return nil
	}

	hold("10.0.0.6", 900<<10)
	waitUsed("the first stream's bytes", func(u int64) bool { return u >= 900<<10 })
	if err := push("10.0.0.6", 200<<10); err != errGossipBudget {
		t.Errorf("past the address's share: %v, want %v", err, errGossipBudget)
	}
	if err := push("10.0.0.2", 200<<10); err != nil {
		t.Errorf("another address: %v", err)
	}
	hold("127.0.0.1", 3<<20)
	waitUsed("the loopback stream's bytes", func(u int64) bool { return u >= 900<<10+3<<20 })
	if err := push("10.0.0.3", 300<<10); err != errGossipBudget {
		t.Errorf("past the budget: %v, want %v", err, errGossipBudget)
	}
	for _, p := range held {
		p.Close() // the streams end: their bytes come back
	}
	waitUsed("the held bytes given back", func(u int64) bool { return u == 0 })
	if err := push("10.0.0.3", 300<<10); err != nil {
		t.Errorf("within the budget again: %v", err)
	}
	waitUsed("every byte given back", func(u int64) bool { return u == 0 })
}

// TestGossipGateUnpacksCompressedAsItReads: the gate checks a compressed
// push/pull (3 MiB here) without holding its body: it allocates far less
// than the body. Before, the codec read the body
// into a slice grown a MiB at a time (256 KiB before that), each step a
// copy of all of it, beside the gate's record of the stream.
func TestGossipGateUnpacksCompressedAsItReads(t *testing.T) {
	plain := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{2}).Read(plain)
	s := compressedStream(t, append(forgedStream(t, gossipPushPull, &pushPullHeader{Nodes: 3}), plain...))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := checkStream(bufioOf(s))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("%d bytes allocated to check a stream of %d", alloc, len(s))
	}
	for _, cut := range []int{len(s) - 1, 20} {
		if err := checkStream(bufioOf(s[:cut])); err == nil {
			t.Errorf("a stream cut to %d bytes passed", cut)
		}
	}
}
