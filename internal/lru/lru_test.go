package lru

import (
	"sync"
	"testing"
	"time"
)

func TestLRUOrder(t *testing.T) {
	c := New[string, int](3, 0, nil)
	c.Add("a", 1)
	c.Add("b", 2)
	c.Add("c", 3)
	c.Get("a")    // a is now the most recent: b is the oldest
	c.Add("d", 4) // evicts b
	if _, ok := c.Get("b"); ok {
		t.Fatal("b survived; LRU order not kept")
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("%s evicted", k)
		}
	}
	c.Add("c", 30) // an update refreshes recency: a is oldest now
	c.Add("e", 5)
	if _, ok := c.Get("a"); ok {
		t.Fatal("a survived")
	}
	if v, _ := c.Get("c"); v != 30 {
		t.Fatalf("c = %d", v)
	}
	if c.Evictions() != 2 || c.Len() != 3 {
		t.Fatalf("evictions %d len %d", c.Evictions(), c.Len())
	}
	c.Remove("c")
	c.Purge()
	if c.Len() != 0 {
		t.Fatal("Purge left entries")
	}
}

func TestTTL(t *testing.T) {
	now := time.Unix(0, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := New[int, int](0, time.Minute, clock)
	c.Add(1, 1)
	mu.Lock()
	now = now.Add(59 * time.Second)
	mu.Unlock()
	if _, ok := c.Get(1); !ok {
		t.Fatal("expired early")
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if _, ok := c.Get(1); ok {
		t.Fatal("outlived its TTL")
	}
}
