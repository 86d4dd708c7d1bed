package run

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/otel"
)

func TestFrom(t *testing.T) {
	if From(context.Background()) != nil {
		t.Fatal("From of a context without a Run is not nil")
	}
	ctx, r := Start(context.Background())
	if From(ctx) != r {
		t.Fatal("From does not return the Run that Start put in the context")
	}
	if inner, r2 := Start(ctx); From(inner) != r2 || r2 == r {
		t.Fatal("a nested Start does not give the inner context a Run of its own")
	}
}

func TestRecordTotals(t *testing.T) {
	_, r := Start(context.Background())
	r.Record(Call{Resource: "a", Tier: otel.TierLoader, ToolTime: 10 * time.Millisecond})
	r.Record(Call{Resource: "a", Tier: otel.TierL1, Saved: 9 * time.Millisecond})
	r.Record(Call{Resource: "b", Tier: otel.TierNegative, Saved: time.Millisecond})
	r.Record(Call{Resource: "b", Tier: otel.TierLoader, Failed: true})
	s := r.Summary()
	if s.Lookups != 4 || s.Errors != 1 || s.ToolTime != 10*time.Millisecond || s.TimeSaved != 10*time.Millisecond {
		t.Fatalf("totals %+v", s)
	}
	// A failed call is counted in Errors, not under its tier.
	if s.ByTier[otel.TierLoader] != 1 || s.ByTier[otel.TierL1] != 1 || s.ByTier[otel.TierNegative] != 1 {
		t.Fatalf("by tier %v", s.ByTier)
	}
	if a := s.Resources["a"]; a.Lookups != 2 || a.ByTier[otel.TierL1] != 1 || a.TimeSaved != 9*time.Millisecond || a.Errors != 0 {
		t.Fatalf("resource a %+v", a)
	}
	// A resource's lookups add up: its tiers and its errors.
	if b := s.Resources["b"]; b.Lookups != 2 || b.Errors != 1 || b.ByTier[otel.TierNegative] != 1 {
		t.Fatalf("resource b %+v", b)
	}
	if got := s.HitRatio(); got != 0.5 {
		t.Fatalf("HitRatio = %v, want 0.5", got)
	}
	if len(s.Calls) != 4 || s.Calls[3].Resource != "b" || !s.Calls[3].Failed {
		t.Fatalf("calls %+v", s.Calls)
	}
	str := s.String()
	for _, want := range []string{"4 tool calls: 1 from L1, 0 from L2, 1 not-found", "1 errors", "hit ratio 50%", "  a ", "  b "} {
		if !strings.Contains(str, want) {
			t.Errorf("String() does not contain %q:\n%s", want, str)
		}
	}
	if (Summary{}).HitRatio() != 0 {
		t.Error("HitRatio of an empty Summary is not 0")
	}
}

// Summary returns a copy: what the caller does with it does not reach the
// Run, and later calls do not reach it.
func TestSummaryIsACopy(t *testing.T) {
	_, r := Start(context.Background())
	r.Record(Call{Resource: "a", Tier: otel.TierL1})
	s := r.Summary()
	s.ByTier[otel.TierL1] = 99
	s.Resources["a"].ByTier[otel.TierL1] = 99
	s.Calls[0].Tier = "x"
	r.Record(Call{Resource: "a", Tier: otel.TierL2})
	again := r.Summary()
	if again.ByTier[otel.TierL1] != 1 || again.Resources["a"].ByTier[otel.TierL1] != 1 || again.Calls[0].Tier != otel.TierL1 {
		t.Fatalf("the Run's totals changed through a copy: %+v", again)
	}
	if s.Lookups != 1 || len(s.Calls) != 1 {
		t.Fatalf("the copy changed with a later call: %+v", s)
	}
}

func TestMaxCalls(t *testing.T) {
	_, r := Start(context.Background())
	for range MaxCalls + 5 {
		r.Record(Call{Resource: "a", Tier: otel.TierL1})
	}
	s := r.Summary()
	if s.Lookups != MaxCalls+5 || len(s.Calls) != MaxCalls {
		t.Fatalf("%d lookups, %d calls listed; want %d and %d", s.Lookups, len(s.Calls), MaxCalls+5, MaxCalls)
	}
	var all Summary
	all.Add(s)
	all.Add(s)
	if all.Lookups != 2*(MaxCalls+5) || len(all.Calls) != MaxCalls {
		t.Fatalf("Add: %d lookups, %d calls listed; want %d and %d", all.Lookups, len(all.Calls), 2*(MaxCalls+5), MaxCalls)
	}
}

func TestAdd(t *testing.T) {
	_, r1 := Start(context.Background())
	r1.Record(Call{Resource: "a", Tier: otel.TierLoader, ToolTime: time.Second})
	_, r2 := Start(context.Background())
	r2.Record(Call{Resource: "a", Tier: otel.TierL2, Saved: time.Second})
	r2.Record(Call{Resource: "b", Tier: otel.TierL1, Failed: true})
	var all Summary
	all.Add(r1.Summary())
	all.Add(r2.Summary())
	all.Add(Summary{}) // an empty summary adds nothing
	if all.Lookups != 3 || all.Errors != 1 || all.ToolTime != time.Second || all.TimeSaved != time.Second || len(all.Calls) != 3 {
		t.Fatalf("totals %+v", all)
	}
	if a := all.Resources["a"]; a.Lookups != 2 || a.ByTier[otel.TierLoader] != 1 || a.ByTier[otel.TierL2] != 1 {
		t.Fatalf("resource a %+v", a)
	}
	if b := all.Resources["b"]; b.Lookups != 1 || len(b.ByTier) != 0 || b.Errors != 1 {
		t.Fatalf("resource b %+v", b)
	}
}

func TestConcurrentRecord(t *testing.T) {
	_, r := Start(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				r.Record(Call{Resource: "a", Tier: otel.TierL1})
				_ = r.Summary()
			}
		})
	}
	wg.Wait()
	if s := r.Summary(); s.Lookups != 800 || len(s.Calls) != 800 {
		t.Fatalf("%d lookups, %d calls; want 800", s.Lookups, len(s.Calls))
	}
}
