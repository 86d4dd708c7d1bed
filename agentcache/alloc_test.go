package agentcache

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// TestHitsDoNotAllocate holds the hit paths to their allocation budgets: an
// L1 hit through Get allocates nothing, a typed tool hit at most once (the
// argument boxed for hashing), a JSON tool hit nothing. scripts/test runs it
// without the race detector, under which the counts mean nothing.
func TestHitsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector; scripts/test runs this without it")
	}
	c := newL1(t, Options{})
	ctx := scope.WithUser(context.Background(), "alice")
	if err := c.Set(ctx, "k", &user{ID: "k"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	load := LoaderFunc[*user](func(context.Context, string) (*user, error) {
		t.Error("the loader ran: Get missed L1")
		return nil, nil
	})
	if n := testing.AllocsPerRun(200, func() { _, _ = Get(ctx, c, "k", load) }); n != 0 {
		t.Errorf("an L1 hit through Get allocates %v times; want 0", n)
	}

	res := resource.Resource{Name: "get_user", Scope: scope.User, TTL: time.Hour}
	typed, err := Wrap(c, res, func(_ context.Context, a benchArgs) (*user, error) { return &user{ID: a.Locale}, nil })
	if err != nil {
		t.Fatal(err)
	}
	args := benchArgs{ID: 7, Locale: "en-US"}
	if _, err := typed(ctx, args); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = typed(ctx, args) }); n > 1 {
		t.Errorf("a typed tool hit allocates %v times; want at most 1", n)
	}

	jres := resource.Resource{Name: "get_doc", Scope: scope.User, TTL: time.Hour}
	jtool, err := WrapJSON(c, jres, func(_ context.Context, a json.RawMessage) (json.RawMessage, error) { return a, nil })
	if err != nil {
		t.Fatal(err)
	}
	jargs := json.RawMessage(`{"id": 7, "locale": "en-US"}`)
	if _, err := jtool(ctx, jargs); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = jtool(ctx, jargs) }); n != 0 {
		t.Errorf("a JSON tool hit allocates %v times; want 0", n)
	}
	if s := c.Stats(); s.Loads != 2 {
		t.Errorf("%d loads; every measured call should have been an L1 hit", s.Loads)
	}
}
