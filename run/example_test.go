package run_test

import (
	"context"
	"fmt"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/run"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// A run's summary says which tier answered each of the agent's tool calls.
// Here the agent is served by two instances that share an L2 (tier/fake's
// in-memory stand-in for Redis): A runs the tool, answers the repeat from
// its L1 and a repeated "not found" from its negative cache; B finds in L2
// what A wrote there.
func Example() {
	ctx := context.Background()
	l2 := fake.NewBackend(fake.BackendOptions{})
	defer l2.Close()
	a, _ := agentcache.New(agentcache.Options{L2: l2.Remote("demo:")})
	b, _ := agentcache.New(agentcache.Options{L2: l2.Remote("demo:")})
	defer b.Close(ctx)

	weather := resource.Resource{Name: "get_weather", TTL: time.Hour}
	tool := func(ctx context.Context, city string) (string, error) {
		if city == "Atlantis" {
			return "", agentcache.ErrNotFound
		}
		return "12°C in " + city, nil
	}
	onA, _ := agentcache.Wrap(a, weather, tool)
	onB, _ := agentcache.Wrap(b, weather, tool)

	ctx, r := run.Start(ctx)
	onA(ctx, "Oslo")
	onA(ctx, "Oslo")
	onA(ctx, "Atlantis")
	onA(ctx, "Atlantis")
	a.Close(ctx) // drains A's writes to L2
	onB(ctx, "Oslo")

	s := r.Summary()
	for i, c := range s.Calls {
		fmt.Printf("call %d: %s answered by %s\n", i+1, c.Resource, c.Tier)
	}
	fmt.Printf("%d calls: %d from L1, %d from L2, %d from the negative cache, %d ran the tool; hit ratio %.0f%%\n",
		s.Lookups, s.ByTier[otel.TierL1], s.ByTier[otel.TierL2], s.ByTier[otel.TierNegative], s.ByTier[otel.TierLoader], 100*s.HitRatio())
	// Output:
	// call 1: get_weather answered by loader
	// call 2: get_weather answered by l1
	// call 3: get_weather answered by loader
	// call 4: get_weather answered by negative
	// call 5: get_weather answered by l2
	// 5 calls: 1 from L1, 1 from L2, 1 from the negative cache, 2 ran the tool; hit ratio 60%
}

// Summaries add up: the totals over every user's run, say. (A Cache calls
// Record; a test or a replay can too.)
func ExampleSummary_Add() {
	_, alice := run.Start(context.Background())
	alice.Record(run.Call{Resource: "get_cart", Tier: otel.TierLoader, ToolTime: 80 * time.Millisecond})
	alice.Record(run.Call{Resource: "get_cart", Tier: otel.TierL1, Saved: 80 * time.Millisecond})
	_, bob := run.Start(context.Background())
	bob.Record(run.Call{Resource: "get_cart", Tier: otel.TierL2, Saved: 75 * time.Millisecond})
	bob.Record(run.Call{Resource: "search_docs", Tier: otel.TierLoader, Failed: true})

	var all run.Summary
	all.Add(alice.Summary())
	all.Add(bob.Summary())
	fmt.Println(all.Lookups, "calls,", all.Errors, "failed; by tier:", all.ByTier)
	fmt.Println("get_cart:", all.Resources["get_cart"].ByTier, "saved", all.Resources["get_cart"].TimeSaved)
	fmt.Printf("hit ratio %.0f%%, tool time %v, saved %v\n", 100*all.HitRatio(), all.ToolTime, all.TimeSaved)
	// Output:
	// 4 calls, 1 failed; by tier: map[l1:1 l2:1 loader:1]
	// get_cart: map[l1:1 l2:1 loader:1] saved 155ms
	// hit ratio 50%, tool time 80ms, saved 155ms
}
