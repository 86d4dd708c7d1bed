package suite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	gocache "github.com/go-redis/cache/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// The stampede: a slow tool (a paid API, an LLM) and one cold key that
// every caller of every instance wants at once.
const (
	stampedeInstances = 8
	stampedeCallers   = 50
	toolTime          = 20 * time.Millisecond
)

const (
	sysFleet   = "agentcache, fleet lock"
	sysNoFleet = "agentcache, no fleet lock"
	sysOnce    = "go-redis/cache Once"
)

// SearchArgs is the argument of the stampede's tool.
type SearchArgs struct {
	Query string `json:"q"`
}

// herd starts every call of calls at once and returns their latencies.
func herd(calls []func() error) ([]time.Duration, error) {
	start := make(chan struct{})
	lat := make([]time.Duration, len(calls))
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t := time.Now()
			errs[i] = call()
			lat[i] = time.Since(t)
		}()
	}
	time.Sleep(5 * time.Millisecond) // let every goroutine reach the gate
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return lat, err
		}
	}
	return lat, nil
}

// herdResult is what the rounds of a stampede measured.
type herdResult struct {
	calls []float64       // tool calls per measured round
	trips []float64       // Redis round trips per measured round
	lat   []time.Duration // every caller of every measured round
	first float64         // tool calls of round 0, right after start
}

// herdRounds runs round 0 at once, while the instances' invalidation
// subscriptions come up (reported on its own: a fleet that has just
// deployed), then the measured rounds once the fleet has settled. Each
// round is one cold key that every caller of every instance wants at once.
func herdRounds(rounds int, calls *atomic.Int64, rt *roundTrips, callersFor func(round int) []func() error) (herdResult, error) {
	var res herdResult
	for r := 0; r <= rounds; r++ {
		if r == 1 {
			time.Sleep(200 * time.Millisecond)
		}
		fns := callersFor(r)
		c0, t0 := calls.Load(), rt.n.Load()
		l, err := herd(fns)
		if err != nil {
			return res, err
		}
		if r == 0 {
			res.first = float64(calls.Load() - c0)
			continue
		}
		res.calls = append(res.calls, float64(calls.Load()-c0))
		res.trips = append(res.trips, float64(rt.n.Load()-t0))
		res.lat = append(res.lat, l...)
	}
	return res, nil
}

// stampedeAgentcache runs the stampede on 8 agentcache instances sharing one
// Redis, with or without the fleet lock.
func stampedeAgentcache(ctx context.Context, e *env, fleet bool, rounds int) (herdResult, error) {
	prefix := e.prefix("stampede")
	var calls atomic.Int64
	var rt roundTrips
	res := resource.Resource{Name: "search_docs", Scope: scope.Global, TTL: time.Hour}
	var wraps []func(context.Context, SearchArgs) (*Product, error)
	var lockOpts []agentcache.ToolOption
	if !fleet {
		lockOpts = append(lockOpts, agentcache.NoFleetLock())
	}
	for i := 0; i < stampedeInstances; i++ {
		rdb := e.client(&rt)
		defer rdb.Close()
		st, err := e.store(rdb, prefix)
		if err != nil {
			return herdResult{}, err
		}
		c, err := newCache(agentcache.Options{L2: st})
		if err != nil {
			return herdResult{}, err
		}
		defer closeCache(c)
		w, err := agentcache.Wrap(c, res, func(context.Context, SearchArgs) (*Product, error) {
			calls.Add(1)
			time.Sleep(toolTime)
			return newProduct(7), nil
		}, lockOpts...)
		if err != nil {
			return herdResult{}, err
		}
		wraps = append(wraps, w)
	}
	return herdRounds(rounds, &calls, &rt, func(r int) []func() error {
		args := SearchArgs{Query: fmt.Sprintf("cold query %d", r)}
		var fns []func() error
		for _, w := range wraps {
			for j := 0; j < stampedeCallers; j++ {
				fns = append(fns, func() error { _, err := w(ctx, args); return err })
			}
		}
		return fns
	})
}

// stampedeOnce runs the same stampede on 8 go-redis/cache instances with
// Once (local singleflight, Redis shared, no cross-instance lock).
func stampedeOnce(ctx context.Context, e *env, rounds int) (herdResult, error) {
	var calls atomic.Int64
	var rt roundTrips
	var caches []*gocache.Cache
	for i := 0; i < stampedeInstances; i++ {
		rdb := e.client(&rt)
		defer rdb.Close()
		caches = append(caches, gocache.New(&gocache.Options{Redis: rdb, LocalCache: gocache.NewTinyLFU(1000, time.Hour)}))
	}
	return herdRounds(rounds, &calls, &rt, func(r int) []func() error {
		key := fmt.Sprintf("once:cold query %d", r)
		var fns []func() error
		for _, c := range caches {
			for j := 0; j < stampedeCallers; j++ {
				fns = append(fns, func() error {
					var p Product
					return c.Once(&gocache.Item{Ctx: ctx, Key: key, Value: &p, TTL: time.Hour,
						Do: func(*gocache.Item) (any, error) {
							calls.Add(1)
							time.Sleep(toolTime)
							return newProduct(7), nil
						}})
				})
			}
		}
		return fns
	})
}

// stampede: tool calls, Redis round trips and caller latency for 8
// instances × 50 callers of one cold key.
func stampede(ctx context.Context, e *env) error {
	const wl = "stampede_8x50"
	rounds := e.cfg.size(5, 2)
	f, err := stampedeAgentcache(ctx, e, true, rounds)
	if err != nil {
		return fmt.Errorf("%s: %w", sysFleet, err)
	}
	n, err := stampedeAgentcache(ctx, e, false, rounds)
	if err != nil {
		return fmt.Errorf("%s: %w", sysNoFleet, err)
	}
	o, err := stampedeOnce(ctx, e, rounds)
	if err != nil {
		return fmt.Errorf("%s: %w", sysOnce, err)
	}
	note := fmt.Sprintf("tool calls per cold key, median of %d rounds; the tool takes %v", rounds, toolTime)
	e.versus(wl, sysFleet, MetricCalls, median(f.calls), sysOnce, median(o.calls), atMost(1, "1 tool call"), note)
	e.versus(wl, sysFleet, MetricCalls, median(f.calls), sysNoFleet, median(n.calls), nil, "")
	e.versus(wl, sysNoFleet, MetricCalls, median(n.calls), sysOnce, median(o.calls), nil, "")
	e.figure(wl, sysFleet+", right after New", MetricCalls, f.first,
		"first cold key of a fleet that has just started, while its subscriptions come up")
	const rts = " (Redis round trips)"
	e.versus(wl, sysFleet+rts, MetricCalls, median(f.trips), sysOnce+rts, median(o.trips), nil, "per cold key, all instances; connection handshakes and script loads excluded")
	e.versus(wl, sysNoFleet+rts, MetricCalls, median(n.trips), sysOnce+rts, median(o.trips), nil, "")
	e.versus(wl, sysFleet, MetricP50ms, ms(percentile(f.lat, 0.5)), sysOnce, ms(percentile(o.lat, 0.5)), nil, "caller latency")
	e.versus(wl, sysFleet, MetricP99ms, ms(percentile(f.lat, 0.99)), sysOnce, ms(percentile(o.lat, 0.99)), nil, "")
	e.versus(wl, sysNoFleet, MetricP50ms, ms(percentile(n.lat, 0.5)), sysOnce, ms(percentile(o.lat, 0.5)), nil, "")
	e.versus(wl, sysNoFleet, MetricP99ms, ms(percentile(n.lat, 0.99)), sysOnce, ms(percentile(o.lat, 0.99)), nil, "")
	return nil
}

// fakeClock is an injectable clock that only moves when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// staleWhileRevalidate: what callers wait for when an entry expires, with a
// stale window (served at once, refreshed in the background) and without
// (a synchronous reload). The cache's clock is injected and jumps past the
// TTL; the tool's 20ms is real.
func staleWhileRevalidate(ctx context.Context, e *env) error {
	const wl = "stale_while_revalidate"
	rounds := e.cfg.size(20, 4)
	const callers = 16
	run := func(stale time.Duration) ([]time.Duration, error) {
		clk := newFakeClock()
		rdb := e.client()
		defer rdb.Close()
		st, err := e.store(rdb, e.prefix("swr"))
		if err != nil {
			return nil, err
		}
		c, err := newCache(agentcache.Options{L2: st, Now: clk.Now})
		if err != nil {
			return nil, err
		}
		defer closeCache(c)
		// calls counts finished tool runs.
		var calls atomic.Int64
		res := resource.Resource{Name: "get_quote", Scope: scope.Global, TTL: time.Minute, StaleWindow: stale}
		w, err := agentcache.Wrap(c, res, func(context.Context, SearchArgs) (*Product, error) {
			time.Sleep(toolTime)
			return newProduct(int(calls.Add(1))), nil
		})
		if err != nil {
			return nil, err
		}
		args := SearchArgs{Query: "ACME"}
		if _, err := w(ctx, args); err != nil {
			return nil, err
		}
		var lat []time.Duration
		for r := 0; r < rounds; r++ {
			clk.Advance(time.Minute + time.Second)
			want := calls.Load() + 1
			fns := make([]func() error, callers)
			for i := range fns {
				fns[i] = func() error { _, err := w(ctx, args); return err }
			}
			l, err := herd(fns)
			if err != nil {
				return nil, err
			}
			lat = append(lat, l...)
			// Let the refresh (or reload) finish before the next round.
			deadline := time.Now().Add(2 * time.Second)
			for calls.Load() < want && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if calls.Load() < want {
				return nil, fmt.Errorf("round %d: the tool did not run after expiry", r)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := calls.Load(); got != int64(rounds+1) {
			e.note("%s: stale window %v: the tool ran %d times for %d expiries", wl, stale, got-1, rounds)
		}
		return lat, nil
	}
	swr, err := run(time.Hour)
	if err != nil {
		return err
	}
	reload, err := run(0)
	if err != nil {
		return err
	}
	const sysSWR, sysSync = "agentcache, stale window", "agentcache, synchronous reload"
	note := fmt.Sprintf("%d callers × %d expiries; the tool takes %v", callers, rounds, toolTime)
	e.versus(wl, sysSWR, MetricP50ms, ms(percentile(swr, 0.5)), sysSync, ms(percentile(reload, 0.5)), nil, note)
	e.versus(wl, sysSWR, MetricP99ms, ms(percentile(swr, 0.99)), sysSync, ms(percentile(reload, 0.99)), nil, "")
	return nil
}
