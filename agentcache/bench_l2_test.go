package agentcache

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// BenchmarkL2Hit measures one key-value lookup answered by L2 (the L1 copy
// dropped before each) against a raw go-redis GET of the same bytes on the
// same client, alone and alternated in one loop (the ratio's metric), and
// the raw GET made on a goroutine of its own, as the cache makes its L2
// reads (in the flight that callers of the key share): the difference
// between the two raw rows is the cost of that hand-off.
func BenchmarkL2Hit(b *testing.B) {
	srv := redistest.Start(b)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	store, err := acredis.New(client, acredis.Options{Prefix: "l2b:"})
	if err != nil {
		b.Fatal(err)
	}
	c, err := New(Options{L2: store})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(context.Background()) })
	ctx := context.Background()
	type product struct {
		ID    int
		Name  string
		Price float64
		Tags  []string
	}
	p := product{ID: 7, Name: "lamp", Price: 19.5, Tags: []string{"home", "light"}}
	if err := c.Set(ctx, "k", p, time.Hour); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); c.Stats().WritesDone == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("the Set never reached L2: %+v", c.Stats())
		}
	}
	rawKey := "l2b:" + (&lookup{r: c.kv, tail: "k", l1: "k"}).l2Key() // the entry's key, as Set wrote it
	load := func(context.Context, string) (product, error) {
		b.Fatal("the lookup went to the loader")
		return product{}, nil
	}
	hit := func() {
		c.l1.Delete("k")
		if v, err := Get(ctx, c, "k", load); err != nil || v.ID != 7 {
			b.Fatalf("Get = %v, %v", v, err)
		}
	}
	raw := func() {
		if _, err := client.Get(ctx, rawKey).Bytes(); err != nil {
			b.Fatal(err)
		}
	}
	// Exactly one round trip per L2 hit (warm: the script is cached).
	trips := &redistest.RoundTrips{}
	client.AddHook(trips.Node(srv.Addr()))
	hit()
	n0 := trips.Len()
	hit()
	if got := trips.Since(n0); len(got) != 1 {
		b.Fatalf("an L2 hit made %d round trips (%v), want 1", len(got), redistest.Commands(got))
	}
	b.Run("agentcache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hit()
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw()
		}
	})
	b.Run("raw-in-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			done := make(chan struct{})
			go func() { raw(); close(done) }()
			<-done
		}
	})
	b.Run("ratio", func(b *testing.B) {
		var ac, rw time.Duration
		for b.Loop() {
			t0 := time.Now()
			hit()
			t1 := time.Now()
			raw()
			ac += t1.Sub(t0)
			rw += time.Since(t1)
		}
		b.ReportMetric(float64(ac)/float64(rw), "agentcache/raw")
	})
}
