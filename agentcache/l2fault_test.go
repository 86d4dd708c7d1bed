package agentcache

// An L2 that fails or stalls is never the caller's error (issue 2): the
// caller gets the loader's value, L1 goes on serving, the breaker keeps a
// dead L2 from costing a timeout per call, and once L2 is back the fleet
// uses it again.

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// An L2 that is down (every call fails at once, as when Redis's process is
// gone) is never an error, and L2 is used again once it is back. The
// cluster is left out: taking all of its masters down and back adds only
// time here (a cluster that loses and regains masters is the reliability
// package's TestClusterRecoversSoonAfterAMasterDies).
func TestL2DownIsNeverAnErrorThenRecovers(t *testing.T) {
	for _, backend := range l2Backends[:2] {
		t.Run(backend.name, func(t *testing.T) {
			e := backend.open(t, 2)
			o := Options{
				L2Timeout: 200 * time.Millisecond, Tuning: TuningOptions{Breaker: BreakerOptions{Failures: 3, OpenFor: 300 * time.Millisecond, MaxOpenFor: 300 * time.Millisecond}},
			}
			o.L2 = e.stores[0]
			a := rcNew(t, o)
			o.L2 = e.stores[1]
			b := rcNew(t, o)
			ctx := context.Background()
			var runs atomic.Int32
			value := func(key string) string { return "value of " + key }
			load := rcCounting(&runs, value)
			if v, err := Get(ctx, a, "before", load); err != nil || v != value("before") {
				t.Fatalf("before L2 went down: %q, %v", v, err)
			}

			e.Down()
			for i := 0; i < 30; i++ {
				k := fmt.Sprintf("down-%d", i)
				for _, c := range []*Cache{a, b} {
					if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
						t.Fatalf("with L2 down: Get(%s) = %q, %v; want the loader's value and no error", k, v, err)
					}
				}
			}
			// What L1 holds is still served.
			if v, err := Get(ctx, a, "before", load); err != nil || v != value("before") {
				t.Fatalf("L1 entry with L2 down: %q, %v", v, err)
			}
			for name, c := range map[string]*Cache{"A": a, "B": b} {
				s := c.Stats()
				if s.Breaker == "closed" || s.L2Errors < 1 {
					t.Fatalf("%s with L2 down: breaker %s after %d L2 errors; want it open", name, s.Breaker, s.L2Errors)
				}
				// Each call would try L2 two or three times; the open
				// breaker lets only its probes through.
				if s.L2Errors >= 30 {
					t.Fatalf("%s: %d L2 errors over 31 calls; a dead L2 must not cost a timeout per call", name, s.L2Errors)
				}
			}

			e.Up()
			// Each call may probe the breaker; both close again.
			i := 0
			for name, c := range map[string]*Cache{"A": a, "B": b} {
				wait.For(t, 10*time.Second, name+"'s breaker to close", func() bool {
					i++
					k := fmt.Sprintf("probe-%d", i)
					if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
						t.Fatalf("while L2 comes back: Get(%s) = %q, %v", k, v, err)
					}
					return c.Stats().Breaker == "closed"
				})
			}
			// L2 is used again: what A loads, B reads from L2.
			var bRuns atomic.Int32
			fromB := rcCounting(&bRuns, func(string) string { return "loaded by B" })
			hits := b.Stats().L2Hits
			wait.For(t, 10*time.Second, "an L2 hit on B once L2 is back", func() bool {
				i++
				k := fmt.Sprintf("after-%d", i)
				if _, err := Get(ctx, a, k, load); err != nil {
					t.Fatalf("A once L2 is back: %v", err)
				}
				v, err := Get(ctx, b, k, fromB)
				if err != nil {
					t.Fatalf("B once L2 is back: %v", err)
				}
				return v == value(k) && b.Stats().L2Hits > hits
			})
		})
	}
}

// Calls to an L2 that does not answer (a paused server, a connection that
// is blackholed) end at L2Timeout, and the caller gets the loader's value.
// Only real Redis: tier/fake has no call that hangs until its context
// ends.
func TestCallsToAHungL2EndAtL2Timeout(t *testing.T) {
	for _, mode := range []string{"paused", "blackholed"} {
		t.Run(mode, func(t *testing.T) {
			e := rcStart(t)
			var fault, heal func()
			var store *acredis.Store
			switch mode {
			case "paused":
				store, fault, heal = e.store(), e.Srv.Pause, e.Srv.Resume
			case "blackholed":
				p := e.Proxy()
				store = e.storeVia(p.Addr())
				fault, heal = func() { p.Blackhole(true) }, func() { p.Blackhole(false) }
			}
			c := rcNew(t, Options{L2: store, L2Timeout: 50 * time.Millisecond})
			t.Cleanup(heal) // before c closes
			ctx := context.Background()
			var runs atomic.Int32
			value := func(key string) string { return "value of " + key }
			load := rcCounting(&runs, value)
			if v, err := Get(ctx, c, "warm", load); err != nil || v != value("warm") {
				t.Fatalf("healthy: %q, %v", v, err)
			}
			entries := len(e.Keys("kv:*"))

			fault()
			for i := 0; i < 10; i++ {
				k := fmt.Sprintf("slow-%d", i)
				if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
					t.Fatalf("L2 %s: Get(%s) = %q, %v; want the loader's value", mode, k, v, err)
				}
			}
			if v, err := Get(ctx, c, "warm", load); err != nil || v != value("warm") {
				t.Fatalf("L2 %s: L1 entry = %q, %v", mode, v, err)
			}
			s := c.Stats()
			if s.L2Errors < 5 || s.Breaker == "closed" {
				t.Fatalf("L2 %s: %d L2 errors counted, breaker %s; want the timeouts counted and the breaker open", mode, s.L2Errors, s.Breaker)
			}

			heal()
			i := 0
			wait.For(t, 10*time.Second, "L2 in use again", func() bool {
				i++
				k := fmt.Sprintf("healed-%d", i)
				if v, err := Get(ctx, c, k, load); err != nil || v != value(k) {
					t.Fatalf("after healing: Get(%s) = %q, %v", k, v, err)
				}
				return c.Stats().Breaker == "closed" && len(e.Keys("kv:*")) > entries
			})
		})
	}
}
