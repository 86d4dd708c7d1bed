package reliability

// Consistency contract, promise 4 ("epochs never go back"), under a Redis
// Cluster failover that loses an invalidation's epoch write. The helpers
// of this file are the ct* names.

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/internal/leakcheck"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// ctFailoverRes is the per-user resource of the failover test.
var ctFailoverRes = resource.Resource{Name: "ct_failover_cart", Scope: scope.User, TTL: time.Hour}

// ctClusterCache opens a cache on a cluster client of its own.
func ctClusterCache(t *testing.T, cl *redistest.Cluster, prefix string, maxAge time.Duration) *agentcache.Cache {
	t.Helper()
	o := cl.ClusterOptions()
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	o.ContextTimeoutEnabled = true
	o.DisableIdentity = true // Redis 7.0 has no CLIENT SETINFO
	opts := faultOptions(redisenv.StoreOn(t, goredis.NewClusterClient(o), prefix))
	opts.MaxEpochAge = maxAge
	return newCache(t, opts)
}

// ctNodeClient is a plain client to one node, closed when the test ends.
func ctNodeClient(t *testing.T, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestFailoverNeverTakesAnEpochBack invalidates a user's resource on a
// 3-master, 1-replica-each cluster while the replica of the master holding
// that epoch cannot receive the write (paused, its replication link cut),
// kills the master and lets the stale replica be promoted. The promoted
// node holds the pre-invalidation epoch and the pre-invalidation entry.
//
// Promise checked: the invalidating instance never serves the
// pre-invalidation value again — it never adopts an epoch older than one
// it has seen, and restores the newer one in L2 — and an instance started
// afterwards does not serve it either.
func TestFailoverNeverTakesAnEpochBack(t *testing.T) {
	const maxAge = 500 * time.Millisecond
	leakcheck.Check(t)
	cl := redistest.StartCluster(t, 3, 1)
	prefix := redisenv.Prefix(t, "rel-")
	ctx := context.Background()
	a := ctClusterCache(t, cl, prefix, maxAge)

	var version atomic.Int32
	tool := func(context.Context, string) (string, error) { return fmt.Sprintf("v%d", version.Load()+1), nil }
	get, err := agentcache.Wrap(a, ctFailoverRes, tool)
	if err != nil {
		t.Fatal(err)
	}
	alice := scope.WithUser(ctx, "alice")
	call := func() string {
		t.Helper()
		v, err := get(alice, "cart")
		if err != nil {
			t.Fatalf("alice's call: %v", err)
		}
		return v
	}
	old := call()
	wait.For(t, 5*time.Second, "A's writes", func() bool { s := a.Stats(); return s.WriteQueueDepth == 0 })

	// The master that holds alice's resource epoch, and its replica.
	raw := cl.Client(t)
	epochKey := prefix + keyspace.ResourceScopeEpochKey(ctFailoverRes.ID(), keyspace.Segment(scope.User, "alice"))
	slot, err := raw.ClusterKeySlot(ctx, epochKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	mc, err := raw.MasterForKey(ctx, epochKey)
	if err != nil {
		t.Fatal(err)
	}
	var master, replica redistest.Node
	for _, n := range cl.Nodes() {
		if n.Server.Addr() == mc.Options().Addr {
			master = n
		}
	}
	for _, n := range cl.Nodes() {
		if n.Role == redistest.RoleReplica && master.ID != "" && n.MasterID == master.ID {
			replica = n
		}
	}
	if master.Server == nil || replica.Server == nil {
		t.Fatalf("no master and replica found for slot %d (master %s)", slot, mc.Options().Addr)
	}
	mcli := ctNodeClient(t, master.Server.Addr())
	before, err := mcli.Get(ctx, epochKey).Result()
	if err != nil {
		t.Fatalf("the epoch key %s on its master %s: %v", epochKey, master.Server.Addr(), err)
	}
	t.Logf("epoch key %s (slot %d) on master %s, replica %s; value before the invalidation %s",
		epochKey, slot, master.Server.Addr(), replica.Server.Addr(), before)
	// Everything so far has reached the replica.
	if n, err := mcli.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n < 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}

	// The replica stops receiving: paused, and its replication link cut
	// so that nothing sits in its socket buffer for it to apply later.
	replica.Server.Pause()
	t.Cleanup(replica.Server.Resume)
	if err := mcli.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	version.Add(1)
	if err := a.Invalidate(ctx, agentcache.TargetResourceScope(ctFailoverRes, "alice")); err != nil {
		t.Logf("Invalidate with the replica cut off: %v", err)
	}
	if v := call(); v == old {
		t.Fatalf("A served %q right after its own invalidation", v)
	}
	after, _ := mcli.Get(ctx, epochKey).Result()
	t.Logf("epoch value on the master after the invalidation: %s", after)

	// The master dies; the replica, which missed the invalidation, takes
	// over.
	master.Server.Kill()
	replica.Server.Resume()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.WaitForFailover(fctx); err != nil {
		t.Fatal(err)
	}
	promoted := ctNodeClient(t, replica.Server.Addr())
	if v, err := promoted.Get(ctx, epochKey).Result(); err == nil && v == before {
		t.Logf("the promoted node holds the pre-invalidation epoch %s: the failover lost the invalidation", v)
	} else {
		t.Logf("the promoted node holds %q (%v) for the epoch", v, err)
	}

	// Watch A until its breaker has been closed for several MaxEpochAges.
	served, calls := 0, 0
	var closedAt time.Time
	deadline := time.Now().Add(30 * time.Second)
	for closedAt.IsZero() || time.Since(closedAt) < 8*maxAge {
		if time.Now().After(deadline) {
			t.Fatalf("A's breaker did not stay closed after the failover: %+v", a.Stats())
		}
		calls++
		if call() == old {
			served++
		}
		switch {
		case a.Stats().Breaker != "closed":
			closedAt = time.Time{}
		case closedAt.IsZero():
			closedAt = time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if served > 0 {
		t.Errorf("after the failover lost its epoch write, the invalidating instance served the pre-invalidation value %q in %d of %d calls", old, served, calls)
	}
	if v, err := promoted.Get(ctx, epochKey).Result(); err == nil && v == before {
		t.Errorf("L2 still holds the pre-invalidation epoch %s %v after the failover; the instance that saw the newer one did not restore it", v, 8*maxAge)
	}
	c := ctClusterCache(t, cl, prefix, maxAge)
	getC, err := agentcache.Wrap(c, ctFailoverRes, tool)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := getC(alice, "cart"); err != nil || v == old {
		t.Errorf("a new instance after the failover: %q, %v; want the post-invalidation value", v, err)
	}
}
