package agentcache

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/agentcache/agentcache-go/tier"
)

// The fleet lock makes one instance run the tool when many miss the same key
// at once. The miss read takes a lease in L2 in the same round trip (SET NX
// with a random token and an expiry, in the entry's slot, only when there is
// no value); the holder renews it while the tool runs, and its write of the
// result releases it and announces the fill on the invalidation channel, in
// the background: the caller does not wait for any of it. The others wait for the announcement (polling L2 as
// a fallback, in case it is lost) and read the value from L2. If the holder
// dies its lease expires and a waiter takes over; if it fails, it releases
// the lease at once and the next waiter tries. A waiter never waits longer
// than its own context allows; if L2 stops answering, instances load on
// their own rather than wait.

// fleetOn reports whether lk's loads go through the fleet lock.
func (c *Cache) fleetOn(lk *lookup) bool {
	return c.locker != nil && !lk.noFleetLock
}

// tryLock takes the lease l on its own (the reads take theirs in the same
// round trip; this is for entries that are there but stale or unusable). A
// call that failed may still have taken it: its release is kept for the
// repair loop.
func (c *Cache) tryLock(ctx context.Context, l *tier.Lease) bool {
	var got bool
	if err := c.l2Call(ctx, "lock", func(ctx context.Context) (err error) {
		got, err = c.locker.TryLock(ctx, l.Key, l.Token, l.TTL)
		return err
	}); err != nil {
		c.rp.addUnlock(l)
		return false
	}
	return got
}

// renewLease extends the lease every third of its life until stopped. A
// lease taken before the entry's generation gen was known (l.Gen 0) is
// tagged with it once the load has run for as long as a waiter polls
// (16 × Options.Tuning.LockPoll), so that from then on a load of another
// generation takes it over instead of waiting for this one; a faster load
// costs no round trip for it.
func (c *Cache) renewLease(l tier.Lease, gen uint64) (stop func()) {
	done := make(chan struct{})
	tagger, _ := c.locker.(tier.LeaseTagger)
	if tagger == nil || l.Gen != 0 || gen == 0 {
		tagger = nil
	}
	c.spawn(func() {
		t := time.NewTicker(l.TTL / 3)
		defer t.Stop()
		var tag <-chan time.Time
		if tagger != nil {
			tt := time.NewTimer(min(16*c.opts.Tuning.LockPoll, l.TTL/3))
			defer tt.Stop()
			tag = tt.C
		}
		for {
			select {
			case <-done:
				return
			case <-c.base.Done():
				return
			case <-tag:
				tag = nil
				if c.l2Call(c.base, "lock tag", func(ctx context.Context) error {
					_, err := tagger.TagLease(ctx, l.Key, l.Token, gen, l.TTL)
					return err
				}) == nil {
					t.Reset(l.TTL / 3)
				}
			case <-t.C:
				_ = c.l2Call(c.base, "lock renew", func(ctx context.Context) error {
					_, err := c.locker.Extend(ctx, l.Key, l.Token, l.TTL)
					return err
				})
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

func newToken() string { return uuid.NewString() }

// fillWaiters wakes the loads of this instance that wait for another
// instance's fill of a key.
type fillWaiters struct {
	mu sync.Mutex // guards m
	m  map[string]map[chan struct{}]struct{}
}

func (f *fillWaiters) add(key string) chan struct{} {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]map[chan struct{}]struct{}{}
	}
	if f.m[key] == nil {
		f.m[key] = map[chan struct{}]struct{}{}
	}
	f.m[key][ch] = struct{}{}
	f.mu.Unlock()
	return ch
}

func (f *fillWaiters) remove(key string, ch chan struct{}) {
	f.mu.Lock()
	delete(f.m[key], ch)
	if len(f.m[key]) == 0 {
		delete(f.m, key)
	}
	f.mu.Unlock()
}

// notifyAll wakes every waiter: announcements may have been lost.
func (f *fillWaiters) notifyAll() {
	f.mu.Lock()
	for _, chs := range f.m {
		for ch := range chs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	f.mu.Unlock()
}

func (f *fillWaiters) notify(key string) {
	f.mu.Lock()
	for ch := range f.m[key] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	f.mu.Unlock()
}
