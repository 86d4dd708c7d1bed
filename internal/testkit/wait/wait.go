// Package wait is how the project's tests wait for a condition: they poll it
// until it holds and fail with what they waited for once a deadline passes.
// A test never sleeps in the hope that something has happened by then; the
// sleeps left in tests are a tool's simulated latency or a fault window.
package wait

import (
	"testing"
	"time"
)

// poll is how often a condition is checked: short next to any deadline a
// test gives, long enough not to busy-spin a 2-core machine.
const poll = 2 * time.Millisecond

// For polls cond until it holds, and fails t with what after d.
func For(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	Until(t, d, func() string {
		if cond() {
			return ""
		}
		return what
	})
}

// Until polls check until it returns "", and fails t with its last answer
// after d: for a condition whose failure is best told with its state then.
func Until(t testing.TB, d time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		why := check()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", why, d)
			return // a TB whose Fatalf records rather than stops
		}
		time.Sleep(poll)
	}
}
