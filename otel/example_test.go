package otel_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/resource"
)

// A cache given an SDK's providers makes a span per lookup, whose
// agentcache.tier attribute says which tier answered, and counts lookups in
// the agentcache.lookups metric. Here the SDK records into memory: an
// in-memory span exporter and a metric reader collected by hand.
func Example() {
	ctx := context.Background()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	c, _ := agentcache.New(agentcache.Options{Telemetry: agentcache.TelemetryOptions{
		TracerProvider: tp, MeterProvider: mp,
		RootSpans: true, // a span per lookup even without a parent span in ctx
	}})
	defer c.Close(ctx)
	weather, _ := agentcache.Wrap(c, resource.Resource{Name: "get_weather", TTL: time.Hour},
		func(ctx context.Context, city string) (string, error) { return "12°C in " + city, nil })
	weather(ctx, "Oslo") // runs the tool
	weather(ctx, "Oslo") // answered by L1

	// Spans end child first: the tool's run, then the lookups.
	for _, s := range spans.GetSpans() {
		line := s.Name
		for _, kv := range s.Attributes {
			if kv.Key == otel.KeyTier || kv.Key == otel.KeyGenAIOperation {
				line += fmt.Sprintf(" %s=%s", kv.Key, kv.Value.Emit())
			}
		}
		fmt.Println(line)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		panic(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otel.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name != otel.MetricLookups {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				tier, _ := dp.Attributes.Value(otel.KeyTier)
				outcome, _ := dp.Attributes.Value(otel.KeyOutcome)
				lines = append(lines, fmt.Sprintf("%s{tier=%s,outcome=%s} %d", m.Name, tier.Emit(), outcome.Emit(), dp.Value))
			}
		}
	}
	slices.Sort(lines)
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// execute_tool get_weather gen_ai.operation.name=execute_tool
	// agentcache.lookup get_weather agentcache.tier=loader
	// agentcache.lookup get_weather agentcache.tier=l1
	// agentcache.lookups{tier=l1,outcome=hit} 1
	// agentcache.lookups{tier=loader,outcome=miss} 1
}
