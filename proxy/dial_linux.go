//go:build linux

package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dialIP connects to an IP address and port without the net package's
// dialer, as acceptListener accepts without its listener. The net package
// spends 11 system calls on a connection (socket, connect, the poller's
// registration, getsockopt(SO_ERROR), getpeername, getsockname, TCP_NODELAY
// and four for TCP keep-alive) and allocates for its resolver on every
// dial, also for an address that needs none; with more streams in flight
// than idle upstream connections kept, dialling was a fifth of the node's
// CPU (bench/CONNPATH.md, "A dial of our own"). This is socket, TCP_NODELAY,
// connect, a second connect that reports whether the handshake is over
// (see waitConnect), and the poller's registration (epoll_ctl) when the
// connection first waits.
//
// TCP keep-alive stays off, as on client connections (see Listen): every
// wait on an upstream has its own deadline, an idle pooled connection is
// checked before reuse and closed after the pool's idle timeout, and a
// tunnel has its idle timeout.
//
// The connection is a tcpConn, whose deadlines reach the poller only when
// an operation waits under them. Errors are the net package's: a
// *net.OpError with Op "dial" around an *os.SyscallError (ECONNREFUSED, say),
// os.ErrDeadlineExceeded at the timeout, or ctx's error.
func dialIP(ctx context.Context, ap netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	// A connect to a loopback port in the ephemeral range with nothing
	// listening can be given that very port as its own and connect to
	// itself (TCP simultaneous open): its request would come back as the
	// answer. The net package's dialer checks and dials again; so does
	// this, twice at most, only where it can happen.
	for try := 0; ; try++ {
		c, err := dialIPOnce(ctx, ap, timeout)
		if err != nil || try == 2 || !mayConnectToSelf(ap) || !selfConnected(c.(*tcpConn)) {
			return c, err
		}
		c.Close()
	}
}

// mayConnectToSelf reports whether a connect to ap could connect to
// itself: ap is a loopback address with a port the kernel may pick as a
// local one.
func mayConnectToSelf(ap netip.AddrPort) bool {
	lo, hi := ephemeralPorts()
	return ap.Addr().Unmap().IsLoopback() && ap.Port() >= lo && ap.Port() <= hi
}

var ephemeralPorts = sync.OnceValues(func() (uint16, uint16) {
	lo, hi := uint16(32768), uint16(60999) // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var l, h int
		if n, _ := fmt.Sscan(string(b), &l, &h); n == 2 && l > 0 && l <= h && h < 1<<16 {
			lo, hi = uint16(l), uint16(h)
		}
	}
	return lo, hi
})

// selfConnected reports whether c's socket is connected to itself: its
// local address is its remote one. getsockname(2) is called raw, into an
// address on the stack: unix.Getsockname, through Control's closure,
// allocated three times for every connection dialled to loopback.
func selfConnected(c *tcpConn) bool {
	self := false
	c.p.Control(func(fd uintptr) {
		var rsa syscall.RawSockaddrAny
		n := uint32(syscall.SizeofSockaddrAny)
		_, _, e := syscall.RawSyscall(syscall.SYS_GETSOCKNAME, fd, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)))
		if e != 0 {
			return
		}
		switch rsa.Addr.Family {
		case syscall.AF_INET:
			a := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
			self = netPort(&a.Port) == c.raddr.Port && net.IP(a.Addr[:]).Equal(c.raddr.IP)
		case syscall.AF_INET6:
			a := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
			self = netPort(&a.Port) == c.raddr.Port && net.IP(a.Addr[:]).Equal(c.raddr.IP)
		}
	})
	return self
}

// dialIPOnce is one attempt of dialIP.
func dialIPOnce(ctx context.Context, ap netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	fail := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(err)
	}
	var sa connectAddr
	family, err := sa.set(ap)
	if err != nil {
		return nil, fail(err)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fail(os.NewSyscallError("socket", err))
	}
	if fd, err = aboveStdio(fd); err != nil {
		return nil, fail(err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return nil, fail(os.NewSyscallError("setsockopt", err))
	}
	pending := false
	switch err := sa.connect(uintptr(fd)); err {
	case 0:
	case unix.EINPROGRESS, unix.EINTR: // EINTR: the connect goes on
		// On loopback the handshake is over by the time connect
		// returns; asking again now spares the wait's deadline and
		// context watch (one more call for a remote peer, whose
		// handshake takes a round trip anyway).
		switch err := sa.connect(uintptr(fd)); err {
		case 0, unix.EISCONN:
		case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
			pending = true
		default:
			unix.Close(fd)
			return nil, fail(os.NewSyscallError("connect", err))
		}
	default:
		unix.Close(fd)
		return nil, fail(os.NewSyscallError("connect", err))
	}
	c := newTCPConn(fd, nil, nil)
	c.raddr = c.raddrIP.setAddrPort(ap)
	if pending {
		if err := waitConnect(ctx, &c.p, sa, timeout); err != nil {
			c.p.close()
			return nil, fail(err)
		}
	}
	return c, nil
}

// connectAddr is the address connect(2) takes, kept by its caller (on
// the stack): unix.Connect takes a unix.Sockaddr, whose pointer escapes
// through the interface, an allocation a dial.
type connectAddr struct {
	rsa syscall.RawSockaddrAny
	n   uint32
}

// set makes a ap's address; it returns the socket family.
func (a *connectAddr) set(ap netip.AddrPort) (int, error) {
	ip := ap.Addr()
	if ip.Is4() || ip.Is4In6() {
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&a.rsa))
		p.Family = syscall.AF_INET
		setNetPort(&p.Port, ap.Port())
		p.Addr = ip.Unmap().As4()
		a.n = syscall.SizeofSockaddrInet4
		return unix.AF_INET, nil
	}
	p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&a.rsa))
	p.Family = syscall.AF_INET6
	setNetPort(&p.Port, ap.Port())
	p.Addr = ip.As16()
	if z := ip.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return 0, err
		}
		p.Scope_id = uint32(ifi.Index)
	}
	a.n = syscall.SizeofSockaddrInet6
	return unix.AF_INET6, nil
}

// connect calls connect(2) on fd (non-blocking: it never blocks).
func (a *connectAddr) connect(fd uintptr) syscall.Errno {
	_, _, e := syscall.RawSyscall(syscall.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&a.rsa)), uintptr(a.n))
	return e
}

// setNetPort writes port in network byte order.
func setNetPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// connectWaited, when set (tests), runs when waitConnect's wait ended.
var connectWaited func()

// waitConnect waits until the connect on p's socket ends, up to timeout
// and while ctx lasts. Once the socket is writable, connect(2) again
// reports how it ended: 0 (or EISCONN) once connected, EALREADY while the
// handshake is still under way, the error that ended it otherwise. It asks
// before the first wait too, as any Write does. sa is a copy: the wait's
// callback takes it to the heap, and only a dial that waits pays for that.
func waitConnect(ctx context.Context, p *pollFD, sa connectAddr, timeout time.Duration) error {
	deadline := time.Time{}
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if !deadline.IsZero() {
		if err := p.setDeadline(deadline, 'w'); err != nil {
			return err
		}
	}
	// A canceled ctx ends the wait with a past write deadline. The
	// function that sets it runs on its own goroutine, possibly after the
	// wait ended: it is waited for, so that it never sets the deadline
	// of a connection already returned (a shared HTTP/2 one, say, whose
	// writes would all fail).
	var stop func() bool
	fired := make(chan struct{})
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() {
			p.setDeadline(time.Unix(1, 0), 'w')
			close(fired)
		})
	}
	var cerr error
	err := p.Write(func(fd uintptr) bool {
		switch e := sa.connect(fd); e {
		case 0, unix.EISCONN:
			return true
		case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
			return false
		default:
			cerr = os.NewSyscallError("connect", e)
			return true
		}
	})
	if connectWaited != nil {
		connectWaited()
	}
	if stop != nil && !stop() {
		<-fired
		if err == nil && cerr == nil {
			return ctx.Err() // connected, but under a past deadline: the caller closes it
		}
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return err
	}
	if cerr != nil {
		return cerr
	}
	if deadline.IsZero() {
		return nil
	}
	return p.setDeadline(time.Time{}, 'w')
}
