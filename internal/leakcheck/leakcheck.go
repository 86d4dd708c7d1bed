// Package leakcheck fails a test whose goroutines outlive it.
package leakcheck

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// watched are the code paths whose goroutines a test must not leave behind:
// this module's, go-redis's and otter's.
var watched = []string{"agentcache/agentcache-go/", "redis/go-redis", "maypok86/otter"}

// Check fails tb if goroutines of this module, go-redis or otter that start
// after the call are still running, five seconds after tb's cleanups. Call
// it first in a test, so that its check runs after every other cleanup.
func Check(tb testing.TB) {
	tb.Helper()
	before := map[string]bool{}
	for _, g := range goroutines() {
		before[id(g)] = true
	}
	tb.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaked := leftOver(before)
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("%d goroutines outlived the test:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// leftOver returns the stacks of the watched goroutines not in before.
func leftOver(before map[string]bool) []string {
	var leaked []string
	for _, g := range goroutines() {
		if before[id(g)] {
			continue
		}
		for _, w := range watched {
			if strings.Contains(g, w) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return leaked
}

// goroutines returns the stacks of every goroutine but the caller's.
func goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Split(string(buf), "\n\n")[1:]
}

// id is a stack's first line up to its state: "goroutine 42".
func id(stack string) string {
	head, _, _ := strings.Cut(stack, " [")
	return head
}
