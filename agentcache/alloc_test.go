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
// L1 hit through Get, a typed tool hit (flat, nested, short or long
// arguments) and a JSON tool hit allocate nothing. scripts/test runs it
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
	load := func(context.Context, string) (*user, error) {
		t.Error("the loader ran: Get missed L1")
		return nil, nil
	}
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
	if n := testing.AllocsPerRun(200, func() { _, _ = typed(ctx, args) }); n != 0 {
		t.Errorf("a typed tool hit allocates %v times; want 0", n)
	}
	// Arguments encoded by reflection (not a flat struct), and arguments
	// long enough to be keyed by their hash, allocate nothing either.
	type nested struct {
		Q       string            `json:"q"`
		Tags    []string          `json:"tags"`
		Filters map[string]string `json:"filters"`
		Near    *benchArgs        `json:"near,omitempty"`
	}
	nres := resource.Resource{Name: "search", Scope: scope.User, TTL: time.Hour}
	ntool, err := Wrap(c, nres, func(_ context.Context, a nested) (*user, error) { return &user{ID: a.Q}, nil })
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]nested{
		"short nested arguments": {Q: "x", Tags: []string{"a"}},
		"long nested arguments":  {Q: "flights from Paris to Tokyo", Tags: []string{"a", "b"}, Filters: map[string]string{"cabin": "economy"}, Near: &args},
	} {
		if _, err := ntool(ctx, a); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(200, func() { _, _ = ntool(ctx, a) }); n != 0 {
			t.Errorf("a typed tool hit with %s allocates %v times; want 0", name, n)
		}
	}

	jres := resource.Resource{Name: "get_doc", Scope: scope.User, TTL: time.Hour}
	jtool, err := Wrap(c, jres, func(_ context.Context, a json.RawMessage) (json.RawMessage, error) { return a, nil })
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
	if s := c.Stats(); s.Loads != 4 {
		t.Errorf("%d loads; every measured call should have been an L1 hit", s.Loads)
	}
}
