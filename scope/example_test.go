package scope_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentcache/agentcache-go/scope"
)

func ExampleWithUser() {
	ctx := scope.WithUser(context.Background(), "alice")

	id, err := scope.ID(ctx, scope.User)
	fmt.Printf("user: %q, %v\n", id, err)

	// A per-session resource in a context without a session fails; it
	// never falls back to a shared entry.
	_, err = scope.ID(ctx, scope.Session)
	fmt.Println(errors.Is(err, scope.ErrMissing), err)

	// An invalid ID is remembered as invalid, not dropped.
	bad := scope.WithUser(ctx, "alice ")
	_, err = scope.ID(bad, scope.User)
	fmt.Println(errors.Is(err, scope.ErrInvalid), err)

	// Global resources need no ID.
	id, err = scope.ID(context.Background(), scope.Global)
	fmt.Printf("global: %q, %v\n", id, err)
	// Output:
	// user: "alice", <nil>
	// true scope: no session ID in context (set it with scope.WithSession)
	// true scope: invalid user ID: white space U+0020 at byte 5
	// global: "", <nil>
}

func ExampleAppendEscaped() {
	key := []byte("myapp:get_cart@1:{")
	key = scope.AppendEscaped(key, "tenant:7/{bob}")
	key = append(key, '}')
	fmt.Println(string(key))

	id, _ := scope.Unescape("tenant%3A7%2F%7Bbob%7D")
	fmt.Println(id)
	// Output:
	// myapp:get_cart@1:{tenant%3A7%2F%7Bbob%7D}
	// tenant:7/{bob}
}
