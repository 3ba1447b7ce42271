package wiretest

import "net"

// FromListener hands out Listener's connections as if they came from the
// next address sent on From (the connection's own, loopback, when none is
// waiting): per-address connection bounds tested on loopback. Send the
// address before dialling.
type FromListener struct {
	net.Listener
	From chan net.Addr
}

type fromConn struct {
	net.Conn
	addr net.Addr
}

func (c fromConn) RemoteAddr() net.Addr { return c.addr }

// Accept accepts the next connection and gives it the address waiting on
// From, if any.
func (l FromListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case a := <-l.From:
		return fromConn{c, a}, nil
	default:
		return c, nil
	}
}
