package suite

import (
	"context"
	"fmt"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// MetricRoundTrips is Redis round trips per operation, counted by a go-redis
// hook on each instance's client (one per ProcessHook or
// ProcessPipelineHook call). Its baseline is the physical minimum.
const MetricRoundTrips = "round_trips"

// sysMinimum is the baseline of round-trip rows: the fewest round trips the
// operation can take (issue 15's table).
const sysMinimum = "physical minimum"

// rtCase is one operation whose round trips are counted: prepare sets up
// the instances (not counted), op is the operation, min its minimum in all
// (on the caller's path and in the background together).
type rtCase struct {
	name string
	min  float64
	run  func(ctx context.Context, f *rtFleet) (caller, total int64, err error)
}

// rtFleet is two instances on one prefix, each on its own hooked client.
type rtFleet struct {
	e     *env
	rts   [2]*roundTrips
	cs    [2]*agentcache.Cache
	close func()
}

func newRTFleet(e *env) (*rtFleet, error) {
	f := &rtFleet{e: e}
	prefix := e.prefix("rt")
	var closers []func()
	f.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	for i := range f.cs {
		f.rts[i] = &roundTrips{}
		rdb := e.client(f.rts[i])
		closers = append(closers, func() { _ = rdb.Close() })
		st, err := e.store(rdb, prefix)
		if err != nil {
			f.close()
			return nil, err
		}
		c, err := newCache(agentcache.Options{L2: st})
		if err != nil {
			f.close()
			return nil, err
		}
		closers = append(closers, func() { closeCache(c) })
		f.cs[i] = c
	}
	return f, nil
}

// count runs op on instance i and returns the round trips of instance i's
// client until op returned (the caller's path) and until its write queue
// drained and a short settle passed (in all).
func (f *rtFleet) count(i int, op func() error) (caller, total int64, err error) {
	rt := f.rts[i]
	before := rt.n.Load()
	if err := op(); err != nil {
		return 0, 0, err
	}
	caller = rt.n.Load() - before
	if err := settled(f.cs[i]); err != nil {
		return 0, 0, err
	}
	time.Sleep(50 * time.Millisecond) // a release or announcement after the write
	return caller, rt.n.Load() - before, nil
}

var (
	rtGlobal = resource.Resource{Name: "rt_search", Scope: scope.Global, TTL: time.Hour}
	rtUser   = resource.Resource{Name: "rt_cart", Scope: scope.User, TTL: time.Hour}
)

func rtTool(_ context.Context, q string) (string, error) { return "answer to " + q, nil }

// rtWarm makes instance i know the global, resource and (for user) scope
// epochs, as a running instance does.
func rtWarm(ctx context.Context, f *rtFleet, i int, user string) error {
	g, err := agentcache.Wrap(f.cs[i], rtGlobal, rtTool)
	if err != nil {
		return err
	}
	u, err := agentcache.Wrap(f.cs[i], rtUser, rtTool)
	if err != nil {
		return err
	}
	if _, err := g(ctx, "warm-up"); err != nil {
		return err
	}
	if _, err := u(scope.WithUser(ctx, user), "warm-up"); err != nil {
		return err
	}
	return settled(f.cs[i])
}

// settled waits until every write c queued has been made (landed, refused
// or lost).
func settled(c *agentcache.Cache) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.Stats()
		if s.WriteQueueDepth == 0 && s.WritesDone+s.WritesFenced+s.WritesFailed+s.WritesSkipped+s.WritesDropped >= s.WritesQueued {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("writes not settled: %+v", s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func rtCases() []rtCase {
	wrapOn := func(f *rtFleet, i int, r resource.Resource) (func(context.Context, string) (string, error), error) {
		return agentcache.Wrap(f.cs[i], r, rtTool)
	}
	return []rtCase{
		{"cold miss, global tool", 2, func(ctx context.Context, f *rtFleet) (int64, int64, error) {
			if err := rtWarm(ctx, f, 0, "warm-user"); err != nil {
				return 0, 0, err
			}
			g, err := wrapOn(f, 0, rtGlobal)
			if err != nil {
				return 0, 0, err
			}
			return f.count(0, func() error { _, err := g(ctx, "cold"); return err })
		}},
		{"cold miss, global tool, fresh instance", 2, func(ctx context.Context, f *rtFleet) (int64, int64, error) {
			g, err := wrapOn(f, 0, rtGlobal)
			if err != nil {
				return 0, 0, err
			}
			return f.count(0, func() error { _, err := g(ctx, "cold"); return err })
		}},
		{"cold miss, per-user tool, user never seen here", 2, func(ctx context.Context, f *rtFleet) (int64, int64, error) {
			if err := rtWarm(ctx, f, 0, "warm-user"); err != nil {
				return 0, 0, err
			}
			u, err := wrapOn(f, 0, rtUser)
			if err != nil {
				return 0, 0, err
			}
			return f.count(0, func() error { _, err := u(scope.WithUser(ctx, "new-user"), "cold"); return err })
		}},
		{"L2 hit, user never seen on this instance", 1, func(ctx context.Context, f *rtFleet) (int64, int64, error) {
			for i := range f.cs {
				if err := rtWarm(ctx, f, i, "warm-user"); err != nil {
					return 0, 0, err
				}
			}
			a, err := wrapOn(f, 0, rtUser)
			if err != nil {
				return 0, 0, err
			}
			b, err := wrapOn(f, 1, rtUser)
			if err != nil {
				return 0, 0, err
			}
			uctx := scope.WithUser(ctx, "bob")
			if _, err := a(uctx, "q"); err != nil {
				return 0, 0, err
			}
			if err := settled(f.cs[0]); err != nil {
				return 0, 0, err
			}
			return f.count(1, func() error {
				v, err := b(uctx, "q")
				if err == nil && f.cs[1].Stats().L2Hits == 0 {
					err = fmt.Errorf("the lookup was not an L2 hit (%q)", v)
				}
				return err
			})
		}},
		{"L1 hit", 0, func(ctx context.Context, f *rtFleet) (int64, int64, error) {
			if err := rtWarm(ctx, f, 0, "warm-user"); err != nil {
				return 0, 0, err
			}
			g, err := wrapOn(f, 0, rtGlobal)
			if err != nil {
				return 0, 0, err
			}
			return f.count(0, func() error { _, err := g(ctx, "warm-up"); return err })
		}},
		{"Invalidate(TargetUser)", 1, func(ctx context.Context, f *rtFleet) (int64, int64, error) {
			if err := rtWarm(ctx, f, 0, "alice"); err != nil {
				return 0, 0, err
			}
			return f.count(0, func() error { return f.cs[0].Invalidate(ctx, agentcache.TargetUser("alice")) })
		}},
		{"WrapMutation touching a per-user and a global resource", 1, func(ctx context.Context, f *rtFleet) (int64, int64, error) {
			if err := rtWarm(ctx, f, 0, "alice"); err != nil {
				return 0, 0, err
			}
			m, err := agentcache.WrapMutation(f.cs[0], func(context.Context, string) (bool, error) { return true, nil }, rtUser, rtGlobal)
			if err != nil {
				return 0, 0, err
			}
			return f.count(0, func() error { _, err := m(scope.WithUser(ctx, "alice"), "item"); return err })
		}},
	}
}

// roundTripsPerOp counts the Redis round trips of single operations on
// fresh two-instance fleets, against the physical minimum (issue 15): in
// all, and on the caller's path (in the note).
func roundTripsPerOp(ctx context.Context, e *env) error {
	const wl = "round_trips"
	for _, rc := range rtCases() {
		f, err := newRTFleet(e)
		if err != nil {
			return err
		}
		// Let the subscriptions come up: their commands are not the operation's.
		time.Sleep(100 * time.Millisecond)
		caller, total, err := rc.run(ctx, f)
		f.close()
		if err != nil {
			return fmt.Errorf("%s: %w", rc.name, err)
		}
		e.logf("  %s: %d round trips (%d on the caller's path), minimum %v", rc.name, total, caller, rc.min)
		e.versus(wl, "agentcache: "+rc.name, MetricRoundTrips, float64(total), sysMinimum+": "+rc.name, rc.min, nil,
			fmt.Sprintf("%d on the caller's path", caller))
	}
	return nil
}
