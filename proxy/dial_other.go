//go:build !linux

package proxy

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// dialIP is the net package's dialer, TCP keep-alive off (see the Linux
// dialIP).
func dialIP(ctx context.Context, ap netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout, KeepAlive: -1}
	return nd.DialContext(ctx, "tcp", ap.String())
}
