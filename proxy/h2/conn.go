package h2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Handler runs one stream: it reads the request from the Stream and
// writes the response to it. The stream is ended when the handler
// returns: reset if the response did not finish.
type Handler func(*Stream)

const (
	initialWindow   = 65535 // RFC 9113 §6.9.2
	defaultMaxFrame = 16384 // RFC 9113 §4.2
	maxWindow       = 1<<31 - 1
	writeBufSize    = 32 << 10
	recentResets    = 32 // stream ids we reset whose late frames are ignored
)

// Conn is one HTTP/2 server connection.
type Conn struct {
	cfg     Config
	nc      net.Conn
	r       io.Reader
	handler Handler
	fr      *http2.Framer
	hr      headerReader // the reader goroutine's only
	ctx     context.Context
	cancel  context.CancelCauseFunc

	// write side, guarded by wmu
	wmu         sync.Mutex
	bw          *bufio.Writer
	henc        *hpack.Encoder
	hbuf        bytes.Buffer
	dataHdr     [9]byte       // a DATA frame's header (writeDataLocked)
	vw          BuffersWriter // nc, when it writes several buffers in one call (gather.go)
	capture     bool          // connWriter keeps what the buffer flushes in captured
	captured    []byte
	gather      [][]byte // a gathered write's buffers, reused
	gatherHdrs  []byte   // its frame headers, reused
	flushWanted bool
	werr        error     // sticky: the first write failure
	wdl         time.Time // the write deadline in force
	wwait       atomic.Int32
	flushQueued bool          // the flusher is to flush (flush.go)
	flusherUp   bool          // the flusher runs
	flushKick   chan struct{} // wakes the flusher (buffered, 1)

	// connection state, guarded by mu; taken after wmu when both are held
	mu           sync.Mutex
	streams      map[uint32]*Stream
	maxClientID  uint32
	sendWin      int64 // connection send window
	peerInitWin  int32
	peerMaxFrame uint32
	recvWin      int32 // connection receive window left to the client
	recvUnacked  int32 // body bytes consumed, not yet returned by WINDOW_UPDATE
	running      int   // handlers running
	lastIdle     time.Time
	closing      bool   // the connection is being torn down
	drain        int    // 0, drainPinged (first GOAWAY sent), drainFinal (last id fixed)
	lastStreamID uint32 // with drainFinal: streams above it are refused
	finalSent    bool   // the drain's second GOAWAY is written: the connection may end
	resetIDs     [recentResets]uint32
	resetNext    int
	idleTimer    *time.Timer
	drainTimer   *time.Timer

	flood     floodGuard  // the overhead frames the client may still send
	rapid     rapidResets // the client's early resets (reader only)
	opened    uint64      // streams the client opened (reader only)
	lingering bool        // a GOAWAY for an error was sent (the reader's)

	handlers    sync.WaitGroup // the stream workers
	work        chan *Stream   // hands a stream to an idle worker (unbuffered)
	idleWorkers atomic.Int32
}

const (
	drainPinged = 1
	drainFinal  = 2
)

// NewConn prepares a server connection on nc. r reads the connection (it
// may hold bytes already read, the preface among them); it should be
// buffered, as the Framer reads a frame's header and payload separately.
// With r nil, nc is read through a new buffer.
func NewConn(nc net.Conn, r io.Reader, cfg Config, h Handler) *Conn {
	cfg.setDefaults()
	c := &Conn{
		cfg:          cfg,
		nc:           nc,
		handler:      h,
		streams:      make(map[uint32]*Stream),
		sendWin:      initialWindow,
		peerInitWin:  initialWindow,
		peerMaxFrame: defaultMaxFrame,
		recvWin:      initialWindow,
		work:         make(chan *Stream),
		flushKick:    make(chan struct{}, 1),
		flood:        floodGuard{left: floodBurst, now: time.Now},
	}
	if r == nil {
		r = bufio.NewReaderSize(nc, 16<<10)
	}
	c.r = r
	c.bw = bufio.NewWriterSize(connWriter{c}, writeBufSize)
	c.vw, _ = nc.(BuffersWriter)
	c.fr = http2.NewFramer(c.bw, r)
	c.fr.SetReuseFrames()
	c.fr.MaxHeaderListSize = cfg.MaxHeaderListSize
	c.hr.dec = hpack.NewDecoder(4096, nil)
	c.hr.dec.SetEmitFunc(c.hr.emit)
	// A string is held to what a block's wire allowance can carry (a
	// Huffman-coded string decodes to 8/5 of its bytes at the most), not
	// to MaxHeaderListSize: a field over the list limit is refused with
	// 431 like any list over it, and one the decoder refused would end
	// the connection, its HPACK state lost.
	c.hr.dec.SetMaxStringLength(int(2 * c.blockWireMax()))
	c.fr.SetMaxReadFrameSize(defaultMaxFrame)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	// The server preface goes first into the buffer, so that it precedes
	// a GOAWAY from a Shutdown that comes before Serve; Serve flushes it.
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: cfg.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(cfg.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: cfg.MaxHeaderListSize},
	)
	if d := cfg.ConnWindow - initialWindow; d > 0 {
		c.fr.WriteWindowUpdate(0, uint32(d))
	}
	c.recvWin = cfg.ConnWindow
	return c
}

var clientPreface = []byte(http2.ClientPreface)

// errConnClosed is what a stream sees once its connection is gone.
var errConnClosed = errors.New("h2: connection closed")

// Serve runs the connection until it ends: the client leaves, a protocol
// error, the idle timeout, or the end of a drain. It returns after every
// handler returned.
func (c *Conn) Serve() error {
	err := c.serve()
	c.teardown(err)
	if c.lingering {
		c.linger()
	}
	c.handlers.Wait()
	return err
}

func (c *Conn) serve() error {
	c.lockWrite()
	c.flushWanted = true // the server preface, written by NewConn
	c.unlockWrite()

	c.nc.SetReadDeadline(time.Now().Add(c.cfg.PrefaceTimeout))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.r, pre[:]); err != nil {
		return err
	}
	if !bytes.Equal(pre[:], clientPreface) {
		c.goAway(http2.ErrCodeProtocol, "invalid connection preface")
		return errors.New("h2: invalid connection preface")
	}
	c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.lastIdle = time.Now()
	c.flood.refilled = c.flood.now()
	c.idleTimer = time.AfterFunc(c.cfg.IdleTimeout, c.onIdle)
	c.mu.Unlock()

	for {
		f, err := c.readFrame()
		fromFramer := err != nil
		if err == nil {
			err = c.process(f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			c.noteRefused(se, fromFramer)
			c.streamError(se)
			if err = c.overhead(se); err == nil {
				continue
			}
		}
		if c.flooded(err) {
			return err
		}
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			detail := ""
			if d := c.fr.ErrorDetail(); d != nil {
				detail = d.Error()
			}
			c.goAway(http2.ErrCode(ce), detail)
			return err
		}
		if errors.Is(err, http2.ErrFrameTooLarge) {
			c.goAway(http2.ErrCodeFrameSize, "frame too large")
			return err
		}
		return err // the connection failed or the client left
	}
}

// process handles one frame on the reader goroutine.
func (c *Conn) process(f any) error {
	switch f := f.(type) {
	case *fieldBlock:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	}
	// The other frames ask for nothing: each spends the flood budget.
	if err := c.overhead(f); err != nil {
		return err
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			if f.Data == drainPing {
				c.finalGoAway()
			}
			return nil
		}
		c.lockWrite()
		c.fr.WritePing(true, f.Data)
		c.flushWanted = true
		c.unlockWrite()
		return nil
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		if f.StreamID > c.maxClientID {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		st := c.streams[f.StreamID]
		if st != nil {
			c.removeLocked(st)
		}
		c.mu.Unlock()
		if st != nil {
			st.fail(fmt.Errorf("h2: stream reset by the client (%v)", f.ErrCode), true)
			return c.clientReset()
		}
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("stream depends on itself")}
		}
		return nil
	case *http2.GoAwayFrame:
		// The client is leaving: the connection drains as for Shutdown,
		// and ends, cleanly, once its streams are done. Its GOAWAY's last
		// stream id is about streams the server initiates (none); it
		// bars the server, not the client, from opening streams (RFC 9113
		// section 6.8), so a stream the client opens before the drain's
		// second GOAWAY is served (as nginx does), one after it refused
		// with REFUSED_STREAM, which the client may retry. Ending the
		// connection at the GOAWAY left such a stream unanswered.
		c.Shutdown()
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types are ignored (RFC 9113 §5.5)
}

func (c *Conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		return err
	}
	// The values apply, in order, and the ACK is written, under the write
	// lock: no frame sized by the new values can go out before the ACK.
	c.lockWrite()
	defer c.unlockWrite()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			defer c.mu.Unlock()
			delta := int64(s.Val) - int64(c.peerInitWin)
			c.peerInitWin = int32(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				st.wakeWriter()
			}
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerMaxFrame = s.Val
			c.mu.Unlock()
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSize(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.fr.WriteSettingsAck()
	c.flushWanted = true
	return nil
}

func (c *Conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if inc == 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.sendWin += inc
		if c.sendWin > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		for _, st := range c.streams {
			st.wakeWriter()
		}
		return nil
	}
	if f.StreamID > c.maxClientID {
		return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil // closed: allowed for a while after
	}
	if inc == 0 {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("WINDOW_UPDATE of 0")}
	}
	st.sendWin += inc
	if st.sendWin > maxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl, Cause: errors.New("window over 2^31-1")}
	}
	st.wakeWriter()
	return nil
}

func (c *Conn) processData(f *http2.DataFrame) error {
	if len(f.Data()) == 0 && !f.StreamEnded() {
		if err := c.overhead(f); err != nil {
			return err
		}
	}
	id := f.StreamID
	flow := int32(f.Length)
	c.mu.Lock()
	if flow > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= flow
	st := c.streams[id]
	if st == nil || st.recvDone {
		switch {
		case id > c.maxClientID:
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		case st == nil && c.wasResetLocked(id):
			c.mu.Unlock()
			c.returnConnFlow(flow) // late frames of a stream we reset
			return nil
		}
		c.mu.Unlock()
		c.returnConnFlow(flow)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed, Cause: errors.New("DATA on a closed stream")}
	}
	if flow > st.recvWin {
		c.mu.Unlock()
		c.returnConnFlow(flow)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl, Cause: errors.New("DATA over the stream's window")}
	}
	st.recvWin -= flow
	data := f.Data()
	st.received += int64(len(data))
	if st.ContentLength >= 0 && st.received > st.ContentLength {
		c.mu.Unlock()
		c.returnConnFlow(flow)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol, Cause: errors.New("DATA beyond content-length")}
	}
	end := f.StreamEnded()
	if end {
		if st.ContentLength >= 0 && st.received != st.ContentLength {
			c.mu.Unlock()
			c.returnConnFlow(flow)
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol, Cause: errors.New("body shorter than content-length")}
		}
		st.recvDone = true
	}
	c.mu.Unlock()
	if pad := flow - int32(len(data)); pad > 0 {
		st.consumed(int(pad)) // padding counts against the windows; give it back now
	}
	st.deliver(data, end)
	if len(data) > 0 {
		c.useful(floodPerDataIn)
	}
	return nil
}

// returnConnFlow gives back connection window for DATA nobody will read.
func (c *Conn) returnConnFlow(n int32) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	c.recvUnacked += n
	send := c.connUpdateLocked()
	c.mu.Unlock()
	if send > 0 {
		c.writeWindowUpdates(send, 0, 0)
	}
}

// connUpdateLocked returns the connection WINDOW_UPDATE increment due now,
// if any: consumed bytes are returned once they reach a quarter window.
func (c *Conn) connUpdateLocked() uint32 {
	if c.recvUnacked < c.cfg.ConnWindow/4 || c.closing {
		return 0
	}
	n := c.recvUnacked
	c.recvWin += n
	c.recvUnacked = 0
	return uint32(n)
}

// writeWindowUpdates returns receive window: connInc to the connection,
// inc to stream id.
func (c *Conn) writeWindowUpdates(connInc uint32, id uint32, inc uint32) {
	c.lockWrite()
	if connInc > 0 {
		c.fr.WriteWindowUpdate(0, connInc)
	}
	if inc > 0 {
		c.fr.WriteWindowUpdate(id, inc)
	}
	c.flushWanted = true
	c.unlockWrite()
}

// streamError resets one stream after a stream-level protocol error.
func (c *Conn) streamError(se http2.StreamError) {
	c.mu.Lock()
	if se.StreamID > c.maxClientID && se.StreamID%2 == 1 {
		c.maxClientID = se.StreamID // the HEADERS that opened it was invalid
	}
	st := c.streams[se.StreamID]
	if st != nil {
		c.removeLocked(st)
	}
	c.noteResetLocked(se.StreamID)
	c.mu.Unlock()
	if st != nil {
		st.fail(fmt.Errorf("h2: stream error: %v", se), true)
	}
	c.writeRST(se.StreamID, se.Code)
}

func (c *Conn) writeRST(id uint32, code http2.ErrCode) {
	c.lockWrite()
	c.fr.WriteRSTStream(id, code)
	c.flushWanted = true
	c.unlockWrite()
}

func (c *Conn) noteResetLocked(id uint32) {
	c.resetIDs[c.resetNext%recentResets] = id
	c.resetNext++
}

func (c *Conn) wasResetLocked(id uint32) bool {
	for _, r := range c.resetIDs {
		if r == id {
			return true
		}
	}
	return false
}

// removeLocked takes an open stream out of the map: it no longer counts
// against the concurrency limit. Its handler may still run.
func (c *Conn) removeLocked(st *Stream) {
	if c.streams[st.id] != st {
		return
	}
	delete(c.streams, st.id)
	if len(c.streams) == 0 {
		c.lastIdle = time.Now()
	}
}

// unlockWrite releases wmu, flushing first when a flush is wanted and no
// other writer waits (that one flushes after its own frames).
func (c *Conn) unlockWrite() {
	if c.flushWanted && c.wwait.Load() == 0 {
		c.flushLocked()
	}
	c.wmu.Unlock()
}

// lockWrite takes wmu, counted so the holder knows a writer waits.
func (c *Conn) lockWrite() {
	c.wwait.Add(1)
	c.wmu.Lock()
	c.wwait.Add(-1)
}

// connWriter is what the connection's buffer writes to: the connection,
// its write deadline moved first when due. The buffer writes not only
// when flushed but also when a frame overflows it, and such a write must
// not run under a deadline left from the last flush, which on a stream
// quiet for longer than WriteTimeout has passed (the write failed at once
// and took the connection down). Its callers hold wmu.
//
// A failed write is the connection's sticky werr at once, and closes the
// connection, as a failed flush does (flushLocked): the buffer keeps the
// error of a write made when a frame overflows it to itself, and every
// stream's Write after it "succeeded" without sending a byte until some
// flush found it (TestWriteFailureFailsWrites).
type connWriter struct{ c *Conn }

func (w connWriter) Write(p []byte) (int, error) {
	c := w.c
	if c.capture { // the head of a gathered write (writeDataRunLocked)
		c.captured = p
		return len(p), nil
	}
	c.armWriteDeadline()
	n, err := c.nc.Write(p)
	if err != nil {
		c.writeFailed(err)
	}
	return n, err
}

// armWriteDeadline moves the write deadline before a write, only when an
// eighth of the timeout passed: a deadline per write would cost a timer
// update each.
func (c *Conn) armWriteDeadline() {
	now := time.Now()
	if c.wdl.Sub(now) < c.cfg.WriteTimeout-c.cfg.WriteTimeout/8 {
		c.wdl = now.Add(c.cfg.WriteTimeout)
		c.nc.SetWriteDeadline(c.wdl)
	}
}

// writeFailed makes the first write failure sticky and closes the
// connection: the reader ends, and with it every stream.
func (c *Conn) writeFailed(err error) {
	if c.werr == nil {
		c.werr = err
		c.nc.Close()
	}
}

func (c *Conn) flushLocked() {
	c.flushWanted = false
	if c.werr != nil || c.bw.Buffered() == 0 {
		return
	}
	if err := c.bw.Flush(); err != nil {
		c.werr = err
		c.nc.Close() // the reader ends, and with it every stream
	}
}
