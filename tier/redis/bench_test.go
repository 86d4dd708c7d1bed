package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/tier"
)

// The benchmarks compare each store call with the raw go-redis call it makes,
// on the same client, key and bytes, in the same run: compare the store and
// raw lines of one size, and see the ratio sub-benchmark, which alternates
// the two calls so that drifting machine speed affects both alike.

// benchStore returns a single-node client on a private server and a store
// on it with the prefix "bench:".
func benchStore(b *testing.B) (*goredis.Client, *Store) {
	client := singleClient(b, redistest.Start(b))
	s, err := New(client, Options{Prefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	return client, s
}

func BenchmarkGet(b *testing.B) {
	client, s := benchStore(b)
	ctx := context.Background()
	for _, size := range []int{64, 1024, 16 << 10} {
		key := fmt.Sprintf("k%d", size)
		value := make([]byte, size)
		if err := s.Set(ctx, key, value, 0); err != nil {
			b.Fatal(err)
		}
		store := func() {
			v, ok, err := s.Get(ctx, key)
			if err != nil || !ok || len(v) != size {
				b.Fatalf("Get = (%d bytes, %v, %v)", len(v), ok, err)
			}
		}
		rawKey := "bench:" + key
		raw := func() {
			v, err := client.Get(ctx, rawKey).Bytes()
			if err != nil || len(v) != size {
				b.Fatalf("GET = (%d bytes, %v)", len(v), err)
			}
		}
		compare(b, fmt.Sprintf("size=%d", size), store, raw)
	}
}

func BenchmarkGetMulti(b *testing.B) {
	srv := redistest.Start(b)
	client := singleClient(b, srv)
	benchGetMulti(b, client, func(full []string) func() {
		return func() {
			vals, err := client.MGet(context.Background(), full...).Result()
			if err != nil || len(vals) != len(full) || vals[0] == nil {
				b.Fatalf("MGET: %v", err)
			}
		}
	})
}

// BenchmarkGetMultiCluster compares GetMulti on a 3-master cluster with the
// raw pipeline of GETs it sends (MGET across slots is a CROSSSLOT error).
func BenchmarkGetMultiCluster(b *testing.B) {
	c := redistest.StartCluster(b, 3, 0)
	client := clusterClient(b, c)
	benchGetMulti(b, client, func(full []string) func() {
		return func() {
			ctx := context.Background()
			cmds, err := client.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, k := range full {
					p.Get(ctx, k)
				}
				return nil
			})
			if err != nil || len(cmds) != len(full) {
				b.Fatalf("pipeline: %v", err)
			}
		}
	})
}

func benchGetMulti(b *testing.B, client goredis.UniversalClient, rawFor func(full []string) func()) {
	s, err := New(client, Options{Prefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const n = 100
	keys := make([]string, n)
	full := make([]string, n)
	writes := make([]tier.Write, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("{m%d}", i)
		full[i] = "bench:" + keys[i]
		writes[i] = tier.Write{Key: keys[i], Value: make([]byte, 100), TTL: time.Hour}
	}
	if _, err := s.SetMulti(ctx, writes); err != nil {
		b.Fatal(err)
	}
	store := func() {
		got, err := s.GetMulti(ctx, keys)
		if err != nil || len(got) != n || !got[0].Found {
			b.Fatalf("GetMulti: %v", err)
		}
	}
	compare(b, "keys=100", store, rawFor(full))
}

// compare runs store and raw as sibling sub-benchmarks, then alternately in
// one loop, reporting both times and their ratio.
func compare(b *testing.B, name string, store, raw func()) {
	b.Run(name+"/store", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			store()
		}
	})
	b.Run(name+"/raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw()
		}
	})
	b.Run(name+"/ratio", func(b *testing.B) {
		var storeTime, rawTime time.Duration
		for b.Loop() {
			t0 := time.Now()
			store()
			t1 := time.Now()
			raw()
			storeTime += t1.Sub(t0)
			rawTime += time.Since(t1)
		}
		b.ReportMetric(float64(storeTime.Nanoseconds())/float64(b.N), "store-ns/op")
		b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-ns/op")
		b.ReportMetric(float64(storeTime)/float64(rawTime), "store/raw")
	})
}

// BenchmarkReadRecords compares a 100-key ReadRecords without leases (the
// batch path's L2 read) with a raw MGET of the same keys.
func BenchmarkReadRecords(b *testing.B) {
	client, s := benchStore(b)
	ctx := context.Background()
	const n = 100
	ops := make([]tier.ReadOp, n)
	full := make([]string, n)
	for i := range ops {
		ops[i] = tier.ReadOp{Key: fmt.Sprintf("{r%d}", i)}
		full[i] = "bench:" + ops[i].Key
		if err := client.Set(ctx, full[i], make([]byte, 200), time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
	}
	store := func() {
		_, rr, err := s.ReadRecords(ctx, nil, ops)
		if err != nil || len(rr) != n || !rr[0].Found {
			b.Fatalf("ReadRecords: %v", err)
		}
	}
	raw := func() {
		vals, err := client.MGet(ctx, full...).Result()
		if err != nil || len(vals) != n || vals[0] == nil {
			b.Fatalf("MGET: %v", err)
		}
	}
	compare(b, "keys=100", store, raw)
}

// BenchmarkReadRecord compares the L2 read of one lookup (one key, with
// the lease a miss would take; with and without two epoch loads) with a
// raw GET of the same key: the server-side cost of the read script.
func BenchmarkReadRecord(b *testing.B) {
	client, s := benchStore(b)
	ctx := context.Background()
	key := "{r}:k"
	if err := client.Set(ctx, "bench:"+key, make([]byte, 200), time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	ops := []tier.ReadOp{{Key: key, Lease: &tier.Lease{Key: "{r}:lease", Token: "t", TTL: time.Second}}}
	epochs := []tier.EpochOp{{Key: "{r}:e1", Known: 1, TTL: time.Hour}, {Key: "{r}:e2", Known: 1, TTL: time.Hour}}
	raw := func() {
		if v, err := client.Get(ctx, "bench:"+key).Bytes(); err != nil || len(v) != 200 {
			b.Fatalf("GET: %v", err)
		}
	}
	for _, ep := range []int{0, 2} {
		store := func() {
			_, rr, err := s.ReadRecords(ctx, epochs[:ep], ops)
			if err != nil || len(rr) != 1 || !rr[0].Found {
				b.Fatalf("ReadRecords: %v", err)
			}
		}
		compare(b, fmt.Sprintf("epochs=%d", ep), store, raw)
	}
}
