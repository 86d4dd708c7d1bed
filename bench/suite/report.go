package suite

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Metric names, the values of Result.Metric.
const (
	MetricNsPerOp     = "ns_per_op"     // nanoseconds per operation
	MetricAllocsPerOp = "allocs_per_op" // heap allocations per operation
	MetricOps         = "ops"           // operations (per second where a note says so)
	MetricBytes       = "bytes"         // bytes (per entry or key where the workload says so)
	MetricCalls       = "calls"         // calls to a backend: tool runs, or Redis round trips
	MetricP50ms       = "p50_ms"        // median latency, milliseconds
	MetricP99ms       = "p99_ms"        // 99th percentile latency, milliseconds
	MetricFPRate      = "fp_rate"       // share of lookups wrongly answered "not found"
	MetricGCCPUms     = "gc_cpu_ms"     // GC CPU time per collection, milliseconds
)

// Result is one figure of the report. Its JSON form is one line of the
// -json output:
//
//	{"workload": "...", "system": "...", "metric": "...", "value": N, "baseline": "...", "ratio": N}
//
// A baseline's own figure has an empty baseline and a null ratio. A figure
// of agentcache compared with a baseline carries the baseline's system name
// and the ratio of agentcache's value over the baseline's (lower is better
// for every metric here but ops). Figures the design's performance budget
// covers add "budget" (its text) and "within_budget".
type Result struct {
	Workload string   `json:"workload"`
	System   string   `json:"system"`
	Metric   string   `json:"metric"`
	Value    float64  `json:"value"`
	Baseline string   `json:"baseline"`
	Ratio    *float64 `json:"ratio"`
	Budget   string   `json:"budget,omitempty"`
	Within   *bool    `json:"within_budget,omitempty"`
	Note     string   `json:"note,omitempty"`

	limit   float64 // the budget's bound, on Ratio if onRatio else on Value
	onRatio bool
}

// WorkloadInfo names a workload that ran and says what it measures.
type WorkloadInfo struct {
	Name string `json:"name"`
	What string `json:"what"`
}

// Report is the outcome of a run.
type Report struct {
	Machine   MachineInfo
	Quick     bool
	Runs      int
	BenchTime time.Duration
	Elapsed   time.Duration
	Workloads []WorkloadInfo
	Results   []Result
	// Failures lists the workloads that could not finish, with why.
	Failures []string
	// Notes are remarks a workload made about its own run (a baseline that
	// could not be measured, a check that did not hold).
	Notes []string
}

// budget is a bound from the design's performance budget: the figure (or its
// ratio to the baseline, with onRatio) must not exceed limit.
type budget struct {
	limit   float64
	onRatio bool
	text    string
}

func ratioAtMost(limit float64, text string) *budget {
	return &budget{limit: limit, onRatio: true, text: text}
}

func atMost(limit float64, text string) *budget { return &budget{limit: limit, text: text} }

// figure records a system's own figure, once per workload, system and metric.
func (e *env) figure(workload, system, metric string, value float64, note string) {
	for _, r := range e.rep.Results {
		if r.Workload == workload && r.System == system && r.Metric == metric && r.Baseline == "" {
			return
		}
	}
	e.rep.Results = append(e.rep.Results, Result{Workload: workload, System: system, Metric: metric, Value: value, Note: note})
}

// versus records system's figure against a baseline's, with the ratio and,
// if b is set, the budget. The baseline's figure is recorded too.
func (e *env) versus(workload, system, metric string, value float64, baseline string, baseValue float64, b *budget, note string) {
	e.figure(workload, baseline, metric, baseValue, "")
	r := Result{Workload: workload, System: system, Metric: metric, Value: value, Baseline: baseline, Note: note}
	if baseValue != 0 {
		ratio := value / baseValue
		r.Ratio = &ratio
	}
	e.addBudget(&r, b)
	e.rep.Results = append(e.rep.Results, r)
}

// absolute records a figure that has a budget of its own and no baseline.
func (e *env) absolute(workload, system, metric string, value float64, b *budget, note string) {
	r := Result{Workload: workload, System: system, Metric: metric, Value: value, Note: note}
	e.addBudget(&r, b)
	e.rep.Results = append(e.rep.Results, r)
}

func (e *env) addBudget(r *Result, b *budget) {
	if b == nil {
		return
	}
	r.Budget, r.limit, r.onRatio = b.text, b.limit, b.onRatio
	x := r.Value
	if b.onRatio {
		if r.Ratio == nil {
			return
		}
		x = *r.Ratio
	}
	ok := x <= b.limit
	r.Within = &ok
}

// note records a remark about the run.
func (e *env) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.rep.Notes = append(e.rep.Notes, msg)
	e.logf("  note: %s", msg)
}

// WriteJSON writes one JSON object per result, one per line.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, res := range r.Results {
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes the results as an aligned text table, workload by
// workload, followed by the failures and notes.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%s\n\n", r.header())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tsystem\tmetric\tvalue\tvs\tratio\tbudget\tmet")
	last := ""
	for _, res := range r.Results {
		wl := res.Workload
		if wl == last {
			wl = ""
		} else if last != "" {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
		}
		last = res.Workload
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", wl, res.System, res.Metric, formatValue(res.Metric, res.Value),
			res.Baseline, formatRatio(res.Ratio), res.Budget, formatWithin(res.Within))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	r.writeTrailer(w, "")
	return nil
}

// WriteMarkdown writes the machine, the results as a Markdown table, and the
// failures and notes: the body of BENCHMARKS.md's results section.
func (r *Report) WriteMarkdown(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "| | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s, %d cores (GOMAXPROCS %d) |\n", m.CPU, m.Cores, m.GOMAXPROCS)
	fmt.Fprintf(w, "| Go | %s %s |\n", m.Go, m.OS)
	fmt.Fprintf(w, "| Redis | %s (loopback, started by the suite) |\n", m.Redis)
	fmt.Fprintf(w, "| load average (1/5/15 min) | before %s, after %s |\n", m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(w, "| runs | median of %d, %v per benchmark run%s; suite took %v |\n\n", r.Runs, r.BenchTime, quickText(r.Quick), r.Elapsed.Round(time.Second))
	fmt.Fprintln(w, "| workload | system | metric | value | vs | ratio | budget | met |")
	fmt.Fprintln(w, "|---|---|---|---:|---|---:|---|:-:|")
	last := ""
	for _, res := range r.Results {
		wl := ""
		if res.Workload != last {
			wl = "**" + res.Workload + "**"
		}
		last = res.Workload
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", wl, mdEscape(res.System), res.Metric,
			formatValue(res.Metric, res.Value), mdEscape(res.Baseline), formatRatio(res.Ratio), mdEscape(res.Budget), formatWithin(res.Within))
	}
	fmt.Fprintln(w)
	r.writeTrailer(w, "- ")
	return nil
}

func (r *Report) header() string {
	m := r.Machine
	return fmt.Sprintf("agentcache benchmark suite: %s, %d cores (GOMAXPROCS %d), %s %s, Redis %s; load %s → %s; median of %d runs of %v%s; took %v",
		m.CPU, m.Cores, m.GOMAXPROCS, m.Go, m.OS, m.Redis, m.LoadBefore, m.LoadAfter, r.Runs, r.BenchTime, quickText(r.Quick), r.Elapsed.Round(time.Second))
}

func quickText(q bool) string {
	if q {
		return " (QUICK MODE: smoke-test figures, do not quote)"
	}
	return ""
}

func (r *Report) writeTrailer(w io.Writer, bullet string) {
	notes := append([]string(nil), r.Notes...)
	for _, res := range r.Results {
		if res.Note != "" {
			notes = append(notes, res.Workload+" / "+res.System+": "+res.Note)
		}
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "\nFailed workloads:\n")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "%s%s\n", bullet, f)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(w, "%s%s\n", bullet, n)
		}
	}
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func formatValue(metric string, v float64) string {
	switch metric {
	case MetricNsPerOp:
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms", v/1e6)
		case v >= 1e4:
			return fmt.Sprintf("%.1f µs", v/1e3)
		case v >= 1e3:
			return fmt.Sprintf("%.2f µs", v/1e3)
		}
		return fmt.Sprintf("%.1f ns", v)
	case MetricAllocsPerOp:
		if v == math.Trunc(v) {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.2f", v)
	case MetricBytes:
		if math.Abs(v) >= 1e6 {
			return fmt.Sprintf("%.1f MB", v/1e6)
		}
		return fmt.Sprintf("%.1f B", v)
	case MetricCalls, MetricOps:
		if v == math.Trunc(v) {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	case MetricRoundTrips:
		if v == math.Trunc(v) {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.3f", v)
	case MetricP50ms, MetricP99ms, MetricGCCPUms:
		return fmt.Sprintf("%.3f ms", v)
	case MetricFPRate:
		return fmt.Sprintf("%.3f%%", 100*v)
	}
	return fmt.Sprintf("%g", v)
}

func formatRatio(r *float64) string {
	if r == nil {
		return ""
	}
	switch x := *r; {
	case x == 0:
		return "0×"
	case x < 0.01:
		return fmt.Sprintf("%.5f×", x)
	case x < 0.1:
		return fmt.Sprintf("%.3f×", x)
	}
	return fmt.Sprintf("%.2f×", *r)
}

func formatWithin(w *bool) string {
	switch {
	case w == nil:
		return ""
	case *w:
		return "yes"
	}
	return "NO"
}
