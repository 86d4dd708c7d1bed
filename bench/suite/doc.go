// Package suite is agentcache's benchmark suite against peer libraries: each
// workload measures agentcache and its baselines side by side, in one run, on
// one machine, against a redis-server the suite starts itself (through
// agentcache's own test harness, internal/redistest).
//
// Performance claims hold only as ratios measured together, so every result
// that has a baseline carries the ratio of agentcache's figure over the
// baseline's (lower is better for times, calls and bytes), and the figures
// that the design's performance budget covers carry that budget and whether
// the run met it.
//
// Run the whole suite with
//
//	cd bench && go run ./cmd/benchsuite
//
// [Run] is the programmatic entry point; the command only parses flags and
// writes the outputs ([Report.WriteTable], [Report.WriteJSON],
// [Report.WriteMarkdown], [Report.WriteChart]).
//
// Timed figures come from [testing.Benchmark] (ns/op and allocs/op, several
// runs with the systems interleaved, the median kept) or from custom loops
// that record a latency per event (p50/p99 in milliseconds). Nothing here
// asserts timings: the smoke test only checks that the suite runs and that
// every workload reports.
package suite
