package agentcache

// Integrity of L2 values (issue 6), whatever the L2: a corrupt value is a
// miss and is replaced, never served nor a failure.

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
					waitFor(t, 5*time.Second, "corrupt key deleted", func() bool { return !e.Exists(key) })
					waitFor(t, 5*time.Second, "B's queue drained", func() bool { return rcDrained(b) })

					// The next load replaces it, and a third instance reads that.
					v, err := Get(ctx, b, "profile:7", rcCounting(&runs, rcProfileFor))
					if err != nil || !reflect.DeepEqual(v, rcProfileFor("profile:7")) {
						t.Fatalf("B: reload = %+v, %v", v, err)
					}
					waitFor(t, 5*time.Second, "B's queue drained", func() bool { return rcDrained(b) })
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
			waitFor(t, 30*time.Second, "B's write queue", func() bool { return rcDrained(b) })
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
