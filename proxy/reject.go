package proxy

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// reasonHeaderTimeout labels a request head that did not arrive whole
// within Downstream.HeaderTimeout (408). The other reasons are proxy/h1's
// codes and proxy/h2's (see h2.Config.OnReject).
const reasonHeaderTimeout = "header_timeout"

// rejected counts a client request refused as malformed before any phase
// saw it, in pingora_downstream_rejected_total{reason}, and logs it (at
// most rejectLogsPerSecond lines a second: a client that sends nothing
// else must not flood the log; the counter has the totals).
func (s *Server[C]) rejected(listener, client, proto, reason string, err error) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	if s.rejectLog.allow(time.Now().Unix()) {
		s.errLog.Info("request refused", "listener", listener, "client", client, "proto", proto, "reason", reason, "err", err)
	}
}

// flooded counts an HTTP/2 connection ended for flooding (h2.Config.OnFlood)
// in pingora_downstream_floods_total{reason}, and logs it at most
// rejectLogsPerSecond lines a second, as refused requests are (a budget of
// its own: a flood of malformed requests does not hide these).
func (s *Server[C]) flooded(listener, client, reason string, err error) {
	s.metrics.floods.WithLabelValues(reason).Inc()
	if s.floodLog.allow(time.Now().Unix()) {
		s.errLog.Info("connection closed for flooding", "listener", listener, "client", client, "proto", "HTTP/2", "reason", reason, "err", err)
	}
}

// slowClient counts and logs (within the log budget) a client cut for
// falling under a minimum data rate: dir is "send" (it took the response
// too slowly) or "recv" (it sent the request body too slowly).
func (s *Server[C]) slowClient(listener, client, proto, dir string) {
	s.metrics.slowClients.WithLabelValues(dir).Inc()
	if s.slowLog.allow(time.Now().Unix()) {
		s.errLog.Info("slow client cut under the minimum data rate", "listener", listener, "client", client, "proto", proto, "direction", dir)
	}
}

// rejectedBody counts a request that failed because its HTTP/1.1 body
// framing broke (a bad chunk): the parser refused it mid-body.
func (s *Server[C]) rejectedBody(sess *Session, err error) {
	var pe *Error
	if !errors.As(err, &pe) || pe.Source != Downstream || pe.Kind != KindInvalidRequest {
		return
	}
	if reason := parseReason(err); reason != "" {
		s.rejected(sess.Listener, sess.ClientIP, "HTTP/1.1", reason, err)
	}
}

// parseReason is the reason label of an HTTP/1.1 parse error, "" when err
// is not one.
func parseReason(err error) string {
	var pe *h1.ParseError
	if errors.As(err, &pe) && pe.Code != "" {
		return pe.Code
	}
	return ""
}

const rejectLogsPerSecond = 10

// logBudget admits a bounded number of log lines per second.
type logBudget struct {
	sec atomic.Int64
	n   atomic.Int32
}

// allow reports whether one more line may be logged in second now. Two
// callers that start a new second together may both reset the count: a
// line or two more, never fewer.
func (b *logBudget) allow(now int64) bool {
	if b.sec.Load() != now {
		b.sec.Store(now)
		b.n.Store(0)
	}
	return b.n.Add(1) <= rejectLogsPerSecond
}
