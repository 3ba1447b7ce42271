package consensus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger adapts l for raft and autopilot, which log through hclog:
// each record goes to l with its message and key/value pairs as
// attributes (one JSON line with a JSON handler) and the logger's name in
// "logger".
func newHCLogger(l *slog.Logger, name string) hclog.Logger {
	return &hcLogger{l: l, name: name}
}

// hcLogger is an hclog.Logger writing to a *slog.Logger.
type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hcLogger)(nil)

// peerUnreachable are raft's messages about one peer that cannot be
// reached. raft logs them at ERROR; a cluster with a quorum runs on, and
// autopilot's health (in /status) is what says a server is in trouble, so
// they are warnings. A graceful stop of one server makes the others log
// them until it is removed, and a normal stop logs no ERROR (issue 12).
var peerUnreachable = []string{
	"failed to heartbeat to", "failed to appendEntries to", "failed to make requestVote RPC",
	"failed to pipeline appendEntries", "failed to send snapshot to", "failed to get log",
}

// level is the slog level of one record: hclog's, except that peer
// unreachable messages are warnings and errors caused by this server's
// own transport shutting down are debug.
func level(l hclog.Level, msg string, args []any) slog.Level {
	if l >= hclog.Error {
		for _, a := range args {
			if err, ok := a.(error); ok && strings.Contains(err.Error(), "transport shutdown") {
				return slog.LevelDebug
			}
		}
		for _, p := range peerUnreachable {
			if strings.HasPrefix(msg, p) {
				return slog.LevelWarn
			}
		}
	}
	switch {
	case l >= hclog.Error:
		return slog.LevelError
	case l == hclog.Warn:
		return slog.LevelWarn
	case l == hclog.Info:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (h *hcLogger) Log(l hclog.Level, msg string, args ...any) {
	lv := level(l, msg, args)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lv) {
		return
	}
	attrs := make([]any, 0, 2+len(h.implied)+len(args))
	attrs = append(attrs, "logger", h.name)
	attrs = append(attrs, h.implied...)
	for i, a := range args {
		if err, ok := a.(error); ok && i%2 == 1 {
			a = err.Error() // slog's JSON handler writes an error as {} otherwise
		}
		attrs = append(attrs, a)
	}
	h.l.Log(ctx, lv, msg, attrs...)
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) enabled(l slog.Level) bool { return h.l.Enabled(context.Background(), l) }
func (h *hcLogger) IsTrace() bool             { return false }
func (h *hcLogger) IsDebug() bool             { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsInfo() bool              { return h.enabled(slog.LevelInfo) }
func (h *hcLogger) IsWarn() bool              { return h.enabled(slog.LevelWarn) }
func (h *hcLogger) IsError() bool             { return h.enabled(slog.LevelError) }
func (h *hcLogger) ImpliedArgs() []any        { return h.implied }

func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), args...)
	return &c
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	c := *h
	c.name = h.name + "." + name
	return &c
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel does nothing: the slog handler decides.
func (h *hcLogger) SetLevel(hclog.Level) {}

func (h *hcLogger) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return stdWriter{h} }

// stdWriter takes lines of a standard *log.Logger, "[LEVEL] msg" or a bare
// message (info).
type stdWriter struct{ h *hcLogger }

func (w stdWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	l := hclog.Info
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if rest, ok := strings.CutPrefix(msg, fmt.Sprintf("[%s]", strings.ToUpper(lv.String()))); ok {
			msg, l = strings.TrimSpace(rest), lv
			break
		}
	}
	w.h.Log(l, msg)
	return len(p), nil
}
