package agentcache

import (
	"context"

	"github.com/agentcache/agentcache-go/internal/flight"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/tier"
)

// refreshAsync reloads lk in the background, once per key at a time on this
// instance and, with the fleet lock, once across the fleet: an instance that
// finds the lease taken leaves the refresh to its holder. Callers keep
// getting the stale (or due) value meanwhile. A refresh that fails stores
// nothing: the stale value is served until its stale window ends, and then
// the error surfaces to callers.
func refreshAsync[T any](ctx context.Context, c *Cache, lk *lookup, load func(context.Context) (T, error)) {
	if _, busy := c.refreshing.LoadOrStore(lk.l1, struct{}{}); busy {
		return
	}
	started := c.spawnTool(func() {
		defer c.refreshing.Delete(lk.l1)
		rctx := flight.Detach(ctx, c.base)
		c.stats.refreshes.Add(1)
		a := attempt{seq: c.fence.start(), began: c.opts.Now(), refresh: true}
		a.st = c.stampFor(rctx, lk)
		a.key = lk.l2Key()
		if c.l2 != nil && !a.st.Local() && !a.st.Down() {
			if c.fleetOn(lk) {
				// The entry is still there (stale or due), so the read
				// would not take the lease: take it on its own.
				l := &tier.Lease{Key: keyspace.LeaseKey(a.key), Token: newToken(), TTL: c.opts.Tuning.LockLease}
				got := c.tryLock(rctx, l)
				if _, ours := c.ownLeases.Load(l.Key); !got && !ours {
					return // another instance is refreshing it
				} else if got {
					a.lease = l
					c.ownLeases.Store(l.Key, l.Token)
				}
				// Held by a load of this instance that has finished and whose
				// write (which releases it) is queued: refresh anyway.
			}
			_, r := readOne[T](rctx, c, lk, &a, nil)
			if r.status == l2Hit && !r.stale || r.status == l2Negative {
				c.release(&a)
				return // another instance refreshed it (readOne put it in L1)
			}
		}
		_, _ = loadAndStore(rctx, c, lk, &a, load)
	})
	if !started {
		c.refreshing.Delete(lk.l1)
	}
}
