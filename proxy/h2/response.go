package h2

import (
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The response side of a stream: its head, its body as flow control
// allows, its end with trailers or its reset, and how they are framed
// into the connection's buffer.

// WriteHead records the response status and header fields. They are
// encoded and sent with the first body bytes, a Flush or Finish (a
// response without body is one HEADERS frame with END_STREAM, as gRPC's
// trailers-only responses need), so h must stay unchanged until then.
func (st *Stream) WriteHead(status int, h http.Header) error {
	if st.sendDone || st.headSent || st.headDue {
		return errStreamDone
	}
	st.status, st.head, st.headDue = status, h, true
	st.noBody = st.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
	return nil
}

// HeadSent reports whether the response head was written.
func (st *Stream) HeadSent() bool { return st.headSent || st.headDue }

func (st *Stream) writeHeadLocked(end bool) {
	st.headDue, st.headSent = false, true
	st.c.writeFieldsLocked(st.id, st.status, st.head, end)
	st.head = nil
}

// Write sends response body bytes, as flow control allows. The bytes may
// stay buffered until Flush or Finish.
func (st *Stream) Write(p []byte) error {
	if st.sendDone {
		return errStreamDone
	}
	if st.noBody {
		return nil
	}
	c := st.c
	for len(p) > 0 {
		n, err := st.reserve(len(p))
		if err != nil {
			return err
		}
		c.lockWrite()
		if c.werr != nil {
			err := c.werr
			c.unlockWrite()
			return err
		}
		if st.headDue {
			st.writeHeadLocked(false)
		}
		c.writeDataRunLocked(st.id, p[:n], int(c.peerMaxFrameSize()), false, false)
		err = c.werr // a write the frames made failed: the stream is cut
		c.unlockWrite()
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Window returns how many body bytes Write can send now without waiting
// for the client to open its flow-control windows (the stream's and the
// connection's): 0 when either is shut. A caller with a small body to
// relay from a source it would rather let go of (a proxy's upstream
// connection) reads the rest first when this is less than it holds.
func (st *Stream) Window() int {
	c := st.c
	c.mu.Lock()
	n := min(st.sendWin, c.sendWin)
	c.mu.Unlock()
	return int(max(n, 0))
}

// Flush sends what the stream wrote so far.
func (st *Stream) Flush() error {
	if st.sendDone {
		return nil
	}
	c := st.c
	c.lockWrite()
	if st.headDue && c.werr == nil {
		st.writeHeadLocked(false)
	}
	c.flushWanted = true
	return c.unlockWriteStream()
}

// Finish ends the response, with trailers if any.
func (st *Stream) Finish(trailer http.Header) error {
	if st.sendDone {
		return errStreamDone
	}
	c := st.c
	c.mu.Lock()
	err := st.wfail
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// Ended both ways, the stream is closed once the client can see the
	// end, not when the handler returns: the client may reuse the
	// concurrency slot at once, and a frame it sends on the stream is a
	// connection error.
	c.mu.Lock()
	if st.recvDone {
		c.removeLocked(st)
	}
	c.mu.Unlock()
	c.lockWrite()
	if err := c.werr; err != nil {
		c.unlockWrite()
		return err
	}
	switch {
	case st.headDue && len(trailer) == 0:
		st.writeHeadLocked(true)
	case len(trailer) > 0:
		if st.headDue {
			st.writeHeadLocked(false)
		}
		c.writeFieldsLocked(st.id, 0, trailer, true)
	default:
		c.writeDataLocked(st.id, true, nil)
	}
	st.sendDone = true
	c.flushWanted = true
	// A flush that failed here took the response's end with it: the
	// client never sees the stream end, and the caller is told so.
	return c.unlockWriteStream()
}

// End writes body, the response's last bytes in one or more slices, and
// ends the response without trailers: Write then Finish(nil), but the
// END_STREAM flag rides on the last DATA frame instead of an empty frame
// of its own, and on a connection that is a BuffersWriter the frames
// that do not fit in the buffer go out in one gathered write per slice,
// not copied into it. A response whose body is at hand (a cache hit) goes
// out in one write. The slices are not kept after the call.
func (st *Stream) End(body ...[]byte) error {
	if st.sendDone {
		return errStreamDone
	}
	for len(body) > 0 && len(body[len(body)-1]) == 0 {
		body = body[:len(body)-1]
	}
	if len(body) == 0 || st.noBody {
		return st.Finish(nil)
	}
	c := st.c
	for i, p := range body {
		for len(p) > 0 {
			n, err := st.reserve(len(p))
			if err != nil {
				return err
			}
			last := i == len(body)-1 && n == len(p)
			if last { // closed once the client can see the end (Finish)
				c.mu.Lock()
				if st.recvDone {
					c.removeLocked(st)
				}
				c.mu.Unlock()
			}
			c.lockWrite()
			if err := c.werr; err != nil {
				c.unlockWrite()
				return err
			}
			if st.headDue {
				st.writeHeadLocked(false)
			}
			c.writeDataRunLocked(st.id, p[:n], int(c.peerMaxFrameSize()), last, true)
			if last {
				st.sendDone = true
				if c.bw.Buffered() > 0 { // not all gone out in a gathered write
					c.flushWanted = true
				}
				return c.unlockWriteStream()
			}
			err = c.werr
			c.unlockWrite()
			if err != nil {
				return err
			}
			p = p[n:]
		}
	}
	return nil // not reached: the last slice is not empty
}

// Reset ends the stream with RST_STREAM(INTERNAL_ERROR): the client sees
// the response fail rather than end.
func (st *Stream) Reset() {
	if st.sendDone {
		return
	}
	st.sendDone = true
	c := st.c
	c.mu.Lock()
	failed := st.wfail != nil // reset by the client, or already by us: no RST again
	c.removeLocked(st)
	if !failed {
		// Frames the client sent before it sees our RST_STREAM are
		// ignored; after its own RST_STREAM they are an error.
		c.noteResetLocked(st.id)
	}
	c.mu.Unlock()
	if failed {
		return
	}
	st.fail(errors.New("h2: stream reset by the server"), false)
	c.writeRST(st.id, http2.ErrCodeInternal)
}

// reserve waits until both flow-control windows admit some of want bytes
// and takes them. A wait is bounded by StreamWriteTimeout and by the
// minimum send rate (rate.go).
func (st *Stream) reserve(want int) (int, error) {
	c := st.c
	var idle time.Duration // waited in this call, for StreamWriteTimeout
	for {
		c.mu.Lock()
		if err := st.wfail; err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if c.closing {
			c.mu.Unlock()
			return 0, errConnClosed
		}
		if st.sendWin > 0 && c.sendWin > 0 {
			n := min(int64(want), st.sendWin, c.sendWin)
			st.sendWin -= n
			c.sendWin -= n
			st.sent += n
			c.mu.Unlock()
			return int(n), nil
		}
		ws := st.waitStateLocked()
		budget, limited := st.rateBudget(c.cfg.MinSendRate, st.sent, ws.sendWaited)
		c.mu.Unlock()
		// What was written must reach the client before it can grant
		// more window, and so must the head, which no window holds back
		// (a client may open the window only once it saw the status).
		c.lockWrite()
		if st.headDue && c.werr == nil {
			st.writeHeadLocked(false)
		}
		c.flushWanted = true
		c.unlockWrite()
		waited, idleOut, slow := c.waitClient(ws.wake, c.cfg.StreamWriteTimeout-idle, budget, limited)
		ws.sendWaited += waited
		idle += waited
		switch {
		case slow:
			st.resetSlow(SlowSend)
			return 0, ErrTooSlow
		case idleOut:
			return 0, errWriteTimeout
		}
	}
}

func (c *Conn) peerMaxFrameSize() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerMaxFrame
}

// writeDataLocked writes one DATA frame straight into the buffer (the
// Framer would copy the payload once more). The frame header is built in
// the Conn, not on the stack: bufio.Writer may hand its argument to the
// connection's Write, so a local array would be allocated per frame.
func (c *Conn) writeDataLocked(id uint32, end bool, p []byte) {
	h := &c.dataHdr
	h[0], h[1], h[2] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	h[3] = byte(http2.FrameData)
	h[4] = 0
	if end {
		h[4] = byte(http2.FlagDataEndStream)
	}
	binary.BigEndian.PutUint32(h[5:], id)
	c.bw.Write(h[:])
	c.bw.Write(p)
	c.flood.outCredit += floodPerDataOut + floodPerKiBOut*uint64(len(p)>>10)
}

// writeFieldsLocked encodes a response head (status > 0) or trailers and
// writes them as HEADERS and CONTINUATION frames.
func (c *Conn) writeFieldsLocked(id uint32, status int, h http.Header, end bool) {
	c.hbuf.Reset()
	if status > 0 {
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	}
	for k, vv := range h {
		name := lowerName(k)
		if connectionSpecific(name) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			c.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
		}
	}
	block := c.hbuf.Bytes()
	maxFrame := int(c.peerMaxFrame)
	first := true
	for first || len(block) > 0 {
		n := min(len(block), maxFrame)
		frag := block[:n]
		block = block[n:]
		if first {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

var statusTexts = func() (t [600]string) {
	for i := 100; i < 600; i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusText(code int) string {
	if code >= 100 && code < 600 {
		return statusTexts[code]
	}
	return strconv.Itoa(code)
}

// lowerNames maps common canonical field names to their wire form.
var lowerNames = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Credentials", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods",
		"Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Age", "Allow",
		"Alt-Svc", "Authorization", "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Location", "Content-Range", "Content-Security-Policy", "Content-Type", "Cookie",
		"Date", "Etag", "Expect", "Expires", "From", "Grpc-Encoding", "Grpc-Message", "Grpc-Status",
		"Grpc-Accept-Encoding", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Last-Modified", "Link", "Location", "Max-Forwards", "Origin", "Proxy-Authenticate",
		"Proxy-Authorization", "Range", "Referer", "Refresh", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Trailer", "User-Agent", "Vary", "Via", "Www-Authenticate",
		"X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Frame-Options",
		"X-Request-Id", "X-Xss-Protection"} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

func lowerName(k string) string {
	if v, ok := lowerNames[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

// connectionSpecific reports the fields HTTP/2 forbids (RFC 9113 §8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}
