package agentcache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

type weatherArgs struct {
	City string `json:"city"`
}

// Wrap a read-only tool once; repeated calls with the same arguments are
// served from the cache. (Give Options.L2 a tier/redis store to share the
// cache between instances.)
func ExampleWrap() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	calls := 0
	getWeather := func(ctx context.Context, a weatherArgs) (string, error) {
		calls++
		return "12°C in " + a.City, nil
	}
	weather, err := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute}, getWeather)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		w, _ := weather(ctx, weatherArgs{City: "Oslo"})
		fmt.Println(w)
	}
	fmt.Println("tool calls:", calls)
	// Output:
	// 12°C in Oslo
	// 12°C in Oslo
	// 12°C in Oslo
	// tool calls: 1
}

// A per-user resource takes the user from the context, and fails closed
// without one.
func ExampleWrap_perUser() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	getCart := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: 2 * time.Minute}
	cart, _ := agentcache.Wrap(c, getCart, func(ctx context.Context, _ struct{}) (string, error) {
		user, _ := scope.UserFrom(ctx)
		return user + "'s cart", nil
	})
	v, _ := cart(scope.WithUser(context.Background(), "alice"), struct{}{})
	fmt.Println(v)
	_, err := cart(context.Background(), struct{}{})
	fmt.Println(errors.Is(err, scope.ErrMissing))
	// Output:
	// alice's cart
	// true
}

// A mutation invalidates the resources it changes, in the caller's scope
// only: add_to_cart drops alice's get_cart, not bob's.
func ExampleWrapMutation() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	carts := map[string][]string{"alice": {"book"}, "bob": {"pen"}}
	getCart := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: 2 * time.Minute}
	loads := 0
	cart, _ := agentcache.Wrap(c, getCart, func(ctx context.Context, _ struct{}) ([]string, error) {
		loads++
		user, _ := scope.UserFrom(ctx)
		return carts[user], nil
	})
	addToCart, _ := agentcache.WrapMutation(c, []resource.Resource{getCart}, func(ctx context.Context, item string) (bool, error) {
		user, _ := scope.UserFrom(ctx)
		carts[user] = append(carts[user], item)
		return true, nil
	})

	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	cart(alice, struct{}{})
	cart(bob, struct{}{})
	addToCart(alice, "lamp")
	a, _ := cart(alice, struct{}{})
	b, _ := cart(bob, struct{}{})
	fmt.Println(a, b, "loads:", loads)
	// Output:
	// [book lamp] [pen] loads: 3
}

// Invalidate a user's scope across every resource, for example at logout.
func ExampleCache_Invalidate() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	loads := 0
	orders, _ := agentcache.Wrap(c, resource.Resource{Name: "list_orders", Scope: scope.User, TTL: time.Hour},
		func(ctx context.Context, _ struct{}) (int, error) { loads++; return 3, nil })
	alice := scope.WithUser(context.Background(), "alice")
	orders(alice, struct{}{})
	orders(alice, struct{}{})
	if err := c.Invalidate(context.Background(), agentcache.TargetUser("alice")); err != nil {
		panic(err)
	}
	orders(alice, struct{}{})
	fmt.Println("loads:", loads)
	// Output:
	// loads: 2
}

// A tool that answers "not found" is not asked the same question again
// within the resource's negative TTL.
func ExampleWrap_notFound() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	asked := 0
	getOrder, _ := agentcache.Wrap(c, resource.Resource{Name: "get_order", TTL: time.Minute, NegativeTTL: 10 * time.Second},
		func(ctx context.Context, id string) (string, error) {
			asked++
			return "", fmt.Errorf("order %s: %w", id, agentcache.ErrNotFound)
		})
	for i := 0; i < 3; i++ {
		_, err := getOrder(context.Background(), "A-999")
		fmt.Println(errors.Is(err, agentcache.ErrNotFound))
	}
	fmt.Println("tool asked:", asked)
	// Output:
	// true
	// true
	// true
	// tool asked: 1
}

// Get is the key-value form, with a loader.
func ExampleGet() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	load := func(ctx context.Context, key string) (string, error) {
		return "value of " + key, nil
	}
	v, _ := agentcache.Get(context.Background(), c, "user:42", load)
	fmt.Println(v, c.Stats().Misses)
	v, _ = agentcache.Get(context.Background(), c, "user:42", load)
	fmt.Println(v, c.Stats().L1Hits)
	// Output:
	// value of user:42 1
	// value of user:42 1
}
