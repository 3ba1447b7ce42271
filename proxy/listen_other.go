//go:build !linux

package proxy

import "syscall"

// tuneListenerSocket has nothing to set outside Linux (TCP_DEFER_ACCEPT is
// Linux's).
func tuneListenerSocket(syscall.RawConn) error { return nil }
