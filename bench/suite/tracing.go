package suite

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// tracingOverhead: an L1 hit through Wrap with no SDK (the global no-op
// provider, the caller's context untraced) against the same hit inside a
// recording span of an SDK that samples everything. The SDK exports through
// its batch span processor (what production uses), set to block rather than
// drop when its queue is full, to an exporter that only counts spans: every
// span is processed, none is sent anywhere.
func tracingOverhead(ctx context.Context, e *env) error {
	const wl = "tracing_overhead"
	const keys = 512
	exp := &countingExporter{}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(exp, sdktrace.WithBlocking()),
	)
	defer func() { _ = tp.Shutdown(context.Background()) }()

	res := resource.Resource{Name: "get_product", Scope: scope.Global, TTL: time.Hour}
	tool := func(_ context.Context, a ProductArgs) (*Product, error) { return newProduct(a.ID), nil }
	mk := func(o agentcache.Options) (*agentcache.Cache, func(context.Context, ProductArgs) (*Product, error), error) {
		c, err := newCache(o)
		if err != nil {
			return nil, nil, err
		}
		w, err := agentcache.Wrap(c, res, tool)
		if err != nil {
			closeCache(c)
			return nil, nil, err
		}
		for i := 0; i < keys; i++ {
			if _, err := w(ctx, ProductArgs{ID: i, Locale: "en-US"}); err != nil {
				closeCache(c)
				return nil, nil, err
			}
		}
		return c, w, nil
	}
	plain, wPlain, err := mk(agentcache.Options{})
	if err != nil {
		return err
	}
	defer closeCache(plain)
	traced, wTraced, err := mk(agentcache.Options{Telemetry: agentcache.TelemetryOptions{TracerProvider: tp}})
	if err != nil {
		return err
	}
	defer closeCache(traced)
	evented, wEvents, err := mk(agentcache.Options{Telemetry: agentcache.TelemetryOptions{TracerProvider: tp, L1HitEvents: true}})
	if err != nil {
		return err
	}
	defer closeCache(evented)
	tctx, run := tp.Tracer("bench").Start(ctx, "agent run")
	defer run.End()
	args := make([]ProductArgs, keys)
	for i := range args {
		args[i] = ProductArgs{ID: i, Locale: "en-US"}
	}
	var be benchErr
	loop := func(ctx context.Context, w func(context.Context, ProductArgs) (*Product, error)) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := w(ctx, args[i%keys]); err != nil {
					be.fail(b, err)
				}
			}
		}
	}
	// With L1HitEvents each hit adds an event to the caller's span. An agent
	// step's span holds a handful; the SDK keeps 128 per span and shifts
	// the rest out one by one, so the loop gives the hits a fresh parent
	// every 32 calls (a span's cost spread over 32 lookups).
	loopFresh := func(w func(context.Context, ProductArgs) (*Product, error)) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			var step trace.Span
			var sctx context.Context
			for i := 0; i < b.N; i++ {
				if i%32 == 0 {
					if step != nil {
						step.End()
					}
					sctx, step = tp.Tracer("bench").Start(ctx, "agent step")
				}
				if _, err := w(sctx, args[i%keys]); err != nil {
					be.fail(b, err)
				}
			}
			if step != nil {
				step.End()
			}
		}
	}
	// The SDK's own floor: one span with the attributes a lookup span
	// carries, started, annotated and ended, nothing else.
	tracer := tp.Tracer("bench")
	spanOnly := func(b *testing.B) {
		start := trace.WithAttributes(attribute.String("agentcache.resource", "get_product"), attribute.String("agentcache.scope", "global"))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_, s := tracer.Start(tctx, "agentcache.lookup get_product", start)
			s.SetAttributes(attribute.String("agentcache.tier", "l1"), attribute.Bool("cache.hit", true), attribute.Bool("agentcache.stale", false))
			s.End()
		}
	}
	const sysPlain, sysTraced, sysSpan = "agentcache Wrap, no SDK", "agentcache Wrap, recording SDK", "OTel SDK span alone (5 attributes)"
	const sysEvents = "agentcache Wrap, recording SDK, L1HitEvents"
	before := plain.Stats().L1Hits + traced.Stats().L1Hits + evented.Stats().L1Hits
	m, err := e.compare(wl, &be, []candidate{
		{sysPlain, loop(ctx, wPlain)},
		{sysTraced, loop(tctx, wTraced)},
		{sysEvents, loopFresh(wEvents)},
		{sysSpan, spanOnly},
	})
	if err != nil {
		return err
	}
	if plain.Stats().Misses+traced.Stats().Misses+evented.Stats().Misses > 3*keys || plain.Stats().L1Hits+traced.Stats().L1Hits+evented.Stats().L1Hits == before {
		e.note("%s: lookups were not all L1 hits", wl)
	}
	_ = tp.ForceFlush(ctx)
	if exp.spans.Load() == 0 {
		e.note("%s: the SDK exported no spans: the traced lookups were not traced", wl)
	}
	p, t := m[sysPlain], m[sysTraced]
	e.versus(wl, sysTraced, MetricNsPerOp, t.nsPerOp, sysPlain, p.nsPerOp, nil, "one goroutine; one lookup span per call")
	e.absolute(wl, "added by a recording span", MetricNsPerOp, t.nsPerOp-p.nsPerOp, atMost(1500, "≤ 1.5 µs"),
		fmt.Sprintf("%.0f more allocs, %.0f more bytes per lookup", t.allocsPerOp-p.allocsPerOp, t.bytesPerOp-p.bytesPerOp))
	sp := m[sysSpan]
	e.versus(wl, "added by a recording span", MetricNsPerOp, t.nsPerOp-p.nsPerOp, sysSpan, sp.nsPerOp, nil,
		"what agentcache adds over the SDK's own cost of one span")
	ev := m[sysEvents]
	e.absolute(wl, "added by a hit event (L1HitEvents)", MetricNsPerOp, ev.nsPerOp-p.nsPerOp, atMost(1500, "≤ 1.5 µs"),
		fmt.Sprintf("%.0f more allocs, %.0f more bytes per lookup; the hit is an event on the caller's span, which is renewed every 32 calls", ev.allocsPerOp-p.allocsPerOp, ev.bytesPerOp-p.bytesPerOp))
	e.figure(wl, sysPlain, MetricAllocsPerOp, p.allocsPerOp, "")
	e.figure(wl, sysTraced, MetricAllocsPerOp, t.allocsPerOp, "")
	e.figure(wl, sysSpan, MetricAllocsPerOp, sp.allocsPerOp, "")
	return nil
}

// countingExporter is a span exporter that counts what it is given.
type countingExporter struct{ spans atomic.Int64 }

// ExportSpans implements sdktrace.SpanExporter.
func (c *countingExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	c.spans.Add(int64(len(spans)))
	return nil
}

// Shutdown implements sdktrace.SpanExporter.
func (c *countingExporter) Shutdown(context.Context) error { return nil }
