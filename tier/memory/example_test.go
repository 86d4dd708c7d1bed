package memory_test

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/tier/memory"
)

// New makes a Store; expiresAt tells it when each value expires, here never
// (0): the values live until evicted or deleted.
func ExampleNew() {
	s, err := memory.New(memory.Options{MaxEntries: 1000}, func(string) int64 { return 0 })
	if err != nil {
		panic(err)
	}
	defer s.Close()

	s.Set("get_weather:oslo", "12°C")
	v, ok := s.Get("get_weather:oslo")
	fmt.Println(v, ok)
	s.Delete("get_weather:oslo")
	_, ok = s.Get("get_weather:oslo")
	fmt.Println(ok)
	// Output:
	// 12°C true
	// false
}

// forecast is a value that carries its own expiry, as the Cache's entries
// do.
type forecast struct {
	text      string
	expiresAt int64 // Unix nanoseconds
}

// A Store keeps the expiry in the value: an expired value is never returned.
// (The clock is a fake one, so that the example need not wait.)
func ExampleStore() {
	start := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	var elapsed atomic.Int64
	now := func() time.Time { return start.Add(time.Duration(elapsed.Load())) }

	s, _ := memory.New(memory.Options{Now: now}, func(f forecast) int64 { return f.expiresAt })
	defer s.Close()

	s.Set("get_weather:oslo", forecast{text: "12°C", expiresAt: now().Add(time.Minute).UnixNano()})
	f, ok := s.Get("get_weather:oslo")
	fmt.Println(f.text, ok)
	elapsed.Add(int64(time.Minute))
	_, ok = s.Get("get_weather:oslo")
	fmt.Println(ok)
	// Output:
	// 12°C true
	// false
}

// Compute reads and changes a key in one step: no other write of the key
// comes between. It reports whether it stored a value.
func ExampleStore_Compute() {
	s, _ := memory.New(memory.Options{}, func(int) int64 { return 0 })
	defer s.Close()

	incr := func(old int, found bool) (int, memory.Op) { return old + 1, memory.Write }
	s.Compute("calls:alice", incr)
	stored := s.Compute("calls:alice", incr)
	n, _ := s.Get("calls:alice")
	fmt.Println(n, stored)

	s.Compute("calls:alice", func(old int, found bool) (int, memory.Op) {
		if old >= 2 {
			return 0, memory.Remove
		}
		return old, memory.Keep
	})
	_, ok := s.Get("calls:alice")
	fmt.Println(ok)
	// Output:
	// 2 true
	// false
}
