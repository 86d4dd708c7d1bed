package suite

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// heapBytes returns the live heap after two collections.
func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// perItem returns the heap growth per item of fill, which adds n items.
func perItem(n int, fill func() error) (float64, error) {
	h0 := heapBytes()
	if err := fill(); err != nil {
		return 0, err
	}
	h1 := heapBytes()
	return (float64(h1) - float64(h0)) / float64(n), nil
}

// memoryL1Entry: heap bytes per L1 entry, agentcache against bare otter
// configured like its L1. The key strings and the (shared) value exist
// before the measurement, so the figure is each cache's own bookkeeping.
func memoryL1Entry(ctx context.Context, e *env) error {
	const wl = "memory_l1_entry"
	n := e.cfg.size(100_000, 10_000)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = keyName(i)
	}
	p := newProduct(1)

	c, err := newCache(agentcache.Options{L1MaxEntries: n + n/4})
	if err != nil {
		return err
	}
	acBytes, err := perItem(n, func() error {
		for _, k := range keys {
			if err := c.Set(ctx, k, p, time.Hour); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if got := c.Stats().L1Entries; got < n*99/100 {
		e.note("%s: agentcache held %d of %d entries", wl, got, n)
	}
	closeCache(c)

	o, err := newOtter(n + n/4)
	if err != nil {
		return err
	}
	otterBytes, err := perItem(n, func() error {
		for _, k := range keys {
			o.Set(k, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	runtime.KeepAlive(o)
	o.StopAllGoroutines()
	e.versus(wl, "agentcache (Set)", MetricBytes, acBytes, sysOtter, otterBytes, l1Budget,
		fmt.Sprintf("per entry, %d entries, keys and the caller's value excluded on both sides; the entry keeps the value's encoded bytes, its epoch stamp and expiry times", n))

	// Wrap entries: the L1 key, built from the arguments, and the tool's
	// result are the cache's to make, so they are counted, on both sides: a
	// bare otter user caching the same tool builds a key from the arguments
	// and keeps the tool's fresh result.
	for _, w := range []struct {
		sys, base string
		ctx       context.Context
		res       resource.Resource
		prefix    string
	}{
		{"agentcache Wrap, global", "otter (bare), keyed by tool arguments", ctx, memGlobalRes, memGlobalPrefix},
		{"agentcache Wrap, per-user", "otter (bare), keyed by user and arguments", scope.WithUser(ctx, memUser), memUserRes, memUserPrefix},
	} {
		c, fill, err := wrapEntries(w.ctx, n, w.res)
		if err != nil {
			return err
		}
		acBytes, err := perItem(n, fill)
		if got := c.Stats().L1Entries; err == nil && got < n*99/100 {
			e.note("%s: %s held %d of %d entries", wl, w.sys, got, n)
		}
		closeCache(c)
		if err != nil {
			return err
		}
		o, fill, err := otterEntries(n, w.prefix)
		if err != nil {
			return err
		}
		otterBytes, err := perItem(n, fill)
		runtime.KeepAlive(o)
		o.StopAllGoroutines()
		if err != nil {
			return err
		}
		e.versus(wl, w.sys, MetricBytes, acBytes, w.base, otterBytes, l1Budget,
			fmt.Sprintf("per entry, %d entries, key and value included on both sides (one tool result per entry)", n))
	}
	return nil
}

// l1Budget is issue 17's bound on L1 bytes per entry.
var l1Budget = ratioAtMost(1.6, "≤ 1.6× bare otter")

// The tools whose results the Wrap entries of the memory workloads hold, and
// the key prefixes a bare otter user would give them.
var (
	memGlobalRes = resource.Resource{Name: "get_product", Scope: scope.Global, TTL: time.Hour}
	memUserRes   = resource.Resource{Name: "get_profile", Scope: scope.User, TTL: time.Hour}
)

const (
	memUser         = "user-1"
	memGlobalPrefix = "get_product:"
	memUserPrefix   = "get_profile:" + memUser + ":"
)

// wrapEntries returns an L1-only cache with room for n entries, and a fill
// that puts n entries into its L1 through a Wrap of res called with ctx
// (which carries the user of a per-user resource): IDs 0 to n-1, each the
// tool's fresh result.
func wrapEntries(ctx context.Context, n int, res resource.Resource) (*agentcache.Cache, func() error, error) {
	c, err := newCache(agentcache.Options{L1MaxEntries: n + n/4})
	if err != nil {
		return nil, nil, err
	}
	w, err := agentcache.Wrap(c, res, func(_ context.Context, id int) (*Product, error) { return newProduct(id), nil })
	if err != nil {
		closeCache(c)
		return nil, nil, err
	}
	return c, func() error {
		// One filler per P: a million misses take a while.
		workers := runtime.GOMAXPROCS(0)
		errs := make(chan error, workers)
		for k := 0; k < workers; k++ {
			go func() {
				for i := k; i < n; i += workers {
					if _, err := w(ctx, i); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		var first error
		for k := 0; k < workers; k++ {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}, nil
}

// otterEntries returns a bare otter configured like agentcache's L1 with room
// for n entries, and a fill that caches the same tool results as
// wrapEntries the way a bare otter user would: keyed by prefix and the ID.
func otterEntries(n int, prefix string) (*otter.Cache[string, *Product], func() error, error) {
	o, err := newOtter(n + n/4)
	if err != nil {
		return nil, nil, err
	}
	return o, func() error {
		for i := 0; i < n; i++ {
			o.Set(prefix+strconv.Itoa(i), newProduct(i))
		}
		return nil
	}, nil
}

// newOtter returns a bare otter configured like agentcache's L1: a size
// bound and a per-entry expiry (an hour).
func newOtter(size int) (*otter.Cache[string, *Product], error) {
	return otter.New(&otter.Options[string, *Product]{
		MaximumSize: size,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(otter.Entry[string, *Product]) time.Duration {
			return time.Hour
		}),
	})
}

// runtimeMetric reads one float64 or uint64 runtime metric.
func runtimeMetric(name string) float64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	switch s[0].Value.Kind() {
	case metrics.KindFloat64:
		return s[0].Value.Float64()
	case metrics.KindUint64:
		return float64(s[0].Value.Uint64())
	}
	return 0
}

// gcCPU is what one forced collection cost, two ways.
type gcCPU struct {
	process float64 // the process's CPU time (getrusage), seconds
	runtime float64 // the runtime's estimate, /cpu/classes/gc/total, seconds
}

// forcedGC runs one collection and returns its cost.
func forcedGC() gcCPU {
	p0, _ := processCPU()
	r0 := runtimeMetric("/cpu/classes/gc/total:cpu-seconds")
	runtime.GC()
	p1, _ := processCPU()
	return gcCPU{process: p1 - p0, runtime: runtimeMetric("/cpu/classes/gc/total:cpu-seconds") - r0}
}

// residentCache is what memory_1m measured of one cache.
type residentCache struct {
	heap    float64   // live heap the fill added, bytes
	objects float64   // live heap objects the fill added
	scan    float64   // scannable heap the fill added, bytes
	gc      []float64 // process CPU of each forced collection, seconds
	gcRT    []float64 // the runtime's estimate of each, seconds
}

// measure fills a cache, built by build and closed by the returned
// function, and runs cycles forced collections with it resident, on one P.
func (r *residentCache) measure(cycles int, build func() (fill func() error, release func(), err error)) error {
	h0 := heapBytes()
	o0, s0 := runtimeMetric("/gc/heap/objects:objects"), runtimeMetric("/gc/scan/heap:bytes")
	fill, release, err := build()
	if err != nil {
		return err
	}
	defer release()
	if err := fill(); err != nil {
		return err
	}
	h1 := heapBytes()
	r.heap = float64(h1) - float64(h0)
	r.objects = runtimeMetric("/gc/heap/objects:objects") - o0
	r.scan = runtimeMetric("/gc/scan/heap:bytes") - s0
	// The fill's garbage is swept and its pages returned to the OS first,
	// so that no collection measured shares the CPU with the scavenger.
	debug.FreeOSMemory()
	procs := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(procs)
	forcedGC()
	for i := 0; i < cycles; i++ {
		c := forcedGC()
		r.gc, r.gcRT = append(r.gc, c.process), append(r.gcRT, c.runtime)
	}
	return nil
}

// gcMs is the figure: the least collection's CPU, in ms.
func (r *residentCache) gcMs() float64 {
	if _, ok := processCPU(); !ok {
		return 1e3 * slices.Min(r.gcRT)
	}
	return 1e3 * slices.Min(r.gc)
}

// memory1M: 1M entries resident, agentcache's L1 (filled through a global
// Wrap) against bare otter holding the same tool results under argument
// keys. Two figures each:
//
//   - heap: the live heap the fill adds, after two collections;
//   - GC CPU: forced collections (runtime.GC) with the cache resident and
//     nothing else running, each a full mark of the live heap, run on one P
//     (GOMAXPROCS 1 for the while) so that the CPU is the marking itself,
//     not workers spinning or waiting on each other. The figure is the
//     process's CPU time (getrusage) across one collection, the least of
//     every collection of the system. With no mutator every collection does
//     the same work, so it depends on what the cache makes the collector
//     scan (the note gives the live objects and scannable bytes), not on
//     when collections trigger. Process CPU rather than the runtime's own
//     GC CPU estimate (/cpu/classes/gc/total:cpu-seconds, in the note),
//     which is the wall time of the GC workers and grows whenever another
//     process takes their core; the least, because what a loaded machine
//     adds (cache and memory-bandwidth contention) only ever adds. The
//     systems take turns, each filled anew every round (A B A B), so a
//     stretch of contention does not fall on one of them alone.
func memory1M(ctx context.Context, e *env) error {
	const wl = "memory_1m"
	n := e.cfg.size(1_000_000, 50_000)
	rounds, cycles := e.cfg.size(2, 1), e.cfg.size(5, 2)
	var ac, ot residentCache
	for r := 0; r < rounds; r++ {
		err := ac.measure(cycles, func() (func() error, func(), error) {
			c, fill, err := wrapEntries(ctx, n, memGlobalRes)
			if err != nil {
				return nil, nil, err
			}
			return fill, func() {
				if got := c.Stats().L1Entries; r == 0 && got < n*99/100 {
					e.note("%s: agentcache held %d of %d entries", wl, got, n)
				}
				closeCache(c)
			}, nil
		})
		if err != nil {
			return err
		}
		err = ot.measure(cycles, func() (func() error, func(), error) {
			o, fill, err := otterEntries(n, memGlobalPrefix)
			if err != nil {
				return nil, nil, err
			}
			return fill, func() { o.StopAllGoroutines() }, nil
		})
		if err != nil {
			return err
		}
	}
	const sys, base = "agentcache Wrap, global", "otter (bare), keyed by tool arguments"
	e.versus(wl, sys, MetricBytes, ac.heap, base, ot.heap, ratioAtMost(1.4, "≤ 1.4× otter's heap"),
		fmt.Sprintf("live heap added by %d entries (keys and values included), after GC; live objects %.0f against %.0f, scannable heap %.1f MB against %.1f MB",
			n, ac.objects, ot.objects, ac.scan/1e6, ot.scan/1e6))
	e.versus(wl, sys, MetricGCCPUms, ac.gcMs(), base, ot.gcMs(), ratioAtMost(1.5, "≤ 1.5× otter's GC CPU"),
		fmt.Sprintf("process CPU of one forced collection on one P, the least of %d (%d rounds, the systems in turn), with the %d entries resident and no other work; the runtime's estimate (/cpu/classes/gc/total), the least: %.1f ms against %.1f ms",
			rounds*cycles, rounds, n, 1e3*slices.Min(ac.gcRT), 1e3*slices.Min(ot.gcRT)))
	return nil
}

// memoryNegativeKey: heap bytes per remembered "not found" key, in the
// bloom filters, against keeping it as an ordinary L1 entry.
func memoryNegativeKey(ctx context.Context, e *env) error {
	const wl = "memory_negative_key"
	n := e.cfg.size(100_000, 10_000)
	res := resource.Resource{Name: "get_order", Scope: scope.Global, TTL: time.Hour, NegativeTTL: time.Hour}

	c, err := newCache(agentcache.Options{Negative: agentcache.NegativeOptions{ExpectedKeys: n}})
	if err != nil {
		return err
	}
	neg, err := agentcache.Wrap(c, res, func(context.Context, int) (*Product, error) {
		return nil, agentcache.ErrNotFound
	})
	if err != nil {
		return err
	}
	bloomBytes, err := perItem(n, func() error {
		for i := 0; i < n; i++ {
			if _, err := neg(ctx, i); !errors.Is(err, agentcache.ErrNotFound) {
				return fmt.Errorf("negative lookup %d: %v", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s := c.Stats(); s.NegativeStored+s.NegativeHits != uint64(n) {
		// A key the filter already (falsely) holds is answered, not stored.
		e.note("%s: %d negatives stored and %d answered, want %d in all", wl, s.NegativeStored, s.NegativeHits, n)
	}
	closeCache(c)

	// The same keys as ordinary L1 entries holding one shared marker value.
	c, err = newCache(agentcache.Options{L1MaxEntries: n + n/4})
	if err != nil {
		return err
	}
	marker := &Product{}
	pos, err := agentcache.Wrap(c, res, func(context.Context, int) (*Product, error) { return marker, nil })
	if err != nil {
		return err
	}
	entryBytes, err := perItem(n, func() error {
		for i := 0; i < n; i++ {
			if _, err := pos(ctx, i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	closeCache(c)
	e.versus(wl, "agentcache bloom filter", MetricBytes, bloomBytes, "as an ordinary L1 entry", entryBytes, nil,
		fmt.Sprintf("per key, %d keys = Options.Negative.ExpectedKeys, default false-positive rate %.0f%%, two generations", n, 100*defaultFPRate))
	e.absolute(wl, "agentcache bloom filter", MetricBytes, bloomBytes, atMost(4, "≤ 4 bytes"), "")
	return nil
}

// negativeFPRate: how often a key that exists is answered "not found" by
// the bloom filters, with no L2 (the filter is trusted) and with a healthy
// L2 (every "maybe" is confirmed).
func negativeFPRate(ctx context.Context, e *env) error {
	const wl = "negative_fp_rate"
	n := e.cfg.size(100_000, 10_000)
	q := e.cfg.size(100_000, 10_000)
	res := resource.Resource{Name: "get_order", Scope: scope.Global, TTL: time.Hour, NegativeTTL: time.Hour}
	// IDs below negLimit do not exist.
	const negLimit = 1 << 30
	tool := func(_ context.Context, id int) (*Product, error) {
		if id < negLimit {
			return nil, agentcache.ErrNotFound
		}
		return newProduct(id), nil
	}
	wrongRate := func(w func(context.Context, int) (*Product, error), from, count, workers int) (float64, error) {
		var wrong atomic.Int64
		var wg sync.WaitGroup
		var first atomic.Pointer[error]
		for k := 0; k < workers; k++ {
			wg.Add(1)
			go func(k int) {
				defer wg.Done()
				for i := k; i < count; i += workers {
					_, err := w(ctx, negLimit+from+i)
					switch {
					case errors.Is(err, agentcache.ErrNotFound):
						wrong.Add(1)
					case err != nil:
						first.CompareAndSwap(nil, &err)
						return
					}
				}
			}(k)
		}
		wg.Wait()
		if p := first.Load(); p != nil {
			return 0, *p
		}
		return float64(wrong.Load()) / float64(count), nil
	}
	addNegatives := func(w func(context.Context, int) (*Product, error), from, count, workers int) error {
		var wg sync.WaitGroup
		var first atomic.Pointer[error]
		for k := 0; k < workers; k++ {
			wg.Add(1)
			go func(k int) {
				defer wg.Done()
				for i := k; i < count; i += workers {
					if _, err := w(ctx, from+i); !errors.Is(err, agentcache.ErrNotFound) {
						err = fmt.Errorf("negative %d: %v", from+i, err)
						first.CompareAndSwap(nil, &err)
						return
					}
				}
			}(k)
		}
		wg.Wait()
		if p := first.Load(); p != nil {
			return *p
		}
		return nil
	}

	// L2 absent: the filter is trusted.
	c, err := newCache(agentcache.Options{Negative: agentcache.NegativeOptions{ExpectedKeys: n}})
	if err != nil {
		return err
	}
	defer closeCache(c)
	w, err := agentcache.Wrap(c, res, tool)
	if err != nil {
		return err
	}
	if err := addNegatives(w, 0, n, 2); err != nil {
		return err
	}
	one, err := wrongRate(w, 0, q, 2)
	if err != nil {
		return err
	}
	// n more negatives rotate the filters: both generations are now full,
	// the steady state of a resource that sees ExpectedKeys negatives per
	// half negative TTL.
	if err := addNegatives(w, n, n, 2); err != nil {
		return err
	}
	two, err := wrongRate(w, q, q, 2)
	if err != nil {
		return err
	}
	conf := defaultFPRate
	const sysConf = "configured false-positive rate"
	e.versus(wl, "agentcache, no L2, 1 generation full", MetricFPRate, one, sysConf, conf, nil,
		fmt.Sprintf("%d negatives = ExpectedKeys, %d lookups of keys that exist", n, q))
	e.versus(wl, "agentcache, no L2, 2 generations full", MetricFPRate, two, sysConf, conf, nil,
		"both generations are tested, so the rate compounds: 1-(1-p)² ≈ 2p")

	// Healthy L2: a "maybe" is confirmed against the L2 marker. A small
	// filter makes the "maybes" frequent, so the check means something.
	small := e.cfg.size(2000, 500)
	queries := e.cfg.size(20_000, 2000)
	rdb := e.client()
	defer rdb.Close()
	st, err := e.store(rdb, e.prefix("fp"))
	if err != nil {
		return err
	}
	c2, err := newCache(agentcache.Options{L2: st, Negative: agentcache.NegativeOptions{ExpectedKeys: small}, Tuning: agentcache.TuningOptions{WriteQueueSize: 1 << 16}})
	if err != nil {
		return err
	}
	defer closeCache(c2)
	w2, err := agentcache.Wrap(c2, res, tool, agentcache.NoFleetLock())
	if err != nil {
		return err
	}
	if err := addNegatives(w2, 0, small, 8); err != nil {
		return err
	}
	if err := drain(c2, uint64(small)); err != nil {
		return err
	}
	healthy, err := wrongRate(w2, 0, queries, 8)
	if err != nil {
		return err
	}
	e.versus(wl, "agentcache, healthy L2", MetricFPRate, healthy, sysConf, conf, atMost(0, "never a wrong \"not found\""),
		fmt.Sprintf("filter sized for %d keys and holding %d; %d lookups of keys that exist", small, small, queries))
	return nil
}

// hallucinatedIDs: an agent that invents IDs and retries 20% of its guesses;
// tool calls with and without the negative cache.
func hallucinatedIDs(ctx context.Context, e *env) error {
	const wl = "hallucinated_ids"
	guesses := e.cfg.size(5000, 500)
	r := rand.New(rand.NewSource(42))
	ids := make([]int, 0, guesses)
	for i := 0; i < guesses; i++ {
		switch {
		case i > 0 && r.Float64() < 0.2:
			ids = append(ids, ids[r.Intn(len(ids))]) // a retry
		case r.Float64() < 0.3:
			ids = append(ids, r.Intn(1000)) // a real order
		default:
			ids = append(ids, 1_000_000+r.Intn(1_000_000_000)) // an invented one
		}
	}
	run := func(negTTL time.Duration) (int64, error) {
		rdb := e.client()
		defer rdb.Close()
		st, err := e.store(rdb, e.prefix("halluc"))
		if err != nil {
			return 0, err
		}
		c, err := newCache(agentcache.Options{L2: st})
		if err != nil {
			return 0, err
		}
		defer closeCache(c)
		var calls atomic.Int64
		res := resource.Resource{Name: "get_order", Scope: scope.User, TTL: 5 * time.Minute, NegativeTTL: negTTL}
		w, err := agentcache.Wrap(c, res, func(_ context.Context, id int) (*Product, error) {
			calls.Add(1)
			if id < 1000 {
				return newProduct(id), nil
			}
			return nil, agentcache.ErrNotFound
		})
		if err != nil {
			return 0, err
		}
		uctx := scope.WithUser(ctx, "agent-7")
		for _, id := range ids {
			if _, err := w(uctx, id); err != nil && !errors.Is(err, agentcache.ErrNotFound) {
				return 0, err
			}
		}
		return calls.Load(), nil
	}
	with, err := run(0)
	if err != nil {
		return err
	}
	without, err := run(-1)
	if err != nil {
		return err
	}
	distinct := map[int]bool{}
	for _, id := range ids {
		distinct[id] = true
	}
	e.versus(wl, "agentcache, negative cache", MetricCalls, float64(with), "agentcache, negative cache off", float64(without), nil,
		fmt.Sprintf("%d guesses, %d distinct IDs", guesses, len(distinct)))
	return nil
}
