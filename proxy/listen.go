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
// timeouts), which also ends a connection whose client vanished.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := TuneListener(ln); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
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
