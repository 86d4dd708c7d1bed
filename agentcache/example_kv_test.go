package agentcache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
)

type forecast struct {
	City  string  `json:"city"`
	TempC float64 `json:"temp_c"`
}

// Set stores a value under a key of the key-value API; Get then returns it
// without calling its loader.
func ExampleCache_Set() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	if err := c.Set(ctx, "weather:oslo", forecast{City: "Oslo", TempC: 12}, 10*time.Minute); err != nil {
		panic(err)
	}
	f, _ := agentcache.Get(ctx, c, "weather:oslo", func(ctx context.Context, key string) (forecast, error) {
		panic("not called: the key is set")
	})
	fmt.Printf("%+v\n", f)
	// Output:
	// {City:Oslo TempC:12}
}

// Delete removes one key, so the next Get calls its loader.
func ExampleCache_Delete() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	load := func(ctx context.Context, key string) (string, error) {
		fmt.Println("loading", key)
		return "value of " + key, nil
	}
	agentcache.Get(ctx, c, "user:42", load)
	agentcache.Get(ctx, c, "user:42", load) // cached
	if err := c.Delete(ctx, "user:42"); err != nil {
		panic(err)
	}
	agentcache.Get(ctx, c, "user:42", load)
	// Output:
	// loading user:42
	// loading user:42
}

// Clear empties the whole cache: keys of the key-value API and tool results
// alike.
func ExampleCache_Clear() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute},
		func(ctx context.Context, city string) (string, error) {
			fmt.Println("get_weather ran for", city)
			return "12°C in " + city, nil
		})
	load := func(ctx context.Context, key string) (string, error) {
		fmt.Println("loading", key)
		return "value of " + key, nil
	}
	weather(ctx, "Oslo")
	agentcache.Get(ctx, c, "user:42", load)
	if err := c.Clear(ctx); err != nil {
		panic(err)
	}
	fmt.Println("cleared")
	weather(ctx, "Oslo")
	agentcache.Get(ctx, c, "user:42", load)
	// Output:
	// get_weather ran for Oslo
	// loading user:42
	// cleared
	// get_weather ran for Oslo
	// loading user:42
}

// Stats counts lookups by the tier that answered them, and the tool runs
// they caused.
func ExampleCache_Stats() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute},
		func(ctx context.Context, city string) (string, error) { return "12°C in " + city, nil })
	for _, city := range []string{"Oslo", "Oslo", "Oslo", "Paris"} {
		weather(ctx, city)
	}
	s := c.Stats()
	fmt.Println("L1 hits:", s.L1Hits, "misses:", s.Misses, "tool runs:", s.Loads, "entries:", s.L1Entries)
	// Output:
	// L1 hits: 2 misses: 2 tool runs: 2 entries: 2
}

// HitRatio is the share of lookups answered without the tool.
func ExampleStats_HitRatio() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute},
		func(ctx context.Context, city string) (string, error) { return "12°C in " + city, nil })
	for _, city := range []string{"Oslo", "Oslo", "Oslo", "Paris"} {
		weather(ctx, city)
	}
	fmt.Printf("%.2f\n", c.Stats().HitRatio())
	// Output:
	// 0.50
}
