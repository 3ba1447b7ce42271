//go:build linux

package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// deferAcceptSeconds is the listener's TCP_DEFER_ACCEPT: the kernel hands
// a connection to accept only once its first bytes arrived (every protocol
// served here has the client speak first), so the first read finds them
// instead of parking the goroutine. A client that sends nothing is
// accepted anyway after about this long (the kernel then completes the
// handshake on the client's next ACK), and HeaderTimeout runs from there
// as before: a silent connection waits at most this much longer in all,
// and holds no goroutine and no MaxConns slot meanwhile. A client that
// sends part of a head is accepted at its first byte, so the header
// timeout of a slow client (slowloris) is unchanged. One second, as
// nginx's "deferred" and HAProxy's "defer-accept".
const deferAcceptSeconds = 1

// fastAccept returns tl accepting through an acceptListener.
func fastAccept(tl *net.TCPListener) (net.Listener, error) {
	l, err := newAcceptListener(tl)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func tuneListenerSocket(rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	})
	if err != nil {
		return err
	}
	return serr
}
