package agentcache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
)

// TestCloseLetsBackgroundToolsFinish: a tool running in the background (a
// refresh-ahead reload, a batch) is a load like those of the caller's path:
// Close gives it until Close's ctx ends and cancels it only then, so a Close
// with a context that does not end waits for it and the tool never sees its
// context cancelled; its result is stored.
func TestCloseLetsBackgroundToolsFinish(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	var elapsed atomic.Int64
	c, err := New(Options{Now: func() time.Time { return start.Add(time.Duration(elapsed.Load())) }, TTLJitter: -1})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	var cancelled atomic.Bool
	weather, err := Wrap(c, resource.Resource{Name: "close_refresh", TTL: 10 * time.Minute},
		func(ctx context.Context, city string) (string, error) {
			if runs.Add(1) == 2 { // the refresh
				close(entered)
				<-release
				if ctx.Err() != nil {
					cancelled.Store(true)
				}
			}
			return "sunny in " + city, nil
		}, RefreshAhead(0.5))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := weather(ctx, "Oslo"); err != nil {
		t.Fatal(err)
	}
	elapsed.Add(int64(6 * time.Minute)) // past half the TTL: the next hit refreshes
	if _, err := weather(ctx, "Oslo"); err != nil {
		t.Fatal(err)
	}
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- c.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a refresh was still running", err)
	case <-time.After(50 * time.Millisecond):
		// Not a timing assertion: Close must not return before release;
		// this only gives a wrong Close the chance to show itself.
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
	if cancelled.Load() {
		t.Fatal("the refresh's context was cancelled by a Close whose ctx never ended")
	}
	if got := c.Stats().Refreshes; got != 1 {
		t.Fatalf("Refreshes = %d, want 1", got)
	}
}
