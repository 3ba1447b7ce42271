package h2

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

// FuzzHeaderBlockLikeFramer checks readFrame against the Framer's own
// header block decoding (ReadMetaHeaders), which it replaces: on the same
// frames (the input as FuzzServeFrames reads it), the same fields, flags
// and truncation, and the same errors, but where the Framer ends the
// connection over a block it could still decode (blockDecodedOn). The seeds are FuzzServeFrames'
// and the shared lists of hostile heads.
func FuzzHeaderBlockLikeFramer(f *testing.F) {
	for _, ops := range fuzzSeeds() {
		f.Add(encodeOps(ops))
	}
	for _, list := range [][]hostile.H2Request{hostile.H2Malformed, hostile.H2Accepted} {
		for _, r := range list {
			f.Add(encodeOps(append(hostileOps(r), request(3, true, getFields...))))
		}
	}
	// Over a small MaxHeaderListSize (trailer fields count per name).
	f.Add(encodeOps([]fuzzOp{request(1, true, fields("trailer", strings.Repeat("a,", 60))...),
		request(3, true, fields("x", strings.Repeat("v", 300))...), request(5, true, getFields...)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := compareHeaderBlocks(wireFrames(decodeOps(data))); err != nil {
			t.Fatal(err)
		}
	})
}

// wireFrames writes ops as the fuzz client would send them, HPACK with one
// encoder for the connection.
func wireFrames(ops []fuzzOp) []byte {
	var wire, hbuf bytes.Buffer
	fr := http2.NewFramer(&wire, nil)
	henc := hpack.NewEncoder(&hbuf)
	for _, op := range ops {
		switch op.kind {
		case opShutdown:
		case opFields:
			hbuf.Reset()
			for p := op.payload; len(p) > 0; {
				var name, value string
				name, p = lengthPrefixed(p)
				value, p = lengthPrefixed(p)
				henc.WriteField(hpack.HeaderField{Name: name, Value: value})
			}
			flags := op.flags & (http2.FlagHeadersEndStream | http2.FlagHeadersEndHeaders)
			fr.WriteRawFrame(http2.FrameHeaders, flags, op.id, hbuf.Bytes())
		default:
			fr.WriteRawFrame(http2.FrameType(op.kind), op.flags, op.id, op.payload)
		}
	}
	return wire.Bytes()
}

// compareHeaderBlocks reads wire with a Framer that decodes header blocks
// and with a Conn's readFrame, under two header list limits, and reports
// the first difference.
func compareHeaderBlocks(wire []byte) error {
	for _, limit := range []uint32{256, 8 << 10} {
		ref := http2.NewFramer(nil, bytes.NewReader(wire))
		ref.MaxHeaderListSize = limit
		ref.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		ref.SetMaxReadFrameSize(defaultMaxFrame)
		nc, peer := net.Pipe()
		c := NewConn(nc, bytes.NewReader(wire), Config{MaxHeaderListSize: limit}, nil)
		err := compareFrames(ref, c)
		nc.Close()
		peer.Close()
		if err != nil {
			return fmt.Errorf("limit %d: %w", limit, err)
		}
	}
	return nil
}

func compareFrames(ref *http2.Framer, c *Conn) error {
	for i := 0; ; i++ {
		want, werr := ref.ReadFrame()
		got, gerr := c.readFrame()
		if blockDecodedOn(ref, werr) {
			// The Framer refuses a string over the limit by its length,
			// and no such string fits in a block within the limit.
			var ce http2.ConnectionError
			if b, ok := got.(*fieldBlock); ok && gerr == nil && !b.truncated && errors.As(werr, &ce) && http2.ErrCode(ce) == http2.ErrCodeCompression {
				return fmt.Errorf("frame %d: a block within the limit, the Framer's %v", i, werr)
			}
			return nil // the Framer has ended the connection
		}
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			return fmt.Errorf("frame %d: error %v, the Framer's %v", i, gerr, werr)
		}
		var ce http2.ConnectionError
		if errors.As(werr, &ce) && fmt.Sprint(ref.ErrorDetail()) != fmt.Sprint(c.fr.ErrorDetail()) {
			return fmt.Errorf("frame %d: error detail %v, the Framer's %v", i, c.fr.ErrorDetail(), ref.ErrorDetail())
		}
		if werr != nil {
			var se http2.StreamError
			if errors.As(werr, &se) {
				continue // the next frames are read as well
			}
			return nil
		}
		mh, ok := want.(*http2.MetaHeadersFrame)
		if !ok {
			if gf, ok := got.(http2.Frame); !ok || gf.Header() != want.Header() {
				return fmt.Errorf("frame %d: %v, the Framer's %v", i, got, want.Header())
			}
			continue
		}
		b, ok := got.(*fieldBlock)
		switch {
		case !ok:
			return fmt.Errorf("frame %d: %T for a header block", i, got)
		case b.streamID != mh.StreamID || b.endStream != mh.StreamEnded() || b.truncated != mh.Truncated ||
			b.hasPriority != mh.HasPriority() || b.streamDep != mh.Priority.StreamDep:
			return fmt.Errorf("frame %d: block %+v, the Framer's %+v", i, *b, mh)
		case !slices.Equal(b.fields, mh.Fields):
			return fmt.Errorf("frame %d: fields %v, the Framer's %v", i, b.fields, mh.Fields)
		case !slices.Equal(b.pseudo(), mh.PseudoFields()) || !slices.Equal(b.regular(), mh.RegularFields()):
			return fmt.Errorf("frame %d: pseudo and regular fields split apart from the Framer's", i)
		}
	}
}

// blockDecodedOn reports the one place readFrame may part from the
// Framer: where the Framer gave up on a header block with a connection
// error that names no frame (a fragment over twice what is left of the
// header list limit, any fragment after the limit or an invalid field, a
// string over the limit), readFrame decodes the block on, within its wire
// allowance, to whatever end it has: a block (over the limit: truncated),
// a stream error (an invalid field), an HPACK error further on, the end of
// the input, or the allowance spent. TestOversizedHeaderBlockRefusesOnlyItsStream
// and the tests around it pin what the connection does with each.
func blockDecodedOn(ref *http2.Framer, werr error) bool {
	var ce http2.ConnectionError
	return errors.As(werr, &ce) && ref.ErrorDetail() == nil &&
		(http2.ErrCode(ce) == http2.ErrCodeProtocol || http2.ErrCode(ce) == http2.ErrCodeCompression)
}
