package proxy

import (
	"net"
	"testing"
)

// TestClientIP: the host part of a client's address, as SplitHostPort of
// its String gives it, for TCP and other addresses.
func TestClientIP(t *testing.T) {
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}, // 16-byte form
		&net.TCPAddr{IP: net.IP{192, 0, 2, 1}, Port: 1234},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 443, Zone: "eth0"},
		&net.UnixAddr{Name: "@proxy", Net: "unix"},
	} {
		want := a.String()
		if host, _, err := net.SplitHostPort(want); err == nil {
			want = host
		}
		if got := clientIP(a); got != want {
			t.Errorf("clientIP(%v) = %q, want %q", a, got, want)
		}
	}
}
