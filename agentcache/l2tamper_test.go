package agentcache

// Reaching into a test's L2 past the cache, as an operator or another
// application would: reading and writing keys through one more store on
// the keyspace (l2Backends gives as many as asked), commands sent to every
// node of a Redis L2, and an in-memory L2 whose backend is at hand to make
// it fail.

import (
	"context"
	"strings"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/fake"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// rawGet reads key (under the store's prefix) from raw, an L2 store that no
// cache uses.
func rawGet(t *testing.T, raw tier.Remote, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := raw.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("reading %s from L2: %v", key, err)
	}
	return v, ok
}

// rawSet writes v at key (under the store's prefix) through raw, with no
// expiry.
func rawSet(t *testing.T, raw tier.Remote, key string, v []byte) {
	t.Helper()
	if err := raw.Set(context.Background(), key, v, 0); err != nil {
		t.Fatalf("writing %s to L2: %v", key, err)
	}
}

// onRedisMasters runs fn with a client of every master behind raw: the
// server of a one-server Store of tier/redis, each master of a cluster's.
// It reports false, running nothing, if raw is no Redis store (the
// in-memory L2).
func onRedisMasters(t *testing.T, raw tier.Remote, fn func(ctx context.Context, c *goredis.Client) error) bool {
	t.Helper()
	s, ok := raw.(*acredis.Store)
	if !ok {
		return false
	}
	ctx := context.Background()
	var err error
	switch c := s.Client().(type) {
	case *goredis.Client:
		err = fn(ctx, c)
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, fn)
	default:
		t.Fatalf("a Redis store on a %T", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// redisKeys returns the keys of raw's keyspace that match pattern (a SCAN
// MATCH pattern under the store's prefix) on every master, with the prefix
// removed, and false if raw is no Redis store.
func redisKeys(t *testing.T, raw tier.Remote, pattern string) ([]string, bool) {
	t.Helper()
	s, ok := raw.(*acredis.Store)
	if !ok {
		return nil, false
	}
	var mu sync.Mutex
	var keys []string
	onRedisMasters(t, raw, func(ctx context.Context, c *goredis.Client) error {
		iter := c.Scan(ctx, 0, s.Prefix()+pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, strings.TrimPrefix(iter.Val(), s.Prefix()))
			mu.Unlock()
		}
		return iter.Err()
	})
	return keys, true
}

// memL2 is the in-memory L2 of l2Backends with its backend at hand, for a
// test that makes it fail (Backend.SetError) or runs it on a clock of its
// own: n stores sharing one keyspace.
func memL2(t *testing.T, n int, o fake.BackendOptions) ([]tier.Remote, *fake.Backend) {
	b := fake.NewBackend(o)
	t.Cleanup(func() { b.Close() })
	stores := make([]tier.Remote, n)
	for i := range stores {
		stores[i] = b.Remote("fleet:")
	}
	return stores, b
}
