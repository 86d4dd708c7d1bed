// Package breaker is a circuit breaker for the cache's remote tier: after a
// run of consecutive failures (one, until the remote has answered once) it
// opens and refuses calls, so a dead or
// blackholed Redis costs one timeout instead of one per call; after a pause
// it lets a single probe through (half-open) and closes again when the probe
// succeeds. Each failed probe doubles the pause, up to a maximum.
package breaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is the breaker's state.
type State int32

// The states of a Breaker.
const (
	Closed   State = iota // calls flow
	Open                  // calls are refused
	HalfOpen              // one probe call is allowed
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Options configures a Breaker. Zero fields take the documented defaults.
type Options struct {
	// Failures is the number of consecutive failures that opens the breaker.
	// Default 5.
	Failures int
	// OpenFor is the first pause before a probe. Default 500ms.
	OpenFor time.Duration
	// MaxOpenFor caps the pause as failed probes double it. Default 30s.
	MaxOpenFor time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnChange, if set, is called after each state change, outside the lock.
	OnChange func(from, to State)
}

// Breaker is safe for concurrent use.
type Breaker struct {
	opts  Options
	state atomic.Int32 // State; read without the lock on the fast path
	fails atomic.Int32 // consecutive failures while closed
	// answered is set by the first success: until the remote has answered
	// once, one failure opens the breaker (a remote that is down at start
	// costs one timeout, not Failures of them).
	answered atomic.Bool

	mu       sync.Mutex // guards the fields below and state transitions
	openedAt time.Time
	pause    time.Duration
	probing  bool
}

// New returns a closed Breaker.
func New(o Options) *Breaker {
	if o.Failures <= 0 {
		o.Failures = 5
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 500 * time.Millisecond
	}
	if o.MaxOpenFor <= 0 {
		o.MaxOpenFor = 30 * time.Second
	}
	if o.MaxOpenFor < o.OpenFor {
		o.MaxOpenFor = o.OpenFor
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Breaker{opts: o, pause: o.OpenFor}
}

// State returns the current state.
func (b *Breaker) State() State { return State(b.state.Load()) }

// Allow reports whether a call may go ahead. Every allowed call must be
// followed by exactly one of Success, Failure or Cancel.
func (b *Breaker) Allow() bool {
	if State(b.state.Load()) == Closed {
		return true
	}
	b.mu.Lock()
	switch State(b.state.Load()) {
	case Closed:
		b.mu.Unlock()
		return true
	case Open:
		if b.opts.Now().Sub(b.openedAt) < b.pause {
			b.mu.Unlock()
			return false
		}
		b.probing = true
		b.mu.Unlock()
		b.set(Open, HalfOpen)
		return true
	default: // HalfOpen
		if b.probing {
			b.mu.Unlock()
			return false
		}
		b.probing = true
		b.mu.Unlock()
		return true
	}
}

// Success records a call that worked.
func (b *Breaker) Success() {
	if !b.answered.Load() {
		b.answered.Store(true)
	}
	if State(b.state.Load()) == Closed {
		if b.fails.Load() != 0 {
			b.fails.Store(0)
		}
		return
	}
	b.mu.Lock()
	from := State(b.state.Load())
	b.probing = false
	b.pause = b.opts.OpenFor
	b.fails.Store(0)
	b.mu.Unlock()
	if from != Closed {
		b.set(from, Closed)
	}
}

// Failure records a call that failed or timed out.
func (b *Breaker) Failure() {
	threshold := b.opts.Failures
	if !b.answered.Load() {
		threshold = 1
	}
	if State(b.state.Load()) == Closed {
		if int(b.fails.Add(1)) < threshold {
			return
		}
	}
	b.mu.Lock()
	from := State(b.state.Load())
	switch from {
	case Closed:
		if int(b.fails.Load()) < threshold {
			b.mu.Unlock()
			return
		}
		b.pause = b.opts.OpenFor
	case HalfOpen:
		b.probing = false
		b.pause = min(2*b.pause, b.opts.MaxOpenFor)
	case Open:
		// A call allowed before the breaker opened failed late: the
		// breaker is already open, keep its pause.
		b.mu.Unlock()
		return
	}
	b.openedAt = b.opts.Now()
	b.mu.Unlock()
	b.set(from, Open)
}

// Cancel records a call whose outcome says nothing about the remote's health
// (the caller gave up). It frees the probe slot if the call was the probe.
func (b *Breaker) Cancel() {
	if State(b.state.Load()) != HalfOpen {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

func (b *Breaker) set(from, to State) {
	if !b.state.CompareAndSwap(int32(from), int32(to)) {
		return
	}
	if b.opts.OnChange != nil {
		b.opts.OnChange(from, to)
	}
}
