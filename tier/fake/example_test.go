package fake_test

import (
	"context"
	"fmt"

	"github.com/agentcache/agentcache-go/tier/fake"
)

// Two instances of one service share a backend, as they would share a Redis:
// a value one writes is a hit for the other, and a message one publishes
// reaches the other's subscription. A store with another prefix sees none of
// it.
func ExampleBackend() {
	backend := fake.NewBackend(fake.BackendOptions{})
	defer backend.Close()
	ctx := context.Background()

	a := backend.Remote("shop:")
	b := backend.Remote("shop:")
	other := backend.Remote("billing:")

	sub, _ := b.Subscribe(ctx, "invalidations")
	defer sub.Close()
	fmt.Println("first delivery is a reset:", (<-sub.C()).Reset)

	_ = a.Set(ctx, "cart:42", []byte(`{"items":3}`), 0)
	v, ok, _ := b.Get(ctx, "cart:42")
	fmt.Printf("b sees a's write: %s %v\n", v, ok)
	_, ok, _ = other.Get(ctx, "cart:42")
	fmt.Println("another prefix sees it:", ok)

	_ = a.Publish(ctx, "invalidations", []byte("cart:42"))
	fmt.Printf("b receives: %s\n", (<-sub.C()).Payload)
	// Output:
	// first delivery is a reset: true
	// b sees a's write: {"items":3} true
	// another prefix sees it: false
	// b receives: cart:42
}
