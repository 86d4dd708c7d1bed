package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// report is what a soak run found. -json prints it as is.
type report struct {
	Duration    string `json:"duration"`
	Elapsed     string `json:"elapsed"`
	Instances   int    `json:"instances"`
	Workers     int    `json:"workers"`
	Seed        uint64 `json:"seed"`
	Redis       string `json:"redis"`
	Interrupted bool   `json:"interrupted,omitempty"`

	Ops          int64            `json:"ops"` // after the warm-up
	OpsPerSec    float64          `json:"ops_per_sec"`
	Mix          map[string]int64 `json:"mix"` // every op, warm-up included
	CallerErrors int64            `json:"caller_errors"`
	FirstErrors  []string         `json:"first_errors,omitempty"`
	NotFound     int64            `json:"not_found"`    // "not found" answers where the tool says so: not errors
	FleetErrors  int64            `json:"fleet_errors"` // *FleetError from Invalidate/Delete with Redis down: documented
	ToolRuns     int64            `json:"tool_runs"`

	Restarts               int    `json:"restarts"`
	BreakerOpened          int    `json:"breaker_opened"`
	BreakerClosed          int    `json:"breaker_closed"`
	BreakersOpenAtEnd      int    `json:"breakers_open_at_end"`
	L2HitsAfterLastRestart uint64 `json:"l2_hits_after_last_restart"`
	Warnings               int    `json:"warnings"`

	Cache struct {
		L1Hits        uint64 `json:"l1_hits"`
		L2Hits        uint64 `json:"l2_hits"`
		NegativeHits  uint64 `json:"negative_hits"`
		StaleHits     uint64 `json:"stale_hits"`
		Loads         uint64 `json:"loads"`
		L2Errors      uint64 `json:"l2_errors"`
		L2Corrupt     uint64 `json:"l2_corrupt"`
		WritesDone    uint64 `json:"writes_done"`
		WritesSkipped uint64 `json:"writes_skipped"`
		WritesFailed  uint64 `json:"writes_failed"`
		WritesDropped uint64 `json:"writes_dropped"`
		Invalidations uint64 `json:"invalidations"`
		FleetWaits    uint64 `json:"fleet_waits"`
	} `json:"cache"`

	Baseline   usage `json:"baseline"`    // Redis up, no cache yet
	Start      usage `json:"start"`       // caches warm
	End        usage `json:"end"`         // end of the load, caches open
	AfterClose usage `json:"after_close"` // caches and stores closed

	Leaks    []string `json:"leaks,omitempty"`
	Problems []string `json:"problems,omitempty"`
	OK       bool     `json:"ok"`
}

func (r *report) print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("agentcache soak: %d instances, %d workers, %s (ran %s), seed %d", r.Instances, r.Workers, r.Duration, r.Elapsed, r.Seed)
	p("redis:            %s", r.Redis)
	p("operations:       %d (%.0f/s) after warm-up; %d tool runs", r.Ops, r.OpsPerSec, r.ToolRuns)
	p("caller errors:    %d", r.CallerErrors)
	for _, e := range r.FirstErrors {
		p("                  %s", e)
	}
	p("not found:        %d (the tool's answer, not errors)", r.NotFound)
	p("fleet errors:     %d (Invalidate/Delete with Redis down: applied locally, *FleetError)", r.FleetErrors)
	p("faults:           %d Redis restarts; breaker opened %d, closed %d times; %d still open; %d L2 hits after the last restart",
		r.Restarts, r.BreakerOpened, r.BreakerClosed, r.BreakersOpenAtEnd, r.L2HitsAfterLastRestart)
	c := r.Cache
	p("tiers:            L1 %d, L2 %d, negative %d (stale %d), loads %d", c.L1Hits, c.L2Hits, c.NegativeHits, c.StaleHits, c.Loads)
	p("L2:               %d errors, %d corrupt; writes %d done, %d skipped (breaker), %d failed, %d dropped",
		c.L2Errors, c.L2Corrupt, c.WritesDone, c.WritesSkipped, c.WritesFailed, c.WritesDropped)
	p("goroutines:       %d baseline, %d start, %d end, %d after Close", r.Baseline.Goroutines, r.Start.Goroutines, r.End.Goroutines, r.AfterClose.Goroutines)
	p("heap (after GC):  %s baseline, %s start, %s end, %s after Close", mib(r.Baseline.HeapBytes), mib(r.Start.HeapBytes), mib(r.End.HeapBytes), mib(r.AfterClose.HeapBytes))
	names := make([]string, 0, len(r.Mix))
	for k := range r.Mix {
		names = append(names, k)
	}
	sort.Strings(names)
	mix := make([]string, 0, len(names))
	for _, k := range names {
		mix = append(mix, fmt.Sprintf("%s %d", k, r.Mix[k]))
	}
	p("mix:              %s", strings.Join(mix, ", "))
	for _, l := range r.Leaks {
		p("LEAK:             %s", l)
	}
	if r.OK {
		p("result:           OK")
	} else {
		p("result:           FAILED: %s", strings.Join(r.Problems, "; "))
	}
}
