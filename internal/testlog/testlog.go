// Package testlog is a slog.Logger that writes to a test's log.
package testlog

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// New returns a logger that writes records at level and above to tb's log
// until tb's cleanups have run (a late record from a background goroutine
// is dropped then, as testing forbids logging after the test).
func New(tb testing.TB, level slog.Level) *slog.Logger {
	w := &writer{tb: tb}
	tb.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type writer struct {
	mu   sync.Mutex // guards done and serializes tb.Log
	tb   testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *writer) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
