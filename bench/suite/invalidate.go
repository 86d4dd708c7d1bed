package suite

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// CartArgs is the argument of the per-user tool of the invalidation
// workloads.
type CartArgs struct {
	Page int `json:"page"`
}

const (
	sysACInv   = "agentcache Invalidate(TargetUser)"
	sysScanDel = "SCAN MATCH + DEL (COUNT 1000)"
)

// fillScope calls wrap for n distinct arguments in uctx from 8 goroutines.
func fillScope(uctx context.Context, n int, wrap func(context.Context, CartArgs) (*Product, error)) error {
	const workers = 8
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := wrap(uctx, CartArgs{Page: i}); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

// scanDel deletes the keys matching pattern the way one would without
// epochs: SCAN pages of 1,000 and one DEL per page.
func scanDel(ctx context.Context, c *goredis.Client, pattern string) (int64, error) {
	var cursor uint64
	var deleted int64
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return deleted, err
		}
		if len(keys) > 0 {
			n, err := c.Del(ctx, keys...).Result()
			if err != nil {
				return deleted, err
			}
			deleted += n
		}
		if next == 0 {
			return deleted, nil
		}
		cursor = next
	}
}

// invalidateScope: dropping a user's scope of 100k entries, agentcache's
// epoch bump against SCAN+DEL of the same keys.
func invalidateScope(ctx context.Context, e *env) error {
	const wl = "invalidate_scope_100k"
	n := e.cfg.size(100_000, 10_000)
	var acTrips, scanTrips roundTrips
	rdb := e.client(&acTrips)
	defer rdb.Close()
	raw := e.client(&scanTrips)
	defer raw.Close()
	prefix := e.prefix("inv")
	st, err := e.store(rdb, prefix)
	if err != nil {
		return err
	}
	ac, err := newCache(agentcache.Options{L2: st, Tuning: agentcache.TuningOptions{WriteQueueSize: 1 << 17}})
	if err != nil {
		return err
	}
	defer closeCache(ac)
	res := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Hour}
	var calls atomic.Int64
	wrap, err := agentcache.Wrap(ac, res, func(_ context.Context, a CartArgs) (*Product, error) {
		calls.Add(1)
		return newProduct(a.Page), nil
	}, agentcache.NoFleetLock())
	if err != nil {
		return err
	}
	uctx := scope.WithUser(ctx, "u1")
	e.logf("  filling one user's scope with %d entries", n)
	if err := fillScope(uctx, n, wrap); err != nil {
		return err
	}
	if err := drain(ac, uint64(n)); err != nil {
		return err
	}
	pattern := prefix + "{" + res.ID() + ":u:u1}:*"
	all, err := scanKeys(ctx, raw, pattern)
	if err != nil {
		return err
	}
	// The pattern also matches the resource×scope epoch key; SCAN+DEL may
	// delete it, but it is not an entry.
	var keys []string
	for _, k := range all {
		if !strings.HasSuffix(k, "}:ep") {
			keys = append(keys, k)
		}
	}
	if len(keys) != n {
		return fmt.Errorf("found %d keys of the scope in Redis, want %d", len(keys), n)
	}
	vals := make([]any, 0, n)
	for i := 0; i < n; i += 1000 {
		v, err := raw.MGet(ctx, keys[i:min(i+1000, n)]...).Result()
		if err != nil {
			return err
		}
		vals = append(vals, v...)
	}

	// agentcache: each Invalidate bumps the scope's epoch (one pipeline)
	// and tells the fleet (one PUBLISH), whatever the scope holds.
	k := e.cfg.size(200, 20)
	var times, trips []float64
	maxTrips := int64(0)
	for i := 0; i < k; i++ {
		acTrips.n.Store(0)
		t0 := time.Now()
		err := ac.Invalidate(uctx, agentcache.TargetUser("u1"))
		d := time.Since(t0)
		if err != nil {
			return err
		}
		t := acTrips.n.Load()
		maxTrips = max(maxTrips, t)
		times = append(times, float64(d.Nanoseconds()))
		trips = append(trips, float64(t))
	}
	// The scope really is gone: an old argument reaches the tool again.
	before := calls.Load()
	if _, err := wrap(uctx, CartArgs{Page: 0}); err != nil {
		return err
	}
	if calls.Load() != before+1 {
		return errors.New("after Invalidate, an entry of the scope was still served")
	}

	// SCAN+DEL of the same keys; they are written back between runs.
	runs := e.cfg.size(3, 1)
	var scanTimes, scanRTs []float64
	for r := 0; r < runs; r++ {
		if r > 0 {
			if err := restore(ctx, raw, keys, vals); err != nil {
				return err
			}
		}
		scanTrips.n.Store(0)
		t0 := time.Now()
		deleted, err := scanDel(ctx, raw, pattern)
		d := time.Since(t0)
		if err != nil {
			return err
		}
		if deleted < int64(n) {
			return fmt.Errorf("SCAN+DEL deleted %d keys, want %d", deleted, n)
		}
		scanTimes = append(scanTimes, float64(d.Nanoseconds()))
		scanRTs = append(scanRTs, float64(scanTrips.n.Load()))
		e.logf("  SCAN+DEL run %d: %v, %d round trips", r+1, d, scanTrips.n.Load())
	}
	note := fmt.Sprintf("median of %d invalidations; %d entries in the scope", k, n)
	e.versus(wl, sysACInv, MetricNsPerOp, median(times), sysScanDel, median(scanTimes), ratioAtMost(0.01, "≥ 100× faster"), note)
	e.versus(wl, sysACInv, MetricCalls, median(trips), sysScanDel, median(scanRTs), nil, "Redis round trips")
	e.absolute(wl, sysACInv, MetricCalls, float64(maxTrips), atMost(2, "≤ 2 round trips"), "most round trips of any one invalidation")
	e.note("%s: eko/gocache's tag invalidation is not measured (module unavailable here); SCAN here walks a database that holds only this scope's keys, its best case", wl)
	return nil
}

// restore writes keys back with their values, pipelined.
func restore(ctx context.Context, c *goredis.Client, keys []string, vals []any) error {
	for i := 0; i < len(keys); i += 1000 {
		_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for j := i; j < min(i+1000, len(keys)); j++ {
				p.Set(ctx, keys[j], vals[j], time.Hour)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// invalidationVisibility: how long after Invalidate returns on instance A
// instance B still serves the old value. B is polled in a tight loop; the
// figure for one invalidation is the start of B's first call that no
// longer returned the old value, minus the moment A's Invalidate returned
// (0 when B had already applied it).
func invalidationVisibility(ctx context.Context, e *env) error {
	const wl = "invalidation_visibility"
	n := e.cfg.size(1000, 100)
	prefix := e.prefix("vis")
	var caches [2]*agentcache.Cache
	var wraps [2]func(context.Context, CartArgs) (int64, error)
	var version atomic.Int64
	res := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Hour}
	for i := range caches {
		rdb := e.client()
		defer rdb.Close()
		st, err := e.store(rdb, prefix)
		if err != nil {
			return err
		}
		if caches[i], err = newCache(agentcache.Options{L2: st, Tuning: agentcache.TuningOptions{InstanceID: fmt.Sprintf("bench-%c", 'A'+i)}}); err != nil {
			return err
		}
		defer closeCache(caches[i])
		wraps[i], err = agentcache.Wrap(caches[i], res, func(context.Context, CartArgs) (int64, error) {
			return version.Load(), nil
		})
		if err != nil {
			return err
		}
	}
	a, b := caches[0], wraps[1]
	uctx := scope.WithUser(ctx, "u1")
	args := CartArgs{Page: 1}
	target := agentcache.TargetResourceScope(res, "u1")

	// Wait until B's subscription is live: invalidate until B notices.
	live := false
	for try := 0; try < 200 && !live; try++ {
		if _, err := b(uctx, args); err != nil {
			return err
		}
		want := version.Add(1)
		if err := a.Invalidate(uctx, target); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
		v, err := b(uctx, args)
		if err != nil {
			return err
		}
		live = v == want
	}
	if !live {
		return errors.New("instance B never applied an invalidation from A")
	}

	// The floor: a plain go-redis subscriber on the same channel, in the
	// same process, timing when A's message reaches it.
	sub := e.client()
	defer sub.Close()
	ps := sub.Subscribe(ctx, prefix+"inv")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return err
	}
	arrivals := make(chan time.Time, 4*n+16)
	go func() {
		for m := range ps.Channel() {
			if strings.Contains(m.Payload, `"f":"bench-A"`) {
				arrivals <- time.Now()
			}
		}
	}()
	for len(arrivals) > 0 {
		<-arrivals
	}
	time.Sleep(20 * time.Millisecond)
	for len(arrivals) > 0 {
		<-arrivals
	}

	lat := make([]time.Duration, 0, n)
	raw := make([]time.Duration, 0, n)
	timeouts := 0
	for i := 0; i < n; i++ {
		// B serves the current version from L1.
		for j := 0; j < 2; j++ {
			if _, err := b(uctx, args); err != nil {
				return err
			}
		}
		want := version.Add(1)
		if err := a.Invalidate(uctx, target); err != nil {
			return err
		}
		t0 := time.Now()
		deadline := t0.Add(2 * time.Second)
		for polls := 0; ; polls++ {
			s := time.Now()
			v, err := b(uctx, args)
			if err != nil {
				return err
			}
			if v == want {
				lat = append(lat, max(0, s.Sub(t0)))
				break
			}
			if s.After(deadline) {
				timeouts++
				lat = append(lat, s.Sub(t0))
				break
			}
			if polls%64 == 63 {
				runtime.Gosched()
			}
		}
		select {
		case at := <-arrivals:
			raw = append(raw, max(0, at.Sub(t0)))
		case <-time.After(2 * time.Second):
			return errors.New("the plain subscriber missed an invalidation message")
		}
	}
	if timeouts > 0 {
		e.note("%s: %d of %d invalidations were not seen by B within 2s", wl, timeouts, n)
	}
	sys := "agentcache, A → B over pub/sub"
	const sysRaw = "go-redis subscriber gets A's message"
	note := fmt.Sprintf("%d invalidations; p90 %.3f ms, max %.3f ms", n, ms(percentile(lat, 0.9)), ms(percentile(lat, 1)))
	e.versus(wl, sys, MetricP50ms, ms(percentile(lat, 0.5)), sysRaw, ms(percentile(raw, 0.5)), nil, "")
	e.versus(wl, sys, MetricP99ms, ms(percentile(lat, 0.99)), sysRaw, ms(percentile(raw, 0.99)), nil, "")
	e.absolute(wl, sys, MetricP99ms, ms(percentile(lat, 0.99)), atMost(5, "≤ 5 ms"), note)
	e.note("%s: the plain subscriber shares the process and the CPUs with B's poll loop; its p90 %.3f ms, max %.3f ms",
		wl, ms(percentile(raw, 0.9)), ms(percentile(raw, 1)))
	return nil
}
