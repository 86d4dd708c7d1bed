package reliability

import (
	"strings"
	"testing"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/testkit/workload"
)

// The load of these tests is internal/testkit/workload's: the agent back end
// that cmd/soak drives too.

// wrapInstance wraps the workload's tools on c.
func wrapInstance(t testing.TB, name string, c *agentcache.Cache, b *workload.Tools) *workload.Instance {
	t.Helper()
	in, err := workload.Wrap(name, c, b)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// checkLoad fails t if any caller of w saw an error or a wrong answer.
func checkLoad(t testing.TB, w *workload.Load) {
	t.Helper()
	if n, first := w.Failed(); n > 0 {
		t.Errorf("%d of %d calls failed or got a wrong answer; first ones:\n  %s", n, w.Ops.Load(), strings.Join(first, "\n  "))
	}
}
