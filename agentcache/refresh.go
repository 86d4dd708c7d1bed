package agentcache

import (
	"context"

	"github.com/agentcache/agentcache-go/internal/flight"
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
	started := c.spawn(func() {
		defer c.refreshing.Delete(lk.l1)
		rctx := flight.Detach(ctx, c.base)
		st := c.stampFor(rctx, lk)
		key := lk.l2Key(&st)
		c.stats.refreshes.Add(1)
		if !c.fleetOn(lk) || st.local || st.down {
			_, _ = loadLocal(rctx, c, lk, key, &st, load, lk.writeThrough)
			return
		}
		lkey, token := lockKey(key), newToken()
		var got bool
		if err := c.l2Call(rctx, "lock", func(ctx context.Context) (err error) {
			got, err = c.locker.TryLock(ctx, lkey, token, c.opts.LockLease)
			return err
		}); err != nil {
			c.rp.addUnlock(lkey, token)
			_, _ = loadLocal(rctx, c, lk, key, &st, load, lk.writeThrough)
			return
		}
		if !got {
			// Someone is loading this key; a fresh value may already be in
			// L2 (fromL2 puts it in L1).
			_, _ = fromL2[T](rctx, c, lk, key, &st)
			return
		}
		_, _ = holdAndLoad(rctx, c, lk, key, lkey, token, &st, load)
	})
	if !started {
		c.refreshing.Delete(lk.l1)
	}
}
