package tiertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
)

// keyZoo holds keys that a careless store would mangle: hash-tag braces,
// separators, spaces, unicode, control bytes, glob metacharacters, format
// verbs, the empty key and a long key.
var keyZoo = []string{
	"",
	"plain",
	"with space",
	"colon:sep:x",
	"{",
	"}",
	"{}",
	"}{",
	"{tag}a",
	"{tag}b",
	"a{b}c",
	"ünïcødé 日本語 🙂",
	"\x00\x01\x7f\xff",
	"line\nbreak\r\n",
	"glob*?[x]\\",
	"%s%d%%",
	strings.Repeat("k", 1000),
}

func (s *suite) testRemote(t *testing.T) {
	t.Run("GetMiss", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "miss")
		ctx := testCtx(t)
		v, ok, err := st.Get(ctx, "absent")
		if v != nil || ok || err != nil {
			t.Fatalf("Get(absent) = (%v, %v, %v), want (nil, false, nil)", v, ok, err)
		}
	})

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "rt")
		ctx := testCtx(t)
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		values := map[string][]byte{
			"text":   []byte("hello"),
			"binary": all,
			"resp":   []byte("$-1\r\n*3\r\n-ERR x\r\n"),
			"1MiB":   randomBytes(1 << 20),
		}
		for k, v := range values {
			mustSet(t, ctx, st, k, v, 0)
		}
		for k, v := range values {
			wantValue(t, ctx, st, k, v)
		}
	})

	t.Run("EmptyValue", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "empty")
		ctx := testCtx(t)
		mustSet(t, ctx, st, "empty", []byte{}, 0)
		mustSet(t, ctx, st, "nil", nil, 0)
		for _, k := range []string{"empty", "nil"} {
			v, ok := mustGet(t, ctx, st, k)
			if !ok || len(v) != 0 {
				t.Fatalf("Get(%q) = (%q, %v), want an empty value that is found", k, v, ok)
			}
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "over")
		ctx := testCtx(t)
		mustSet(t, ctx, st, "k", []byte("first, and longer"), 0)
		mustSet(t, ctx, st, "k", []byte("second"), 0)
		wantValue(t, ctx, st, "k", []byte("second"))
	})

	t.Run("ValueOwnership", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "own")
		ctx := testCtx(t)
		buf := []byte("original")
		mustSet(t, ctx, st, "k", buf, 0)
		copy(buf, "XXXXXXXX") // the cache reuses its encode buffers
		got, _ := mustGet(t, ctx, st, "k")
		if len(got) > 0 {
			got[0] = 'Y' // the caller owns what Get returns
		}
		wantValue(t, ctx, st, "k", []byte("original"))
	})

	t.Run("TTLExpires", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "ttl")
		ctx := testCtx(t)
		mustSet(t, ctx, st, "short", []byte("v"), 150*time.Millisecond)
		mustSet(t, ctx, st, "long", []byte("v"), time.Hour)
		if v, ok := mustGet(t, ctx, st, "short"); ok && string(v) != "v" {
			t.Fatalf("Get(short) = %q before expiry, want \"v\"", v)
		}
		wait.For(t, 10*time.Second, "key with a 150ms TTL expires", func() bool {
			_, ok := mustGet(t, ctx, st, "short")
			return !ok
		})
		wantValue(t, ctx, st, "long", []byte("v"))
	})

	t.Run("TTLBelowResolution", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "tiny")
		ctx := testCtx(t)
		// A positive TTL finer than the backend's resolution must still expire
		// the key: never an error, never "no expiry".
		mustSet(t, ctx, st, "ns", []byte("v"), time.Nanosecond)
		mustSet(t, ctx, st, "us", []byte("v"), 1500*time.Microsecond)
		for _, k := range []string{"ns", "us"} {
			wait.For(t, 10*time.Second, "key "+k+" with a sub-millisecond TTL expires", func() bool {
				_, ok := mustGet(t, ctx, st, k)
				return !ok
			})
		}
	})

	t.Run("ZeroTTLPersists", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "zero")
		ctx := testCtx(t)
		mustSet(t, ctx, st, "forever", []byte("v"), 0)
		// Overwriting a key that had a TTL with ttl 0 removes the TTL.
		mustSet(t, ctx, st, "was-short", []byte("old"), 100*time.Millisecond)
		mustSet(t, ctx, st, "was-short", []byte("new"), 0)
		mustSet(t, ctx, st, "marker", []byte("v"), 100*time.Millisecond)
		wait.For(t, 10*time.Second, "marker with a 100ms TTL expires", func() bool {
			_, ok := mustGet(t, ctx, st, "marker")
			return !ok
		})
		time.Sleep(100 * time.Millisecond)
		wantValue(t, ctx, st, "forever", []byte("v"))
		wantValue(t, ctx, st, "was-short", []byte("new"))
	})

	t.Run("NegativeTTL", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "neg")
		ctx := testCtx(t)
		if err := st.Set(ctx, "k", []byte("v"), -time.Second); err == nil {
			t.Fatal("Set with a negative TTL: no error")
		}
		wantMissing(t, ctx, st, "k")
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "del")
		ctx := testCtx(t)
		for _, k := range []string{"a", "b", "c", "{x}d"} {
			mustSet(t, ctx, st, k, []byte(k), 0)
		}
		if err := st.Delete(ctx, "a", "missing", "{x}d", "b", "a"); err != nil {
			t.Fatalf("Delete of present, missing and repeated keys: %v", err)
		}
		for _, k := range []string{"a", "b", "{x}d"} {
			wantMissing(t, ctx, st, k)
		}
		wantValue(t, ctx, st, "c", []byte("c"))
		if err := st.Delete(ctx, "missing"); err != nil {
			t.Fatalf("Delete(missing): %v", err)
		}
		if err := st.Delete(ctx); err != nil {
			t.Fatalf("Delete of no keys: %v", err)
		}
	})

	t.Run("DeleteMany", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "delmany")
		ctx := testCtx(t)
		// Keys spread over many hash slots: a cluster store must not send
		// them as one multi-key command.
		keys := make([]string, 200)
		for i := range keys {
			keys[i] = fmt.Sprintf("{h%d}k", i)
			mustSet(t, ctx, st, keys[i], []byte("v"), 0)
		}
		if err := st.Delete(ctx, keys...); err != nil {
			t.Fatalf("Delete of %d keys over many slots: %v", len(keys), err)
		}
		for _, k := range keys {
			wantMissing(t, ctx, st, k)
		}
	})

	t.Run("ClearOwnPrefixOnly", func(t *testing.T) {
		t.Parallel()
		mine := s.open(t, "clear-mine")
		other := s.open(t, "clear-other")
		ctx := testCtx(t)
		// Enough keys, over enough slots, to need several scan pages.
		const n = 2500
		for i := range n {
			k := fmt.Sprintf("{c%d}k", i)
			mustSet(t, ctx, mine, k, []byte("mine"), 0)
		}
		for _, k := range keyZoo {
			mustSet(t, ctx, mine, k, []byte("mine"), 0)
			mustSet(t, ctx, other, k, []byte("other"), 0)
		}
		mustSet(t, ctx, mine, "ttl", []byte("mine"), time.Hour)
		if err := mine.Clear(ctx); err != nil {
			t.Fatalf("Clear: %v", err)
		}
		for i := range n {
			wantMissing(t, ctx, mine, fmt.Sprintf("{c%d}k", i))
		}
		for _, k := range keyZoo {
			wantMissing(t, ctx, mine, k)
			wantValue(t, ctx, other, k, []byte("other"))
		}
		wantMissing(t, ctx, mine, "ttl")
		// The store is still usable after Clear.
		mustSet(t, ctx, mine, "after", []byte("v"), 0)
		wantValue(t, ctx, mine, "after", []byte("v"))
		if err := mine.Clear(ctx); err != nil {
			t.Fatalf("Clear of a nearly empty namespace: %v", err)
		}
	})

	t.Run("ClearEscapesPrefix", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		// Each of these prefixes, used unescaped as a glob, would also match
		// the victim's prefix "<base>ka:".
		base := s.newPrefix("glob")
		victim := s.openPrefix(t, base+"ka:")
		mustSet(t, ctx, victim, "k", []byte("victim"), 0)
		globs := []string{base + "k*:", base + "k?:", base + "k[ab]:", base + `k\a:`}
		stores := make([]tier.Remote, len(globs))
		for i, p := range globs {
			stores[i] = s.openPrefix(t, p)
			mustSet(t, ctx, stores[i], "k", []byte(p), 0)
		}
		for i, st := range stores {
			if err := st.Clear(ctx); err != nil {
				t.Fatalf("Clear of prefix %q: %v", globs[i], err)
			}
			wantMissing(t, ctx, st, "k")
			wantValue(t, ctx, victim, "k", []byte("victim"))
			for j := i + 1; j < len(stores); j++ {
				wantValue(t, ctx, stores[j], "k", []byte(globs[j]))
			}
		}
	})

	t.Run("KeyBytes", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "keys")
		ctx := testCtx(t)
		for i, k := range keyZoo {
			mustSet(t, ctx, st, k, fmt.Appendf(nil, "value %d", i), 0)
		}
		for i, k := range keyZoo {
			wantValue(t, ctx, st, k, fmt.Appendf(nil, "value %d", i))
		}
		if err := st.Delete(ctx, keyZoo...); err != nil {
			t.Fatalf("Delete of every odd key: %v", err)
		}
		for _, k := range keyZoo {
			wantMissing(t, ctx, st, k)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "conc")
		ctx := testCtx(t)
		bg, _ := st.(tier.BatchGetter)
		const workers, ops, keys = 8, 300, 20
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for i := range ops {
					k := fmt.Sprintf("{k%d}", r.IntN(keys))
					var err error
					switch r.IntN(5) {
					case 0, 1:
						err = st.Set(ctx, k, fmt.Appendf(nil, "%s|%d|%d", k, w, i), 0)
					case 2:
						err = st.Delete(ctx, k)
					case 3:
						var v []byte
						var ok bool
						v, ok, err = st.Get(ctx, k)
						if err == nil && ok && !strings.HasPrefix(string(v), k+"|") {
							err = fmt.Errorf("Get(%q) returned %q, a value of another key", k, v)
						}
					case 4:
						if bg == nil {
							continue
						}
						k2 := fmt.Sprintf("{k%d}", r.IntN(keys))
						var res []tier.Lookup
						res, err = bg.GetMulti(ctx, []string{k, k2})
						for j, kk := range []string{k, k2} {
							if err == nil && res[j].Found && !strings.HasPrefix(string(res[j].Value), kk+"|") {
								err = fmt.Errorf("GetMulti returned %q for %q", res[j].Value, kk)
							}
						}
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("Closed", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "closed")
		ctx := testCtx(t)
		mustSet(t, ctx, st, "k", []byte("v"), 0)
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, tier.ErrClosed) {
				t.Errorf("%s after Close: error %v, want one wrapping tier.ErrClosed", op, err)
			}
		}
		everyOp(ctx, st, []byte("v"), true, check)
		if err := st.Close(); err != nil && !errors.Is(err, tier.ErrClosed) {
			t.Errorf("second Close: %v, want nil or an ErrClosed error", err)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "cancel")
		ctx := testCtx(t)
		mustSet(t, ctx, st, "k", []byte("v"), 0)
		dead, cancel := context.WithCancel(ctx)
		cancel()
		check := func(op string, err error) {
			t.Helper()
			if err == nil {
				t.Errorf("%s with a cancelled context: no error", op)
			} else if !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context: error %q does not wrap context.Canceled", op, err)
			}
		}
		everyOp(dead, st, []byte("changed"), false, check)
		// Nothing above changed anything, and the store still works.
		wantValue(t, ctx, st, "k", []byte("v"))
		mustSet(t, ctx, st, "k", []byte("after"), 0)
		wantValue(t, ctx, st, "k", []byte("after"))
	})

	t.Run("DeadlinesNeverCrossReplies", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "iso")
		ctx := testCtx(t)
		// Every goroutine writes its own key, then reads it back with a
		// deadline so short that many reads are cut off mid-flight. A read
		// that succeeds must return the reader's own value, never a reply
		// left on a connection by a cancelled read of somebody else.
		const workers, rounds = 8, 150
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 2))
				key := fmt.Sprintf("{w%d}", w)
				for i := range rounds {
					want := fmt.Sprintf("%s=%d", key, i)
					if err := st.Set(ctx, key, []byte(want), 0); err != nil {
						errs <- fmt.Errorf("Set: %w", err)
						return
					}
					short, cancel := context.WithTimeout(ctx, time.Duration(r.IntN(2000))*time.Microsecond)
					v, ok, err := st.Get(short, key)
					cancel()
					if err == nil && (!ok || string(v) != want) {
						errs <- fmt.Errorf("Get(%q) = (%q, %v), want %q", key, v, ok, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// everyOp calls every operation st has, the optional ones included, and
// hands each error to check. The writes store value; with unlock, the lease
// is also extended and released.
func everyOp(ctx context.Context, st tier.Remote, value []byte, unlock bool, check func(op string, err error)) {
	_, _, err := st.Get(ctx, "k")
	check("Get", err)
	check("Set", st.Set(ctx, "k", value, 0))
	check("Delete", st.Delete(ctx, "k"))
	check("Clear", st.Clear(ctx))
	if c, ok := st.(tier.BatchGetter); ok {
		_, err := c.GetMulti(ctx, []string{"k"})
		check("GetMulti", err)
	}
	if c, ok := st.(tier.BatchWriter); ok {
		_, err := c.SetMulti(ctx, []tier.Write{{Key: "k", Value: value}})
		check("SetMulti", err)
	}
	if c, ok := st.(tier.Adder); ok {
		_, err := c.SetIfAbsent(ctx, "k2", []byte("v"), 0)
		check("SetIfAbsent", err)
	}
	if c, ok := st.(tier.Epochs); ok {
		_, err := c.LoadEpochs(ctx, []tier.EpochOp{{Key: "e", Known: 1}})
		check("LoadEpochs", err)
		_, err = c.BumpEpochs(ctx, []tier.EpochOp{{Key: "e", Known: 1}})
		check("BumpEpochs", err)
	}
	if c, ok := st.(tier.Fencer); ok {
		_, _, err := c.ReadRecords(ctx, []tier.EpochOp{{Key: "e"}}, []tier.ReadOp{{Key: "k"}, {Key: "{r}", Lease: &tier.Lease{Key: "lk:{r}", Token: "t", TTL: time.Second}}})
		check("ReadRecords", err)
		// Stamped far ahead: it would replace k if it ran.
		record := tier.AppendRecord(nil, tier.KindValue, 1<<52, 0, value)
		_, err = c.WriteRecords(ctx, []tier.RecordWrite{{Key: "k", Record: record}})
		check("WriteRecords", err)
		_, _, err = c.Invalidate(ctx, []tier.TombstoneOp{{Key: "k", TTL: time.Second}}, []tier.EpochOp{{Key: "e"}})
		check("Invalidate", err)
	}
	if c, ok := st.(tier.Broadcaster); ok {
		check("Publish", c.Publish(ctx, "ch", []byte("m")))
		_, err := c.Subscribe(ctx, "ch")
		check("Subscribe", err)
	}
	if c, ok := st.(tier.Locker); ok {
		_, err := c.TryLock(ctx, "l", "t", time.Second)
		check("TryLock", err)
		if unlock {
			_, err = c.Extend(ctx, "l", "t", time.Second)
			check("Extend", err)
			_, err = c.Unlock(ctx, "l", "t")
			check("Unlock", err)
		}
	}
}
