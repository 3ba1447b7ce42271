package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// gRPC support. gRPC is HTTP/2 with trailers, and the engine proxies it like
// any request; three things differ (see the gRPC "HTTP/2 protocol" spec):
//
//   - A failure the proxy itself answers (no route, no healthy peer, connect
//     failure, timeout) is a gRPC status in a trailers-only response (HTTP
//     200, content-type application/grpc, grpc-status and grpc-message), not
//     an error page a gRPC client could not read.
//   - grpc-timeout bounds the request: every attempt ends when it expires
//     (the configured timeouts still apply, so the earlier one wins), and
//     the upstream receives the time that is left.
//   - The client's cancellation reaches HTTP/2 upstreams as RST_STREAM,
//     because each upstream stream runs under the request's context.

// gRPC status codes the proxy answers with (google.golang.org/grpc/codes).
const (
	grpcUnknown           = 2
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

// errGRPCDeadline is the cause of a request context ended by grpc-timeout.
var errGRPCDeadline error = timeoutError("proxy: grpc-timeout expired")

// isGRPC reports whether req is a gRPC call (content-type application/grpc,
// application/grpc+proto, application/grpc-web...).
func isGRPC(req *RequestHeader) bool {
	if req == nil {
		return false
	}
	v := req.Header["Content-Type"]
	return len(v) > 0 && strings.HasPrefix(v[0], "application/grpc")
}

// isGRPCContentType reports whether a response's content type is gRPC's
// (application/grpc, +proto, +json, ...), whose status comes in trailers;
// not grpc-web's, which carries them in the body.
func isGRPCContentType(v string) bool {
	rest, ok := strings.CutPrefix(v, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// parseGRPCTimeout parses a grpc-timeout value: at most 8 ASCII digits and
// a unit, H M S m u n (hours down to nanoseconds).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil || v[0] == '+' {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	// 8 digits of hours fit in an int64 of nanoseconds only up to ~2.5e6
	// hours; anything longer is as good as no deadline.
	if n > uint64(1<<63-1)/uint64(unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// formatGRPCTimeout encodes d in the finest unit whose value fits in 8
// digits, rounding up so the upstream never sees more time than is left.
func formatGRPCTimeout(d time.Duration) string {
	if d <= 0 {
		return "0n"
	}
	const most = 1e8 - 1
	for _, u := range []struct {
		d time.Duration
		c string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}} {
		if n := (d + u.d - 1) / u.d; n <= most {
			return strconv.FormatInt(int64(n), 10) + u.c
		}
	}
	n := min((d+time.Hour-1)/time.Hour, most)
	return strconv.FormatInt(int64(n), 10) + "H"
}

// startGRPCDeadline bounds sess's context by the request's grpc-timeout.
// It returns the function that releases the timer, or nil when the request
// carries no (valid) grpc-timeout.
func startGRPCDeadline(sess *Session) context.CancelFunc {
	if !isGRPC(sess.Req) {
		return nil
	}
	v := sess.Req.Header["Grpc-Timeout"]
	if len(v) != 1 {
		return nil
	}
	d, ok := parseGRPCTimeout(v[0])
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeoutCause(sess.ctx, d, errGRPCDeadline)
	sess.ctx = ctx
	return cancel
}

// grpcDeadlineHeader rewrites the upstream request's grpc-timeout to the
// time left. It returns errGRPCDeadline's Error when none is left.
func grpcDeadlineHeader(sess *Session, h http.Header) error {
	dl, ok := sess.ctx.Deadline()
	if !ok || len(h["Grpc-Timeout"]) == 0 {
		return nil
	}
	left := time.Until(dl)
	if left <= 0 {
		return grpcDeadlineError()
	}
	h["Grpc-Timeout"] = []string{formatGRPCTimeout(left)}
	return nil
}

// grpcDeadlineError is the error of a request whose grpc-timeout expired:
// the client's own deadline, so it counts against no peer and is never
// retried.
func grpcDeadlineError() *Error {
	return &Error{Kind: KindReadTimeout, Source: Internal, Status: http.StatusGatewayTimeout, Err: errGRPCDeadline}
}

// grpcDeadlineExpired replaces err by grpcDeadlineError when the request's
// grpc-timeout is what ended the attempt: its timer fired, or the deadline
// has passed. The upstream got the same deadline, counted from later, so a
// reset it sends when its timer fires may arrive before ours runs.
func grpcDeadlineExpired(sess *Session, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(context.Cause(sess.ctx), errGRPCDeadline) {
		return grpcDeadlineError()
	}
	if dl, ok := sess.ctx.Deadline(); ok && !time.Now().Before(dl) && len(sess.Req.Header["Grpc-Timeout"]) > 0 {
		return grpcDeadlineError()
	}
	return err
}

// grpcDeadlineTrailers ends a gRPC response whose head went to an HTTP/2
// client with trailers saying DEADLINE_EXCEEDED, when its grpc-timeout
// expired while the body streamed; it reports whether it did. A reset
// (INTERNAL_ERROR) reached gRPC clients as INTERNAL. A message cut short
// by the expiry still fails as the client's library decides.
func grpcDeadlineTrailers(sess *Session) bool {
	d, ok := sess.ds.(*h2Downstream)
	if !ok || !d.headSent || !isGRPC(sess.Req) {
		return false
	}
	code, msg := grpcStatusFor(errGRPCDeadline, http.StatusGatewayTimeout)
	if err := d.finish(http.Header{"Grpc-Status": {strconv.Itoa(code)}, "Grpc-Message": {msg}}); err != nil {
		d.abort()
	}
	return true
}

// grpcStatusFor maps a proxy failure answered with HTTP status code to a
// gRPC status and a short message naming no upstream. Timeouts are
// DEADLINE_EXCEEDED, failures to reach a peer UNAVAILABLE, the rest as the
// gRPC spec maps HTTP statuses.
func grpcStatusFor(err error, code int) (int, string) {
	var pe *Error
	errors.As(err, &pe)
	msg := "proxy: " + strconv.Itoa(code) + " " + http.StatusText(code)
	if pe != nil {
		msg += " (" + pe.Kind.String() + ")"
	}
	switch {
	case errors.Is(err, errGRPCDeadline):
		return grpcDeadlineExceeded, "proxy: grpc-timeout expired"
	case pe != nil && pe.Kind == KindConnectTimeout:
		return grpcUnavailable, msg
	case code == http.StatusGatewayTimeout:
		return grpcDeadlineExceeded, msg
	}
	switch code {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return grpcUnavailable, msg
	case http.StatusBadRequest, http.StatusInternalServerError:
		return grpcInternal, msg
	case http.StatusUnauthorized:
		return grpcUnauthenticated, msg
	case http.StatusForbidden:
		return grpcPermissionDenied, msg
	case http.StatusNotFound:
		return grpcUnimplemented, msg
	case http.StatusRequestEntityTooLarge:
		return grpcResourceExhausted, msg
	}
	return grpcUnknown, msg
}

// writeGRPCError answers a failed gRPC request with a trailers-only
// response: HTTP 200 and the status in the head, no body.
func (s *Server[C]) writeGRPCError(sess *Session, err error, code int) {
	st, msg := grpcStatusFor(err, code)
	s.writeGRPCStatus(sess, st, msg, http.Header{}, code)
}

// writeGRPCStatus sends a trailers-only response with gRPC status st and
// msg, plus the fields in h (a map it may change); code is the HTTP status
// the failure would have had, which decides whether an HTTP/1.1
// connection closes after it.
func (s *Server[C]) writeGRPCStatus(sess *Session, st int, msg string, h http.Header, code int) {
	h["Content-Type"] = []string{"application/grpc"}
	h["Grpc-Status"] = []string{strconv.Itoa(st)}
	h["Grpc-Message"] = []string{grpcPercentEncode(msg)}
	if sess.ds.errorCloses(code) {
		h["Connection"] = []string{"close"}
	}
	if sess.Req.ProtoMajor < 2 {
		h["Content-Length"] = []string{"0"}
	}
	if err := sess.ds.writeHead(&ResponseHeader{Status: http.StatusOK, Header: h}); err == nil {
		sess.ds.finish(nil)
	}
	sess.Status = http.StatusOK
}

// grpcPercentEncode encodes msg as grpc-message requires: bytes outside
// printable ASCII, and '%', as %XX.
func grpcPercentEncode(msg string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
