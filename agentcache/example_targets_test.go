package agentcache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// TargetUser drops every per-user entry of one user, whatever the resource
// (at logout, say); other users keep theirs.
func ExampleTargetUser() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	perUser := func(name string) func(context.Context, struct{}) (string, error) {
		tool, _ := agentcache.Wrap(c, resource.Resource{Name: name, Scope: scope.User, TTL: time.Hour},
			func(ctx context.Context, _ struct{}) (string, error) {
				user, _ := scope.UserFrom(ctx)
				fmt.Println(name, "ran for", user)
				return "", nil
			})
		return tool
	}
	cart, orders := perUser("get_cart"), perUser("list_orders")
	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	cart(alice, struct{}{})
	orders(alice, struct{}{})
	cart(bob, struct{}{})

	c.Invalidate(context.Background(), agentcache.TargetUser("alice"))
	fmt.Println("invalidated alice")
	cart(alice, struct{}{})
	orders(alice, struct{}{})
	cart(bob, struct{}{}) // cached
	// Output:
	// get_cart ran for alice
	// list_orders ran for alice
	// get_cart ran for bob
	// invalidated alice
	// get_cart ran for alice
	// list_orders ran for alice
}

// TargetResource drops every entry of one resource, in every scope (after a
// change that affects all its answers); other resources keep theirs.
func ExampleTargetResource() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	getWeather := resource.Resource{Name: "get_weather", TTL: 10 * time.Minute}
	weather, _ := agentcache.Wrap(c, getWeather, func(ctx context.Context, city string) (string, error) {
		fmt.Println("get_weather ran for", city)
		return "12°C", nil
	})
	news, _ := agentcache.Wrap(c, resource.Resource{Name: "get_news", TTL: 10 * time.Minute},
		func(ctx context.Context, city string) (string, error) {
			fmt.Println("get_news ran for", city)
			return "all quiet", nil
		})
	weather(ctx, "Oslo")
	weather(ctx, "Paris")
	news(ctx, "Oslo")

	c.Invalidate(ctx, agentcache.TargetResource(getWeather))
	fmt.Println("invalidated get_weather")
	weather(ctx, "Oslo")
	weather(ctx, "Paris")
	news(ctx, "Oslo") // cached
	// Output:
	// get_weather ran for Oslo
	// get_weather ran for Paris
	// get_news ran for Oslo
	// invalidated get_weather
	// get_weather ran for Oslo
	// get_weather ran for Paris
}

// TargetResourceScope drops one resource in one scope: alice's cart, not her
// orders and not bob's cart. (WrapMutation does this for the caller's scope.)
func ExampleTargetResourceScope() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())

	getCart := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: time.Hour}
	perUser := func(r resource.Resource) func(context.Context, struct{}) (string, error) {
		tool, _ := agentcache.Wrap(c, r, func(ctx context.Context, _ struct{}) (string, error) {
			user, _ := scope.UserFrom(ctx)
			fmt.Println(r.Name, "ran for", user)
			return "", nil
		})
		return tool
	}
	cart := perUser(getCart)
	orders := perUser(resource.Resource{Name: "list_orders", Scope: scope.User, TTL: time.Hour})
	alice := scope.WithUser(context.Background(), "alice")
	bob := scope.WithUser(context.Background(), "bob")
	cart(alice, struct{}{})
	orders(alice, struct{}{})
	cart(bob, struct{}{})

	c.Invalidate(context.Background(), agentcache.TargetResourceScope(getCart, "alice"))
	fmt.Println("invalidated alice's get_cart")
	cart(alice, struct{}{})
	orders(alice, struct{}{}) // cached
	cart(bob, struct{}{})     // cached
	// Output:
	// get_cart ran for alice
	// list_orders ran for alice
	// get_cart ran for bob
	// invalidated alice's get_cart
	// get_cart ran for alice
}

// TargetCall drops the one entry of one call: the arguments as the tool
// takes them, and the scope ID ("" for a global resource).
func ExampleTargetCall() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	getWeather := resource.Resource{Name: "get_weather", TTL: 10 * time.Minute}
	weather, _ := agentcache.Wrap(c, getWeather, func(ctx context.Context, a weatherArgs) (string, error) {
		fmt.Println("get_weather ran for", a.City)
		return "12°C", nil
	})
	weather(ctx, weatherArgs{City: "Oslo"})
	weather(ctx, weatherArgs{City: "Paris"})

	c.Invalidate(ctx, agentcache.TargetCall(getWeather, "", weatherArgs{City: "Paris"}))
	fmt.Println("invalidated get_weather for Paris")
	weather(ctx, weatherArgs{City: "Oslo"}) // cached
	weather(ctx, weatherArgs{City: "Paris"})
	// Output:
	// get_weather ran for Oslo
	// get_weather ran for Paris
	// invalidated get_weather for Paris
	// get_weather ran for Paris
}

// TargetAll drops every entry of every resource and of the key-value API.
func ExampleTargetAll() {
	c, _ := agentcache.New(agentcache.Options{})
	defer c.Close(context.Background())
	ctx := context.Background()

	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: 10 * time.Minute},
		func(ctx context.Context, city string) (string, error) {
			fmt.Println("get_weather ran for", city)
			return "12°C", nil
		})
	load := func(ctx context.Context, key string) (string, error) {
		fmt.Println("loading", key)
		return "value of " + key, nil
	}
	weather(ctx, "Oslo")
	agentcache.Get(ctx, c, "user:42", load)

	c.Invalidate(ctx, agentcache.TargetAll())
	fmt.Println("invalidated everything")
	weather(ctx, "Oslo")
	agentcache.Get(ctx, c, "user:42", load)
	// Output:
	// get_weather ran for Oslo
	// loading user:42
	// invalidated everything
	// get_weather ran for Oslo
	// loading user:42
}
