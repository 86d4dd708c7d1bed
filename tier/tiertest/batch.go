package tiertest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
)

func (s *suite) testBatchGetter(t *testing.T) {
	t.Run("OrderMissesDuplicates", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "bg")
		bg := st.(tier.BatchGetter)
		ctx := testCtx(t)
		for i := range 10 {
			mustSet(t, ctx, st, fmt.Sprintf("k%d", i), fmt.Appendf(nil, "v%d", i), 0)
		}
		mustSet(t, ctx, st, "empty", []byte{}, 0)
		keys := []string{"k3", "missing1", "k1", "k3", "empty", "missing2", "k9", "k0"}
		got, err := bg.GetMulti(ctx, keys)
		if err != nil {
			t.Fatalf("GetMulti: %v", err)
		}
		if len(got) != len(keys) {
			t.Fatalf("GetMulti returned %d lookups for %d keys", len(got), len(keys))
		}
		for i, k := range keys {
			l := got[i]
			if l.Err != nil {
				t.Errorf("GetMulti[%d] (%q): Err %v", i, k, l.Err)
				continue
			}
			switch k {
			case "missing1", "missing2":
				if l.Found || l.Value != nil {
					t.Errorf("GetMulti[%d] (%q) = (%q, %v), want a miss with a nil value", i, k, l.Value, l.Found)
				}
			case "empty":
				if !l.Found || len(l.Value) != 0 {
					t.Errorf("GetMulti[%d] (%q) = (%q, %v), want an empty value that is found", i, k, l.Value, l.Found)
				}
			default:
				want := "v" + k[1:]
				if !l.Found || string(l.Value) != want {
					t.Errorf("GetMulti[%d] (%q) = (%q, %v), want %q", i, k, l.Value, l.Found, want)
				}
			}
		}
		// Two lookups of one key must not share a buffer the caller may modify.
		if len(got[0].Value) > 0 && len(got[3].Value) > 0 {
			got[0].Value[0] = 'X'
			if got[3].Value[0] == 'X' {
				t.Error("GetMulti returned one slice for two lookups of a key")
			}
		}
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		bg := s.open(t, "bgempty").(tier.BatchGetter)
		ctx := testCtx(t)
		for _, keys := range [][]string{nil, {}} {
			got, err := bg.GetMulti(ctx, keys)
			if err != nil || len(got) != 0 {
				t.Fatalf("GetMulti(%#v) = (%v, %v), want no lookups and no error", keys, got, err)
			}
		}
	})

	t.Run("ThousandKeys", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "bg1000")
		bg := st.(tier.BatchGetter)
		ctx := testCtx(t)
		keys := make([]string, 1000)
		var writes []tier.Write
		for i := range keys {
			// Distinct hash tags spread the keys over every cluster slot range.
			keys[i] = fmt.Sprintf("{t%d}k", i)
			if i%2 == 0 {
				writes = append(writes, tier.Write{Key: keys[i], Value: []byte(keys[i])})
			}
		}
		writeAll(t, st, writes)
		got, err := bg.GetMulti(ctx, keys)
		if err != nil {
			t.Fatalf("GetMulti of 1000 keys: %v", err)
		}
		if len(got) != len(keys) {
			t.Fatalf("GetMulti returned %d lookups for %d keys", len(got), len(keys))
		}
		for i, k := range keys {
			l := got[i]
			switch {
			case l.Err != nil:
				t.Fatalf("GetMulti[%d]: Err %v", i, l.Err)
			case i%2 == 0 && (!l.Found || string(l.Value) != k):
				t.Fatalf("GetMulti[%d] = (%q, %v), want %q", i, l.Value, l.Found, k)
			case i%2 == 1 && (l.Found || l.Value != nil):
				t.Fatalf("GetMulti[%d] = (%q, %v), want a miss", i, l.Value, l.Found)
			}
		}
	})
}

// writeAll writes with SetMulti when the store has it, else one Set at a time.
func writeAll(t *testing.T, st tier.Remote, writes []tier.Write) {
	t.Helper()
	ctx := testCtx(t)
	if bw, ok := st.(tier.BatchWriter); ok {
		errs, err := bw.SetMulti(ctx, writes)
		if err != nil {
			t.Fatalf("SetMulti: %v", err)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("SetMulti write %d: %v", i, err)
			}
		}
		return
	}
	for _, w := range writes {
		mustSet(t, ctx, st, w.Key, w.Value, w.TTL)
	}
}

func (s *suite) testBatchWriter(t *testing.T) {
	t.Run("Mixed", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "bw")
		bw := st.(tier.BatchWriter)
		ctx := testCtx(t)
		mustSet(t, ctx, st, "present", []byte("old"), 0)
		mustSet(t, ctx, st, "overwritten", []byte("old"), 0)
		writes := []tier.Write{
			{Key: "plain", Value: []byte("1")},
			{Key: "long", Value: []byte("2"), TTL: time.Hour},
			{Key: "short", Value: []byte("3"), TTL: 100 * time.Millisecond},
			{Key: "absent", Value: []byte("4"), IfAbsent: true},
			{Key: "present", Value: []byte("5"), IfAbsent: true},
			{Key: "bad", Value: []byte("6"), TTL: -time.Second},
			{Key: "overwritten", Value: []byte("7")},
			{Key: "{slot}x", Value: []byte("8"), TTL: time.Hour, IfAbsent: true},
			{Key: "empty", Value: nil},
		}
		errs, err := bw.SetMulti(ctx, writes)
		if err != nil {
			t.Fatalf("SetMulti: %v", err)
		}
		if len(errs) != len(writes) {
			t.Fatalf("SetMulti returned %d errors for %d writes", len(errs), len(writes))
		}
		for i, w := range writes {
			if w.Key == "bad" {
				if errs[i] == nil {
					t.Errorf("write %d with a negative TTL: no error", i)
				}
				continue
			}
			if errs[i] != nil {
				t.Errorf("write %d (%q): %v", i, w.Key, errs[i])
			}
		}
		wantValue(t, ctx, st, "plain", []byte("1"))
		wantValue(t, ctx, st, "long", []byte("2"))
		wantValue(t, ctx, st, "absent", []byte("4"))
		wantValue(t, ctx, st, "present", []byte("old"))
		wantMissing(t, ctx, st, "bad")
		wantValue(t, ctx, st, "overwritten", []byte("7"))
		wantValue(t, ctx, st, "{slot}x", []byte("8"))
		wantValue(t, ctx, st, "empty", []byte{})
		wait.For(t, 10*time.Second, "batch write with a 100ms TTL expires", func() bool {
			_, ok := mustGet(t, ctx, st, "short")
			return !ok
		})
		wantValue(t, ctx, st, "long", []byte("2"))
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		bw := s.open(t, "bwempty").(tier.BatchWriter)
		ctx := testCtx(t)
		for _, writes := range [][]tier.Write{nil, {}} {
			errs, err := bw.SetMulti(ctx, writes)
			if err != nil || len(errs) != 0 {
				t.Fatalf("SetMulti(%#v) = (%v, %v), want no errors", writes, errs, err)
			}
		}
	})

	t.Run("ManySlots", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "bwmany")
		ctx := testCtx(t)
		writes := make([]tier.Write, 500)
		for i := range writes {
			k := fmt.Sprintf("{m%d}k", i)
			writes[i] = tier.Write{Key: k, Value: []byte(k), TTL: time.Hour, IfAbsent: i%3 == 0}
		}
		writeAll(t, st, writes)
		for _, w := range writes {
			wantValue(t, ctx, st, w.Key, w.Value)
		}
	})
}

func (s *suite) testAdder(t *testing.T) {
	t.Run("OnlyIfAbsent", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "add")
		a := st.(tier.Adder)
		ctx := testCtx(t)
		ok, err := a.SetIfAbsent(ctx, "k", []byte("first"), 0)
		if err != nil || !ok {
			t.Fatalf("SetIfAbsent on an absent key = (%v, %v), want (true, nil)", ok, err)
		}
		ok, err = a.SetIfAbsent(ctx, "k", []byte("second"), time.Hour)
		if err != nil || ok {
			t.Fatalf("SetIfAbsent on a present key = (%v, %v), want (false, nil)", ok, err)
		}
		wantValue(t, ctx, st, "k", []byte("first"))
		if _, err := a.SetIfAbsent(ctx, "neg", []byte("v"), -time.Second); err == nil {
			t.Fatal("SetIfAbsent with a negative TTL: no error")
		}
		wantMissing(t, ctx, st, "neg")
	})

	t.Run("TTL", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "addttl")
		a := st.(tier.Adder)
		ctx := testCtx(t)
		if ok, err := a.SetIfAbsent(ctx, "k", []byte("v1"), 100*time.Millisecond); err != nil || !ok {
			t.Fatalf("SetIfAbsent = (%v, %v), want (true, nil)", ok, err)
		}
		wait.For(t, 10*time.Second, "SetIfAbsent succeeds again once the first write expired", func() bool {
			ok, err := a.SetIfAbsent(ctx, "k", []byte("v2"), 0)
			if err != nil {
				t.Fatalf("SetIfAbsent: %v", err)
			}
			return ok
		})
		wantValue(t, ctx, st, "k", []byte("v2"))
	})

	t.Run("ExactlyOneWinner", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "addrace")
		a := st.(tier.Adder)
		ctx := testCtx(t)
		const n, rounds = 50, 10
		for round := range rounds {
			key := fmt.Sprintf("k%d", round)
			var wins atomic.Int32
			winner := make(chan string, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					v := fmt.Sprintf("g%d", i)
					ok, err := a.SetIfAbsent(ctx, key, []byte(v), time.Hour)
					if err != nil {
						t.Errorf("SetIfAbsent: %v", err)
						return
					}
					if ok {
						wins.Add(1)
						winner <- v
					}
				}()
			}
			close(start)
			wg.Wait()
			if got := wins.Load(); got != 1 {
				t.Fatalf("round %d: %d of %d concurrent SetIfAbsent calls won, want exactly 1", round, got, n)
			}
			wantValue(t, ctx, st, key, []byte(<-winner))
		}
	})
}
