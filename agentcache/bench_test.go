package agentcache

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// These are quick in-module benchmarks with no peer libraries and no Redis.
// The suite that compares agentcache with other libraries, and records the
// figures in BENCHMARKS.md, lives in its own module: cd bench && go run
// ./cmd/benchsuite.

const benchKeys = 1024

func benchKeyNames() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

// benchOtter is a bare otter configured like the Cache's L1: its size bound
// and per-entry expiry.
func benchOtter() *otter.Cache[string, *user] {
	return otter.Must(&otter.Options[string, *user]{
		MaximumSize: defaultL1MaxEntries,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(otter.Entry[string, *user]) time.Duration {
			return time.Hour
		}),
	})
}

// BenchmarkL1Hit compares an L1 hit through Cache with a bare otter lookup
// configured like the Cache's L1 (size bound and per-entry expiry), in the
// same run. The ratio of the two is the figure that matters.
func BenchmarkL1Hit(b *testing.B) {
	keys := benchKeyNames()
	b.Run("otter", func(b *testing.B) {
		o := benchOtter()
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
		load := func(context.Context, string) (*user, error) {
			b.Fatal("miss")
			return nil, nil
		}
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

// benchArgs is a small struct argument, the shape of most typed tools.
type benchArgs struct {
	ID     int    `json:"id"`
	Locale string `json:"locale"`
}

// BenchmarkWrapHit is an L1 hit through the typed tool wrapper with a small
// struct argument, and through the JSON wrapper with the same arguments as
// raw JSON, from one goroutine: ns/op is the latency a tool call pays. The
// otter run is the baseline of the ratio (issue 17's budget: 3×).
func BenchmarkWrapHit(b *testing.B) {
	res := resource.Resource{Name: "get_user", Scope: scope.User, TTL: time.Hour}
	ctx := scope.WithUser(context.Background(), "alice")
	// The baseline: a bare otter lookup of a key as long as the tools'
	// L1 keys, from one goroutine, configured like the Cache's L1.
	b.Run("otter", func(b *testing.B) {
		o := benchOtter()
		defer o.StopAllGoroutines()
		keys := make([]string, benchKeys)
		for i := range keys {
			keys[i] = "\x00get_user@1\x00u:alice\x01" + `{"id":` + strconv.Itoa(i) + `,"locale":"en-US"}`
			o.Set(keys[i], &user{ID: keys[i]})
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, ok := o.GetIfPresent(keys[i&(benchKeys-1)]); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("typed", func(b *testing.B) { benchTypedHits(b, Options{}, ctx) })
	b.Run("json", func(b *testing.B) {
		c, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(context.Background())
		get, err := Wrap(c, res, func(_ context.Context, a json.RawMessage) (json.RawMessage, error) {
			return json.RawMessage(`{"id":"x"}`), nil
		})
		if err != nil {
			b.Fatal(err)
		}
		args := make([]json.RawMessage, benchKeys)
		for i := range args {
			args[i] = json.RawMessage(`{"id": ` + strconv.Itoa(i) + `, "locale": "en-US"}`)
			if _, err := get(ctx, args[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := get(ctx, args[i&(benchKeys-1)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWrapHitTraced is BenchmarkWrapHit/typed with no SDK, and inside
// a recording span of an SDK that samples every span and hands it to a
// no-op exporter through its batch processor (blocking, so no span is
// dropped). The difference is what tracing adds to a lookup.
func BenchmarkWrapHitTraced(b *testing.B) {
	ctx := scope.WithUser(context.Background(), "alice")
	b.Run("no-sdk", func(b *testing.B) { benchTypedHits(b, Options{}, ctx) })
	// recording runs the lookups inside a span of a recording SDK.
	recording := func(b *testing.B, hitEvents bool) {
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithBatcher(tracetest.NewNoopExporter(), sdktrace.WithBlocking()),
		)
		defer func() { _ = tp.Shutdown(context.Background()) }()
		tctx, span := tp.Tracer("bench").Start(ctx, "agent run")
		defer span.End()
		benchTypedHits(b, Options{Telemetry: TelemetryOptions{TracerProvider: tp, L1HitEvents: hitEvents}}, tctx)
	}
	b.Run("recording", func(b *testing.B) { recording(b, false) })
	// The hits' events all land on one span here, past the SDK's 128 per
	// span; bench/ gives them a fresh parent every 32 calls instead.
	b.Run("recording-events", func(b *testing.B) { recording(b, true) })
}

// benchTypedHits measures L1 hits through Wrap with a small struct argument,
// on a cache with options o, calling from ctx (which carries the user).
func benchTypedHits(b *testing.B, o Options, ctx context.Context) {
	c, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	res := resource.Resource{Name: "get_user", Scope: scope.User, TTL: time.Hour}
	get, err := Wrap(c, res, func(_ context.Context, a benchArgs) (*user, error) {
		return &user{ID: strconv.Itoa(a.ID)}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	args := make([]benchArgs, benchKeys)
	for i := range args {
		args[i] = benchArgs{ID: i, Locale: "en-US"}
		if _, err := get(ctx, args[i]); err != nil {
			b.Fatal(err)
		}
	}
	loads := c.Stats().Loads
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := get(ctx, args[i&(benchKeys-1)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if c.Stats().Loads != loads {
		b.Fatal("the tool ran: not every call was an L1 hit")
	}
}

// BenchmarkL1Fill is what filling one L1 entry costs on the L2-hit path
// (an entry made, fenced, stored and its epochs kept), against a bare
// otter Set of the same keys, from one goroutine. The keys cycle through a
// working set that fits the cache, as an L1 with room fills.
func BenchmarkL1Fill(b *testing.B) {
	const n = 1 << 12 // within defaultL1MaxEntries: no evictions
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "\x00get_user@1\x00u:alice\x01" + `{"id":` + strconv.Itoa(i) + `}`
	}
	v := &user{ID: "x"}
	b.Run("otter", func(b *testing.B) {
		o := benchOtter()
		defer o.StopAllGoroutines()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			o.Set(keys[i&(n-1)], v)
		}
	})
	b.Run("agentcache", func(b *testing.B) {
		c, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(context.Background())
		rs, err := c.register(resource.Resource{Name: "get_user", Scope: scope.User, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		lk := rs.lookup(keys[0])
		st := c.stampFor(context.Background(), &lk)
		seq := c.fence.start()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e := &entry{value: v, seal: st.Seal(), expiresAt: time.Now().Add(time.Hour).UnixNano()}
			c.fillL1(keys[i&(n-1)], e, time.Hour, seq)
		}
	})
}
