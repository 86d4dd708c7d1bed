package agentcache

// Integrity of L2 values (issues 6 and 16), whatever the L2: a corrupt
// value is a miss and is replaced, never served nor a failure; a value is
// bound to the key it was written for, a read refuses one found under
// another key, and with Options.Secret nobody without the secret can make
// one a reader accepts.

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
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

func TestCorruptL2PayloadIsAMiss(t *testing.T) {
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
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e := backend.open(t, 3)
					a := rcNew(t, Options{L2: e.stores[0]})
					b := rcNew(t, Options{L2: e.stores[1]})
					ctx := context.Background()
					var runs atomic.Int32
					key, valid := profileInL2(t, e, a, &runs)
					e.Set(key, tc.corrupt(valid), time.Hour)

					// B reads the corrupt entry: a miss, so its loader runs
					// (and fails, so nothing replaces the entry); the error
					// is the loader's, never a decoding error.
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
					wait.For(t, 5*time.Second, "corrupt key deleted", func() bool { return !e.Exists(key) })
					wait.For(t, 5*time.Second, "B's queue drained", func() bool { return rcDrained(b) })

					// The next load replaces it, and a third instance reads that.
					v, err := Get(ctx, b, "profile:7", rcCounting(&runs, rcProfileFor))
					if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) {
						t.Fatalf("B: reload = %+v, %v", v, err)
					}
					wait.For(t, 5*time.Second, "B's queue drained", func() bool { return rcDrained(b) })
					c := rcNew(t, Options{L2: e.stores[2]})
					var cRuns atomic.Int32
					v, err = Get(ctx, c, "profile:7", rcCounting(&cRuns, func(string) rcProfile { return rcProfile{} }))
					if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) || cRuns.Load() != 0 || c.Stats().L2Hits != 1 {
						t.Fatalf("C: %+v, %v, loader runs %d, stats %+v; want the reloaded value from L2", v, err, cRuns.Load(), c.Stats())
					}
				})
			}
		})
	}
}

// A corrupt L2 value is deleted in the background, while the reload that
// follows writes the fresh value synchronously (the fleet-lock holder
// writes through). When the delete went through the write-behind queue, a
// busy queue made it land after the fresh value and remove it: the next
// instance missed and ran the tool again. The delete now removes the key
// only while it still holds the corrupt bytes.
func TestCorruptValueDeleteNeverRemovesTheReload(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			e := backend.open(t, 3)
			a := rcNew(t, Options{L2: e.stores[0]})
			// B's writer sends one write per round trip, so a backlog takes a
			// while to drain.
			b := rcNew(t, Options{L2: e.stores[1], Tuning: TuningOptions{WriteBatchSize: 1}})
			ctx := context.Background()
			var runs atomic.Int32
			if _, err := Get(ctx, a, "profile:7", rcCounting(&runs, rcProfileFor)); err != nil {
				t.Fatal(err)
			}
			key := kvL2Key(a, "profile:7")
			wait.For(t, 5*time.Second, "A's queue drained", func() bool { return rcDrained(a) })
			if keys, ok := e.Keys("kv:*"); ok && !slices.Equal(keys, []string{key}) {
				t.Fatalf("entry keys: %q, want %q", keys, key)
			}
			if !e.Exists(key) {
				t.Fatalf("%s is not in L2 after A's load", key)
			}
			e.Set(key, []byte("corrupt"), time.Hour)
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
			wait.For(t, 30*time.Second, "B's write queue", func() bool { return rcDrained(b) })
			if !e.Exists(key) {
				t.Errorf("the value B reloaded over the corrupt entry is gone from L2: the queued delete of the corrupt value removed it")
			}

			c := rcNew(t, Options{L2: e.stores[2]})
			var cRuns atomic.Int32
			v, err = Get(ctx, c, "profile:7", rcCounting(&cRuns, rcProfileFor))
			if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) {
				t.Fatalf("C: %+v, %v", v, err)
			}
			if cRuns.Load() != 0 {
				t.Fatal("C ran the tool again instead of reading B's reload from L2")
			}
		})
	}
}

var integritySecret = []byte("a secret the fleet shares, 32 b.")

// integrityTool answers with whose and what it was asked for, counting runs.
func integrityTool(t *testing.T, c *Cache, r resource.Resource, runs *atomic.Int32) func(context.Context, string) (string, error) {
	t.Helper()
	get, err := Wrap(c, r, func(ctx context.Context, q string) (string, error) {
		runs.Add(1)
		id, _ := scope.ID(ctx, r.Scope)
		return "doc " + q + " for " + id, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return get
}

// onlyEntryOf checks that key, r's entry there, holds a value, and, where
// the L2 lists its keys, that it is r's only entry key.
func onlyEntryOf(t *testing.T, e *l2Env, r resource.Resource, key string) {
	t.Helper()
	if !e.Exists(key) {
		t.Fatalf("%s is not in L2", key)
	}
	keys, ok := e.Keys("{*")
	if !ok {
		return
	}
	var found []string
	for _, k := range keys {
		if strings.Contains(k, r.ID()) && !strings.HasSuffix(k, ":ep") {
			found = append(found, k)
		}
	}
	if !slices.Equal(found, []string{key}) {
		t.Fatalf("entry keys of %s: %q, want %q", r.ID(), found, key)
	}
}

func TestValueCopiedToAnotherKeyIsNotServed(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			for _, secret := range [][]byte{nil, integritySecret} {
				name := "without a secret"
				if secret != nil {
					name = "with a secret"
				}
				t.Run(name, func(t *testing.T) {
					e := backend.open(t, 3)
					ctx := context.Background()
					var runs atomic.Int32
					// A global resource: the value for "public" copied to the
					// key of "secret" (same epochs, so the generation matches).
					docs := resource.Resource{Name: "docs", Scope: scope.Global, TTL: time.Hour}
					a := rcNew(t, Options{L2: e.stores[0], Secret: secret})
					if _, err := integrityTool(t, a, docs, &runs)(ctx, "public"); err != nil {
						t.Fatal(err)
					}
					wait.For(t, 5*time.Second, "A's write", func() bool { return rcDrained(a) && a.Stats().WritesDone >= 1 })
					from := entryL2Key(t, docs, "", "public")
					onlyEntryOf(t, e, docs, from)
					e.Copy(from, entryL2Key(t, docs, "", "secret"))
					b := rcNew(t, Options{L2: e.stores[1], Secret: secret})
					got, err := integrityTool(t, b, docs, &runs)(ctx, "secret")
					if err != nil || got != "doc secret for " {
						t.Errorf("B asked for secret and got %q, %v; want the tool's own answer", got, err)
					}
					if s := b.Stats(); s.L2Corrupt != 1 || s.L2Hits != 0 {
						t.Errorf("B: L2Corrupt %d, L2Hits %d; want the copied value counted as corrupt, never a hit", s.L2Corrupt, s.L2Hits)
					}
					// A value of alice's per-user resource copied to bob's key,
					// with bob's epochs set to alice's so the generation matches.
					carts := resource.Resource{Name: "carts", Scope: scope.User, TTL: time.Hour}
					if _, err := integrityTool(t, a, carts, &runs)(scope.WithUser(ctx, "alice"), "mine"); err != nil {
						t.Fatal(err)
					}
					wait.For(t, 5*time.Second, "A's write", func() bool { return rcDrained(a) && a.Stats().WritesDone >= 2 })
					alice := entryL2Key(t, carts, "alice", "mine")
					onlyEntryOf(t, e, carts, alice)
					e.Copy(alice, entryL2Key(t, carts, "bob", "mine"))
					aliceSeg, bobSeg := keyspace.Segment(carts.Scope, "alice"), keyspace.Segment(carts.Scope, "bob")
					e.Copy(keyspace.ScopeEpochKey(aliceSeg), keyspace.ScopeEpochKey(bobSeg))
					e.Copy(keyspace.ResourceScopeEpochKey(carts.ID(), aliceSeg), keyspace.ResourceScopeEpochKey(carts.ID(), bobSeg))
					c := rcNew(t, Options{L2: e.stores[2], Secret: secret})
					got, err = integrityTool(t, c, carts, &runs)(scope.WithUser(ctx, "bob"), "mine")
					if err != nil || got != "doc mine for bob" {
						t.Errorf("bob got %q, %v; want his own answer, never alice's", got, err)
					}
					if s := c.Stats(); s.L2Corrupt != 1 || s.L2Hits != 0 {
						t.Errorf("C: L2Corrupt %d, L2Hits %d; want alice's copied value counted as corrupt", s.L2Corrupt, s.L2Hits)
					}
				})
			}
		})
	}
}

// With a secret, a value written by an instance without it (or with
// another) is refused: nobody without the secret can plant one. Without a
// secret, a value fresh for far longer than its resource's TTL is refused
// too: the cache never writes one.
func TestForgedValuesAreRefused(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			e := backend.open(t, 5)
			ctx := context.Background()
			docs := resource.Resource{Name: "docs", Scope: scope.Global, TTL: time.Minute}
			var runs atomic.Int32
			plain := rcNew(t, Options{L2: e.stores[0]})
			if _, err := integrityTool(t, plain, docs, &runs)(ctx, "q"); err != nil {
				t.Fatal(err)
			}
			wait.For(t, 5*time.Second, "the write", func() bool { return rcDrained(plain) && plain.Stats().WritesDone >= 1 })
			keyed := rcNew(t, Options{L2: e.stores[1], Secret: integritySecret})
			if _, err := integrityTool(t, keyed, docs, &runs)(ctx, "q"); err != nil {
				t.Fatal(err)
			}
			if s := keyed.Stats(); runs.Load() != 2 || s.L2Hits != 0 || s.L2Corrupt != 1 {
				t.Errorf("a keyed instance over an unkeyed value: %d runs, %d L2 hits, %d corrupt; want it refused and the tool run", runs.Load(), s.L2Hits, s.L2Corrupt)
			}
			wait.For(t, 5*time.Second, "the keyed write", func() bool { return rcDrained(keyed) && keyed.Stats().WritesDone >= 1 })
			peer := rcNew(t, Options{L2: e.stores[2], Secret: integritySecret})
			if got, err := integrityTool(t, peer, docs, &runs)(ctx, "q"); err != nil || runs.Load() != 2 || peer.Stats().L2Hits != 1 {
				t.Errorf("an instance with the same secret: %q, %v, %d runs; want an L2 hit", got, err, runs.Load())
			}
			other := rcNew(t, Options{L2: e.stores[3], Secret: []byte("another secret, sixteen bytes +")})
			if _, err := integrityTool(t, other, docs, &runs)(ctx, "q"); err != nil || runs.Load() != 3 {
				t.Errorf("an instance with another secret: %v, %d runs; want the value refused (3 runs)", err, runs.Load())
			}

			// A hand-built envelope, bound to its key as an unkeyed cache
			// binds it but fresh for a year.
			key := entryL2Key(t, docs, "", "year")
			st := plain.stampFor(ctx, &lookup{r: plain.resources[docs.ID()]})
			gen := st.Token()
			forged := keyspace.NewSealer(nil).Append(nil, key, keyspace.KindValue, 1, gen, time.Now().Add(365*24*time.Hour), 0, []byte(`"planted"`))
			e.Set(key, forged, time.Hour)
			fresh := rcNew(t, Options{L2: e.stores[4]})
			if got, err := integrityTool(t, fresh, docs, &runs)(ctx, "year"); err != nil || got == "planted" || fresh.Stats().L2Corrupt != 1 {
				t.Errorf("a value fresh for a year under a 1m resource: %q, %v, %d corrupt; want it refused", got, err, fresh.Stats().L2Corrupt)
			}
		})
	}
}
