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

var getOrder = resource.Resource{Name: "get_order", Scope: scope.User, TTL: time.Minute, NegativeTTL: 10 * time.Second}

func TestNegativeCacheL1Only(t *testing.T) {
	clk := newTestClock()
	c := newL1(t, Options{Now: clk.Now})
	var calls atomic.Int32
	get, _ := Wrap(c, getOrder, func(ctx context.Context, id string) (string, error) {
		calls.Add(1)
		if id == "o-1" {
			return "order o-1", nil
		}
		return "", fmt.Errorf("order %s: %w", id, ErrNotFound)
	})
	ctx := scope.WithUser(context.Background(), "alice")
	if _, err := get(ctx, "o-404"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("first call: %v", err)
	}
	if _, err := get(ctx, "o-404"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("repeat: %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("tool ran %d times for a repeated not-found", calls.Load())
	}
	if v, err := get(ctx, "o-1"); err != nil || v != "order o-1" {
		t.Fatalf("positive call: %q, %v", v, err)
	}
	// Another user's identical guess is their own question.
	if _, err := get(scope.WithUser(context.Background(), "bob"), "o-404"); !errors.Is(err, ErrNotFound) || calls.Load() != 3 {
		t.Fatalf("bob's call: %v, calls %d", err, calls.Load())
	}
	clk.Advance(11 * time.Second)
	get(ctx, "o-404")
	if calls.Load() != 4 {
		t.Fatalf("after the negative TTL the tool ran %d times in all, want 4", calls.Load())
	}
	if s := c.Stats(); s.NegativeHits != 1 || s.NegativeStored != 3 || s.LoadErrors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNegativeWhenPredicate(t *testing.T) {
	c := newL1(t, Options{})
	var calls atomic.Int32
	search, _ := Wrap(c, resource.Resource{Name: "search", TTL: time.Minute}, func(ctx context.Context, q string) ([]string, error) {
		calls.Add(1)
		return nil, nil
	}, NegativeWhen(func(r []string) bool { return len(r) == 0 }))
	for i := 0; i < 3; i++ {
		if _, err := search(context.Background(), "nothing"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("tool ran %d times", calls.Load())
	}
}

func TestNegativeClearedByInvalidation(t *testing.T) {
	c := newL1(t, Options{})
	created := false
	get, _ := Wrap(c, getOrder, func(ctx context.Context, id string) (string, error) {
		if created {
			return "order " + id, nil
		}
		return "", ErrNotFound
	})
	ctx := scope.WithUser(context.Background(), "alice")
	get(ctx, "o-9")
	created = true
	if err := c.Invalidate(ctx, TargetResourceScope(getOrder, "alice")); err != nil {
		t.Fatal(err)
	}
	if v, err := get(ctx, "o-9"); err != nil || v != "order o-9" {
		t.Fatalf("after invalidation: %q, %v", v, err)
	}
}

func TestNegativeFloodKeepsPositiveEntriesWithoutL2(t *testing.T) {
	c := newL1(t, Options{L1MaxEntries: 1000})
	get, _ := Wrap(c, resource.Resource{Name: "get_product", TTL: time.Hour, NegativeTTL: time.Hour}, func(ctx context.Context, id int) (string, error) {
		if id < 500 {
			return "p" + strconv.Itoa(id), nil
		}
		return "", ErrNotFound
	})
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		get(ctx, i)
	}
	for i := 500; i < 100_500; i++ {
		if _, err := get(ctx, i); !errors.Is(err, ErrNotFound) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	before := c.Stats().L1Hits
	for i := 0; i < 500; i++ {
		if v, err := get(ctx, i); err != nil || v != "p"+strconv.Itoa(i) {
			t.Fatalf("positive %d after the flood: %q, %v", i, v, err)
		}
	}
	if hits := c.Stats().L1Hits - before; hits != 500 {
		t.Fatalf("%d of 500 positive entries were L1 hits after 100k negative keys", hits)
	}
}
