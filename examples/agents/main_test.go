package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/redistest"
)

// demoRun is the parsed -json output of one run.
type demoRun struct {
	steps []stepResult
	sum   summary
}

// runJSON runs the demo in-process with -json and the given arguments and
// parses its output: one object per step, then {"summary": ...}.
func runJSON(t *testing.T, args ...string) demoRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, append([]string{"-json"}, args...), &out); err != nil {
		t.Fatalf("run %v: %v\n%s", args, err, out.String())
	}
	var r demoRun
	sawSummary := false
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if sawSummary {
			t.Fatalf("output after the summary: %s", line)
		}
		if bytes.HasPrefix(line, []byte(`{"summary":`)) {
			var s struct{ Summary summary }
			if err := json.Unmarshal(line, &s); err != nil {
				t.Fatalf("summary: %v: %s", err, line)
			}
			r.sum, sawSummary = s.Summary, true
			continue
		}
		var s stepResult
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("step: %v: %s", err, line)
		}
		r.steps = append(r.steps, s)
	}
	if !sawSummary {
		t.Fatalf("no summary in the output:\n%s", out.String())
	}
	if len(r.steps) != r.sum.Steps {
		t.Fatalf("%d step objects, summary says %d", len(r.steps), r.sum.Steps)
	}
	for i, s := range r.steps {
		if s.Step != i+1 {
			t.Fatalf("object %d is step %d", i+1, s.Step)
		}
	}
	return r
}

// backends runs f against the embedded server and against a real
// redis-server from the test harness.
func backends(t *testing.T, f func(t *testing.T, redisURL string)) {
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		f(t, "") // empty: the embedded server, whatever REDIS_URL says
	})
	t.Run("redis-server", func(t *testing.T) {
		t.Parallel()
		f(t, redistest.Start(t).URL())
	})
}

func TestDemo(t *testing.T) {
	backends(t, func(t *testing.T, redisURL string) {
		r := runJSON(t, "-redis-url="+redisURL)
		tiers := map[string]int{}
		for _, s := range r.steps {
			tiers[s.Tier]++
			if s.Outcome == "error" {
				t.Errorf("step %d (%s on %s): error reached the agent: %s", s.Step, s.Tool, s.Instance, s.Error)
			}
			if s.Outdated {
				t.Errorf("step %d: %s on %s served an outdated cart: %s", s.Step, s.User, s.Instance, s.Result)
			}
			if s.Redis != "up" {
				t.Errorf("step %d: redis %q without -redis-down", s.Step, s.Redis)
			}
		}
		if tiers["l1"] == 0 || tiers["l2"] == 0 {
			t.Errorf("tiers %v: want hits from both l1 and l2", tiers)
		}
		checkMutation(t, r.steps)
		checkNegative(t, r.steps, true)
		if r.sum.Mutations == 0 || r.sum.MutationsFleetTold != r.sum.Mutations {
			t.Errorf("%d of %d mutations told the fleet; want all", r.sum.MutationsFleetTold, r.sum.Mutations)
		}
		if want := len(r.steps) - r.sum.Mutations; r.sum.Overall.Lookups != want {
			t.Errorf("run summary has %d lookups; want %d (every step but the mutations)", r.sum.Overall.Lookups, want)
		}
		if got := r.sum.Users["alice"].Lookups + r.sum.Users["bob"].Lookups; got != r.sum.Overall.Lookups {
			t.Errorf("per-user lookups add up to %d, overall %d", got, r.sum.Overall.Lookups)
		}
		wantMode := map[bool]string{true: "embedded", false: "redis"}[redisURL == ""]
		if r.sum.L2.Mode != wantMode {
			t.Errorf("L2 mode %q; want %q", r.sum.L2.Mode, wantMode)
		}
	})
}

// checkMutation: after alice's add_to_cart, alice's next get_cart runs the
// tool and bob's next get_cart does not.
func checkMutation(t *testing.T, steps []stepResult) {
	t.Helper()
	at := slices.IndexFunc(steps, func(s stepResult) bool { return s.Tool == "add_to_cart" && s.User == "alice" })
	if at < 0 {
		t.Fatal("alice never calls add_to_cart")
	}
	next := func(user string) *stepResult {
		for i := at + 1; i < len(steps); i++ {
			if steps[i].Tool == "get_cart" && steps[i].User == user {
				return &steps[i]
			}
		}
		t.Fatalf("no get_cart by %s after alice's add_to_cart (step %d)", user, steps[at].Step)
		return nil
	}
	if s := next("alice"); s.Tier != "loader" {
		t.Errorf("step %d: alice's get_cart after her add_to_cart answered by %q; want the tool (loader)", s.Step, s.Tier)
	}
	if s := next("bob"); s.Tier == "loader" || s.Outcome != "ok" {
		t.Errorf("step %d: bob's get_cart after alice's add_to_cart: tier %q, outcome %q; want a cache hit", s.Step, s.Tier, s.Outcome)
	}
}

// checkNegative: a guessed order ID runs the tool once, and the repeated
// guess is answered by the negative cache (on the other instance too, from
// the L2 marker, when crossInstance is set).
func checkNegative(t *testing.T, steps []stepResult, crossInstance bool) {
	t.Helper()
	first := map[string]stepResult{} // args → the first not-found
	var negative, elsewhere int
	for _, s := range steps {
		if s.Tool != "get_order" || s.Outcome != "not_found" {
			continue
		}
		key := s.User + string(s.Args)
		f, seen := first[key]
		if !seen {
			first[key] = s
			if s.Tier != "loader" {
				t.Errorf("step %d: first lookup of guess %s answered by %q; want loader", s.Step, s.Args, s.Tier)
			}
			continue
		}
		if s.Tier == "negative" {
			negative++
			if s.Instance != f.Instance {
				elsewhere++
			}
		}
	}
	if len(first) == 0 {
		t.Fatal("no get_order guess was not found")
	}
	if negative == 0 {
		t.Error("no repeated guess was answered by the negative cache")
	}
	if crossInstance && elsewhere == 0 {
		t.Error("no repeated guess was answered by the negative cache of the other instance")
	}
}

func TestDemoRedisDown(t *testing.T) {
	backends(t, func(t *testing.T, redisURL string) {
		r := runJSON(t, "-redis-down", "-redis-url="+redisURL)
		cut := r.sum.RedisCutBeforeStep
		if cut < 2 || cut > len(r.steps) {
			t.Fatalf("redis_cut_before_step = %d", cut)
		}
		var l1After, mutationsAfter int
		for _, s := range r.steps {
			if s.Outcome == "error" {
				t.Errorf("step %d (%s on %s): error reached the agent: %s", s.Step, s.Tool, s.Instance, s.Error)
			}
			if want := map[bool]string{true: "down", false: "up"}[s.Step >= cut]; s.Redis != want {
				t.Errorf("step %d: redis %q; want %q", s.Step, s.Redis, want)
			}
			if s.Step < cut {
				continue
			}
			if s.Tier == "l1" {
				l1After++
			}
			if s.FleetTold != nil {
				mutationsAfter++
				if *s.FleetTold {
					t.Errorf("step %d: mutation says it told the fleet with Redis down", s.Step)
				}
			}
		}
		if l1After == 0 {
			t.Error("no L1 hit after the cut")
		}
		if mutationsAfter == 0 {
			t.Error("no mutation after the cut")
		}
		checkNegative(t, r.steps, false)
		a := r.sum.AfterCut
		if a == nil || a.Errors != 0 || a.Steps != len(r.steps)-cut+1 {
			t.Errorf("after_cut = %+v", a)
		}
		for name, st := range r.sum.Instances {
			if st.FleetErrors == 0 {
				t.Errorf("instance %s: Stats.FleetErrors = 0 after a mutation with Redis down", name)
			}
		}
	})
}

// The default text output: a newcomer's first run.
func TestDemoText(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-redis-url=", "-steps=20"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"embedded Redis-compatible server (miniredis)",
		"step  inst user   tool",
		"trace of each user's run",
		"agentcache.lookup get_weather  tier=loader scope=global",
		"summary: run.Run per user",
		"instances: agentcache.Stats",
		"0 errors reached the agent",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// Traces keep scope IDs out; the demo must not print them either.
	for _, id := range []string{aliceID, bobID, aliceSession, bobSession} {
		if strings.Contains(text, id) {
			t.Errorf("output contains the raw ID %q", id)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-steps=0"}, {"-trace=fancy"}, {"extra"}, {"-nope"},
		{"-redis-down", "-redis-url=unix:///tmp/redis.sock"},
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
	if err := run(context.Background(), []string{"-h"}, &bytes.Buffer{}); err != nil {
		t.Errorf("-h: %v", err)
	}
}

func TestExtend(t *testing.T) {
	if got := extend(5, rand.New(rand.NewPCG(1, 2))); !slices.Equal(got, script[:5]) {
		t.Errorf("extend(5) = %v; want the script's first 5 steps", got)
	}
	a := extend(200, rand.New(rand.NewPCG(7, 2)))
	b := extend(200, rand.New(rand.NewPCG(7, 2)))
	if len(a) != 200 || !slices.Equal(a, b) {
		t.Fatalf("extend(200) is not deterministic for one seed (%d steps)", len(a))
	}
	if !slices.Equal(a[:len(script)], script) {
		t.Error("extend(200) does not start with the script")
	}
	for _, s := range a {
		if _, ok := scopeOf[s.tool]; !ok || s.inst > 1 || s.user > 1 {
			t.Fatalf("bad step %+v", s)
		}
	}
}

// No span of the run carries a user or session ID, in its name or in any
// attribute: the cache keeps them out by default, and so does the demo.
func TestSpansKeepIDsOut(t *testing.T) {
	cfg, err := parseFlags([]string{"-redis-url=", "-steps=40"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	d := &demo{cfg: cfg, shop: newShop(cfg.seed), out: &jsonReport{w: &out}}
	defer d.close()
	ctx := context.Background()
	if err := d.setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.play(ctx); err != nil {
		t.Fatal(err)
	}
	spans := d.spans.all()
	if len(spans) == 0 {
		t.Fatal("no spans recorded")
	}
	for _, s := range spans {
		texts := []string{s.Name}
		for _, kv := range s.Attributes {
			texts = append(texts, string(kv.Key)+"="+kv.Value.Emit())
		}
		for _, text := range texts {
			for _, id := range []string{aliceID, bobID, aliceSession, bobSession} {
				if strings.Contains(text, id) {
					t.Errorf("span %q carries the ID %q: %s", s.Name, id, text)
				}
			}
		}
	}
}
