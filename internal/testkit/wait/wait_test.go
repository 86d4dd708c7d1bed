package wait

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf records instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = r.TB.Name() + ": " + strings.TrimSpace(fmt.Sprintf(format, args...))
}

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	For(r, time.Minute, "three polls", func() bool { n++; return n == 3 })
	if r.failed != "" || n != 3 {
		t.Fatalf("For polled %d times and failed with %q; want 3 polls and no failure", n, r.failed)
	}
}

func TestUntilFailsWithTheLastAnswerAfterTheDeadline(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	Until(r, 20*time.Millisecond, func() string { n++; return "still " + strconv.Itoa(n) })
	if !strings.Contains(r.failed, "still "+strconv.Itoa(n)+": not within 20ms") {
		t.Fatalf("Until failed with %q after %d polls; want the last answer and the deadline", r.failed, n)
	}
}
