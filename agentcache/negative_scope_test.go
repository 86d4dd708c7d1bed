package agentcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// Issue 16: without L2 the negative filter is trusted, so one scope's
// guesses must not raise the false-positive rate of another scope's
// lookups. Mallory fills the filter that, before the fix, every user
// shared (10k keys per generation: both generations full, about 1% false
// positives, so about 100 of alice's 10k lookups came back "not found");
// alice's own lookups, of orders that exist and were never "not found",
// must all reach the tool.
func TestNegativeFloodOfOneScopeSparesOthers(t *testing.T) {
	const (
		expected = 10_000
		flood    = 2 * expected // fills both generations of a shared filter
		probes   = 10_000
	)
	res := resource.Resource{Name: "get_order", Scope: scope.User, TTL: time.Hour, NegativeTTL: time.Hour}
	// Mallory's orders do not exist; everyone else's do.
	tool := func(ctx context.Context, id int) (string, error) {
		if u, _ := scope.UserFrom(ctx); u == "mallory" {
			return "", fmt.Errorf("order %d: %w", id, ErrNotFound)
		}
		return "order " + strconv.Itoa(id), nil
	}
	mallory := scope.WithUser(context.Background(), "mallory")
	alice := scope.WithUser(context.Background(), "alice")

	t.Run("single", func(t *testing.T) {
		c := newL1(t, Options{Negative: NegativeOptions{ExpectedKeys: expected}})
		var runs atomic.Int64
		get, err := Wrap(c, res, func(ctx context.Context, id int) (string, error) {
			runs.Add(1)
			return tool(ctx, id)
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range flood {
			if _, err := get(mallory, i); !errors.Is(err, ErrNotFound) {
				t.Fatalf("mallory's guess %d: %v", i, err)
			}
		}
		// Her latest guess is still remembered: her own negative cache works.
		before := runs.Load()
		if _, err := get(mallory, flood-1); !errors.Is(err, ErrNotFound) || runs.Load() != before {
			t.Fatalf("mallory's repeated guess: %v, %d tool runs; want ErrNotFound from the cache", err, runs.Load()-before)
		}
		wrong := 0
		for i := range probes {
			id := 1_000_000 + i // never asked by anyone
			v, err := get(alice, id)
			switch {
			case errors.Is(err, ErrNotFound):
				wrong++
			case err != nil || v != "order "+strconv.Itoa(id):
				t.Fatalf("alice's order %d: %q, %v", id, v, err)
			}
		}
		if wrong != 0 {
			t.Fatalf("%d of alice's %d lookups of existing orders were answered \"not found\" after mallory's %d guesses; want 0", wrong, probes, flood)
		}
	})

	t.Run("batch", func(t *testing.T) {
		c := newL1(t, Options{Negative: NegativeOptions{ExpectedKeys: expected}})
		b, err := WrapBatch(c, res, func(ctx context.Context, ids []int) (map[int]string, error) {
			out := make(map[int]string, len(ids))
			for _, id := range ids {
				if v, err := tool(ctx, id); err == nil {
					out[id] = v
				}
			}
			return out, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int, 0, 1000)
		for from := 0; from < flood; from += cap(ids) {
			ids = ids[:0]
			for i := from; i < from+cap(ids); i++ {
				ids = append(ids, i)
			}
			got, err := b.GetMany(mallory, ids)
			if err != nil || len(got) != 0 {
				t.Fatalf("mallory's guesses from %d: %d found, %v", from, len(got), err)
			}
		}
		wrong := 0
		for from := 0; from < probes; from += cap(ids) {
			ids = ids[:0]
			for i := from; i < from+cap(ids); i++ {
				ids = append(ids, 1_000_000+i)
			}
			got, err := b.GetMany(alice, ids)
			if err != nil {
				t.Fatal(err)
			}
			wrong += len(ids) - len(got)
		}
		if wrong != 0 {
			t.Fatalf("%d of alice's %d batch lookups of existing orders were answered \"not found\" after mallory's %d guesses; want 0", wrong, probes, flood)
		}
	})
}

// A per-user resource keeps the negative filters of its maxNegScopes most
// recently used scopes: a scope whose filter was evicted forgets its "not
// found" answers (the tool runs again) and is never answered wrongly.
func TestNegativeScopeFiltersAreBounded(t *testing.T) {
	c := newL1(t, Options{})
	res := resource.Resource{Name: "get_ticket", Scope: scope.User, TTL: time.Hour, NegativeTTL: time.Hour}
	var runs atomic.Int64
	get, err := Wrap(c, res, func(ctx context.Context, id int) (string, error) {
		runs.Add(1)
		return "", ErrNotFound
	})
	if err != nil {
		t.Fatal(err)
	}
	const users = maxNegScopes + 44
	userCtx := func(i int) context.Context { return scope.WithUser(context.Background(), "user-"+strconv.Itoa(i)) }
	for i := range users {
		if _, err := get(userCtx(i), 404); !errors.Is(err, ErrNotFound) {
			t.Fatalf("user %d: %v", i, err)
		}
	}
	rs, err := c.register(res)
	if err != nil {
		t.Fatal(err)
	}
	if n := rs.neg.Load().by.Len(); n != maxNegScopes {
		t.Fatalf("%d scopes have a negative filter after %d users' guesses; want the bound, %d", n, users, maxNegScopes)
	}
	if rs.neg.Load().one != nil {
		t.Fatal("a per-user resource has a resource-wide negative filter too")
	}
	// The latest user is remembered; the first, evicted, asks the tool again.
	before := runs.Load()
	if _, err := get(userCtx(users-1), 404); !errors.Is(err, ErrNotFound) || runs.Load() != before {
		t.Fatalf("the latest user's repeat: %v, %d tool runs; want a cached ErrNotFound", err, runs.Load()-before)
	}
	if _, err := get(userCtx(0), 404); !errors.Is(err, ErrNotFound) || runs.Load() != before+1 {
		t.Fatalf("the evicted user's repeat: %v, %d tool runs; want the tool's ErrNotFound", err, runs.Load()-before)
	}
}
