//go:build !linux

package proxy

import "net"

// wrapDialed returns nc: raw socket I/O (sockIO) is Linux's.
func wrapDialed(nc net.Conn) net.Conn { return nc }
