package agentcache

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.opentelemetry.io/otel"

	acotel "github.com/agentcache/agentcache-go/otel"
	"github.com/agentcache/agentcache-go/resource"
)

// TestGlobalSDKInstalledAfterNew: a cache on the global tracer provider
// skips the span check while that provider is OpenTelemetry's default (it
// could record nothing), and traces as soon as an SDK is installed as the
// global provider, even after New. Installing a global provider cannot be
// undone, so the test runs in a child process of its own.
func TestGlobalSDKInstalledAfterNew(t *testing.T) {
	if os.Getenv("AGENTCACHE_GLOBAL_OTEL_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGlobalSDKInstalledAfterNew$", "-test.v")
		cmd.Env = append(os.Environ(), "AGENTCACHE_GLOBAL_OTEL_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	tel := newTelemetry(t)
	c := newL1(t, Options{}) // the global provider, still the default
	get, err := Wrap(c, resource.Resource{Name: "get_weather", TTL: time.Minute},
		func(_ context.Context, city string) (string, error) { return "sun in " + city, nil })
	if err != nil {
		t.Fatal(err)
	}
	// A span of the application's SDK, not (yet) the global provider: the
	// cache's tracer records nothing, and the lookup skips the check.
	ctx, step := tel.tp.Tracer("app").Start(context.Background(), "agent step")
	if _, err := get(ctx, "Paris"); err != nil {
		t.Fatal(err)
	}
	if c.obs.idleGlobal == nil || c.obs.tracing(ctx) {
		t.Fatal("the default global provider was not recognised: every lookup walks its context for a span")
	}
	otel.SetTracerProvider(tel.tp)
	if _, err := get(ctx, "Paris"); err != nil { // an L1 hit, now traced
		t.Fatal(err)
	}
	step.End()
	spans := tel.spansOf(acotel.SpanLookup + " get_weather")
	if len(spans) != 1 {
		t.Fatalf("%d lookup spans; want 1, the hit made after the SDK became the global provider", len(spans))
	}
	if tierV, _ := attr(spans[0], acotel.KeyTier); tierV.AsString() != "l1" {
		t.Fatalf("the lookup span's tier is %q, want l1", tierV.AsString())
	}
}
