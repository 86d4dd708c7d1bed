package agentcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier/disk"
	"github.com/agentcache/agentcache-go/tier/fake"
)

func newL1(t *testing.T, o Options) *Cache {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

type user struct {
	ID   string
	Name string
}

func TestGetLoadsOnceThenHits(t *testing.T) {
	c := newL1(t, Options{})
	var calls atomic.Int32
	load := func(ctx context.Context, key string) (user, error) {
		calls.Add(1)
		return user{ID: key, Name: "Ada"}, nil
	}
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		u, err := Get(ctx, c, "u1", load)
		if err != nil || u.Name != "Ada" || u.ID != "u1" {
			t.Fatalf("Get = %+v, %v", u, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader ran %d times, want 1", calls.Load())
	}
	s := c.Stats()
	if s.L1Hits != 4 || s.Misses != 1 || s.Loads != 1 {
		t.Fatalf("stats = %+v", s)
	}
	if r := s.HitRatio(); r != 0.8 {
		t.Fatalf("HitRatio = %v, want 0.8", r)
	}
}

func TestConcurrentMissesLoadOnce(t *testing.T) {
	c := newL1(t, Options{})
	var calls atomic.Int32
	release := make(chan struct{})
	load := func(ctx context.Context, key string) (int, error) {
		calls.Add(1)
		<-release
		return 42, nil
	}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := Get(context.Background(), c, "k", load)
			if err != nil || v != 42 {
				t.Errorf("Get = %v, %v", v, err)
			}
		}()
	}
	// Every caller but the first joins its load before it returns.
	wait.For(t, 5*time.Second, "99 callers joining the load", func() bool { return c.Stats().Joined == 99 })
	close(release)
	wg.Wait()
	if s := c.Stats(); calls.Load() != 1 || s.Loads != 1 || s.Misses != 100 {
		t.Fatalf("100 concurrent misses ran the loader %d times; stats %+v", calls.Load(), s)
	}
}

func TestLoaderErrorsAreNotCached(t *testing.T) {
	c := newL1(t, Options{})
	boom := errors.New("tool down")
	var calls atomic.Int32
	load := func(ctx context.Context, key string) (string, error) {
		if calls.Add(1) == 1 {
			return "", boom
		}
		return "ok", nil
	}
	if _, err := Get(context.Background(), c, "k", load); !errors.Is(err, boom) {
		t.Fatalf("first Get err = %v, want the loader's", err)
	}
	if v, err := Get(context.Background(), c, "k", load); err != nil || v != "ok" {
		t.Fatalf("second Get = %q, %v; the error must not be cached", v, err)
	}
	if s := c.Stats(); s.LoadErrors != 1 || s.Loads != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestLoaderPanicIsAnErrorForEveryWaiter(t *testing.T) {
	c := newL1(t, Options{})
	start := make(chan struct{})
	load := func(ctx context.Context, key string) (int, error) {
		<-start
		panic("tool exploded")
	}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Get(context.Background(), c, "k", load)
			var pe *PanicError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "tool exploded") {
				t.Errorf("err = %v, want a PanicError", err)
			}
		}()
	}
	wait.For(t, 5*time.Second, "9 callers joining the load", func() bool { return c.Stats().Joined == 9 })
	close(start)
	wg.Wait()
	if s := c.Stats(); s.LoadErrors != 1 {
		t.Fatalf("LoadErrors = %d, want 1", s.LoadErrors)
	}
}

func TestCancelledWaiterLeavesLoadIsCached(t *testing.T) {
	c := newL1(t, Options{})
	release := make(chan struct{})
	var calls atomic.Int32
	load := func(ctx context.Context, key string) (string, error) {
		calls.Add(1)
		select {
		case <-release:
			return "v", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := Get(ctx, c, "k", load); errc <- err }()
	wait.For(t, 5*time.Second, "a load in flight", func() bool { return c.fl.InFlight() != 0 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(release)
	wait.For(t, 5*time.Second, "no load in flight", func() bool { return c.fl.InFlight() == 0 })
	if v, err := Get(context.Background(), c, "k", load); err != nil || v != "v" {
		t.Fatalf("Get after = %q, %v", v, err)
	}
	if calls.Load() != 1 {
		t.Fatalf("loader ran %d times; the abandoned load must still fill the cache", calls.Load())
	}
}

func TestBadInput(t *testing.T) {
	c := newL1(t, Options{})
	ctx := context.Background()
	load := func(context.Context, string) (int, error) { return 1, nil }
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"empty key", func() error { _, err := Get(ctx, c, "", load); return err }(), "empty key"},
		{"NUL key", func() error { _, err := Get(ctx, c, "\x00x", load); return err }(), "reserved"},
		{"long key", func() error { _, err := Get(ctx, c, strings.Repeat("k", MaxKeyLen+1), load); return err }(), "exceeds"},
		{"nil loader", func() error { _, err := Get[int](ctx, c, "k", nil); return err }(), "non-nil load function"},
		{"negative TTL", c.Set(ctx, "k", 1, -time.Second), "negative TTL"},
		{"Set empty key", c.Set(ctx, "", 1, 0), "empty key"},
		{"Delete empty key", c.Delete(ctx, ""), "empty key"},
	}
	for _, tc := range cases {
		if tc.err == nil || !strings.HasPrefix(tc.err.Error(), "agentcache: ") || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want an agentcache error containing %q", tc.name, tc.err, tc.want)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := New(Options{L1MaxEntries: -1, DefaultTTL: -time.Second, MaxEpochAge: time.Millisecond})
	if err == nil {
		t.Fatal("New accepted bad options")
	}
	for _, want := range []string{"L1MaxEntries", "DefaultTTL", "MaxEpochAge"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestClosed(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	load := func(context.Context, string) (int, error) { return 1, nil }
	if _, err := Get(ctx, c, "k", load); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := c.Set(ctx, "k", 1, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if _, err := Wrap(c, resource.Resource{Name: "after_close", TTL: time.Minute}, func(context.Context, string) (int, error) { return 1, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wrap after Close: %v; want ErrClosed", err)
	}
	if _, err := WrapBatch(c, resource.Resource{Name: "after_close_batch", TTL: time.Minute}, func(context.Context, []int) (map[int]int, error) { return nil, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("WrapBatch after Close: %v; want ErrClosed", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v; want nil once the first has returned", err)
	}
}

// TestCloseHonoursItsContextWhenAToolIgnoresCancellation: Close(ctx) returns
// once ctx ends even while a tool that ignores cancellation is still running
// (in a load and in a background refresh), and says so; when the tool
// finally returns, its caller gets the answer and nothing breaks.
func TestCloseHonoursItsContextWhenAToolIgnoresCancellation(t *testing.T) {
	clk := newTestClockAt(time.Unix(1_000_000, 0))
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	c, err := New(Options{Now: clk.Now, L2: backend.Remote("close:")})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var calls atomic.Int32
	res := resource.Resource{Name: "stubborn", TTL: time.Minute, StaleWindow: time.Hour}
	get, err := Wrap(c, res, func(_ context.Context, q string) (string, error) {
		if calls.Add(1) == 1 {
			return "first " + q, nil // fills the entry that goes stale below
		}
		started <- struct{}{}
		<-release // ignores its context
		return "answer " + q, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := get(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // "stale" is served stale and refreshed in the background
	if v, err := get(ctx, "stale"); err != nil || v != "first stale" {
		t.Fatalf("stale read = %q, %v", v, err)
	}
	answer := make(chan error, 1)
	go func() {
		v, err := get(ctx, "load")
		if err == nil && v != "answer load" {
			err = fmt.Errorf("got %q", v)
		}
		answer <- err
	}()
	<-started
	<-started

	rs, err := c.register(res) // the entry's key, while the cache is open
	if err != nil {
		t.Fatal(err)
	}
	l1, err := rs.argsKey("", "load", resource.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- c.Close(cctx) }()
	select {
	case err := <-closed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close with tools still running = %v; want an error wrapping context.DeadlineExceeded", err)
		}
	case <-time.After(20 * time.Second):
		close(release)
		t.Fatal("Close did not return after its context ended; it waited for tools that ignore cancellation")
	}
	dropped := c.Stats().WritesDropped
	close(release)
	if err := <-answer; err != nil {
		t.Fatalf("the caller whose tool outlived Close: %v", err)
	}
	// The late answer went to L1; its L2 write was dropped and counted.
	if n := c.Stats().WritesDropped - dropped; n < 1 {
		t.Errorf("%d L2 writes dropped after Close; want the late answer's counted", n)
	}
	if e, ok := c.l1.Get(l1); !ok || e.value != "answer load" {
		t.Errorf("L1 after the late answer: %+v, %v; want the answer", e, ok)
	}
}

func TestSetDeleteClear(t *testing.T) {
	c := newL1(t, Options{})
	ctx := context.Background()
	never := func(context.Context, string) (string, error) {
		return "", errors.New("loader must not run")
	}
	if err := c.Set(ctx, "a", "A", time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := Get(ctx, c, "a", never); err != nil || v != "A" {
		t.Fatalf("Get after Set = %q, %v", v, err)
	}
	if err := c.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, c, "a", never); err == nil {
		t.Fatal("Get after Delete served a value")
	}
	c.Set(ctx, "b", "B", 0)
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, c, "b", never); err == nil {
		t.Fatal("Get after Clear served a value")
	}
}

func TestTTLExpiry(t *testing.T) {
	clk := newTestClock()
	c := newL1(t, Options{Now: clk.Now, DefaultTTL: time.Minute, TTLJitter: -1})
	var calls atomic.Int32
	load := func(context.Context, string) (int, error) { return int(calls.Add(1)), nil }
	ctx := context.Background()
	if v, _ := Get(ctx, c, "k", load); v != 1 {
		t.Fatalf("first = %d", v)
	}
	clk.Advance(59 * time.Second)
	if v, _ := Get(ctx, c, "k", load); v != 1 {
		t.Fatalf("before TTL = %d, want the cached 1", v)
	}
	clk.Advance(2 * time.Second)
	if v, _ := Get(ctx, c, "k", load); v != 2 {
		t.Fatalf("after TTL = %d, want a reload", v)
	}
}

func TestSnapshotWarmStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l1.snap")
	ctx := context.Background()
	clk := newTestClock()
	c, err := New(Options{Snapshot: SnapshotOptions{Path: path}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, "a", user{ID: "a", Name: "Ada"}, time.Hour)
	c.Set(ctx, "short", 1, time.Minute)
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // down for longer than "short" lives

	c2 := newL1(t, Options{Snapshot: SnapshotOptions{Path: path}, Now: clk.Now})
	never := func(context.Context, string) (user, error) {
		return user{}, errors.New("loader must not run: the snapshot has it")
	}
	u, err := Get(ctx, c2, "a", never)
	if err != nil || u.Name != "Ada" {
		t.Fatalf("after restart Get = %+v, %v", u, err)
	}
	// Once decoded, the entry is a plain L1 hit.
	if _, err := Get(ctx, c2, "a", never); err != nil {
		t.Fatal(err)
	}
	if s := c2.Stats(); s.L1Hits != 2 {
		t.Fatalf("L1Hits = %d, want 2", s.L1Hits)
	}
	var calls atomic.Int32
	load := func(context.Context, string) (int, error) { calls.Add(1); return 2, nil }
	if v, _ := Get(ctx, c2, "short", load); v != 2 || calls.Load() != 1 {
		t.Fatal("an entry that expired while down was restored")
	}
}

func TestSnapshotRestoredEntryRespectsInvalidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l1.snap")
	ctx := context.Background()
	c, _ := New(Options{Snapshot: SnapshotOptions{Path: path}})
	c.Set(ctx, "a", "old", time.Hour)
	c.Close(ctx)

	c2 := newL1(t, Options{Snapshot: SnapshotOptions{Path: path}})
	if err := c2.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := Get(ctx, c2, "a", func(context.Context, string) (string, error) { return "new", nil })
	if err != nil || v != "new" {
		t.Fatalf("Get = %q, %v; a restored entry survived Clear", v, err)
	}
}

// hugeCodec is JSON, except that the string "huge" encodes to huge, one
// shared slice: an L1 value too large for a snapshot, without 64 MiB of
// encoding work.
type hugeCodec struct {
	JSON
	huge []byte
}

func (c hugeCodec) Marshal(v any) ([]byte, error) {
	if v == "huge" {
		return c.huge, nil
	}
	return c.JSON.Marshal(v)
}

func (c hugeCodec) Unmarshal(data []byte, v any) error {
	if len(data) == len(c.huge) {
		*v.(*string) = "huge"
		return nil
	}
	return c.JSON.Unmarshal(data, v)
}

// L1 holds values of any size (MaxValueSize bounds L2 only), but a snapshot
// holds values up to disk.MaxValueLen: a larger entry is left out of it,
// with a warning, and the rest is saved.
func TestSnapshotLeavesOutValuesTooLargeForIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l1.snap")
	ctx := context.Background()
	var logs syncBuf
	codec := hugeCodec{huge: make([]byte, disk.MaxValueLen)}
	c, err := New(Options{Snapshot: SnapshotOptions{Path: path}, Codec: codec, MaxValueSize: 2 * disk.MaxValueLen,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, "big", "huge", time.Hour)
	c.Set(ctx, "small", "x", time.Hour)
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v; an entry too large for the snapshot must not fail the save", err)
	}
	if s := c.Stats(); s.SnapshotErrors != 0 || s.Oversize != 1 {
		t.Fatalf("SnapshotErrors = %d, Oversize = %d; want 0 and 1 (the entry left out is counted)", s.SnapshotErrors, s.Oversize)
	}
	if !strings.Contains(logs.String(), "left out of the snapshot") || !strings.Contains(logs.String(), "1 entries") {
		t.Fatalf("no warning names the entry left out:\n%s", logs.String())
	}

	c2 := newL1(t, Options{Snapshot: SnapshotOptions{Path: path}, Codec: codec})
	never := func(context.Context, string) (string, error) {
		return "", errors.New("loader must not run: the snapshot has it")
	}
	if v, err := Get(ctx, c2, "small", never); err != nil || v != "x" {
		t.Fatalf("small entry after restart: %q, %v", v, err)
	}
	v, err := Get(ctx, c2, "big", func(context.Context, string) (string, error) { return "reloaded", nil })
	if err != nil || v != "reloaded" {
		t.Fatalf("big entry after restart: %q, %v; want it left out of the snapshot and loaded again", v, err)
	}
}

func TestCorruptSnapshotStartsCold(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l1.snap")
	if err := os.WriteFile(path, []byte("definitely not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newL1(t, Options{Snapshot: SnapshotOptions{Path: path}})
	if s := c.Stats(); s.SnapshotErrors != 1 {
		t.Fatalf("SnapshotErrors = %d, want 1", s.SnapshotErrors)
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("corrupt snapshot not moved aside: %v", matches)
	}
	v, err := Get(context.Background(), c, "k", func(context.Context, string) (int, error) { return 7, nil })
	if err != nil || v != 7 {
		t.Fatalf("cold cache Get = %v, %v", v, err)
	}
}

// TestL1EvictionsAreCounted: an L1 held to L1MaxEntries says how much it
// dropped, so that an undersized L1 shows in Stats.
func TestL1EvictionsAreCounted(t *testing.T) {
	c := newL1(t, Options{L1MaxEntries: 100})
	ctx := context.Background()
	for i := range 1000 {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 5*time.Second, "L1 down to its bound", func() bool { s := c.Stats(); return s.L1Entries <= 100 && s.L1Evictions >= 900 })
	if s := c.Stats(); s.L1Evictions < 900 || s.L1Evictions > 1000 {
		t.Fatalf("L1Evictions = %d after 1000 writes into 100 entries, want 900..1000", s.L1Evictions)
	}
}

// What one instance loads, another is served from L2, decoded to the same
// value, and then from its own L1 — whatever the L2.
func TestL2HitAcrossInstances(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 2)
			a := rcNew(t, Options{L2: stores[0]})
			b := rcNew(t, Options{L2: stores[1]})
			rcSubscribed(t, a, b)
			ctx := context.Background()
			var aRuns, bRuns atomic.Int32
			loadA := rcCounting(&aRuns, rcProfileFor)
			loadB := rcCounting(&bRuns, func(key string) rcProfile { return rcProfile{ID: "from B"} })

			want := rcProfileFor("profile:42")
			got, err := Get(ctx, a, "profile:42", loadA)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("A: Get = %+v, %v", got, err)
			}
			wait.For(t, 5*time.Second, "A's L2 write", func() bool { return a.Stats().WritesDone >= 1 })

			got, err = Get(ctx, b, "profile:42", loadB)
			if err != nil {
				t.Fatalf("B: Get: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("B decoded %+v from L2, want %+v", got, want)
			}
			if s := b.Stats(); s.L2Hits != 1 || s.Misses != 0 || bRuns.Load() != 0 {
				t.Fatalf("B: L2 hits %d, misses %d, loader runs %d; want 1, 0, 0 (stats %+v)", s.L2Hits, s.Misses, bRuns.Load(), s)
			}
			// The L2 hit filled B's L1.
			if got, err = Get(ctx, b, "profile:42", loadB); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("B again: %+v, %v", got, err)
			}
			if s := b.Stats(); s.L1Hits != 1 || s.L2Hits != 1 {
				t.Fatalf("B's second read: L1 hits %d, L2 hits %d; want 1 and 1", s.L1Hits, s.L2Hits)
			}
			if aRuns.Load() != 1 {
				t.Fatalf("A's loader ran %d times", aRuns.Load())
			}
		})
	}
}

func TestOversizeValueStaysOutOfL2(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			e := backend.open(t, 2)
			const limit = 256
			a := rcNew(t, Options{L2: e.stores[0], MaxValueSize: limit})
			b := rcNew(t, Options{L2: e.stores[1], MaxValueSize: limit})
			rcSubscribed(t, a, b)
			ctx := context.Background()
			big := strings.Repeat("x", 4*limit)
			value := func(key string) string {
				if strings.HasPrefix(key, "big") {
					return big
				}
				return "small " + key
			}
			var aRuns, bRuns atomic.Int32
			for _, k := range []string{"big", "small"} {
				if v, err := Get(ctx, a, k, rcCounting(&aRuns, value)); err != nil || v != value(k) {
					t.Fatalf("A: Get(%s) = %d bytes, %v", k, len(v), err)
				}
			}
			if s := a.Stats(); s.Oversize != 1 {
				t.Fatalf("A: Oversize = %d, want 1", s.Oversize)
			}
			// The big value stays in A's L1.
			if v, _ := Get(ctx, a, "big", rcCounting(&aRuns, value)); v != big || aRuns.Load() != 2 {
				t.Fatalf("A: big value not served from L1 (loader runs %d)", aRuns.Load())
			}
			wait.For(t, 5*time.Second, "A's queue drained", func() bool { return rcDrained(a) })
			small, bigKey := kvL2Key(a, "small"), kvL2Key(a, "big")
			if v, ok := e.Get(bigKey); ok {
				t.Fatalf("%s holds %d bytes; want the value over MaxValueSize %d kept out of L2", bigKey, len(v), limit)
			}
			if v, ok := e.Get(small); !ok || len(v) > limit {
				t.Fatalf("%s: %d bytes, found %v; want the small value, within MaxValueSize %d", small, len(v), ok, limit)
			}
			// Where the L2 lists its keys: nothing else either.
			if keys, ok := e.Keys("kv:*"); ok && !slices.Equal(keys, []string{small}) {
				t.Fatalf("entry keys in L2: %q; want only the small value's", keys)
			}
			// B finds the small value in L2 and loads the big one itself.
			for _, k := range []string{"small", "big"} {
				if v, err := Get(ctx, b, k, rcCounting(&bRuns, value)); err != nil || v != value(k) {
					t.Fatalf("B: Get(%s): %v", k, err)
				}
			}
			if s := b.Stats(); s.L2Hits != 1 || bRuns.Load() != 1 || s.Oversize != 1 {
				t.Fatalf("B: %d L2 hits, %d loader runs, %d oversize; want 1, 1 (the big value), 1", s.L2Hits, bRuns.Load(), s.Oversize)
			}
		})
	}
}

// TestOversizeL2ValueIsNotRead: MaxValueSize bounds reads too. A value
// planted in L2 above it (or written by an instance with a larger bound) is
// a miss, counted in Stats.Oversize, and never decoded.
func TestOversizeL2ValueIsNotRead(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			e := backend.open(t, 2)
			a := rcNew(t, Options{L2: e.stores[0]})
			b := rcNew(t, Options{L2: e.stores[1], MaxValueSize: 4096})
			ctx := context.Background()
			var runs atomic.Int32
			key, valid := profileInL2(t, e, a, &runs)
			// The same envelope with a payload padded past B's bound: valid
			// JSON, so only the size keeps B from decoding it.
			big := append(slices.Clip(valid[:len(valid)-1]), []byte(strings.Repeat(" ", 8192)+"}")...)
			e.Set(key, big, time.Hour)
			if _, err := Get(ctx, b, "profile:7", rcCounting(&runs, rcProfileFor)); err != nil {
				t.Fatal(err)
			}
			if s := b.Stats(); s.Oversize == 0 || s.L2Hits != 0 || runs.Load() != 2 {
				t.Fatalf("B: Oversize %d, L2 hits %d, tool runs %d; want the oversize value counted, not served, and the tool run again", s.Oversize, s.L2Hits, runs.Load())
			}
		})
	}
}

// profileInL2 has a load profile:7 through the key-value API (counted in
// runs), waits for its L2 write and returns the entry's key and the bytes
// it wrote, checked to open as an envelope.
func profileInL2(t *testing.T, e *l2Env, a *Cache, runs *atomic.Int32) (string, []byte) {
	t.Helper()
	if _, err := Get(context.Background(), a, "profile:7", rcCounting(runs, rcProfileFor)); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "A's L2 write", func() bool { return a.Stats().WritesDone >= 1 })
	key := kvL2Key(a, "profile:7")
	if keys, ok := e.Keys("kv:*"); ok && !slices.Equal(keys, []string{key}) {
		t.Fatalf("entry keys under the prefix: %q, want exactly %q", keys, key)
	}
	valid, ok := e.Get(key)
	if !ok {
		t.Fatalf("%s is not in L2 after A's write", key)
	}
	if _, err := keyspace.OpenEnvelope(valid); err != nil {
		t.Fatalf("the value A wrote does not open: %v", err)
	}
	return key, valid
}
