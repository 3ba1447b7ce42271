package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/pingora-go/pingora-go/proxy/h2"
)

// copyBufSize is the chunk size for streaming bodies: large enough for few
// syscalls, small enough that 10k streams stay within a few hundred MiB.
const copyBufSize = 32 << 10

// replayLimit is how much of a request body is kept by default so a failed
// attempt can be replayed to another peer; larger bodies are streamed and
// not replayed (Session.ReplayBufferBytes changes it).
const replayLimit = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// relayBufSize is the chunk size for relaying a response body from the
// upstream to the client: a read of the upstream straight into it (the
// connection's bufio buffer is bypassed once it is empty) and a write of
// what was read straight to the client (the client writer's buffer is
// bypassed when it is empty). 64 KiB takes a 100 KiB body in two reads
// where 32 KiB took four.
const relayBufSize = 64 << 10

// relayPool holds the response relay buffers. One is taken only while a
// body is copied and returned after, so an idle keep-alive connection
// holds none; relayBufs counts those taken and not yet returned.
var (
	relayPool = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}
	relayBufs atomic.Int64
)

func getRelayBuf() *[]byte {
	relayBufs.Add(1)
	return relayPool.Get().(*[]byte)
}

func putRelayBuf(b *[]byte) {
	relayPool.Put(b)
	relayBufs.Add(-1)
}

// reqBody is a client's request body as the upstream attempts read it. It
// keeps the first replayLimit bytes, so an attempt that failed can be
// replayed from the start while the body is small, and it counts bytes.
type reqBody struct {
	src    io.Reader
	has    bool
	kept   []byte // bytes read from src so far, while replayable
	pos    int    // next byte of kept to return during a replay
	keep   bool   // every byte read so far is in kept
	eof    bool
	err    error
	n      int64
	handed bool // an attempt read from the body
	limit  int  // how much may be kept
}

func newReqBody(src io.Reader, has bool, limit int) *reqBody {
	if limit <= 0 {
		limit = replayLimit
	}
	return &reqBody{src: src, has: has, keep: true, limit: limit}
}

// prefetch reads the first piece of the body before any upstream is
// contacted, so broken framing (a bad first chunk size) or an oversize body
// is refused before the request reaches an upstream.
func (b *reqBody) prefetch() error {
	if !b.has || b.eof || len(b.kept) > 0 {
		return nil
	}
	buf := make([]byte, 0, 4<<10)
	n, err := b.src.Read(buf[:cap(buf)])
	b.kept = buf[:n]
	b.n += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		b.eof = true
	case err != nil:
		b.err = err
		return err
	}
	return nil
}

// Read serves kept bytes first (a replay, or the prefetched piece), then the
// source.
func (b *reqBody) Read(p []byte) (int, error) {
	b.handed = true
	if b.pos < len(b.kept) {
		n := copy(p, b.kept[b.pos:])
		b.pos += n
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.eof || !b.has {
		return 0, io.EOF
	}
	n, err := b.src.Read(p)
	b.n += int64(n)
	if n > 0 && b.keep {
		if len(b.kept)+n <= b.limit {
			b.kept = append(b.kept, p[:n]...)
			b.pos = len(b.kept)
		} else {
			b.keep, b.kept, b.pos = false, nil, 0
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		b.eof = true
	case err != nil && !interrupted(err):
		b.err = err
	}
	return n, err
}

// errBodyInterrupted is a request body read that the proxy woke
// (downstream.interruptBody) rather than the client's failure: the body
// reads on after resumeBody.
var errBodyInterrupted = errors.New("proxy: request body read interrupted")

func interrupted(err error) bool {
	return errors.Is(err, errBodyInterrupted) || errors.Is(err, h2.ErrReadInterrupted)
}

// complete reports whether the whole body is held in memory.
func (b *reqBody) complete() bool { return !b.has || b.eof && b.keep }

// replayable reports whether rewind would succeed.
func (b *reqBody) replayable() bool { return !b.handed || b.keep && b.err == nil }

// rewind prepares a replay. It fails once bytes were streamed that were not
// kept.
func (b *reqBody) rewind() bool {
	if !b.handed {
		return true
	}
	if !b.keep || b.err != nil {
		return false
	}
	b.pos, b.handed = 0, false
	return true
}

// attemptBody is the body handed to one HTTP/2 attempt. The HTTP/2
// transport reads it from its own goroutine and may keep reading after
// RoundTrip returned an error; cut stops that before the next attempt
// touches the shared reqBody.
type attemptBody struct {
	mu      sync.Mutex
	b       *reqBody
	cut     bool
	ended   atomic.Bool // read to its end (or failed): the client is read no more
	ds      downstream
	trailer http.Header // handed to the transport, filled at the body's end
}

func (a *attemptBody) Read(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cut {
		return 0, errAttemptOver
	}
	n, err := a.b.Read(p)
	if err != nil && !interrupted(err) {
		a.ended.Store(true)
	}
	if errors.Is(err, io.EOF) {
		for k, v := range requestTrailer(a.ds) {
			a.trailer[k] = v
		}
		for k, v := range a.trailer {
			if len(v) == 0 {
				delete(a.trailer, k) // announced but never sent
			}
		}
	}
	return n, err
}

func (a *attemptBody) Close() error { return nil }

// stop ends the attempt's reads. A read that waits for the client holds
// mu: it is woken first (interruptBody), so an upstream's early answer is
// not held until the client sends more or its read times out.
func (a *attemptBody) stop() {
	if !a.ended.Load() {
		a.ds.interruptBody()
		defer a.ds.resumeBody()
	}
	a.mu.Lock()
	a.cut = true
	a.mu.Unlock()
}

var errAttemptOver = errors.New("proxy: attempt over")

// requestTrailer is the client's request trailer section as it goes
// upstream, both protocols: without the fields forbidden in trailers
// (dropForbiddenTrailers). Valid after the request body's EOF.
func requestTrailer(ds downstream) http.Header {
	t := ds.trailer()
	dropForbiddenTrailers(t)
	return t
}
