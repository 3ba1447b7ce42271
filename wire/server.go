package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Handler serves one method. body is the request's msgpack payload; the
// returned bytes are sent back as the response payload. A non-nil error is
// sent back as its text and surfaces as *RemoteError at the caller. ctx is
// cancelled when the connection dies or the server closes.
type Handler func(ctx context.Context, body []byte) ([]byte, error)

// ServerStats counts what a Server refused or dropped.
type ServerStats struct {
	Accepted       uint64 // connections accepted
	BadMagic       uint64 // connections closed for a wrong first byte
	ProtocolErrors uint64 // connections closed for a malformed or oversized frame
	UnknownMethod  uint64 // requests for a method with no handler
}

// Server answers calls on any number of listeners.
type Server struct {
	cfg ServerConfig

	mu        sync.Mutex
	handlers  map[string]Handler
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	accepted, badMagic, protoErrs, unknown atomic.Uint64
}

// NewServer returns a Server; it starts nothing until Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:       cfg.withDefaults(),
		handlers:  make(map[string]Handler),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		ctx:       ctx,
		cancel:    cancel,
	}, nil
}

// Handle registers h for method, replacing any earlier handler. It panics on
// an empty or over-long (255 bytes) method name: that is a programming error.
func (s *Server) Handle(method string, h Handler) {
	if method == "" || len(method) > maxMethodLen {
		panic(fmt.Sprintf("wire: invalid method name %q", method))
	}
	s.mu.Lock()
	s.handlers[method] = h
	s.mu.Unlock()
}

// HandleFunc registers a typed handler: the request body is decoded into a
// new Req and the returned *Resp is encoded as the response.
func HandleFunc[Req, Resp any](s *Server, method string, fn func(ctx context.Context, req *Req) (*Resp, error)) {
	s.Handle(method, func(ctx context.Context, body []byte) ([]byte, error) {
		req := new(Req)
		if err := msgpack.Unmarshal(body, req); err != nil {
			return nil, fmt.Errorf("decode request: %w", err)
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		return msgpack.Marshal(resp)
	})
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Accepted: s.accepted.Load(), BadMagic: s.badMagic.Load(),
		ProtocolErrors: s.protoErrs.Load(), UnknownMethod: s.unknown.Load(),
	}
}

// Serve accepts connections on l until l fails or Close is called; it then
// returns ErrClosed (after Close) or the accept error. Serve closes l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("wire: accept: %w", err)
		}
		if !s.track(c) {
			c.Close()
			return ErrClosed
		}
		s.accepted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

// Close stops every listener and connection, cancels running handlers and
// waits for them. It may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *Server) handler(method string) Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers[method]
}

// serverConn is one accepted connection.
type serverConn struct {
	s   *Server
	c   net.Conn
	wmu sync.Mutex
}

// serveConn checks the magic byte, then reads requests until the connection
// fails, dispatching each to its own goroutine (at most MaxConcurrentCalls).
func (s *Server) serveConn(c net.Conn) {
	log := s.cfg.Logger.With("remote", c.RemoteAddr().String())
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	b, err := br.ReadByte()
	if err != nil || b != ProtoRPC {
		if err == nil {
			s.badMagic.Add(1)
			log.Debug("wire: closing connection with unknown first byte", "byte", b)
		}
		return
	}
	c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	sc := &serverConn{s: s, c: c}
	sem := make(chan struct{}, s.cfg.MaxConcurrentCalls) // bounds handlers per connection
	var calls sync.WaitGroup
	defer calls.Wait()
	for {
		f, err := readFrame(br, s.cfg.MaxFrameSize)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				s.protocolError(sc, log, err)
			}
			cancel()
			return
		}
		if f.typ != frameRequest {
			s.protocolError(sc, log, fmt.Errorf("%w: unexpected frame type %d from client", ErrMalformed, f.typ))
			cancel()
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		calls.Add(1)
		go func() {
			defer func() { <-sem; calls.Done() }()
			sc.dispatch(ctx, f)
		}()
	}
}

// protocolError counts, logs and answers a broken stream with goaway.
func (s *Server) protocolError(sc *serverConn, log interface{ Warn(string, ...any) }, err error) {
	if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrMalformed) {
		s.protoErrs.Add(1)
		log.Warn("wire: closing connection after protocol error", "err", err)
		sc.write(appendFrame(nil, frameGoAway, 0, []byte(err.Error())))
	}
	sc.c.Close()
}

// dispatch runs one request and writes its response.
func (sc *serverConn) dispatch(ctx context.Context, f frame) {
	method, body, err := parseRequest(f.payload)
	if err != nil {
		sc.write(appendFrame(nil, frameError, f.id, errorPayload(codeHandler, err.Error())))
		return
	}
	h := sc.s.handler(method)
	if h == nil {
		sc.s.unknown.Add(1)
		sc.write(appendFrame(nil, frameError, f.id, errorPayload(codeUnknownMethod, "unknown method "+method)))
		return
	}
	resp, err := h(ctx, body)
	switch {
	case err != nil:
		sc.write(appendFrame(nil, frameError, f.id, errorPayload(codeHandler, err.Error())))
	case frameLen(len(resp)) > sc.s.cfg.MaxFrameSize:
		sc.write(appendFrame(nil, frameError, f.id, errorPayload(codeHandler, ErrFrameTooLarge.Error()+": response")))
	default:
		sc.write(appendFrame(nil, frameResponse, f.id, resp))
	}
}

// write sends one whole frame; a failed write closes the connection, since a
// partial frame leaves the stream unusable.
func (sc *serverConn) write(b []byte) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.c.SetWriteDeadline(time.Now().Add(sc.s.cfg.WriteTimeout))
	if _, err := sc.c.Write(b); err != nil {
		sc.c.Close()
	}
}
