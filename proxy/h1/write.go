package h1

import (
	"bufio"
	"net/http"
	"strconv"
)

// WriteRequestHead writes a request line, a Host field and the fields of h
// (except Host) followed by the empty line. It checks the head as
// CheckRequestHead does and writes nothing at all when that refuses it: a
// hook that put CR, LF or a space into a method, target, host or field can
// never split the message or make the upstream read another request than
// the one the proxy routed. The head is built in w's free buffer while the
// fields are checked (one pass over h) and handed to w only when whole.
// Errors writing to w show at its Flush.
func WriteRequestHead(w *bufio.Writer, method, target, host string, h http.Header) error {
	if err := checkRequestLine(method, target, host); err != nil {
		return err
	}
	b := w.AvailableBuffer()
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for k, vs := range h {
		if err := checkField(k, vs); err != nil {
			return err
		}
		if k == "Host" {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	w.Write(b)
	return nil // a write failure stays in w, for its Flush to report
}

// WriteResponseHead writes a status line for HTTP/1.minor and the fields of h.
func WriteResponseHead(w *bufio.Writer, minor, status int, h http.Header) {
	w.Write(AppendResponseHead(w.AvailableBuffer(), minor, status, h))
}

// AppendResponseHead appends the head WriteResponseHead writes to b: a
// caller that sends the head and a body held in memory with one gathered
// write (writev) builds the head with it.
func AppendResponseHead(b []byte, minor, status int, h http.Header) []byte {
	if minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	if status >= 100 && status <= 999 { // always, from this package's callers
		b = append(b, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10))
	} else {
		b = strconv.AppendInt(b, int64(status), 10)
	}
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	b = appendFields(b, h)
	return append(b, "\r\n"...)
}

// appendFields appends the fields of a response head or trailer section:
// a field with an invalid name is skipped and a control byte in a value
// becomes a space, so what the upstream sent, or a hook set, can neither
// split the message nor make it unreadable.
func appendFields(b []byte, h http.Header) []byte {
	for k, vs := range h {
		if !isToken(k) {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func appendValue(b []byte, v string) []byte {
	i := len(b)
	b = append(b, v...)
	for ; i < len(b); i++ {
		if isCTL(b[i]) {
			b[i] = ' '
		}
	}
	return b
}

// ChunkWriter writes a chunked body. The zero value is not usable; set W.
type ChunkWriter struct {
	W *bufio.Writer
}

// Write writes p as one chunk; an empty p writes nothing (a zero-size chunk
// would end the body).
func (c ChunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var tmp [18]byte
	b := strconv.AppendUint(tmp[:0], uint64(len(p)), 16)
	b = append(b, '\r', '\n')
	if _, err := c.W.Write(b); err != nil {
		return 0, err
	}
	n, err := c.W.Write(p)
	if err != nil {
		return n, err
	}
	_, err = c.W.WriteString("\r\n")
	return n, err
}

// Close writes the last chunk and the trailer fields, if any.
func (c ChunkWriter) Close(trailer http.Header) error {
	b := append(c.W.AvailableBuffer(), "0\r\n"...)
	b = appendFields(b, trailer)
	_, err := c.W.Write(append(b, "\r\n"...))
	return err
}
