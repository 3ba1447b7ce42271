//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockIO reads and writes a non-blocking socket with raw system calls,
// waiting through the runtime's poller (syscall.RawConn) as the net
// package does. The net package enters and leaves the scheduler around
// every read and write (entersyscall/exitsyscall), so that a blocking call
// could give its P to another thread. A non-blocking socket call never
// blocks, yet the runtime's monitor (sysmon) takes the P of one that it
// sees in the kernel across two of its ticks and wakes another thread to
// run it: on a busy proxy with one P that was a futex wake, two context
// switches and a short sysmon sleep every few requests, besides the
// bookkeeping on each call. A raw call skips all of it, as nginx's plain
// recv(2) and send(2) do.
//
// Reads ask the socket first, as the net package's do, and wait (in the
// runtime's poller) only when it says EAGAIN; a read its caller marked
// (waitFirstNext) waits first when the last read was short, as nginx's
// event loop does, skipping the read that would only learn EAGAIN.
//
// Errors are the poller's (a deadline, the descriptor closing), a
// syscall.Errno, or io.EOF; the connection types wrap them as the net
// package would.
type sockIO struct {
	rc syscall.RawConn
	p  *pollFD // rc, when it is one (a tcpConn's): a read may wait first

	// rmu and wmu make one Read and one Write at a time the owner of
	// the fields below them, which the callbacks read and write (a
	// closure per call would be an allocation per call). The callbacks
	// are s itself as a pollCall (sockReadCall and its kin) when rc is
	// a pollFD; else methods bound once at init (readF and its kin).
	rmu sync.Mutex
	// waitNext: the next read may wait before it asks the socket, if the
	// last one found it drained (waitFirstNext)
	waitNext bool
	rb       []byte
	rn       int
	rerr     syscall.Errno
	readF    func(uintptr) bool

	wmu    sync.Mutex
	wb     []byte
	wn     int
	werr   error
	iov    []syscall.Iovec
	iovn   int64              // bytes left to write from iov
	writeF func(uintptr) bool // write's and writev's (a bound method value is an allocation)

	// A held write (holdNextWrite): write keeps its bytes (a copy) and
	// the next read sends them. holdArmed, held and heldOn change under
	// wmu (heldOn is atomic so that a read with nothing held, every read
	// of a client connection, need not take wmu);
	// held is also the spare buffer while nothing is held, and nil while
	// a read owns it as rheld.
	holdArmed bool
	heldOn    atomic.Bool
	held      []byte
	rheld     []byte // under rmu: what the read still has to send
	rheldBusy bool   // under rmu: the send stopped at EAGAIN; write finishes it
	readHeldF func(uintptr) bool

	// rdl and wdl, when set (tcpConn), are the deadlines set lazily: a
	// callback about to wait sets them on the poller first (see
	// lazyDeadline). rwait (under rmu) and wwait (under wmu) record that
	// it did.
	rdl, wdl     *lazyDeadline
	rwait, wwait bool

	// sm, when set (an HTTP/1.1 client's connection), holds writes to
	// the minimum send rate: a write that waits for room waits within
	// its budget too (sendMeter). smWait (under wmu) records that the
	// wait began.
	sm     *sendMeter
	smWait bool
}

func (s *sockIO) init(rc syscall.RawConn) {
	s.rc = rc
	s.p, _ = rc.(*pollFD)
	if s.p == nil {
		// Three closures: only for a raw connection that takes funcs.
		s.readF = s.rawRead
		s.writeF = s.rawWrite
		s.readHeldF = s.rawReadHeld
	}
}

// sockReadCall, sockWriteCall and sockReadHeldCall are s's callbacks
// rawRead, rawWrite and rawReadHeld as pollCalls: a pollFD runs them
// with no closure allocated for the connection.
type (
	sockReadCall     sockIO
	sockWriteCall    sockIO
	sockReadHeldCall sockIO
)

func (s *sockReadCall) call(fd uintptr) bool     { return (*sockIO)(s).rawRead(fd) }
func (s *sockWriteCall) call(fd uintptr) bool    { return (*sockIO)(s).rawWrite(fd) }
func (s *sockReadHeldCall) call(fd uintptr) bool { return (*sockIO)(s).rawReadHeld(fd) }

// readOp runs rawRead as the raw connection's Read; held: rawReadHeld.
func (s *sockIO) readOp(held bool) error {
	if s.p != nil {
		if held {
			return s.p.op((*sockReadHeldCall)(s), 'r', true)
		}
		return s.p.op((*sockReadCall)(s), 'r', true)
	}
	if held {
		return s.rc.Read(s.readHeldF)
	}
	return s.rc.Read(s.readF)
}

// writeOp runs rawWrite as the raw connection's Write.
func (s *sockIO) writeOp() error {
	if s.p != nil {
		return s.p.op((*sockWriteCall)(s), 'w', true)
	}
	return s.rc.Write(s.writeF)
}

// holdNextWrite makes the next write wait for the next read, which sends
// its bytes from inside its poller callback and then waits for the socket
// to become readable without reading first. For a request whose answer
// can only come after it (an HTTP/1.1 request without a body, sent to an
// upstream), that wait is safe: the poller forgets readiness from before
// a read began, and no answer can come before the request has gone out,
// which is now after the read began. It saves the read that would only
// learn EAGAIN, one system call a proxied request. The caller must not
// write again before that read.
func (s *sockIO) holdNextWrite() {
	s.wmu.Lock()
	s.holdArmed = true
	s.wmu.Unlock()
}

func (s *sockIO) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	if s.heldOn.Load() {
		s.wmu.Lock()
		if s.heldOn.Load() {
			s.rheld, s.held = s.held, nil
			s.heldOn.Store(false)
		}
		s.wmu.Unlock()
	}
	s.rb, s.rn, s.rerr = b, 0, 0
	waitFirst := s.waitNext // this read's alone
	s.waitNext = false
	if s.rdl != nil {
		s.rdl.check()
	}
	var err error
	if own := s.rheld; len(own) > 0 {
		err = s.readOp(true)
		busy := s.rheldBusy && err == nil && s.rerr == 0
		s.wmu.Lock()
		if busy {
			// The send buffer filled: the rest goes out as any write
			// does, waiting for room; then the read, as any read.
			_, err = s.writeLocked(s.rheld)
			s.rheld = nil
		}
		switch {
		case len(s.rheld) > 0 && s.rerr == 0 && !s.heldOn.Load():
			// The read failed (a deadline, a close) before its
			// callback sent them: they stay held.
			s.held = s.rheld
			s.heldOn.Store(true)
		case s.held == nil:
			s.held = own[:0] // the buffer, for the next held write
		}
		s.wmu.Unlock()
		s.rheld, s.rheldBusy = nil, false
		if busy && err == nil {
			err = s.readOp(false)
		}
	} else if p := s.p; waitFirst && p != nil && p.drained.Load() && p.joined() {
		// Nothing was there at the last read: wait for what comes
		// next rather than ask the socket now, which would only say
		// EAGAIN. Once joined only: a socket that never waited may
		// not need to.
		if s.rdl != nil {
			s.rdl.wait()
			s.rwait = true
		}
		err = p.waitRead((*sockReadCall)(s))
	} else {
		err = s.readOp(false)
	}
	if s.rwait {
		s.rwait = false
		s.rdl.done()
	}
	n, errno := s.rn, s.rerr
	s.rb = nil
	s.rmu.Unlock()
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// rawRead is the callback of read; s.rmu is held. It returns false to
// wait until the socket is readable.
func (s *sockIO) rawRead(fd uintptr) bool {
	for {
		n, e := sysRead(fd, s.rb)
		switch e {
		case 0:
			s.rn = n
			if s.p != nil && n < len(s.rb) && n > 0 {
				s.p.drained.Store(true)
			}
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			if s.rdl != nil {
				s.rdl.wait()
				s.rwait = true
			}
			return false
		default:
			s.rerr = e
			return true
		}
	}
}

// rawReadHeld is the callback of a read with held bytes; s.rmu is held.
// The first call sends them and returns false, to wait for the answer;
// later calls read.
func (s *sockIO) rawReadHeld(fd uintptr) bool {
	if len(s.rheld) == 0 {
		return s.rawRead(fd)
	}
	for len(s.rheld) > 0 {
		n, e := sysWrite(fd, s.rheld)
		switch e {
		case 0:
			s.rheld = s.rheld[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			s.rheldBusy = true
			return true
		default:
			s.rerr = e
			return true
		}
	}
	if s.rdl != nil { // the wait for the answer, as rawRead's at EAGAIN
		s.rdl.wait()
		s.rwait = true
	}
	return false
}

// waitFirstNext marks the next read (on), that one only, as one that may
// wait for the socket to become readable before it asks it, when the last
// read found it drained (pollFD.waitRead): a keep-alive client's next
// request, which nearly always comes later. The cost is a read that would
// see an end of stream (FIN) that came together with the last bytes read:
// the poller reported both as one readiness, which that read consumed, so
// the wait lasts until new bytes come or its deadline passes. nginx learns
// of such a FIN from EPOLLRDHUP, which the runtime's poller does not keep;
// a caller marks only reads for which a late end is harmless.
func (s *sockIO) waitFirstNext(on bool) {
	s.rmu.Lock()
	s.waitNext = on
	s.rmu.Unlock()
}

func (s *sockIO) write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	if s.holdArmed {
		s.holdArmed = false
		if !s.heldOn.Load() {
			s.held = append(s.held[:0], b...)
			s.heldOn.Store(true)
			s.wmu.Unlock()
			return len(b), nil
		}
	}
	if s.heldOn.Load() { // held, and no read came: it goes first
		s.heldOn.Store(false)
		if _, err := s.writeLocked(s.held); err != nil {
			s.wmu.Unlock()
			return 0, err
		}
	}
	n, err := s.writeLocked(b)
	s.wmu.Unlock()
	return n, err
}

// writeLocked writes b; s.wmu is held.
func (s *sockIO) writeLocked(b []byte) (int, error) {
	s.wb, s.wn, s.werr = b, 0, nil
	if s.wdl != nil {
		s.wdl.check()
	}
	err := s.writeOp()
	s.writeDone()
	if s.smWait {
		err = s.meterDone(err)
	}
	n := s.wn
	if err == nil {
		err = s.werr
	}
	s.wb, s.werr = nil, nil
	return n, err
}

// rawWrite is the callback of write and writev; s.wmu is held. It
// writes all of s.wb, or of s.iov (writev), returning false to wait until
// the socket is writable.
func (s *sockIO) rawWrite(fd uintptr) bool {
	if s.smWait { // the socket has room after a wait
		s.smWait = false
		if s.sm.endWait() {
			s.werr = errSlowSend
			return true
		}
	}
	for s.iovn > 0 || s.wn < len(s.wb) {
		var n int
		var e syscall.Errno
		if s.iovn > 0 {
			n, e = sysWritev(fd, s.iov[:min(len(s.iov), maxIOV)])
		} else {
			n, e = sysWrite(fd, s.wb[s.wn:])
		}
		switch e {
		case 0:
			if n == 0 {
				s.werr = io.ErrUnexpectedEOF
				return true
			}
			if s.iovn > 0 {
				s.iovn -= int64(n)
				s.consumeIOV(n)
			} else {
				s.wn += n
			}
			if s.sm != nil {
				s.sm.sent += int64(n)
			}
		case syscall.EINTR:
		case syscall.EAGAIN:
			if s.sm != nil && s.sm.on {
				if s.sm.beginWait(sendQueued(fd)) {
					resetOnClose(fd)
					s.werr = errSlowSend
					return true
				}
				s.smWait = true
			}
			if s.wdl != nil {
				s.wdl.wait()
				s.wwait = true
			}
			return false
		default:
			s.werr = e
			return true
		}
	}
	return true
}

// writeDone ends the wait a write's callback began; s.wmu is held.
func (s *sockIO) writeDone() {
	if s.wwait {
		s.wwait = false
		s.wdl.done()
	}
}

// meterDone ends the metered wait of a write the poller failed (a
// deadline, the descriptor closing) while it waited for room; s.wmu is
// held. A wait the send meter's timer ended fails with errSlowSend.
func (s *sockIO) meterDone(err error) error {
	s.smWait = false
	if s.sm.endWait() {
		return errSlowSend
	}
	return err
}

// sendQueued is how many bytes the socket fd holds that its peer has not
// acknowledged (SIOCOUTQ), 0 if that cannot be had.
func sendQueued(fd uintptr) int64 {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	if err != nil || n < 0 {
		return 0
	}
	return int64(n)
}

// resetOnClose makes the close of fd a reset (SO_LINGER 0), for a client
// cut under the minimum send rate: the response bytes its send queue still
// holds are dropped, rather than trickled to the client by the kernel
// after the close for as long as it keeps its window open a crack.
func resetOnClose(fd uintptr) {
	unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
}

// maxIOV is the most buffers one writev(2) takes (IOV_MAX).
const maxIOV = 1024

// writev writes bufs with gathered writes: what net.Buffers.WriteTo does
// for a *net.TCPConn, which other types cannot hook into.
func (s *sockIO) writev(bufs [][]byte) (int64, error) {
	s.wmu.Lock()
	s.holdArmed = false  // only write holds
	if s.heldOn.Load() { // held, and no read came: it goes first
		s.heldOn.Store(false)
		if _, err := s.writeLocked(s.held); err != nil {
			s.wmu.Unlock()
			return 0, err
		}
	}
	s.iov = s.iov[:0]
	s.iovn = 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := syscall.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		s.iov = append(s.iov, v)
		s.iovn += int64(len(b))
	}
	iov, total := s.iov, s.iovn // rawWritev moves s.iov past what is written
	s.werr = nil
	var err error
	if total > 0 {
		if s.wdl != nil {
			s.wdl.check()
		}
		err = s.writeOp()
		s.writeDone()
		if s.smWait {
			err = s.meterDone(err)
		}
	}
	if err == nil {
		err = s.werr
	}
	n := total - s.iovn
	clear(iov) // keep no buffer alive
	s.iov, s.iovn, s.werr = iov[:0], 0, nil
	s.wmu.Unlock()
	return n, err
}

// consumeIOV drops the first n written bytes from s.iov.
func (s *sockIO) consumeIOV(n int) {
	i := 0
	for i < len(s.iov) && n >= int(s.iov[i].Len) {
		n -= int(s.iov[i].Len)
		i++
	}
	if i < len(s.iov) && n > 0 {
		s.iov[i].Base = (*byte)(unsafe.Add(unsafe.Pointer(s.iov[i].Base), n))
		s.iov[i].SetLen(int(s.iov[i].Len) - n)
	}
	s.iov = s.iov[i:]
}

// dialedConn is an upstream TCP connection doing its reads and writes
// through sockIO. It wraps rather than embeds the *net.TCPConn, whose
// ReadFrom and WriteTo would read the socket behind sockIO's back; what
// the proxy uses of it is forwarded.
type dialedConn struct {
	tc *net.TCPConn
	io sockIO
}

// wrapDialed wraps a dialed *net.TCPConn in a dialedConn; anything else,
// or a connection whose raw connection cannot be had, is returned as is.
func wrapDialed(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return tc
	}
	c := &dialedConn{tc: tc}
	c.io.init(rc)
	return c
}

func (c *dialedConn) Read(b []byte) (int, error) {
	n, err := c.io.read(b)
	if err != nil && err != io.EOF {
		err = c.opErr("read", err)
	}
	return n, err
}

func (c *dialedConn) Write(b []byte) (int, error) {
	n, err := c.io.write(b)
	if err != nil {
		err = c.opErr("write", err)
	}
	return n, err
}

func (c *dialedConn) holdNextWrite() { c.io.holdNextWrite() }

func (c *dialedConn) writev(bufs [][]byte) (int64, error) {
	n, err := c.io.writev(bufs)
	if err != nil {
		err = c.opErr("writev", err)
	}
	return n, err
}

func (c *dialedConn) Close() error                          { return c.tc.Close() }
func (c *dialedConn) CloseWrite() error                     { return c.tc.CloseWrite() }
func (c *dialedConn) LocalAddr() net.Addr                   { return c.tc.LocalAddr() }
func (c *dialedConn) RemoteAddr() net.Addr                  { return c.tc.RemoteAddr() }
func (c *dialedConn) SetDeadline(t time.Time) error         { return c.tc.SetDeadline(t) }
func (c *dialedConn) SetReadDeadline(t time.Time) error     { return c.tc.SetReadDeadline(t) }
func (c *dialedConn) SetWriteDeadline(t time.Time) error    { return c.tc.SetWriteDeadline(t) }
func (c *dialedConn) SyscallConn() (syscall.RawConn, error) { return c.io.rc, nil }

// opErr wraps err as the net package's *net.OpError would: the poller's
// errors reach sockIO wrapped as a "raw-read" or "raw-write" operation.
func (c *dialedConn) opErr(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.tc.LocalAddr(), Addr: c.tc.RemoteAddr(), Err: err}
}

// attachSendMeter holds the writes of nc, a client connection, to the
// minimum send rate m counts (sendMeter); false when nc does not write
// through sockIO.
func attachSendMeter(nc net.Conn, m *sendMeter) bool {
	tc, ok := nc.(*tcpConn)
	if !ok {
		return false
	}
	tc.io.wmu.Lock()
	m.rc = tc.io.rc
	tc.io.sm = m
	tc.io.wmu.Unlock()
	return true
}
