package agentcache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// TestWrapMutationKeepsItsOwnResources: the resources a mutation
// invalidates are those given to WrapMutation, whatever the caller does
// with its slice afterwards.
func TestWrapMutationKeepsItsOwnResources(t *testing.T) {
	c := newL1(t, Options{})
	cart := resource.Resource{Name: "mut_cart", Scope: scope.User, TTL: time.Hour}
	other := resource.Resource{Name: "mut_other", Scope: scope.User, TTL: time.Hour}
	var runs int
	get, err := Wrap(c, cart, func(context.Context, struct{}) (int, error) { runs++; return runs, nil })
	if err != nil {
		t.Fatal(err)
	}
	rs := []resource.Resource{cart}
	add, err := WrapMutation(c, rs, func(context.Context, string) (bool, error) { return true, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Wrap(c, other, func(context.Context, struct{}) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	rs[0] = other // the caller reuses its slice
	ctx := scope.WithUser(context.Background(), "alice")
	get(ctx, struct{}{})
	if _, err := add(ctx, "lamp"); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(ctx, struct{}{}); v != 2 {
		t.Fatalf("get_cart after the mutation = %d, want 2: the mutation invalidated the caller's new slice, not its resources", v)
	}
}

// TestWriteThroughFailureDoesNotFailTheCall: as WriteThrough's doc says, a
// write that L2 refuses returns the tool's result without an error, keeps it
// in this instance's L1, and is counted.
func TestWriteThroughFailureDoesNotFailTheCall(t *testing.T) {
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	c := newL1(t, Options{L2: backend.Remote("wt:")})
	var runs int
	get, err := Wrap(c, resource.Resource{Name: "wt_rates", TTL: time.Hour},
		func(context.Context, string) (string, error) { runs++; return "1.08", nil }, WriteThrough(), NoFleetLock())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	backend.SetError(errors.New("connection refused"))
	before := c.Stats()
	if v, err := get(ctx, "EURUSD"); err != nil || v != "1.08" {
		t.Fatalf("with L2 refusing writes: %q, %v; want the tool's result and no error", v, err)
	}
	after := c.Stats()
	if after.L2Errors+after.WritesSkipped <= before.L2Errors+before.WritesSkipped {
		t.Fatalf("the failed write was not counted: before %+v, after %+v", before, after)
	}
	if v, err := get(ctx, "EURUSD"); err != nil || v != "1.08" || runs != 1 || c.Stats().L1Hits != after.L1Hits+1 {
		t.Fatalf("second call: %q, %v after %d runs; want an L1 hit", v, err, runs)
	}
}
