package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/textproto"
)

// Limits bound what a Reader accepts. Zero fields take the default.
type Limits struct {
	// MaxHeaderBytes caps a head: request or status line, header fields and
	// the final empty line; beyond it reads fail with status 431 (default 64 KiB).
	MaxHeaderBytes int
	// MaxHeaders caps the number of header fields (default 128).
	MaxHeaders int
}

const (
	defaultMaxHeaderBytes = 64 << 10
	defaultMaxHeaders     = 128
	maxLeadingEmptyLines  = 4
)

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = defaultMaxHeaders
	}
	return l
}

// Reader reads message heads from a buffered connection and reuses its
// buffers from one message to the next. It is not safe for concurrent use.
type Reader struct {
	br    *bufio.Reader
	lim   Limits
	head  []byte
	vals  []string
	lines [][2]int
}

// NewReader returns a Reader over br.
func NewReader(br *bufio.Reader, lim Limits) *Reader {
	return &Reader{br: br, lim: lim.withDefaults()}
}

// Reset makes r read from br with lim, as NewReader would, keeping the
// buffers it grew: a server that pools its Readers parses a new
// connection's first head without growing them from nothing (eight
// allocations a connection, measured with a new connection per request).
// Buffers grown past the defaults by an unusually large head are dropped.
func (r *Reader) Reset(br *bufio.Reader, lim Limits) {
	r.br, r.lim = br, lim.withDefaults()
	r.resetArena()
	if cap(r.head) > 16<<10 {
		r.head = nil
	}
	if cap(r.lines) > 2*defaultMaxHeaders || cap(r.vals) > 2*defaultMaxHeaders {
		r.lines, r.vals = nil, nil
	}
	r.head, r.lines = r.head[:0], r.lines[:0]
}

// HeadLen returns the bytes of the last head read (its start line, fields
// and empty line; leading empty lines not counted).
func (r *Reader) HeadLen() int { return len(r.head) }

// Buffered returns the bufio.Reader the Reader reads from.
func (r *Reader) Buffered() *bufio.Reader { return r.br }

// readHead reads one head up to and including its empty line into r.head and
// records the span of each line (without its line ending) in r.lines. With
// strict set, a line ending in a bare LF is an error. It returns io.EOF when
// the peer closed before sending any byte of a head.
func (r *Reader) readHead(strict bool, tooLarge int) error {
	return r.readLines(strict, tooLarge, true)
}

// readLines reads lines up to an empty line. With startLine unset (a trailer
// section) an empty first line ends the section at once.
func (r *Reader) readLines(strict bool, tooLarge int, startLine bool) error {
	r.head = r.head[:0]
	r.lines = r.lines[:0]
	lineStart, empties := 0, 0
	startLines := 0 // a trailer section has no start line to allow for
	if startLine {
		startLines = 1
	}
	for {
		if strict && startLine && len(r.head) == 0 && len(r.lines) == 0 {
			// A request line starts with its method, a token. Bytes that
			// cannot start one (a TLS ClientHello sent to a plain port,
			// 0x16) are refused as they arrive, as nginx does, rather than
			// after the header timeout: a ClientHello has no line end to
			// wait for.
			if b, err := r.br.Peek(1); err == nil && !isTokenChar(b[0]) && b[0] != '\r' && b[0] != '\n' {
				return rerr(400, CodeInvalidMethod, "a request line cannot start with byte %#02x", b[0])
			}
		}
		frag, err := r.br.ReadSlice('\n')
		r.head = append(r.head, frag...)
		if len(r.head) > r.lim.MaxHeaderBytes {
			return &ParseError{Status: tooLarge, Reason: "header too large", Code: CodeHeaderTooLarge}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if startLine && len(r.head) == 0 && errors.Is(err, io.EOF) {
				return io.EOF
			}
			if errors.Is(err, io.EOF) {
				return ErrUnexpectedEOF
			}
			return err
		}
		end := len(r.head) - 1 // index of '\n'
		if end > lineStart && r.head[end-1] == '\r' {
			end--
		} else if strict {
			return rerr(400, CodeBareLF, "bare LF line ending")
		}
		if end == lineStart {
			if startLine && len(r.lines) == 0 { // RFC 9112 2.2: ignore empty lines before a start line
				if empties++; empties > maxLeadingEmptyLines {
					if !strict { // a response: the upstream's fault, 502 (FuzzReadResponse)
						return perr(502, "too many empty lines before status line")
					}
					return rerr(400, CodeLeadingEmptyLines, "too many empty lines before start line")
				}
				r.head, lineStart = r.head[:0], 0
				continue
			}
			return nil
		}
		r.lines = append(r.lines, [2]int{lineStart, end})
		if len(r.lines) > r.lim.MaxHeaders+startLines {
			return &ParseError{Status: tooLarge, Reason: "too many header fields", Code: CodeTooManyFields}
		}
		lineStart = len(r.head)
	}
}

// parseFields parses the field lines of s (all lines after the first) into h. badStatus is the status
// for a malformed field (400 for requests, 502 for responses).
func (r *Reader) parseFields(s string, h http.Header, badStatus int) error {
	return r.parseLines(s, r.lines[1:], h, badStatus)
}

func (r *Reader) parseLines(s string, lines [][2]int, h http.Header, badStatus int) error {
	for _, ln := range lines {
		line := s[ln[0]:ln[1]]
		if line[0] == ' ' || line[0] == '\t' {
			return rerr(badStatus, CodeObsFold, "obsolete line folding in header")
		}
		colon := -1
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c == ':' {
				colon = i
				break
			}
			if !isTokenChar(c) {
				if c == ' ' || c == '\t' {
					return rerr(badStatus, CodeInvalidFieldName, "whitespace before colon in header field name")
				}
				return rerr(badStatus, CodeInvalidFieldName, "invalid character %q in header field name", c)
			}
		}
		if colon <= 0 {
			return rerr(badStatus, CodeInvalidFieldName, "malformed header field line")
		}
		v, ok := fieldValue(line[colon+1:])
		if !ok {
			return rerr(badStatus, CodeInvalidFieldValue, "invalid character in value of header %q", line[:colon])
		}
		r.addField(h, textproto.CanonicalMIMEHeaderKey(line[:colon]), v)
	}
	return nil
}

// addField appends v under key, carving value slices out of one arena so a
// typical head costs no allocation per field.
func (r *Reader) addField(h http.Header, key, v string) {
	if old, ok := h[key]; ok {
		h[key] = append(old, v)
		return
	}
	i := len(r.vals)
	r.vals = append(r.vals, v)
	h[key] = r.vals[i : i+1 : i+1]
}

// resetArena forgets the values of the previous message. The map that held
// them must have been cleared or dropped by the caller.
func (r *Reader) resetArena() {
	clear(r.vals)
	r.vals = r.vals[:0]
}

// fieldValue trims optional whitespace and validates a field value: visible
// ASCII, obs-text, SP and HTAB only; NUL, CR, LF and other controls refuse.
func fieldValue(v string) (string, bool) {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	for i := 0; i < len(v); i++ {
		if isCTL(v[i]) {
			return "", false
		}
	}
	return v, true
}

// isCTL reports a byte refused in a field value or chunk extension: a
// control other than HTAB (CR, LF and NUL among them), or DEL. The writers
// blank it too (FuzzChunkWriterRoundTrip found a trailer holding one made
// the writer's own chunked body unreadable).
func isCTL(c byte) bool { return c < ' ' && c != '\t' || c == 0x7f }

// isTokenChar reports whether c may appear in a token (RFC 9110 5.6.2).
func isTokenChar(c byte) bool { return c < 128 && tokenTable[c] }

var tokenTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}
