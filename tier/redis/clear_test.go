package redis

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
)

// The keyspace of the Clear tests: the prefix of the store under test, and a
// tenant whose name extends ours.
const (
	clearPrefix = "tenant1:"
	otherPrefix = "tenant10:"
	manyKeys    = 300_000
)

// populate creates keys base+"1" … base+n on the server of c with a script
// (no round trip per key).
func populate(t *testing.T, c *goredis.Client, base string, n int) {
	t.Helper()
	const script = `for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do redis.call('SET', ARGV[1] .. i, 'v') end`
	ctx := context.Background()
	for from := 1; from <= n; from += 100_000 {
		to := min(from+100_000-1, n)
		if err := c.Eval(ctx, script, nil, base, from, to).Err(); err != nil && !errors.Is(err, goredis.Nil) {
			t.Fatalf("populating %d keys: %v", n, err)
		}
	}
}

// countKeys returns how many keys on the server of c match pattern.
func countKeys(t *testing.T, c *goredis.Client, pattern string) int64 {
	t.Helper()
	ctx := context.Background()
	var n int64
	iter := c.Scan(ctx, 0, pattern, 10_000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// decoys are keys that Clear of clearPrefix must leave: other prefixes
// that start with ours without its ':', or that contain it later.
var decoys = []string{"tenant10:k1", "tenant10:", "tenant1", "tenant1x:k", "tenant1;k", "Tenant1:k", "x:tenant1:k"}

func setDecoys(t *testing.T, c goredis.UniversalClient) {
	t.Helper()
	for _, k := range decoys {
		if err := c.Set(context.Background(), k, "decoy", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func wantDecoys(t *testing.T, c goredis.UniversalClient) {
	t.Helper()
	for _, k := range decoys {
		if v, err := c.Get(context.Background(), k).Result(); err != nil || v != "decoy" {
			t.Errorf("key %q outside the prefix after Clear: (%q, %v), want it kept", k, v, err)
		}
	}
}

// pageCounter counts the SCAN and UNLINK commands that go-redis sends on
// their own, the pipelines that carry them, and those pipelines that carry
// more than one UNLINK or SCAN. after, if set, runs after each of those
// pipelines with its number (1, 2, ...). Other commands (the handshake of a
// new connection) are not counted.
type pageCounter struct {
	commands, pipelines, crowded atomic.Int64
	after                        func(n int64)
}

func (h *pageCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *pageCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if n := cmd.Name(); n == "scan" || n == "unlink" {
			h.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *pageCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		names := map[string]int{}
		for _, c := range cmds {
			names[c.Name()]++
		}
		if names["unlink"] == 0 && names["scan"] == 0 {
			return next(ctx, cmds)
		}
		if names["unlink"] > 1 || names["scan"] > 1 {
			h.crowded.Add(1)
		}
		err := next(ctx, cmds)
		n := h.pipelines.Add(1)
		if h.after != nil {
			h.after(n)
		}
		return err
	}
}

// tripContext is a context whose deadline passes when trip is called, at
// a point of the test's choosing rather than of the clock's.
type tripContext struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newTripContext() *tripContext {
	return &tripContext{Context: context.Background(), done: make(chan struct{})}
}

func (c *tripContext) trip()                 { c.once.Do(func() { close(c.done) }) }
func (c *tripContext) Done() <-chan struct{} { return c.done }
func (c *tripContext) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// TestClearLargeKeyspace: Clear of 300k keys, with a context that allows
// for it, deletes every one of them, in one round trip per SCAN page (a
// page's UNLINK rides with the next page's SCAN), and nothing outside the
// prefix: not the keys of "tenant10:", nor keys that start with
// "tenant1" but not "tenant1:".
func TestClearLargeKeyspace(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	client := singleClient(t, srv)
	pages := &pageCounter{}
	client.AddHook(pages)
	s, err := New(client, Options{Prefix: clearPrefix})
	if err != nil {
		t.Fatal(err)
	}
	populate(t, raw, clearPrefix+"k", manyKeys)
	populate(t, raw, otherPrefix+"k", 1000)
	setDecoys(t, raw)
	// Prefixes nest at a ':', as documented: this key is ours.
	if err := raw.Set(context.Background(), clearPrefix+"v2:k", "nested", 0).Err(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := s.Clear(ctx); err != nil {
		t.Fatalf("Clear of %d keys: %v", manyKeys, err)
	}
	t.Logf("Clear of %d keys: %v in %d round trips", manyKeys, time.Since(start).Round(time.Millisecond), pages.pipelines.Load())
	if n := countKeys(t, raw, clearPrefix+"*"); n != 0 {
		t.Fatalf("%d keys left under %q after Clear", n, clearPrefix)
	}
	if n := countKeys(t, raw, otherPrefix+"k*"); n != 1000 {
		t.Errorf("%d keys left under %q, want all 1000", n, otherPrefix)
	}
	wantDecoys(t, raw)
	// One pipeline per page of scanCount buckets (the table of 300k keys
	// has 2^19), each with one SCAN and one UNLINK; no single commands.
	if c, p, crowded := pages.commands.Load(), pages.pipelines.Load(), pages.crowded.Load(); c != 0 || p > 100 || crowded != 0 {
		t.Errorf("Clear sent %d single commands and %d pipelines, %d of them with more than one UNLINK or SCAN; want 0, at most 100, 0", c, p, crowded)
	}
}

// TestClearStopsWhenContextEnds: Clear under a context too short for the
// keyspace returns a *ClearError that wraps context.DeadlineExceeded, says
// how many keys it deleted and that keys remain on the server.
func TestClearStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	client := singleClient(t, srv)
	pages := &pageCounter{}
	client.AddHook(pages)
	s, err := New(client, Options{Prefix: clearPrefix})
	if err != nil {
		t.Fatal(err)
	}

	wantStopped := func(t *testing.T, err error) *ClearError {
		t.Helper()
		var ce *ClearError
		if !errors.As(err, &ce) {
			t.Fatalf("Clear = %v (%T), want a *ClearError", err, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Clear = %v, want it to wrap context.DeadlineExceeded", err)
		}
		if !slices.Equal(ce.Unfinished, []string{srv.Addr()}) {
			t.Errorf("Unfinished = %q, want [%s]", ce.Unfinished, srv.Addr())
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "redis: clear: ") ||
			!strings.Contains(msg, fmt.Sprintf("%d keys deleted; keys remain on %s", ce.Deleted, srv.Addr())) {
			t.Errorf("error message %q does not say what was deleted and what remains", msg)
		}
		return ce
	}

	// The deadline passes (deterministically) once two pipelines are back:
	// the first SCAN, then the first page's UNLINK with the second SCAN.
	// Both replies were read, so Deleted is exact.
	t.Run("AfterTheFirstPage", func(t *testing.T) {
		populate(t, raw, clearPrefix+"k", manyKeys)
		ctx := newTripContext()
		pages.pipelines.Store(0)
		pages.after = func(n int64) {
			if n == 2 {
				ctx.trip()
			}
		}
		defer func() { pages.after = nil }()
		ce := wantStopped(t, s.Clear(ctx))
		left := countKeys(t, raw, clearPrefix+"*")
		if ce.Deleted <= 0 || ce.Deleted >= manyKeys || ce.Deleted != manyKeys-left {
			t.Fatalf("Deleted = %d with %d of %d keys left, want the exact count of one page", ce.Deleted, left, manyKeys)
		}
	})

	// A real, short deadline: it may cut a pipeline whose keys are then
	// deleted without being counted, so Deleted is a lower bound.
	t.Run("ShortDeadline", func(t *testing.T) {
		populate(t, raw, clearPrefix+"k", manyKeys)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		ce := wantStopped(t, s.Clear(ctx))
		left := countKeys(t, raw, clearPrefix+"*")
		if ce.Deleted >= manyKeys || ce.Deleted > manyKeys-left || left == 0 {
			t.Fatalf("Deleted = %d with %d of %d keys left, want at most the keys gone, and keys left", ce.Deleted, left, manyKeys)
		}
	})

	t.Run("AlreadyEnded", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		if ce := wantStopped(t, s.Clear(ctx)); ce.Deleted != 0 {
			t.Fatalf("Deleted = %d, want 0", ce.Deleted)
		}
	})

	// With time to finish, the same store clears what the others left.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, raw, clearPrefix+"*"); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// TestClearServerDies: the server dies in the middle of a Clear: the error
// is a *ClearError naming it, with the keys deleted until then, and it does
// not blame the context.
func TestClearServerDies(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	client := singleClient(t, srv)
	pages := &pageCounter{after: func(n int64) {
		if n == 2 {
			srv.Kill()
		}
	}}
	client.AddHook(pages)
	s, err := New(client, Options{Prefix: clearPrefix})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50_000
	populate(t, srv.Client(t), clearPrefix+"k", n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = s.Clear(ctx)
	var ce *ClearError
	if !errors.As(err, &ce) {
		t.Fatalf("Clear = %v (%T), want a *ClearError", err, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("Clear = %v: blames the context, which had not ended", err)
	}
	if !slices.Equal(ce.Unfinished, []string{srv.Addr()}) || ce.Deleted <= 0 || ce.Deleted >= n {
		t.Fatalf("Clear = %+v, want the server unfinished and one page deleted", ce)
	}
}

// TestClusterClear: on a Redis Cluster, Clear deletes the prefix's keys on
// every master and nothing else; when a master is dead, the error names
// exactly that node, and every other master is cleared all the same.
func TestClusterClear(t *testing.T) {
	t.Parallel()
	// Without full coverage required, the live masters keep serving while
	// one is dead (there is no replica to promote).
	c := redistest.StartCluster(t, 3, 0, redistest.Config{Args: []string{"cluster-require-full-coverage no"}})
	raw := c.Client(t)
	s, err := NewFromConfig(Config{Addrs: c.Addrs()}, Options{Prefix: clearPrefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const n = 60_000
	fill := func(t *testing.T) {
		t.Helper()
		for from := 0; from < n; from += 10_000 {
			if _, err := raw.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for i := from; i < from+10_000; i++ {
					p.Set(ctx, fmt.Sprintf("%sk%d", clearPrefix, i), "v", 0)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// perMaster returns how many keys match pattern on each master.
	perMaster := func(t *testing.T, pattern string) map[string]int64 {
		t.Helper()
		counts := map[string]int64{}
		for _, node := range c.Nodes() {
			if node.Role != redistest.RoleMaster {
				continue
			}
			counts[node.Server.Addr()] = countKeys(t, node.Server.Client(t), pattern)
		}
		return counts
	}
	fill(t)
	for i := range 500 {
		if err := raw.Set(ctx, fmt.Sprintf("%sk%d", otherPrefix, i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	setDecoys(t, raw)

	if err := s.Clear(ctx); err != nil {
		t.Fatalf("Clear on a cluster: %v", err)
	}
	for addr, left := range perMaster(t, clearPrefix+"*") {
		if left != 0 {
			t.Errorf("%d keys left on %s", left, addr)
		}
	}
	var kept int64
	for _, k := range perMaster(t, otherPrefix+"*") {
		kept += k
	}
	if kept != 501 { // 500, and the decoy "tenant10:" ("tenant10:k1" is one of the 500)
		t.Errorf("%d keys left under %q, want 501", kept, otherPrefix)
	}
	wantDecoys(t, raw)

	fill(t)
	before := perMaster(t, clearPrefix+"*")
	dead, err := c.KillMaster(1)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Clear(ctx)
	var ce *ClearError
	if !errors.As(err, &ce) {
		t.Fatalf("Clear with a dead master = %v (%T), want a *ClearError", err, err)
	}
	t.Logf("Clear with a dead master: %v", err)
	if !slices.Equal(ce.Unfinished, []string{dead.Addr()}) {
		t.Errorf("Unfinished = %q, want the dead master [%s]", ce.Unfinished, dead.Addr())
	}
	if want := n - before[dead.Addr()]; ce.Deleted != want {
		t.Errorf("Deleted = %d, want the %d keys of the live masters", ce.Deleted, want)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Clear = %v: blames the context, which had not ended", err)
	}
	for addr, left := range perMaster(t, clearPrefix+"*") {
		if addr != dead.Addr() && left != 0 {
			t.Errorf("%d keys left on live master %s", left, addr)
		}
	}
}

// Clear has no deadline of its own: give it one that allows for the
// keyspace, and read what is left from a *ClearError.
func ExampleStore_Clear() {
	store, err := NewFromURL("redis://localhost:6379/0", Options{Prefix: "shop:prod:"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ce *ClearError
	if err := store.Clear(ctx); errors.As(err, &ce) {
		log.Printf("deleted %d keys; keys remain on %v: %v", ce.Deleted, ce.Unfinished, ce.Err)
	}
}
