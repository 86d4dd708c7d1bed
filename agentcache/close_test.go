package agentcache

import (
	"context"
	"errors"
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

// TestCloseLetsABatchToolFinish: the same for a batch tool that Batch.Get
// dispatched in the background: Close waits for it, and its callers get
// their values.
func TestCloseLetsABatchToolFinish(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var cancelled atomic.Bool
	b, err := WrapBatch(c, resource.Resource{Name: "close_batch", TTL: time.Minute},
		func(ctx context.Context, ids []int) (map[int]string, error) {
			close(entered)
			<-release
			cancelled.Store(ctx.Err() != nil)
			out := map[int]string{}
			for _, id := range ids {
				out[id] = "item"
			}
			return out, nil
		}, MaxBatchSize(1)) // a full window goes out at once
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		v, err := b.Get(context.Background(), 1)
		if err == nil && v != "item" {
			err = errors.New("got " + v)
		}
		got <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- c.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch tool was still running", err)
	case <-time.After(50 * time.Millisecond): // not an assertion: a chance for a wrong Close to show
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the batch's caller got %v", err)
	}
	if cancelled.Load() {
		t.Fatal("the batch tool's context was cancelled by a Close whose ctx never ended")
	}
}
