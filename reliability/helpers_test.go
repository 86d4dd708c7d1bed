// Package reliability is agentcache's reliability and security suite: real
// redis-server processes from internal/redistest, faults injected between
// the cache and Redis, a Redis Cluster that fails over, hostile arguments,
// ACL and TLS, and a short soak. The tests use only the public API of the
// library (agentcache, resource, scope, tier/...), as an application would;
// they look at Redis directly only to check or tamper with what the cache
// stored. RELIABILITY.md at the root of the repository describes each
// scenario, its promise and the figures of the last run.
package reliability

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/internal/testlog"
	"github.com/agentcache/agentcache-go/resource"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// The fault scenarios run with short timeouts so that a fault is felt, and
// recovered from, within a fraction of a second.
const (
	l2Timeout   = 100 * time.Millisecond // agentcache Options.L2Timeout
	ioTimeout   = 100 * time.Millisecond // go-redis ReadTimeout and WriteTimeout
	dialTimeout = 200 * time.Millisecond
)

// faultBreaker opens after three consecutive failures and probes every
// 100-400ms, so an outage opens it at once and a recovery closes it fast.
var faultBreaker = agentcache.BreakerOptions{Failures: 3, OpenFor: 100 * time.Millisecond, MaxOpenFor: 400 * time.Millisecond}

// env is one test's private redis-server and a key prefix of its own
// (internal/testkit/redisenv).
type env struct{ *redisenv.Env }

// startRedis starts a redis-server for t, with keys under a "rel-" prefix.
// It arranges the leak check first, so that the check runs after every
// other cleanup of the test.
func startRedis(t *testing.T, cfg ...redistest.Config) *env {
	t.Helper()
	return &env{redisenv.Start(t, "rel-", cfg...)}
}

// clientOptions is the go-redis configuration of every instance in the
// fault scenarios: short I/O timeouts and ContextTimeoutEnabled, so that
// Options.L2Timeout bounds each call even on a blackholed connection.
func clientOptions(addr string) *goredis.Options {
	return &goredis.Options{
		Addr:                  addr,
		DialTimeout:           dialTimeout,
		ReadTimeout:           ioTimeout,
		WriteTimeout:          ioTimeout,
		ContextTimeoutEnabled: true,
	}
}

// store returns a Store on a client of its own to addr (the server, or a
// fault proxy in front of it), as each pod has one.
func (e *env) store(addr string, tune ...func(*goredis.Options)) *acredis.Store {
	e.T.Helper()
	o := clientOptions(addr)
	for _, f := range tune {
		f(o)
	}
	return redisenv.StoreOn(e.T, goredis.NewClient(o), e.Prefix)
}

// subscribers returns how many instances listen to the invalidation
// channel of the prefix (agentcache publishes on prefix+"inv").
func (e *env) subscribers() int64 {
	n, err := e.Raw.PubSubNumSub(context.Background(), e.Prefix+"inv").Result()
	if err != nil {
		return -1
	}
	return n[e.Prefix+"inv"]
}

// waitSubscribed waits until n instances listen for invalidations. Each
// instance's first delivery drops its L1, so tests that count hits start
// after it.
func (e *env) waitSubscribed(n int) {
	e.T.Helper()
	wait.For(e.T, 10*time.Second, fmt.Sprintf("%d subscribers", n), func() bool { return e.subscribers() >= int64(n) })
	time.Sleep(20 * time.Millisecond) // the Reset reaches the cache just after SUBSCRIBE is confirmed
}

// newCache opens a Cache that is closed when the test ends. Warnings go to
// the test log.
func newCache(t testing.TB, o agentcache.Options) *agentcache.Cache {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if o.Tuning.LogInterval == 0 {
		o.Tuning.LogInterval = time.Second
	}
	c, err := agentcache.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil && !errors.Is(err, agentcache.ErrClosed) {
			t.Logf("Close: %v", err)
		}
	})
	return c
}

// faultOptions are the cache options of the fault scenarios.
func faultOptions(l2 *acredis.Store) agentcache.Options {
	return agentcache.Options{
		L2:        l2,
		L2Timeout: l2Timeout,

		MaxEpochAge: time.Second, Tuning: agentcache.

			// testLogger logs to t until the test's cleanups have run.
			TuningOptions{Breaker: faultBreaker},
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelInfo)
}

// breakerLog records the breaker states a cache goes through, as
// Stats().Breaker reports them, by sampling it every millisecond.
type breakerLog struct {
	mu     sync.Mutex
	states []string // distinct consecutive states, in order
	stop   chan struct{}
	done   chan struct{}
}

func watchBreaker(c *agentcache.Cache) *breakerLog {
	b := &breakerLog{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			b.note(c.Stats().Breaker)
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
	}()
	return b
}

func (b *breakerLog) note(s string) {
	b.mu.Lock()
	if n := len(b.states); n == 0 || b.states[n-1] != s {
		b.states = append(b.states, s)
	}
	b.mu.Unlock()
}

// Stop ends the sampling and returns the states seen.
func (b *breakerLog) Stop() []string {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.states)
}

// sawOpenThenClosed reports whether states went closed → open → … → closed.
func sawOpenThenClosed(states []string) bool {
	opened := false
	for _, s := range states {
		if s == "open" {
			opened = true
		}
		if opened && s == "closed" {
			return true
		}
	}
	return false
}

// latencies collects call durations with their start times and kinds.
type latencies struct {
	mu sync.Mutex
	r  []callTime
}

type callTime struct {
	start time.Time
	d     time.Duration
	kind  string
}

func (l *latencies) add(start time.Time, d time.Duration, kind string) {
	l.mu.Lock()
	l.r = append(l.r, callTime{start, d, kind})
	l.mu.Unlock()
}

// between returns the calls that started in [from, to).
func (l *latencies) between(from, to time.Time) *latencies {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := &latencies{}
	for _, c := range l.r {
		if !c.start.Before(from) && c.start.Before(to) {
			out.r = append(out.r, c)
		}
	}
	return out
}

// summary returns the count, median, 99th percentile and maximum.
func (l *latencies) summary() (n int, p50, p99, maxD time.Duration) {
	l.mu.Lock()
	d := make([]time.Duration, len(l.r))
	for i, c := range l.r {
		d[i] = c.d
	}
	l.mu.Unlock()
	if len(d) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(d)
	return len(d), d[len(d)/2], d[len(d)*99/100], d[len(d)-1]
}

func (l *latencies) max() time.Duration {
	_, _, _, m := l.summary()
	return m
}

// slowest returns the kind of the slowest call.
func (l *latencies) slowest() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m callTime
	for _, c := range l.r {
		if c.d > m.d {
			m = c
		}
	}
	return m.kind
}

func (l *latencies) String() string {
	n, p50, p99, m := l.summary()
	return fmt.Sprintf("%d calls, p50 %v, p99 %v, max %v (%s)", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), m.Round(time.Microsecond), l.slowest())
}

// redisInfo returns one field of INFO from the server.
func (e *env) redisInfo(section, field string) string {
	s, err := e.Raw.Info(context.Background(), section).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// getWithin calls get with a deadline far shorter than the minute-long
// leases of the lease tests: a call blocked by a lease until it expires
// fails with context.DeadlineExceeded.
func getWithin(ctx context.Context, get func(context.Context, string) (string, error), q string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return get(ctx, q)
}

// wrapWarm wraps tool on c as res and calls it once, which confirms the
// cache's epochs with Redis.
func wrapWarm(t *testing.T, c *agentcache.Cache, res resource.Resource, tool func(context.Context, string) (string, error)) func(context.Context, string) (string, error) {
	t.Helper()
	get, err := agentcache.Wrap(c, res, tool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(context.Background(), "warm"); err != nil {
		t.Fatal(err)
	}
	return get
}

// waitLeasesReleased waits until no fleet-lock lease is left in Redis, and
// fails t if one is still there after 10s. The tests that call it use
// leases of a minute, so a lease that goes away was released, not expired.
func waitLeasesReleased(t *testing.T, e *env, whose string) {
	t.Helper()
	wait.For(t, 10*time.Second, "the lease of "+whose+" released", func() bool {
		left, err := e.Raw.Keys(context.Background(), e.Prefix+"lk:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(left) == 0
	})
}

// openBreaker makes c's breaker open by looking up new keys while L2 does
// not answer.
func openBreaker(t *testing.T, c *agentcache.Cache) {
	t.Helper()
	n := 0
	wait.For(t, 5*time.Second, "the breaker to open", func() bool {
		n++
		_, _ = agentcache.Get(context.Background(), c, "poke-"+strconv.Itoa(n), func(context.Context, string) (int, error) { return n, nil })
		return c.Stats().Breaker == "open"
	})
}

// closeBreaker looks up new keys until c's breaker is closed again.
func closeBreaker(t *testing.T, c *agentcache.Cache) {
	t.Helper()
	n := 0
	wait.For(t, 5*time.Second, "the breaker to close", func() bool {
		n++
		_, _ = agentcache.Get(context.Background(), c, "probe-"+strconv.Itoa(n), func(context.Context, string) (int, error) { return n, nil })
		return c.Stats().Breaker == "closed"
	})
}
