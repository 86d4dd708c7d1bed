package agentcache

import (
	"context"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// TestInvalidationsHeardAreCounted: an instance counts the invalidations of
// other instances it applied, and not its own, so that a fleet whose
// messages stop arriving shows it in Stats.
func TestInvalidationsHeardAreCounted(t *testing.T) {
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	a := newL1(t, Options{L2: backend.Remote("heard:")})
	b := newL1(t, Options{L2: backend.Remote("heard:")})
	ctx := context.Background()
	wait.For(t, 5*time.Second, "both subscriptions", func() bool { return a.bus.live.Load() && b.bus.live.Load() })
	for name, act := range map[string]func() error{
		"Invalidate": func() error { return a.Invalidate(ctx, TargetUser("alice")) },
		"Delete":     func() error { return a.Delete(ctx, "k") },
		"Clear":      func() error { return a.Clear(ctx) },
	} {
		before := b.Stats().InvalidationsHeard
		if err := act(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wait.For(t, 5*time.Second, name+" heard by b", func() bool { return b.Stats().InvalidationsHeard > before })
	}
	if got := a.Stats().InvalidationsHeard; got != 0 {
		t.Fatalf("a counted %d of its own invalidations as heard, want 0", got)
	}
}
