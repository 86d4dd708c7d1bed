package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	acotel "github.com/agentcache/agentcache-go/otel"
)

// spanLog is the demo's span exporter: it keeps every ended span in
// memory, in the order spans end. Installed with WithSyncer, a span is in
// the log by the time its End returns.
type spanLog struct {
	mu    sync.Mutex // guards spans
	spans []sdktrace.ReadOnlySpan
}

func (l *spanLog) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	l.mu.Lock()
	l.spans = append(l.spans, spans...)
	l.mu.Unlock()
	return nil
}

func (l *spanLog) Shutdown(context.Context) error { return nil }

// len is the number of spans so far, a mark for since.
func (l *spanLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.spans)
}

// since returns the spans that ended after mark.
func (l *spanLog) since(mark int) []sdktrace.ReadOnlySpan {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.spans[mark:])
}

// all returns every span as stubs, for the tree.
func (l *spanLog) all() tracetest.SpanStubs {
	return tracetest.SpanStubsFromReadOnlySpans(l.since(0))
}

// traceWidth is the column where span durations end.
const traceWidth = 92

// trace prints each user's run as a tree of spans: the agent run, its
// steps, the cache lookups (with the tier that answered), and under them the
// L2 round trips and tool executions. The tree comes from the spans the SDK
// recorded, and shows what a tracing backend would; user and session IDs
// are not in it (the cache keeps them out of spans), so the run is labelled
// from the demo's own table.
func (t *textReport) trace(spans tracetest.SpanStubs, users []*user) {
	if t.traceMode == "none" {
		return
	}
	children := map[trace.SpanID][]tracetest.SpanStub{}
	for _, s := range spans {
		if s.Parent.IsValid() {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		}
	}
	for _, c := range children {
		slices.SortStableFunc(c, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	}
	t.printf("\ntrace of each user's run")
	if t.traceMode == "compact" {
		t.printf(" (compact: each step on one line with its lookup, L2 round trips folded; -trace full shows every span)")
	}
	t.printf("\n")
	for _, u := range users {
		for _, s := range spans {
			if s.SpanContext.SpanID() != u.root.SpanContext().SpanID() {
				continue
			}
			t.printf("%s's run, trace %s\n", u.name, s.SpanContext.TraceID().String()[:8])
			t.line("", s.Name, s.EndTime.Sub(s.StartTime))
			t.subtree(children, s.SpanContext.SpanID(), "")
		}
	}
}

// subtree prints the children of parent, each behind a branch.
func (t *textReport) subtree(children map[trace.SpanID][]tracetest.SpanStub, parent trace.SpanID, indent string) {
	kids := children[parent]
	for i := 0; i < len(kids); {
		// Fold a run of L2 round trips into one line in compact mode.
		j := i + 1
		if t.traceMode == "compact" && isL2(kids[i]) {
			for j < len(kids) && isL2(kids[j]) {
				j++
			}
		}
		last := j == len(kids)
		branch, more := "├─ ", "│  "
		if last {
			branch, more = "└─ ", "   "
		}
		if j-i > 1 {
			var ops []string
			var total time.Duration
			failed := 0
			for _, s := range kids[i:j] {
				ops = append(ops, strings.TrimPrefix(s.Name, acotel.SpanL2+" "))
				total += s.EndTime.Sub(s.StartTime)
				if s.Status.Code == codes.Error {
					failed++
				}
			}
			label := fmt.Sprintf("%s ×%d: %s", acotel.SpanL2, j-i, strings.Join(ops, ", "))
			if failed > 0 {
				label += fmt.Sprintf(" (%d failed)", failed)
			}
			t.line(indent+branch, label, total)
		} else {
			s := kids[i]
			text := label(s)
			if one := children[s.SpanContext.SpanID()]; t.traceMode == "compact" && s.Name == "agent.step" && len(one) == 1 {
				// A step's span has one child, the lookup or the tool:
				// one line for both.
				text = strings.TrimPrefix(text, "agent.step ") + "  " + label(one[0])
				s = one[0]
			}
			t.line(indent+branch, text, s.EndTime.Sub(s.StartTime))
			t.subtree(children, s.SpanContext.SpanID(), indent+more)
		}
		i = j
	}
}

func isL2(s tracetest.SpanStub) bool { return strings.HasPrefix(s.Name, acotel.SpanL2+" ") }

// label is a span's name with the attributes that matter here.
func label(s tracetest.SpanStub) string {
	attrs := map[string]string{}
	for _, kv := range s.Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	var b strings.Builder
	if s.Name == "agent.step" {
		fmt.Fprintf(&b, "agent.step #%s @%s", attrs["demo.step"], attrs["demo.instance"])
	} else {
		b.WriteString(s.Name)
	}
	if v, ok := attrs[string(acotel.KeyTier)]; ok && !isL2(s) {
		fmt.Fprintf(&b, "  tier=%s", v)
	}
	if v, ok := attrs[string(acotel.KeyScopeKind)]; ok {
		fmt.Fprintf(&b, " scope=%s", v)
	}
	if attrs[string(acotel.KeyStale)] == "true" {
		b.WriteString(" stale")
	}
	if s.Status.Code == codes.Error {
		b.WriteString("  ERROR")
		if v, ok := attrs[string(acotel.KeyErrorType)]; ok {
			b.WriteString(" " + v)
		}
	}
	return b.String()
}

// line prints one span: the tree prefix and label, then the duration right
// aligned.
func (t *textReport) line(prefix, label string, d time.Duration) {
	text := prefix + label
	pad := traceWidth - utf8.RuneCountInString(text) - 8
	if pad < 1 {
		pad = 1
	}
	t.printf("%s%s%8s\n", text, strings.Repeat(" ", pad), dur(d))
}
