package agentcache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// A tool of JSON arguments (what MCP and agent frameworks hand a tool) is
// keyed by the canonical form of its arguments: two spellings of the same
// arguments share one entry, and the tool is given the canonical text.
func ExampleWrap_json() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	getWeather := func(ctx context.Context, args json.RawMessage) (string, error) {
		fmt.Printf("tool got %s\n", args)
		return "12°C", nil
	}
	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute}, getWeather)

	ctx := context.Background()
	w1, _ := weather(ctx, json.RawMessage(`{"city": "Paris", "days": 3}`))
	w2, _ := weather(ctx, json.RawMessage(`{ "days": 3.0, "city": "\u0050aris" }`))
	fmt.Println(w1, w2)
	_, err := weather(ctx, json.RawMessage(`{"city": "Paris",}`))
	fmt.Println(errors.Is(err, resource.ErrInvalidJSON))
	// Output:
	// tool got {"city":"Paris","days":3}
	// 12°C 12°C
	// true
}

// WrapBatch caches a tool that looks up many IDs in one call: each ID is an
// entry of its own, and only the IDs not cached yet reach the tool.
func ExampleWrapBatch() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	prices := map[string]int{"book": 12, "pen": 2, "lamp": 30}
	getPrices := func(ctx context.Context, ids []string) (map[string]int, error) {
		fmt.Println("tool asked for", ids)
		found := map[string]int{}
		for _, id := range ids {
			if p, ok := prices[id]; ok {
				found[id] = p
			}
		}
		return found, nil
	}
	batch, _ := agentcache.WrapBatch(c, resource.Resource{Name: "get_prices", TTL: time.Minute}, getPrices)

	ctx := context.Background()
	got, _ := batch.GetMany(ctx, []string{"book", "pen"})
	fmt.Println(got)
	got, _ = batch.GetMany(ctx, []string{"book", "pen", "lamp"})
	fmt.Println(got)
	// Output:
	// tool asked for [book pen]
	// map[book:12 pen:2]
	// tool asked for [lamp]
	// map[book:12 lamp:30 pen:2]
}

// GetMany leaves out of its map the IDs that do not exist, and remembers
// them as "not found": the tool is not asked for them again within the
// resource's negative TTL.
func ExampleBatch_GetMany() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	prices := map[string]int{"book": 12, "pen": 2}
	batch, _ := agentcache.WrapBatch(c, resource.Resource{Name: "get_prices", TTL: time.Minute},
		func(ctx context.Context, ids []string) (map[string]int, error) {
			fmt.Println("tool asked for", ids)
			found := map[string]int{}
			for _, id := range ids {
				if p, ok := prices[id]; ok {
					found[id] = p
				}
			}
			return found, nil
		})

	ctx := context.Background()
	for i := 0; i < 2; i++ {
		got, _ := batch.GetMany(ctx, []string{"book", "kite"})
		fmt.Println(got)
	}
	// Output:
	// tool asked for [book kite]
	// map[book:12]
	// map[book:12]
}

// Get gathers concurrent single-ID calls into one tool call. A window is sent
// when MaxBatchSize IDs have joined it or when BatchWindow has passed
// (default 2ms); here the three calls fill it.
func ExampleBatch_Get() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	prices := map[string]int{"book": 12, "pen": 2, "lamp": 30}
	var toolCalls atomic.Int32
	batch, _ := agentcache.WrapBatch(c, resource.Resource{Name: "get_prices", TTL: time.Minute},
		func(ctx context.Context, ids []string) (map[string]int, error) {
			toolCalls.Add(1)
			found := map[string]int{}
			for _, id := range ids {
				found[id] = prices[id]
			}
			return found, nil
		},
		agentcache.MaxBatchSize(3), agentcache.BatchWindow(time.Minute))

	ctx := context.Background()
	var wg sync.WaitGroup
	for _, id := range []string{"book", "pen", "lamp"} {
		wg.Go(func() { batch.Get(ctx, id) })
	}
	wg.Wait()
	pen, _ := batch.Get(ctx, "pen") // cached: no window, no tool call
	fmt.Println("pen:", pen, "tool calls:", toolCalls.Load())
	// Output:
	// pen: 2 tool calls: 1
}

// NegativeWhen marks results that mean "not found" (an empty search): they
// are remembered for the resource's negative TTL, and callers get
// ErrNotFound as if the tool had returned it.
func ExampleNegativeWhen() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	asked := 0
	searchDocs, _ := agentcache.Wrap(c,
		resource.Resource{Name: "search_docs", TTL: time.Minute, NegativeTTL: 10 * time.Second},
		func(ctx context.Context, query string) ([]string, error) {
			asked++
			return nil, nil // no hits
		},
		agentcache.NegativeWhen(func(hits []string) bool { return len(hits) == 0 }))

	for i := 0; i < 2; i++ {
		_, err := searchDocs(context.Background(), "unicorn pricing")
		fmt.Println(errors.Is(err, agentcache.ErrNotFound))
	}
	fmt.Println("tool asked:", asked)
	// Output:
	// true
	// true
	// tool asked: 1
}

type forecastArgs struct {
	City    string `json:"city"`
	TraceID string `json:"-"` // for the tool's logs; never changes the answer
}

// KeyFunc keys calls on what decides the answer. Here it is needed: Wrap
// refuses an argument type with a part its JSON form leaves out, since calls
// that differ only there would share one answer.
func ExampleKeyFunc() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	getWeather := resource.Resource{Name: "get_weather", TTL: 10 * time.Minute}
	forecast := func(ctx context.Context, a forecastArgs) (string, error) {
		fmt.Println("tool ran for trace", a.TraceID)
		return "12°C in " + a.City, nil
	}
	_, err := agentcache.Wrap(c, getWeather, forecast)
	fmt.Println(errors.Is(err, resource.ErrLossyArgs))

	weather, _ := agentcache.Wrap(c, getWeather, forecast,
		agentcache.KeyFunc(func(a forecastArgs) any { return a.City }))
	ctx := context.Background()
	w1, _ := weather(ctx, forecastArgs{City: "Oslo", TraceID: "t-1"})
	w2, _ := weather(ctx, forecastArgs{City: "Oslo", TraceID: "t-2"})
	fmt.Println(w1, "|", w2)
	// Output:
	// true
	// tool ran for trace t-1
	// 12°C in Oslo | 12°C in Oslo
}

// RefreshAhead reloads a hot entry in the background once it is read late in
// its TTL (here after 80% of it), so its readers never wait for the tool: the
// read is answered at once with the cached value.
func ExampleRefreshAhead() {
	start := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	var elapsed atomic.Int64 // a fake clock, so that the example need not wait
	now := func() time.Time { return start.Add(time.Duration(elapsed.Load())) }
	c, _ := agentcache.New(agentcache.Options{Now: now, TTLJitter: -1})
	defer c.Close(context.Background())

	refreshed := make(chan string, 1)
	var runs atomic.Int32
	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute},
		func(ctx context.Context, city string) (string, error) {
			if runs.Add(1) > 1 {
				refreshed <- "refreshed " + city
			}
			return "12°C in " + city, nil
		},
		agentcache.RefreshAhead(0.8))

	ctx := context.Background()
	w, _ := weather(ctx, "Oslo")
	fmt.Println(w)
	elapsed.Add(int64(9 * time.Minute))
	w, _ = weather(ctx, "Oslo") // served at once; the tool runs in the background
	fmt.Println(w)
	fmt.Println(<-refreshed)
	// Output:
	// 12°C in Oslo
	// 12°C in Oslo
	// refreshed Oslo
}

// WriteThrough makes the call that ran the tool wait for its L2 write, so
// that another instance reading right after finds the value. By default L2 is
// written in the background.
func ExampleWriteThrough() {
	backend := fake.NewBackend(fake.BackendOptions{}) // stands in for Redis
	defer backend.Close()
	ctx := context.Background()
	// A loose L2Timeout, so that a loaded machine cannot time the in-memory
	// L2 out (the default, 250ms, is meant for Redis).
	a, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute})
	defer a.Close(ctx)
	b, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute})
	defer b.Close(ctx)

	getWeather := resource.Resource{Name: "get_weather", TTL: 10 * time.Minute}
	runs := 0
	forecast := func(ctx context.Context, city string) (string, error) {
		runs++
		return "12°C in " + city, nil
	}
	weatherA, _ := agentcache.Wrap(a, getWeather, forecast, agentcache.WriteThrough())
	weatherB, _ := agentcache.Wrap(b, getWeather, forecast, agentcache.WriteThrough())

	weatherA(ctx, "Oslo")
	fmt.Println("L2 writes done when the call returned:", a.Stats().WritesDone)
	w, _ := weatherB(ctx, "Oslo")
	fmt.Println(w, "| from L2:", b.Stats().L2Hits, "| tool runs:", runs)
	// Output:
	// L2 writes done when the call returned: 1
	// 12°C in Oslo | from L2: 1 | tool runs: 1
}
