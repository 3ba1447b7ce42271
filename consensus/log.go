package consensus

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger adapts l for raft and autopilot, which log through hclog.
func newHCLogger(l *slog.Logger, name string) hclog.Logger {
	level := hclog.Error
	ctx := context.Background()
	switch {
	case l.Enabled(ctx, slog.LevelDebug):
		level = hclog.Debug
	case l.Enabled(ctx, slog.LevelInfo):
		level = hclog.Info
	case l.Enabled(ctx, slog.LevelWarn):
		level = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        name,
		Level:       level,
		Output:      slogWriter{l},
		DisableTime: true,
	})
}

// slogWriter turns hclog's text lines into slog records at the line's level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	switch {
	case bytes.Contains(p, []byte("[ERROR]")):
		level = slog.LevelError
	case bytes.Contains(p, []byte("[WARN]")):
		level = slog.LevelWarn
	case bytes.Contains(p, []byte("[DEBUG]")), bytes.Contains(p, []byte("[TRACE]")):
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}
