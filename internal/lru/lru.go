// Package lru is a small least-recently-used map with optional per-entry
// expiry and an injectable clock, for the memoizing decorators. The cache's
// L1 is otter (W-TinyLFU); a memo bounded "by LRU" promises exactly LRU
// order, which is what this gives.
package lru

import (
	"container/list"
	"sync"
	"time"
)

// Cache is safe for concurrent use. The zero value is not usable; call New.
type Cache[K comparable, V any] struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex // guards everything below
	ll        *list.List // front: most recently used
	m         map[K]*list.Element
	evictions uint64
}

type item[K comparable, V any] struct {
	k   K
	v   V
	exp time.Time // zero: never
}

// New returns a Cache of at most max entries (max <= 0: unbounded), whose
// entries expire ttl after they were added (ttl <= 0: never). now is the
// clock (nil: time.Now).
func New[K comparable, V any](max int, ttl time.Duration, now func() time.Time) *Cache[K, V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[K, V]{max: max, ttl: ttl, now: now, ll: list.New(), m: map[K]*list.Element{}}
}

// Get returns the live value of k and marks it most recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	it := e.Value.(*item[K, V])
	if !it.exp.IsZero() && !c.now().Before(it.exp) {
		c.ll.Remove(e)
		delete(c.m, k)
		var zero V
		return zero, false
	}
	c.ll.MoveToFront(e)
	return it.v, true
}

// Add stores v at k as the most recently used entry, evicting the least
// recently used one if the cache is full.
func (c *Cache[K, V]) Add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var exp time.Time
	if c.ttl > 0 {
		exp = c.now().Add(c.ttl)
	}
	if e, ok := c.m[k]; ok {
		it := e.Value.(*item[K, V])
		it.v, it.exp = v, exp
		c.ll.MoveToFront(e)
		return
	}
	c.m[k] = c.ll.PushFront(&item[K, V]{k: k, v: v, exp: exp})
	if c.max > 0 && c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*item[K, V]).k)
		c.evictions++
	}
}

// Remove deletes k.
func (c *Cache[K, V]) Remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.Remove(e)
		delete(c.m, k)
	}
}

// Purge deletes every entry.
func (c *Cache[K, V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.m)
}

// Len returns the number of entries, expired ones included until read.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// Evictions returns how many entries were evicted to respect the bound.
func (c *Cache[K, V]) Evictions() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evictions
}
