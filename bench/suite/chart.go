package suite

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// WriteChart draws the budgeted figures as an SVG bar chart: one bar per
// figure, its length the share of the budget it uses (measured ÷ bound, on a
// log scale from 1/1000 to 10), with the budget line at 1. Green bars are
// within budget, red ones are not. Budgets whose bound is zero ("0 allocs",
// "never a wrong not found") cannot be drawn as a share and are listed as
// text under the chart.
func (r *Report) WriteChart(w io.Writer) error {
	type bar struct {
		label, figure string
		share         float64
		ok            bool
	}
	var bars []bar
	var zero []string
	for _, res := range r.Results {
		if res.Within == nil {
			continue
		}
		x := res.Value
		fig := formatValue(res.Metric, res.Value)
		if res.onRatio {
			x = *res.Ratio
			fig = formatRatio(res.Ratio) + " " + res.Baseline
		}
		label := res.Workload + " · " + res.System
		if res.limit == 0 {
			mark := "met"
			if !*res.Within {
				mark = "NOT met"
			}
			zero = append(zero, fmt.Sprintf("%s: %s (budget %s) — %s", label, fig, res.Budget, mark))
			continue
		}
		bars = append(bars, bar{label: label, figure: fig + " (budget " + res.Budget + ")", share: x / res.limit, ok: *res.Within})
	}

	const (
		width    = 1400
		left     = 400 // labels
		plotW    = 420
		rowH     = 26
		top      = 70
		minShare = 1e-3
		maxShare = 10.0
	)
	height := top + rowH*len(bars) + 50 + 18*len(zero) + 20
	pos := func(share float64) float64 {
		s := math.Min(math.Max(share, minShare), maxShare)
		return left + plotW*(math.Log10(s)-math.Log10(minShare))/(math.Log10(maxShare)-math.Log10(minShare))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">agentcache: share of each performance budget used (measured ÷ budget, log scale; ≤ 1 is within budget)</text>`+"\n")
	m := r.Machine
	fmt.Fprintf(&b, `<text x="10" y="40" fill="#555">%s</text>`+"\n", html.EscapeString(fmt.Sprintf("%s, %d cores, %s, Redis %s; median of %d runs; load average %s → %s%s", m.CPU, m.Cores, m.Go, m.Redis, r.Runs, m.LoadBefore, m.LoadAfter, quickText(r.Quick))))
	// Axis ticks.
	for _, t := range []float64{0.001, 0.01, 0.1, 1, 10} {
		x := pos(t)
		color, dash := "#ddd", ""
		if t == 1 {
			color, dash = "#333", ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"%s/>`+"\n", x, top-8, x, top+rowH*len(bars), color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%g</text>`+"\n", x, top-12, t)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#333">budget</text>`+"\n", pos(1)+4, top+rowH*len(bars)+14)
	for i, br := range bars {
		y := top + i*rowH
		fill := "#2e9d4f"
		if !br.ok {
			fill = "#d23b3b"
		}
		x0 := pos(minShare)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+rowH/2+4, html.EscapeString(br.label))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y+4, math.Max(1, pos(br.share)-x0), rowH-8, fill)
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#333">%s</text>`+"\n", left+plotW+8, y+rowH/2+4, html.EscapeString(br.figure))
	}
	y := top + rowH*len(bars) + 40
	for _, z := range zero {
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y, html.EscapeString(z))
		y += 18
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
