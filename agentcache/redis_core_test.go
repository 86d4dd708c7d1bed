package agentcache

// Real-Redis tests of the two-tier core (issue 2): L2 hits across
// instances, corrupt payloads, Redis killed, paused or blackholed, the
// write-behind queue and MaxValueSize. The rc* helpers are in
// redisenv_test.go.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

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
			waitFor(t, 5*time.Second, "A's L2 write", func() bool { return a.Stats().WritesDone >= 1 })

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

func TestRedisCorruptL2PayloadIsAMiss(t *testing.T) {
	// Each case turns the valid L2 value into a corrupt one.
	cases := []struct {
		name    string
		corrupt func(valid []byte) []byte
	}{
		{"garbage", func([]byte) []byte { return []byte("definitely not an agentcache envelope") }},
		{"truncated header", func(v []byte) []byte { return v[:keyspace.HeaderLen-1] }},
		{"bad payload", func(v []byte) []byte { // a valid header, not JSON for the type
			return append(slices.Clip(v[:keyspace.HeaderLen]), `{"id": [1, 2`...)
		}},
		{"unknown kind", func(v []byte) []byte {
			v = slices.Clone(v)
			v[1] = 9 // byte 1 of the envelope is its kind (see package keyspace)
			return v
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := rcStart(t)
			a := rcNew(t, Options{L2: e.store()})
			b := rcNew(t, Options{L2: e.store()})
			ctx := context.Background()
			var runs atomic.Int32
			key, valid := rcProfileInL2(t, e, a, &runs)
			if err := e.Raw.Set(ctx, key, tc.corrupt(valid), time.Hour).Err(); err != nil {
				t.Fatal(err)
			}

			// B reads the corrupt entry: a miss, so its loader runs (and
			// fails, so nothing replaces the entry); the error is the
			// loader's, never a decoding error.
			toolDown := errors.New("profile service down")
			_, err := Get(ctx, b, "profile:7", func(context.Context, string) (rcProfile, error) {
				return rcProfile{}, toolDown
			})
			if !errors.Is(err, toolDown) {
				t.Fatalf("B: Get over a corrupt entry = %v, want the loader's error", err)
			}
			if s := b.Stats(); s.L2Corrupt < 1 || s.L2Hits != 0 {
				t.Fatalf("B: L2Corrupt %d, L2Hits %d; want the corrupt entry counted and not served", s.L2Corrupt, s.L2Hits)
			}
			waitFor(t, 5*time.Second, "corrupt key deleted", func() bool {
				return e.Raw.Exists(ctx, key).Val() == 0
			})
			waitFor(t, 5*time.Second, "B's queue drained", func() bool { return rcDrained(b) })

			// The next load replaces it, and a third instance reads that.
			v, err := Get(ctx, b, "profile:7", rcCounting(&runs, rcProfileFor))
			if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) {
				t.Fatalf("B: reload = %+v, %v", v, err)
			}
			waitFor(t, 5*time.Second, "B's queue drained", func() bool { return rcDrained(b) })
			c := rcNew(t, Options{L2: e.store()})
			var cRuns atomic.Int32
			v, err = Get(ctx, c, "profile:7", rcCounting(&cRuns, func(string) rcProfile { return rcProfile{} }))
			if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) || cRuns.Load() != 0 || c.Stats().L2Hits != 1 {
				t.Fatalf("C: %+v, %v, loader runs %d, stats %+v; want the reloaded value from L2", v, err, cRuns.Load(), c.Stats())
			}
		})
	}
}

func TestRedisKilledNeverAnErrorThenRecovers(t *testing.T) {
	e := rcStart(t)
	o := Options{
		L2Timeout: 200 * time.Millisecond, Tuning: TuningOptions{Breaker: BreakerOptions{Failures: 3, OpenFor: 300 * time.Millisecond, MaxOpenFor: 300 * time.Millisecond}},
	}
	o.L2 = e.store()
	a := rcNew(t, o)
	o.L2 = e.store()
	b := rcNew(t, o)
	ctx := context.Background()
	var runs atomic.Int32
	value := func(key string) string { return "value of " + key }
	load := rcCounting(&runs, value)
	if v, err := Get(ctx, a, "before", load); err != nil || v != value("before") {
		t.Fatalf("before the kill: %q, %v", v, err)
	}

	e.Srv.Kill()
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("down-%d", i)
		for _, c := range []*Cache{a, b} {
			if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
				t.Fatalf("with Redis dead: Get(%s) = %q, %v; want the loader's value and no error", k, v, err)
			}
		}
	}
	// What L1 holds is still served.
	if v, err := Get(ctx, a, "before", load); err != nil || v != value("before") {
		t.Fatalf("L1 entry with Redis dead: %q, %v", v, err)
	}
	for name, c := range map[string]*Cache{"A": a, "B": b} {
		s := c.Stats()
		if s.Breaker == "closed" || s.L2Errors < 1 {
			t.Fatalf("%s with Redis dead: breaker %s after %d L2 errors; want it open", name, s.Breaker, s.L2Errors)
		}
		// Each call would try L2 two or three times; the open breaker lets
		// only its probes through.
		if s.L2Errors >= 30 {
			t.Fatalf("%s: %d L2 errors over 31 calls; a dead Redis must not cost a timeout per call", name, s.L2Errors)
		}
	}

	if err := e.Srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// Each call may probe the breaker; both close again.
	i := 0
	for name, c := range map[string]*Cache{"A": a, "B": b} {
		waitFor(t, 10*time.Second, name+"'s breaker to close", func() bool {
			i++
			k := fmt.Sprintf("probe-%d", i)
			if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
				t.Fatalf("while Redis restarts: Get(%s) = %q, %v", k, v, err)
			}
			return c.Stats().Breaker == "closed"
		})
	}
	// L2 is used again: what A loads, B reads from L2.
	var bRuns atomic.Int32
	fromB := rcCounting(&bRuns, func(string) string { return "loaded by B" })
	hits := b.Stats().L2Hits
	waitFor(t, 10*time.Second, "an L2 hit on B after the restart", func() bool {
		i++
		k := fmt.Sprintf("after-%d", i)
		if _, err := Get(ctx, a, k, load); err != nil {
			t.Fatalf("A after the restart: %v", err)
		}
		v, err := Get(ctx, b, k, fromB)
		if err != nil {
			t.Fatalf("B after the restart: %v", err)
		}
		return v == value(k) && b.Stats().L2Hits > hits
	})
}

func TestRedisSlowL2CallsStillSucceed(t *testing.T) {
	for _, mode := range []string{"paused", "blackholed"} {
		t.Run(mode, func(t *testing.T) {
			e := rcStart(t)
			var fault, heal func()
			var store *acredis.Store
			switch mode {
			case "paused":
				store, fault, heal = e.store(), e.Srv.Pause, e.Srv.Resume
			case "blackholed":
				p := e.Proxy()
				store = e.storeVia(p.Addr())
				fault, heal = func() { p.Blackhole(true) }, func() { p.Blackhole(false) }
			}
			c := rcNew(t, Options{L2: store, L2Timeout: 50 * time.Millisecond})
			t.Cleanup(heal) // before c closes
			ctx := context.Background()
			var runs atomic.Int32
			value := func(key string) string { return "value of " + key }
			load := rcCounting(&runs, value)
			if v, err := Get(ctx, c, "warm", load); err != nil || v != value("warm") {
				t.Fatalf("healthy: %q, %v", v, err)
			}
			entries := len(e.Keys("kv:*"))

			fault()
			for i := 0; i < 10; i++ {
				k := fmt.Sprintf("slow-%d", i)
				if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
					t.Fatalf("L2 %s: Get(%s) = %q, %v; want the loader's value", mode, k, v, err)
				}
			}
			if v, err := Get(ctx, c, "warm", load); err != nil || v != value("warm") {
				t.Fatalf("L2 %s: L1 entry = %q, %v", mode, v, err)
			}
			s := c.Stats()
			if s.L2Errors < 5 || s.Breaker == "closed" {
				t.Fatalf("L2 %s: %d L2 errors counted, breaker %s; want the timeouts counted and the breaker open", mode, s.L2Errors, s.Breaker)
			}

			heal()
			i := 0
			waitFor(t, 10*time.Second, "L2 in use again", func() bool {
				i++
				k := fmt.Sprintf("healed-%d", i)
				if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
					t.Fatalf("after healing: Get(%s) = %q, %v", k, v, err)
				}
				return c.Stats().Breaker == "closed" && len(e.Keys("kv:*")) > entries
			})
		})
	}
}

func TestRedisFullWriteQueueDropsWithoutWaiting(t *testing.T) {
	e := rcStart(t)
	// A long L2Timeout: a caller that waited for a write would wait for it.
	c := rcNew(t, Options{L2: e.store(), L2Timeout: 20 * time.Second, Tuning: TuningOptions{WriteQueueSize: 1, WriteBatchSize: 1}})
	rcSubscribed(t, c)
	ctx := context.Background()
	if err := c.Set(ctx, "warm", -1, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the warm-up write", func() bool { return c.Stats().WritesDone == 1 })

	e.Srv.Pause()
	t.Cleanup(e.Srv.Resume) // before c closes
	const n = 200
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, 0); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Set with a full queue: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Set blocked while Redis was paused and the queue was full; callers must never wait for L2 writes")
	}
	s := c.Stats()
	if s.WritesDropped < n-2 || s.WritesQueued+s.WritesDropped != n+1 {
		t.Fatalf("queue of 1 and a stuck writer: %d queued, %d dropped of %d writes", s.WritesQueued, s.WritesDropped, n+1)
	}
	// What was set is still served from L1.
	if v, err := Get(ctx, c, "k150", func(context.Context, string) (int, error) { return 0, errors.New("not in L1") }); err != nil || v != 150 {
		t.Fatalf("L1 after dropped writes: %d, %v", v, err)
	}

	e.Srv.Resume()
	// Not rcDrained: the drops here were never queued, and counting them
	// would call the queue drained while its one write is still in flight.
	waitFor(t, 30*time.Second, "the queued writes", func() bool {
		s := c.Stats()
		return s.WriteQueueDepth == 0 && s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesFenced >= s.WritesQueued
	})
	if s := c.Stats(); s.WritesDone != s.WritesQueued {
		t.Fatalf("after Resume: %d of %d queued writes done (stats %+v)", s.WritesDone, s.WritesQueued, s)
	}
}

func TestRedisCloseDrainsWriteQueue(t *testing.T) {
	e := rcStart(t)
	c := rcNew(t, Options{L2: e.store(), L2Timeout: 20 * time.Second})
	rcSubscribed(t, c)
	ctx := context.Background()
	if err := c.Set(ctx, "warm", -1, time.Hour); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the warm-up write", func() bool { return c.Stats().WritesDone == 1 })

	// With Redis paused the writer is stuck, so the writes are still
	// queued, or in the writer's stalled pipeline, when Close starts.
	e.Srv.Pause()
	t.Cleanup(e.Srv.Resume)
	const n = 50
	for i := 0; i < n; i++ {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// Not WriteQueueDepth: the writer may have taken all of them into the
	// one pipeline that Redis's pause holds up (WriteBatchSize > n).
	if s := c.Stats(); s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesFenced+s.WritesDropped >= s.WritesQueued {
		t.Fatalf("every write settled while Redis is paused; the test cannot tell whether Close drains (stats %+v)", s)
	}
	closed := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		closed <- c.Close(cctx)
	}()
	waitFor(t, 5*time.Second, "Close to start", c.closed.Load)
	e.Srv.Resume()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Close did not return")
	}
	if s := c.Stats(); s.WritesDone != n+1 || s.WritesDropped != 0 {
		t.Fatalf("after Close: %d writes done, %d dropped; want %d and 0", s.WritesDone, s.WritesDropped, n+1)
	}

	// Everything is in Redis: a new instance reads it all from L2.
	d := rcNew(t, Options{L2: e.store()})
	never := func(_ context.Context, key string) (int, error) {
		return 0, fmt.Errorf("%s was not in L2 after Close", key)
	}
	for i := 0; i < n; i++ {
		if v, err := Get(ctx, d, fmt.Sprintf("k%d", i), never); err != nil || v != i {
			t.Fatalf("k%d after Close: %d, %v", i, v, err)
		}
	}
	if s := d.Stats(); s.L2Hits != n {
		t.Fatalf("new instance: %d L2 hits, want %d", s.L2Hits, n)
	}
}

func TestRedisOversizeValueStaysOutOfL2(t *testing.T) {
	e := rcStart(t)
	const limit = 256
	a := rcNew(t, Options{L2: e.store(), MaxValueSize: limit})
	b := rcNew(t, Options{L2: e.store(), MaxValueSize: limit})
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
	waitFor(t, 5*time.Second, "A's queue drained", func() bool { return rcDrained(a) })
	keys := e.Keys("kv:*")
	if len(keys) != 1 {
		t.Fatalf("entry keys in Redis: %q; want only the small value's", keys)
	}
	for _, k := range keys {
		if n := e.Raw.StrLen(ctx, k).Val(); n > limit {
			t.Fatalf("%s holds %d bytes, over MaxValueSize %d", k, n, limit)
		}
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
}

// TestRedisOversizeL2ValueIsNotRead: MaxValueSize bounds reads too. A value
// planted in L2 above it (or written by an instance with a larger bound) is
// a miss, counted in Stats.Oversize, and never decoded.
func TestRedisOversizeL2ValueIsNotRead(t *testing.T) {
	e := rcStart(t)
	a := rcNew(t, Options{L2: e.store()})
	b := rcNew(t, Options{L2: e.store(), MaxValueSize: 4096})
	ctx := context.Background()
	var runs atomic.Int32
	key, valid := rcProfileInL2(t, e, a, &runs)
	// The same envelope with a payload padded past B's bound: valid JSON,
	// so only the size keeps B from decoding it.
	big := append(slices.Clip(valid[:len(valid)-1]), []byte(strings.Repeat(" ", 8192)+"}")...)
	if err := e.Raw.Set(ctx, key, big, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, b, "profile:7", rcCounting(&runs, rcProfileFor)); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.Oversize == 0 || s.L2Hits != 0 || runs.Load() != 2 {
		t.Fatalf("B: Oversize %d, L2 hits %d, tool runs %d; want the oversize value counted, not served, and the tool run again", s.Oversize, s.L2Hits, runs.Load())
	}
}

// rcProfileInL2 has a load profile:7 through the key-value API (counted in
// runs), waits for its L2 write and returns the entry's key and the bytes
// it wrote, checked to open as an envelope.
func rcProfileInL2(t *testing.T, e *rcEnv, a *Cache, runs *atomic.Int32) (string, []byte) {
	t.Helper()
	ctx := context.Background()
	if _, err := Get(ctx, a, "profile:7", rcCounting(runs, rcProfileFor)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A's L2 write", func() bool { return a.Stats().WritesDone >= 1 })
	keys := e.Keys("kv:*")
	if len(keys) != 1 {
		t.Fatalf("entry keys under the prefix: %q, want exactly one", keys)
	}
	valid, err := e.Raw.Get(ctx, keys[0]).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyspace.OpenEnvelope(valid); err != nil {
		t.Fatalf("the value A wrote does not open: %v", err)
	}
	return keys[0], valid
}

// A corrupt L2 value is deleted through the write-behind queue
// (Cache.corrupt enqueues the delete), while the reload that follows
// writes the fresh value synchronously (the fleet-lock holder writes
// through). When the queue is busy, the delete lands after the fresh value
// and removes it: the next instance misses and runs the tool again.
func TestCorruptValueDeleteNeverRemovesTheReload(t *testing.T) {
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
	keys := e.Keys("kv:*")
	if len(keys) != 1 {
		t.Fatalf("entry keys: %q", keys)
	}
	if err := e.Raw.Set(ctx, keys[0], "corrupt", time.Hour).Err(); err != nil {
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
	waitFor(t, 30*time.Second, "B's write queue", func() bool { return rcDrained(b) })
	if e.Raw.Exists(ctx, keys[0]).Val() != 1 {
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
