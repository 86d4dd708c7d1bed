package agentcache

// The L2s that the tests of a promise run over, whatever the L2: the
// in-memory tier/fake, one real redis-server and a real 3-master Redis
// Cluster (internal/redistest). A test of a promise runs as one subtest per
// backend:
//
//	for _, backend := range l2Backends {
//		t.Run(backend.name, func(t *testing.T) { ... backend.stores(t, 2) ... })
//	}
//
// Tests that read, plant or corrupt what the cache stored, or stall L2,
// open the backend with open instead of stores: an l2Env gives raw access
// to the shared keyspace.

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/internal/leakcheck"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/fake"
)

// l2Backend is one L2 that the tests of a promise run over.
type l2Backend struct {
	name string
	// open returns n L2s that share one keyspace, each on a client of its
	// own, as each pod has one, with raw access to their keyspace.
	open func(t *testing.T, n int) *l2Env
}

// stores returns the n L2s of open, for tests that need no raw access.
func (b l2Backend) stores(t *testing.T, n int) []tier.Remote { return b.open(t, n).stores }

// l2Backends are the L2s of the promises that hold whatever the L2: the
// in-memory tier/fake, one real redis-server and a real 3-master Redis
// Cluster (internal/redistest).
var l2Backends = []l2Backend{
	{name: "in-memory", open: openMemL2},
	{name: "one server", open: openServerL2},
	{name: "3-master cluster", open: openClusterL2},
}

// l2Env is an L2 keyspace opened by l2Backend.open: the stores that share
// it and raw access to it, as someone with access to Redis has. Keys are
// relative to the keyspace's prefix, as the cache's own are (the layout of
// package internal/keyspace). Its methods fail the test on an error.
type l2Env struct {
	t      *testing.T
	stores []tier.Remote

	get func(ctx context.Context, key string) ([]byte, bool, error)
	set func(ctx context.Context, key string, v []byte, ttl time.Duration) error
	// scan lists the keys matching a SCAN MATCH pattern; nil where the
	// backend cannot list its keys (tier/fake has no such call).
	scan func(ctx context.Context, pattern string) ([]string, error)
	// hold makes L2 stop answering the cache's writes until release.
	hold, release func()
	held          bool
	// down makes every call fail at once until up; nil where the backend
	// cannot be taken down.
	down, up func()
}

// Get returns the bytes at key and whether it holds any.
func (e *l2Env) Get(key string) ([]byte, bool) {
	e.t.Helper()
	v, ok, err := e.get(context.Background(), key)
	if err != nil {
		e.t.Fatalf("raw GET %s: %v", key, err)
	}
	return v, ok
}

// Exists reports whether key holds anything.
func (e *l2Env) Exists(key string) bool {
	e.t.Helper()
	_, ok := e.Get(key)
	return ok
}

// Set writes v at key, expiring after ttl.
func (e *l2Env) Set(key string, v []byte, ttl time.Duration) {
	e.t.Helper()
	if err := e.set(context.Background(), key, v, ttl); err != nil {
		e.t.Fatalf("raw SET %s: %v", key, err)
	}
}

// Copy copies from's value to to (expiring in an hour), as someone with
// access to Redis can.
func (e *l2Env) Copy(from, to string) {
	e.t.Helper()
	v, ok := e.Get(from)
	if !ok {
		e.t.Fatalf("copy: %s holds nothing", from)
	}
	e.Set(to, v, time.Hour)
}

// Keys returns the keys matching pattern (a SCAN MATCH pattern), sorted,
// and false where the backend cannot list its keys.
func (e *l2Env) Keys(pattern string) ([]string, bool) {
	e.t.Helper()
	if e.scan == nil {
		return nil, false
	}
	keys, err := e.scan(context.Background(), pattern)
	if err != nil {
		e.t.Fatalf("raw SCAN %s: %v", pattern, err)
	}
	slices.Sort(keys)
	return keys, true
}

// Pause makes L2 stop answering the cache's writes, as a stalled server
// does, until Resume or the end of the test (a cleanup registered now, so
// that it runs before the caches opened earlier close). On one server the
// process is stopped (SIGSTOP); on the cluster every master holds back
// write commands (CLIENT PAUSE WRITE, which holds the cache's scripts, its
// reads among them) while the cluster bus goes on, so that no node is
// failed for the pause; the in-memory L2 holds every WriteRecords call,
// the writer's one write.
func (e *l2Env) Pause() {
	e.t.Helper()
	if e.held {
		return
	}
	e.hold()
	e.held = true
	e.t.Cleanup(e.Resume)
}

// Resume undoes Pause.
func (e *l2Env) Resume() {
	if e.held {
		e.held = false
		e.release()
	}
}

// Down takes L2 down, as when its server's process is gone: every call
// fails at once (one server: SIGKILL; in-memory: Backend.SetError) until
// Up. The cluster has no Down.
func (e *l2Env) Down() {
	e.t.Helper()
	if e.down == nil {
		e.t.Fatal("this L2 cannot be taken down")
	}
	e.down()
}

// Up brings L2 back after Down (one server: restarted empty; in-memory:
// with what it held).
func (e *l2Env) Up() {
	e.t.Helper()
	e.up()
}

// openMemL2 opens the in-memory L2: one tier/fake Backend, each store a
// Remote of its own under one prefix.
func openMemL2(t *testing.T, n int) *l2Env {
	b := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { b.Close() })
	const prefix = "fleet:"
	g := &writeGate{}
	e := &l2Env{t: t, hold: g.hold, release: g.release,
		down: func() { b.SetError(errors.New("L2 down")) },
		up:   func() { b.SetError(nil) },
	}
	for range n {
		e.stores = append(e.stores, &gatedRemote{Remote: b.Remote(prefix), gate: g})
	}
	raw := b.Remote(prefix)
	e.get = raw.Get
	e.set = raw.Set
	return e
}

// writeGate, while held, holds back the in-memory L2's writes.
type writeGate struct {
	mu   sync.Mutex
	held chan struct{} // closed on release; nil when not held
}

func (g *writeGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
}

func (g *writeGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}

// wait returns once the gate is not held, or with ctx's error.
func (g *writeGate) wait(ctx context.Context) error {
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	if held == nil {
		return nil
	}
	select {
	case <-held:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedRemote is a tier/fake Remote, with every capability of it, whose
// WriteRecords waits while its gate is held.
type gatedRemote struct {
	*fake.Remote
	gate *writeGate
}

func (r *gatedRemote) WriteRecords(ctx context.Context, writes []tier.RecordWrite) ([]tier.WriteResult, error) {
	if err := r.gate.wait(ctx); err != nil {
		return nil, err
	}
	return r.Remote.WriteRecords(ctx, writes)
}

// openServerL2 opens one real redis-server (rcStart).
func openServerL2(t *testing.T, n int) *l2Env {
	re := rcStart(t)
	e := &l2Env{t: t, hold: re.Srv.Pause, release: re.Srv.Resume, down: re.Srv.Kill,
		up: func() {
			t.Helper()
			if err := re.Srv.Restart(); err != nil {
				t.Fatal(err)
			}
		},
	}
	for range n {
		e.stores = append(e.stores, re.store())
	}
	e.get = func(ctx context.Context, key string) ([]byte, bool, error) {
		return redisGet(ctx, re.Raw, re.Prefix+key)
	}
	e.set = func(ctx context.Context, key string, v []byte, ttl time.Duration) error {
		return re.Raw.Set(ctx, re.Prefix+key, v, ttl).Err()
	}
	e.scan = func(ctx context.Context, pattern string) ([]string, error) {
		return redisScan(ctx, re.Raw, re.Prefix, pattern)
	}
	return e
}

// openClusterL2 opens a real 3-master Redis Cluster.
func openClusterL2(t *testing.T, n int) *l2Env {
	leakcheck.Check(t)
	cl := redistest.StartCluster(t, 3, 0)
	prefix := redisenv.Prefix(t, "ac-")
	e := &l2Env{t: t}
	for range n {
		o := cl.ClusterOptions()
		o.ContextTimeoutEnabled = true
		e.stores = append(e.stores, redisenv.StoreOn(t, goredis.NewClusterClient(o), prefix))
	}
	raw := cl.Client(t)
	e.get = func(ctx context.Context, key string) ([]byte, bool, error) {
		return redisGet(ctx, raw, prefix+key)
	}
	e.set = func(ctx context.Context, key string, v []byte, ttl time.Duration) error {
		return raw.Set(ctx, prefix+key, v, ttl).Err()
	}
	e.scan = func(ctx context.Context, pattern string) ([]string, error) {
		var mu sync.Mutex
		var keys []string
		err := raw.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			ks, err := redisScan(ctx, node, prefix, pattern)
			mu.Lock()
			keys = append(keys, ks...)
			mu.Unlock()
			return err
		})
		return keys, err
	}
	onMasters := func(args ...any) {
		t.Helper()
		err := raw.ForEachMaster(context.Background(), func(ctx context.Context, node *goredis.Client) error {
			return node.Do(ctx, args...).Err()
		})
		if err != nil {
			t.Fatalf("%v on the masters: %v", args, err)
		}
	}
	// The pause's own bound (a minute) only ends a pause that a failed
	// test never resumed.
	e.hold = func() { onMasters("CLIENT", "PAUSE", "60000", "WRITE") }
	e.release = func() { onMasters("CLIENT", "UNPAUSE") }
	return e
}

// redisGet reads key raw, as bytes; a missing key is not an error.
func redisGet(ctx context.Context, c goredis.Cmdable, key string) ([]byte, bool, error) {
	v, err := c.Get(ctx, key).Bytes()
	if err == goredis.Nil {
		return nil, false, nil
	}
	return v, err == nil, err
}

// redisScan lists the keys under prefix that match pattern, relative to
// prefix.
func redisScan(ctx context.Context, c goredis.Cmdable, prefix, pattern string) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		ks, next, err := c.Scan(ctx, cursor, prefix+pattern, 1000).Result()
		if err != nil {
			return out, err
		}
		for _, k := range ks {
			out = append(out, strings.TrimPrefix(k, prefix))
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}

// kvL2Key is the L2 key (relative to the prefix) of c's key-value entry
// at key, as Get and Set write it.
func kvL2Key(c *Cache, key string) string {
	return (&lookup{r: c.kv, tail: key, l1: key}).l2Key()
}

// entryL2Key is the L2 key (relative to the prefix) of r's entry for the
// argument arg, in user's scope when r is scoped (the layout of package
// internal/keyspace).
func entryL2Key(t *testing.T, r resource.Resource, user string, arg any) string {
	t.Helper()
	h, err := resource.HashValue(arg, resource.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return string(keyspace.AppendEntryKey(nil, r.ID(), keyspace.Segment(r.Scope, user), h.String()))
}
