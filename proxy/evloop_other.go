//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// serveEventLoop is Serve for a ListenerConfig.EventLoop listener: Linux
// only.
func (s *Server[C]) serveEventLoop(ln net.Listener, _ ListenerConfig) error {
	ln.Close()
	return errors.New("proxy: event-loop listeners need Linux")
}
