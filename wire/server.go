package wire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
	"github.com/pingora-go/pingora-go/internal/msgpackx"
)

// Handler serves one method. body is the request's msgpack payload; the
// returned bytes are sent back as the response payload. A non-nil error is
// sent back as an error frame whose code failureFor picks: NotOwner gives
// CodeNotOwner, ErrOverloaded CodeOverloaded, the call's own deadline
// CodeDeadline, anything else CodeHandler with the error's text. ctx ends
// at the caller's deadline, when the connection dies or the server closes.
// A panic is recovered and answered as a handler error.
type Handler func(ctx context.Context, body []byte) ([]byte, error)

// StreamHandler serves one method whose answer is a stream of bytes (a
// cache body). Each Write to w is sent at once, cut into data frames of at
// most StreamChunkSize. Returning nil ends the stream cleanly; returning an
// error (or panicking) after some bytes were written makes the caller's
// Read fail with it, so a caller never mistakes a cut stream for a whole
// one. An error returned before any write comes back from CallStream
// itself. w must not be used after the handler returns.
type StreamHandler func(ctx context.Context, body []byte, w io.Writer) error

// ServerStats is a snapshot of a Server's counters.
type ServerStats struct {
	Accepted       uint64 // connections accepted
	Refused        uint64 // connections closed at once: MaxConns were open
	FrameBytes     int64  // bytes of large frames being received now (of FrameBudget)
	BadMagic       uint64 // connections closed for a wrong first byte
	ProtocolErrors uint64 // connections closed for a malformed or oversized frame
	UnknownMethod  uint64 // requests for a method with no handler of the kind asked
	Overloaded     uint64 // requests refused with CodeOverloaded before running
	Panics         uint64 // handler panics recovered
	Methods        []MethodStats
}

// entry is one registered method.
type entry struct {
	unary  Handler
	stream StreamHandler
	stats  *methodStats
}

// Server answers calls on any number of listeners.
type Server struct {
	cfg ServerConfig

	mu        sync.Mutex
	handlers  map[string]entry
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	// served holds the connections past their magic byte, which Drain
	// sends goaway; draining is set once it was called.
	served   map[*serverConn]struct{}
	draining bool
	closed   bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	budget frameBudget           // large frames being received
	noise  *logthrottle.Throttle // lines peers' junk causes

	accepted, badMagic, protoErrs, unknown, overloaded, panics atomic.Uint64
	connsRefused                                               atomic.Uint64
	methods                                                    methodTable

	// now stamps a request's arrival, from which its deadline counts; a
	// test moves it back to make deadlines pass before a handler starts.
	now func() time.Time
	// clk times the accept loop's back-off (a test's fake clock).
	clk clock.Clock
}

// NewServer returns a Server; it starts nothing until Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg = cfg.withDefaults()
	return &Server{
		budget:    frameBudget{size: int64(cfg.FrameBudget)},
		noise:     logthrottle.New(clock.Real{}, 0, 0),
		cfg:       cfg,
		handlers:  make(map[string]entry),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		served:    make(map[*serverConn]struct{}),
		ctx:       ctx,
		cancel:    cancel,
		now:       time.Now,
		clk:       clock.Real{},
	}, nil
}

// Handle registers h for method, replacing any earlier handler. It panics on
// an empty or over-long (255 bytes) method name: that is a programming error.
func (s *Server) Handle(method string, h Handler) {
	s.register(method, entry{unary: h})
}

// HandleStream registers a stream handler for method, replacing any earlier
// handler. Callers reach it with CallStream. It panics on a bad method name.
func (s *Server) HandleStream(method string, h StreamHandler) {
	s.register(method, entry{stream: h})
}

func (s *Server) register(method string, e entry) {
	if method == "" || len(method) > maxMethodLen {
		panic(fmt.Sprintf("wire: invalid method name %q", method))
	}
	e.stats = s.methods.get(method)
	s.mu.Lock()
	s.handlers[method] = e
	s.mu.Unlock()
}

// HandleFunc registers a typed handler: the request body is decoded into a
// new Req and the returned *Resp is encoded as the response.
func HandleFunc[Req, Resp any](s *Server, method string, fn func(ctx context.Context, req *Req) (*Resp, error)) {
	s.Handle(method, func(ctx context.Context, body []byte) ([]byte, error) {
		req := new(Req)
		if err := msgpackx.Unmarshal(body, req); err != nil {
			return nil, fmt.Errorf("decode request: %w", err)
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		return msgpack.Marshal(resp)
	})
}

// Stats returns the server's counters. A nil Server has none.
func (s *Server) Stats() ServerStats {
	if s == nil {
		return ServerStats{}
	}
	return ServerStats{
		Accepted: s.accepted.Load(), Refused: s.connsRefused.Load(), FrameBytes: s.budget.inUse(), BadMagic: s.badMagic.Load(),
		ProtocolErrors: s.protoErrs.Load(), UnknownMethod: s.unknown.Load(),
		Overloaded: s.overloaded.Load(), Panics: s.panics.Load(),
		Methods: s.methods.snapshot(),
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
	var backoff time.Duration
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
			if AcceptRetryable(err) {
				// out of descriptors: retry, as net/http's Server does;
				// Close ends the wait at once (it closes l too, which
				// ends the next Accept)
				backoff = AcceptBackoff(backoff)
				s.noise.Log(s.cfg.Logger, slog.LevelWarn, "accept", "wire: accept failed, retrying", "err", err, "retry_in", backoff)
				t := s.clk.NewTimer(backoff)
				select {
				case <-t.C():
				case <-s.ctx.Done():
					t.Stop()
					return ErrClosed
				}
				continue
			}
			return fmt.Errorf("wire: accept: %w", err)
		}
		backoff = 0
		ok, full := s.track(c)
		if full {
			s.connsRefused.Add(1)
			c.Close() // a peer holds a few connections: this many is a flood
			continue
		}
		if !ok {
			c.Close()
			return ErrClosed
		}
		s.accepted.Add(1)
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

// Drain asks the peers to take their next calls elsewhere, for a process
// that handed its port to a successor: every connection gets a goaway
// frame as soon as no call runs on it (at once when none does), or after
// drainIdleWait if calls keep running on it, and the peer's client sends
// its next calls on a new connection (to the successor) while the calls
// already sent here are answered here. (Waiting for a pause first spares
// the calls in flight of a client older than that, which fails them on
// goaway.) The listeners are left to the caller; Close ends what is left.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	scs := s.servedConns()
	s.mu.Unlock()
	for _, sc := range scs {
		sc.drain(false)
	}
	time.AfterFunc(drainIdleWait, func() {
		s.mu.Lock()
		scs := s.servedConns()
		s.mu.Unlock()
		for _, sc := range scs {
			sc.drain(true)
		}
	})
}

// drainIdleWait is how long Drain waits for a pause in a connection's
// calls before it sends goaway anyway.
var drainIdleWait = 2 * time.Second

// servedConns, with s.mu held, lists the connections past their magic byte.
func (s *Server) servedConns() []*serverConn {
	scs := make([]*serverConn, 0, len(s.served))
	for sc := range s.served {
		scs = append(scs, sc)
	}
	return scs
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track records a new connection; full reports MaxConns reached (the
// connection is not recorded).
func (s *Server) track(c net.Conn) (ok, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, false
	}
	if len(s.conns) >= s.cfg.MaxConns {
		return false, true
	}
	s.conns[c] = struct{}{}
	// Added under mu, so Close (which sets closed under mu before it
	// waits) never waits while a connection it does not know of starts.
	s.wg.Add(1)
	return true, false
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *Server) handler(method string) (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.handlers[method]
	return e, ok
}

// serveConn checks the magic byte, then reads requests until the connection
// fails, dispatching each to its own goroutine (at most MaxConcurrentCalls;
// beyond that a request is refused with CodeOverloaded at once).
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
	var calls sync.WaitGroup
	defer calls.Wait() // after cancel below: handlers see the connection end
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	sc := &serverConn{s: s, c: c, log: log, running: make(map[uint64]context.CancelFunc)}
	s.mu.Lock()
	s.served[sc] = struct{}{}
	draining := s.draining
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.served, sc)
		s.mu.Unlock()
	}()
	if draining { // accepted as Drain ran
		sc.drain(false)
	}
	for {
		// Between frames a connection may idle for any time (a peer's
		// pooled connection does); once a frame has begun it must arrive
		// whole within FrameTimeout, unless it is here already.
		if _, err := br.Peek(1); err != nil {
			return
		}
		timed := !frameBuffered(br)
		if timed {
			c.SetReadDeadline(time.Now().Add(s.cfg.FrameTimeout))
		}
		f, err := readFrameBuf(br, s.cfg.MaxFrameSize, nil, &s.budget)
		if timed && err == nil {
			c.SetReadDeadline(time.Time{})
		}
		if err == nil && f.typ != frameRequest && f.typ != frameCall && f.typ != frameCancel {
			err = fmt.Errorf("%w: unexpected frame type %d from client", ErrMalformed, f.typ)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				s.protocolError(sc, log, err)
			}
			return
		}
		switch {
		case f.typ == frameCancel:
			sc.cancel(f.id)
		case !sc.admit():
			sc.refuse(f)
		default:
			// The call's context is made here, before its goroutine, so a
			// cancel frame read next always finds it.
			callCtx := sc.track(ctx, f.id)
			arrived := s.now()
			calls.Add(1)
			go func() {
				defer calls.Done()
				defer sc.untrack(f.id)
				sc.dispatch(callCtx, f, arrived)
			}()
		}
	}
}

// frameBuffered reports whether br holds a whole frame.
func frameBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	b, _ := br.Peek(4)
	return uint64(br.Buffered()) >= 4+uint64(binary.BigEndian.Uint32(b))
}

// protocolError counts, logs and answers a broken stream with goaway.
func (s *Server) protocolError(sc *serverConn, log *slog.Logger, err error) {
	if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameBudget) {
		s.protoErrs.Add(1)
		// Anyone who reaches the port can cause it: throttled, so a flood
		// of junk connections cannot flood the log.
		s.noise.Log(log, slog.LevelWarn, "protocol error", "wire: closing connection after protocol error", "err", err)
		sc.write(appendFrame(nil, frameGoAway, 0, []byte(err.Error())))
	}
	sc.c.Close()
}
