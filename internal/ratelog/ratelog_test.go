package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOneLinePerKindPerInterval: within an interval a kind is written once;
// the first line after it carries the count held back; kinds are apart.
func TestOneLinePerKindPerInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	r := New(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second, func() time.Time { return now })
	for range 5 {
		r.Warn("a", "first kind", "n", 1)
	}
	r.Warn("b", "second kind")
	if got := strings.Count(buf.String(), "first kind"); got != 1 {
		t.Fatalf("%d lines of kind a within the interval, want 1:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "second kind") {
		t.Fatalf("kind b was held back by kind a:\n%s", buf.String())
	}
	now = now.Add(10 * time.Second)
	buf.Reset()
	r.Warn("a", "first kind", "n", 2)
	if out := buf.String(); !strings.Contains(out, "suppressed=4") || !strings.Contains(out, "n=2") {
		t.Fatalf("the line after the interval = %q, want n=2 and suppressed=4", out)
	}
	buf.Reset()
	now = now.Add(10 * time.Second)
	r.Warn("a", "first kind")
	if strings.Contains(buf.String(), "suppressed") {
		t.Fatalf("a line with nothing held back says suppressed: %q", buf.String())
	}
}

// counted is a fmt.Stringer that counts how often it is formatted.
type counted struct{ n *int }

func (c counted) String() string { *c.n++; return "x" }

// TestWarnfFormatsOnlyWhatItWrites: a Warnf line held back is never
// formatted, and the one written after the interval counts it.
func TestWarnfFormatsOnlyWhatItWrites(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	r := New(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second, func() time.Time { return now })
	formatted := 0
	for range 100 {
		r.Warnf("p: ", "dial %v failed", counted{&formatted})
	}
	if formatted != 1 || strings.Count(buf.String(), "p: dial x failed") != 1 {
		t.Fatalf("100 lines in one interval formatted %d times and wrote:\n%s; want one of each", formatted, buf.String())
	}
	now = now.Add(10 * time.Second)
	buf.Reset()
	r.Warnf("p: ", "dial %v failed", counted{&formatted})
	if !strings.Contains(buf.String(), "suppressed=99") || formatted != 2 {
		t.Fatalf("the line after the interval = %q (formatted %d times); want suppressed=99, 2", buf.String(), formatted)
	}
}
