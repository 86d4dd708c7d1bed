package agentcache

// The negative cache: "not found" answers remembered (in L1 only, and
// shared by the fleet through every L2 of l2Backends) and forgotten after
// their TTL or an invalidation, a flood of them that leaves the positive
// entries in L1 alone, no false "not found" while L2 is healthy, markers
// that never replace values, and the tool's own message repeated.

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/epoch"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
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

// rcOrders is a get_order tool, single and batch: odd IDs do not exist.
type rcOrders struct {
	runs atomic.Int64 // IDs asked of the tool
}

func rcOrder(id int) string { return "order " + strconv.Itoa(id) }

func (o *rcOrders) get(ctx context.Context, id int) (string, error) {
	o.runs.Add(1)
	if id%2 != 0 {
		return "", fmt.Errorf("order %d: %w", id, ErrNotFound)
	}
	return rcOrder(id), nil
}

func (o *rcOrders) getMany(ctx context.Context, ids []int) (map[int]string, error) {
	o.runs.Add(int64(len(ids)))
	out := make(map[int]string, len(ids))
	for _, id := range ids {
		if id%2 == 0 {
			out[id] = rcOrder(id)
		}
	}
	return out, nil
}

// rcEvenOdd calls single for ids [from, from+n) on 8 goroutines, or with
// batch set, GetMany with chunks of 1000 of them on 2 goroutines, and
// checks that each even ID has its order and each odd one is not found.
func rcEvenOdd(t *testing.T, c *Cache, single func(context.Context, int) (string, error), batch *Batch[int, string], id func(i int) int, n int) {
	t.Helper()
	ctx := context.Background()
	check := func(id int, v string, err error) error {
		switch {
		case id%2 == 0 && (err != nil || v != rcOrder(id)):
			return fmt.Errorf("order %d exists but the cache said %q, %v (L2 errors so far: %d)", id, v, err, c.Stats().L2Errors)
		case id%2 != 0 && !errors.Is(err, ErrNotFound):
			return fmt.Errorf("order %d: %q, %v; want ErrNotFound", id, v, err)
		}
		return nil
	}
	if batch == nil {
		rcParallel(t, 8, 0, n, func(i int) error {
			v, err := single(ctx, id(i))
			return check(id(i), v, err)
		})
		return
	}
	const chunk = 1000
	rcParallel(t, 2, 0, (n+chunk-1)/chunk, func(b int) error {
		ids := make([]int, 0, chunk)
		for i := b * chunk; i < min((b+1)*chunk, n); i++ {
			ids = append(ids, id(i))
		}
		got, err := batch.GetMany(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			v, ok := got[id]
			var err error
			if !ok {
				err = ErrNotFound
			}
			if err := check(id, v, err); err != nil {
				return err
			}
		}
		return nil
	})
}

// rcParallel runs f(i) for every i in [from, to) on workers goroutines and
// stops at the first error.
func rcParallel(t *testing.T, workers, from, to int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	next.Store(int64(from))
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				if err := f(i); err != nil {
					if failed.CompareAndSwap(false, true) {
						t.Error(err)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		t.FailNow()
	}
}

// A "not found" answer is shared by the fleet: within its negative TTL
// neither the instance that asked nor another asks the tool again, and
// after it both do. Another user's identical guess is their own question,
// and invalidating a user's orders clears her negatives, at once on the
// instance that invalidated and on the others when the message arrives.
func TestNegativeSharedByTheFleetUntilItsTTL(t *testing.T) {
	const negTTL = 1500 * time.Millisecond
	res := resource.Resource{Name: "rc_order", Scope: scope.User, TTL: time.Minute, NegativeTTL: negTTL}
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 2)
			a := rcNew(t, Options{L2: stores[0]})
			b := rcNew(t, Options{L2: stores[1]})
			orders := &rcOrders{}
			getA, _ := Wrap(a, res, orders.get)
			getB, _ := Wrap(b, res, orders.get)
			alice := scope.WithUser(context.Background(), "alice")
			notFound := func(get func(context.Context, int) (string, error), id int) {
				t.Helper()
				if v, err := get(alice, id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("order %d: %q, %v; want ErrNotFound", id, v, err)
				}
			}

			start := time.Now()
			notFound(getA, 1)
			notFound(getA, 3)
			if orders.runs.Load() != 2 {
				t.Fatalf("tool runs = %d, want 2", orders.runs.Load())
			}
			// Within the negative TTL: neither A nor B asks the tool again.
			notFound(getA, 1)
			notFound(getB, 1)
			notFound(getB, 3)
			if elapsed := time.Since(start); elapsed >= negTTL {
				t.Fatalf("the repeated calls took %v, longer than the negative TTL %v; the test cannot tell", elapsed, negTTL)
			}
			if n := orders.runs.Load(); n != 2 {
				t.Fatalf("repeated not-found calls ran the tool %d more times", n-2)
			}
			if sa, sb := a.Stats(), b.Stats(); sa.NegativeHits != 1 || sb.NegativeHits != 2 {
				t.Fatalf("negative hits: A %d, B %d; want 1 and 2", sa.NegativeHits, sb.NegativeHits)
			}
			// Another user's identical guess is their own question.
			if _, err := getB(scope.WithUser(context.Background(), "bob"), 1); !errors.Is(err, ErrNotFound) || orders.runs.Load() != 3 {
				t.Fatalf("bob's call: %v after %d runs", err, orders.runs.Load())
			}

			// After the TTL both instances ask the tool again: A for order 1, B
			// for order 3 (whichever asks first stores a fresh answer for both).
			runs := orders.runs.Load()
			for _, step := range []struct {
				get func(context.Context, int) (string, error)
				id  int
			}{{getA, 1}, {getB, 3}} {
				wait.For(t, negTTL+5*time.Second, fmt.Sprintf("order %d to reach the tool again", step.id), func() bool {
					notFound(step.get, step.id)
					return orders.runs.Load() > runs
				})
				if time.Since(start) < negTTL {
					t.Fatalf("order %d reached the tool again before its negative TTL ended", step.id)
				}
				runs = orders.runs.Load()
			}

			// Invalidating alice's orders clears her negatives: at once on the
			// instance that invalidated, and on the others when the message
			// arrives.
			notFound(getA, 5)
			notFound(getA, 7)
			notFound(getB, 5)
			notFound(getB, 7)
			runs = orders.runs.Load()
			if err := a.Invalidate(context.Background(), TargetResourceScope(res, "alice")); err != nil {
				t.Fatal(err)
			}
			notFound(getA, 5)
			if orders.runs.Load() != runs+1 {
				t.Fatal("after invalidating alice's orders, A still answered order 5 from the negative cache")
			}
			wait.For(t, 5*time.Second, "B to ask the tool about order 7 again", func() bool {
				notFound(getB, 7)
				return orders.runs.Load() == runs+2
			})
		})
	}
}

// A flood of "not found" answers (an agent guessing IDs) does not evict the
// positive entries from L1, through single calls and batches, with the
// negatives shared through L2: over the in-memory L2 and a redis-server.
// (Without L2: TestNegativeFloodKeepsPositiveEntriesWithoutL2.)
func TestNegativeFloodKeepsPositiveL1EntriesWithL2(t *testing.T) {
	const positives, negatives = 1000, 100_000
	res := resource.Resource{Name: "rc_item", TTL: 10 * time.Minute, NegativeTTL: 10 * time.Minute}
	for _, backend := range l2Backends[:2] { // a cluster adds nothing here but time
		t.Run(backend.name, func(t *testing.T) {
			// An L1 of twice the positives: negative keys kept as L1 entries would
			// evict them many times over. A generous L2Timeout: a busy machine must
			// not make L2 look unhealthy.
			c := rcNew(t, Options{L2: backend.stores(t, 1)[0], L2Timeout: 5 * time.Second, L1MaxEntries: 2 * positives,
				Negative: NegativeOptions{ExpectedKeys: 2 * negatives}})
			rcSubscribed(t, c)
			orders := &rcOrders{}
			// Without the fleet lock a miss costs one L2 round trip, which keeps
			// 100k misses affordable; the negative cache does not depend on it.
			get, _ := Wrap(c, res, orders.get, NoFleetLock())
			batch, err := WrapBatch(c, res, orders.getMany)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for i := 0; i < positives; i++ {
				if v, err := get(ctx, 2*i); err != nil || v != rcOrder(2*i) {
					t.Fatalf("order %d: %q, %v", 2*i, v, err)
				}
			}
			hits := c.Stats().L1Hits
			for i := 0; i < positives; i++ {
				get(ctx, 2*i)
			}
			if d := c.Stats().L1Hits - hits; d != positives {
				t.Fatalf("before the flood only %d of %d positive entries were L1 hits", d, positives)
			}

			// Guesses through single calls and through batches (cheaper under
			// -race): both read paths remember "not found" answers.
			const single = 30_000
			rcEvenOdd(t, c, get, nil, func(i int) int { return 1_000_001 + 2*i }, single)
			rcEvenOdd(t, c, nil, batch, func(i int) int { return 2_000_001 + 2*i }, negatives-single)
			if s := c.Stats(); s.NegativeStored < negatives {
				t.Fatalf("%d negatives stored, want %d", s.NegativeStored, negatives)
			}

			before, runs := c.Stats(), orders.runs.Load()
			for i := 0; i < positives; i++ {
				if v, err := get(ctx, 2*i); err != nil || v != rcOrder(2*i) {
					t.Fatalf("order %d after the flood: %q, %v", 2*i, v, err)
				}
			}
			after := c.Stats()
			if d := after.L1Hits - before.L1Hits; d != positives || orders.runs.Load() != runs || after.L2Hits != before.L2Hits {
				t.Fatalf("after %d negative keys: %d of %d positive entries were L1 hits (%d L2 hits, %d tool runs)",
					negatives, d, positives, after.L2Hits-before.L2Hits, orders.runs.Load()-runs)
			}
		})
	}
}

// While L2 is healthy no existing ID is answered "not found", even when
// the negative filter, holding 1M IDs that do not exist, answers "maybe"
// for about 10% of them: each is confirmed with L2, through single calls
// and batches. Over the in-memory L2 and a redis-server: a cluster adds
// nothing here but time (the confirmations read one key each, as on one
// server), and the test already takes long under -race.
func TestNoFalseNotFoundWhileL2IsHealthy(t *testing.T) {
	const negatives, positives = 1_000_000, 100_000
	res := resource.Resource{Name: "rc_sku", TTL: 10 * time.Minute, NegativeTTL: 10 * time.Minute}
	for _, backend := range l2Backends[:2] {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 2)
			raw := stores[1] // no cache's
			// A generous L2Timeout: "while L2 is healthy" must not depend on how
			// busy the machine is (a timed-out confirmation trusts the filter). A
			// false-positive rate of 10% instead of the default 1% makes the filter
			// answer "maybe" for about 10k of the existing IDs, each of which must
			// be confirmed with L2: a harder test, and a smaller filter to fill.
			c := rcNew(t, Options{L2: stores[0], L2Timeout: 5 * time.Second,
				Negative: NegativeOptions{ExpectedKeys: negatives, FalsePositiveRate: 0.1}})
			orders := &rcOrders{}
			get, _ := Wrap(c, res, orders.get, NoFleetLock())
			batch, err := WrapBatch(c, res, orders.getMany)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()

			rs, err := c.register(res)
			if err != nil {
				t.Fatal(err)
			}
			// A few "not found" answers through the read path: the tool runs, the
			// filter and L2 remember.
			const sample = 2000
			sampleID := func(i int) int { return 2*(i*499%negatives) + 1 }
			rcParallel(t, 8, 0, sample, func(i int) error {
				if _, err := get(ctx, sampleID(i)); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("order %d: %v, want ErrNotFound", sampleID(i), err)
				}
				return nil
			})
			// The rest of the 1M in bulk, straight into the filter under the keys
			// the read path uses (1M tool calls would take minutes under -race).
			// Their L2 markers are left out: a lookup of an existing ID reads its
			// own key, never another's, so they cannot change what it finds.
			epochOf := func(key string) uint64 {
				b, ok := rawGet(t, raw, key)
				v, err := strconv.ParseUint(string(b), 10, 64)
				if !ok || err != nil {
					t.Fatalf("epoch %s: %q (in L2: %v), %v", key, b, ok, err)
				}
				return v
			}
			// A global resource: one generation for every ID.
			st := epoch.StampOf([]uint64{epochOf(keyspace.GlobalEpochKey), epochOf(keyspace.ResourceEpochKey(res.ID()))})
			keyOf := func(id int) string {
				// The hash of an int argument is the hash of its JSON, its decimal
				// digits; HashJSON skips HashValue's reflection.
				var buf [20]byte
				h, err := resource.HashJSON(strconv.AppendInt(buf[:0], int64(id), 10), resource.Limits{})
				if err != nil {
					panic(err)
				}
				return negKey(&attempt{key: string(keyspace.AppendEntryKey(nil, res.ID(), "", h.String())), st: st})
			}
			if h, _ := resource.HashValue(12345, resource.Limits{}); !strings.Contains(keyOf(12345), h.String()) {
				t.Fatal("HashJSON of an int's digits is not HashValue of the int")
			}
			filter := c.negFilterFor(rs, "")
			for i := 0; i < sample; i++ {
				if !filter.test(keyOf(sampleID(i))) {
					t.Fatalf("order %d: the read path remembered it under another key than the test computes", sampleID(i))
				}
			}
			inSample := map[int]bool{}
			for i := 0; i < sample; i++ {
				inSample[sampleID(i)] = true
			}
			// One goroutine, so the filter's lock is not contended, and fewer
			// collections of a heap that only grows (1M keys take over 20s under
			// -race on a busy 2-core machine otherwise).
			defer debug.SetGCPercent(debug.SetGCPercent(800))
			for i := 0; i < negatives; i++ {
				if id := 2*i + 1; !inSample[id] {
					filter.add(keyOf(id))
				}
			}
			filter.mu.Lock()
			added := filter.added
			filter.mu.Unlock()
			if added != negatives {
				t.Fatalf("the filter holds %d keys, want %d (it must not rotate during the test)", added, negatives)
			}
			// The sample is still answered "not found" without the tool.
			runs := orders.runs.Load()
			for i := 0; i < sample; i++ {
				if _, err := get(ctx, sampleID(i)); !errors.Is(err, ErrNotFound) {
					t.Fatalf("order %d: %v, want ErrNotFound", sampleID(i), err)
				}
			}
			if n := orders.runs.Load() - runs; n != 0 {
				t.Fatalf("the tool ran %d times for IDs already known not to exist", n)
			}

			// The filter now answers "maybe" for some IDs that exist. Count them
			// among those of each read path: if none, that path could not fail.
			const single = 30_000
			for _, part := range []struct {
				name     string
				from, to int
			}{{"single calls", 0, single}, {"batches", single, positives}} {
				maybes := 0
				for i := part.from; i < part.to; i++ {
					if filter.test(keyOf(2 * i)) {
						maybes++
					}
				}
				n := part.to - part.from
				t.Logf("%s: the bloom filter says \"maybe\" for %d of %d existing IDs", part.name, maybes, n)
				if maybes < n/100 {
					t.Fatalf("%s: only %d false positives among %d IDs; the test would not exercise confirmation", part.name, maybes, n)
				}
			}
			// Existing IDs through single calls and through batches (cheaper
			// under -race).
			rcEvenOdd(t, c, get, nil, func(i int) int { return 2 * i }, single)
			rcEvenOdd(t, c, nil, batch, func(i int) int { return 2 * (single + i) }, positives-single)
			if s := c.Stats(); s.L2Errors != 0 {
				t.Fatalf("%d L2 errors: L2 was not healthy throughout", s.L2Errors)
			}
			if s := c.Stats(); s.NegativeHits != sample || orders.runs.Load() != sample+positives {
				t.Fatalf("negative hits %d (want the %d sampled), tool runs %d (want %d)", s.NegativeHits, sample, orders.runs.Load(), sample+positives)
			}
		})
	}
}

// A "not found" marker never replaces a value in L2, whichever instance
// writes last, with write-behind and write-through: a marker that lands
// after a value leaves it, a value that lands after a marker replaces it,
// and the same holds when both race, many times.
func TestNegativeMarkerNeverReplacesValue(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			for _, wt := range []bool{false, true} {
				name := "write-behind"
				var opts []ToolOption
				if wt {
					name = "write-through"
					opts = append(opts, WriteThrough())
				}
				t.Run(name, func(t *testing.T) {
					res := resource.Resource{Name: "rc_stock", TTL: time.Minute, NegativeTTL: time.Minute}
					stores := backend.stores(t, 3)
					raw := stores[2] // no cache's
					a := rcNew(t, Options{L2: stores[0]})
					b := rcNew(t, Options{L2: stores[1]})
					ctx := context.Background()
					// A's tool finds every item, B's tool finds none: each call
					// writes what its own tool said.
					var mu sync.Mutex
					aRan := map[int]bool{}
					bRan := map[int]bool{}
					type gate struct{ entered, release chan struct{} }
					var aGates, bGates sync.Map // id → *gate: the tool waits for release
					tool := func(gates *sync.Map, ran map[int]bool, v string, err error) func(context.Context, int) (string, error) {
						return func(ctx context.Context, id int) (string, error) {
							if g, ok := gates.Load(id); ok {
								close(g.(*gate).entered)
								<-g.(*gate).release
							}
							mu.Lock()
							ran[id] = true
							mu.Unlock()
							return v, err
						}
					}
					opts := append(opts, NoFleetLock()) // both instances run their tool
					getA, _ := Wrap(a, res, tool(&aGates, aRan, "in stock", nil), opts...)
					getB, _ := Wrap(b, res, tool(&bGates, bRan, "", ErrNotFound), opts...)
					newGate := func(gates *sync.Map, id int) *gate {
						g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
						gates.Store(id, g)
						return g
					}
					// kindAt returns the kind of the L2 entry of id, 0 if none: the
					// entry at the key lookups of id read, which on a Redis L2 (whose
					// keys can be listed) must be id's only entry.
					kindAt := func(id int) byte {
						h, _ := resource.HashValue(id, resource.Limits{})
						key := string(keyspace.AppendEntryKey(nil, res.ID(), "", h.String()))
						if keys, ok := redisKeys(t, raw, "{*"); ok {
							for _, k := range keys {
								if pk := keyspace.Parse(k); pk.Type == keyspace.Entry && pk.Hash == h.String() && k != key {
									t.Fatalf("item %d has more than one entry in L2: %s and %s", id, key, k)
								}
							}
						}
						v, ok := rawGet(t, raw, key)
						if !ok {
							return 0
						}
						env, err := keyspace.OpenEnvelope(v)
						if err != nil {
							t.Fatalf("item %d: undecodable L2 entry: %v", id, err)
						}
						return env.Kind
					}
					drained := func() {
						t.Helper()
						wait.For(t, 10*time.Second, "the write queues", func() bool { return rcDrained(a) && rcDrained(b) })
					}

					// B's marker lands after A's value: B read L2 before A wrote.
					g := newGate(&bGates, 1)
					bDone := make(chan error, 1)
					go func() { _, err := getB(ctx, 1); bDone <- err }()
					<-g.entered
					if v, err := getA(ctx, 1); err != nil || v != "in stock" {
						t.Fatalf("A: %q, %v", v, err)
					}
					drained()
					if k := kindAt(1); k != keyspace.KindValue {
						t.Fatalf("after A's write, item 1's L2 entry has kind %d", k)
					}
					close(g.release)
					if err := <-bDone; !errors.Is(err, ErrNotFound) {
						t.Fatalf("B: %v, want its tool's ErrNotFound", err)
					}
					drained()
					if k := kindAt(1); k != keyspace.KindValue {
						t.Fatalf("B's marker replaced A's value (kind %d)", k)
					}

					// A's value lands after B's marker: it replaces it.
					g = newGate(&aGates, 2)
					aDone := make(chan error, 1)
					go func() { _, err := getA(ctx, 2); aDone <- err }()
					<-g.entered
					if _, err := getB(ctx, 2); !errors.Is(err, ErrNotFound) {
						t.Fatalf("B: %v", err)
					}
					drained()
					if k := kindAt(2); k != keyspace.KindNotFound {
						t.Fatalf("after B's marker, item 2's L2 entry has kind %d", k)
					}
					close(g.release)
					if err := <-aDone; err != nil {
						t.Fatal(err)
					}
					drained()
					if k := kindAt(2); k != keyspace.KindValue {
						t.Fatalf("A's value did not replace B's marker (kind %d)", k)
					}

					// Both at once, many times.
					const rounds = 300
					var wg sync.WaitGroup
					for id := 100; id < 100+rounds; id++ {
						start := make(chan struct{})
						wg.Go(func() { <-start; getA(ctx, id) })
						wg.Go(func() { <-start; getB(ctx, id) })
						close(start)
						if id%16 == 0 {
							wg.Wait()
						}
					}
					wg.Wait()
					drained()
					if s := a.Stats(); s.WritesDropped != 0 || s.WritesFailed != 0 {
						t.Fatalf("A's writes: %d dropped, %d failed", s.WritesDropped, s.WritesFailed)
					}
					both := 0
					for id := 100; id < 100+rounds; id++ {
						mu.Lock()
						ranA, ranB := aRan[id], bRan[id]
						mu.Unlock()
						k := kindAt(id)
						if ranA && k != keyspace.KindValue {
							t.Errorf("item %d: A wrote a value but L2 holds kind %d", id, k)
						}
						if ranA && ranB {
							both++
						}
					}
					t.Logf("%d of %d rounds ran both tools", both, rounds)
					if both == 0 {
						t.Fatal("no round ran both tools; the race was not exercised")
					}
				})
			}
		})
	}
}

// Frameworks hand the tool's error to the model, so a remembered "not
// found" says what the tool said (its first line), on this instance and on
// another, rather than a message of the cache's own.
func TestNegativeRepeatsTheToolsMessage(t *testing.T) {
	res := resource.Resource{Name: "rc_invoice", Scope: scope.User, TTL: time.Minute, NegativeTTL: time.Minute}
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 2)
			a := rcNew(t, Options{L2: stores[0]})
			b := rcNew(t, Options{L2: stores[1]})
			var runs atomic.Int32
			tool := func(_ context.Context, id int) (string, error) {
				runs.Add(1)
				return "", fmt.Errorf("invoice %d does not exist: %w\nsecond line", id, ErrNotFound)
			}
			getA, _ := Wrap(a, res, tool)
			getB, _ := Wrap(b, res, tool)
			alice := scope.WithUser(context.Background(), "alice")
			if _, err := getA(alice, 42); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "invoice 42 does not exist") {
				t.Fatalf("the tool's own answer: %v", err)
			}
			wait.For(t, 5*time.Second, "A's marker in L2", func() bool { return a.Stats().WritesDone >= 1 })
			for name, get := range map[string]func(context.Context, int) (string, error){"A": getA, "B": getB} {
				_, err := get(alice, 42)
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s: %v, want ErrNotFound", name, err)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "agentcache: rc_invoice: not found (cached): invoice 42 does not exist") || strings.ContainsAny(msg, "\r\n") {
					t.Fatalf("%s: the remembered not-found says %q; want one line with the resource and the tool's message", name, msg)
				}
			}
			if n := runs.Load(); n != 1 {
				t.Fatalf("tool runs = %d, want 1", n)
			}
		})
	}
}
