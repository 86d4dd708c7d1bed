// Package run summarizes what the cache did during one agent run: each
// tool call that went through a Cache, the tier that answered it, the time
// spent in the real tools and the tool time the hits saved.
//
// Start a Run with [Start] and pass its context to the wrapped tools; every
// Cache records each lookup into the Run it finds in the context ([From]).
// [Run.Summary] returns the totals, by tier and by resource, with the calls
// in order (up to [MaxCalls]); [Summary.Add] folds several runs into one
// (per user, say).
//
// The tiers are the values of the agentcache.tier span attribute:
// [otel.TierL1], [otel.TierL2], [otel.TierNegative] and [otel.TierLoader]
// (the tool ran). A process that never calls Start pays one atomic load per
// lookup for this package.
package run

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/otel"
)

type runKey struct{}

// Run collects what the cache did during one agent run: each lookup, the
// tier that answered, tool time spent and tool time saved. Start one with
// [Start] and pass its context to the wrapped tools; every Cache records
// into the Run it finds in the context. A Run is safe for concurrent use.
type Run struct {
	mu  sync.Mutex // guards sum
	sum Summary
}

// MaxCalls bounds Summary.Calls; later calls are counted in the totals but
// not listed.
const MaxCalls = 10_000

// Call is one lookup as a Run records it.
type Call struct {
	Resource string        // the resource (tool) name; "kv" for the key-value API
	Tier     string        // otel.TierL1, otel.TierL2, otel.TierNegative or otel.TierLoader
	Latency  time.Duration // the lookup, end to end
	Saved    time.Duration // estimated tool time a hit avoided
	ToolTime time.Duration // time the tool ran for this lookup (otel.TierLoader)
	Failed   bool          // an error other than "not found"
}

// Summary is a Run's totals.
type Summary struct {
	Lookups   int            // tool calls that went through the cache
	ByTier    map[string]int // lookups by answering tier (otel.TierL1, otel.TierL2, otel.TierNegative, otel.TierLoader)
	Errors    int            // lookups that returned an error other than "not found"
	ToolTime  time.Duration  // time spent in the real tools
	TimeSaved time.Duration  // estimated tool time saved by hits
	Resources map[string]ResourceSummary
	Calls     []Call // every lookup in order, up to MaxCalls
}

// ResourceSummary is a Run's totals for one resource.
type ResourceSummary struct {
	Lookups   int            // tool calls of the resource
	ByTier    map[string]int // lookups by answering tier
	Errors    int            // lookups that returned an error other than "not found"
	ToolTime  time.Duration  // time spent in the resource's tool
	TimeSaved time.Duration  // estimated tool time saved by hits
}

// runsStarted lets From skip the context walk in processes that never
// start a Run (the cache asks on every lookup).
var runsStarted atomic.Bool

// Start returns a context that carries a new Run.
func Start(ctx context.Context) (context.Context, *Run) {
	runsStarted.Store(true)
	r := &Run{}
	return context.WithValue(ctx, runKey{}, r), r
}

// From returns the Run ctx carries, or nil.
func From(ctx context.Context) *Run {
	if !runsStarted.Load() {
		return nil
	}
	r, _ := ctx.Value(runKey{}).(*Run)
	return r
}

// Record adds one lookup.
func (r *Run) Record(c Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.add(c)
	if len(r.sum.Calls) < MaxCalls {
		r.sum.Calls = append(r.sum.Calls, c)
	}
}

func (s *Summary) add(c Call) {
	if s.ByTier == nil {
		s.ByTier = map[string]int{}
	}
	if s.Resources == nil {
		s.Resources = map[string]ResourceSummary{}
	}
	rs := s.Resources[c.Resource]
	if rs.ByTier == nil {
		rs.ByTier = map[string]int{}
	}
	s.Lookups++
	rs.Lookups++
	if c.Failed {
		s.Errors++
		rs.Errors++
	} else {
		s.ByTier[c.Tier]++
		rs.ByTier[c.Tier]++
	}
	s.ToolTime += c.ToolTime
	rs.ToolTime += c.ToolTime
	s.TimeSaved += c.Saved
	rs.TimeSaved += c.Saved
	s.Resources[c.Resource] = rs
}

// Add folds o into s, for totals over several runs (per user, say).
func (s *Summary) Add(o Summary) {
	if s.ByTier == nil {
		s.ByTier = map[string]int{}
	}
	if s.Resources == nil {
		s.Resources = map[string]ResourceSummary{}
	}
	s.Lookups += o.Lookups
	s.Errors += o.Errors
	s.ToolTime += o.ToolTime
	s.TimeSaved += o.TimeSaved
	for t, n := range o.ByTier {
		s.ByTier[t] += n
	}
	for name, or := range o.Resources {
		rs := s.Resources[name]
		if rs.ByTier == nil {
			rs.ByTier = map[string]int{}
		}
		rs.Lookups += or.Lookups
		rs.Errors += or.Errors
		rs.ToolTime += or.ToolTime
		rs.TimeSaved += or.TimeSaved
		for t, n := range or.ByTier {
			rs.ByTier[t] += n
		}
		s.Resources[name] = rs
	}
	s.Calls = append(s.Calls, o.Calls[:min(len(o.Calls), max(MaxCalls-len(s.Calls), 0))]...)
}

// Summary returns a copy of the totals so far.
func (r *Run) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sum
	out.Calls = slices.Clone(r.sum.Calls)
	out.ByTier = cloneMap(r.sum.ByTier)
	out.Resources = make(map[string]ResourceSummary, len(r.sum.Resources))
	for k, v := range r.sum.Resources {
		v.ByTier = cloneMap(v.ByTier)
		out.Resources[k] = v
	}
	return out
}

func cloneMap(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// HitRatio is the share of lookups answered without running the tool.
func (s Summary) HitRatio() float64 {
	if s.Lookups == 0 {
		return 0
	}
	return float64(s.Lookups-s.ByTier[otel.TierLoader]-s.Errors) / float64(s.Lookups)
}

// String renders the summary as a few lines of text.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d tool calls: %d from L1, %d from L2, %d not-found from the negative cache, %d ran the tool",
		s.Lookups, s.ByTier[otel.TierL1], s.ByTier[otel.TierL2], s.ByTier[otel.TierNegative], s.ByTier[otel.TierLoader])
	if s.Errors > 0 {
		fmt.Fprintf(&b, ", %d errors", s.Errors)
	}
	fmt.Fprintf(&b, "\nhit ratio %.0f%%; time in tools %v; tool time saved ~%v\n",
		100*s.HitRatio(), s.ToolTime.Round(time.Millisecond), s.TimeSaved.Round(time.Millisecond))
	names := make([]string, 0, len(s.Resources))
	for n := range s.Resources {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := s.Resources[n]
		fmt.Fprintf(&b, "  %-20s %3d calls  l1=%d l2=%d negative=%d tool=%d  saved ~%v\n", n, r.Lookups,
			r.ByTier[otel.TierL1], r.ByTier[otel.TierL2], r.ByTier[otel.TierNegative], r.ByTier[otel.TierLoader], r.TimeSaved.Round(time.Millisecond))
	}
	return b.String()
}
