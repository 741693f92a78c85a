// Package logging builds the slog logger of a binary from its config.
package logging

import (
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing text or json at level to w.
func New(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
