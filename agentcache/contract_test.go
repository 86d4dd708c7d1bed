package agentcache

// Regression tests of the consistency contract (DESIGN.md, "Consistency
// contract", and the round-trip budget), each named after the promise it
// checks and each run against a real redis-server. They use the public API
// of the package and the rc* helpers of redisenv_test.go; they look at
// Redis directly only to check or tamper with what the cache stored. The
// helpers of this file are the ct* names.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
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
)

// ctCartRes is the per-user resource of most tests here.
var ctCartRes = resource.Resource{Name: "ct_cart", Scope: scope.User, TTL: time.Hour}

// ctArgs are the arguments of ctCartRes's tool.
type ctArgs struct {
	Q string `json:"q"`
}

var ctQ = ctArgs{Q: "items"}

// ctTruth is what the tools read: a version per user (or per ID). A tool
// returns the version it read, so a value served after the version moved
// on is one the cache kept.
type ctTruth struct {
	mu sync.Mutex
	v  map[string]int
}

func newCtTruth() *ctTruth { return &ctTruth{v: map[string]int{}} }

func (s *ctTruth) bump(who string) {
	s.mu.Lock()
	s.v[who]++
	s.mu.Unlock()
}

// value is what the tool returns for who now.
func (s *ctTruth) value(who string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%s v%d", who, s.v[who]+1)
}

// tool is ctCartRes's tool: it returns the caller's version.
func (s *ctTruth) tool(ctx context.Context, _ ctArgs) (string, error) {
	u, _ := scope.UserFrom(ctx)
	return s.value(u), nil
}

// ctWrap wraps truth's tool as ctCartRes on c.
func ctWrap(t *testing.T, c *Cache, truth *ctTruth, opts ...ToolOption) func(context.Context, ctArgs) (string, error) {
	t.Helper()
	get, err := Wrap(c, ctCartRes, truth.tool, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return get
}

// ctCall calls get for user and fails the test on an error.
func ctCall(t *testing.T, get func(context.Context, ctArgs) (string, error), user string) string {
	t.Helper()
	v, err := get(scope.WithUser(context.Background(), user), ctQ)
	if err != nil {
		t.Fatalf("%s's call: %v", user, err)
	}
	return v
}

// ctDrained reports whether c's write queue is empty and every write it
// accepted has been accounted for: the Writes* counters of Stats other
// than WritesQueued (done, dropped, failed, skipped, and any outcome the
// cache may count besides) add up to WritesQueued.
func ctDrained(c *Cache) bool {
	s := c.Stats()
	if s.WriteQueueDepth != 0 {
		return false
	}
	var outcomes uint64
	v := reflect.ValueOf(s)
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if strings.HasPrefix(f.Name, "Writes") && f.Name != "WritesQueued" && f.Type.Kind() == reflect.Uint64 {
			outcomes += v.Field(i).Uint()
		}
	}
	return outcomes >= s.WritesQueued
}

// ctWaitDrained waits until every cache's write queue has drained.
func ctWaitDrained(t *testing.T, cs ...*Cache) {
	t.Helper()
	for _, c := range cs {
		wait.For(t, 30*time.Second, "the write queue to drain", func() bool { return ctDrained(c) })
	}
}

// ctBacklog gives c's write queue n writes of other keys, as ordinary
// traffic does, so that a write queued next lands well after it was queued.
func ctBacklog(t *testing.T, c *Cache, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := c.Set(context.Background(), fmt.Sprintf("traffic-%d", i), i, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
}

// ctStr is a string key of Redis as ctStrings saw it.
type ctStr struct {
	val string
	ttl time.Duration // as PTTL reports it: -1 for none
}

// ctStrings returns every string key under e's prefix with its value and
// expiry.
func ctStrings(t *testing.T, e *rcEnv) map[string]ctStr {
	t.Helper()
	ctx := context.Background()
	out := map[string]ctStr{}
	for _, k := range e.Keys("*") {
		if e.Raw.Type(ctx, k).Val() != "string" {
			continue
		}
		v, err := e.Raw.Get(ctx, k).Result()
		if err != nil {
			continue // expired or deleted since the scan
		}
		out[k] = ctStr{val: v, ttl: e.Raw.PTTL(ctx, k).Val()}
	}
	return out
}

// Promise 2 (fenced writes), with Delete and exact invalidation: a write
// queued before a Delete or a TargetCall invalidation must not land in L2
// after it and bring the deleted value back, on this instance or another.
// The write queue is given a backlog first (ordinary traffic), so that the
// queued writes land after the deletes.
func TestDeleteIsNotUndoneByAQueuedWrite(t *testing.T) {
	ctx := context.Background()
	t.Run("Delete", func(t *testing.T) {
		e := rcStart(t)
		a := rcNew(t, Options{L2: e.store(), Tuning: TuningOptions{WriteBatchSize: 1}})
		rcSubscribed(t, a)
		ctBacklog(t, a, 2000)
		const n = 200
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("k%d", i)
			if err := a.Set(ctx, k, "old "+k, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := a.Delete(ctx, k); err != nil {
				t.Fatalf("Delete(%s): %v", k, err)
			}
		}
		ctWaitDrained(t, a)
		fresh := rcNew(t, Options{L2: e.store()})
		for _, in := range []struct {
			name string
			c    *Cache
		}{{"the instance that deleted", a}, {"a fresh instance", fresh}} {
			served := 0
			for i := 0; i < n; i++ {
				k := fmt.Sprintf("k%d", i)
				v, err := Get(ctx, in.c, k, func(context.Context, string) (string, error) { return "loaded " + k, nil })
				if err != nil {
					t.Fatalf("%s: Get(%s): %v", in.name, k, err)
				}
				if v == "old "+k {
					served++
				}
			}
			if served > 0 {
				t.Errorf("%s served %d of %d deleted values again (from L2, once the write queue had drained)", in.name, served, n)
			}
		}
	})

	t.Run("TargetCall", func(t *testing.T) {
		e := rcStart(t)
		a := rcNew(t, Options{L2: e.store(), Tuning: TuningOptions{WriteBatchSize: 1}})
		rcSubscribed(t, a)
		truth := newCtTruth()
		get := ctWrap(t, a, truth, NoFleetLock())
		ctBacklog(t, a, 2000)
		old := ctCall(t, get, "alice")
		truth.bump("alice")
		if err := a.Invalidate(ctx, TargetCall(ctCartRes, "alice", ctQ)); err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
		ctWaitDrained(t, a)
		if v := ctCall(t, get, "alice"); v == old {
			t.Errorf("the instance that invalidated served the pre-invalidation value %q again once its queued write landed", v)
		}
		fresh := rcNew(t, Options{L2: e.store()})
		if v := ctCall(t, ctWrap(t, fresh, truth, NoFleetLock()), "alice"); v == old {
			t.Errorf("a fresh instance served the pre-invalidation value %q from L2", v)
		}
	})
}

// Promise 2 (fenced writes), for a load already running: a tool that
// started before an invalidation returns a result that predates it. Its
// caller may get that result, but it must not be stored: neither this
// instance nor another may serve it afterwards. The scoped target has an
// epoch and already holds; TargetCall and Delete have none.
func TestInvalidationFencesARunningLoad(t *testing.T) {
	ctx := context.Background()
	alice := scope.WithUser(ctx, "alice")

	// blocked returns a tool that reads the truth, then blocks on its
	// first run until release is closed.
	blocked := func(truth *ctTruth) (tool func(context.Context, ctArgs) (string, error), started chan struct{}, release chan struct{}) {
		started, release = make(chan struct{}), make(chan struct{})
		var first atomic.Bool
		first.Store(true)
		tool = func(ctx context.Context, args ctArgs) (string, error) {
			v, err := truth.tool(ctx, args)
			if first.CompareAndSwap(true, false) {
				close(started)
				<-release
			}
			return v, err
		}
		return tool, started, release
	}
	recv := func(t *testing.T, ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not within 10s", what)
		}
	}

	for _, target := range []struct {
		name string
		t    Target
	}{
		{"TargetCall", TargetCall(ctCartRes, "alice", ctQ)},
		{"TargetResourceScope", TargetResourceScope(ctCartRes, "alice")},
	} {
		t.Run(target.name, func(t *testing.T) {
			e := rcStart(t)
			a := rcNew(t, Options{L2: e.store()})
			b := rcNew(t, Options{L2: e.store()})
			rcSubscribed(t, a, b)
			truth := newCtTruth()
			tool, started, release := blocked(truth)
			getA, err := Wrap(a, ctCartRes, tool)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var first string
			go func() {
				defer close(done)
				first, _ = getA(alice, ctQ)
			}()
			recv(t, started, "the tool to start")
			old := truth.value("alice")
			truth.bump("alice")
			if err := a.Invalidate(ctx, target.t); err != nil {
				t.Fatalf("Invalidate: %v", err)
			}
			close(release)
			recv(t, done, "the first call to return")
			if first != old {
				t.Fatalf("the first call returned %q; want the value its tool read, %q", first, old)
			}
			ctWaitDrained(t, a)
			if v := ctCall(t, getA, "alice"); v == old {
				t.Errorf("the invalidating instance served %q, loaded by a tool that started before the invalidation", v)
			}
			if v := ctCall(t, ctWrap(t, b, truth), "alice"); v == old {
				t.Errorf("another instance served %q, loaded before the invalidation", v)
			}
			c := rcNew(t, Options{L2: e.store()})
			if v := ctCall(t, ctWrap(t, c, truth), "alice"); v == old {
				t.Errorf("a new instance served %q, loaded before the invalidation", v)
			}
		})
	}

	t.Run("Delete", func(t *testing.T) {
		e := rcStart(t)
		a := rcNew(t, Options{L2: e.store()})
		b := rcNew(t, Options{L2: e.store()})
		rcSubscribed(t, a, b)
		var version atomic.Int32
		value := func() string { return fmt.Sprintf("v%d", version.Load()+1) }
		started, release := make(chan struct{}), make(chan struct{})
		blockedLoader := func(context.Context, string) (string, error) {
			v := value()
			close(started)
			<-release
			return v, nil
		}
		loader := func(context.Context, string) (string, error) { return value(), nil }
		done := make(chan struct{})
		var first string
		go func() {
			defer close(done)
			first, _ = Get(ctx, a, "k", blockedLoader)
		}()
		recv(t, started, "the loader to start")
		old := value()
		version.Add(1)
		if err := a.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		close(release)
		recv(t, done, "the first Get to return")
		if first != old {
			t.Fatalf("the first Get returned %q; want %q", first, old)
		}
		ctWaitDrained(t, a)
		for _, in := range []struct {
			name string
			c    *Cache
		}{{"the deleting instance", a}, {"another instance", b}, {"a new instance", rcNew(t, Options{L2: e.store()})}} {
			v, err := Get(ctx, in.c, "k", loader)
			if err != nil {
				t.Fatalf("%s: %v", in.name, err)
			}
			if v == old {
				t.Errorf("%s served %q, loaded by a loader that started before the Delete", in.name, v)
			}
		}
	})
}

// Promise 4 (epochs never go back): an invalidation's epoch that L2 loses
// (a failover to a replica that missed it, a restored backup) must not
// bring the invalidated entries back. The test puts L2's epoch state as it
// was before the invalidation (the keys the invalidation wrote get their
// old values; keys it created are deleted), then checks that neither the
// invalidating instance nor another serves the old value, that L2 gets the
// newer epoch back, and that a new instance does not serve it either.
func TestEpochNeverGoesBackWhenL2LosesIt(t *testing.T) {
	const maxAge = 200 * time.Millisecond
	e := rcStart(t)
	ctx := context.Background()
	a := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
	b := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
	rcSubscribed(t, a, b)
	truth := newCtTruth()
	getA, getB := ctWrap(t, a, truth), ctWrap(t, b, truth)
	old := ctCall(t, getA, "alice")
	ctWaitDrained(t, a)
	if v := ctCall(t, getB, "alice"); v != old || b.Stats().L2Hits != 1 {
		t.Fatalf("B: %q with %d L2 hits; want A's %q from L2", v, b.Stats().L2Hits, old)
	}

	before := ctStrings(t, e)
	truth.bump("alice")
	if err := a.Invalidate(ctx, TargetResourceScope(ctCartRes, "alice")); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	after := ctStrings(t, e)
	var changed []string
	for k, v := range after {
		if w, ok := before[k]; !ok || w.val != v.val {
			changed = append(changed, k)
		}
	}
	if len(changed) == 0 {
		t.Fatal("the invalidation changed no string key under the prefix; cannot find its epoch")
	}
	t.Logf("keys the invalidation wrote: %q", changed)
	// B has seen the invalidation before L2 loses it.
	wait.Until(t, 5*time.Second, func() string {
		if v := ctCall(t, getB, "alice"); v == old {
			return fmt.Sprintf("B still serves %q after the invalidation", v)
		}
		return ""
	})
	// L2 loses the invalidation.
	for _, k := range changed {
		w, ok := before[k]
		var err error
		switch {
		case !ok:
			err = e.Raw.Del(ctx, k).Err()
		case w.ttl > 0:
			err = e.Raw.Set(ctx, k, w.val, w.ttl).Err()
		default:
			err = e.Raw.Set(ctx, k, w.val, 0).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	// Watch both instances for several MaxEpochAges.
	served := map[string]int{}
	for deadline := time.Now().Add(8 * maxAge); time.Now().Before(deadline); {
		for _, in := range []struct {
			name string
			get  func(context.Context, ctArgs) (string, error)
		}{{"the invalidating instance", getA}, {"another instance", getB}} {
			if ctCall(t, in.get, "alice") == old {
				served[in.name]++
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	for name, n := range served {
		t.Errorf("%s served the pre-invalidation value %q %d times after L2 lost the invalidation's epoch", name, old, n)
	}
	wait.Until(t, 5*maxAge, func() string {
		for _, k := range changed {
			w, ok := before[k]
			if !ok {
				continue
			}
			if v, err := e.Raw.Get(ctx, k).Result(); err == nil && v == w.val {
				return fmt.Sprintf("L2 still holds the pre-invalidation value of %s: the newer epoch was not restored", k)
			}
		}
		return ""
	})
	c := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
	if v := ctCall(t, ctWrap(t, c, truth), "alice"); v == old {
		t.Errorf("a new instance served the pre-invalidation value %q", v)
	}
}

// Promise 3 (fleet bound) after a partition: an invalidation made on an
// instance cut off from L2 (its breaker already open) applies locally and
// returns a *FleetError; once the partition heals, the other instances must
// stop serving the old value within MaxEpochAge, whatever the invalidating
// instance's breaker backoff (30s here).
func TestPartitionedInvalidationReachesTheFleetWithinMaxEpochAge(t *testing.T) {
	const maxAge = 400 * time.Millisecond
	e := rcStart(t)
	ctx := context.Background()
	p := e.Proxy()
	a := rcNew(t, Options{
		L2: e.storeVia(p.Addr()), MaxEpochAge: maxAge, L2Timeout: 300 * time.Millisecond, Tuning: TuningOptions{Breaker: BreakerOptions{Failures: 1, OpenFor: 30 * time.Second, MaxOpenFor: 30 * time.Second}},
	})
	t.Cleanup(func() { p.Blackhole(false) }) // before a closes
	b := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
	rcSubscribed(t, a, b)
	truth := newCtTruth()
	getA, getB := ctWrap(t, a, truth), ctWrap(t, b, truth)
	old := ctCall(t, getA, "alice")
	ctWaitDrained(t, a)
	if v := ctCall(t, getB, "alice"); v != old {
		t.Fatalf("B: %q; want %q", v, old)
	}

	// The partition: A's next lookup times out and opens its breaker, so
	// the invalidation that follows does not even try L2.
	p.Blackhole(true)
	ctCall(t, getA, "bob")
	t.Logf("A's breaker after a lookup timed out: %s", a.Stats().Breaker)
	truth.bump("alice")
	err := a.Invalidate(ctx, TargetResourceScope(ctCartRes, "alice"))
	var fe *FleetError
	if !errors.As(err, &fe) {
		t.Fatalf("Invalidate cut off from L2 = %v; want a *FleetError", err)
	}
	if v := ctCall(t, getA, "alice"); v == old {
		t.Fatalf("A served %q right after its own invalidation", v)
	}
	p.Blackhole(false)
	healed := time.Now()
	wait.Until(t, 5*maxAge, func() string {
		if v := ctCall(t, getB, "alice"); v == old {
			return fmt.Sprintf("B still serves the value A invalidated during the partition (%q), %v after it healed (MaxEpochAge %v; A's breaker: %s)",
				v, time.Since(healed).Round(time.Millisecond), maxAge, a.Stats().Breaker)
		}
		return ""
	})
	if v := ctCall(t, getA, "alice"); v == old {
		t.Errorf("A served the value it invalidated, %q, after the partition healed", v)
	}
}

// Promise 5 (corrupt bytes are repaired, not fatal): an epoch key holding
// something that is not an epoch (garbage, or another type) is treated as
// absent and overwritten; it never opens the breaker, and L2 keeps serving
// entries across instances.
func TestCorruptEpochKeyIsRepairedNotFatal(t *testing.T) {
	const garbage = "definitely not an epoch"
	for _, tc := range []struct {
		name    string
		corrupt func(ctx context.Context, raw *goredis.Client, key string) error
	}{
		{"garbage", func(ctx context.Context, raw *goredis.Client, key string) error {
			return raw.Set(ctx, key, garbage, 0).Err()
		}},
		{"list", func(ctx context.Context, raw *goredis.Client, key string) error {
			if err := raw.Del(ctx, key).Err(); err != nil {
				return err
			}
			return raw.RPush(ctx, key, garbage, garbage).Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxAge = 200 * time.Millisecond
			e := rcStart(t)
			ctx := context.Background()
			a := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
			b := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
			rcSubscribed(t, a, b)
			fromA := func(_ context.Context, k string) (string, error) { return "A's " + k, nil }
			fromB := func(_ context.Context, k string) (string, error) { return "B's " + k, nil }
			if _, err := Get(ctx, a, "warm", fromA); err != nil {
				t.Fatal(err)
			}
			ctWaitDrained(t, a)
			keys := e.Keys("ep:*")
			if len(keys) == 0 {
				t.Fatalf("no epoch key (ep:*) under the prefix; keys: %q", e.Keys("*"))
			}
			for _, k := range keys {
				if err := tc.corrupt(ctx, e.Raw, k); err != nil {
					t.Fatal(err)
				}
			}
			i := 0
			wait.Until(t, 10*time.Second, func() string {
				i++
				k := fmt.Sprintf("k%d", i)
				if v, err := Get(ctx, a, k, fromA); err != nil || v != "A's "+k {
					t.Fatalf("A: Get(%s) = %q, %v", k, v, err)
				}
				ctWaitDrained(t, a)
				hits := b.Stats().L2Hits
				v, err := Get(ctx, b, k, fromB)
				if err != nil {
					t.Fatalf("B: Get(%s): %v", k, err)
				}
				for name, c := range map[string]*Cache{"A": a, "B": b} {
					if s := c.Stats(); s.Breaker != "closed" {
						t.Fatalf("%s's breaker is %s over a corrupt epoch key (L2 errors %d); it must stay closed", name, s.Breaker, s.L2Errors)
					}
				}
				for _, ek := range keys {
					switch typ := e.Raw.Type(ctx, ek).Val(); {
					case typ == "none":
						return fmt.Sprintf("epoch key %s was not rewritten", ek)
					case typ == "list", typ == "string" && e.Raw.Get(ctx, ek).Val() == garbage:
						return fmt.Sprintf("epoch key %s still holds the corrupt %s", ek, typ)
					}
				}
				if v != "A's "+k || b.Stats().L2Hits == hits {
					return fmt.Sprintf("B got %q for %s (L2 hits %d → %d); want A's entry from L2", v, k, hits, b.Stats().L2Hits)
				}
				if a.Stats().L2Corrupt+b.Stats().L2Corrupt == 0 {
					return "the replaced epoch keys were not counted (Stats.L2Corrupt)"
				}
				return ""
			})
		})
	}
}

// ctProductRes is the global resource of the batch tests: one entry per
// product ID, shared by the batch tool and a single-ID tool.
var ctProductRes = resource.Resource{Name: "ct_products", Scope: scope.Global, TTL: time.Hour}

// Every entry point keeps every promise: WrapBatch must read like Wrap.
func TestBatchReadsLikeSingleCalls(t *testing.T) {
	ctx := context.Background()

	// An exact invalidation whose L2 delete did not land (L2 refused it)
	// must not be undone by a batch read of L2 while the delete is pending,
	// as it is not by a single call.
	t.Run("exact invalidation pending", func(t *testing.T) {
		e := rcStart(t)
		if err := e.Raw.Do(ctx, "ACL", "SETUSER", "ct-nodel", "on", ">ct-pw", "~*", "&*", "+@all", "-del", "-unlink").Err(); err != nil {
			t.Fatal(err)
		}
		a := rcNew(t, Options{
			L2: e.store(func(o *goredis.Options) { o.Username, o.Password = "ct-nodel", "ct-pw" }), Tuning: TuningOptions{Breaker: BreakerOptions{Failures: 1000}},
		})
		rcSubscribed(t, a)
		truth := newCtTruth()
		price := func(id int) string { return truth.value(fmt.Sprint(id)) }
		batch, err := WrapBatch(a, ctProductRes, func(_ context.Context, ids []int) (map[int]string, error) {
			m := map[int]string{}
			for _, id := range ids {
				m[id] = price(id)
			}
			return m, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		single, err := Wrap(a, ctProductRes, func(_ context.Context, id int) (string, error) { return price(id), nil }, NoFleetLock())
		if err != nil {
			t.Fatal(err)
		}
		got, err := batch.GetMany(ctx, []int{1, 2})
		if err != nil || len(got) != 2 {
			t.Fatalf("GetMany: %v, %v", got, err)
		}
		ctWaitDrained(t, a)
		old1, old2 := got[1], got[2]
		truth.bump("1")
		truth.bump("2")
		err = a.Invalidate(ctx, TargetCall(ctProductRes, "", 1), TargetCall(ctProductRes, "", 2))
		t.Logf("Invalidate with deletes refused: %v", err)

		v2, err := single(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if v2 == old2 {
			t.Fatalf("Wrap served the exact-invalidated value %q", v2)
		}
		m, err := batch.GetMany(ctx, []int{1})
		if err != nil {
			t.Fatal(err)
		}
		if m[1] == old1 {
			t.Errorf("GetMany served the exact-invalidated value %q from L2 while Wrap of the same resource served the new one (%q)", m[1], v2)
		}
	})

	// A batch entry read in its stale window is served stale while one
	// refresh runs, as with every other entry point.
	t.Run("stale entries refresh", func(t *testing.T) {
		e := rcStart(t)
		clk := newTestClockAt(time.Now())
		a := rcNew(t, Options{L2: e.store(), Now: clk.Now, TTLJitter: -1})
		rcSubscribed(t, a)
		res := resource.Resource{Name: "ct_stale_products", Scope: scope.Global, TTL: time.Minute, StaleWindow: 10 * time.Minute}
		var runs atomic.Int32
		batch, err := WrapBatch(a, res, func(_ context.Context, ids []int) (map[int]string, error) {
			n := runs.Add(1)
			m := map[int]string{}
			for _, id := range ids {
				m[id] = fmt.Sprintf("product %d, run %d", id, n)
			}
			return m, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := batch.GetMany(ctx, []int{1, 2}); err != nil {
			t.Fatal(err)
		}
		for _, read := range []struct {
			name string
			get  func() error
		}{
			{"GetMany", func() error { _, err := batch.GetMany(ctx, []int{1, 2}); return err }},
			{"Get", func() error { _, err := batch.Get(ctx, 1); return err }},
		} {
			ctWaitDrained(t, a)
			clk.Advance(2 * time.Minute) // past the TTL, inside the stale window
			refreshes, before := a.Stats().Refreshes, runs.Load()
			if err := read.get(); err != nil {
				t.Fatalf("%s of stale entries: %v", read.name, err)
			}
			wait.Until(t, 5*time.Second, func() string {
				if s := a.Stats(); s.Refreshes == refreshes || runs.Load() == before {
					return fmt.Sprintf("%s served stale entries (%d stale hits) but started no refresh (refreshes %d → %d, tool runs %d → %d)",
						read.name, s.StaleHits, refreshes, s.Refreshes, before, runs.Load())
				}
				return ""
			})
			// Every refresh this read started has finished (a GetMany starts
			// one per stale key): one still running would keep the next
			// read's refresh of its key from starting.
			wait.Until(t, 5*time.Second, func() string {
				running := 0
				a.refreshing.Range(func(any, any) bool { running++; return true })
				if running > 0 {
					return fmt.Sprintf("%d refreshes of %s still running", running, read.name)
				}
				return ""
			})
		}
	})
}

// Promise 7 (the caller never waits for L2 writes, lease releases or
// announcements): with default options (fleet lock on), a miss returns
// once the tool has; the write, the release and the announcement happen
// in the background. L2 is blackholed the moment the tool returns: a
// caller that waited for any of them would see its L2 call time out and
// fail before returning.
func TestMissDoesNotWaitForL2Writes(t *testing.T) {
	ctx := context.Background()
	for _, entry := range []string{"Get", "Wrap"} {
		t.Run(entry, func(t *testing.T) {
			e := rcStart(t)
			p := e.Proxy()
			a := rcNew(t, Options{L2: e.storeVia(p.Addr()), L2Timeout: time.Second})
			t.Cleanup(func() { p.Blackhole(false) }) // before a closes
			rcSubscribed(t, a)
			// Confirm the epochs first, as a running instance has.
			if _, err := Get(ctx, a, "warm", func(context.Context, string) (string, error) { return "warm", nil }); err != nil {
				t.Fatal(err)
			}
			ctWaitDrained(t, a)
			truth := newCtTruth()
			var miss func() (string, error)
			switch entry {
			case "Get":
				miss = func() (string, error) {
					return Get(ctx, a, "k", func(context.Context, string) (string, error) {
						p.Blackhole(true)
						return "value of k", nil
					})
				}
			case "Wrap":
				var armed atomic.Bool
				get, err := Wrap(a, ctCartRes, func(ctx context.Context, args ctArgs) (string, error) {
					if armed.Load() {
						defer p.Blackhole(true)
					}
					return truth.tool(ctx, args)
				})
				if err != nil {
					t.Fatal(err)
				}
				ctCall(t, get, "warm-user")
				ctWaitDrained(t, a)
				armed.Store(true)
				miss = func() (string, error) { return get(scope.WithUser(ctx, "alice"), ctQ) }
			}
			before := a.Stats()
			v, err := miss()
			s := a.Stats()
			p.Blackhole(false)
			if err != nil || v == "" {
				t.Fatalf("the miss: %q, %v", v, err)
			}
			if s.L2Errors != before.L2Errors || s.WritesFailed != before.WritesFailed || s.WritesDone != before.WritesDone {
				t.Errorf("the miss returned only after L2 calls made after its tool had finished: L2 errors %d → %d, writes failed %d → %d, done %d → %d (the caller waited for the write, release or announcement)",
					before.L2Errors, s.L2Errors, before.WritesFailed, s.WritesFailed, before.WritesDone, s.WritesDone)
			}
			if s.WritesQueued == before.WritesQueued {
				t.Errorf("the miss queued no L2 write (WritesQueued %d → %d): its value was written on the caller's path", before.WritesQueued, s.WritesQueued)
			}
			// The background work lands once L2 answers: another instance
			// reads the value from L2.
			ctWaitDrained(t, a)
			b := rcNew(t, Options{L2: e.store()})
			switch entry {
			case "Get":
				w, err := Get(ctx, b, "k", func(context.Context, string) (string, error) { return "B's", nil })
				if err != nil || w != v {
					t.Errorf("B: %q, %v; want %q from L2", w, err, v)
				}
			case "Wrap":
				if w := ctCall(t, ctWrap(t, b, truth), "alice"); w != v {
					t.Errorf("B: %q; want %q from L2", w, v)
				}
			}
		})
	}
}

// Fidelity: a nil result of interface type is a value like any other. It
// is stored and served — the loader does not run again — whether it was
// loaded or Set.
func TestNilInterfaceResultIsServed(t *testing.T) {
	ctx := context.Background()
	for _, withL2 := range []bool{false, true} {
		name := "L1 only"
		if withL2 {
			name = "with Redis"
		}
		t.Run(name, func(t *testing.T) {
			var o Options
			if withL2 {
				e := rcStart(t)
				o.L2 = e.store()
			}
			c := rcNew(t, o)
			if withL2 {
				rcSubscribed(t, c)
			}
			var runs atomic.Int32
			loader := func(context.Context, string) (any, error) {
				runs.Add(1)
				return nil, nil
			}
			for i := 0; i < 5; i++ {
				if v, err := Get[any](ctx, c, "nil", loader); err != nil || v != nil {
					t.Fatalf("Get #%d: %v, %v", i, v, err)
				}
			}
			if n := runs.Load(); n != 1 {
				t.Errorf("the loader ran %d times in 5 Gets of a key whose value is nil; want once (stats %+v)", n, c.Stats())
			}
			if s := c.Stats(); s.L1Hits < 4 {
				t.Errorf("%d L1 hits in 5 Gets of a cached nil; want 4", s.L1Hits)
			}

			runs.Store(0)
			if err := c.Set(ctx, "set-nil", nil, 0); err != nil {
				t.Fatal(err)
			}
			if v, err := Get[any](ctx, c, "set-nil", loader); err != nil || v != nil {
				t.Fatalf("Get after Set(nil): %v, %v", v, err)
			}
			if n := runs.Load(); n != 0 {
				t.Errorf("the loader ran %d times for a key Set to nil; want 0", n)
			}
		})
	}
}

// MaxBatchSize caps the IDs of every tool call Batch.Get makes, however
// many callers join a window at once.
func TestBatchNeverExceedsMaxBatchSize(t *testing.T) {
	c := rcNew(t, Options{})
	const maxSize, callers = 4, 1024
	var mu sync.Mutex
	sizes := map[int]int{} // IDs per call → calls
	batch, err := WrapBatch(c, ctProductRes, func(_ context.Context, ids []int) (map[int]string, error) {
		mu.Lock()
		sizes[len(ids)]++
		mu.Unlock()
		m := make(map[int]string, len(ids))
		for _, id := range ids {
			m[id] = fmt.Sprint("product ", id)
		}
		return m, nil
	}, MaxBatchSize(maxSize))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Each round is 1,024 concurrent callers of distinct IDs; the race is
	// narrow on a small machine, so there are up to 30 rounds (at most
	// about 3s of them).
	const rounds = 30
	over, biggest, calls := 0, 0, 0
	budget := time.Now().Add(3 * time.Second)
	for r := 0; r < rounds && over == 0 && (r < 3 || time.Now().Before(budget)); r++ {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := r * callers; i < (r+1)*callers; i++ {
			wg.Go(func() {
				<-start
				if v, err := batch.Get(ctx, i); err != nil || v != fmt.Sprint("product ", i) {
					t.Errorf("Get(%d): %q, %v", i, v, err)
				}
			})
		}
		close(start)
		wg.Wait()
		mu.Lock()
		for n, c := range sizes {
			calls += c
			if n > maxSize {
				over += c
			}
			biggest = max(biggest, n)
		}
		clear(sizes)
		mu.Unlock()
	}
	if over > 0 {
		t.Errorf("MaxBatchSize(%d) exceeded under %d concurrent Batch.Get: %d of %d tool calls had more IDs, the largest %d", maxSize, callers, over, calls, biggest)
	}
}

// Clear empties L2 under the prefix however many keys it holds: it is not
// bound by the per-call L2Timeout, only by the caller's ctx.
func TestClearIsNotBoundByL2Timeout(t *testing.T) {
	e := rcStart(t)
	ctx := context.Background()
	c := rcNew(t, Options{L2: e.store(), L2Timeout: defaultL2Timeout})
	rcSubscribed(t, c)
	const n, per = 300_000, 10_000
	for i := 0; i < n; i += per {
		if _, err := e.Raw.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for j := i; j < i+per; j++ {
				p.Set(ctx, fmt.Sprintf("%skv:00000000000000%02x:bulk-%d", e.Prefix, j%256, j), "x", time.Hour)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(ctx, "mine", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	ctWaitDrained(t, c)
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := c.Clear(cctx)
	left := 0
	var cursor uint64
	for {
		ks, next, serr := e.Raw.Scan(ctx, cursor, e.Prefix+"kv:*", 10_000).Result()
		if serr != nil {
			t.Fatal(serr)
		}
		left += len(ks)
		if next == 0 {
			break
		}
		cursor = next
	}
	if err != nil || left != 0 {
		t.Errorf("Clear with a 60s ctx over %d keys: %v, %d entry keys left under the prefix; want nil and none (L2Timeout %v)", n+1, err, left, defaultL2Timeout)
	}
}

// A Redis that is down when the cache starts costs one timeout, not one
// per call: L1 hits never wait for L2, and after the first lookup that
// fails the breaker is open and the next lookups send nothing until its
// OpenFor has passed.
func TestDeadRedisAtStartCostsOneTimeout(t *testing.T) {
	ctx := context.Background()
	dead := func(t *testing.T) (*Cache, *redistest.RoundTrips) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		client := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true})
		hook := &redistest.RoundTrips{}
		client.AddHook(hook)
		c := rcNew(t, Options{
			L2:        redisenv.StoreOn(t, client, redisenv.Prefix(t, "ac-")),
			L2Timeout: 300 * time.Millisecond, Tuning: TuningOptions{Breaker: BreakerOptions{OpenFor: 30 * time.Second, MaxOpenFor: 30 * time.Second}},
		})
		return c, hook
	}
	loader := func(_ context.Context, k string) (string, error) { return "loaded " + k, nil }

	t.Run("L1 hit", func(t *testing.T) {
		leakcheck.Check(t)
		c, hook := dead(t)
		if err := c.Set(ctx, "k", "set", time.Hour); err != nil {
			t.Fatal(err)
		}
		n := hook.Len()
		if v, err := Get(ctx, c, "k", loader); err != nil || v != "set" {
			t.Fatalf("Get of a key just Set: %q, %v", v, err)
		}
		if sent := redistest.Commands(hook.Since(n)); len(sent) > 0 {
			t.Errorf("an L1 hit with Redis down sent %d L2 commands %q (it waited for L2)", len(sent), sent)
		}
	})

	t.Run("distinct keys", func(t *testing.T) {
		leakcheck.Check(t)
		c, hook := dead(t)
		if v, err := Get(ctx, c, "k0", loader); err != nil || v != "loaded k0" {
			t.Fatalf("first lookup: %q, %v", v, err)
		}
		if s := c.Stats(); s.Breaker != "open" {
			t.Errorf("after the first lookup failed to reach a dead Redis, the breaker is %s (L2 errors %d); want open", s.Breaker, s.L2Errors)
		}
		n := hook.Len()
		for i := 1; i < 10; i++ {
			k := fmt.Sprintf("k%d", i)
			if v, err := Get(ctx, c, k, loader); err != nil || v != "loaded "+k {
				t.Fatalf("Get(%s): %q, %v", k, v, err)
			}
		}
		if sent := redistest.Commands(hook.Since(n)); len(sent) > 0 {
			t.Errorf("9 lookups after the first failure sent %d L2 commands %q; want none until the breaker's OpenFor (30s) has passed (breaker now %s, L2 errors %d)",
				len(sent), sent, c.Stats().Breaker, c.Stats().L2Errors)
		}
	})
}
