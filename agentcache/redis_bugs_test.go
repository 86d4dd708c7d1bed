package agentcache

// Real-Redis tests of library bugs found while writing the redis_*_test.go
// files. Each fails against the code it was written for and must pass once
// the bug is fixed; the comment above each names the cause.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/keyspace"
)

// An invalidation that could not reach Redis (a *FleetError) applies
// locally, but the new epoch value is never written to L2 later. When L2
// answers again, the next confirmation (epochs.load) replaces the cell's
// local value with the old one still in L2: the invalidating instance
// serves the pre-invalidation entry again from L2, and the other instances
// never learn of the invalidation, although FleetError promises they stop
// serving the old value within MaxEpochAge once they reach L2.
func TestRedisBugFailedInvalidationIsUndoneWhenRedisAnswersAgain(t *testing.T) {
	const maxAge = 300 * time.Millisecond
	e := rcStart(t)
	shop := newRCShop(map[string][]string{"alice": {"book"}})
	o := Options{MaxEpochAge: maxAge, L2Timeout: time.Second}
	o.L2 = e.store()
	a := rcNew(t, o)
	o.L2 = e.store()
	b := rcNew(t, o)
	rcSubscribed(t, a, b)
	getA, getB := rcWrapCart(t, a, shop), rcWrapCart(t, b, shop)
	rcCartOf(t, getA, "alice")
	if got := rcCartOf(t, getB, "alice"); !slices.Equal(got, []string{"book"}) || b.Stats().L2Hits != 1 {
		t.Fatalf("B: %q, %d L2 hits", got, b.Stats().L2Hits)
	}

	// Redis refuses writes (out of memory) while alice's cart is invalidated
	// on A: the fleet is not told.
	ctx := context.Background()
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", "1"}} {
		if err := e.raw.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	shop.add("alice", "lamp")
	err := a.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice"))
	var fe *FleetError
	if !errors.As(err, &fe) {
		t.Fatalf("Invalidate with writes refused = %v; want a *FleetError", err)
	}
	if got := rcCartOf(t, getA, "alice"); !slices.Equal(got, []string{"book", "lamp"}) {
		t.Fatalf("A right after the local invalidation: %q", got)
	}
	if err := e.raw.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}

	// Redis is healthy again. Watch both instances for several MaxEpochAges.
	var aOld atomic.Int32
	deadline := time.Now().Add(8 * maxAge)
	bNew := false
	for time.Now().Before(deadline) {
		if got := rcCartOf(t, getA, "alice"); len(got) != 2 && aOld.Add(1) == 1 {
			t.Errorf("A, which invalidated alice's cart, served the old cart %q again once Redis answered", got)
		}
		bNew = len(rcCartOf(t, getB, "alice")) == 2
		time.Sleep(5 * time.Millisecond)
	}
	if !bNew {
		t.Errorf("B still served alice's old cart %v after Redis answered again (MaxEpochAge %v)", 8*maxAge, maxAge)
	}
}

// Per-scope epochs must expire after Options.Tuning.ScopeEpochTTL. epochs.load
// sends every cell it confirms in one LoadEpochs call with the TTL of the
// first key (e.ttlFor(keys[0])), and the global epoch, which never expires,
// comes first: the scope epochs created by the first lookup of an instance
// (or after a subscription reset, or after an idle MaxEpochAge) get no
// expiry, and one key per user and resource stays in Redis forever.
func TestRedisBugScopeEpochsCreatedWithoutExpiry(t *testing.T) {
	e := rcStart(t)
	shop := newRCShop(map[string][]string{})
	a := rcNew(t, Options{L2: e.store(), Tuning: TuningOptions{ScopeEpochTTL: time.Hour}})
	get := rcWrapCart(t, a, shop)
	ctx := context.Background()
	for _, user := range []string{"alice", "bob"} {
		rcCartOf(t, get, user) // alice: the instance's first lookup
		seg := keyspace.Segment(rcCartRes.Scope, user)
		for _, k := range []string{keyspace.ScopeEpochKey(seg), keyspace.ResourceScopeEpochKey(rcCartRes.ID(), seg)} {
			ttl, err := e.raw.PTTL(ctx, e.prefix+k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl <= 0 || ttl > time.Hour {
				t.Errorf("%s's epoch %s has TTL %v; want ScopeEpochTTL (1h)", user, k, ttl)
			}
		}
	}
	for _, k := range []string{keyspace.GlobalEpochKey, keyspace.ResourceEpochKey(rcCartRes.ID())} {
		if ttl := e.raw.PTTL(ctx, e.prefix+k).Val(); ttl != -1 {
			t.Errorf("epoch %s has TTL %v; want none", k, ttl)
		}
	}
}

// A corrupt L2 value is deleted through the write-behind queue
// (Cache.corrupt enqueues the delete), while the reload that follows
// writes the fresh value synchronously (the fleet-lock holder writes
// through). When the queue is busy, the delete lands after the fresh value
// and removes it: the next instance misses and runs the tool again.
func TestRedisBugCorruptDeleteRemovesTheFreshValue(t *testing.T) {
	e := rcStart(t)
	a := rcNew(t, Options{L2: e.store()})
	// B's writer sends one write per round trip, so a backlog takes a
	// while to drain.
	b := rcNew(t, Options{L2: e.store(), Tuning: TuningOptions{WriteBatchSize: 1}})
	ctx := context.Background()
	var runs atomic.Int32
	if _, err := Get(ctx, a, "profile:7", rcCounting(&runs, rcProfileFor)); err != nil {
		t.Fatal(err)
	}
	keys := e.keys("kv:*")
	if len(keys) != 1 {
		t.Fatalf("entry keys: %q", keys)
	}
	if err := e.raw.Set(ctx, keys[0], "corrupt", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	// Ordinary traffic on B fills its write queue.
	for i := 0; i < 300; i++ {
		if err := b.Set(ctx, fmt.Sprintf("other-%d", i), i, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Get(ctx, b, "profile:7", rcCounting(&runs, rcProfileFor))
	if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) || b.Stats().L2Corrupt == 0 {
		t.Fatalf("B over the corrupt entry: %+v, %v, %d corrupt", v, err, b.Stats().L2Corrupt)
	}
	rcWait(t, 30*time.Second, "B's write queue", func() bool { return rcDrained(b) })
	if e.raw.Exists(ctx, keys[0]).Val() != 1 {
		t.Errorf("the value B reloaded over the corrupt entry is gone from L2: the queued delete of the corrupt value removed it")
	}

	c := rcNew(t, Options{L2: e.store()})
	var cRuns atomic.Int32
	v, err = Get(ctx, c, "profile:7", rcCounting(&cRuns, rcProfileFor))
	if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) {
		t.Fatalf("C: %+v, %v", v, err)
	}
	if cRuns.Load() != 0 {
		t.Fatal("C ran the tool again instead of reading B's reload from L2")
	}
}
