package h2

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A request's header block (its HEADERS frame and the CONTINUATION frames
// that follow) is decoded here rather than by the Framer's ReadMetaHeaders:
// that one allocates its result, a closure with its state and a growing
// field list per block, nine allocations for a small request. This one
// keeps all of it in the Conn and reuses it, block after block. The checks
// and the errors are the Framer's (golang.org/x/net/http2, readMetaFrame
// and checkPseudos), in the same order, with the same texts (framerReason
// tells the refusals apart by them).

// fieldBlock is a decoded header block, valid until the next one is read.
type fieldBlock struct {
	streamID    uint32
	endStream   bool
	hasPriority bool
	streamDep   uint32
	truncated   bool // over MaxHeaderListSize: fields holds what fit
	fields      []hpack.HeaderField
}

// pseudo returns the pseudo-header fields, which come first.
func (b *fieldBlock) pseudo() []hpack.HeaderField {
	for i, hf := range b.fields {
		if !hf.IsPseudo() {
			return b.fields[:i]
		}
	}
	return b.fields
}

// regular returns the fields after the pseudo-header fields.
func (b *fieldBlock) regular() []hpack.HeaderField {
	return b.fields[len(b.pseudo()):]
}

// headerReader is the decoding state of the block being read.
type headerReader struct {
	dec            *hpack.Decoder
	blk            fieldBlock
	headersRemain  uint32 // of MaxHeaderListSize, for the fields
	trailersRemain uint32 // and for the names a trailer field lists
	sawRegular     bool
	invalid        error // the first field that makes the block malformed
}

var errPseudoAfterRegular = errors.New("pseudo header field after regular")

// emit takes one decoded field (the hpack.Decoder's emit function).
func (hr *headerReader) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		// Not the value in the error: it may be sensitive.
		hr.invalid = fmt.Errorf("invalid header field value for %q", hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if hr.sawRegular {
			hr.invalid = errPseudoAfterRegular
		}
	} else {
		hr.sawRegular = true
		if !validWireFieldName(hf.Name) {
			hr.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		}
	}
	if hr.invalid != nil {
		hr.dec.SetEmitEnabled(false)
		return
	}
	remain := &hr.headersRemain
	size := hf.Size()
	if hf.Name == "trailer" {
		// Each name the field lists counts as a field of its own.
		remain = &hr.trailersRemain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		hr.dec.SetEmitEnabled(false)
		hr.blk.truncated = true
		hr.headersRemain, hr.trailersRemain = 0, 0
		return
	}
	*remain -= size
	hr.blk.fields = append(hr.blk.fields, hf)
}

// validWireFieldName reports a field name of token characters, in lower
// case (RFC 9113 section 8.2).
func validWireFieldName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || ('A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// readFrame reads the next frame; a HEADERS frame is read with its
// CONTINUATION frames and returned decoded, as a *fieldBlock.
func (c *Conn) readFrame() (any, error) {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	if hf, ok := f.(*http2.HeadersFrame); ok {
		return c.readHeaderBlock(hf)
	}
	return f, nil
}

// frameHeaderLen is the size of an HTTP/2 frame's header.
const frameHeaderLen = 9

// readHeaderBlock decodes the header block that hf starts.
func (c *Conn) readHeaderBlock(hf *http2.HeadersFrame) (*fieldBlock, error) {
	hr := &c.hr
	b := &hr.blk
	*b = fieldBlock{
		streamID:    hf.StreamID,
		endStream:   hf.StreamEnded(),
		hasPriority: hf.HasPriority(),
		streamDep:   hf.Priority.StreamDep,
		fields:      b.fields[:0],
	}
	hr.headersRemain, hr.trailersRemain = c.cfg.MaxHeaderListSize, c.cfg.MaxHeaderListSize
	hr.sawRegular, hr.invalid = false, nil
	hr.dec.SetEmitEnabled(true)
	type fragment interface {
		HeaderBlockFragment() []byte
		HeadersEnded() bool
	}
	var frag fragment = hf
	// wire counts the block's bytes with each frame's 9-byte header, so
	// that empty CONTINUATION frames, which decode to nothing, still use
	// up the block's allowance: without it a client could send them
	// without end (CVE-2024-27316 in other servers).
	//
	// Within that allowance a block is decoded to its end, whatever it
	// holds: past MaxHeaderListSize, or past an invalid field, with the
	// fields no longer kept (emit is off) but the dynamic table still
	// kept in step with the client's encoder, so that only this stream
	// is refused (431, or RST_STREAM for an invalid field) and the
	// connection's other streams, and the blocks after this one, go on.
	// The Framer (and so x/net's server) ends the connection instead, at
	// the first fragment after the limit or an invalid field: a gRPC
	// client lost every call in flight to one request with too much
	// metadata. The allowance bounds the work either way.
	wire, wireMax := int64(0), c.blockWireMax()
	for {
		p := frag.HeaderBlockFragment()
		if wire += frameHeaderLen + int64(len(p)); wire > wireMax {
			return nil, &floodError{reason: FloodHeaderBlock, detail: "header block over its allowance of frames"}
		}
		if _, err := hr.dec.Write(p); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if frag.HeadersEnded() {
			break
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		frag = f.(*http2.ContinuationFrame) // the Framer checks the order
	}
	if err := hr.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if hr.invalid != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: hr.invalid}
	}
	if err := checkPseudos(b.pseudo()); err != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return b, nil
}

// blockWireMax is the most bytes a header block may take on the wire,
// its frames' headers counted: twice MaxHeaderListSize, and 64 KiB at
// least.
func (c *Conn) blockWireMax() int64 {
	return max(2*int64(c.cfg.MaxHeaderListSize), 64<<10)
}

// checkPseudos refuses unknown and repeated pseudo-header fields, and a
// mix of request and response ones.
func checkPseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", hf.Name)
		}
		for _, prev := range pf[:i] {
			if hf.Name == prev.Name {
				return fmt.Errorf("duplicate pseudo-header %q", hf.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errors.New("mix of request and response pseudo headers")
	}
	return nil
}
