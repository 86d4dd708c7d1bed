// Package ratelog writes warnings of each kind at most once per interval,
// with the count of those it held back in between, so that an outage that
// fails every call does not turn into a log line per call.
package ratelog

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Log is a rate-limited warning log. It is safe for concurrent use.
type Log struct {
	l     *slog.Logger
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex
	last  map[string]time.Time // guarded by mu
	held  map[string]int       // guarded by mu
}

// New returns a Log that writes to l at most one line of each kind per
// every, reading the time from now.
func New(l *slog.Logger, every time.Duration, now func() time.Time) *Log {
	return &Log{l: l, every: every, now: now, last: map[string]time.Time{}, held: map[string]int{}}
}

// Logger returns the logger the Log writes to, for lines that need no
// limit (rare state changes).
func (r *Log) Logger() *slog.Logger { return r.l }

// Warn writes msg with args as a warning, unless a line of the same kind
// was written less than the interval ago; then it only counts it, and the
// next line of the kind says how many were suppressed. kind must come from
// a bounded set (a call site, a format string), never from data.
func (r *Log) Warn(kind, msg string, args ...any) {
	if held, ok := r.admit(kind); ok {
		r.write(msg, held, args)
	}
}

// Warnf is Warn for a line made by fmt.Sprintf(format, v...) after prefix,
// with format as its kind. The line is formatted only when it is written:
// a held-back line costs a map lookup, not a Sprintf.
func (r *Log) Warnf(prefix, format string, v ...any) {
	if held, ok := r.admit(format); ok {
		r.write(prefix+fmt.Sprintf(format, v...), held, nil)
	}
}

// write writes one admitted line, with the count held back before it.
func (r *Log) write(msg string, held int, args []any) {
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	r.l.Warn(msg, args...)
}

// admit reports whether a line of kind is written now, and how many lines
// of the kind were held back since the last one.
func (r *Log) admit(kind string) (held int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if t, seen := r.last[kind]; seen && now.Sub(t) < r.every {
		r.held[kind]++
		return 0, false
	}
	held = r.held[kind]
	r.last[kind], r.held[kind] = now, 0
	return held, true
}
