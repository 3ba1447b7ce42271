package hostile

import (
	"bytes"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Field is one header field as a client encodes it, pseudo-header fields
// included, in wire order.
type Field struct{ Name, Value string }

// Fields makes a field list of name, value pairs.
func Fields(pairs ...string) []Field {
	out := make([]Field, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Field{pairs[i], pairs[i+1]})
	}
	return out
}

// H2Conn is a raw HTTP/2 client connection: it encodes any field list,
// however malformed, with its own HPACK encoder and reads the server's
// frames. It is not safe for concurrent use.
type H2Conn struct {
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	next uint32
}

// NewH2Conn writes the client preface and an empty SETTINGS frame on nc
// (cleartext with prior knowledge, or TLS after ALPN chose h2). Every read
// and write is bounded by timeout.
func NewH2Conn(nc net.Conn, timeout time.Duration) (*H2Conn, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		return nil, err
	}
	c := &H2Conn{nc: nc, fr: http2.NewFramer(nc, nc), next: 1}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if err := c.fr.WriteSettings(); err != nil {
		return nil, err
	}
	return c, nil
}

// Send opens the next stream with fields as its whole request (END_STREAM
// set), in one HEADERS frame, or with split in a HEADERS frame and a
// CONTINUATION frame. It returns the stream id.
func (c *H2Conn) Send(fields []Field, split bool) (uint32, error) {
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.enc.WriteField(hpack.HeaderField{Name: f.Name, Value: f.Value}); err != nil {
			return 0, err
		}
	}
	block := c.hbuf.Bytes()
	id := c.next
	c.next += 2
	cut := len(block)
	if split && cut > 1 {
		cut /= 2
	}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:cut], EndStream: true, EndHeaders: cut == len(block)})
	if err == nil && cut < len(block) {
		err = c.fr.WriteContinuation(id, true, block[cut:])
	}
	return id, err
}

// SendBody opens the next stream with head, then sends body in one DATA
// frame and ends the stream with trailer, a trailer section with any
// fields, if it has any. It returns the stream id.
func (c *H2Conn) SendBody(head []Field, body string, trailer []Field) (uint32, error) {
	id := c.next
	c.next += 2
	if err := c.writeFields(id, head, false); err != nil {
		return 0, err
	}
	if err := c.fr.WriteData(id, len(trailer) == 0, []byte(body)); err != nil {
		return 0, err
	}
	if len(trailer) > 0 {
		return id, c.writeFields(id, trailer, true)
	}
	return id, nil
}

// writeFields writes fields as one HEADERS frame on stream id.
func (c *H2Conn) writeFields(id uint32, fields []Field, end bool) error {
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.enc.WriteField(hpack.HeaderField{Name: f.Name, Value: f.Value}); err != nil {
			return err
		}
	}
	return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: end, EndHeaders: true})
}

// Outcome is how the server ended a stream.
type Outcome struct {
	// Reset: RST_STREAM with Code.
	Reset bool
	Code  http2.ErrCode
	// GoAway: the connection ended with Code before the stream did.
	GoAway bool
	// Status is the response's :status when one came, Body its DATA.
	Status string
	Body   string
	// Header and Trailer are the response's regular fields as they came,
	// the head's and the trailer section's.
	Header, Trailer []Field
}

func (o Outcome) String() string {
	switch {
	case o.Reset:
		return "RST_STREAM " + o.Code.String()
	case o.GoAway:
		return "GOAWAY " + o.Code.String()
	}
	return o.Status + " " + fmt.Sprintf("%q", o.Body)
}

// Await reads frames until stream id ends: a RST_STREAM, a response that
// ends the stream, or a GOAWAY. It acknowledges SETTINGS and PING on the
// way, and returns window for the DATA it reads.
func (c *H2Conn) Await(id uint32) (Outcome, error) {
	var o Outcome
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return o, err
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return Outcome{Reset: true, Code: f.ErrCode}, nil
			}
		case *http2.GoAwayFrame:
			return Outcome{GoAway: true, Code: f.ErrCode}, nil
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				fields := make([]Field, 0, len(f.RegularFields()))
				for _, hf := range f.RegularFields() {
					fields = append(fields, Field{hf.Name, hf.Value})
				}
				if s := f.PseudoValue("status"); s != "" {
					o.Status, o.Header = s, fields
				} else {
					o.Trailer = fields
				}
				if f.StreamEnded() {
					return o, nil
				}
			}
		case *http2.DataFrame:
			if len(f.Data()) > 0 {
				c.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			}
			if f.StreamID == id {
				o.Body += string(f.Data())
				if f.StreamEnded() {
					return o, nil
				}
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		}
	}
}
