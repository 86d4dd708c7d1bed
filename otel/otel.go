// Package otel holds agentcache's OpenTelemetry wiring: the instrumentation
// scope, the span names and attribute keys, the metric instruments and the
// tracer and meter they come from. The per-run summaries for agents are
// package run's.
//
// agentcache uses the OpenTelemetry API only; installing an SDK is the
// application's choice. With no SDK (the global no-op providers), an L1 hit
// records nothing and allocates nothing.
//
// # Spans
//
// A lookup is a span named "agentcache.lookup {resource}" when the caller's
// context carries a recording span (or Options.Telemetry.RootSpans is set). Its
// attributes say which tier answered (agentcache.tier: l1, l2, negative or
// loader), whether the entry was stale, the resource, the scope kind and
// cache.hit. An L2 round trip is a child span "agentcache.l2 {op}"; a run of
// the real tool is a child span "execute_tool {tool}" with the OpenTelemetry
// GenAI attributes (gen_ai.operation.name = execute_tool, gen_ai.tool.name,
// gen_ai.tool.call.id when known, error.type on failure). A miss or a "not
// found" is not a span error; a loader error is.
//
// # Privacy
//
// Tool arguments, results, keys and scope IDs never appear in spans or
// metric labels unless the cache's options turn them on, and then scope IDs
// are hashed by default. Metric labels take small fixed sets of values.
package otel

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope name of every span and metric.
const ScopeName = "github.com/agentcache/agentcache-go"

// Version is the library version reported with the instrumentation scope.
const Version = "0.1.0"

// Tiers, the values of KeyTier.
const (
	TierL1       = "l1"
	TierL2       = "l2"
	TierNegative = "negative"
	TierLoader   = "loader"
)

// Attribute keys.
const (
	KeyTier      = attribute.Key("agentcache.tier")
	KeyResource  = attribute.Key("agentcache.resource")
	KeyScopeKind = attribute.Key("agentcache.scope")
	KeyStale     = attribute.Key("agentcache.stale")
	KeyOutcome   = attribute.Key("agentcache.outcome")
	KeyCache     = attribute.Key("agentcache.cache")
	KeyKind      = attribute.Key("agentcache.invalidation.kind")
	KeyOp        = attribute.Key("agentcache.l2.op")
	KeyScopeID   = attribute.Key("agentcache.scope.id")  // only with Options.Telemetry.RecordScopeIDs
	KeyArgsHash  = attribute.Key("agentcache.args.hash") // only with Options.Telemetry.RecordArgs
	// KeyHit is the cache.hit attribute: true when a tier answered without
	// the tool.
	KeyHit = attribute.Key("cache.hit")

	// OpenTelemetry GenAI semantic conventions for tool execution.
	KeyGenAIOperation  = attribute.Key("gen_ai.operation.name")
	KeyGenAIToolName   = attribute.Key("gen_ai.tool.name")
	KeyGenAIToolCallID = attribute.Key("gen_ai.tool.call.id")
	KeyErrorType       = attribute.Key("error.type")
)

// Outcomes, the values of KeyOutcome.
const (
	OutcomeHit      = "hit"
	OutcomeMiss     = "miss"
	OutcomeNotFound = "not_found"
	OutcomeError    = "error"
)

// Span names.
const (
	SpanLookup    = "agentcache.lookup" // + " " + resource
	SpanL2        = "agentcache.l2"     // + " " + operation
	SpanTool      = "execute_tool"      // + " " + tool name (GenAI)
	OpExecuteTool = "execute_tool"
)

// Metric names.
const (
	MetricLookups         = "agentcache.lookups"
	MetricLookupDuration  = "agentcache.lookup.duration"
	MetricLoaderDuration  = "agentcache.loader.duration"
	MetricTimeSaved       = "agentcache.time_saved"
	MetricL1Entries       = "agentcache.l1.entries"
	MetricWriteQueueDepth = "agentcache.write_queue.depth"
	MetricBreakerState    = "agentcache.breaker.state"
	MetricInvalidations   = "agentcache.invalidations"
)

// Tracer returns the library's tracer from tp, or from the global provider
// when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version))
}

// Meter returns the library's meter from mp, or from the global provider
// when mp is nil.
func Meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
}

// Instruments are the library's synchronous metric instruments.
type Instruments struct {
	// Lookups counts lookups by resource, tier and outcome.
	Lookups metric.Int64Counter
	// LookupDuration is the latency of a lookup, by resource and tier, in
	// seconds.
	LookupDuration metric.Float64Histogram
	// LoaderDuration is the duration of tool runs by resource and outcome,
	// in seconds.
	LoaderDuration metric.Float64Histogram
	// TimeSaved estimates the tool time a hit saved, by resource and tier,
	// in seconds: the resource's observed mean tool duration less the
	// lookup's own latency.
	TimeSaved metric.Float64Counter
	// Invalidations counts invalidations by kind.
	Invalidations metric.Int64Counter
}

// NewInstruments creates the instruments on m.
func NewInstruments(m metric.Meter) (*Instruments, error) {
	var in Instruments
	var err error
	if in.Lookups, err = m.Int64Counter(MetricLookups,
		metric.WithDescription("Cache lookups by resource, answering tier and outcome."),
		metric.WithUnit("{lookup}")); err != nil {
		return nil, err
	}
	buckets := metric.WithExplicitBucketBoundaries(
		0.000001, 0.000005, 0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30)
	if in.LookupDuration, err = m.Float64Histogram(MetricLookupDuration,
		metric.WithDescription("Latency of cache lookups by answering tier."),
		metric.WithUnit("s"), buckets); err != nil {
		return nil, err
	}
	if in.LoaderDuration, err = m.Float64Histogram(MetricLoaderDuration,
		metric.WithDescription("Duration of tool (loader) runs."),
		metric.WithUnit("s"), buckets); err != nil {
		return nil, err
	}
	if in.TimeSaved, err = m.Float64Counter(MetricTimeSaved,
		metric.WithDescription("Estimated tool time saved by cache hits."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if in.Invalidations, err = m.Int64Counter(MetricInvalidations,
		metric.WithDescription("Invalidations by kind."),
		metric.WithUnit("{invalidation}")); err != nil {
		return nil, err
	}
	return &in, nil
}

type callIDKey struct{}

// WithToolCallID returns a context that carries the agent framework's ID
// for the current tool call; the cache puts it on the execute_tool span as
// gen_ai.tool.call.id.
func WithToolCallID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callIDKey{}, id)
}

// ToolCallIDFrom returns the tool call ID in ctx, or "".
func ToolCallIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(callIDKey{}).(string)
	return id
}
