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
	// further requests wait, which back-pressures the peer (default 256).
	MaxConcurrentCalls int
	// HandshakeTimeout is how long a new connection has to send the magic
	// byte (default 5s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds writing one response (default 10s).
	WriteTimeout time.Duration
	// Logger receives protocol errors at Debug and Warn (default slog.Default()).
	Logger *slog.Logger
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
	// Logger receives connection errors at Debug (default slog.Default()).
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c ServerConfig) Validate() error {
	if c.MaxFrameSize < 0 || c.MaxFrameSize > 1<<31 {
		return fmt.Errorf("wire: MaxFrameSize (%d) must be between 0 and 2 GiB", c.MaxFrameSize)
	}
	if c.MaxConcurrentCalls < 0 {
		return fmt.Errorf("wire: MaxConcurrentCalls (%d) cannot be negative", c.MaxConcurrentCalls)
	}
	if c.HandshakeTimeout < 0 || c.WriteTimeout < 0 {
		return fmt.Errorf("wire: HandshakeTimeout (%s) and WriteTimeout (%s) cannot be negative", c.HandshakeTimeout, c.WriteTimeout)
	}
	return nil
}

// Validate reports the first invalid field.
func (c ClientConfig) Validate() error {
	if c.MaxFrameSize < 0 || c.MaxFrameSize > 1<<31 {
		return fmt.Errorf("wire: MaxFrameSize (%d) must be between 0 and 2 GiB", c.MaxFrameSize)
	}
	if c.DialTimeout < 0 || c.WriteTimeout < 0 {
		return fmt.Errorf("wire: DialTimeout (%s) and WriteTimeout (%s) cannot be negative", c.DialTimeout, c.WriteTimeout)
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
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
