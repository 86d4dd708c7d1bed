package agentcache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
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

// Close drains the write-behind queue: writes held up by a stalled L2 when
// Close starts all land once L2 answers, and a new instance reads them.
func TestCloseDrainsWriteQueue(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			e := backend.open(t, 2)
			c := rcNew(t, Options{L2: e.stores[0], L2Timeout: 20 * time.Second})
			rcSubscribed(t, c)
			ctx := context.Background()
			if err := c.Set(ctx, "warm", -1, time.Hour); err != nil {
				t.Fatal(err)
			}
			wait.For(t, 5*time.Second, "the warm-up write", func() bool { return c.Stats().WritesDone == 1 })

			// With L2 paused the writer is stuck, so the writes are still
			// queued, or in the writer's stalled call, when Close starts.
			e.Pause()
			const n = 50
			for i := 0; i < n; i++ {
				if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			// Not WriteQueueDepth: the writer may have taken all of them
			// into the one call that the pause holds up (WriteBatchSize > n).
			if s := c.Stats(); s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesFenced+s.WritesDropped >= s.WritesQueued {
				t.Fatalf("every write settled while L2 is paused; the test cannot tell whether Close drains (stats %+v)", s)
			}
			closed := make(chan error, 1)
			go func() {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				closed <- c.Close(cctx)
			}()
			wait.For(t, 5*time.Second, "Close to start", c.closed.Load)
			// A second Close waits for the first: with a context that has
			// ended it says the first is still draining; with one that does
			// not end it returns once the queue is drained.
			ended, cancel := context.WithCancel(ctx)
			cancel()
			if err := c.Close(ended); !errors.Is(err, context.Canceled) {
				t.Fatalf("a second Close while the first drains, its ctx ended: %v; want context.Canceled", err)
			}
			second := make(chan Stats, 1)
			go func() {
				if err := c.Close(ctx); err != nil {
					t.Errorf("a second Close while the first drains: %v", err)
				}
				second <- c.Stats()
			}()
			e.Resume()
			select {
			case err := <-closed:
				if err != nil {
					t.Fatalf("Close: %v", err)
				}
			case <-time.After(40 * time.Second):
				t.Fatal("Close did not return")
			}
			if s := c.Stats(); s.WritesDone != n+1 || s.WritesDropped != 0 {
				t.Fatalf("after Close: %d writes done, %d dropped; want %d and 0", s.WritesDone, s.WritesDropped, n+1)
			}
			if s := <-second; s.WritesDone != n+1 {
				t.Fatalf("the second Close returned with %d writes done; want all %d (it returned before the first had drained)", s.WritesDone, n+1)
			}

			// Everything is in L2: a new instance reads it all from there.
			d := rcNew(t, Options{L2: e.stores[1]})
			never := func(_ context.Context, key string) (int, error) {
				return 0, fmt.Errorf("%s was not in L2 after Close", key)
			}
			for i := 0; i < n; i++ {
				if v, err := Get(ctx, d, fmt.Sprintf("k%d", i), never); err != nil || v != i {
					t.Fatalf("k%d after Close: %d, %v", i, v, err)
				}
			}
			if s := d.Stats(); s.L2Hits != n {
				t.Fatalf("new instance: %d L2 hits, want %d", s.L2Hits, n)
			}
		})
	}
}
