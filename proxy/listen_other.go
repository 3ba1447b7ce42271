//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// tuneListenerSocket has nothing to set outside Linux (TCP_DEFER_ACCEPT is
// Linux's).
func tuneListenerSocket(syscall.RawConn) error { return nil }

// fastAccept returns tl: outside Linux connections are accepted by the net
// package.
func fastAccept(tl *net.TCPListener) (net.Listener, error) { return tl, nil }
