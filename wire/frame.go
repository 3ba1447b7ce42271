package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtoRPC is the first byte a dialer writes on a new connection. See the
// package doc for why the port has a magic byte.
const ProtoRPC byte = 0xC7

// Frame types; see the package doc.
const (
	frameRequest  byte = 1
	frameResponse byte = 2
	frameError    byte = 3
	frameGoAway   byte = 4
)

const (
	// headerLen is the type byte plus the call ID, counted by the length.
	headerLen = 1 + 8
	// DefaultMaxFrameSize bounds one frame (16 MiB).
	DefaultMaxFrameSize = 16 << 20
	// maxMethodLen is the longest method name a request can carry.
	maxMethodLen = 255
)

// ErrFrameTooLarge is returned when a frame's length prefix exceeds the
// reader's maximum, or a call's encoded request exceeds the writer's.
var ErrFrameTooLarge = errors.New("wire: frame too large")

// ErrMalformed is returned when a frame cannot be parsed (short length,
// unknown type, bad method length).
var ErrMalformed = errors.New("wire: malformed frame")

// frame is one decoded frame. payload aliases the buffer it was read into.
type frame struct {
	typ     byte
	id      uint64
	payload []byte
}

// readFrame reads one frame from r, refusing a length above max before it
// allocates anything.
func readFrame(r io.Reader, max int) (frame, error) {
	var hdr [4 + headerLen]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if uint64(n) > uint64(max) {
		return frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n < headerLen {
		return frame{}, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		return frame{}, noEOF(err)
	}
	f := frame{typ: hdr[4], id: binary.BigEndian.Uint64(hdr[5:])}
	if f.typ < frameRequest || f.typ > frameGoAway {
		return frame{}, fmt.Errorf("%w: unknown type %d", ErrMalformed, f.typ)
	}
	f.payload = make([]byte, n-headerLen)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return frame{}, noEOF(err)
	}
	return f, nil
}

// noEOF turns a clean EOF in the middle of a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends a frame with the given parts (concatenated as the
// payload) to dst.
func appendFrame(dst []byte, typ byte, id uint64, parts ...[]byte) []byte {
	n := headerLen
	for _, p := range parts {
		n += len(p)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint64(dst, id)
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// frameLen is the wire size of a frame carrying payload bytes.
func frameLen(payload int) int { return 4 + headerLen + payload }

// parseRequest splits a request payload into method and body.
func parseRequest(p []byte) (method string, body []byte, err error) {
	if len(p) < 1 {
		return "", nil, fmt.Errorf("%w: empty request", ErrMalformed)
	}
	ml := int(p[0])
	if ml == 0 || len(p) < 1+ml {
		return "", nil, fmt.Errorf("%w: method length %d", ErrMalformed, ml)
	}
	return string(p[1 : 1+ml]), p[1+ml:], nil
}
