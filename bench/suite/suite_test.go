package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestQuickSuite runs the whole suite in quick mode and checks that it runs,
// not how fast: every workload finishes and reports, and every output
// (table, JSON lines, Markdown, SVG) is well formed. It needs redis-server,
// like the suite itself, and fails (never skips) without it.
func TestQuickSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick suite takes about half a minute; -short skips it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log io.Writer = io.Discard
	if testing.Verbose() {
		log = os.Stderr
	}
	rep, err := Run(ctx, Config{Quick: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Failures {
		t.Errorf("workload failed: %s", f)
	}
	seen := map[string]int{}
	for _, r := range rep.Results {
		seen[r.Workload]++
	}
	for _, w := range Workloads() {
		if seen[w] == 0 {
			t.Errorf("workload %s reported nothing", w)
		}
	}

	checkRoundTripRows(t, rep)

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != len(rep.Results) {
		t.Errorf("%d JSON lines for %d results", len(lines), len(rep.Results))
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("JSON line %q: %v", line, err)
		}
		for _, k := range []string{"workload", "system", "metric", "value", "baseline", "ratio"} {
			if _, ok := m[k]; !ok {
				t.Errorf("JSON line %q has no %q", line, k)
			}
		}
	}

	var table, md, svg bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| workload | system |") {
		t.Error("the Markdown output has no results table")
	}
	if err := rep.WriteChart(&svg); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&svg)
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("the chart is not well-formed XML: %v", err)
		}
	}
	if testing.Verbose() {
		t.Log("\n" + table.String())
	}
}
