package proxy

import (
	"context"
	"log/slog"
	"time"
)

// observe records a finished request in metrics and the access log.
func (s *Server[C]) observe(sess *Session, err error) {
	if sess.body != nil {
		sess.BytesIn = sess.body.n
	}
	total := time.Since(sess.Start)
	s.metrics.observeRequest(sess.Route, sess.Req.Method, sess.Status, total.Seconds())
	if s.cfg.AccessLog == nil {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("method", sess.Req.Method),
		slog.String("host", sess.Req.Host),
		slog.String("path", sess.Req.Path()),
		slog.Int("status", sess.Status),
		slog.Int64("bytes_in", sess.BytesIn),
		slog.Int64("bytes_out", sess.BytesOut),
		slog.String("client", sess.ClientIP),
		slog.String("listener", sess.Listener),
		slog.String("route", sess.Route),
		slog.Int("retries", sess.Retries),
		slog.Duration("total", total),
	)
	if sess.ForwardedIP != "" { // the client a trusted proxy reported (see Session.RealIP)
		attrs = append(attrs, slog.String("real_ip", sess.ForwardedIP))
	}
	if sess.Peer != nil {
		attrs = append(attrs,
			slog.String("upstream", sess.Peer.Addr),
			slog.Bool("conn_reused", sess.ConnReused),
			slog.Duration("connect", sess.ConnectTime),
			slog.Duration("ttfb", sess.UpstreamTTFB),
		)
	}
	if sess.CacheStatus != "" { // what the cache did, as the request ended (Session.CacheStatus)
		attrs = append(attrs, slog.String("cache_status", sess.CacheStatus))
	}
	if sess.TraceID != "" {
		attrs = append(attrs, slog.String("trace_id", sess.TraceID))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.cfg.AccessLog.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}
