package agentcache

import (
	"sync/atomic"
	"time"
)

// testClock is the one clock of this package's tests where time matters:
// the test passes its Now as Options.Now (or MemoOptions.Now) and moves it
// by hand with Advance. It is safe for concurrent use.
type testClock struct{ ns atomic.Int64 }

// newTestClock returns a clock set at 2026-01-01 00:00 UTC.
func newTestClock() *testClock {
	return newTestClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// newTestClockAt returns a clock set at start.
func newTestClockAt(start time.Time) *testClock {
	c := &testClock{}
	c.ns.Store(start.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *testClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward by d.
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
