package suite

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"runtime/metrics"
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
		for i := 0; i < n; i++ {
			if _, err := w(ctx, i); err != nil {
				return err
			}
		}
		return nil
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

// gcCPUSeconds returns the CPU time the runtime estimates GC has used so far.
func gcCPUSeconds() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return s[0].Value.Float64()
}

// memory1M: 1M entries resident, agentcache's L1 (filled through a global
// Wrap) against bare otter holding the same tool results under argument
// keys. Two figures each:
//
//   - heap: the live heap the fill adds, after two collections;
//   - GC CPU: a fixed number of forced collections (runtime.GC) with the
//     cache resident and nothing else running, each a full mark of the live
//     heap; the figure is the runtime's own GC CPU estimate
//     (/cpu/classes/gc/total:cpu-seconds) over them, per collection. With no
//     mutator, every collection does the same work, so the figure depends on
//     what the cache makes the collector scan (objects and pointers), not on
//     when collections happen to trigger.
func memory1M(ctx context.Context, e *env) error {
	const wl = "memory_1m"
	n := e.cfg.size(1_000_000, 50_000)
	cycles := e.cfg.size(10, 3)
	// resident fills a cache and measures it; keep is the cache, alive until
	// the collections are done.
	resident := func(fill func() error, keep any) (heap, gcMs float64, err error) {
		h0 := heapBytes()
		if err := fill(); err != nil {
			return 0, 0, err
		}
		h1 := heapBytes()
		g0 := gcCPUSeconds()
		for i := 0; i < cycles; i++ {
			runtime.GC()
		}
		g1 := gcCPUSeconds()
		runtime.KeepAlive(keep)
		return float64(h1) - float64(h0), (g1 - g0) * 1e3 / float64(cycles), nil
	}
	c, fill, err := wrapEntries(ctx, n, memGlobalRes)
	if err != nil {
		return err
	}
	acHeap, acGC, err := resident(fill, c)
	if got := c.Stats().L1Entries; err == nil && got < n*99/100 {
		e.note("%s: agentcache held %d of %d entries", wl, got, n)
	}
	closeCache(c)
	if err != nil {
		return err
	}
	o, fill, err := otterEntries(n, memGlobalPrefix)
	if err != nil {
		return err
	}
	oHeap, oGC, err := resident(fill, o)
	o.StopAllGoroutines()
	if err != nil {
		return err
	}
	const sys, base = "agentcache Wrap, global", "otter (bare), keyed by tool arguments"
	e.versus(wl, sys, MetricBytes, acHeap, base, oHeap, ratioAtMost(1.4, "≤ 1.4× otter's heap"),
		fmt.Sprintf("live heap added by %d entries (keys and values included), after GC", n))
	e.versus(wl, sys, MetricGCCPUms, acGC, base, oGC, ratioAtMost(1.5, "≤ 1.5× otter's GC CPU"),
		fmt.Sprintf("GC CPU per forced collection, mean of %d, with the %d entries resident and no other work", cycles, n))
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
		fmt.Sprintf("per key, %d keys = Options.Negative.ExpectedKeys, default false-positive rate %.0f%%, two generations", n, 100*agentcache.DefaultFalsePositiveRate))
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
	conf := agentcache.DefaultFalsePositiveRate
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
	c2, err := newCache(agentcache.Options{L2: st, Negative: agentcache.NegativeOptions{ExpectedKeys: small}, WriteQueueSize: 1 << 16})
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
