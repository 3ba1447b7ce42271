package proxy

import (
	"context"
	"net"
)

// Listen opens a TCP listener for client connections, set up as
// TuneListener describes, and with TCP keep-alive off on the connections
// it accepts. Go otherwise turns keep-alive on for each accepted
// connection, four setsockopt calls per connection (about 6% of the CPU
// with a new connection per request); nginx leaves it off by default too.
// The proxy needs none: every wait on a client has its own deadline
// (DownstreamConfig's header, keep-alive, read, write and tunnel idle
// timeouts), which also ends a connection whose client vanished. On Linux
// the listener accepts with fewer system calls than the net package's
// (see acceptListener), and a connection it accepted must be closed by
// whoever took it: it has no finalizer to close it (Server.Serve closes
// every connection it serves).
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	out, err := AdoptListener(ln)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return out, nil
}

// AdoptListener sets up ln as Listen sets up its own: TuneListener's
// socket options and, on Linux, an accept of its own that also leaves TCP
// keep-alive off on every connection (a listener inherited by a hand-off
// would otherwise turn it on). It returns the listener to serve, which
// closes ln when closed; on error ln is left open for the caller. A
// listener that is not TCP is returned as is.
func AdoptListener(ln net.Listener) (net.Listener, error) {
	if err := TuneListener(ln); err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return ln, nil
	}
	return fastAccept(tl)
}

// TuneListener sets the options of a listening socket that Listen would
// set: on Linux, TCP_DEFER_ACCEPT (see deferAcceptSeconds). Use it on a
// listener inherited by a hand-off. Such a listener (from net.FileListener)
// still turns TCP keep-alive on for each connection it accepts: Go offers
// no way to change that for it.
func TuneListener(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil // not TCP (a test's in-memory listener, a Unix socket)
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	return tuneListenerSocket(rc)
}
