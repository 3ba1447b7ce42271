package h2

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// processHeaders opens a stream, or takes a stream's trailers.
func (c *Conn) processHeaders(f *fieldBlock) error {
	id := f.streamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.mu.Unlock()
		return c.processTrailers(st, f)
	}
	if id <= c.maxClientID {
		reset := c.wasResetLocked(id)
		c.mu.Unlock()
		if reset {
			// Trailers the client sent before it saw our RST_STREAM (after
			// a 431, or a response that did not wait for the body): frames
			// on a stream we reset are ignored (RFC 9113 section 5.1), once
			// decoded for the dynamic table. They did no work.
			return c.overhead(f)
		}
		return http2.ConnectionError(http2.ErrCodeProtocol) // closed, or lower than one seen
	}
	c.maxClientID = id
	if f.hasPriority && f.streamDep == id {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol, Cause: errors.New("stream depends on itself")}
	}
	if f.truncated || len(f.regular()) > c.cfg.MaxHeaders {
		c.noteResetLocked(id)
		c.mu.Unlock()
		reason := h1.CodeTooManyFields
		if f.truncated {
			reason = h1.CodeHeaderTooLarge
		}
		err := errors.New("h2: request header list over the limit")
		c.reportReject(reason, err)
		status := c.refuseHeaderListTooLarge(id, f.endStream, grpcRequest(f.regular()))
		if c.cfg.OnRefusedHead != nil {
			rh := RefusedHead{Status: status, Reason: reason, Err: err}
			for _, hf := range f.pseudo() {
				switch hf.Name {
				case ":method":
					rh.Method = hf.Value
				case ":authority":
					rh.Authority = hf.Value
				case ":path":
					rh.Path = hf.Value
				}
			}
			c.cfg.OnRefusedHead(rh)
		}
		return nil
	}
	refuse := c.closing || (c.drain == drainFinal && id > c.lastStreamID) ||
		len(c.streams) >= int(c.cfg.MaxConcurrentStreams) || c.running >= 2*int(c.cfg.MaxConcurrentStreams)
	c.mu.Unlock()
	if refuse {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	st, err := c.newStream(f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		st.cancel(errConnClosed)
		return nil
	}
	c.streams[id] = st
	c.running++
	c.mu.Unlock()
	c.startStream(st)
	c.useful(floodPerRequest)
	return nil
}

// refuseHeaderListTooLarge answers a request whose header block was over
// MaxHeaderListSize, or had more than MaxHeaders fields, with 431 (as
// HTTP/1.1 does), and stops its body if one follows. A gRPC call gets
// RESOURCE_EXHAUSTED in a trailers-only response instead, as the proxy
// answers its other refusals: gRPC clients read a status other than 200
// through a fixed table in which 431 is UNKNOWN (grpc-go) or INTERNAL
// (grpc-java).
// It returns the status answered.
func (c *Conn) refuseHeaderListTooLarge(id uint32, ended, grpc bool) int {
	status, h := http.StatusRequestHeaderFieldsTooLarge, http.Header{"Content-Length": {"0"}}
	if grpc {
		status, h = http.StatusOK, http.Header{
			"Content-Type": {"application/grpc"},
			"Grpc-Status":  {grpcResourceExhausted},
			"Grpc-Message": {"request metadata over the server's limit"},
		}
	}
	c.lockWrite()
	c.writeFieldsLocked(id, status, h, true)
	if !ended {
		c.fr.WriteRSTStream(id, http2.ErrCodeNo)
	}
	c.flushWanted = true
	c.unlockWrite()
	return status
}

// grpcResourceExhausted is gRPC's status RESOURCE_EXHAUSTED.
const grpcResourceExhausted = "8"

// grpcRequest reports a gRPC call: a content-type of application/grpc,
// application/grpc+proto, application/grpc;..., not grpc-web's.
func grpcRequest(fields []hpack.HeaderField) bool {
	for _, hf := range fields {
		if hf.Name == "content-type" {
			rest, ok := strings.CutPrefix(hf.Value, "application/grpc")
			return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
		}
	}
	return false
}

func (c *Conn) processTrailers(st *Stream, f *fieldBlock) error {
	c.mu.Lock()
	switch {
	case st.recvDone:
		c.mu.Unlock()
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeStreamClosed, Cause: errors.New("HEADERS on a half-closed stream")}
	case f.truncated || len(f.regular()) > c.cfg.MaxHeaders:
		// Too late for a 431: the request runs. The stream is reset, as
		// its request is not whole; dropping the trailers that did not
		// fit would pass a part of them on as all of them.
		c.mu.Unlock()
		reason := h1.CodeTooManyFields
		if f.truncated {
			reason = h1.CodeHeaderTooLarge
		}
		c.reportReject(reason, errors.New("h2: request trailers over the limit"))
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeEnhanceYourCalm, Cause: errors.New("trailers over the header list limit")}
	case !f.endStream:
		c.mu.Unlock()
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol, Cause: errors.New("trailers without END_STREAM")}
	case len(f.pseudo()) > 0:
		c.mu.Unlock()
		return malformed(st.id, reasonInvalidPseudo, "pseudo-header field in trailers")
	case st.ContentLength >= 0 && st.received != st.ContentLength:
		c.mu.Unlock()
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol, Cause: errors.New("body shorter than content-length")}
	}
	st.recvDone = true
	c.mu.Unlock()
	h := make(http.Header, len(f.regular()))
	for _, hf := range f.regular() {
		if connectionSpecific(hf.Name) {
			return malformed(st.id, reasonConnectionSpecific, "connection-specific field "+hf.Name+" in trailers")
		}
		if !h1.ValidFieldValue(hf.Value) {
			return malformed(st.id, h1.CodeInvalidFieldValue, "whitespace around the value of trailer "+hf.Name)
		}
		k := textproto.CanonicalMIMEHeaderKey(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	st.deliverTrailer(h)
	return nil
}

// newStream checks a request head (RFC 9113 section 8.3.1) and makes its
// stream. The head must also be one HTTP/1.1 would carry unchanged (see
// readPseudo, readFields): the proxy forwards it to HTTP/1.1 upstreams.
func (c *Conn) newStream(f *fieldBlock) (*Stream, error) {
	id := f.streamID
	st, vals := allocStream(len(f.regular()))
	st.c, st.id, st.ContentLength = c, id, -1
	if err := st.readPseudo(f.pseudo()); err != nil {
		return nil, err
	}
	h, err := st.readFields(f.regular(), vals)
	if err != nil {
		return nil, err
	}
	st.Header = h
	if f.endStream {
		if st.ContentLength > 0 {
			return nil, malformed(id, h1.CodeInvalidContentLength, "body shorter than content-length")
		}
		st.recvDone, st.eof, st.bodyless = true, true, true
	}
	c.mu.Lock()
	st.sendWin = int64(c.peerInitWin)
	c.mu.Unlock()
	st.recvWin = c.cfg.StreamWindow
	if !st.bodyless {
		// A request without body never waits for one: Read finds eof
		// set, and no DATA or trailers are accepted after END_STREAM.
		// signal skips the nil channel.
		st.bodyWake = make(chan struct{}, 1)
	}
	st.ctx, st.cancel = context.WithCancelCause(c.ctx)
	c.opened++
	return st, nil
}

// allocStream allocates a Stream and, for n request fields, the array
// readFields cuts their values from: together, one allocation, when n is
// small (most requests carry a few fields). The values keep the Stream
// from the collector while they are referenced: a request's header is
// valid while the request runs (HTTP/1.1 reuses its map and value slices
// for the connection's next request), and what outlives it is copied
// (refreshLater).
func allocStream(n int) (*Stream, []string) {
	switch {
	case n <= 2:
		p := new(struct {
			st   Stream
			vals [2]string
		})
		return &p.st, p.vals[:0]
	case n <= 4:
		p := new(struct {
			st   Stream
			vals [4]string
		})
		return &p.st, p.vals[:0]
	case n <= 8:
		p := new(struct {
			st   Stream
			vals [8]string
		})
		return &p.st, p.vals[:0]
	}
	return new(Stream), make([]string, 0, n)
}

// readPseudo takes the pseudo-header fields and checks them against the
// grammar of an HTTP/1.1 request line: the Framer has refused duplicates,
// unknown names, pseudo-header fields after regular ones and CR, LF, NUL
// in values, but not a space in :method or :path, userinfo in :authority
// or an odd :scheme.
func (st *Stream) readPseudo(fields []hpack.HeaderField) error {
	id := st.id
	for _, hf := range fields {
		switch hf.Name {
		case ":method":
			st.Method = hf.Value
		case ":scheme":
			st.Scheme = hf.Value
		case ":path":
			st.Path = hf.Value
		case ":authority":
			st.Authority = hf.Value
		default: // :status, or :protocol (extended CONNECT is not offered)
			return malformed(id, reasonInvalidPseudo, "pseudo-header field "+hf.Name+" in a request")
		}
	}
	switch {
	case st.Method == "":
		return malformed(id, reasonMissingPseudo, "no :method")
	case !h1.ValidMethod(st.Method):
		return malformed(id, h1.CodeInvalidMethod, "invalid :method "+quote(st.Method))
	case st.Method == http.MethodConnect:
		if st.Scheme != "" || st.Path != "" {
			return malformed(id, reasonInvalidPseudo, "CONNECT with :scheme or :path")
		}
		if !h1.ValidTarget(st.Method, st.Authority) {
			return malformed(id, h1.CodeInvalidHost, "CONNECT :authority "+quote(st.Authority)+" is not host:port")
		}
		return nil
	case st.Scheme == "" || st.Path == "":
		return malformed(id, reasonMissingPseudo, "no :scheme or :path")
	case st.Scheme != "http" && st.Scheme != "https":
		return malformed(id, reasonInvalidScheme, ":scheme "+quote(st.Scheme)+" is not http or https")
	case !h1.ValidTarget(st.Method, st.Path):
		return malformed(id, h1.CodeInvalidTarget, "invalid :path "+quote(st.Path))
	case st.Authority != "" && !h1.ValidAuthority(st.Authority):
		return malformed(id, h1.CodeInvalidHost, "invalid :authority "+quote(st.Authority))
	}
	return nil
}

// readFields takes the regular fields into a header in canonical form:
// connection-specific fields, a TE other than trailers, values with
// leading or trailing whitespace (RFC 9113 section 8.2.1) and an invalid
// content-length are malformed; Host is checked against :authority and
// kept out of the header.
//
// A field's values are cut from vals (empty, with room for every field;
// see allocStream), one allocation for all rather than one per field;
// each holds its whole capacity, so a repeated field, or a later append,
// copies rather than overwrite the next.
func (st *Stream) readFields(fields []hpack.HeaderField, vals []string) (http.Header, error) {
	id := st.id
	h := make(http.Header, len(fields))
	var cookies []string
	host, hosts := "", 0
	for _, hf := range fields {
		if !h1.ValidFieldValue(hf.Value) {
			return nil, malformed(id, h1.CodeInvalidFieldValue, "whitespace around the value of "+hf.Name)
		}
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, malformed(id, reasonConnectionSpecific, "connection-specific field "+hf.Name)
		case "te":
			if hf.Value != "trailers" {
				return nil, malformed(id, reasonInvalidTE, "te other than trailers")
			}
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		case "expect":
			st.expect100 = strings.EqualFold(hf.Value, "100-continue")
		case "host":
			host, hosts = hf.Value, hosts+1
			continue
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63) // digits only: no sign, no list
			if err != nil || (st.ContentLength >= 0 && int64(n) != st.ContentLength) {
				return nil, malformed(id, h1.CodeInvalidContentLength, "invalid content-length")
			}
			st.ContentLength = int64(n)
		}
		k := textproto.CanonicalMIMEHeaderKey(hf.Name)
		if vv, ok := h[k]; ok {
			h[k] = append(vv, hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if len(cookies) > 0 {
		// Split cookie fields are joined for HTTP/1.1 (RFC 9113 section 8.2.3).
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	return h, st.takeHost(host, hosts)
}

// takeHost checks the Host fields (hosts of them, the last one host): one
// at most, valid, and naming the same authority as :authority when both
// are sent (RFC 9113 section 8.3.1), else the upstream could route on
// another host than ours. Without :authority, Host is the authority; with
// neither the request is refused, as HTTP/1.1 refuses a missing Host.
func (st *Stream) takeHost(host string, hosts int) error {
	id := st.id
	switch {
	case hosts > 1:
		return malformed(id, h1.CodeDuplicateHost, "more than one host field")
	case hosts == 1 && !h1.ValidAuthority(host):
		return malformed(id, h1.CodeInvalidHost, "invalid host field "+quote(host))
	case hosts == 1 && st.Authority == "":
		st.Authority = host
	case hosts == 1 && !sameAuthority(st.Scheme, st.Authority, host):
		return malformed(id, reasonHostMismatch, "host "+quote(host)+" differs from :authority "+quote(st.Authority))
	case st.Authority == "":
		return malformed(id, h1.CodeMissingHost, "no :authority or host")
	}
	return nil
}

// sameAuthority compares two authorities as RFC 3986 section 6.2.3
// normalizes them: the host without case, the scheme's default port
// implied.
func sameAuthority(scheme, a, b string) bool {
	def := ":443"
	if scheme == "http" {
		def = ":80"
	}
	return strings.EqualFold(strings.TrimSuffix(a, def), strings.TrimSuffix(b, def))
}

// quote quotes a value for an error, cut to 64 bytes: the log line stays
// short whatever the client sent.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}
