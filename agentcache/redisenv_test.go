package agentcache

// The real-Redis test environment of this package's tests (the rc* names):
// a private redis-server per test, Stores on clients of their own, Caches
// that close when the test ends, and the helpers the tests over every L2
// (l2backends_test.go) share with them.

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/internal/testlog"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// rcEnv is one test's private redis-server and a key prefix of its own
// (internal/testkit/redisenv).
type rcEnv struct{ *redisenv.Env }

// rcStart starts a redis-server for t, with keys under an "ac-" prefix.
// It first arranges the goroutine leak check, so that check runs after
// every other cleanup of the test.
func rcStart(t *testing.T) *rcEnv {
	t.Helper()
	return &rcEnv{redisenv.Start(t, "ac-")}
}

// store returns a Store on a client of its own, as each pod has one. The
// client has ContextTimeoutEnabled, as the tier/redis constructors set it,
// so that Options.L2Timeout bounds every call; srv.Client's client would
// wait out go-redis's 3s read timeout on a paused server instead.
func (e *rcEnv) store(tune ...func(*goredis.Options)) *acredis.Store {
	e.T.Helper()
	o := e.Srv.Options()
	o.ContextTimeoutEnabled = true
	for _, f := range tune {
		f(o)
	}
	return redisenv.StoreOn(e.T, goredis.NewClient(o), e.Prefix)
}

// storeVia is store with the client pointed at addr (a fault proxy).
func (e *rcEnv) storeVia(addr string) *acredis.Store {
	e.T.Helper()
	return e.store(func(o *goredis.Options) { o.Addr = addr })
}

// rcNew opens a Cache that is closed when the test ends. Its warnings go to
// the test log. Unless the test sets one, its L2Timeout is a generous 2s:
// on a busy test machine the default 250ms can expire on a healthy Redis,
// and a timeout changes the path a lookup takes (it loads on its own
// instead of reading L2 or waiting for the fleet lock). Tests of timeouts
// set their own.
func rcNew(t *testing.T, o Options) *Cache {
	t.Helper()
	if o.Logger == nil {
		o.Logger = rcLogger(t)
	}
	if o.L2Timeout == 0 {
		o.L2Timeout = 2 * time.Second
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil && !errors.Is(err, ErrClosed) {
			t.Logf("Close: %v", err)
		}
	})
	return c
}

// rcLogger logs to t until the test's cleanups have run.
func rcLogger(t *testing.T) *slog.Logger {
	return testlog.New(t, slog.LevelDebug)
}

// rcSubscribed waits until c's invalidation subscription is active. Its
// first delivery is a Reset, which drops L1; tests that count L1 hits wait
// for it first.
func rcSubscribed(t *testing.T, cs ...*Cache) {
	t.Helper()
	for _, c := range cs {
		wait.For(t, 10*time.Second, "invalidation subscription", func() bool { return c.bus.resets.Load() >= 1 })
	}
}

// rcDrained reports whether every write c queued has been sent.
func rcDrained(c *Cache) bool {
	s := c.Stats()
	return s.WriteQueueDepth == 0 && s.WritesDone+s.WritesFailed+s.WritesSkipped+s.WritesFenced+s.WritesDropped >= s.WritesQueued
}

// rcProfile is a typed value with nested fields, to check that what another
// instance decodes from L2 is the same value.
type rcProfile struct {
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Tags   []string          `json:"tags"`
	Score  float64           `json:"score"`
	Limits map[string]int    `json:"limits"`
	Owner  *rcProfileOwner   `json:"owner"`
	Extra  map[string]string `json:"extra,omitempty"`
}

type rcProfileOwner struct {
	Team  string `json:"team"`
	Level int    `json:"level"`
}

func rcProfileFor(id string) rcProfile {
	return rcProfile{
		ID: id, Name: "Ada " + id, Tags: []string{"admin", "ops"}, Score: 0.75,
		Limits: map[string]int{"rpm": 60, "tpm": 90_000},
		Owner:  &rcProfileOwner{Team: "platform", Level: 3},
	}
}

// rcCounting returns a loader that counts its runs and returns value(key).
func rcCounting[T any](runs *atomic.Int32, value func(key string) T) func(context.Context, string) (T, error) {
	return func(ctx context.Context, key string) (T, error) {
		runs.Add(1)
		return value(key), nil
	}
}
