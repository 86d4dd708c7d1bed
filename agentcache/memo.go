package agentcache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/internal/flight"
	"github.com/agentcache/agentcache-go/internal/lru"
	"github.com/agentcache/agentcache-go/resource"
)

// MemoOptions configures Memoize. The zero value memoizes in process, with
// at most 1024 results and no TTL.
//
// A memo is either in process (Cache nil) or through a Cache; MaxEntries and
// Now belong to the first and are refused with the second, whose own
// Options bound and time its entries.
//
// An in-process memo evicts in exact least-recently-used order, as
// async-cache's AsyncLRU does, which is why it does not sit on the Cache's
// L1: that one admits and evicts by frequency (otter's W-TinyLFU), the better
// policy for a shared cache and the wrong one for a promise about order.
type MemoOptions[A any] struct {
	// MaxEntries bounds an in-process memo with least-recently-used
	// eviction (async-cache's AsyncLRU(maxsize)). Default 1024; negative
	// means unbounded. Refused with Cache: Options.L1MaxEntries bounds it.
	MaxEntries int
	// TTL bounds each result's life (AsyncTTL(time_to_live)).
	//
	// NOTE: zero means no TTL in process, and with Cache, like a Resource's
	// TTL, the Cache's Options.DefaultTTL.
	TTL time.Duration
	// Key, if set, returns what the key is built from, to leave arguments
	// out (async-cache's skip_args): a receiver, a request ID. Without it
	// the whole argument value is the key, and an argument type with a
	// field its JSON encoding leaves out (unexported, or tagged `json:"-"`)
	// is refused: calls that differ only there would share one result.
	Key func(args A) any
	// Cache, if set, memoizes through it (L1, L2, tracing, invalidation) as
	// the global resource Name.
	Cache *Cache
	// Name is the resource name with Cache (required then), and the name in
	// error messages.
	Name string
	// Now is the clock of an in-process memo. Default time.Now. Refused
	// with Cache: Options.Now is its clock.
	Now func() time.Time
}

// defaultMemoEntries is the bound of an in-process memo (stated in
// MemoOptions' doc).
const defaultMemoEntries = 1024

// MemoStats are a memo's counters.
type MemoStats struct {
	Hits      uint64 // calls answered without running the function
	Misses    uint64 // runs of the function
	Errors    uint64 // runs that returned an error (never memoized)
	Evictions uint64 // results evicted by the LRU bound (in-process memos)
	Entries   int    // results held (in-process memos)
}

// Memo is a memoized function. It is safe for concurrent use.
type Memo[A, R any] struct {
	fn    func(ctx context.Context, args A) (R, error)
	key   func(A) any
	name  string
	local *lru.Cache[resource.Hash, R]
	fl    *flight.Group
	// with a Cache
	c   *Cache
	rs  *resState
	cfg toolConfig

	calls, runs, errs atomic.Uint64
}

// Memoize returns fn memoized: calls with equal arguments (by their
// canonical JSON form, or by Key) share one result until it is evicted,
// expires or is invalidated. Concurrent calls with equal arguments run fn
// once. Errors are returned and never memoized.
func Memoize[A, R any](fn func(ctx context.Context, args A) (R, error), o MemoOptions[A]) (*Memo[A, R], error) {
	if fn == nil {
		return nil, errors.New("agentcache: Memoize: nil function")
	}
	if o.Key == nil {
		if err := resource.CheckArgs(reflect.TypeFor[A]()); err != nil {
			return nil, fmt.Errorf("agentcache: Memoize %s: %w (or give MemoOptions.Key)", o.Name, err)
		}
	}
	if o.TTL < 0 {
		return nil, fmt.Errorf("agentcache: Memoize %s: negative TTL", o.Name)
	}
	m := &Memo[A, R]{fn: fn, key: o.Key, name: o.Name}
	if o.Cache != nil {
		if o.Name == "" {
			return nil, errors.New("agentcache: Memoize with a Cache needs a Name")
		}
		if o.MaxEntries != 0 || o.Now != nil {
			return nil, fmt.Errorf("agentcache: Memoize %s: MaxEntries and Now are for an in-process memo; with a Cache its Options.L1MaxEntries and Options.Now apply", o.Name)
		}
		rs, err := o.Cache.register(resource.Resource{Name: o.Name, TTL: o.TTL, NegativeTTL: -1})
		if err != nil {
			return nil, err
		}
		if err := o.Cache.checkTool(rs, "Memoize", fn, reflect.TypeFor[A](), reflect.TypeFor[R](), nil, false); err != nil {
			return nil, err
		}
		m.c, m.rs = o.Cache, rs
		return m, nil
	}
	max := o.MaxEntries
	switch {
	case max == 0:
		max = defaultMemoEntries
	case max < 0:
		max = 0
	}
	m.local = lru.New[resource.Hash, R](max, o.TTL, o.Now)
	m.fl = flight.New(context.Background(), 0)
	return m, nil
}

func (m *Memo[A, R]) hash(args A) (resource.Hash, error) {
	var v any = args
	if m.key != nil {
		v = m.key(args)
	}
	h, err := resource.HashValue(v, resource.Limits{})
	if err != nil {
		return h, fmt.Errorf("agentcache: memo %s: arguments: %w", m.name, err)
	}
	return h, nil
}

// l1Key returns the L1 key of the call with args, with a Cache.
func (m *Memo[A, R]) l1Key(args A) (string, error) {
	var v any = args
	if m.key != nil {
		v = m.key(args)
	}
	l1, err := m.rs.argsKey("", v, resource.Limits{})
	if err != nil {
		return "", fmt.Errorf("agentcache: memo %s: arguments: %w", m.name, err)
	}
	return l1, nil
}

// Call returns fn(ctx, args), memoized.
func (m *Memo[A, R]) Call(ctx context.Context, args A) (R, error) {
	var zero R
	m.calls.Add(1)
	if m.c != nil {
		if m.c.closed.Load() {
			return zero, ErrClosed
		}
		l1, err := m.l1Key(args)
		if err != nil {
			return zero, err
		}
		return call(ctx, m.c, m.rs, &m.cfg, []byte(l1), "", m.run, args)
	}
	h, err := m.hash(args)
	if err != nil {
		return zero, err
	}
	run := func(ctx context.Context) (R, error) { return m.run(ctx, args) }
	if v, ok := m.local.Get(h); ok {
		return v, nil
	}
	v, err, _ := m.fl.Do(ctx, string(h[:]), func(ctx context.Context) (any, error) {
		if v, ok := m.local.Get(h); ok {
			return v, nil
		}
		v, err := run(ctx)
		if err != nil {
			return nil, err
		}
		m.local.Add(h, v)
		return v, nil
	})
	if err != nil {
		return zero, asPanic(err)
	}
	r, _ := v.(R)
	return r, nil
}

// run calls the function and counts it.
func (m *Memo[A, R]) run(ctx context.Context, args A) (R, error) {
	m.runs.Add(1)
	v, err := m.fn(ctx, args)
	if err != nil {
		m.errs.Add(1)
	}
	return v, err
}

// Invalidate drops the result memoized for args (everywhere, with a Cache).
func (m *Memo[A, R]) Invalidate(ctx context.Context, args A) error {
	if m.c != nil {
		l1, err := m.l1Key(args)
		if err != nil {
			return err
		}
		return m.c.Invalidate(ctx, Target{kind: targetCall, res: m.rs.def, l1: l1})
	}
	h, err := m.hash(args)
	if err != nil {
		return err
	}
	m.local.Remove(h)
	return nil
}

// Purge drops every memoized result (everywhere, with a Cache).
func (m *Memo[A, R]) Purge(ctx context.Context) error {
	if m.c != nil {
		return m.c.Invalidate(ctx, TargetResource(m.rs.def))
	}
	m.local.Purge()
	return nil
}

// Stats returns the memo's counters.
func (m *Memo[A, R]) Stats() MemoStats {
	s := MemoStats{Misses: m.runs.Load(), Errors: m.errs.Load()}
	if calls := m.calls.Load(); calls > s.Misses {
		s.Hits = calls - s.Misses
	}
	if m.local != nil {
		s.Evictions = m.local.Evictions()
		s.Entries = m.local.Len()
	}
	return s
}
