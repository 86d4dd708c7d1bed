package agentlc_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tmc/langchaingo/tools"

	"github.com/agentcache/agentcache-go/adapters/langchaingo"
	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
)

// weatherTool stands for a tool that calls a paid API.
type weatherTool struct{ calls int }

func (*weatherTool) Name() string        { return "get_weather" }
func (*weatherTool) Description() string { return `Current weather. Input: {"city": "..."}` }
func (w *weatherTool) Call(_ context.Context, input string) (string, error) {
	w.calls++
	return "sunny in " + input, nil
}

func Example() {
	ctx := context.Background()
	cache, err := agentcache.New(agentcache.Options{}) // add L2 (tier/redis) to share across instances
	if err != nil {
		panic(err)
	}
	defer cache.Close(ctx)

	inner := &weatherTool{}
	var weather tools.Tool
	weather, err = agentlc.Wrap(cache, inner, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute})
	if err != nil {
		panic(err)
	}
	// Hand weather to an agent (agents.NewOneShotAgent(llm, []tools.Tool{weather})):
	// the executor calls it like this.
	for _, input := range []string{`{"city":"Paris"}`, `{ "city": "Paris" }`, `{"city":"Oslo"}`} {
		out, err := weather.Call(ctx, input)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s → %s (tool calls: %d)\n", input, out, inner.calls)
	}
	fmt.Println(weather.Name(), "|", weather.Description())
	// Output:
	// {"city":"Paris"} → sunny in {"city":"Paris"} (tool calls: 1)
	// { "city": "Paris" } → sunny in {"city":"Paris"} (tool calls: 1)
	// {"city":"Oslo"} → sunny in {"city":"Oslo"} (tool calls: 2)
	// get_weather | Current weather. Input: {"city": "..."}
}
