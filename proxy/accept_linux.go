//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pingora-go/pingora-go/proxy/h2"
)

// acceptListener accepts client connections with accept4(2) itself rather
// than through the net package, whose accept costs two system calls more
// a connection than nginx's: getsockname(2) for the local address and
// setsockopt(TCP_NODELAY). Here the local address is the listener's (it
// is looked up only when the listener is bound to a wildcard address and
// something asks), and TCP_NODELAY is set once on the listening socket,
// whose accepted sockets inherit it on Linux. The accepted socket joins
// the runtime's poller (epoll_ctl) only when an operation on it first has
// to wait (pollFD), so a connection costs
// accept4 against the net package's accept4, epoll_ctl, getsockname,
// setsockopt, and the epoll_ctl that removes it at close. The runtime
// polls a duplicate of the listening socket: the net package's raw
// listener cannot wait for a connection on behalf of its caller.
//
// A connection Accept returns has no finalizer: the caller must Close it
// (the server always does).
//
// The embedded *net.TCPListener keeps Addr and File (the hand-off passes
// its socket to a successor); Close closes both descriptors.
type acceptListener struct {
	*net.TCPListener
	dup    *os.File
	rc     syscall.RawConn
	laddr  *net.TCPAddr // the listener's address; its IP is unspecified for a wildcard
	once   sync.Once
	cerr   error
	closed atomic.Bool

	// mu makes one Accept at a time the owner of the fields below:
	// results of accept4 kept here and a callback bound once, rather than
	// a closure and its captured variables allocated for every connection.
	mu       sync.Mutex
	nfd      int
	rsa      syscall.RawSockaddrAny // the client's address, as accept4 wrote it
	rsaLen   uint32
	aerr     syscall.Errno
	accept4F func(fd uintptr) bool

	// joins counts the accepted sockets that joined the runtime's
	// poller (pollFD), for tests.
	joins atomic.Int64
}

// newAcceptListener wraps tl. On error tl is left open for the caller.
func newAcceptListener(tl *net.TCPListener) (*acceptListener, error) {
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, os.NewSyscallError("setsockopt", serr)
	}
	dup, err := tl.File()
	if err != nil {
		return nil, err
	}
	drc, err := dup.SyscallConn()
	if err != nil {
		dup.Close()
		return nil, err
	}
	laddr, _ := tl.Addr().(*net.TCPAddr)
	l := &acceptListener{TCPListener: tl, dup: dup, rc: drc, laddr: laddr}
	l.accept4F = l.accept4
	return l, nil
}

// accept4 is the raw read callback of Accept; l.mu is held. The call is
// raw, as sockIO's are (it never blocks: the socket is non-blocking), and
// the address is decoded here: syscall.Accept4 would allocate a Sockaddr
// for it, and x/sys/unix's asks the socket for its protocol (a
// getsockopt) while decoding it.
func (l *acceptListener) accept4(fd uintptr) bool {
	l.rsaLen = syscall.SizeofSockaddrAny
	nfd, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&l.rsa)), uintptr(unsafe.Pointer(&l.rsaLen)),
		syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	l.nfd, l.aerr = int(nfd), e
	return e != syscall.EAGAIN && e != syscall.EINTR
}

// Accept waits for and returns the next connection.
func (l *acceptListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		err := l.rc.Read(l.accept4F)
		nfd, aerr := l.nfd, l.aerr
		l.aerr = 0
		if err != nil {
			// A wait that Close ends fails with the poller's "use of
			// closed file", which is not os.ErrClosed.
			if l.closed.Load() || errors.Is(err, os.ErrClosed) {
				err = net.ErrClosed
			}
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.laddr, Err: err}
		}
		if aerr == syscall.ECONNABORTED {
			continue // reset before it was accepted, as the net package does
		}
		if aerr != 0 {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.laddr, Err: os.NewSyscallError("accept4", aerr)}
		}
		nfd, err = aboveStdio(nfd)
		if err != nil {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.laddr, Err: err}
		}
		// The socket joins the runtime's poller when it first has to
		// wait (pollFD).
		c := newTCPConn(nfd, l, nil)
		c.raddr = c.raddrIP.setRaw(&l.rsa)
		return c, nil
	}
}

// Close closes the listening socket and its polled duplicate, which ends
// a pending Accept.
func (l *acceptListener) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		l.cerr = l.TCPListener.Close()
		l.dup.Close()
	})
	return l.cerr
}

// tcpAddrIP is a TCP address and its IP's bytes in one piece, kept in
// the connection it is the remote address of (tcpConn.raddrIP): an
// accepted or dialled connection allocates nothing more for it.
type tcpAddrIP struct {
	addr net.TCPAddr
	ip   [16]byte
}

// setRaw decodes into a the address accept4 wrote.
func (a *tcpAddrIP) setRaw(rsa *syscall.RawSockaddrAny) *net.TCPAddr {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		copy(a.ip[:], p.Addr[:])
		a.addr.IP, a.addr.Port = a.ip[:4], netPort(&p.Port)
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		copy(a.ip[:], p.Addr[:])
		a.addr.IP, a.addr.Port = a.ip[:16], netPort(&p.Port)
		if p.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(p.Scope_id)); err == nil {
				a.addr.Zone = ifi.Name
			}
		}
	}
	return &a.addr
}

// setAddrPort makes a the address net.TCPAddrFromAddrPort(ap) gives.
func (a *tcpAddrIP) setAddrPort(ap netip.AddrPort) *net.TCPAddr {
	ip := ap.Addr()
	switch {
	case ip.Is4():
		b := ip.As4()
		a.addr.IP = a.ip[:copy(a.ip[:], b[:])]
	case ip.IsValid():
		b := ip.As16()
		a.addr.IP = a.ip[:copy(a.ip[:], b[:])]
	}
	a.addr.Port, a.addr.Zone = int(ap.Port()), ip.Zone()
	return &a.addr
}

// netPort reads a port in network byte order.
func netPort(p *uint16) int {
	b := (*[2]byte)(unsafe.Pointer(p))
	return int(b[0])<<8 | int(b[1])
}

func sockaddrTCP(sa syscall.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	// The IP is the sockaddr's own bytes (sa is not reused), four for
	// IPv4: no copy.
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *syscall.SockaddrInet6:
		ta := &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ta.Zone = ifi.Name
			}
		}
		return ta
	}
	return &net.TCPAddr{}
}

// tcpConn is a connection acceptListener accepted. It behaves as a
// *net.TCPConn for everything the proxy uses: its errors are *net.OpError
// wrapping what the net package's would (net.ErrClosed after Close,
// os.ErrDeadlineExceeded on a timeout, io.EOF as is), and it has
// CloseWrite and SyscallConn. Reads and writes go through sockIO.
type tcpConn struct {
	p       pollFD
	l       *acceptListener
	raddr   *net.TCPAddr
	raddrIP tcpAddrIP // raddr's storage, but for a caller's (newTCPConn)
	io      sockIO
	closed  atomic.Bool
	// rdl and wdl are the deadlines, set on the poller only when an
	// operation waits under them or they pass (lazyDeadline).
	rdl, wdl lazyDeadline

	laddrOnce sync.Once
	laddr     net.Addr
}

// aboveStdio returns fd, or a duplicate of it above 2 when it is standard
// input, output or error (closing fd). A process started with standard
// output or error closed can be handed descriptor 1 or 2 for a socket,
// which anything writing to standard output or error (a log line, a
// panic's trace) would then write to a client.
func aboveStdio(fd int) (int, error) {
	if fd > 2 {
		return fd, nil
	}
	hi, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	unix.Close(fd)
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	return hi, nil
}

// newTCPConn wraps the connected non-blocking socket fd: one
// acceptListener accepted (l), or one dialIP dialled (l nil). raddr is the
// remote address; when nil the caller sets it (in c.raddrIP). It joins the
// runtime's poller when it first has to wait (pollFD).
func newTCPConn(fd int, l *acceptListener, raddr *net.TCPAddr) *tcpConn {
	c := &tcpConn{l: l, raddr: raddr}
	c.p.init(fd)
	if l != nil {
		c.p.joins = &l.joins
	}
	c.io.init(&c.p)
	c.rdl.p, c.wdl.p, c.wdl.write = &c.p, &c.p, true
	c.io.rdl, c.io.wdl = &c.rdl, &c.wdl
	return c
}

func (c *tcpConn) Read(b []byte) (int, error) {
	n, err := c.io.read(b)
	if err != nil && err != io.EOF {
		err = c.opErr("read", err)
	}
	return n, err
}

func (c *tcpConn) Write(b []byte) (int, error) {
	n, err := c.io.write(b)
	if err != nil {
		err = c.opErr("write", err)
	}
	return n, err
}

func (c *tcpConn) writev(bufs [][]byte) (int64, error) {
	n, err := c.io.writev(bufs)
	if err != nil {
		err = c.opErr("writev", err)
	}
	return n, err
}

// waitFirstNext: see sockIO.waitFirstNext (a keep-alive client's next
// request).
func (c *tcpConn) waitFirstNext(on bool) { c.io.waitFirstNext(on) }

// holdNextWrite: see sockIO.holdNextWrite (upstream connections).
func (c *tcpConn) holdNextWrite() { c.io.holdNextWrite() }

func (c *tcpConn) Close() error {
	c.closed.Store(true)
	if err := c.p.close(); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// CloseWrite shuts down the sending side (a FIN to the client).
func (c *tcpConn) CloseWrite() error {
	var serr error
	if err := c.io.rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return c.opErr("close", err)
	}
	if serr != nil {
		return c.opErr("close", os.NewSyscallError("shutdown", serr))
	}
	return nil
}

// SyscallConn is the socket's raw connection. A caller that waits through
// it (splice) waits under deadlines the poller must already hold: from
// now on they are set there as they are set (lazyDeadline.makeEager).
func (c *tcpConn) SyscallConn() (syscall.RawConn, error) {
	c.rdl.makeEager()
	c.wdl.makeEager()
	return c.io.rc, nil
}

// peekRawConn is the socket's raw connection for calls that never wait
// (the pool's peek): the deadlines stay lazy. See peekRawConner.
func (c *tcpConn) peekRawConn() syscall.RawConn { return c.io.rc }

func (c *tcpConn) RemoteAddr() net.Addr { return c.raddr }

// LocalAddr is the listener's address, or the socket's own when the
// listener is bound to a wildcard address or the connection was dialled
// (looked up once, on first use).
func (c *tcpConn) LocalAddr() net.Addr {
	c.laddrOnce.Do(func() {
		if c.l != nil && c.l.laddr != nil && !c.l.laddr.IP.IsUnspecified() {
			c.laddr = c.l.laddr
			return
		}
		if c.l != nil {
			c.laddr = c.l.laddr
		} else {
			c.laddr = (*net.TCPAddr)(nil) // String gives "<nil>", as for a closed *net.TCPConn's
		}
		c.io.rc.Control(func(fd uintptr) {
			if sa, err := syscall.Getsockname(int(fd)); err == nil {
				c.laddr = sockaddrTCP(sa)
			}
		})
	})
	return c.laddr
}

func (c *tcpConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *tcpConn) SetReadDeadline(t time.Time) error  { return c.deadlineErr(c.rdl.set(t)) }
func (c *tcpConn) SetWriteDeadline(t time.Time) error { return c.deadlineErr(c.wdl.set(t)) }

// deadlineErr is the error of setting a deadline: one recorded on a closed
// connection fails as the poller's would.
func (c *tcpConn) deadlineErr(err error) error {
	if err == nil && c.closed.Load() {
		err = os.ErrClosed
	}
	if err != nil {
		return c.opErr("set", err)
	}
	return nil
}

// opErr turns an error of the socket's operations (sockIO, pollFD) into
// the *net.OpError a *net.TCPConn returns: os.ErrClosed becomes
// net.ErrClosed, an errno an *os.SyscallError.
func (c *tcpConn) opErr(op string, err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, os.ErrClosed) || c.closed.Load():
		err = net.ErrClosed
	case errors.As(err, &errno):
		err = os.NewSyscallError(op, errno)
	}
	var src net.Addr
	if c.l != nil {
		src = c.l.laddr
	} else if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a != nil {
		src = a // a dialled connection's, as *net.TCPConn's
	}
	return &net.OpError{Op: op, Net: "tcp", Source: src, Addr: c.raddr, Err: err}
}

// WriteBuffers is writev for the HTTP/2 server (h2.BuffersWriter): a
// run of DATA frames goes out in one gathered write, without being copied
// into its buffer.
func (c *tcpConn) WriteBuffers(bufs [][]byte) (int64, error) { return c.writev(bufs) }

var _ h2.BuffersWriter = (*tcpConn)(nil)
