package h2

import (
	"errors"
	"strings"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// The reasons a request is refused as malformed that HTTP/1.1 has no code
// for; the others are proxy/h1's (h1.CodeInvalidMethod, ...), so one
// reason names one class of input whatever the protocol it came in.
const (
	reasonInvalidScheme      = "invalid_scheme"
	reasonInvalidPseudo      = "invalid_pseudo_header"
	reasonMissingPseudo      = "missing_pseudo_header"
	reasonHostMismatch       = "host_mismatch"
	reasonConnectionSpecific = "connection_specific_field"
	reasonInvalidTE          = "invalid_te"
	reasonMalformedBlock     = "malformed_header_block"
)

// malformedError is the cause of the stream error that refuses a
// malformed request.
type malformedError struct {
	reason, detail string
}

func (e *malformedError) Error() string { return "h2: malformed request: " + e.detail }

// malformed is the stream error (RST_STREAM PROTOCOL_ERROR, RFC 9113
// section 8.1.1) for a malformed request on stream id.
func malformed(id uint32, reason, detail string) error {
	return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol, Cause: &malformedError{reason: reason, detail: detail}}
}

// noteRefused reports a stream error that refused a request as malformed
// to Config.OnReject: ours (a malformedError), or one the Framer returned
// while it decoded a header block (fromFramer).
func (c *Conn) noteRefused(se http2.StreamError, fromFramer bool) {
	if c.cfg.OnReject == nil || se.Cause == nil {
		return
	}
	var m *malformedError
	switch {
	case errors.As(se.Cause, &m):
		c.cfg.OnReject(m.reason, se)
	case fromFramer && se.Code == http2.ErrCodeProtocol:
		c.cfg.OnReject(framerReason(se.Cause), se)
	}
}

func (c *Conn) reportReject(reason string, err error) {
	if c.cfg.OnReject != nil {
		c.cfg.OnReject(reason, err)
	}
}

// framerReason names the refusal behind a stream error the Framer returned
// for a header block: it checks field names and values and the pseudo-header
// fields' order and uniqueness itself. Its causes are unexported types, so
// they are told apart by their text; TestFramerRefusals pins each one.
func framerReason(cause error) string {
	msg := cause.Error()
	switch {
	case strings.HasPrefix(msg, "invalid header field value"):
		return h1.CodeInvalidFieldValue
	case strings.HasPrefix(msg, "invalid header field name"):
		return h1.CodeInvalidFieldName
	case strings.HasPrefix(msg, "duplicate pseudo-header"), strings.HasPrefix(msg, "invalid pseudo-header"),
		strings.HasPrefix(msg, "pseudo header field after regular"), strings.HasPrefix(msg, "mix of request and response"):
		return reasonInvalidPseudo
	}
	return reasonMalformedBlock
}
