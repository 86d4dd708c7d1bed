package agentcache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// Two instances of one service share an L2 (here the in-memory tier/fake
// backend, standing in for Redis): what one loads, the other is served from
// L2, and an invalidation on one reaches the other through the epochs L2
// keeps.
//
// Two steps are asynchronous by design and are not shown: L2 writes are
// written behind (WriteThrough makes these wait), and the message that drops
// an invalidated entry from another instance's L1 arrives within
// milliseconds, or, if lost, Options.MaxEpochAge bounds it. So B reads
// alice's cart only after A's invalidation: its read carries her epochs from
// L2, and the entry A loaded before the invalidation is a miss.
func ExampleNew_sharedL2() {
	backend := fake.NewBackend(fake.BackendOptions{})
	defer backend.Close()
	ctx := context.Background()
	// A loose L2Timeout, so that a loaded machine cannot time the in-memory
	// L2 out (the default, 250ms, is meant for Redis).
	a, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute})
	defer a.Close(ctx)
	b, _ := agentcache.New(agentcache.Options{L2: backend.Remote("shop:"), L2Timeout: time.Minute})
	defer b.Close(ctx)

	carts := map[string][]string{"alice": {"book"}, "bob": {"pen"}}
	getCart := resource.Resource{Name: "get_cart", Scope: scope.User, TTL: 2 * time.Minute}
	tool := func(ctx context.Context, _ struct{}) ([]string, error) {
		user, _ := scope.UserFrom(ctx)
		fmt.Println("get_cart ran for", user)
		return carts[user], nil
	}
	cartA, _ := agentcache.Wrap(a, getCart, tool, agentcache.WriteThrough())
	cartB, _ := agentcache.Wrap(b, getCart, tool, agentcache.WriteThrough())
	addToCart, _ := agentcache.WrapMutation(a, []resource.Resource{getCart}, func(ctx context.Context, item string) (bool, error) {
		user, _ := scope.UserFrom(ctx)
		carts[user] = append(carts[user], item)
		return true, nil
	})
	alice := scope.WithUser(ctx, "alice")
	bob := scope.WithUser(ctx, "bob")

	// The tool runs once for the fleet: B is served from L2 what A loaded.
	cartA(bob, struct{}{})
	v, _ := cartB(bob, struct{}{})
	fmt.Println("B:", v, "from L2:", b.Stats().L2Hits)

	// A's mutation bumps alice's epoch in L2: once it returns, A serves
	// no cart of alice's loaded before it. B, which holds no copy of her
	// cart, reads her epoch with the entry, so it gets the new cart too.
	cartA(alice, struct{}{})
	addToCart(alice, "lamp")
	v, _ = cartA(alice, struct{}{})
	fmt.Println("A:", v)
	v, _ = cartB(alice, struct{}{})
	fmt.Println("B:", v)
	// Output:
	// get_cart ran for bob
	// B: [pen] from L2: 1
	// get_cart ran for alice
	// get_cart ran for alice
	// A: [book lamp]
	// B: [book lamp]
}
