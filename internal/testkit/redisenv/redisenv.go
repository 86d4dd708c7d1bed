// Package redisenv is the one Redis test environment of the packages whose
// tests run the cache over a real redis-server (agentcache, reliability):
// a private server from internal/redistest, a key prefix derived from the
// test's name, a raw client to inspect and tamper with what the cache
// stored, and Stores that are closed when the test ends. A missing
// redis-server fails the test, as internal/redistest does.
package redisenv

import (
	"context"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/leakcheck"
	"github.com/agentcache/agentcache-go/internal/redistest"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// Env is one test's private redis-server and a key prefix of its own.
type Env struct {
	T      testing.TB
	Srv    *redistest.Server
	Prefix string          // Prefix(T, base)
	Raw    *goredis.Client // inspects and tampers with Redis directly
}

// Start starts a redis-server for t, with the keys of the test under
// Prefix(t, base). It first arranges the goroutine leak check
// (internal/leakcheck), so that the check runs after every other cleanup
// of the test.
func Start(t testing.TB, base string, cfg ...redistest.Config) *Env {
	t.Helper()
	leakcheck.Check(t)
	srv := redistest.Start(t, cfg...)
	return &Env{T: t, Srv: srv, Prefix: Prefix(t, base), Raw: srv.Client(t)}
}

// Prefix is a key prefix derived from the test's name: base, then the
// last 80 characters of the name with every character other than an ASCII
// letter or digit replaced by '-', then ':'.
func Prefix(t testing.TB, base string) string {
	name := strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, t.Name())
	if len(name) > 80 {
		name = name[len(name)-80:]
	}
	return base + name + ":"
}

// StoreOn returns a Store with prefix on client; both are closed when the
// test ends, after the caches that use them (which the test opened later,
// so their cleanups run first).
func StoreOn(t testing.TB, client goredis.UniversalClient, prefix string) *acredis.Store {
	t.Helper()
	t.Cleanup(func() { _ = client.Close() })
	s, err := acredis.New(client, acredis.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Proxy starts a fault proxy in front of the server.
func (e *Env) Proxy() *redistest.Proxy {
	e.T.Helper()
	return redistest.StartProxy(e.T, e.Srv.Addr())
}

// Keys returns the keys under the prefix that match pattern (a SCAN MATCH
// pattern relative to the prefix).
func (e *Env) Keys(pattern string) []string {
	e.T.Helper()
	var out []string
	var cursor uint64
	for {
		ks, next, err := e.Raw.Scan(context.Background(), cursor, e.Prefix+pattern, 1000).Result()
		if err != nil {
			e.T.Fatalf("SCAN %s%s: %v", e.Prefix, pattern, err)
		}
		out = append(out, ks...)
		if next == 0 {
			return out
		}
		cursor = next
	}
}
