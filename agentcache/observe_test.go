package agentcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	acotel "github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/run"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier/fake"
)

type telemetry struct {
	tp     *sdktrace.TracerProvider
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		tel.tp.Shutdown(context.Background())
		tel.mp.Shutdown(context.Background())
	})
	return tel
}

// lookups returns the agentcache.lookups points as "tier/outcome" → count
// for one resource.
func (tel *telemetry) lookups(t *testing.T, res string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != acotel.ScopeName || sm.Scope.Version != acotel.Version {
			t.Fatalf("instrumentation scope = %+v", sm.Scope)
		}
		for _, m := range sm.Metrics {
			if m.Name != acotel.MetricLookups {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if r, _ := dp.Attributes.Value(acotel.KeyResource); r.AsString() != res {
					continue
				}
				tr, _ := dp.Attributes.Value(acotel.KeyTier)
				oc, _ := dp.Attributes.Value(acotel.KeyOutcome)
				out[tr.AsString()+"/"+oc.AsString()] += dp.Value
			}
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// spansOf returns the ended spans with name, oldest first.
func (tel *telemetry) spansOf(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.GetSpans().Snapshots() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func TestTelemetryPerTier(t *testing.T) {
	tel := newTelemetry(t)
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	newCache := func() *Cache {
		return newL1(t, Options{L2: backend.Remote("tel:"), Telemetry: TelemetryOptions{TracerProvider: tel.tp, MeterProvider: tel.mp}})
	}
	a, b := newCache(), newCache()
	order := resource.Resource{Name: "get_order", Scope: scope.User, TTL: time.Minute}
	tool := func(ctx context.Context, id string) (string, error) {
		switch id {
		case "missing":
			return "", ErrNotFound
		case "broken":
			return "", errors.New("upstream 502")
		}
		time.Sleep(2 * time.Millisecond)
		return "order " + id, nil
	}
	getA, _ := Wrap(a, order, tool)
	getB, _ := Wrap(b, order, tool)

	ctx := scope.WithUser(context.Background(), "alice-secret-id")
	ctx, parent := tel.tp.Tracer("test").Start(ctx, "agent run")

	getA(ctx, "o-1") // loader
	getA(ctx, "o-1") // l1
	wait.For(t, 5*time.Second, "a's L2 write", func() bool { return a.Stats().WritesDone == 1 })
	getB(ctx, "o-1")     // l2
	getA(ctx, "missing") // loader, not found
	getA(ctx, "missing") // negative
	getA(ctx, "broken")  // loader error
	parent.End()

	lookups := tel.spansOf(acotel.SpanLookup + " get_order")
	wantTiers := []string{"loader", "l1", "l2", "loader", "negative", "loader"}
	if len(lookups) != len(wantTiers) {
		t.Fatalf("%d lookup spans, want %d", len(lookups), len(wantTiers))
	}
	for i, s := range lookups {
		tierV, _ := attr(s, acotel.KeyTier)
		hit, _ := attr(s, acotel.KeyHit)
		if tierV.AsString() != wantTiers[i] {
			t.Errorf("lookup %d: tier %q, want %q", i, tierV.AsString(), wantTiers[i])
		}
		if wantHit := wantTiers[i] != "loader"; hit.AsBool() != wantHit {
			t.Errorf("lookup %d: cache.hit %v, want %v", i, hit.AsBool(), wantHit)
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("lookup %d is not a child of the agent's span", i)
		}
		if res, _ := attr(s, acotel.KeyResource); res.AsString() != "get_order" {
			t.Errorf("lookup %d: resource %q", i, res.AsString())
		}
		if sk, _ := attr(s, acotel.KeyScopeKind); sk.AsString() != "user" {
			t.Errorf("lookup %d: scope kind %q", i, sk.AsString())
		}
		// A miss or a not-found is not an error; only the broken tool is.
		if failed := s.Status().Code == codes.Error; failed != (i == 5) {
			t.Errorf("lookup %d: status %v", i, s.Status())
		}
	}

	tools := tel.spansOf("execute_tool get_order")
	if len(tools) != 3 {
		t.Fatalf("%d execute_tool spans, want 3", len(tools))
	}
	for i, s := range tools {
		if s.Parent().SpanID() != lookups[[]int{0, 3, 5}[i]].SpanContext().SpanID() {
			t.Errorf("execute_tool %d is not a child of its lookup", i)
		}
		op, _ := attr(s, acotel.KeyGenAIOperation)
		name, _ := attr(s, acotel.KeyGenAIToolName)
		if op.AsString() != "execute_tool" || name.AsString() != "get_order" {
			t.Errorf("execute_tool %d: gen_ai attributes %v, %v", i, op, name)
		}
	}
	if tools[2].Status().Code != codes.Error {
		t.Error("a failing tool did not mark its span failed")
	}
	if et, ok := attr(tools[2], acotel.KeyErrorType); !ok || et.AsString() == "" {
		t.Error("failing tool span has no error.type")
	}
	if tools[1].Status().Code == codes.Error {
		t.Error("a not-found tool answer marked its span failed")
	}
	// The L2 read of instance b is a child of b's lookup.
	var l2Child bool
	for _, s := range tel.spansOf(acotel.SpanL2 + " read") {
		if s.Parent().SpanID() == lookups[2].SpanContext().SpanID() {
			l2Child = true
		}
	}
	if !l2Child {
		t.Error("no L2 read span under the L2-tier lookup")
	}

	// Privacy: neither the user ID nor the arguments appear anywhere.
	for _, s := range tel.spans.GetSpans().Snapshots() {
		for _, kv := range s.Attributes() {
			v := kv.Value.Emit()
			if strings.Contains(v, "alice") || strings.Contains(v, "o-1") || strings.Contains(v, "missing") {
				t.Errorf("span %q leaks %s=%s", s.Name(), kv.Key, v)
			}
		}
	}

	got := tel.lookups(t, "get_order")
	want := map[string]int64{"loader/miss": 1, "l1/hit": 1, "l2/hit": 1, "loader/not_found": 1, "negative/not_found": 1, "loader/error": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("lookups %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func TestNoRecordingSpanNoSpans(t *testing.T) {
	tel := newTelemetry(t)
	c := newL1(t, Options{Telemetry: TelemetryOptions{TracerProvider: tel.tp}})
	get, _ := Wrap(c, getWeather, func(ctx context.Context, city string) (string, error) { return "sun", nil })
	get(context.Background(), "paris")
	get(context.Background(), "paris")
	if n := len(tel.spans.GetSpans()); n != 0 {
		t.Fatalf("%d spans recorded without a recording parent", n)
	}
	c2 := newL1(t, Options{Telemetry: TelemetryOptions{TracerProvider: tel.tp, RootSpans: true}})
	get2, _ := Wrap(c2, getWeather, func(ctx context.Context, city string) (string, error) { return "sun", nil })
	get2(context.Background(), "paris")
	if n := len(tel.spansOf(acotel.SpanLookup + " get_weather")); n != 1 {
		t.Fatalf("RootSpans: %d lookup spans, want 1", n)
	}
}

func TestRecordScopeIDsHashes(t *testing.T) {
	tel := newTelemetry(t)
	c := newL1(t, Options{Telemetry: TelemetryOptions{TracerProvider: tel.tp, RootSpans: true, RecordScopeIDs: true, RecordArgs: true}})
	get, _ := Wrap(c, getCart, (&fakeShop{items: map[string][]string{}}).getCart)
	ctx := scope.WithUser(context.Background(), "alice")
	get(ctx, cartArgs{Currency: "EUR"}) // loader
	get(ctx, cartArgs{Currency: "EUR"}) // L1 hit: its span is made after the hit
	spans := tel.spansOf(acotel.SpanLookup + " get_cart")
	if len(spans) != 2 {
		t.Fatalf("%d lookup spans, want 2", len(spans))
	}
	sum := sha256.Sum256([]byte("alice"))
	var first string
	for i, s := range spans {
		id, ok := attr(s, acotel.KeyScopeID)
		h := id.AsString()
		if _, err := hex.DecodeString(h); !ok || err != nil || len(h) != 32 || strings.Contains(h, "alice") {
			t.Fatalf("span %d: scope ID attribute = %q, want 16 bytes of hash in hex", i, h)
		}
		if strings.HasPrefix(hex.EncodeToString(sum[:]), h[:16]) {
			t.Fatalf("span %d: scope ID attribute %q is the unkeyed SHA-256 of the ID", i, h)
		}
		if i == 0 {
			first = h
		} else if h != first {
			t.Fatalf("span %d: scope ID hash %q, but %q in span 0: one cache must hash an ID alike", i, h, first)
		}
		if h, ok := attr(s, acotel.KeyArgsHash); !ok || strings.Contains(h.AsString(), "EUR") {
			t.Fatalf("span %d: args hash attribute = %v", i, h)
		}
		if s.EndTime().Before(s.StartTime()) {
			t.Fatalf("span %d ends before it starts", i)
		}
	}
	if tierV, _ := attr(spans[1], acotel.KeyTier); tierV.AsString() != "l1" {
		t.Fatalf("second lookup: tier %q, want l1", tierV.AsString())
	}
	if !spans[1].StartTime().After(spans[0].EndTime()) && !spans[1].StartTime().Equal(spans[0].EndTime()) {
		t.Fatal("the L1 hit's span starts before the first lookup ended")
	}
}

func TestRunSummary(t *testing.T) {
	c := newL1(t, Options{})
	get, _ := Wrap(c, getWeather, func(ctx context.Context, city string) (string, error) {
		time.Sleep(5 * time.Millisecond)
		return "sun", nil
	})
	ctx, r := run.Start(context.Background())
	for i := 0; i < 4; i++ {
		get(ctx, "paris")
	}
	s := r.Summary()
	if s.Lookups != 4 || s.ByTier["loader"] != 1 || s.ByTier["l1"] != 3 {
		t.Fatalf("summary %+v", s)
	}
	if s.ToolTime < 5*time.Millisecond || s.TimeSaved < 3*4*time.Millisecond {
		t.Fatalf("tool time %v, saved %v: want at least one tool run and three hits' worth", s.ToolTime, s.TimeSaved)
	}
	if !strings.Contains(s.String(), "get_weather") {
		t.Fatalf("String() = %q", s.String())
	}
}

func TestToolCallIDOnSpan(t *testing.T) {
	tel := newTelemetry(t)
	c := newL1(t, Options{Telemetry: TelemetryOptions{TracerProvider: tel.tp, RootSpans: true}})
	get, _ := Wrap(c, getWeather, func(ctx context.Context, city string) (string, error) { return "sun", nil })
	get(acotel.WithToolCallID(context.Background(), "call_42"), "oslo")
	s := tel.spansOf("execute_tool get_weather")
	if len(s) != 1 {
		t.Fatalf("%d tool spans", len(s))
	}
	if id, _ := attr(s[0], acotel.KeyGenAIToolCallID); id.AsString() != "call_42" {
		t.Fatalf("gen_ai.tool.call.id = %q", id.AsString())
	}
}

// An L2 hit on an instance that never ran the tool still knows what the hit
// saved: the tool's run time travels with the value.
func TestTimeSavedAcrossInstances(t *testing.T) {
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	a := newL1(t, Options{L2: backend.Remote("ts:")})
	b := newL1(t, Options{L2: backend.Remote("ts:")})
	res := resource.Resource{Name: "search_docs", TTL: time.Minute}
	tool := func(ctx context.Context, q string) (string, error) {
		time.Sleep(30 * time.Millisecond)
		return "hits for " + q, nil
	}
	sa, _ := Wrap(a, res, tool)
	sb, _ := Wrap(b, res, tool)
	ctxA, runA := run.Start(context.Background())
	sa(ctxA, "q")
	wait.For(t, 5*time.Second, "a's write", func() bool { return a.Stats().WritesDone == 1 })
	ctxB, runB := run.Start(context.Background())
	sb(ctxB, "q")
	ra, rb := runA.Summary(), runB.Summary()
	if ra.ToolTime < 30*time.Millisecond || ra.ByTier["loader"] != 1 {
		t.Fatalf("A's run: %+v", ra)
	}
	if rb.ByTier["l2"] != 1 || rb.TimeSaved < 20*time.Millisecond || rb.ToolTime != 0 {
		t.Fatalf("B's L2 hit: saved %v, tool time %v (%+v); want the tool's run time saved", rb.TimeSaved, rb.ToolTime, rb)
	}
	if len(rb.Calls) != 1 || rb.Calls[0].Tier != "l2" {
		t.Fatalf("calls %+v", rb.Calls)
	}
	var all run.Summary
	all.Add(ra)
	all.Add(rb)
	if all.Lookups != 2 || all.ByTier["l2"] != 1 || all.Resources["search_docs"].Lookups != 2 || len(all.Calls) != 2 {
		t.Fatalf("merged %+v", all)
	}
}

func TestOnFleetErrorSeesMutationFailures(t *testing.T) {
	backend := fake.NewBackend(fake.BackendOptions{})
	t.Cleanup(func() { backend.Close() })
	var seen atomic.Int32
	c := newL1(t, Options{L2: backend.Remote("fe:"), OnFleetError: func(ctx context.Context, err *FleetError) {
		if err.Op == "invalidate" {
			seen.Add(1)
		}
	}})
	shop := &fakeShop{items: map[string][]string{}}
	add, _ := WrapMutation(c, []resource.Resource{getCart}, shop.addToCart)
	backend.SetError(errors.New("redis down"))
	if _, err := add(scope.WithUser(context.Background(), "alice"), "lamp"); err != nil {
		t.Fatalf("the write happened; the mutation must not fail: %v", err)
	}
	if seen.Load() != 1 || c.Stats().FleetErrors != 1 {
		t.Fatalf("OnFleetError calls = %d, FleetErrors = %d", seen.Load(), c.Stats().FleetErrors)
	}
}

// TestL1HitEvents: with Options.Telemetry.L1HitEvents a fresh L1 hit inside a
// recording span is an event on that span, attributed like a lookup span;
// the other lookups stay spans, and without a recording parent (RootSpans)
// the hit is a span again.
func TestL1HitEvents(t *testing.T) {
	tel := newTelemetry(t)
	c := newL1(t, Options{Telemetry: TelemetryOptions{TracerProvider: tel.tp, MeterProvider: tel.mp, L1HitEvents: true}})
	weather := resource.Resource{Name: "get_weather", TTL: time.Minute}
	get, err := Wrap(c, weather, func(_ context.Context, city string) (string, error) { return "sun in " + city, nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, step := tel.tp.Tracer("test").Start(context.Background(), "agent step")
	for range 3 { // the tool, then two L1 hits
		if v, err := get(ctx, "Paris"); err != nil || v != "sun in Paris" {
			t.Fatalf("%q, %v", v, err)
		}
	}
	step.End()
	lookups := tel.spansOf(acotel.SpanLookup + " get_weather")
	if len(lookups) != 1 {
		t.Fatalf("%d lookup spans, want 1 (the miss); the hits are events", len(lookups))
	}
	if tierV, _ := attr(lookups[0], acotel.KeyTier); tierV.AsString() != "loader" {
		t.Fatalf("the lookup span's tier is %q, want loader", tierV.AsString())
	}
	parent := tel.spansOf("agent step")[0]
	var hits int
	for _, ev := range parent.Events() {
		if ev.Name != acotel.SpanLookup+" get_weather" {
			continue
		}
		hits++
		got := map[attribute.Key]attribute.Value{}
		for _, kv := range ev.Attributes {
			got[kv.Key] = kv.Value
		}
		if got[acotel.KeyTier].AsString() != "l1" || !got[acotel.KeyHit].AsBool() || got[acotel.KeyResource].AsString() != "get_weather" {
			t.Errorf("hit event attributes %v", ev.Attributes)
		}
	}
	if hits != 2 {
		t.Fatalf("%d hit events on the agent's span, want 2", hits)
	}
	if got := tel.lookups(t, "get_weather"); got["l1/hit"] != 2 {
		t.Errorf("lookup metric l1/hit = %d, want 2 (all: %v)", got["l1/hit"], got)
	}

	// With RecordScopeIDs the event carries the scope ID's hash, as a span
	// would.
	ic := newL1(t, Options{Telemetry: TelemetryOptions{TracerProvider: tel.tp, L1HitEvents: true, RecordScopeIDs: true}})
	iget, err := Wrap(ic, resource.Resource{Name: "get_inbox", Scope: scope.User, TTL: time.Minute},
		func(ctx context.Context, folder string) (string, error) { return folder, nil })
	if err != nil {
		t.Fatal(err)
	}
	uctx, ustep := tel.tp.Tracer("test").Start(scope.WithUser(context.Background(), "alice"), "user step")
	for range 2 {
		if _, err := iget(uctx, "inbox"); err != nil {
			t.Fatal(err)
		}
	}
	ustep.End()
	var hashed bool
	for _, ev := range tel.spansOf("user step")[0].Events() {
		for _, kv := range ev.Attributes {
			if kv.Key == acotel.KeyScopeID && kv.Value.AsString() != "" && !strings.Contains(kv.Value.AsString(), "alice") {
				hashed = true
			}
		}
	}
	if !hashed {
		t.Error("the hit event has no hashed scope ID with RecordScopeIDs")
	}

	// No recording parent: with RootSpans the hit is a span of its own.
	rc := newL1(t, Options{Telemetry: TelemetryOptions{TracerProvider: tel.tp, RootSpans: true, L1HitEvents: true}})
	rget, err := Wrap(rc, resource.Resource{Name: "get_tide", TTL: time.Minute}, func(_ context.Context, port string) (string, error) { return "high at " + port, nil })
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := rget(context.Background(), "Brest"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(tel.spansOf(acotel.SpanLookup + " get_tide")); n != 2 {
		t.Fatalf("%d root lookup spans, want 2 (the miss and the hit)", n)
	}
}

// scopeIDHashOf is the agentcache.scope.id attribute that a cache with
// secret records for a lookup of user id.
func scopeIDHashOf(t *testing.T, secret []byte, id string) string {
	t.Helper()
	tel := newTelemetry(t)
	c := newL1(t, Options{Secret: secret, Telemetry: TelemetryOptions{TracerProvider: tel.tp, RootSpans: true, RecordScopeIDs: true}})
	get, err := Wrap(c, getCart, (&fakeShop{items: map[string][]string{}}).getCart)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(scope.WithUser(context.Background(), id), cartArgs{Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	spans := tel.spansOf(acotel.SpanLookup + " get_cart")
	if len(spans) != 1 {
		t.Fatalf("%d lookup spans, want 1", len(spans))
	}
	h, ok := attr(spans[0], acotel.KeyScopeID)
	if !ok || len(h.AsString()) < 16 {
		t.Fatalf("scope ID attribute %q, want a hash", h.AsString())
	}
	return h.AsString()
}

// Issue 16: the scope-ID hash is keyed, so a numeric user ID cannot be
// recovered from it by hashing every number. With the same Secret every
// instance records the same hash for an ID; without one, each cache has a
// key of its own.
func TestRecordScopeIDsAreKeyed(t *testing.T) {
	const id = "4711"
	secret := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("fedcba9876543210fedcba9876543210")
	a, b := scopeIDHashOf(t, secret, id), scopeIDHashOf(t, secret, id)
	if a != b {
		t.Fatalf("two caches with the same Secret hash user %s as %s and %s; want the same", id, a, b)
	}
	if sum := sha256.Sum256([]byte(id)); strings.HasPrefix(hex.EncodeToString(sum[:]), a[:16]) {
		t.Errorf("user %s's hash %s starts like SHA-256(%q): unkeyed", id, a, id)
	}
	if c := scopeIDHashOf(t, other, id); c == a {
		t.Errorf("another Secret gives the same hash %s", c)
	}
	if o := scopeIDHashOf(t, secret, "4712"); o == a {
		t.Errorf("two IDs hash alike: %s", o)
	}
	x, y := scopeIDHashOf(t, nil, id), scopeIDHashOf(t, nil, id)
	if x == y {
		t.Errorf("two caches without a Secret hash user %s alike (%s): the key must be random per cache", id, x)
	}
	if x == a || y == a {
		t.Errorf("a cache without a Secret hashes user %s as the one with it does", id)
	}
}
