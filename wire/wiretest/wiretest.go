package wiretest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pingora-go/pingora-go/wire"
)

// ErrRefused is returned when dialling an address with no listener or one
// that SetDown has taken down.
var ErrRefused = errors.New("wiretest: connection refused")

// Network is an in-memory network. The zero value is not usable; use New.
type Network struct {
	mu        sync.Mutex
	listeners map[string]*listener
	down      map[string]bool
	conns     map[string][]net.Conn // both ends of every pipe dialled to addr
	dials     map[string]int
}

// New returns an empty network.
func New() *Network {
	return &Network{
		listeners: make(map[string]*listener),
		down:      make(map[string]bool),
		conns:     make(map[string][]net.Conn),
		dials:     make(map[string]int),
	}
}

// Listen returns a listener for addr.
func (n *Network) Listen(addr string) (net.Listener, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.listeners[addr]; ok {
		return nil, fmt.Errorf("wiretest: listen %s: address in use", addr)
	}
	l := &listener{n: n, addr: pipeAddr(addr), accept: make(chan net.Conn), done: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// Dialer returns a wire.Dialer on this network.
func (n *Network) Dialer() wire.Dialer {
	return wire.DialerFunc(n.dial)
}

// Dials reports how many dials were attempted to addr.
func (n *Network) Dials(addr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials[addr]
}

// SetDown cuts addr off (closing every open connection to it, as a crashed
// peer would) or restores it.
func (n *Network) SetDown(addr string, down bool) {
	n.mu.Lock()
	n.down[addr] = down
	var conns []net.Conn
	if down {
		conns = n.conns[addr]
		delete(n.conns, addr)
	}
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (n *Network) dial(ctx context.Context, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.dials[addr]++
	l := n.listeners[addr]
	down := n.down[addr]
	n.mu.Unlock()
	if l == nil || down {
		return nil, fmt.Errorf("wiretest: dial %s: %w", addr, ErrRefused)
	}
	client, server := net.Pipe()
	select {
	case l.accept <- server:
	case <-l.done:
		return nil, fmt.Errorf("wiretest: dial %s: %w", addr, ErrRefused)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n.mu.Lock()
	n.conns[addr] = append(n.conns[addr], client, server)
	n.mu.Unlock()
	return client, nil
}

type listener struct {
	n      *Network
	addr   pipeAddr
	accept chan net.Conn
	once   sync.Once
	done   chan struct{}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.n.mu.Lock()
		delete(l.n.listeners, string(l.addr))
		l.n.mu.Unlock()
	})
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
