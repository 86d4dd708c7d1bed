package memory

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// never is the expiry of values that live until evicted or deleted.
func never[V any](V) int64 { return 0 }

// timed is a value that carries its expiry (Unix nanoseconds; 0: never).
type timed struct {
	v   int
	exp int64
}

func expiryOf(x timed) int64 { return x.exp }

// newTimedStore returns a Store of timed values on a fake clock, closed
// when t ends.
func newTimedStore(t *testing.T) (*fakeClock, *Store[timed]) {
	t.Helper()
	clk := newClock()
	s, err := New[timed](Options{Now: clk.now}, expiryOf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return clk, s
}

func TestStoreBasics(t *testing.T) {
	s, err := New[string](Options{}, never[string])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Get("a"); ok {
		t.Fatal("empty store returned a value")
	}
	s.Set("a", "1")
	s.Set("b", "2")
	if v, ok := s.Get("a"); !ok || v != "1" {
		t.Fatalf("Get(a) = %q, %v", v, ok)
	}
	s.Set("a", "3")
	if v, _ := s.Get("a"); v != "3" {
		t.Fatalf("overwrite: got %q", v)
	}
	s.Delete("a")
	if _, ok := s.Get("a"); ok {
		t.Fatal("deleted key still present")
	}
	got := map[string]string{}
	for k, v := range s.All() {
		got[k] = v
	}
	if len(got) != 1 || got["b"] != "2" {
		t.Fatalf("All = %v", got)
	}
	s.Clear()
	if s.Len() != 0 {
		t.Fatalf("Len after Clear = %d", s.Len())
	}
}

func TestStoreTTL(t *testing.T) {
	clk, s := newTimedStore(t)
	in := func(d time.Duration) int64 { return clk.now().Add(d).UnixNano() }
	s.Set("short", timed{1, in(time.Second)})
	s.Set("long", timed{2, in(time.Minute)})
	s.Set("forever", timed{3, 0})
	s.Set("past", timed{4, in(-time.Second)})
	if _, ok := s.Get("past"); ok {
		t.Fatal("a value stored after its expiry was served")
	}
	clk.advance(2 * time.Second)
	if _, ok := s.Get("short"); ok {
		t.Fatal("entry outlived its TTL")
	}
	if _, ok := s.Get("long"); !ok {
		t.Fatal("entry died before its TTL")
	}
	// A rewrite sets the new value's expiry.
	s.Set("long", timed{5, in(time.Minute)})
	clk.advance(59 * time.Second)
	if v, ok := s.Get("long"); !ok || v.v != 5 {
		t.Fatalf("rewritten entry: %v, %v", v, ok)
	}
	clk.advance(24 * 365 * time.Hour)
	if _, ok := s.Get("forever"); !ok {
		t.Fatal("entry without TTL expired")
	}
}

func TestStoreRejectsNilExpiry(t *testing.T) {
	if _, err := New[int](Options{}, nil); err == nil {
		t.Fatal("New accepted a nil expiresAt")
	}
}

func TestStoreBound(t *testing.T) {
	s, err := New[int](Options{MaxEntries: 100}, never[int])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 10_000 {
		s.Set(strconv.Itoa(i), i)
	}
	// Eviction runs in otter's maintenance; a read drives it.
	wait.For(t, 5*time.Second, "Len <= 100", func() bool {
		s.Get("0")
		return s.Len() <= 100
	})
	if ev := s.Stats().Evictions; ev < 9_900 {
		t.Fatalf("Evictions = %d, want >= 9900", ev)
	}
}

func TestStoreRejectsNegativeBound(t *testing.T) {
	if _, err := New[int](Options{MaxEntries: -1}, never[int]); err == nil {
		t.Fatal("New accepted MaxEntries -1")
	}
}

func TestStoreConcurrent(t *testing.T) {
	s, err := New[timed](Options{MaxEntries: 1000}, expiryOf)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := strconv.Itoa((g * 31 * i) % 1500)
				s.Set(k, timed{i, time.Now().Add(time.Minute).UnixNano()})
				if v, ok := s.Get(k); ok && v.v < 0 {
					t.Error("impossible value")
				}
				if i%100 == 0 {
					s.Delete(k)
				}
			}
		}()
	}
	wg.Wait()
}

func TestStoreCompute(t *testing.T) {
	clk, s := newTimedStore(t)
	in := func(d time.Duration) int64 { return clk.now().Add(d).UnixNano() }
	write := func(v timed) func(timed, bool) (timed, Op) {
		return func(timed, bool) (timed, Op) { return v, Write }
	}
	if !s.Compute("a", write(timed{1, in(time.Minute)})) {
		t.Fatal("Compute(Write) of a live value reported nothing stored")
	}
	var seen timed
	var found bool
	if s.Compute("a", func(old timed, ok bool) (timed, Op) { seen, found = old, ok; return timed{9, 0}, Keep }) {
		t.Fatal("Compute(Keep) reported a write")
	}
	if !found || seen.v != 1 {
		t.Fatalf("Compute saw %v, %v; want the stored value 1", seen, found)
	}
	if v, _ := s.Get("a"); v.v != 1 {
		t.Fatalf("after Keep, Get = %v; want 1", v)
	}
	if s.Compute("a", write(timed{2, in(-time.Second)})) {
		t.Fatal("Compute(Write) of an expired value reported it stored")
	}
	if _, ok := s.Get("a"); ok {
		t.Fatal("a Write of an expired value left the key's old value")
	}
	s.Set("b", timed{3, 0})
	if s.Compute("b", func(timed, bool) (timed, Op) { return timed{}, Remove }) {
		t.Fatal("Compute(Remove) reported a write")
	}
	if _, ok := s.Get("b"); ok {
		t.Fatal("Compute(Remove) left the key")
	}
	s.Compute("c", func(_ timed, ok bool) (timed, Op) { found = ok; return timed{}, Keep })
	if found {
		t.Fatal("Compute of an absent key reported it found")
	}
}

// The real clock: a lifetime is the value's expiry (wall clock) less the
// wall-clock time of the write, even after the wall clock has moved
// against the monotonic one since the Store was made (an NTP step, a
// suspended VM). The move is simulated by shifting the Store's record of
// the wall clock at its start.
func TestStoreLifetimeFollowsWallClockMoves(t *testing.T) {
	for _, shift := range []time.Duration{0, time.Hour, -time.Hour, 8 * time.Hour} {
		s, err := New[timed](Options{}, expiryOf)
		if err != nil {
			t.Fatal(err)
		}
		s.mono.startNanos -= int64(shift) // the wall clock is now shift ahead of mono
		const life = time.Minute
		s.Set("k", timed{1, time.Now().Add(life).UnixNano()})
		e, ok := s.c.GetEntry("k")
		if !ok {
			t.Fatalf("shift %v: the entry is missing", shift)
		}
		if got := e.ExpiresAfter(); got > life || got < life-time.Second {
			t.Errorf("shift %v: the entry expires after %v; want %v", shift, got, life)
		}
		s.Close()
	}
}
