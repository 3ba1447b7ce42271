package h1

import (
	"errors"
	"fmt"
)

// ParseError is returned when a message head or body framing is malformed.
// Status is the HTTP status a server should answer with (400, 413, 414, 431,
// 501, 505); for responses read from an upstream it is 502.
type ParseError struct {
	Status int
	Reason string
	// Code is a short, fixed label of what was refused (one of the Code
	// constants), for metrics and logs; Reason has the detail.
	Code string
}

func (e *ParseError) Error() string { return fmt.Sprintf("h1: %s (status %d)", e.Reason, e.Status) }

// Is makes a head over the limits ErrHeaderTooLarge to errors.Is.
func (e *ParseError) Is(target error) bool {
	return target == ErrHeaderTooLarge && e.Code == CodeHeaderTooLarge
}

// The Codes of a ParseError. They are few and fixed, so a metric may use
// them as label values; the proxy counts refused requests by them.
const (
	CodeMalformedRequestLine    = "malformed_request_line"
	CodeInvalidMethod           = "invalid_method"
	CodeUnsupportedVersion      = "unsupported_version"
	CodeInvalidTarget           = "invalid_target"
	CodeInvalidHost             = "invalid_host"
	CodeMissingHost             = "missing_host"
	CodeDuplicateHost           = "duplicate_host"
	CodeBareLF                  = "bare_lf"
	CodeLeadingEmptyLines       = "leading_empty_lines"
	CodeObsFold                 = "obs_fold"
	CodeInvalidFieldName        = "invalid_field_name"
	CodeInvalidFieldValue       = "invalid_field_value"
	CodeHeaderTooLarge          = "header_too_large"
	CodeTooManyFields           = "too_many_fields"
	CodeContentLengthAndTE      = "content_length_and_transfer_encoding"
	CodeInvalidTransferEncoding = "invalid_transfer_encoding"
	CodeInvalidContentLength    = "invalid_content_length"
	CodeUnsupportedExpectation  = "unsupported_expectation"
	CodeInvalidChunkedBody      = "invalid_chunked_body"
	CodeMalformedResponse       = "malformed_response"
)

// perr makes a ParseError of a response (code CodeMalformedResponse).
func perr(status int, format string, args ...any) error {
	return &ParseError{Status: status, Reason: fmt.Sprintf(format, args...), Code: CodeMalformedResponse}
}

// rerr makes a ParseError with its code.
func rerr(status int, code, format string, args ...any) error {
	return &ParseError{Status: status, Reason: fmt.Sprintf(format, args...), Code: code}
}

var (
	// ErrHeaderTooLarge is what the ParseError returned when a head
	// exceeds Limits.MaxHeaderBytes or Limits.MaxHeaders is (errors.Is).
	ErrHeaderTooLarge = errors.New("h1: header too large")
	// ErrBodyTooLarge is returned by a BodyReader whose limit was exceeded.
	ErrBodyTooLarge = errors.New("h1: body exceeds limit")
	// ErrUnexpectedEOF is returned when the peer closes inside a message.
	ErrUnexpectedEOF = errors.New("h1: unexpected EOF inside message")
	// ErrUnwritable is wrapped by the error WriteRequestHead and
	// CheckRequestHead return for a head that would not parse back as the
	// same request.
	ErrUnwritable = errors.New("h1: request head would not parse back")
)

// StatusOf returns the status code a server should answer for err: the
// ParseError status when err is one, 413 for ErrBodyTooLarge, else 400.
func StatusOf(err error) int {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe.Status
	}
	if errors.Is(err, ErrBodyTooLarge) {
		return 413
	}
	return 400
}
