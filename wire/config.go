package wire

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Dialer opens a connection to a peer's cluster address. *net.Dialer-backed
// TCP is the default; wire/wiretest supplies an in-memory one.
type Dialer interface {
	DialContext(ctx context.Context, addr string) (net.Conn, error)
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context, addr string) (net.Conn, error)

// DialContext calls f.
func (f DialerFunc) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	return f(ctx, addr)
}

var _ Dialer = DialerFunc(nil)

// DefaultStreamChunkSize is the default largest data frame of a stream (64
// KiB): small enough that a chunk is written in well under a millisecond,
// large enough that framing costs nothing.
const DefaultStreamChunkSize = 64 << 10

// tcpDialer is the default Dialer.
func tcpDialer() Dialer {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	return DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
}

// ServerConfig configures a Server. Zero fields take their defaults.
type ServerConfig struct {
	// MaxFrameSize is the largest frame accepted; a larger length prefix
	// closes the connection (default 16 MiB, bytes).
	MaxFrameSize int
	// MaxConcurrentCalls bounds handlers running at once per connection;
	// a request beyond it is answered at once with CodeOverloaded, so the
	// reader never stops and small calls never queue behind slow ones
	// (default 256).
	MaxConcurrentCalls int
	// StreamChunkSize is the largest data frame a stream handler's writes
	// are cut into (default 64 KiB, bytes; at most MaxFrameSize-9).
	StreamChunkSize int
	// HandshakeTimeout is how long a new connection has to send the magic
	// byte (default 5s).
	HandshakeTimeout time.Duration
	// FrameTimeout is how long a frame has to arrive whole once its first
	// byte came; a connection may idle between frames for any time
	// (default 30s).
	FrameTimeout time.Duration
	// MaxConns bounds the connections served at once; one beyond it is
	// closed at once (default 4096: a peer holds a few).
	MaxConns int
	// FrameBudget bounds the bytes of large frames (over 64 KiB) being
	// received at once over all connections; a large frame that finds it
	// spent closes its connection (default 64 MiB, bytes; at least
	// MaxFrameSize).
	FrameBudget int
	// WriteTimeout bounds writing one response (default 10s).
	WriteTimeout time.Duration
	// Logger receives protocol errors at Debug and Warn and handler panics
	// at Error (default slog.Default()).
	Logger *slog.Logger
	// Tracer makes a span of each handler, under the trace context its
	// call carried (default nil: none).
	Tracer Tracer
}

// ClientConfig configures a Client. Zero fields take their defaults.
type ClientConfig struct {
	// Dialer opens connections (default TCP with 30s keep-alive).
	Dialer Dialer
	// DialTimeout bounds one dial plus the magic byte (default 5s).
	DialTimeout time.Duration
	// MaxFrameSize is the largest frame sent or accepted (default 16 MiB, bytes).
	MaxFrameSize int
	// WriteTimeout bounds writing one request when the call's context has
	// no earlier deadline (default 10s).
	WriteTimeout time.Duration
	// MaxIdleStreamConns is how many finished stream connections per peer
	// are kept for the next stream (default 2). Streams never share the
	// connection that carries unary calls; see the package doc.
	MaxIdleStreamConns int
	// Logger receives connection errors at Debug (default slog.Default()).
	Logger *slog.Logger
	// Tracer makes a span of each call and gives the trace context the
	// call carries to its handler (default nil: calls carry none).
	Tracer Tracer
}

// Validate reports the first invalid field.
func (c ServerConfig) Validate() error {
	if err := validFrameSize(c.MaxFrameSize); err != nil {
		return err
	}
	if c.MaxConcurrentCalls < 0 {
		return fmt.Errorf("wire: MaxConcurrentCalls (%d) cannot be negative", c.MaxConcurrentCalls)
	}
	if c.StreamChunkSize < 0 || c.StreamChunkSize > c.withDefaults().MaxFrameSize-headerLen {
		return fmt.Errorf("wire: StreamChunkSize (%d) must be between 0 and MaxFrameSize (%d) less 9", c.StreamChunkSize, c.withDefaults().MaxFrameSize)
	}
	if c.HandshakeTimeout < 0 || c.WriteTimeout < 0 || c.FrameTimeout < 0 {
		return fmt.Errorf("wire: HandshakeTimeout (%s), WriteTimeout (%s) and FrameTimeout (%s) cannot be negative", c.HandshakeTimeout, c.WriteTimeout, c.FrameTimeout)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("wire: MaxConns (%d) cannot be negative", c.MaxConns)
	}
	if c.FrameBudget != 0 && c.FrameBudget < c.withDefaults().MaxFrameSize {
		return fmt.Errorf("wire: FrameBudget (%d) must be 0 (default) or at least MaxFrameSize (%d)", c.FrameBudget, c.withDefaults().MaxFrameSize)
	}
	return nil
}

// Validate reports the first invalid field.
func (c ClientConfig) Validate() error {
	if err := validFrameSize(c.MaxFrameSize); err != nil {
		return err
	}
	if c.DialTimeout < 0 || c.WriteTimeout < 0 {
		return fmt.Errorf("wire: DialTimeout (%s) and WriteTimeout (%s) cannot be negative", c.DialTimeout, c.WriteTimeout)
	}
	if c.MaxIdleStreamConns < 0 {
		return fmt.Errorf("wire: MaxIdleStreamConns (%d) cannot be negative", c.MaxIdleStreamConns)
	}
	return nil
}

// minFrameSize is the smallest MaxFrameSize accepted: room for a call
// header, a method name and a small body.
const minFrameSize = 1 << 10

func validFrameSize(n int) error {
	if n != 0 && (n < minFrameSize || n > 1<<31) {
		return fmt.Errorf("wire: MaxFrameSize (%d) must be 0 (default) or between 1 KiB and 2 GiB", n)
	}
	return nil
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.MaxConcurrentCalls == 0 {
		c.MaxConcurrentCalls = 256
	}
	if c.StreamChunkSize == 0 {
		c.StreamChunkSize = min(DefaultStreamChunkSize, c.MaxFrameSize-headerLen)
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = 30 * time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = 4096
	}
	if c.FrameBudget == 0 {
		c.FrameBudget = max(64<<20, c.MaxFrameSize)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Dialer == nil {
		c.Dialer = tcpDialer()
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxIdleStreamConns == 0 {
		c.MaxIdleStreamConns = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
