package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
)

type bodyMode uint8

const (
	modeNone bodyMode = iota
	modeLength
	modeChunked
	modeEOF
)

// Body reads one message body with the framing of its head. A Body is reused
// for every message on a connection; Reset arms it for the next one.
type Body struct {
	r       *Reader
	mode    bodyMode
	strict  bool
	left    int64 // bytes left in the body (length) or current chunk (chunked)
	crlf    bool  // chunked: a CRLF must follow the chunk just read
	last    bool  // chunked: the last chunk was read, the trailer section is next
	limit   int64
	total   int64
	done    bool
	err     error
	trailer http.Header
}

// NewBody returns a Body that reads from r's connection and parses trailers
// with r's limits.
func NewBody(r *Reader) *Body { return &Body{r: r} }

// ResetRequest arms b for the body of req. limit caps the body size (0: no
// cap); a declared Content-Length above it is reported by the caller before
// reading, and a chunked body that grows past it fails with ErrBodyTooLarge.
func (b *Body) ResetRequest(req *Request, limit int64) {
	b.reset(true, limit)
	switch {
	case req.Chunked:
		b.mode = modeChunked
	case req.ContentLength > 0:
		b.mode, b.left = modeLength, req.ContentLength
	default:
		b.mode, b.done = modeNone, true
	}
}

// ResetResponse arms b for the body of resp.
func (b *Body) ResetResponse(resp *Response) {
	b.reset(false, 0)
	switch {
	case resp.NoBody:
		b.mode, b.done = modeNone, true
	case resp.Chunked:
		b.mode = modeChunked
	case resp.ContentLength >= 0:
		b.mode, b.left = modeLength, resp.ContentLength
		b.done = resp.ContentLength == 0
	default:
		b.mode = modeEOF
	}
}

func (b *Body) reset(strict bool, limit int64) {
	b.strict, b.limit, b.total = strict, limit, 0
	b.left, b.crlf, b.last, b.done, b.err = 0, false, false, false, nil
	if b.trailer != nil {
		clear(b.trailer)
	}
}

// Done reports whether the body has been read to its end, so the connection
// may carry another message.
func (b *Body) Done() bool { return b.done }

// HasBody reports whether the message has a body at all.
func (b *Body) HasBody() bool { return b.mode != modeNone }

// Chunked reports whether the body is chunked, the only framing that can
// end with trailers.
func (b *Body) Chunked() bool { return b.mode == modeChunked }

// Trailer returns the trailer fields, valid once Read has returned io.EOF.
// It is nil or empty when the message had none.
func (b *Body) Trailer() http.Header { return b.trailer }

// Read reads body bytes. It returns io.EOF at the end of the body,
// ErrUnexpectedEOF when the peer closes early, a *ParseError for broken
// chunked framing and ErrBodyTooLarge past the limit. After a read that
// timed out (a deadline on the connection) the body reads on from where
// it stopped, as a net.Conn does: framing is parsed from the buffer only
// once it is there whole (but a trailer section, after which a timeout
// stays), so a proxy may wake a reader waiting for a client that stopped
// sending and later drain the rest.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	var n int
	var err error
	switch b.mode {
	case modeLength:
		n, err = b.readLength(p)
	case modeChunked:
		n, err = b.readChunked(p)
	case modeEOF:
		n, err = b.r.br.Read(p)
		if errors.Is(err, io.EOF) {
			b.done = true
		}
	}
	b.total += int64(n)
	if b.limit > 0 && b.total > b.limit && err == nil {
		err = ErrBodyTooLarge
	}
	if err != nil && !errors.Is(err, io.EOF) && !isTimeout(err) {
		b.err = err
	}
	return n, err
}

// isTimeout reports a deadline's error, after which a read may be retried.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// LengthLeft returns how many bytes of a body framed by Content-Length
// are still to be read, buffered or not: 0 once it is done, -1 for other
// framings or after an error.
func (b *Body) LengthLeft() int64 {
	if b.err != nil || b.mode != modeLength {
		return -1
	}
	return b.left
}

// Skip records that the caller consumed the next n bytes of a body framed
// by Content-Length itself: from the Reader's buffer (Discard) or past it,
// straight from the connection (splice). n must not exceed LengthLeft.
func (b *Body) Skip(n int64) {
	if b.mode != modeLength || n < 0 || n > b.left {
		panic("h1: Body.Skip past the end of the body")
	}
	b.left -= n
	b.total += n
	b.done = b.left == 0
}

// Buffered reports how many body bytes the next Read returns without
// waiting for the network (a lower bound; 0 when it may block). A proxy
// flushes what it has written when this is 0, so a streamed response is
// not held back by framing bytes (a chunk's trailing CRLF, the next
// chunk's size line) that sit in the buffer without data.
func (b *Body) Buffered() int {
	if b.err != nil || b.done {
		return 0
	}
	br := b.r.br
	switch b.mode {
	case modeLength:
		return int(min(b.left, int64(br.Buffered())))
	case modeEOF:
		return br.Buffered()
	case modeChunked:
		if b.left > 0 {
			return int(min(b.left, int64(br.Buffered())))
		}
		if b.last {
			return 0 // the end is near, flush
		}
		// Between chunks: data is ready only when the CRLF, a whole size
		// line and at least one data byte are buffered.
		buf, _ := br.Peek(br.Buffered())
		if b.crlf {
			if len(buf) < 2 || buf[0] != '\r' || buf[1] != '\n' {
				return 0
			}
			buf = buf[2:]
		}
		i := bytes.IndexByte(buf, '\n')
		if i < 0 || i+1 >= len(buf) {
			return 0
		}
		if lastChunk(buf[:i]) {
			return 0 // the last chunk: the end is near, flush
		}
		return 1
	}
	return 0
}

// EndBuffered reports whether the end of a chunked body is in the buffer:
// no data is left but the last chunk, whose size line and whole trailer
// section (up to its empty line) are buffered, so Read reaches io.EOF
// without waiting for the network. Buffered reports 0 at that point (the
// end is near, a proxy flushes); a proxy that wants the body whole before
// it writes to a slow client reads on when this is true. It is false for
// other framings, a length-framed body's end being LengthLeft's to tell.
func (b *Body) EndBuffered() bool {
	if b.err != nil || b.done || b.mode != modeChunked || b.left > 0 {
		return false
	}
	br := b.r.br
	buf, _ := br.Peek(br.Buffered())
	rest := buf
	if !b.last {
		if b.crlf {
			if len(buf) < 2 || buf[0] != '\r' || buf[1] != '\n' {
				return false
			}
			buf = buf[2:]
		}
		i := bytes.IndexByte(buf, '\n')
		if i < 0 || !lastChunk(bytes.TrimSuffix(buf[:i], []byte("\r"))) {
			return false
		}
		rest = buf[i+1:]
	}
	// The trailer section ends with an empty line: at once (no fields),
	// or after the last field line.
	return bytes.HasPrefix(rest, []byte("\r\n")) || bytes.HasPrefix(rest, []byte("\n")) ||
		bytes.Contains(rest, []byte("\n\r\n")) || bytes.Contains(rest, []byte("\n\n"))
}

// lastChunk reports whether a chunk size line (without its LF) declares
// size 0, written with any number of zeros ("00;ext" too: found by
// FuzzChunkedBody, where Buffered promised data and Read then waited for
// the trailer).
func lastChunk(line []byte) bool {
	j := 0
	for j < len(line) && line[j] == '0' {
		j++
	}
	return j > 0 && (j == len(line) || unhex(line[j]) < 0)
}

func (b *Body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		b.done = true
		return n, nil
	}
	if errors.Is(err, io.EOF) {
		return n, ErrUnexpectedEOF
	}
	return n, err
}

// readChunked reads chunk data into p. Having read to the end of a chunk
// it goes on with the next ones while p has room and Buffered promises
// their data without waiting, so a large p takes many small chunks at once.
func (b *Body) readChunked(p []byte) (int, error) {
	n, err := b.readChunk(p)
	for err == nil && n < len(p) && b.left == 0 && b.Buffered() > 0 {
		var m int
		m, err = b.readChunk(p[n:])
		n += m
	}
	return n, err
}

func (b *Body) readChunk(p []byte) (int, error) {
	for b.left == 0 && !b.last {
		if b.crlf {
			if err := b.readCRLF(); err != nil {
				return 0, err
			}
			b.crlf = false
		}
		size, err := b.readChunkSize()
		if err != nil {
			return 0, err
		}
		b.left, b.crlf, b.last = size, size > 0, size == 0
	}
	if b.last {
		return 0, b.readEnd()
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.br.Read(p)
	b.left -= int64(n)
	if errors.Is(err, io.EOF) {
		err = ErrUnexpectedEOF
	}
	return n, err
}

// readCRLF reads the line end after chunk data; peeked, then consumed
// whole (see Read).
func (b *Body) readCRLF() error {
	br := b.r.br
	n := 1
	p, err := br.Peek(1)
	if err == nil && p[0] == '\r' {
		n = 2
		p, err = br.Peek(2)
	} else if err == nil && b.strict {
		return rerr(400, CodeInvalidChunkedBody, "missing CRLF after chunk data")
	}
	if err != nil {
		return eofAsUnexpected(err)
	}
	if p[n-1] != '\n' {
		return rerr(b.badStatus(), CodeInvalidChunkedBody, "missing CRLF after chunk data")
	}
	br.Discard(n)
	return nil
}

// readChunkSize parses "chunk-size [ chunk-ext ] CRLF". The size is 1 to 15
// hex digits; extensions are allowed but ignored, and may not hold controls.
func (b *Body) readChunkSize() (int64, error) {
	line, err := peekLine(b.r.br)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, rerr(b.badStatus(), CodeInvalidChunkedBody, "chunk size line too long")
		}
		return 0, eofAsUnexpected(err)
	}
	b.r.br.Discard(len(line)) // line stays valid: Discard within the buffer moves nothing
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	} else if b.strict {
		return 0, rerr(400, CodeInvalidChunkedBody, "bare LF after chunk size")
	}
	var size int64
	i := 0
	for ; i < len(line); i++ {
		v := unhex(line[i])
		if v < 0 {
			break
		}
		if i == 15 {
			return 0, rerr(b.badStatus(), CodeInvalidChunkedBody, "chunk size too large")
		}
		size = size<<4 | int64(v)
	}
	if i == 0 {
		return 0, rerr(b.badStatus(), CodeInvalidChunkedBody, "invalid chunk size")
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	// Whitespace is only allowed before an extension (BWS ";"), never alone.
	if len(rest) > 0 && rest[0] != ';' || len(rest) == 0 && i < len(line) {
		return 0, rerr(b.badStatus(), CodeInvalidChunkedBody, "invalid chunk size")
	}
	for _, c := range rest {
		if isCTL(c) {
			return 0, rerr(b.badStatus(), CodeInvalidChunkedBody, "invalid character in chunk extension")
		}
	}
	return size, nil
}

// peekLine returns br's next line, its LF included, without consuming it:
// unlike ReadSlice, a read that fails half way (a timeout) leaves br where
// it was. bufio.ErrBufferFull when br's buffer fills without an LF.
func peekLine(br *bufio.Reader) ([]byte, error) {
	seen := 0 // bytes searched for the LF already
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(buf[seen:], '\n'); i >= 0 {
			return buf[:seen+i+1], nil
		}
		seen = len(buf)
		if seen == br.Size() {
			return nil, bufio.ErrBufferFull
		}
		if _, err := br.Peek(seen + 1); err != nil {
			return nil, err
		}
	}
}

// readEnd reads the trailer section after the last chunk and reports
// io.EOF. Its first line (most often the whole section: the empty line)
// is waited for before the section is read line by line: a timeout
// further in is final (see Read).
func (b *Body) readEnd() error {
	if _, err := peekLine(b.r.br); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return eofAsUnexpected(err)
	}
	if err := b.readTrailer(); err != nil {
		b.err = err
		return err
	}
	b.done = true
	return io.EOF
}

func (b *Body) readTrailer() error {
	r := b.r
	if err := r.readLines(b.strict, b.badStatus(), false); err != nil {
		return eofAsUnexpected(err)
	}
	if len(r.lines) == 0 {
		return nil
	}
	if b.trailer == nil {
		b.trailer = make(http.Header, len(r.lines))
	}
	return r.parseLines(string(r.head), r.lines, b.trailer, b.badStatus())
}

func (b *Body) badStatus() int {
	if b.strict {
		return 400
	}
	return 502
}

func eofAsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return ErrUnexpectedEOF
	}
	return err
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
