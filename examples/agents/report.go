package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	acotel "github.com/agentcache/agentcache-go/otel"
	acrun "github.com/agentcache/agentcache-go/run"
)

// reporter prints a run, as a table (textReport) or as JSON lines
// (jsonReport).
type reporter interface {
	header(l2 l2Info, steps, cutBefore int)
	cut(step int)
	step(r stepResult)
	trace(spans tracetest.SpanStubs, users []*user)
	summary(s summary)
}

// tiers in report order.
var tiers = []string{acotel.TierL1, acotel.TierL2, acotel.TierNegative, acotel.TierLoader}

// summary is the end of a run; with -json it is the final {"summary": ...}.
type summary struct {
	Steps              int                  `json:"steps"`
	WallMS             float64              `json:"wall_ms"`
	L2                 l2Info               `json:"l2"`
	RedisCutBeforeStep int                  `json:"redis_cut_before_step"` // 0: never cut
	Overall            runTotals            `json:"overall"`
	Users              map[string]runTotals `json:"users"`
	Mutations          int                  `json:"mutations"`
	MutationsFleetTold int                  `json:"mutations_fleet_told"`
	OutdatedReads      int                  `json:"outdated_reads"`
	Errors             int                  `json:"errors"` // steps whose outcome is "error"
	Instances          map[string]instStats `json:"instances"`
	// ToolExecMS is the time the real tools ran, from the execute_tool
	// spans (mutations included).
	ToolExecMS float64 `json:"tool_exec_ms"`
	// AfterCut totals the steps from the cut on, with -redis-down.
	AfterCut *cutTotals `json:"after_cut,omitempty"`
	Warnings []string   `json:"warnings,omitempty"` // logged after the last step

	users []string // in order
	wall  time.Duration
	run   acrun.Summary // overall, for the per-tool table
	byUsr map[string]acrun.Summary
	exec  time.Duration
}

// cutTotals is what happened once Redis was unreachable.
type cutTotals struct {
	Steps              int            `json:"steps"`
	ByTier             map[string]int `json:"by_tier"` // mutations included, as "mutation"
	Mutations          int            `json:"mutations"`
	MutationsFleetTold int            `json:"mutations_fleet_told"`
	OutdatedReads      int            `json:"outdated_reads"`
	Errors             int            `json:"errors"`
	MaxLatencyMS       float64        `json:"max_latency_ms"`
}

// runTotals is a run.Summary in JSON.
type runTotals struct {
	Lookups  int            `json:"lookups"`
	ByTier   map[string]int `json:"by_tier"`
	Errors   int            `json:"errors"`
	HitRatio float64        `json:"hit_ratio"`
	// MissMS is run.Summary.ToolTime: the duration of the lookups the
	// tool answered, the tool's run plus the cache's round trips.
	MissMS  float64               `json:"miss_ms"`
	SavedMS float64               `json:"saved_ms"`
	Tools   map[string]toolTotals `json:"tools"`
}

type toolTotals struct {
	Lookups int            `json:"lookups"`
	ByTier  map[string]int `json:"by_tier"`
	MissMS  float64        `json:"miss_ms"`
	SavedMS float64        `json:"saved_ms"`
}

// instStats is the part of agentcache.Stats an operator looks at first.
type instStats struct {
	L1Hits        uint64 `json:"l1_hits"`
	L2Hits        uint64 `json:"l2_hits"`
	NegativeHits  uint64 `json:"negative_hits"`
	Misses        uint64 `json:"misses"`
	Loads         uint64 `json:"loads"`
	L2Errors      uint64 `json:"l2_errors"`
	Breaker       string `json:"breaker"`
	Invalidations uint64 `json:"invalidations"`
	FleetErrors   uint64 `json:"fleet_errors"`
	WritesDropped uint64 `json:"writes_dropped"`
	WritesSkipped uint64 `json:"writes_skipped"`
	L1Entries     int    `json:"l1_entries"`
}

func (d *demo) summarize(results []stepResult, wall time.Duration, cutBefore int) summary {
	s := summary{
		Steps: len(results), WallMS: ms(wall), wall: wall, L2: d.l2, RedisCutBeforeStep: cutBefore,
		Users: map[string]runTotals{}, Instances: map[string]instStats{}, byUsr: map[string]acrun.Summary{},
	}
	for _, u := range d.users {
		rs := u.run.Summary()
		s.run.Add(rs)
		s.users = append(s.users, u.name)
		s.byUsr[u.name] = rs
		s.Users[u.name] = totals(rs)
	}
	s.Overall = totals(s.run)
	if cutBefore > 0 {
		s.AfterCut = &cutTotals{ByTier: map[string]int{}}
	}
	for _, r := range results {
		told := r.FleetTold != nil && *r.FleetTold
		if r.FleetTold != nil {
			s.Mutations++
			if told {
				s.MutationsFleetTold++
			}
		}
		if r.Outdated {
			s.OutdatedReads++
		}
		if r.Outcome == "error" {
			s.Errors++
		}
		if a := s.AfterCut; a != nil && r.Step >= cutBefore {
			a.Steps++
			a.ByTier[r.Tier]++
			if r.FleetTold != nil {
				a.Mutations++
				if told {
					a.MutationsFleetTold++
				}
			}
			if r.Outdated {
				a.OutdatedReads++
			}
			if r.Outcome == "error" {
				a.Errors++
			}
			a.MaxLatencyMS = max(a.MaxLatencyMS, r.LatencyMS)
		}
	}
	for _, sp := range d.spans.since(0) {
		if strings.HasPrefix(sp.Name(), acotel.SpanTool+" ") {
			s.exec += sp.EndTime().Sub(sp.StartTime())
		}
	}
	s.ToolExecMS = ms(s.exec)
	for _, in := range d.insts {
		st := in.cache.Stats()
		s.Instances[in.name] = instStats{
			L1Hits: st.L1Hits, L2Hits: st.L2Hits, NegativeHits: st.NegativeHits, Misses: st.Misses,
			Loads: st.Loads, L2Errors: st.L2Errors, Breaker: st.Breaker, Invalidations: st.Invalidations,
			FleetErrors: st.FleetErrors, WritesDropped: st.WritesDropped, WritesSkipped: st.WritesSkipped,
			L1Entries: st.L1Entries,
		}
	}
	s.Warnings = d.warns.drain()
	return s
}

func totals(r acrun.Summary) runTotals {
	t := runTotals{Lookups: r.Lookups, ByTier: allTiers(r.ByTier), Errors: r.Errors,
		HitRatio: float64(int(r.HitRatio()*1000+0.5)) / 1000,
		MissMS:   ms(r.ToolTime), SavedMS: ms(r.TimeSaved), Tools: map[string]toolTotals{}}
	for name, rr := range r.Resources {
		t.Tools[name] = toolTotals{Lookups: rr.Lookups, ByTier: allTiers(rr.ByTier), MissMS: ms(rr.ToolTime), SavedMS: ms(rr.TimeSaved)}
	}
	return t
}

// allTiers returns m with every tier present, so the JSON has a fixed shape.
func allTiers(m map[string]int) map[string]int {
	out := map[string]int{}
	for _, t := range tiers {
		out[t] = m[t]
	}
	return out
}

// jsonReport prints one JSON object per line.
type jsonReport struct{ w io.Writer }

func (j *jsonReport) emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are encoded
	}
	fmt.Fprintf(j.w, "%s\n", b)
}

func (j *jsonReport) header(l2Info, int, int)            {}
func (j *jsonReport) cut(int)                            {}
func (j *jsonReport) step(r stepResult)                  { j.emit(r) }
func (j *jsonReport) trace(tracetest.SpanStubs, []*user) {}
func (j *jsonReport) summary(s summary)                  { j.emit(map[string]summary{"summary": s}) }

// textReport prints aligned tables for a terminal.
type textReport struct {
	w         io.Writer
	traceMode string // "compact", "full" or "none"
	// noEstimate is set once a hit had no time-saved estimate.
	noEstimate bool
	// ran records which instance has run which tool ("A/get_cart").
	ran map[string]bool
}

func (t *textReport) printf(format string, args ...any) { fmt.Fprintf(t.w, format, args...) }

func (t *textReport) header(l2 l2Info, steps, cutBefore int) {
	t.printf("agentcache demo: a scripted shopping agent, %d steps, 2 users (alice, bob) on 2 instances (A, B) sharing one L2\n", steps)
	switch l2.Mode {
	case "embedded":
		t.printf("L2: no REDIS_URL set, so using an embedded Redis-compatible server (miniredis) on %s\n", l2.Addr)
	default:
		t.printf("L2: Redis at %s from %s (keys under %q; entries of earlier runs invalidated)\n", l2.Addr, l2.From, keyPrefix)
	}
	if cutBefore > 0 {
		t.printf("-redis-down: the link to Redis goes through a local proxy that will be cut before step %d\n", cutBefore)
	}
	t.printf("\n%4s  %-4s %-6s %-14s %-8s %-9s %9s %9s  %s\n",
		"step", "inst", "user", "tool", "scope", "tier", "latency", "saved", "result")
}

func (t *textReport) cut(int) {
	t.printf("  ---- Redis is now unreachable: the proxy reset every connection and refuses new ones ----\n")
	t.printf("  ---- each L2 call fails after Options.L2Timeout until the breaker opens after 5 failures ----\n")
}

func (t *textReport) step(r stepResult) {
	saved := "-"
	switch {
	case r.Tier == acotel.TierLoader:
		if t.ran == nil {
			t.ran = map[string]bool{}
		}
		t.ran[r.Instance+"/"+r.Tool] = true
	case r.Tier == tierMutation:
	case r.saved > 0:
		saved = "~" + dur(r.saved)
	case t.ran[r.Instance+"/"+r.Tool]:
		saved = "~0" // the lookup took longer than the tool usually does
	default:
		saved = "n/a*"
		t.noEstimate = true
	}
	result := r.Result
	if r.Outcome == "error" {
		result = "ERROR: " + r.Error
	}
	t.printf("%4d  %-4s %-6s %-14s %-8s %-9s %9s %9s  %s\n",
		r.Step, r.Instance, r.User, r.Tool, r.ScopeKind, r.Tier, dur(r.latency), saved, result)
	if r.FleetTold != nil {
		other := map[string]string{"A": "B", "B": "A"}[r.Instance]
		if *r.FleetTold {
			t.printf("%44s↳ %s invalidated for %s only: on %s at once, on %s through Redis pub/sub\n",
				"", cartRes.Name, r.User, r.Instance, other)
		} else {
			t.printf("%44s↳ the fleet was NOT told (Redis unreachable): %s invalidated on %s only;\n"+
				"%44s  %s may serve %s's older cart from its L1 until the entry's TTL (%v) ends\n",
				"", cartRes.Name, r.Instance, "", other, r.User, cartRes.TTL)
		}
	}
	for _, w := range r.Warnings {
		t.printf("%44s! %s\n", "", clip(w, 110))
	}
}

func (t *textReport) summary(s summary) {
	if t.noEstimate {
		t.printf("\n* n/a: a hit on an instance that has not run that tool yet. The time-saved estimate is the\n" +
			"  instance's own average run time of the tool, so it has nothing to subtract from.\n")
	}
	t.printf("\nsummary: run.Run per user (which tier answered each cached tool call)\n")
	t.printf("  %-16s %7s %5s %5s %5s %5s %6s %10s %9s\n", "", "lookups", "l1", "l2", "neg", "tool", "hit", "on misses", "saved")
	row := func(name string, r acrun.Summary) {
		t.printf("  %-16s %7d %5d %5d %5d %5d %5.0f%% %10s %9s\n", name, r.Lookups,
			r.ByTier[acotel.TierL1], r.ByTier[acotel.TierL2], r.ByTier[acotel.TierNegative], r.ByTier[acotel.TierLoader],
			100*r.HitRatio(), dur(r.ToolTime), "~"+dur(r.TimeSaved))
	}
	for _, u := range s.users {
		row(u, s.byUsr[u])
	}
	row("all", s.run)
	for _, name := range slices.Sorted(maps.Keys(s.run.Resources)) {
		rr := s.run.Resources[name]
		row("  "+name, acrun.Summary{Lookups: rr.Lookups, ByTier: rr.ByTier, ToolTime: rr.ToolTime, TimeSaved: rr.TimeSaved})
	}

	t.printf("\ninstances: agentcache.Stats\n")
	t.printf("  %-4s %7s %7s %5s %6s %9s %-9s %13s %12s %14s\n",
		"", "l1 hits", "l2 hits", "neg", "loads", "L2 errors", "breaker", "invalidations", "fleet errors", "writes unsent")
	for _, name := range slices.Sorted(maps.Keys(s.Instances)) {
		st := s.Instances[name]
		t.printf("  %-4s %7d %7d %5d %6d %9d %-9s %13d %12d %14d\n", name, st.L1Hits, st.L2Hits, st.NegativeHits,
			st.Loads, st.L2Errors, st.Breaker, st.Invalidations, st.FleetErrors, st.WritesDropped+st.WritesSkipped)
	}
	for _, w := range s.Warnings {
		t.printf("  ! %s\n", clip(w, 150))
	}

	if a := s.AfterCut; a != nil {
		var parts []string
		for _, p := range []struct{ tier, what string }{
			{acotel.TierL1, "from L1"}, {acotel.TierL2, "from L2"}, {acotel.TierNegative, "from the negative cache"},
			{acotel.TierLoader, "ran the tool"}, {tierMutation, "mutations"},
		} {
			if n := a.ByTier[p.tier]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, p.what))
			}
		}
		t.printf("\nafter the cut (steps %d-%d): %s; slowest step %v\n", s.RedisCutBeforeStep, s.Steps,
			strings.Join(parts, ", "), dur(time.Duration(a.MaxLatencyMS*float64(time.Millisecond))))
		t.printf("  %d of %d mutations told the fleet; %d outdated reads; %d errors reached the agent\n",
			a.MutationsFleetTold, a.Mutations, a.OutdatedReads, a.Errors)
	}

	t.printf("\n%d steps in %v: %d cached lookups, %.0f%% answered without the tool; %d mutations, %d told the fleet",
		s.Steps, s.wall.Round(time.Millisecond), s.run.Lookups, 100*s.run.HitRatio(), s.Mutations, s.MutationsFleetTold)
	if s.OutdatedReads > 0 {
		t.printf("; %d outdated reads", s.OutdatedReads)
	}
	t.printf("; %d errors reached the agent\n", s.Errors)
	t.printf("the tools ran for %v (execute_tool spans); the cache estimates it saved ~%v of tool time\n",
		s.exec.Round(time.Millisecond), s.run.TimeSaved.Round(time.Millisecond))
}

// dur formats a duration with about three significant digits.
func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// clip shortens s to n runes; -json prints log lines in full.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
