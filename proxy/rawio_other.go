//go:build !linux

package proxy

import "net"

// wrapDialed returns nc: raw socket I/O (sockIO) is Linux's.
func wrapDialed(nc net.Conn) net.Conn { return nc }

// attachSendMeter returns false: HTTP/1.1 responses are held to the
// minimum send rate where the proxy writes the socket itself (sockIO,
// Linux); elsewhere only the write idle timeout bounds a slow reader.
func attachSendMeter(net.Conn, *sendMeter) bool { return false }

// sendQueued is never asked for: no socket counts.
func sendQueued(uintptr) int64 { return 0 }

// resetOnClose is never asked for: no socket counts.
func resetOnClose(uintptr) {}
