package agentcache

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/agentcache/agentcache-go/internal/breaker"
	"github.com/agentcache/agentcache-go/internal/keyspace"
)

// The fleet lock makes one instance run the tool when many miss the same key
// at once. The loader takes a lease in L2 (SET NX with a random token and an
// expiry, in the entry's slot), renews it while the tool runs, writes the
// result to L2, releases the lease and announces the fill on the
// invalidation channel. The others wait for the announcement (polling L2 as
// a fallback, in case it is lost) and read the value from L2. If the holder
// dies its lease expires and a waiter takes over; if it fails, it releases
// the lease at once and the next waiter tries. A waiter never waits longer
// than its own context allows; if L2 stops answering, instances load on
// their own rather than wait.

// fleetOn reports whether lk's loads go through the fleet lock.
func (c *Cache) fleetOn(lk *lookup) bool {
	return c.locker != nil && !c.opts.DisableFleetLock && !lk.noFleetLock
}

// lockKey is the lease's key (see internal/keyspace).
func lockKey(key string) string { return keyspace.LeaseKey(key) }

func loadFleet[T any](ctx context.Context, c *Cache, lk *lookup, key string, st *stamp, load func(context.Context) (T, error)) (loaded, error) {
	lkey := lockKey(key)
	token := newToken()
	w := c.fills.add(key)
	defer c.fills.remove(key, w)
	poll := c.opts.LockPoll
	for {
		var got bool
		err := c.l2Call(ctx, "lock", func(ctx context.Context) (err error) {
			got, err = c.locker.TryLock(ctx, lkey, token, c.opts.LockLease)
			return err
		})
		if err != nil {
			// The TryLock may have been applied although it failed here:
			// release our token when L2 answers again. Nobody can
			// coordinate without L2: load here.
			c.rp.addUnlock(lkey, token)
			return loadLocal(ctx, c, lk, key, st, load, lk.writeThrough)
		}
		if got {
			return holdAndLoad(ctx, c, lk, key, lkey, token, st, load)
		}
		c.stats.fleetWaits.Add(1)
		t := time.NewTimer(poll)
		select {
		case <-w:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return loaded{}, ctx.Err()
		}
		t.Stop()
		poll = min(2*poll, 16*c.opts.LockPoll)
		v, r := fromL2[T](ctx, c, lk, key, st)
		switch r.status {
		case l2Hit:
			return loaded{v: v, tier: tierL2, cost: r.cost}, nil
		case l2Negative:
			return loaded{tier: tierNegative, cost: r.cost}, negativeHit(lk.r)
		case l2Unavailable:
			return loadLocal(ctx, c, lk, key, st, load, lk.writeThrough)
		}
	}
}

// holdAndLoad runs the tool under a lease it holds: checks L2 once more
// (another instance may have filled it between our read and our lock),
// loads with write-through, then releases the lease and announces the fill.
func holdAndLoad[T any](ctx context.Context, c *Cache, lk *lookup, key, lkey, token string, st *stamp, load func(context.Context) (T, error)) (loaded, error) {
	stop := c.renewLease(lkey, token)
	l2failed := false
	defer func() {
		stop()
		// After a failed L2 step, hand the release to the repair loop and
		// skip the announcement (it only saves others a poll): the callers
		// waiting on this load pay one L2 timeout, not three.
		if l2failed || c.brk.State() == breaker.Open {
			c.rp.addUnlock(lkey, token)
			return
		}
		bg := context.WithoutCancel(ctx)
		if err := c.l2Call(bg, "unlock", func(ctx context.Context) error {
			_, err := c.locker.Unlock(ctx, lkey, token)
			return err
		}); err != nil {
			c.rp.addUnlock(lkey, token)
			return
		}
		_ = c.ep.publish(bg, message{From: c.id, Fills: []string{key}, Keys: []string{lk.l1}})
	}()
	v, r := fromL2[T](ctx, c, lk, key, st)
	switch {
	case r.status == l2Hit && !r.stale:
		return loaded{v: v, tier: tierL2, cost: r.cost}, nil
	case r.status == l2Negative:
		return loaded{tier: tierNegative, cost: r.cost}, negativeHit(lk.r)
	case r.status == l2Unavailable:
		l2failed = true
		return loadLocal(ctx, c, lk, key, st, load, false)
	}
	l, err := loadLocal(ctx, c, lk, key, st, load, true)
	l2failed = l.l2failed
	return l, err
}

// renewLease extends the lease every third of its life until stopped.
func (c *Cache) renewLease(lkey, token string) (stop func()) {
	done := make(chan struct{})
	c.spawn(func() {
		t := time.NewTicker(c.opts.LockLease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.base.Done():
				return
			case <-t.C:
				_ = c.l2Call(c.base, "lock renew", func(ctx context.Context) error {
					_, err := c.locker.Extend(ctx, lkey, token, c.opts.LockLease)
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
