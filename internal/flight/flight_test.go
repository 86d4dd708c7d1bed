package flight

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

type ctxKey struct{}

// The tests run in a synctest bubble where concurrency matters:
// synctest.Wait returns once every goroutine the test started is blocked,
// which is how a test knows that every caller has joined a load (no sleeps),
// and the bubble's clock makes a timeout instant.

func TestDoRunsOncePerKey(t *testing.T) { synctest.Test(t, testDoRunsOncePerKey) }

func testDoRunsOncePerKey(t *testing.T) {
	g := New(context.Background(), 0)
	var runs atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]any, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err, _ := g.Do(context.Background(), "k", func(context.Context) (any, error) {
				runs.Add(1)
				<-release
				return "v", nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	// Every caller has joined the one load before it ends.
	synctest.Wait()
	if n, in, j := runs.Load(), g.InFlight(), g.Joined(); n != 1 || in != 1 || j != 49 {
		t.Fatalf("50 callers of one key started %d loads (%d in flight) and %d joined, want 1 and 49", n, in, j)
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("load ran %d times, want 1", n)
	}
	for i, v := range results {
		if v != "v" {
			t.Fatalf("caller %d got %v", i, v)
		}
	}
	if g.InFlight() != 0 {
		t.Fatal("call not removed after completion")
	}
}

func TestWaiterLeavesLoadGoesOn(t *testing.T) { synctest.Test(t, testWaiterLeavesLoadGoesOn) }

func testWaiterLeavesLoadGoesOn(t *testing.T) {
	g := New(context.Background(), 0)
	release := make(chan struct{})
	finished := make(chan any, 1)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "trace"))
	go func() {
		_, err, _ := g.Do(ctx, "k", func(lctx context.Context) (any, error) {
			<-release
			// The load keeps the first caller's values and outlives its cancellation.
			if lctx.Err() != nil {
				finished <- lctx.Err()
				return nil, lctx.Err()
			}
			finished <- lctx.Value(ctxKey{})
			return "v", nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled waiter got %v, want context.Canceled", err)
		}
	}()
	synctest.Wait()
	// A second waiter joins and stays.
	got := make(chan any, 1)
	go func() {
		v, _, shared := g.Do(context.Background(), "k", nil)
		if !shared {
			t.Error("second caller did not share the load")
		}
		got <- v
	}()
	synctest.Wait()
	cancel()
	synctest.Wait() // the cancelled waiter has left; the load has not ended
	close(release)
	if v := <-finished; v != "trace" {
		t.Fatalf("load saw %v, want the caller's value and a live context", v)
	}
	if v := <-got; v != "v" {
		t.Fatalf("remaining waiter got %v", v)
	}
}

func TestPanicBecomesErrorForEveryWaiter(t *testing.T) {
	synctest.Test(t, testPanicBecomesErrorForEveryWaiter)
}

func testPanicBecomesErrorForEveryWaiter(t *testing.T) {
	g := New(context.Background(), 0)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err, _ := g.Do(context.Background(), "k", func(context.Context) (any, error) {
				<-start
				panic(boom)
			})
			var pe *PanicError
			if !errors.As(err, &pe) || !errors.Is(err, boom) || len(pe.Stack) == 0 {
				t.Errorf("got %v, want a PanicError wrapping boom with a stack", err)
			}
		}()
	}
	synctest.Wait() // every waiter has joined the load
	close(start)
	wg.Wait()
}

func TestBaseCancelsLoadsAndWait(t *testing.T) { synctest.Test(t, testBaseCancelsLoadsAndWait) }

func testBaseCancelsLoadsAndWait(t *testing.T) {
	base, stop := context.WithCancel(context.Background())
	g := New(base, 0)
	errc := make(chan error, 1)
	go func() {
		_, err, _ := g.Do(context.Background(), "k", func(ctx context.Context) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		errc <- err
	}()
	synctest.Wait()
	stop()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTimeout(t *testing.T) { synctest.Test(t, testTimeout) }

func testTimeout(t *testing.T) {
	g := New(context.Background(), 20*time.Millisecond)
	_, err, _ := g.Do(context.Background(), "k", func(ctx context.Context) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

// TestWaitConcurrentWithDo: Wait may run while Do starts loads from an idle
// Group (a lookup racing Cache.Close). On a sync.WaitGroup that is misuse:
// the race detector reports it, and without it the WaitGroup panics.
func TestWaitConcurrentWithDo(t *testing.T) {
	g := New(context.Background(), 0)
	var stop atomic.Bool
	var loads, waits sync.WaitGroup
	for w := range 4 {
		loads.Go(func() {
			for i := range 5000 {
				g.Do(context.Background(), fmt.Sprint(w, "/", i), func(context.Context) (any, error) { return nil, nil })
			}
		})
	}
	for range 2 {
		waits.Go(func() {
			for !stop.Load() {
				if err := g.Wait(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	loads.Wait()
	stop.Store(true)
	waits.Wait()
	if err := g.Wait(context.Background()); err != nil || g.InFlight() != 0 {
		t.Fatalf("Wait = %v, InFlight = %d after every Do returned", err, g.InFlight())
	}
}

// Once the base context has ended, no new load starts (it could outlive
// its owner's Close); a load already running is still joined.
func TestDoAfterBaseEndsStartsNoLoad(t *testing.T) { synctest.Test(t, testDoAfterBaseEndsStartsNoLoad) }

func testDoAfterBaseEndsStartsNoLoad(t *testing.T) {
	base, cancel := context.WithCancel(context.Background())
	g := New(base, 0)
	release := make(chan struct{})
	joined := make(chan error, 1)
	go func() {
		_, err, _ := g.Do(context.Background(), "running", func(context.Context) (any, error) {
			<-release
			return "v", nil
		})
		joined <- err
	}()
	synctest.Wait()
	cancel()
	ran := false
	if _, err, _ := g.Do(context.Background(), "new", func(context.Context) (any, error) { ran = true; return nil, nil }); err != ErrClosed || ran {
		t.Fatalf("Do of a new key after the base ended: err %v, ran %v; want ErrClosed and no run", err, ran)
	}
	close(release)
	if err := <-joined; err != nil {
		t.Fatalf("the load running when the base ended: %v", err)
	}
}

func TestAliasJoinsTheLoadInFlight(t *testing.T) { synctest.Test(t, testAliasJoinsTheLoadInFlight) }

func testAliasJoinsTheLoadInFlight(t *testing.T) {
	g := New(context.Background(), 0)
	release := make(chan struct{})
	var runs atomic.Int32
	load := func(context.Context) (any, error) {
		runs.Add(1)
		<-release
		return "v", nil
	}
	first := make(chan any, 1)
	go func() { v, _, _ := g.Do(context.Background(), "a", load); first <- v }()
	synctest.Wait()
	if !g.Alias("a", "b") {
		t.Fatal("Alias of a load in flight failed")
	}
	if g.Alias("a", "b") || g.Alias("missing", "c") {
		t.Fatal("Alias over a key with a load, or of a key without one, succeeded")
	}
	if n := g.InFlight(); n != 1 {
		t.Fatalf("InFlight = %d with one load and one alias, want 1", n)
	}
	// A caller of the alias joins the load (a cancelled one returns at once,
	// which shows it joined without waiting for the load).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err, shared := g.Do(ctx, "b", load); !errors.Is(err, context.Canceled) || !shared {
		t.Fatalf("Do of the alias = %v, shared %v; want it to join the load in flight", err, shared)
	}
	close(release)
	if v := <-first; v != "v" || runs.Load() != 1 {
		t.Fatalf("the load returned %v after %d runs; want v after 1", v, runs.Load())
	}
	if n := g.InFlight(); n != 0 {
		t.Fatalf("InFlight = %d after the load returned, want 0", n)
	}
	// Both keys are free again.
	v, _, shared := g.Do(context.Background(), "b", func(context.Context) (any, error) { return "new", nil })
	if v != "new" || shared {
		t.Fatalf("Do of the alias after the load returned = %v (shared %v), want a load of its own", v, shared)
	}
}
