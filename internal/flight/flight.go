// Package flight runs one load per key at a time and shares its result with
// every caller that asks for the key while the load runs (singleflight).
//
// Unlike golang.org/x/sync/singleflight, a load here does not run on the
// first caller's context: it runs on its own goroutine with the caller's
// values (trace span, scope IDs) but without its cancellation, so a caller
// that gives up — its context ends — gets its own ctx.Err() at once while the
// load goes on for the others and its result is still cached. A panic in the
// load becomes a *PanicError for every waiter instead of crashing the process.
package flight

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Do for a key with no load running once the
// Group's base context has ended.
var ErrClosed = errors.New("flight: closed")

// PanicError is returned to every waiter of a load that panicked.
type PanicError struct {
	Value any    // what the load panicked with
	Stack []byte // the stack of the panicking goroutine
}

// Error returns one line; the stack is in Stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("flight: the load panicked: %v", e.Value)
}

// Unwrap returns the panic value when it is an error, so errors.Is sees it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

type call struct {
	done    chan struct{}
	val     any
	err     error
	aliases []string // guarded by Group.mu: other keys it is the load of
}

// Group coordinates loads. Its zero value is not usable; call New.
type Group struct {
	base    context.Context // ends when the owner closes: cancels running loads
	timeout time.Duration

	mu    sync.Mutex // guards calls, running and idle
	calls map[string]*call
	// aliased counts the keys of calls that are aliases (see Alias).
	aliased int
	// running counts the loads whose goroutine has not returned; idle is
	// closed when it drops to zero. Not a sync.WaitGroup: Do may start a
	// load from zero while Wait runs (a lookup racing Close), which a
	// WaitGroup forbids.
	running int
	idle    chan struct{}

	joined atomic.Uint64 // callers of Do that joined a load in flight
}

// New returns a Group whose loads are cancelled when base ends and, if
// timeout > 0, after timeout.
func New(base context.Context, timeout time.Duration) *Group {
	return &Group{base: base, timeout: timeout, calls: make(map[string]*call)}
}

// Do returns the result of fn for key, running fn only if no load of key is
// in flight. shared reports whether the result came from a load another
// caller started. If ctx ends first, Do returns ctx.Err() and the load goes
// on.
func (g *Group) Do(ctx context.Context, key string, fn func(ctx context.Context) (any, error)) (v any, err error, shared bool) {
	g.mu.Lock()
	c, ok := g.calls[key]
	if ok {
		g.joined.Add(1)
	}
	if !ok && g.base.Err() != nil {
		// The owner has closed: no load starts that could outlive it.
		g.mu.Unlock()
		return nil, ErrClosed, false
	}
	if !ok {
		c = &call{done: make(chan struct{})}
		g.calls[key] = c
		if g.running == 0 {
			g.idle = make(chan struct{})
		}
		g.running++
		go g.run(ctx, key, c, fn)
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err, ok
	case <-ctx.Done():
		return nil, ctx.Err(), ok
	}
}

func (g *Group) run(parent context.Context, key string, c *call, fn func(ctx context.Context) (any, error)) {
	defer func() {
		g.mu.Lock()
		if g.running--; g.running == 0 {
			close(g.idle)
		}
		g.mu.Unlock()
	}()
	ctx := Detach(parent, g.base)
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				c.val, c.err = nil, &PanicError{Value: r, Stack: debug.Stack()}
			}
		}()
		c.val, c.err = fn(ctx)
	}()
	g.mu.Lock()
	delete(g.calls, key)
	for _, a := range c.aliases {
		if g.calls[a] == c {
			delete(g.calls, a)
		}
	}
	g.aliased -= len(c.aliases)
	g.mu.Unlock()
	close(c.done)
}

// Alias makes the load in flight for key the load of alias too, until it
// returns: a caller of alias joins it. It reports false, and does nothing,
// when no load of key is in flight or alias has a load of its own.
func (g *Group) Alias(key, alias string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.calls[key]
	if _, taken := g.calls[alias]; !ok || taken {
		return false
	}
	g.calls[alias] = c
	c.aliases = append(c.aliases, alias)
	g.aliased++
	return true
}

// Joined reports how many calls of Do have joined a load in flight instead
// of starting one, counted as they join (before the load returns).
func (g *Group) Joined() uint64 { return g.joined.Load() }

// InFlight reports the number of loads running.
func (g *Group) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls) - g.aliased
}

// Wait blocks until every running load has returned or ctx ends.
func (g *Group) Wait(ctx context.Context) error {
	g.mu.Lock()
	if g.running == 0 {
		g.mu.Unlock()
		return nil
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Detach returns a context with the values of values and the lifetime
// (deadline, cancellation) of base.
func Detach(values, base context.Context) context.Context {
	return detached{Context: base, values: values}
}

type detached struct {
	context.Context // lifetime: Deadline, Done, Err
	values          context.Context
}

func (d detached) Value(key any) any { return d.values.Value(key) }
