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
