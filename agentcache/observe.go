package agentcache

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	acotel "github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/run"
)

// tierIdx indexes the answering tier of a lookup.
type tierIdx uint8

const (
	tierL1 tierIdx = iota
	tierL2
	tierNegative
	tierLoader
	numTiers
)

var tierNames = [numTiers]string{acotel.TierL1, acotel.TierL2, acotel.TierNegative, acotel.TierLoader}

// outcome indexes how a lookup ended.
type outcome uint8

const (
	outHit outcome = iota
	outMiss
	outNotFound
	outError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{acotel.OutcomeHit, acotel.OutcomeMiss, acotel.OutcomeNotFound, acotel.OutcomeError}

// observer is the cache's tracing and metrics wiring.
type observer struct {
	tracer trace.Tracer
	// idleGlobal, if not nil, is the global tracer provider that tracer
	// came from, still OpenTelemetry's default (no SDK installed): while the
	// global provider is that one, no span of this cache can record.
	idleGlobal trace.TracerProvider
	inst       *acotel.Instruments
	rootSpans  bool
	hitEvents  bool
	recordIDs  bool
	recordArgs bool
	cacheAttr  attribute.KeyValue
	reg        metric.Registration
	invOpts    map[string][]metric.AddOption
	// scopeMACs holds HMAC-SHA256 hashes keyed for the scope IDs of
	// RecordScopeIDs (see scopeIDKey).
	scopeMACs sync.Pool
}

// resObs is a resource's precomputed telemetry: attribute sets are built
// once so that recording a lookup allocates nothing for them.
type resObs struct {
	name      string // resource name, or "kv" for the key-value API
	scopeKind string
	spanName  string
	toolSpan  string
	spanAttrs []attribute.KeyValue
	// l1Attrs is spanAttrs with the attributes of a fresh L1 hit, for
	// the span of such a hit, created once the hit is known.
	l1Attrs    []attribute.KeyValue
	l1Event    []trace.EventOption // l1Attrs, for the event of an L1 hit
	lookupOpts [numTiers][numOutcomes][]metric.AddOption
	tierOpts   [numTiers][]metric.RecordOption
	savedOpts  [numTiers][]metric.AddOption
	loadOpts   [numOutcomes][]metric.RecordOption
	meanLoadNs atomic.Int64 // moving average of tool run time, for time saved
}

func newObserver(c *Cache) (*observer, error) {
	o := &observer{
		tracer:     acotel.Tracer(c.opts.Telemetry.TracerProvider),
		rootSpans:  c.opts.Telemetry.RootSpans,
		hitEvents:  c.opts.Telemetry.L1HitEvents,
		recordIDs:  c.opts.Telemetry.RecordScopeIDs,
		recordArgs: c.opts.Telemetry.RecordArgs,
		cacheAttr:  acotel.KeyCache.String(c.opts.Telemetry.Name),
	}
	if o.recordIDs {
		key := scopeIDKey(c.opts.Secret)
		o.scopeMACs.New = func() any { return hmac.New(sha256.New, key) }
	}
	if c.opts.Telemetry.TracerProvider == nil {
		if tp := otel.GetTracerProvider(); isDefaultGlobal(tp) {
			o.idleGlobal = tp
		}
	}
	m := acotel.Meter(c.opts.Telemetry.MeterProvider)
	var err error
	if o.inst, err = acotel.NewInstruments(m); err != nil {
		return nil, err
	}
	o.invOpts = map[string][]metric.AddOption{}
	for _, k := range []string{"all", "resource", "scope", "resource_scope", "call", "delete", "clear"} {
		o.invOpts[k] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(o.cacheAttr, acotel.KeyKind.String(k)))}
	}
	l1, err := m.Int64ObservableGauge(acotel.MetricL1Entries, metric.WithDescription("Entries in L1."), metric.WithUnit("{entry}"))
	if err != nil {
		return nil, err
	}
	depth, err := m.Int64ObservableGauge(acotel.MetricWriteQueueDepth, metric.WithDescription("L2 writes waiting in the write-behind queue."), metric.WithUnit("{write}"))
	if err != nil {
		return nil, err
	}
	state, err := m.Int64ObservableGauge(acotel.MetricBreakerState, metric.WithDescription("L2 circuit breaker: 0 closed, 1 open, 2 half-open."))
	if err != nil {
		return nil, err
	}
	opt := metric.WithAttributeSet(attribute.NewSet(o.cacheAttr))
	o.reg, err = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		ob.ObserveInt64(l1, int64(c.l1.Len()), opt)
		ob.ObserveInt64(depth, int64(c.w.depth()), opt)
		ob.ObserveInt64(state, int64(c.brk.State()), opt)
		return nil
	}, l1, depth, state)
	return o, err
}

func (o *observer) close() {
	if o.reg != nil {
		_ = o.reg.Unregister()
	}
}

func (o *observer) newResObs(name, scopeKind string) *resObs {
	r := &resObs{name: name, scopeKind: scopeKind,
		spanName: acotel.SpanLookup + " " + name, toolSpan: acotel.SpanTool + " " + name}
	r.spanAttrs = []attribute.KeyValue{acotel.KeyResource.String(name), acotel.KeyScopeKind.String(scopeKind)}
	r.l1Attrs = append(slices.Clip(r.spanAttrs), lookupAttrs(tierL1, true, false)...)
	r.l1Event = []trace.EventOption{trace.WithAttributes(r.l1Attrs...)}
	res := acotel.KeyResource.String(name)
	for t := tierIdx(0); t < numTiers; t++ {
		tk := acotel.KeyTier.String(tierNames[t])
		for oc := outcome(0); oc < numOutcomes; oc++ {
			set := attribute.NewSet(o.cacheAttr, res, tk, acotel.KeyOutcome.String(outcomeNames[oc]))
			r.lookupOpts[t][oc] = []metric.AddOption{metric.WithAttributeSet(set)}
		}
		set := attribute.NewSet(o.cacheAttr, res, tk)
		r.tierOpts[t] = []metric.RecordOption{metric.WithAttributeSet(set)}
		r.savedOpts[t] = []metric.AddOption{metric.WithAttributeSet(set)}
	}
	for oc := outcome(0); oc < numOutcomes; oc++ {
		r.loadOpts[oc] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(o.cacheAttr, res, acotel.KeyOutcome.String(outcomeNames[oc])))}
	}
	return r
}

// active reports whether anything would record this lookup: a recording
// parent span (or root spans), enabled metrics, or a Run in ctx. When
// nothing does, the lookup takes the uninstrumented path.
func (o *observer) active(ctx context.Context) bool {
	return o.tracing(ctx) || o.inst.Lookups.Enabled(ctx) || run.From(ctx) != nil
}

// tracing reports whether a lookup in ctx is traced: root spans, or a
// recording span in ctx and a tracer that can record. While the tracer is
// the global one and no SDK has been installed, the context is not even
// looked at (a deep context makes that walk the dearest part of a hit).
func (o *observer) tracing(ctx context.Context) bool {
	if o.rootSpans {
		return true
	}
	if o.idleGlobal != nil && otel.GetTracerProvider() == o.idleGlobal {
		return false
	}
	return trace.SpanFromContext(ctx).IsRecording()
}

// isDefaultGlobal reports whether tp is OpenTelemetry's default global
// tracer provider, which records nothing until an SDK is installed with
// otel.SetTracerProvider (from then on the global provider is that SDK).
// The type is unexported, so it is recognised by its package; should
// OpenTelemetry rename it, this reports false and every lookup looks at its
// context again, as before the shortcut: slower, never wrong.
func isDefaultGlobal(tp trace.TracerProvider) bool {
	t := reflect.TypeOf(tp)
	return t != nil && t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global"
}

// obsLookup carries one observed lookup's findings.
type obsLookup struct {
	tier    tierIdx
	stale   bool
	cost    time.Duration // the tool run that produced the answer (0: unknown)
	scopeID string        // for RecordScopeIDs
	argHash string        // for RecordArgs
}

// observe runs an instrumented lookup: a span when tracing, the metrics,
// and the run.Run in ctx.
//
// fast, when not nil, tries a fresh L1 hit first: such a hit has no child
// spans, so its span is created after the fact (with the lookup's start
// time and every attribute at once), which costs the SDK less than a span
// started before the lookup and given its outcome at the end.
func observe[T any](ctx context.Context, c *Cache, ro *resObs, o *obsLookup, fast func(o *obsLookup) (T, bool), lookup func(ctx context.Context, o *obsLookup) (T, error)) (T, error) {
	ob := c.obs
	start := time.Now()
	tracing := ob.tracing(ctx)
	if fast != nil {
		if v, ok := fast(o); ok {
			lat := time.Since(start)
			if tracing {
				traceL1Hit(ctx, ob, ro, o, start)
			}
			recordLookup(ctx, ob, ro, o, lat, outHit)
			return v, nil
		}
	}
	var span trace.Span
	if tracing {
		ctx, span = ob.tracer.Start(ctx, ro.spanName, trace.WithAttributes(ro.spanAttrs...), trace.WithSpanKind(trace.SpanKindInternal))
	}
	v, err := lookup(ctx, o)
	lat := time.Since(start)
	oc := outHit
	switch {
	case err == nil && o.tier == tierLoader:
		oc = outMiss
	case errors.Is(err, ErrNotFound):
		oc = outNotFound
	case err != nil:
		oc = outError
	}
	if span != nil {
		span.SetAttributes(lookupAttrs(o.tier, o.tier != tierLoader && oc != outError, o.stale)...)
		if extra := idAttrs(ob, o); len(extra) > 0 {
			span.SetAttributes(extra...)
		}
		if oc == outError {
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(acotel.KeyErrorType.String(errorType(err)))
		}
		span.End()
	}
	recordLookup(ctx, ob, ro, o, lat, oc)
	return v, err
}

// traceL1Hit records a fresh L1 hit that started at start: an event on the
// caller's span with Options.Telemetry.L1HitEvents, a span otherwise, made after the
// fact with every attribute at once.
func traceL1Hit(ctx context.Context, ob *observer, ro *resObs, o *obsLookup, start time.Time) {
	attrs, event := ro.l1Attrs, ro.l1Event
	if extra := idAttrs(ob, o); len(extra) > 0 {
		attrs = append(slices.Clip(attrs), extra...)
		event = []trace.EventOption{trace.WithAttributes(attrs...)}
	}
	if parent := trace.SpanFromContext(ctx); ob.hitEvents && parent.IsRecording() {
		// An L1 hit takes microseconds: the event's own time (now) is its
		// time.
		parent.AddEvent(ro.spanName, event...)
		return
	}
	_, span := ob.tracer.Start(ctx, ro.spanName, trace.WithTimestamp(start),
		trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	span.End()
}

// lookupAttrs are the span attributes of a lookup's outcome.
func lookupAttrs(t tierIdx, hit, stale bool) []attribute.KeyValue {
	return []attribute.KeyValue{
		acotel.KeyTier.String(tierNames[t]),
		acotel.KeyHit.Bool(hit),
		acotel.KeyStale.Bool(stale),
	}
}

// scopeIDKey is the key of the scope-ID hashes of RecordScopeIDs: one
// derived from secret, the application's (HMAC-SHA256 of a fixed label
// keyed by it, so the hashes share no key with anything else), or, without
// one, 32 random bytes: then no instance's hashes match another's.
func scopeIDKey(secret []byte) []byte {
	if len(secret) == 0 {
		key := make([]byte, 32)
		rand.Read(key) // never fails: it would crash the program first
		return key
	}
	m := hmac.New(sha256.New, secret)
	io.WriteString(m, "agentcache scope id")
	return m.Sum(nil)
}

// scopeIDHash is the agentcache.scope.id attribute of scope ID id: the
// first 16 bytes of its HMAC-SHA256 under scopeIDKey, in hex.
func (ob *observer) scopeIDHash(id string) string {
	m := ob.scopeMACs.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, id)
	var sum [sha256.Size]byte
	h := hex.EncodeToString(m.Sum(sum[:0])[:16])
	ob.scopeMACs.Put(m)
	return h
}

// idAttrs are the span attributes that identify a lookup's scope and
// arguments, when the options turn them on; nil otherwise.
func idAttrs(ob *observer, o *obsLookup) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if ob.recordIDs && o.scopeID != "" {
		attrs = append(attrs, acotel.KeyScopeID.String(ob.scopeIDHash(o.scopeID)))
	}
	if ob.recordArgs && o.argHash != "" {
		attrs = append(attrs, acotel.KeyArgsHash.String(o.argHash))
	}
	return attrs
}

// recordLookup records a finished lookup's metrics and adds it to the Run
// in ctx. A hit saves what the tool took to produce the answer (recorded
// with the entry, whichever instance ran it), or the resource's average
// run when that is unknown, less the lookup's own time.
func recordLookup(ctx context.Context, ob *observer, ro *resObs, o *obsLookup, lat time.Duration, oc outcome) {
	var saved, toolTime time.Duration
	if o.tier == tierLoader {
		toolTime = o.cost
	} else if oc != outError {
		cost := o.cost
		if cost <= 0 {
			cost = time.Duration(ro.meanLoadNs.Load())
		}
		saved = max(cost-lat, 0)
	}
	if ob.inst.Lookups.Enabled(ctx) {
		ob.inst.Lookups.Add(ctx, 1, ro.lookupOpts[o.tier][oc]...)
		ob.inst.LookupDuration.Record(ctx, lat.Seconds(), ro.tierOpts[o.tier]...)
		if saved > 0 {
			ob.inst.TimeSaved.Add(ctx, saved.Seconds(), ro.savedOpts[o.tier]...)
		}
	}
	if r := run.From(ctx); r != nil {
		r.Record(run.Call{Resource: ro.name, Tier: tierNames[o.tier], Latency: lat, Saved: saved, ToolTime: toolTime, Failed: oc == outError})
	}
}

// runTool runs the real tool for a load, timing it for the time-saved
// estimate and, under a recording span, as a GenAI execute_tool span.
func runTool[T any](ctx context.Context, c *Cache, ro *resObs, load func(ctx context.Context) (T, error)) (v T, d time.Duration, err error) {
	var span trace.Span
	if trace.SpanFromContext(ctx).IsRecording() {
		attrs := []attribute.KeyValue{
			acotel.KeyGenAIOperation.String(acotel.OpExecuteTool),
			acotel.KeyGenAIToolName.String(ro.name),
		}
		if id := acotel.ToolCallIDFrom(ctx); id != "" {
			attrs = append(attrs, acotel.KeyGenAIToolCallID.String(id))
		}
		ctx, span = c.obs.tracer.Start(ctx, ro.toolSpan, trace.WithAttributes(attrs...))
	}
	start := time.Now()
	ok := false
	defer func() {
		d = time.Since(start)
		oc := outMiss
		switch {
		case !ok:
			oc = outError
		case errors.Is(err, ErrNotFound):
			oc = outNotFound
		case err != nil:
			oc = outError
		}
		if oc != outError {
			ro.learn(d)
		}
		if c.obs.inst.LoaderDuration.Enabled(ctx) {
			c.obs.inst.LoaderDuration.Record(ctx, d.Seconds(), ro.loadOpts[oc]...)
		}
		if span != nil {
			if oc == outError {
				msg := "tool panicked"
				if err != nil {
					msg = err.Error()
				}
				span.SetStatus(codes.Error, msg)
				span.SetAttributes(acotel.KeyErrorType.String(errorType(err)))
			}
			span.End()
		}
	}()
	defer func() {
		// Runs first: the panic becomes the load's error (one line for the
		// caller, the stack kept), and the deferred accounting above sees
		// it as a failed run.
		if r := recover(); r != nil {
			var zero T
			v, err = zero, &PanicError{Resource: ro.name, Value: r, Stack: debug.Stack()}
		}
	}()
	v, err = load(ctx)
	ok = true
	return v, time.Since(start), err
}

// learn folds a tool run's duration into the resource's moving average.
func (r *resObs) learn(d time.Duration) {
	for {
		old := r.meanLoadNs.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if r.meanLoadNs.CompareAndSwap(old, next) {
			return
		}
	}
}

// errorType is the error.type attribute: low-cardinality names for the
// errors the cache knows, else the error's Go type.
func errorType(err error) string {
	var pe *PanicError
	switch {
	case err == nil || errors.As(err, &pe):
		return "panic"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return fmt.Sprintf("%T", err)
}

// l2Span starts a child span for an L2 round trip when ctx is traced.
func (c *Cache) l2Span(ctx context.Context, op string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return c.obs.tracer.Start(ctx, acotel.SpanL2+" "+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(acotel.KeyOp.String(op), acotel.KeyTier.String(acotel.TierL2)))
}
