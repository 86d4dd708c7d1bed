package agentcache

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"
)

const benchKeys = 1024

func benchKeyNames() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkL1Hit compares an L1 hit through Cache with a bare otter lookup
// configured like the Cache's L1 (size bound and per-entry expiry), in the
// same run. The ratio of the two is the figure that matters.
func BenchmarkL1Hit(b *testing.B) {
	keys := benchKeyNames()
	b.Run("otter", func(b *testing.B) {
		o := otter.Must(&otter.Options[string, *user]{
			MaximumSize: DefaultL1MaxEntries,
			ExpiryCalculator: otter.ExpiryWritingFunc(func(otter.Entry[string, *user]) time.Duration {
				return time.Hour
			}),
		})
		defer o.StopAllGoroutines()
		for _, k := range keys {
			o.Set(k, &user{ID: k})
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := o.GetIfPresent(keys[i&(benchKeys-1)]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
	})
	b.Run("agentcache", func(b *testing.B) {
		c, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(context.Background())
		ctx := context.Background()
		for _, k := range keys {
			c.Set(ctx, k, &user{ID: k}, time.Hour)
		}
		load := LoaderFunc[*user](func(context.Context, string) (*user, error) {
			b.Fatal("miss")
			return nil, nil
		})
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := Get(ctx, c, keys[i&(benchKeys-1)], load); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
}
