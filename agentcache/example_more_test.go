package agentcache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// New checks every option and names each bad one in its error.
func ExampleNew() {
	_, err := agentcache.New(agentcache.Options{DefaultTTL: -time.Minute, MaxEpochAge: time.Millisecond})
	fmt.Println(err)
	// Output:
	// agentcache: Options.DefaultTTL must not be negative
	// agentcache: Options.MaxEpochAge must be at least 4ms
}

// TargetSession drops every per-session entry of one session (when the
// agent's conversation ends, say).
func ExampleTargetSession() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	history, _ := agentcache.Wrap(c, resource.Resource{Name: "get_history", Scope: scope.Session, TTL: time.Hour},
		func(ctx context.Context, _ struct{}) (string, error) {
			session, _ := scope.SessionFrom(ctx)
			fmt.Println("get_history ran for", session)
			return "", nil
		})
	s1 := scope.WithSession(context.Background(), "s-1")
	s2 := scope.WithSession(context.Background(), "s-2")
	history(s1, struct{}{})
	history(s2, struct{}{})

	c.Invalidate(context.Background(), agentcache.TargetSession("s-1"))
	fmt.Println("invalidated s-1")
	history(s1, struct{}{})
	history(s2, struct{}{}) // cached
	// Output:
	// get_history ran for s-1
	// get_history ran for s-2
	// invalidated s-1
	// get_history ran for s-1
}

// TargetResourceIn takes the scope ID from the request's context, as a
// lookup does, and fails the same way without one.
func ExampleTargetResourceIn() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	getCart := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Hour}
	cart, _ := agentcache.Wrap(c, getCart, func(ctx context.Context, _ struct{}) (string, error) {
		user, _ := scope.UserFrom(ctx)
		fmt.Println("get_cart ran for", user)
		return "", nil
	})
	alice := scope.WithUser(context.Background(), "alice")
	cart(alice, struct{}{})

	t, _ := agentcache.TargetResourceIn(alice, getCart)
	c.Invalidate(alice, t)
	cart(alice, struct{}{})

	_, err := agentcache.TargetResourceIn(context.Background(), getCart)
	fmt.Println(errors.Is(err, scope.ErrMissing))
	// Output:
	// get_cart ran for alice
	// get_cart ran for alice
	// true
}

// A tool that panics does not crash the caller: every caller waiting on the
// load gets a *PanicError, whose message is one line naming the resource.
// Nothing is cached.
func ExamplePanicError() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	cart, _ := agentcache.Wrap(c, resource.Resource{Name: "get_cart", TTL: time.Minute},
		func(ctx context.Context, id string) (string, error) {
			panic("inventory client is nil")
		})
	_, err := cart(context.Background(), "c-42")
	var pe *agentcache.PanicError
	fmt.Println(errors.As(err, &pe), pe.Resource)
	fmt.Println(err)
	// Output:
	// true get_cart
	// agentcache: get_cart: the tool panicked: inventory client is nil
}

// When L2 cannot be reached, an invalidation still applies on this instance
// and returns a *FleetError saying that the other instances were not told.
func ExampleFleetError() {
	backend := fake.NewBackend(fake.BackendOptions{}) // stands in for Redis
	defer backend.Close()
	c, _ := agentcache.New(agentcache.Options{
		L2:     backend.Remote("shop:"),
		Logger: slog.New(slog.DiscardHandler), // keep the example's output to its own lines
	})
	defer c.Close(context.Background())

	backend.SetError(errors.New("connection refused")) // Redis is down
	err := c.Invalidate(context.Background(), agentcache.TargetUser("alice"))
	var fe *agentcache.FleetError
	fmt.Println(errors.As(err, &fe), fe.Op)
	backend.SetError(nil)
	// Output:
	// true invalidate
}

// After Close every call returns ErrClosed.
func ExampleCache_Close() {
	c, _ := agentcache.New(agentcache.Options{})
	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: time.Minute},
		func(ctx context.Context, city string) (string, error) { return "12°C in " + city, nil })

	fmt.Println(c.Close(context.Background()))
	_, err := weather(context.Background(), "Oslo")
	fmt.Println(errors.Is(err, agentcache.ErrClosed))
	// Output:
	// <nil>
	// true
}

// Memo.Invalidate drops the result memoized for some arguments; Purge drops
// them all.
func ExampleMemo_Invalidate() {
	forecast, _ := agentcache.Memoize(func(ctx context.Context, city string) (string, error) {
		fmt.Println("computing", city)
		return "12°C in " + city, nil
	}, agentcache.MemoOptions[string]{})

	ctx := context.Background()
	forecast.Call(ctx, "Oslo")
	forecast.Call(ctx, "Paris")
	forecast.Invalidate(ctx, "Oslo")
	forecast.Call(ctx, "Oslo")
	forecast.Call(ctx, "Paris") // still memoized
	forecast.Purge(ctx)
	forecast.Call(ctx, "Paris")
	// Output:
	// computing Oslo
	// computing Paris
	// computing Oslo
	// computing Paris
}

// ArgLimits bounds the arguments a tool accepts for hashing: larger or deeper
// ones are refused and the tool is not called.
func ExampleArgLimits() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	search, _ := agentcache.Wrap(c, resource.Resource{Name: "search_docs", TTL: time.Minute},
		func(ctx context.Context, args json.RawMessage) ([]string, error) {
			fmt.Println("tool called")
			return []string{"returns-policy.md"}, nil
		},
		agentcache.ArgLimits(resource.Limits{MaxBytes: 64}))

	_, err := search(context.Background(), json.RawMessage(`{"query":"`+strings.Repeat("refund ", 20)+`"}`))
	fmt.Println(errors.Is(err, resource.ErrTooLarge))
	// Output:
	// true
}

// A tool option that does not apply to a wrapper is refused, not ignored:
// batches never take the fleet lock, so WrapBatch refuses NoFleetLock.
func ExampleNoFleetLock() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	_, err := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: time.Minute},
		func(ctx context.Context, city string) (string, error) { return "12°C", nil },
		agentcache.NoFleetLock())
	fmt.Println(err)
	_, err = agentcache.WrapBatch(c, resource.Resource{Name: "get_prices", TTL: time.Minute},
		func(ctx context.Context, ids []string) (map[string]int, error) { return nil, nil },
		agentcache.NoFleetLock())
	fmt.Println(err)
	// Output:
	// <nil>
	// agentcache: WrapBatch get_prices: the NoFleetLock option does not apply to WrapBatch
}
