package suite

import (
	"context"
	"math"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/redistest"
)

// TestRoundTripsHook checks the hook against the go-redis this module uses
// and a real server: the commands go-redis sends to set up a connection
// (HELLO, CLIENT SETINFO, and SELECT and CLIENT SETNAME when the options ask
// for them) and an EVALSHA answered NOSCRIPT are counted apart, and every
// operation round trip exactly once.
func TestRoundTripsHook(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts func(*goredis.Options)
	}{
		{"default options", func(*goredis.Options) {}},
		{"DB and ClientName set", func(o *goredis.Options) { o.DB = 1; o.ClientName = "bench" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rt roundTrips
			o := srv.Options()
			tc.opts(o)
			c := goredis.NewClient(o)
			defer c.Close()
			c.AddHook(&rt)
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			got := rt.snapshot()
			if got.ops != 1 || got.conns != 1 || got.hs < 2 || got.scripts != 0 {
				t.Fatalf("after one PING on a new client: %+v, want 1 operation round trip, 1 connection, ≥ 2 handshake round trips", got)
			}
			if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				p.Get(ctx, "a")
				p.Get(ctx, "b")
				return nil
			}); err != nil && err != goredis.Nil {
				t.Fatal(err)
			}
			if n := rt.snapshot().ops; n != 2 {
				t.Fatalf("after a pipeline: %d operation round trips, want 2", n)
			}
			sha := strings.Repeat("0", 40)
			if err := c.EvalSha(ctx, sha, nil).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
				t.Fatalf("EVALSHA of an unknown script: %v, want NOSCRIPT", err)
			}
			if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				p.EvalSha(ctx, sha, nil)
				return nil
			}); err == nil {
				t.Fatal("a pipelined EVALSHA of an unknown script succeeded")
			}
			if got := rt.snapshot(); got.ops != 2 || got.scripts != 2 {
				t.Fatalf("after two EVALSHA answered NOSCRIPT: %+v, want 2 operation round trips and 2 script loads", got)
			}
		})
	}
	for _, tc := range []struct {
		cmd  goredis.Cmder
		want bool
	}{
		{goredis.NewCmd(ctx, "hello", 3), true},
		{goredis.NewCmd(ctx, "AUTH", "pw"), true},
		{goredis.NewCmd(ctx, "select", 1), true},
		{goredis.NewCmd(ctx, "readonly"), true},
		{goredis.NewCmd(ctx, "client", "setinfo", "LIB-NAME", "x"), true},
		{goredis.NewCmd(ctx, "client", "SETNAME", "x"), true},
		{goredis.NewCmd(ctx, "client", "tracking", "on"), true},
		{goredis.NewCmd(ctx, "client", "maint_notifications", "on"), true},
		{goredis.NewCmd(ctx, "client", "kill", "x"), false},
		{goredis.NewCmd(ctx, "client"), false},
		{goredis.NewCmd(ctx, "get", "k"), false},
		{goredis.NewCmd(ctx, "evalsha", "abc", 0), false},
	} {
		if got := handshakeCmd(tc.cmd); got != tc.want {
			t.Errorf("handshakeCmd(%v) = %v, want %v", tc.cmd.Args(), got, tc.want)
		}
	}
}

// checkRoundTripRows checks the rows of the round-trip workloads of a run:
// every agentcache row is counted against its physical minimum, which is
// recorded too, and every row the issue gives a target carries its budget.
func checkRoundTripRows(t *testing.T, rep *Report) {
	t.Helper()
	baselines := map[string]Result{}
	for _, r := range rep.Results {
		if r.Baseline == "" {
			baselines[r.Workload+"\x00"+r.System+"\x00"+r.Metric] = r
		}
	}
	want := map[string]int{"round_trips": 0, "round_trips_cluster": 0, "round_trips_steady": 0}
	for _, r := range rep.Results {
		if _, ok := want[r.Workload]; !ok || r.Metric != MetricRoundTrips {
			continue
		}
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || r.Value < 0 {
			t.Errorf("%s / %s: value %v", r.Workload, r.System, r.Value)
		}
		if r.Baseline == "" {
			if !strings.HasPrefix(r.System, sysMinimum+": ") {
				t.Errorf("%s / %s: a baseline that is not a physical minimum", r.Workload, r.System)
			}
			continue
		}
		want[r.Workload]++
		name, ok := strings.CutPrefix(r.System, "agentcache: ")
		if !ok || r.Baseline != sysMinimum+": "+name {
			t.Errorf("%s / %s: baseline %q, want %q", r.Workload, r.System, r.Baseline, sysMinimum+": "+name)
		}
		base, ok := baselines[r.Workload+"\x00"+r.Baseline+"\x00"+r.Metric]
		if !ok {
			t.Errorf("%s / %s: its baseline %q is not recorded", r.Workload, r.System, r.Baseline)
		} else if base.Value != 0 && r.Ratio == nil {
			t.Errorf("%s / %s: no ratio against a minimum of %v", r.Workload, r.System, base.Value)
		}
		caller := strings.HasSuffix(name, ", caller's path")
		if !caller && !strings.Contains(r.Note, "handshakes") {
			t.Errorf("%s / %s: the note does not state the handshakes: %q", r.Workload, r.System, r.Note)
		}
		if stale := strings.Contains(name, "went stale"); (!caller || !stale) && (r.Budget == "" || r.Within == nil) {
			t.Errorf("%s / %s: no budget", r.Workload, r.System)
		}
	}
	for wl, n := range want {
		if n == 0 {
			t.Errorf("%s: no round-trip rows", wl)
		}
	}
	for _, name := range []string{"stampede 8 instances × 50 callers, one key, right after New", "stampede 8 instances × 50 callers, one key, warm (epochs known)",
		"50 concurrent L1 hits of one user after its epochs went stale"} {
		if _, ok := baselines["round_trips\x00"+sysMinimum+": "+name+"\x00"+MetricRoundTrips]; !ok {
			t.Errorf("round_trips: no row %q", name)
		}
	}
	var cold bool
	for _, r := range rep.Results {
		if r.Workload == "l2_hit" && r.System == sysACL2New && r.Metric == MetricNsPerOp && r.Baseline == sysRawGET {
			cold = r.Budget != "" && r.Ratio != nil
		}
	}
	if !cold {
		t.Errorf("l2_hit: no budgeted cold-epoch row %q against %q", sysACL2New, sysRawGET)
	}
}
