package agentmcp_test

import (
	"time"

	"context"
	"strings"
	"testing"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/scope"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// TestTwoInstancesShareRedis runs two MCP servers, each with its own Cache
// (its own L1) on one real redis-server: a result one instance cached is
// served by the other from L2, decoded into an equal result, and a write on
// one instance invalidates that user's entry on both.
func TestTwoInstancesShareRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a redis-server")
	}
	srv := redistest.Start(t)
	instance := func() *fixture {
		store, err := acredis.NewFromURL(srv.URL(), acredis.Options{Prefix: "agentmcp-test:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		return newFixture(t, agentcache.Options{L2: store}, nil, nil)
	}
	a, b := instance(), instance()
	ctx := scope.WithUser(context.Background(), "alice")
	onA, onB := a.connect(ctx), b.connect(ctx)

	want := textOf(t, call(t, onA, "get_cart", `{}`))
	if want != "cart of alice (run 1)" {
		t.Fatalf("first call: %q", want)
	}
	wait.For(t, 5*time.Second, "a writes get_cart to L2 (written behind)", func() bool { return a.cache.Stats().WritesDone > 0 })
	if got := textOf(t, call(t, onB, "get_cart", `{}`)); got != want {
		t.Errorf("instance b: %q, want a's %q from L2", got, want)
	}
	wantRuns(t, b, "get_cart", 0)
	if s := b.cache.Stats(); s.L2Hits != 1 {
		t.Errorf("instance b: %d L2 hits, want 1", s.L2Hits)
	}

	call(t, onB, "add_to_cart", `{"item":"tea"}`)
	// b invalidated; a learns it from the invalidation message.
	wait.For(t, 5*time.Second, "a serves the cart loaded after b's add_to_cart", func() bool {
		return strings.HasPrefix(textOf(t, call(t, onA, "get_cart", `{}`)), "cart of alice (run 2)")
	})
	wantRuns(t, a, "get_cart", 2)
}
