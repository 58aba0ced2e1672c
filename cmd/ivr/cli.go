package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
)

// parseExit is the exit code after a flag set failed to parse: 0 for --help, 2 otherwise.
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// verboseLogger logs text to w: warnings only, or everything down to debug when verbose.
func verboseLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
