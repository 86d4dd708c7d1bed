package memory

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func TestStoreBasics(t *testing.T) {
	s, err := New[string](Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Get("a"); ok {
		t.Fatal("empty store returned a value")
	}
	s.Set("a", "1", 0)
	s.Set("b", "2", time.Hour)
	if v, ok := s.Get("a"); !ok || v != "1" {
		t.Fatalf("Get(a) = %q, %v", v, ok)
	}
	s.Set("a", "3", 0)
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
	if exp, ok := s.ExpiresAt("b"); !ok || exp.IsZero() {
		t.Fatalf("ExpiresAt(b) = %v, %v; want a time", exp, ok)
	}
	s.Clear()
	if s.Len() != 0 {
		t.Fatalf("Len after Clear = %d", s.Len())
	}
}

func TestStoreTTL(t *testing.T) {
	clk := newClock()
	s, err := New[int](Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Set("short", 1, time.Second)
	s.Set("long", 2, time.Minute)
	s.Set("forever", 3, 0)
	clk.advance(2 * time.Second)
	if _, ok := s.Get("short"); ok {
		t.Fatal("entry outlived its TTL")
	}
	if _, ok := s.Get("long"); !ok {
		t.Fatal("entry died before its TTL")
	}
	// A rewrite resets the TTL.
	s.Set("long", 4, time.Minute)
	clk.advance(59 * time.Second)
	if v, ok := s.Get("long"); !ok || v != 4 {
		t.Fatalf("rewritten entry: %v, %v", v, ok)
	}
	clk.advance(24 * 365 * time.Hour)
	if _, ok := s.Get("forever"); !ok {
		t.Fatal("entry without TTL expired")
	}
	if exp, ok := s.ExpiresAt("forever"); !ok || !exp.IsZero() {
		t.Fatalf("ExpiresAt(forever) = %v, %v; want zero time", exp, ok)
	}
}

func TestStoreBound(t *testing.T) {
	s, err := New[int](Options{MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 10_000 {
		s.Set(strconv.Itoa(i), i, 0)
	}
	// Eviction runs in otter's maintenance; a read drives it.
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() > 100 && time.Now().Before(deadline) {
		s.Get("0")
		time.Sleep(time.Millisecond)
	}
	if n := s.Len(); n > 100 {
		t.Fatalf("Len = %d, want <= 100", n)
	}
	if ev := s.Stats().Evictions; ev < 9_900 {
		t.Fatalf("Evictions = %d, want >= 9900", ev)
	}
}

func TestStoreRejectsNegativeBound(t *testing.T) {
	if _, err := New[int](Options{MaxEntries: -1}); err == nil {
		t.Fatal("New accepted MaxEntries -1")
	}
}

func TestStoreConcurrent(t *testing.T) {
	s, err := New[int](Options{MaxEntries: 1000})
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
				s.Set(k, i, time.Minute)
				if v, ok := s.Get(k); ok && v < 0 {
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
