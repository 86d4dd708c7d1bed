package agentcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/leakcheck"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier/fake"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

var getProducts = resource.Resource{Name: "get_products", TTL: time.Minute}

// catalog is a batch tool over products 0..999; others do not exist.
type catalog struct {
	mu    sync.Mutex
	calls [][]int
}

func (c *catalog) get(ctx context.Context, ids []int) (map[int]string, error) {
	c.mu.Lock()
	c.calls = append(c.calls, slices.Clone(ids))
	c.mu.Unlock()
	out := map[int]string{}
	for _, id := range ids {
		if id >= 0 && id < 1000 {
			out[id] = fmt.Sprintf("product-%d", id)
		}
	}
	return out, nil
}

func (c *catalog) callCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// A batch takes each ID from the tier that has it: another instance's L2
// entries and its "not found" marker, and asks the tool once for the rest;
// a single-ID tool of the resource shares the entries. Over every L2.
func TestBatchServesEachIDFromTheTierThatHasIt(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 2)
			a := rcNew(t, Options{L2: stores[0]})
			b := rcNew(t, Options{L2: stores[1]})
			rcSubscribed(t, a, b)
			cat := &catalog{}
			ba, _ := WrapBatch(a, getProducts, cat.get)
			bb, _ := WrapBatch(b, getProducts, cat.get)
			ctx := context.Background()

			got, err := ba.GetMany(ctx, []int{1, 2, 3, 2000})
			if err != nil || len(got) != 3 || got[2] != "product-2" {
				t.Fatalf("GetMany = %v, %v", got, err)
			}
			if _, ok := got[2000]; ok {
				t.Fatal("a missing ID was returned")
			}
			if cat.callCount() != 1 {
				t.Fatalf("tool calls = %d", cat.callCount())
			}
			wait.For(t, 5*time.Second, "a's 4 L2 writes", func() bool { return a.Stats().WritesDone >= 4 })
			// Instance b: 1-3 from L2, 2000 from the L2 marker, 4 from the tool,
			// in a single tool call for the one real miss.
			got, _ = bb.GetMany(ctx, []int{1, 2, 3, 2000, 4})
			if len(got) != 4 || cat.callCount() != 2 || !slices.Equal(cat.calls[1], []int{4}) {
				t.Fatalf("second batch: %v, calls %v", got, cat.calls)
			}
			if s := b.Stats(); s.L2Hits != 3 || s.NegativeHits != 1 {
				t.Fatalf("b stats %+v", s)
			}
			// And a's L1 answers without anyone.
			ba.GetMany(ctx, []int{1, 2, 3})
			if cat.callCount() != 2 {
				t.Fatal("L1 hits reached the tool")
			}
			// A single-argument tool of the same resource shares the entries.
			single, _ := Wrap(a, getProducts, func(ctx context.Context, id int) (string, error) {
				return "", errors.New("must not run: the batch cached it")
			})
			if v, err := single(ctx, 2); err != nil || v != "product-2" {
				t.Fatalf("single-ID tool over a batch entry: %q, %v", v, err)
			}
		})
	}
}

func TestBatchDataLoaderWindow(t *testing.T) {
	c := newL1(t, Options{})
	cat := &catalog{}
	b, _ := WrapBatch(c, getProducts, cat.get, BatchWindow(50*time.Millisecond), MaxBatchSize(1000))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, err := b.Get(context.Background(), i)
			if err != nil || v != fmt.Sprintf("product-%d", i) {
				t.Errorf("Get(%d) = %q, %v", i, v, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if cat.callCount() != 1 || len(cat.calls[0]) != 100 {
		t.Fatalf("100 concurrent Gets made %d tool calls (first with %d IDs), want 1 with 100", cat.callCount(), len(cat.calls[0]))
	}
	if _, err := b.Get(context.Background(), 5000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing ID: %v", err)
	}
}

func TestBatchMaxSizeAndLeavingCaller(t *testing.T) {
	c := newL1(t, Options{})
	release := make(chan struct{})
	var calls atomic.Int32
	b, _ := WrapBatch(c, getProducts, func(ctx context.Context, ids []int) (map[int]string, error) {
		calls.Add(1)
		<-release
		return (&catalog{}).get(ctx, ids)
	}, BatchWindow(time.Hour), MaxBatchSize(3))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 3)
	for i := 0; i < 3; i++ {
		c := context.Background()
		if i == 0 {
			c = ctx
		}
		go func() { _, err := b.Get(c, i); errc <- err }()
	}
	// A full window is sent without waiting for its (hour-long) timer.
	wait.For(t, 5*time.Second, "the full window sent", func() bool { return calls.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the leaving caller got %v", err)
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil {
			t.Fatalf("a remaining caller got %v", err)
		}
	}
}

func TestBatchPerScopeWindows(t *testing.T) {
	c := newL1(t, Options{})
	var mu sync.Mutex
	users := map[string][]int{}
	b, _ := WrapBatch(c, resource.Resource{Name: "get_orders", Scope: scope.User, TTL: time.Minute}, func(ctx context.Context, ids []int) (map[int]string, error) {
		u, _ := scope.UserFrom(ctx)
		mu.Lock()
		users[u] = append(users[u], ids...)
		mu.Unlock()
		out := map[int]string{}
		for _, id := range ids {
			out[id] = fmt.Sprintf("%s/%d", u, id)
		}
		return out, nil
	}, BatchWindow(20*time.Millisecond))
	var wg sync.WaitGroup
	for _, u := range []string{"alice", "bob"} {
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := b.Get(scope.WithUser(context.Background(), u), i)
				if err != nil || v != fmt.Sprintf("%s/%d", u, i) {
					t.Errorf("%s Get(%d) = %q, %v", u, i, v, err)
				}
			}()
		}
	}
	wg.Wait()
	if len(users["alice"]) != 10 || len(users["bob"]) != 10 {
		t.Fatalf("scopes mixed in batches: %v", users)
	}
	if _, err := b.Get(context.Background(), 1); !errors.Is(err, scope.ErrMissing) {
		t.Fatalf("Get without a user: %v", err)
	}
}

func TestBatchToolErrorAndPanic(t *testing.T) {
	c := newL1(t, Options{})
	boom := errors.New("catalog down")
	b, _ := WrapBatch(c, getProducts, func(ctx context.Context, ids []int) (map[int]string, error) {
		if ids[0] == 666 {
			panic("bad batch")
		}
		return nil, boom
	})
	if _, err := b.GetMany(context.Background(), []int{1, 2}); !errors.Is(err, boom) {
		t.Fatalf("GetMany err = %v", err)
	}
	_, err := b.GetMany(context.Background(), []int{666})
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("panicking tool: %v", err)
	}
	if c.l1.Len() != 0 {
		t.Fatal("an error was cached")
	}
}

type lookupArgs struct {
	Query     string `json:"query"`
	RequestID string `json:"-"` // left out of the key by MemoOptions.Key
}

func TestMemoizeLRUAndArgs(t *testing.T) {
	var runs atomic.Int32
	m, err := Memoize(func(ctx context.Context, a lookupArgs) (string, error) {
		runs.Add(1)
		return "answer to " + a.Query, nil
	}, MemoOptions[lookupArgs]{MaxEntries: 2, Key: func(a lookupArgs) any { return a.Query }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	call := func(q, req string) string {
		v, err := m.Call(ctx, lookupArgs{Query: q, RequestID: req})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	call("a", "r1")
	call("a", "r2") // the request ID is not in the key
	if runs.Load() != 1 {
		t.Fatalf("runs = %d; a left-out argument changed the key", runs.Load())
	}
	call("b", "r3")
	call("a", "r4") // a is now the most recent; b the least
	call("c", "r5") // evicts b
	before := runs.Load()
	call("a", "")
	call("c", "")
	if runs.Load() != before {
		t.Fatal("a or c was evicted instead of b")
	}
	call("b", "")
	if runs.Load() != before+1 {
		t.Fatal("b was not evicted")
	}
	if err := m.Invalidate(ctx, lookupArgs{Query: "c"}); err != nil {
		t.Fatal(err)
	}
	before = runs.Load()
	call("c", "")
	if runs.Load() != before+1 {
		t.Fatal("Invalidate by arguments did not drop the entry")
	}
	s := m.Stats()
	if s.Misses != uint64(runs.Load()) || s.Hits != 4 || s.Evictions < 1 {
		t.Fatalf("stats %+v (runs %d)", s, runs.Load())
	}
}

func TestMemoizeTTLAndKeyFunc(t *testing.T) {
	clk := newTestClock()
	var runs atomic.Int32
	type req struct {
		Receiver *int // not JSON-comparable in any useful way: left out by Key
		ID       int
	}
	m, _ := Memoize(func(ctx context.Context, r req) (int, error) {
		runs.Add(1)
		return r.ID * 2, nil
	}, MemoOptions[req]{TTL: time.Minute, Now: clk.Now, Key: func(r req) any { return r.ID }})
	ctx := context.Background()
	x, y := 1, 2
	m.Call(ctx, req{Receiver: &x, ID: 7})
	m.Call(ctx, req{Receiver: &y, ID: 7})
	clk.Advance(59 * time.Second)
	m.Call(ctx, req{ID: 7})
	if runs.Load() != 1 {
		t.Fatalf("runs = %d before the TTL", runs.Load())
	}
	clk.Advance(2 * time.Second)
	m.Call(ctx, req{ID: 7})
	if runs.Load() != 2 {
		t.Fatalf("runs = %d after the TTL", runs.Load())
	}
}

func TestMemoizeThroughCache(t *testing.T) {
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	a := newL1(t, Options{L2: backend.Remote("m:")})
	b := newL1(t, Options{L2: backend.Remote("m:")})
	var runs atomic.Int32
	fn := func(ctx context.Context, q string) (string, error) { runs.Add(1); return "r:" + q, nil }
	ma, err := Memoize(fn, MemoOptions[string]{Cache: a, Name: "expensive_llm", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := Memoize(fn, MemoOptions[string]{Cache: b, Name: "expensive_llm", TTL: time.Minute})
	ctx := context.Background()
	ma.Call(ctx, "q")
	wait.For(t, 5*time.Second, "a's L2 write", func() bool { return a.Stats().WritesDone >= 1 })
	if v, _ := mb.Call(ctx, "q"); v != "r:q" || runs.Load() != 1 {
		t.Fatalf("the memo on b did not use L2: %q, runs %d", v, runs.Load())
	}
	if err := mb.Invalidate(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "a's memo to see b's invalidation", func() bool { ma.Call(ctx, "q"); return runs.Load() == 2 })
	if _, err := Memoize(fn, MemoOptions[string]{Cache: a}); err == nil {
		t.Fatal("Memoize with a Cache and no Name accepted")
	}
	// The in-process options do not apply through a Cache: refused, not
	// silently ignored.
	for name, o := range map[string]MemoOptions[string]{
		"MaxEntries": {Cache: a, Name: "m2", MaxEntries: 10},
		"Now":        {Cache: a, Name: "m3", Now: time.Now},
	} {
		if _, err := Memoize(fn, o); err == nil || !strings.Contains(err.Error(), "in-process memo") {
			t.Errorf("Memoize with a Cache and %s = %v, want a refusal", name, err)
		}
	}
}

// tripLog describes each of trips: its command, or the size and first
// command of its pipeline.
func tripLog(trips []redistest.Trip) []string {
	var log []string
	for _, tr := range trips {
		if tr.Pipeline {
			log = append(log, fmt.Sprintf("pipeline of %d %s", len(tr.Cmds), tr.Cmds[0].Name()))
		} else {
			log = append(log, tr.Cmds[0].Name())
		}
	}
	return log
}

// crossSlotErrors counts the commands of trips that failed with CROSSSLOT.
func crossSlotErrors(trips []redistest.Trip) int {
	n := 0
	for _, tr := range trips {
		for _, c := range tr.Cmds {
			if c.Err() != nil && strings.Contains(c.Err().Error(), "CROSSSLOT") {
				n++
			}
		}
	}
	return n
}

// A 100-ID batch of a global resource (one hash slot per ID) read from L2
// costs at most one round trip per master, with no CROSSSLOT error. A
// property of a cluster, so it runs on the 3-master cluster only.
func TestBatchFromAClusterIsOneRoundTripPerMaster(t *testing.T) {
	leakcheck.Check(t)
	cl := redistest.StartCluster(t, 3, 0)
	rt := &redistest.RoundTrips{}
	opts := cl.ClusterOptions()
	opts.OnConnect = nil
	client := goredis.NewClusterClient(opts)
	t.Cleanup(func() { client.Close() })
	rt.Install(client)
	store, err := acredis.New(client, acredis.Options{Prefix: redisenv.Prefix(t, "ac-")})
	if err != nil {
		t.Fatal(err)
	}
	writer := newL1(t, Options{L2: store})
	cat := &catalog{}
	bw, _ := WrapBatch(writer, resource.Resource{Name: "get_products", TTL: time.Minute}, cat.get)
	ids := make([]int, 100)
	for i := range ids {
		ids[i] = i
	}
	ctx := context.Background()
	if got, err := bw.GetMany(ctx, ids); err != nil || len(got) != 100 {
		t.Fatalf("filling GetMany: %d values, %v", len(got), err)
	}
	wait.For(t, 5*time.Second, "the writer's 100 L2 writes", func() bool { return writer.Stats().WritesDone >= 100 })

	// A second instance reads all 100 from L2.
	reader := newL1(t, Options{L2: store})
	br, _ := WrapBatch(reader, resource.Resource{Name: "get_products", TTL: time.Minute}, cat.get)
	// Warm the epochs (once the subscription is up, so they stay
	// confirmed) and the connections, then count one batch.
	wait.For(t, 5*time.Second, "the reader's subscription", func() bool { return reader.bus.resets.Load() >= 1 })
	br.GetMany(ctx, []int{-1})
	wait.For(t, 5*time.Second, "the reader's write of the probe's marker", func() bool { return reader.Stats().WritesDone >= 1 }) // the probe's "not found" marker
	reader.l1.Clear()
	before := rt.Len()
	got, err := br.GetMany(ctx, ids)
	batch := rt.Since(before)
	trips := len(batch)
	if err != nil || len(got) != 100 || got[42] != "product-42" {
		t.Fatalf("GetMany from L2: %d values, %v", len(got), err)
	}
	if cat.callCount() != 2 { // the fill and the probe for -1
		t.Fatalf("tool calls = %d; the batch did not come from L2; writer %+v reader %+v", cat.callCount(), writer.Stats(), reader.Stats())
	}
	if s := reader.Stats(); s.L2Hits < 100 {
		t.Fatalf("L2 hits = %d", s.L2Hits)
	}
	if n := crossSlotErrors(rt.Trips()); n != 0 {
		t.Fatalf("%d CROSSSLOT errors", n)
	}
	if trips > 3 {
		t.Fatalf("100 keys over 3 masters took %d round trips, want at most one per master: %v", trips, tripLog(batch))
	}
	t.Logf("100-key batch from a 3-master cluster: %d round trips: %v", trips, tripLog(batch))
}
