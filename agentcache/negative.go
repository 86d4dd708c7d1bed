package agentcache

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/agentcache/agentcache-go/internal/lru"
)

// The negative cache remembers "not found" answers so that an agent guessing
// IDs does not reach the tool again and again.
//
// Exactly, in L2: a marker under the entry's own key, written only if the
// key is absent (SET NX), so it never replaces a real value another
// instance wrote; shared by the fleet and cleared by invalidation like any
// entry, because the key carries the epochs.
//
// Compactly, in L1: bloom filters, so a flood of distinct guesses costs
// about a byte or two each and never evicts positive L1 entries. A global
// resource has one filter; a per-user or per-session resource has one per
// scope, for its maxNegScopes most recently used scopes (see NegativeOptions
// for their sizes), so that one scope's guesses never raise another's
// false-positive rate, and a scope whose filter is evicted only forgets its
// "not found" answers (which costs tool calls, never a wrong answer). Two
// generations rotate every half negative TTL, so a key is remembered for
// between half and all of the TTL (less if the current generation fills
// first: then it rotates early). A bloom "maybe" is only a hint while L2 is
// healthy: it is confirmed by reading the marker, so a false positive never
// becomes a wrong "not found". Without a healthy L2 (none configured, or the
// breaker open) the filter is trusted, and a key that was never negative is
// wrongly reported as not found with about the configured false-positive
// rate (Options.Negative.FalsePositiveRate, 1% by default; each of the two
// generations is sized for half of it) — and only on an L1 miss, since L1 is
// consulted first.

// negFilter is one resource's (or one scope's) pair of rotating bloom
// filters.
type negFilter struct {
	mu        sync.RWMutex // guards everything below
	cur, prev *bloom.BloomFilter
	added     uint // adds to cur since the last rotation
	capacity  uint
	every     time.Duration
	next      time.Time
	now       func() time.Time
}

func newNegFilter(capacity uint, fpr float64, negTTL time.Duration, now func() time.Time) *negFilter {
	// A key is tested against both generations, so each gets half the
	// target rate: together they stay within it when both are full.
	f := &negFilter{
		cur:      bloom.NewWithEstimates(capacity, fpr/2),
		prev:     bloom.NewWithEstimates(capacity, fpr/2),
		capacity: capacity,
		every:    max(negTTL/2, time.Millisecond),
		now:      now,
	}
	f.next = now().Add(f.every)
	return f
}

// rotate drops the older generation if its time has come (or the current
// one is full). Callers hold mu.
func (f *negFilter) rotate(now time.Time) {
	if now.Before(f.next) && f.added < f.capacity {
		return
	}
	if now.Sub(f.next) >= f.every {
		// Idle for more than a period: both generations are too old.
		f.cur.ClearAll()
	}
	f.prev.ClearAll()
	f.cur, f.prev = f.prev, f.cur
	f.added = 0
	f.next = now.Add(f.every)
}

func (f *negFilter) add(key string) {
	f.mu.Lock()
	f.rotate(f.now())
	f.cur.AddString(key)
	f.added++
	f.mu.Unlock()
}

func (f *negFilter) test(key string) bool {
	now := f.now()
	f.mu.RLock()
	if !now.Before(f.next) {
		f.mu.RUnlock()
		f.mu.Lock()
		f.rotate(now)
		f.mu.Unlock()
		f.mu.RLock()
	}
	hit := f.cur.TestString(key) || f.prev.TestString(key)
	f.mu.RUnlock()
	return hit
}

// maxNegScopes is how many scopes of a per-user or per-session resource
// have a negative filter at a time; minScopeNegKeys is the least a scope's
// filter is sized for. Documented in NegativeOptions.
const (
	maxNegScopes    = 256
	minScopeNegKeys = 64
)

// negScopes is a resource's negative filters: one for a global resource,
// one per scope (of the maxNegScopes most recently used) otherwise.
type negScopes struct {
	one *negFilter                     // a global resource's; nil for a scoped one
	by  *lru.Cache[string, *negFilter] // a scoped resource's, by scope segment
	mu  sync.Mutex                     // serialises the creation of scopes' filters
}

// scopeNegKeys is what each scope's filter is sized for, of expected keys
// for the resource.
func scopeNegKeys(expected int) uint {
	return uint(max(expected/maxNegScopes, minScopeNegKeys))
}

// negScopesOf returns rs's filters, creating them on first use.
func (c *Cache) negScopesOf(rs *resState) *negScopes {
	if s := rs.neg.Load(); s != nil {
		return s
	}
	s := &negScopes{}
	if rs.segPrefix == "" {
		o := c.opts.Negative
		s.one = newNegFilter(uint(o.ExpectedKeys), o.FalsePositiveRate, rs.negTTL, c.opts.Now)
	} else {
		s.by = lru.New[string, *negFilter](maxNegScopes, 0, nil)
	}
	if rs.neg.CompareAndSwap(nil, s) {
		return s
	}
	return rs.neg.Load()
}

// negFilterFor returns the filter of rs in the scope segment seg (ignored
// for a global resource), creating it on first use.
func (c *Cache) negFilterFor(rs *resState, seg string) *negFilter {
	s := c.negScopesOf(rs)
	if s.by == nil {
		return s.one
	}
	if f, ok := s.by.Get(seg); ok {
		return f
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.by.Get(seg); ok {
		return f
	}
	o := c.opts.Negative
	f := newNegFilter(scopeNegKeys(o.ExpectedKeys), o.FalsePositiveRate, rs.negTTL, c.opts.Now)
	// seg is often a slice of a lookup's L1 key: keep only its bytes.
	s.by.Add(strings.Clone(seg), f)
	return f
}

// negFilterOf returns the filter of rs in the scope segment seg, or nil if
// it has none. It allocates nothing.
func negFilterOf(rs *resState, seg string) *negFilter {
	s := rs.neg.Load()
	switch {
	case s == nil:
		return nil
	case s.by == nil:
		return s.one
	}
	f, _ := s.by.Get(seg)
	return f
}

// isNotFoundErr reports whether err means "does not exist".
func isNotFoundErr(err error) bool { return errors.Is(err, ErrNotFound) }

// isNotFound reports whether a load's outcome means "does not exist".
func isNotFound(lk *lookup, v any, err error) bool {
	if err != nil {
		return errors.Is(err, ErrNotFound)
	}
	return lk.isNegative != nil && lk.isNegative(v)
}

// negativeHit is the error a caller gets from a remembered "not found";
// msg is the tool's own message when the marker remembered it ("": none,
// as from the bloom filter).
func negativeHit(rs *resState, msg string) error {
	if rs.id == "" && msg == "" {
		return ErrNotFound
	}
	return &notFoundError{res: rs.def.Name, msg: msg}
}

// notFoundMessage is what a "not found" marker remembers of the tool's
// error: its first line, at most maxNotFoundMessage bytes of valid UTF-8
// ("" for none).
func notFoundMessage(err error) string {
	if err == nil || err == ErrNotFound {
		return ""
	}
	m := err.Error()
	if i := strings.IndexAny(m, "\r\n"); i >= 0 {
		m = m[:i]
	}
	if len(m) > maxNotFoundMessage {
		m = m[:maxNotFoundMessage]
	}
	return strings.ToValidUTF8(m, "")
}

const maxNotFoundMessage = 256

type notFoundError struct{ res, msg string }

// Error repeats the tool's message when the marker remembered it.
func (e *notFoundError) Error() string {
	s := "agentcache: "
	if e.res != "" {
		s += e.res + ": "
	}
	s += "not found (cached)"
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}
func (e *notFoundError) Is(target error) bool {
	return target == ErrNotFound
}
