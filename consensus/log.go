package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// newHCLogger adapts l for raft and autopilot, which log through hclog:
// each record goes to l with its message and key/value pairs as
// attributes (one JSON line with a JSON handler) and the logger's name in
// "logger". Complaints about what a sender sent go through noise (see
// senderCaused); a nil noise logs them all.
func newHCLogger(l *slog.Logger, name string, noise *logthrottle.Throttle) hclog.Logger {
	return &hcLogger{l: l, name: name, noise: noise}
}

// hcLogger is an hclog.Logger writing to a *slog.Logger.
type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
	noise   *logthrottle.Throttle
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
	// a leader that meets a newer term steps down: an election went on
	"peer has newer term, stopping replication",
}

// senderCaused are raft's messages about what came in on a connection:
// anyone who can reach the cluster port causes them, one per connection
// (2,000 junk connections logged 2,000 ERROR lines "failed to decode
// incoming command"), so they are warnings, throttled; this server's own
// failures stay errors.
var senderCaused = []string{"failed to decode incoming command", "failed to flush response"}

func isSenderCaused(msg string) bool {
	for _, m := range senderCaused {
		if msg == m {
			return true
		}
	}
	return false
}

// level is the slog level of one record: hclog's, except that peer
// unreachable and sender-caused messages are warnings and errors caused
// by this server's own transport shutting down are debug.
func level(l hclog.Level, msg string, args []any) slog.Level {
	if l >= hclog.Error {
		for _, a := range args {
			if err, ok := a.(error); ok && (strings.Contains(err.Error(), "transport shutdown") || errors.Is(err, context.Canceled) ||
				strings.Contains(err.Error(), "without a valid autopilot state")) {
				// this server stopping, autopilot's leader loop ending, or
				// a new leader's autopilot before its first state (it
				// reconciles again a moment later)
				return slog.LevelDebug
			}
		}
		for _, p := range peerUnreachable {
			if strings.HasPrefix(msg, p) {
				return slog.LevelWarn
			}
		}
		if isSenderCaused(msg) {
			return slog.LevelWarn
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
	attrs = appendPairs(attrs, h.implied)
	attrs = appendPairs(attrs, args)
	if lv >= slog.LevelWarn && isSenderCaused(msg) {
		h.noise.Log(h.l, lv, msg, msg, attrs...)
		return
	}
	h.l.Log(ctx, lv, msg, attrs...)
}

// reservedKeys are attributes the node's log sets itself; raft's keys of
// the same name get a "raft_" prefix, so no line has a key twice.
var reservedKeys = map[string]bool{"time": true, "level": true, "msg": true, "node": true, "part": true, "logger": true}

// appendPairs appends hclog's key/value pairs as slog ones: values that
// are not plain are formatted as hclog formats them (%v: a raft.Server
// reads {Voter n2 10.0.0.2:7947}, not a JSON object; an hclog.Fmt value
// by its format, where %v printed "[%+v [{Voter n1 ...}]]").
func appendPairs(attrs, args []any) []any {
	for i := 0; i+1 < len(args); i += 2 {
		k := fmt.Sprint(args[i])
		if reservedKeys[k] {
			k = "raft_" + k
		}
		v := args[i+1]
		switch f := v.(type) {
		case string, bool, int, int64, uint64, uint32, int32, float64, time.Duration, time.Time:
		case hclog.Format: // hclog.Fmt("%+v", servers): the format and its arguments
			v = fmt.Sprint(f...)
			if len(f) > 0 {
				if format, ok := f[0].(string); ok {
					v = fmt.Sprintf(format, f[1:]...)
				}
			}
		default:
			v = fmt.Sprint(v)
		}
		attrs = append(attrs, k, v)
	}
	if len(args)%2 == 1 {
		attrs = append(attrs, "extra", fmt.Sprint(args[len(args)-1]))
	}
	return attrs
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
