package nodetest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// logSink passes the nodes' log lines to t.Log until the test's cleanups
// run (a line logged after the test ended would panic).
type logSink struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func newLogSink(t testing.TB) *logSink {
	s := &logSink{t: t}
	t.Cleanup(func() { // registered first, so it runs last
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	})
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.write(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (s *logSink) write(line string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.t.Log(line)
	}
}

func (s *logSink) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: level}))
}
