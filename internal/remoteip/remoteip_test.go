package remoteip

import (
	"net"
	"testing"
)

type addrConn struct {
	net.Conn
	a net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.a }

func TestBounded(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.6"), Port: 4000}, "10.0.0.6"},
		{&net.TCPAddr{IP: net.ParseIP("fd00::1"), Port: 4000}, "fd00::/64"},
		// One host takes any address of its /64: all are one client.
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), Port: 4000}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::9"), Port: 4000, Zone: "eth0"}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.6"), Port: 4000}, "10.0.0.6"},
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 4000}, ""},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 4000}, ""},
		{&net.UnixAddr{Name: "/x.sock", Net: "unix"}, ""},
	} {
		if got := Bounded(addrConn{a: tc.addr}); got != tc.want {
			t.Errorf("Bounded(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
