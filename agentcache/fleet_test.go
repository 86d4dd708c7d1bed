package agentcache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// fleet opens n caches sharing one L2, as n pods would.
func fleet(t *testing.T, l2 func() tier.Remote, n int, o Options) []*Cache {
	t.Helper()
	cs := make([]*Cache, n)
	for i := range cs {
		oo := o
		oo.L2 = l2()
		cs[i] = newL1(t, oo)
	}
	return cs
}

func memFleet(t *testing.T, n int, o Options) []*Cache {
	b := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { b.Close() })
	return fleet(t, func() tier.Remote { return b.Remote("fleet:") }, n, o)
}

// stampede runs callers concurrent calls of one cold key on every cache and
// returns how often the tool ran; every caller must get the value.
func stampede(t *testing.T, cs []*Cache, callers int, opts ...ToolOption) int32 {
	t.Helper()
	var runs atomic.Int32
	res := resource.Resource{Name: "search_docs", TTL: time.Minute}
	tools := make([]func(context.Context, string) (string, error), len(cs))
	for i, c := range cs {
		tools[i], _ = Wrap(c, res, func(ctx context.Context, q string) (string, error) {
			runs.Add(1)
			time.Sleep(50 * time.Millisecond) // a slow, paid tool
			return "results for " + q, nil
		}, opts...)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cs {
		for j := 0; j < callers; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v, err := tools[i](context.Background(), "redis cluster slots")
				if err != nil || v != "results for redis cluster slots" {
					t.Errorf("instance %d caller %d: %q, %v", i, j, v, err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	return runs.Load()
}

func TestFleetLockOneToolCall(t *testing.T) {
	cs := memFleet(t, 8, Options{})
	if n := stampede(t, cs, 50); n != 1 {
		t.Fatalf("8 instances x 50 callers ran the tool %d times, want 1", n)
	}
}

func TestWithoutFleetLockEachInstanceLoads(t *testing.T) {
	cs := memFleet(t, 4, Options{})
	if n := stampede(t, cs, 10, NoFleetLock()); n < 2 {
		t.Fatalf("without the fleet lock the tool ran %d times; the test cannot tell the lock works", n)
	}
}

func TestFleetLockHolderDiesAnotherTakesOver(t *testing.T) {
	cs := memFleet(t, 2, Options{Tuning: TuningOptions{LockLease: 300 * time.Millisecond}})
	res := resource.Resource{Name: "slow_llm", TTL: time.Minute}
	holderStarted := make(chan struct{})
	var runs atomic.Int32
	hold, _ := Wrap(cs[0], res, func(ctx context.Context, q string) (string, error) {
		runs.Add(1)
		close(holderStarted)
		<-ctx.Done() // the holder's process goes away mid-load
		return "", ctx.Err()
	})
	other, _ := Wrap(cs[1], res, func(ctx context.Context, q string) (string, error) {
		runs.Add(1)
		return "answer", nil
	})
	go hold(context.Background(), "q")
	<-holderStarted
	done := make(chan error, 1)
	go func() {
		v, err := other(context.Background(), "q")
		if err == nil && v != "answer" {
			err = errors.New("wrong value " + v)
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the waiter finished while the lease was held: %v", err)
	default:
	}
	// The holder's pod shuts down: Close gives loads a moment, then cancels.
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	cs[0].Close(closeCtx)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no instance completed the load after the holder died")
	}
	if runs.Load() != 2 {
		t.Fatalf("tool ran %d times, want 2 (the dead holder and the taker)", runs.Load())
	}
}

func TestFleetWaiterRespectsItsContext(t *testing.T) {
	cs := memFleet(t, 2, Options{})
	res := resource.Resource{Name: "slow_llm", TTL: time.Minute}
	release := make(chan struct{})
	started := make(chan struct{})
	a, _ := Wrap(cs[0], res, func(ctx context.Context, q string) (string, error) {
		close(started)
		<-release
		return "x", nil
	})
	b, _ := Wrap(cs[1], res, func(ctx context.Context, q string) (string, error) { return "y", nil })
	go a(context.Background(), "q")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b(ctx, "q"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter got %v, want its own deadline", err)
	}
	close(release)
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newTestClock()
	cs := memFleet(t, 1, Options{Now: clk.Now, TTLJitter: -1})
	c := cs[0]
	res := resource.Resource{Name: "get_weather", TTL: time.Minute, StaleWindow: time.Hour}
	var version atomic.Int32
	var fail atomic.Bool
	refreshed := make(chan struct{}, 1000)
	get, _ := Wrap(c, res, func(ctx context.Context, city string) (int32, error) {
		defer func() { refreshed <- struct{}{} }()
		if fail.Load() {
			return 0, errors.New("weather API down")
		}
		return version.Add(1), nil
	})
	ctx := context.Background()
	if v, _ := get(ctx, "oslo"); v != 1 {
		t.Fatalf("first = %d", v)
	}
	<-refreshed
	clk.Advance(2 * time.Minute) // past TTL, inside the stale window
	if v, err := get(ctx, "oslo"); v != 1 || err != nil {
		t.Fatalf("stale read = %d, %v; want the old value at once", v, err)
	}
	<-refreshed // one background refresh
	waitFor(t, func() bool { v, _ := get(ctx, "oslo"); return v == 2 })
	if s := c.Stats(); s.StaleHits < 1 || s.Refreshes != 1 {
		t.Fatalf("stats %+v", s)
	}
	// A failing refresh keeps serving stale until the window ends.
	fail.Store(true)
	clk.Advance(2 * time.Minute)
	for i := 0; i < 3; i++ {
		// Each stale read starts a refresh unless one is still running.
		waitFor(t, func() bool {
			if v, err := get(ctx, "oslo"); v != 2 || err != nil {
				t.Fatalf("stale read with a failing tool = %d, %v", v, err)
			}
			return c.Stats().Refreshes >= uint64(2+i)
		})
	}
	clk.Advance(2 * time.Hour) // the window is over: the error surfaces
	if _, err := get(ctx, "oslo"); err == nil {
		t.Fatal("after the stale window a failing tool still gave a value")
	}
}

func TestRefreshAhead(t *testing.T) {
	clk := newTestClock()
	c := newL1(t, Options{Now: clk.Now, TTLJitter: -1})
	var version atomic.Int32
	get, _ := Wrap(c, resource.Resource{Name: "get_rates", TTL: time.Minute}, func(ctx context.Context, _ struct{}) (int32, error) {
		return version.Add(1), nil
	}, RefreshAhead(0.8))
	ctx := context.Background()
	get(ctx, struct{}{})
	clk.Advance(30 * time.Second)
	get(ctx, struct{}{})
	if version.Load() != 1 {
		t.Fatal("refreshed before 80% of the TTL")
	}
	clk.Advance(20 * time.Second) // 50s of 60s
	if v, _ := get(ctx, struct{}{}); v != 1 {
		t.Fatalf("refresh-ahead read = %d, want the current value", v)
	}
	waitFor(t, func() bool { return version.Load() == 2 })
	waitFor(t, func() bool { v, _ := get(ctx, struct{}{}); return v == 2 })
}

func TestTTLJitterSpreadsExpiry(t *testing.T) {
	c := newL1(t, Options{TTLJitter: 0.5})
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		d := c.jitter(time.Hour)
		if d > time.Hour || d <= 30*time.Minute {
			t.Fatalf("jittered TTL %v outside (30m, 1h]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct TTLs out of 50", len(seen))
	}
	off := newL1(t, Options{TTLJitter: -1})
	if d := off.jitter(time.Hour); d != time.Hour {
		t.Fatalf("jitter off: %v", d)
	}
}

// An instance that cannot learn the epochs from L2 works from L1 alone: it
// must not write entries under epochs only it knows, where no other
// instance would ever find them.
func TestUnsharedEpochsStayOutOfL2(t *testing.T) {
	b := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { b.Close() })
	b.SetError(errors.New("L2 down"))
	c := newL1(t, Options{L2: b.Remote("x:"), Tuning: TuningOptions{Breaker: BreakerOptions{Failures: 1000}}})
	get, _ := Wrap(c, getWeather, func(ctx context.Context, city string) (string, error) { return "sun", nil })
	if v, err := get(context.Background(), "rome"); err != nil || v != "sun" {
		t.Fatalf("with L2 down: %q, %v", v, err)
	}
	if s := c.Stats(); s.WritesQueued != 0 {
		t.Fatalf("%d L2 writes queued under epochs L2 never had", s.WritesQueued)
	}
	b.SetError(nil)
	// Once the breaker's pause (L2 never answered, so one failure opened
	// it) is over, a lookup confirms the epochs and its entry reaches L2.
	waitFor(t, func() bool { get(context.Background(), "lima"); return c.Stats().WritesDone >= 1 })
}
