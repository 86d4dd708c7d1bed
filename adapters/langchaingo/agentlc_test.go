package agentlc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tmc/langchaingo/agents"
	"github.com/tmc/langchaingo/chains"
	fakellm "github.com/tmc/langchaingo/llms/fake"
	"github.com/tmc/langchaingo/schema"
	"github.com/tmc/langchaingo/tools"

	"github.com/agentcache/agentcache-go/adapters/langchaingo"
	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// countTool is a tools.Tool that counts its runs and answers with fn.
type countTool struct {
	name string
	runs atomic.Int64
	fn   func(ctx context.Context, input string, run int64) (string, error)
}

func (t *countTool) Name() string        { return t.name }
func (t *countTool) Description() string { return "the " + t.name + " tool" }
func (t *countTool) Call(ctx context.Context, input string) (string, error) {
	return t.fn(ctx, input, t.runs.Add(1))
}

func echo(name string) *countTool {
	return &countTool{name: name, fn: func(_ context.Context, input string, run int64) (string, error) {
		return fmt.Sprintf("%s(%s) run %d", name, input, run), nil
	}}
}

func newCache(t *testing.T, opts agentcache.Options) *agentcache.Cache {
	t.Helper()
	c, err := agentcache.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func wrap(t *testing.T, c *agentcache.Cache, tool tools.Tool, r resource.Resource, opts ...agentcache.ToolOption) tools.Tool {
	t.Helper()
	w, err := agentlc.Wrap(c, tool, r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustCall(t *testing.T, ctx context.Context, tool tools.Tool, input string) string {
	t.Helper()
	out, err := tool.Call(ctx, input)
	if err != nil {
		t.Fatalf("Call(%q): %v", input, err)
	}
	return out
}

func wantRuns(t *testing.T, tool *countTool, want int64) {
	t.Helper()
	if got := tool.runs.Load(); got != want {
		t.Errorf("%s ran %d times, want %d", tool.name, got, want)
	}
}

var (
	weatherRes = resource.Resource{Name: "get_weather", TTL: time.Minute}
	cartRes    = resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Minute}
)

func TestWrapKeepsNameAndDescription(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := echo("Weather")
	w := wrap(t, c, inner, weatherRes)
	if w.Name() != "Weather" || w.Description() != "the Weather tool" {
		t.Errorf("Name %q, Description %q", w.Name(), w.Description())
	}
	if u, ok := w.(interface{ Unwrap() tools.Tool }); !ok || u.Unwrap() != inner {
		t.Error("Unwrap does not return the wrapped tool")
	}
}

func TestJSONInputKeyedCanonically(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := echo("weather")
	w := wrap(t, c, inner, weatherRes)
	ctx := context.Background()

	first := mustCall(t, ctx, w, `{"city":"Paris","units":"C"}`)
	for _, in := range []string{
		`{"units":"C","city":"Paris"}`,
		"{\n  \"city\": \"Paris\",\n  \"units\": \"C\"\n}",
		`{"city":"Par\u0069s","units":"C"}`,
	} {
		if got := mustCall(t, ctx, w, in); got != first {
			t.Errorf("%s: %q, want the cached %q", in, got, first)
		}
	}
	wantRuns(t, inner, 1)
	mustCall(t, ctx, w, `{"city":"Oslo","units":"C"}`)
	mustCall(t, ctx, w, `{"n":1}`)
	mustCall(t, ctx, w, `{"n":1.0}`) // the same number
	wantRuns(t, inner, 3)
}

func TestTextInputKeyedExactly(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := echo("search")
	w := wrap(t, c, inner, resource.Resource{Name: "search"})
	ctx := context.Background()

	for _, tc := range []struct {
		input string
		runs  int64
	}{
		{"Paris", 1},
		{"Paris", 1},
		{"Paris ", 2},        // white space counts in text
		{"paris", 3},         // so does case
		{`"Paris"`, 4},       // the JSON string "Paris" is not the text Paris
		{`"Paris"`, 4},       //
		{` "Paris" `, 5},     // nor is it with spaces around it: a scalar is text
		{`{"a":1,"a":2}`, 6}, // JSON the canonical form refuses: keyed as text
		{`{"a":1,"a":2}`, 6},
		{`{"a":2,"a":1}`, 7},
		{"", 8},
		{"", 8},
		{"3.10", 9}, // numbers, too, are the text the tool reads
		{"3.1", 10},
		{"1e3", 11},
		{"1000", 12},
		{"1000", 12},
	} {
		mustCall(t, ctx, w, tc.input)
		wantRuns(t, inner, tc.runs)
	}
}

// The tool is called with what the call is keyed on: the canonical form of
// a JSON object or array, the exact text of anything else. So two inputs
// that share an entry are one input to the tool, also when encoding/json
// would decode their texts differently (it matches keys case-insensitively,
// the last one winning): whichever caller comes first, the tool sees the
// same bytes.
func TestToolGetsTheInputItIsKeyedOn(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	var got []string
	inner := &countTool{name: "raw", fn: func(_ context.Context, input string, _ int64) (string, error) {
		got = append(got, input)
		var v struct{ ID string }
		if json.Unmarshal([]byte(input), &v) == nil && v.ID != "" {
			return v.ID, nil
		}
		return "ok", nil
	}}
	w := wrap(t, c, inner, resource.Resource{Name: "raw"})
	ctx := context.Background()
	mustCall(t, ctx, w, ` {"b": 2, "a": 1} `)
	mustCall(t, ctx, w, "plain text\n")
	if want := []string{`{"a":1,"b":2}`, "plain text\n"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the tool saw %q, want %q", got, want)
	}
	first, err := w.Call(ctx, `{"ID":"secret","id":"public"}`)
	if err != nil {
		t.Fatal(err)
	}
	second, err := w.Call(ctx, `{"id":"public","ID":"secret"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2] != `{"ID":"secret","id":"public"}` {
		t.Errorf("the tool saw %q, want one more call with the canonical form", got)
	}
	// The tool's own decoding of the canonical form decides; the order the
	// caller wrote the keys in does not.
	var v struct{ ID string }
	_ = json.Unmarshal([]byte(got[len(got)-1]), &v)
	if first != v.ID || second != v.ID {
		t.Errorf("the two spellings got %q and %q, want both %q", first, second, v.ID)
	}
}

func TestPerUser(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := &countTool{name: "cart", fn: func(ctx context.Context, _ string, run int64) (string, error) {
		u, _ := scope.UserFrom(ctx)
		return fmt.Sprintf("cart of %s (run %d)", u, run), nil
	}}
	w := wrap(t, c, inner, cartRes)
	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	for range 3 {
		if got := mustCall(t, alice, w, "{}"); got != "cart of alice (run 1)" {
			t.Errorf("alice: %q", got)
		}
		if got := mustCall(t, bob, w, "{}"); got != "cart of bob (run 2)" {
			t.Errorf("bob: %q", got)
		}
	}
	wantRuns(t, inner, 2)

	// Without a user, or with an invalid one, it fails closed.
	if _, err := w.Call(context.Background(), "{}"); !errors.Is(err, scope.ErrMissing) {
		t.Errorf("no user: err = %v, want scope.ErrMissing", err)
	}
	if _, err := w.Call(scope.WithUser(context.Background(), "bad\nid"), "{}"); !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("invalid user: err = %v, want scope.ErrInvalid", err)
	}
	wantRuns(t, inner, 2)
}

func TestErrorsNotCached(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := &countTool{name: "flaky", fn: func(_ context.Context, _ string, run int64) (string, error) {
		if run < 3 {
			return "", fmt.Errorf("timeout (run %d)", run)
		}
		return "ok", nil
	}}
	w := wrap(t, c, inner, resource.Resource{Name: "flaky"})
	ctx := context.Background()
	for i := 1; i < 3; i++ {
		if _, err := w.Call(ctx, "x"); err == nil || err.Error() != fmt.Sprintf("timeout (run %d)", i) {
			t.Errorf("call %d: err = %v", i, err)
		}
	}
	mustCall(t, ctx, w, "x")
	mustCall(t, ctx, w, "x")
	wantRuns(t, inner, 3)
}

func TestNotFoundRemembered(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := &countTool{name: "order", fn: func(_ context.Context, input string, _ int64) (string, error) {
		return "", fmt.Errorf("order %s: %w", input, agentcache.ErrNotFound)
	}}
	w := wrap(t, c, inner, resource.Resource{Name: "get_order", NegativeTTL: time.Minute})
	ctx := context.Background()
	for range 3 {
		if _, err := w.Call(ctx, "Z9"); !errors.Is(err, agentcache.ErrNotFound) {
			t.Errorf("err = %v, want agentcache.ErrNotFound", err)
		}
	}
	wantRuns(t, inner, 1)

	empty := echo("search")
	empty.fn = func(context.Context, string, int64) (string, error) { return "", nil }
	ws := wrap(t, c, empty, resource.Resource{Name: "search", NegativeTTL: time.Minute},
		agentcache.NegativeWhen(func(s string) bool { return s == "" }))
	for range 2 {
		if _, err := ws.Call(ctx, "nothing"); !errors.Is(err, agentcache.ErrNotFound) {
			t.Errorf("empty result: err = %v, want agentcache.ErrNotFound", err)
		}
	}
	wantRuns(t, empty, 1)
}

func TestMutationInvalidatesCallerScope(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := &countTool{name: "cart", fn: func(ctx context.Context, _ string, run int64) (string, error) {
		u, _ := scope.UserFrom(ctx)
		return fmt.Sprintf("cart of %s (run %d)", u, run), nil
	}}
	cart := wrap(t, c, inner, cartRes)
	adds := &countTool{name: "add_to_cart", fn: func(_ context.Context, input string, _ int64) (string, error) {
		if input == "fail" {
			return "", errors.New("out of stock")
		}
		return "added " + input, nil
	}}
	add, err := agentlc.WrapMutation(c, adds, cartRes)
	if err != nil {
		t.Fatal(err)
	}
	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	mustCall(t, alice, cart, "{}")
	mustCall(t, bob, cart, "{}")

	if _, err := add.Call(alice, "fail"); err == nil {
		t.Error("failing add_to_cart succeeded")
	}
	mustCall(t, alice, cart, "{}")
	wantRuns(t, inner, 2) // a failed write invalidates nothing

	mustCall(t, alice, add, "tea")
	mustCall(t, alice, add, "tea") // never cached
	wantRuns(t, adds, 3)
	if got := mustCall(t, alice, cart, "{}"); got != "cart of alice (run 3)" {
		t.Errorf("alice after her write: %q", got)
	}
	if got := mustCall(t, bob, cart, "{}"); got != "cart of bob (run 2)" {
		t.Errorf("bob after alice's write: %q", got)
	}

	// Without a user the write is refused before it runs.
	if _, err := add.Call(context.Background(), "tea"); !errors.Is(err, scope.ErrMissing) {
		t.Errorf("no user: err = %v, want scope.ErrMissing", err)
	}
	wantRuns(t, adds, 3)
}

func TestTargetCall(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	inner := echo("weather")
	w := wrap(t, c, inner, weatherRes)
	ctx := context.Background()
	mustCall(t, ctx, w, `{"city":"Paris"}`)
	mustCall(t, ctx, w, "Oslo")
	if err := c.Invalidate(ctx, agentlc.TargetCall(weatherRes, "", `{ "city": "Paris" }`)); err != nil {
		t.Fatal(err)
	}
	mustCall(t, ctx, w, `{"city":"Paris"}`) // runs again
	mustCall(t, ctx, w, "Oslo")             // still cached
	wantRuns(t, inner, 3)
	if err := c.Invalidate(ctx, agentlc.TargetCall(weatherRes, "", "Oslo")); err != nil {
		t.Fatal(err)
	}
	mustCall(t, ctx, w, "Oslo")
	wantRuns(t, inner, 4)
}

func TestConcurrentCallsRunOnce(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	release := make(chan struct{})
	inner := &countTool{name: "slow", fn: func(_ context.Context, input string, run int64) (string, error) {
		<-release
		return fmt.Sprintf("%s run %d", input, run), nil
	}}
	w := wrap(t, c, inner, resource.Resource{Name: "slow"})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			in := `{"q":"go","page":1}`
			if i%2 == 1 {
				in = `{"page":1,"q":"go"}`
			}
			if got := mustCall(t, context.Background(), w, in); !strings.HasSuffix(got, "run 1") {
				t.Errorf("call %d: %q", i, got)
			}
		})
	}
	// Both spellings of the input are one key: the 7 other calls join the
	// first one's load.
	wait.For(t, 5*time.Second, "7 calls joining the load", func() bool { return c.Stats().Joined == 7 })
	close(release)
	wg.Wait()
	wantRuns(t, inner, 1)
}

func TestWrapErrors(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	if _, err := agentlc.Wrap(nil, echo("x"), weatherRes); err == nil {
		t.Error("nil cache accepted")
	}
	if _, err := agentlc.Wrap(c, nil, weatherRes); err == nil {
		t.Error("nil tool accepted")
	}
	if _, err := agentlc.Wrap(c, echo("x"), resource.Resource{}); err == nil || !strings.HasPrefix(err.Error(), "agentlc: ") {
		t.Errorf("empty resource: err = %v", err)
	}
	if _, err := agentlc.Wrap(c, echo("x"), resource.Resource{Name: "Calculator!"}); err == nil {
		t.Error("invalid resource name accepted")
	}
	wrap(t, c, echo("x"), weatherRes)
	if _, err := agentlc.Wrap(c, echo("y"), resource.Resource{Name: "get_weather", TTL: time.Hour}); err == nil {
		t.Error("a conflicting registration was accepted")
	}
	if _, err := agentlc.WrapMutation(c, nil, weatherRes); err == nil {
		t.Error("nil mutation tool accepted")
	}
}

func TestClosedCacheCallsTool(t *testing.T) {
	c, err := agentcache.New(agentcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inner := echo("weather")
	w := wrap(t, c, inner, weatherRes)
	add, err := agentlc.WrapMutation(c, echo("add"), weatherRes)
	if err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	mustCall(t, context.Background(), w, "Paris")
	mustCall(t, context.Background(), w, "Paris")
	wantRuns(t, inner, 2)
	if _, err := add.Call(context.Background(), "x"); !errors.Is(err, agentcache.ErrClosed) {
		t.Errorf("mutation on a closed cache: err = %v, want ErrClosed", err)
	}
}

// TestSharedL2 runs two instances (two Caches with their own L1) on one
// shared remote store: a result one cached is served by the other.
func TestSharedL2(t *testing.T) {
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	inner := echo("weather")
	a := wrap(t, newCache(t, agentcache.Options{L2: backend.Remote("lc:")}), inner, weatherRes, agentcache.WriteThrough())
	b := wrap(t, newCache(t, agentcache.Options{L2: backend.Remote("lc:")}), inner, weatherRes, agentcache.WriteThrough())
	ctx := context.Background()
	want := mustCall(t, ctx, a, `{"city":"Paris"}`)
	if got := mustCall(t, ctx, b, `{ "city" : "Paris" }`); got != want {
		t.Errorf("instance b: %q, want %q", got, want)
	}
	wantRuns(t, inner, 1)
}

// TestAgentExecutor runs a LangChainGo one-shot (MRKL) agent with a scripted
// fake LLM: the agent calls the wrapped tools as an executor does, with the
// same arguments spelled two ways and for two users.
func TestAgentExecutor(t *testing.T) {
	c := newCache(t, agentcache.Options{})
	weather := echo("get_weather")
	cart := &countTool{name: "get_cart", fn: func(ctx context.Context, _ string, run int64) (string, error) {
		u, _ := scope.UserFrom(ctx)
		return fmt.Sprintf("%s has 2 items", u), nil
	}}
	toolset := []tools.Tool{
		wrap(t, c, weather, weatherRes),
		wrap(t, c, cart, cartRes),
	}
	script := []string{
		"Thought: I need the weather.\nAction: get_weather\nAction Input: {\"city\":\"Paris\",\"units\":\"C\"}",
		"Thought: Let me check it again.\nAction: get_weather\nAction Input: {\"units\": \"C\", \"city\": \"Paris\"}",
		"Thought: Now the cart.\nAction: get_cart\nAction Input: {}",
		"Thought: I know the answer.\nFinal Answer: sunny, 2 items",
	}
	run := func(user string) []schema.AgentStep {
		t.Helper()
		llm := fakellm.NewFakeLLM(script)
		exec := agents.NewExecutor(agents.NewOneShotAgent(llm, toolset),
			agents.WithMaxIterations(5), agents.WithReturnIntermediateSteps())
		ctx := scope.WithUser(context.Background(), user)
		out, err := chains.Call(ctx, exec, map[string]any{"input": "Weather in Paris, and my cart?"})
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		if out["output"] != "sunny, 2 items" {
			t.Errorf("%s: output %v", user, out["output"])
		}
		steps, _ := out["intermediateSteps"].([]schema.AgentStep)
		if len(steps) != 3 {
			t.Fatalf("%s: %d steps, want 3", user, len(steps))
		}
		return steps
	}

	steps := run("alice")
	if steps[0].Observation != steps[1].Observation {
		t.Errorf("the repeated call observed %q, the first %q", steps[1].Observation, steps[0].Observation)
	}
	if steps[2].Observation != "alice has 2 items" {
		t.Errorf("alice's cart: %q", steps[2].Observation)
	}
	wantRuns(t, weather, 1)
	wantRuns(t, cart, 1)

	steps = run("bob")
	if steps[2].Observation != "bob has 2 items" {
		t.Errorf("bob's cart: %q", steps[2].Observation)
	}
	wantRuns(t, weather, 1) // global: still cached
	wantRuns(t, cart, 2)    // per user: bob's own run

	// An agent run without a user fails closed on the per-user tool.
	llm := fakellm.NewFakeLLM(script[2:])
	exec := agents.NewExecutor(agents.NewOneShotAgent(llm, toolset), agents.WithMaxIterations(3))
	if _, err := chains.Run(context.Background(), exec, "my cart?"); !errors.Is(err, scope.ErrMissing) {
		t.Errorf("anonymous run: err = %v, want scope.ErrMissing", err)
	}
	wantRuns(t, cart, 2)
}

// The cached value is the tool's string, whatever it holds.
func TestResultStringRoundTrip(t *testing.T) {
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	payload, _ := json.Marshal(map[string]any{"html": "<b>x</b> & \u2028", "n": 1})
	want := string(payload) + "\n\x00tail"
	inner := &countTool{name: "blob", fn: func(context.Context, string, int64) (string, error) { return want, nil }}
	a := wrap(t, newCache(t, agentcache.Options{L2: backend.Remote("rt:")}), inner, resource.Resource{Name: "blob"}, agentcache.WriteThrough())
	b := wrap(t, newCache(t, agentcache.Options{L2: backend.Remote("rt:")}), inner, resource.Resource{Name: "blob"})
	ctx := context.Background()
	mustCall(t, ctx, a, "q")
	if got := mustCall(t, ctx, b, "q"); got != want {
		t.Errorf("from L2: %q, want %q", got, want)
	}
	wantRuns(t, inner, 1)
}
