package proxy

import (
	"crypto/tls"
	"errors"
	"net"
)

// errHeaderBlockFlood ends an HTTP/2 upstream connection whose response
// header block ran past maxUpstreamBlockWire.
var errHeaderBlockFlood = errors.New("proxy: HTTP/2 upstream header block over its allowance of frames")

// maxUpstreamBlockWire caps the bytes of one header block an HTTP/2
// upstream sends (its HEADERS or PUSH_PROMISE frame and the CONTINUATION
// frames after it), each frame's 9-byte header counted: twice the decoded
// allowance, the proxy's downstream rule (h2.Conn.readHeaderBlock). The
// transport's framer stops a block once the fields it decodes pass
// MaxHeaderListSize, but empty CONTINUATION frames, and ones holding only
// dynamic table size updates, decode to nothing: it read them for ever,
// with the connection's reader and every stream on it stuck
// (CVE-2024-27316 in other servers, from the client's side here).
const maxUpstreamBlockWire = 2 * maxUpstreamHeadBytes

// h2FrameGuard watches the frames an HTTP/2 upstream sends as the
// transport reads them, and fails the connection's reads once a header
// block passes maxUpstreamBlockWire. It only parses frame headers: the
// payloads are skipped by count. It is used by the transport's one
// reader goroutine only.
type h2FrameGuard struct {
	net.Conn
	hdr   [frameHeaderLen]byte
	nhdr  int   // bytes of hdr read
	skip  int   // payload bytes of the current frame still to come
	block int   // the bytes of the header block last begun
	err   error // once set, every read returns it
}

// tlsFrameGuard is an h2FrameGuard over a TLS connection: the transport
// takes the connection's TLS state through ConnectionState.
type tlsFrameGuard struct {
	*h2FrameGuard
	tc *tls.Conn
}

func (g tlsFrameGuard) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }

// guardH2 wraps a dialed HTTP/2 upstream connection in a frame guard.
func guardH2(nc net.Conn) net.Conn {
	g := &h2FrameGuard{Conn: nc}
	if tc, ok := nc.(*tls.Conn); ok {
		return tlsFrameGuard{g, tc}
	}
	return g
}

// The frame header's layout and the values the guard looks at (RFC 9113
// section 4.1): a 24-bit length, the type, the flags, the stream. The
// guard needs no flags: a block's END_HEADERS shows as the next frame not
// being a CONTINUATION.
const (
	frameHeaderLen    = 9
	frameHeaders      = 0x1
	framePushPromise  = 0x5
	frameContinuation = 0x9
)

// Read passes on what the connection read up to the frame header that
// took a header block over its allowance; that read's later bytes, and
// every read after, fail with errHeaderBlockFlood.
func (g *h2FrameGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if over := g.scan(p[:n]); over >= 0 {
		g.err = errHeaderBlockFlood
		return max(over-frameHeaderLen, 0), g.err
	}
	return n, err
}

// scan follows the frame boundaries through b. It returns the index in
// b just past the frame header that took a header block over its
// allowance, or -1.
func (g *h2FrameGuard) scan(b []byte) int {
	for i := 0; i < len(b); {
		if g.skip > 0 {
			k := min(g.skip, len(b)-i)
			g.skip -= k
			i += k
			continue
		}
		k := copy(g.hdr[g.nhdr:], b[i:])
		g.nhdr += k
		i += k
		if g.nhdr < frameHeaderLen {
			return -1
		}
		g.nhdr = 0
		if g.frame() {
			return i
		}
	}
	return -1
}

// frame takes the frame header in g.hdr and reports whether it took its
// header block over the allowance.
func (g *h2FrameGuard) frame() bool {
	h := g.hdr
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	g.skip = length
	switch h[3] {
	case frameHeaders, framePushPromise:
		g.block = frameHeaderLen + length
	case frameContinuation:
		// Only a block without END_HEADERS may go on (the transport's
		// framer checks the order), so this one adds to the last.
		g.block += frameHeaderLen + length
	default:
		g.block = 0
		return false
	}
	return g.block > maxUpstreamBlockWire
}
