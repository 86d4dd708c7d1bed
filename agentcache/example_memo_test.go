package agentcache_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// An in-process memo keeps at most MaxEntries results and evicts the least
// recently used one first.
func ExampleMemoize() {
	forecast, _ := agentcache.Memoize(func(ctx context.Context, city string) (string, error) {
		fmt.Println("computing", city)
		return "12°C in " + city, nil
	}, agentcache.MemoOptions[string]{MaxEntries: 2})

	ctx := context.Background()
	forecast.Call(ctx, "Oslo")
	forecast.Call(ctx, "Paris")
	forecast.Call(ctx, "Oslo")  // a hit: Paris is now the least recently used
	forecast.Call(ctx, "Rome")  // evicts Paris
	forecast.Call(ctx, "Oslo")  // still held
	forecast.Call(ctx, "Paris") // computed again; evicts Rome
	s := forecast.Stats()
	fmt.Println("hits:", s.Hits, "misses:", s.Misses, "evictions:", s.Evictions)
	// Output:
	// computing Oslo
	// computing Paris
	// computing Rome
	// computing Paris
	// hits: 2 misses: 4 evictions: 2
}

// A memo's TTL bounds each result's life (the clock is a fake one here, so
// that the example need not wait).
func ExampleMemoize_ttl() {
	start := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	var elapsed atomic.Int64
	now := func() time.Time { return start.Add(time.Duration(elapsed.Load())) }

	forecast, _ := agentcache.Memoize(func(ctx context.Context, city string) (string, error) {
		fmt.Println("computing", city)
		return "12°C in " + city, nil
	}, agentcache.MemoOptions[string]{TTL: time.Minute, Now: now})

	ctx := context.Background()
	forecast.Call(ctx, "Oslo")
	elapsed.Add(int64(59 * time.Second))
	forecast.Call(ctx, "Oslo") // still fresh
	elapsed.Add(int64(2 * time.Second))
	forecast.Call(ctx, "Oslo") // expired: computed again
	// Output:
	// computing Oslo
	// computing Oslo
}

// Through a Cache (MemoOptions.Cache, with a Name), a memo is a global
// resource of that cache: its results go to L2 and are shared by every
// instance. Close drains the L2 write queue, so once instance A has closed,
// instance B finds A's result in L2.
func ExampleMemoize_cache() {
	backend := fake.NewBackend(fake.BackendOptions{}) // stands in for Redis
	defer backend.Close()
	ctx := context.Background()
	// A loose L2Timeout, so that a loaded machine cannot time the in-memory
	// L2 out (the default, 250ms, is meant for Redis).
	a, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute})
	b, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute})
	defer b.Close(ctx)

	runs := 0
	summarize := func(ctx context.Context, doc string) (string, error) {
		runs++
		return "summary of " + doc, nil
	}
	onA, _ := agentcache.Memoize(summarize, agentcache.MemoOptions[string]{Cache: a, Name: "summarize", TTL: time.Hour})
	onB, _ := agentcache.Memoize(summarize, agentcache.MemoOptions[string]{Cache: b, Name: "summarize", TTL: time.Hour})

	onA.Call(ctx, "returns-policy.md")
	a.Close(ctx) // writes what A queued for L2
	v, _ := onB.Call(ctx, "returns-policy.md")
	fmt.Println(v, "| runs:", runs, "| B from L2:", b.Stats().L2Hits)
	// Output:
	// summary of returns-policy.md | runs: 1 | B from L2: 1
}
