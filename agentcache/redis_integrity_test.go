package agentcache

// Integrity of L2 values (issue 16): a value is bound to the key it was
// written for, a read refuses one found under another key, and with
// Options.Secret nobody without the secret can make one a reader accepts.

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

var integritySecret = []byte("a secret the fleet shares, 32 b.")

// integrityTool answers with whose and what it was asked for, counting runs.
func integrityTool(t *testing.T, c *Cache, r resource.Resource, runs *atomic.Int32) func(context.Context, string) (string, error) {
	t.Helper()
	get, err := Wrap(c, r, func(ctx context.Context, q string) (string, error) {
		runs.Add(1)
		id, _ := scope.ID(ctx, r.Scope)
		return "doc " + q + " for " + id, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return get
}

// rcOneKey returns the one entry key under the prefix that contains part.
func (e *rcEnv) oneKey(part string) string {
	e.T.Helper()
	var found []string
	for _, k := range e.Keys("{*") {
		if strings.Contains(k, part) && !strings.HasSuffix(k, ":ep") {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		e.T.Fatalf("keys containing %q: %q, want one", part, found)
	}
	return found[0]
}

// copyKey copies from's value (and expiry) to to, as someone with access to
// Redis can.
func (e *rcEnv) copyKey(from, to string) {
	e.T.Helper()
	ctx := context.Background()
	v, err := e.Raw.Get(ctx, from).Bytes()
	if err != nil {
		e.T.Fatal(err)
	}
	if err := e.Raw.Set(ctx, to, v, time.Hour).Err(); err != nil {
		e.T.Fatal(err)
	}
}

func TestRedisValueCopiedToAnotherKeyIsNotServed(t *testing.T) {
	for _, secret := range [][]byte{nil, integritySecret} {
		name := "without a secret"
		if secret != nil {
			name = "with a secret"
		}
		t.Run(name, func(t *testing.T) {
			e := rcStart(t)
			ctx := context.Background()
			var runs atomic.Int32
			// A global resource: the value for "public" copied to the key
			// of "secret" (same epochs, so the generation matches).
			docs := resource.Resource{Name: "docs", Scope: scope.Global, TTL: time.Hour}
			a := rcNew(t, Options{L2: e.store(), Secret: secret})
			if _, err := integrityTool(t, a, docs, &runs)(ctx, "public"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "A's write", func() bool { return rcDrained(a) && a.Stats().WritesDone >= 1 })
			from := e.oneKey("docs@")
			h, err := resource.HashValue("secret", resource.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			to := e.Prefix + string(keyspace.AppendEntryKey(nil, docs.ID(), "", h.String()))
			e.copyKey(from, to)
			b := rcNew(t, Options{L2: e.store(), Secret: secret})
			got, err := integrityTool(t, b, docs, &runs)(ctx, "secret")
			if err != nil || got != "doc secret for " {
				t.Errorf("B asked for secret and got %q, %v; want the tool's own answer", got, err)
			}
			if s := b.Stats(); s.L2Corrupt != 1 || s.L2Hits != 0 {
				t.Errorf("B: L2Corrupt %d, L2Hits %d; want the copied value counted as corrupt, never a hit", s.L2Corrupt, s.L2Hits)
			}
			// A value of alice's per-user resource copied to bob's key,
			// with bob's epochs set to alice's so the generation matches.
			carts := resource.Resource{Name: "carts", Scope: scope.User, TTL: time.Hour}
			if _, err := integrityTool(t, a, carts, &runs)(scope.WithUser(ctx, "alice"), "mine"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "A's write", func() bool { return rcDrained(a) && a.Stats().WritesDone >= 2 })
			alice := e.oneKey("carts@0:u:alice}")
			bob := strings.Replace(alice, "u:alice}", "u:bob}", 1)
			e.copyKey(alice, bob)
			e.copyKey(e.Prefix+keyspace.ScopeEpochKey("u:alice"), e.Prefix+keyspace.ScopeEpochKey("u:bob"))
			e.copyKey(rcScopedEpochKey(e.Prefix, carts, "alice"), rcScopedEpochKey(e.Prefix, carts, "bob"))
			c := rcNew(t, Options{L2: e.store(), Secret: secret})
			got, err = integrityTool(t, c, carts, &runs)(scope.WithUser(ctx, "bob"), "mine")
			if err != nil || got != "doc mine for bob" {
				t.Errorf("bob got %q, %v; want his own answer, never alice's", got, err)
			}
			if s := c.Stats(); s.L2Corrupt != 1 || s.L2Hits != 0 {
				t.Errorf("C: L2Corrupt %d, L2Hits %d; want alice's copied value counted as corrupt", s.L2Corrupt, s.L2Hits)
			}
		})
	}
}

// With a secret, a value written by an instance without it (or with
// another) is refused: nobody without the secret can plant one. Without a
// secret, a value fresh for far longer than its resource's TTL is refused
// too: the cache never writes one.
func TestRedisForgedValuesAreRefused(t *testing.T) {
	e := rcStart(t)
	ctx := context.Background()
	docs := resource.Resource{Name: "docs", Scope: scope.Global, TTL: time.Minute}
	var runs atomic.Int32
	plain := rcNew(t, Options{L2: e.store()})
	if _, err := integrityTool(t, plain, docs, &runs)(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the write", func() bool { return rcDrained(plain) && plain.Stats().WritesDone >= 1 })
	keyed := rcNew(t, Options{L2: e.store(), Secret: integritySecret})
	if _, err := integrityTool(t, keyed, docs, &runs)(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if s := keyed.Stats(); runs.Load() != 2 || s.L2Hits != 0 || s.L2Corrupt != 1 {
		t.Errorf("a keyed instance over an unkeyed value: %d runs, %d L2 hits, %d corrupt; want it refused and the tool run", runs.Load(), s.L2Hits, s.L2Corrupt)
	}
	waitFor(t, 5*time.Second, "the keyed write", func() bool { return rcDrained(keyed) && keyed.Stats().WritesDone >= 1 })
	peer := rcNew(t, Options{L2: e.store(), Secret: integritySecret})
	if got, err := integrityTool(t, peer, docs, &runs)(ctx, "q"); err != nil || runs.Load() != 2 || peer.Stats().L2Hits != 1 {
		t.Errorf("an instance with the same secret: %q, %v, %d runs; want an L2 hit", got, err, runs.Load())
	}
	other := rcNew(t, Options{L2: e.store(), Secret: []byte("another secret, sixteen bytes +")})
	if _, err := integrityTool(t, other, docs, &runs)(ctx, "q"); err != nil || runs.Load() != 3 {
		t.Errorf("an instance with another secret: %v, %d runs; want the value refused (3 runs)", err, runs.Load())
	}

	// A hand-built envelope, bound to its key as an unkeyed cache binds it
	// but fresh for a year.
	h, err := resource.HashValue("year", resource.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	key := string(keyspace.AppendEntryKey(nil, docs.ID(), "", h.String()))
	st := plain.stampFor(ctx, &lookup{r: plain.resources[docs.ID()]})
	gen := st.Token()
	forged := keyspace.NewSealer(nil).Append(nil, key, keyspace.KindValue, 1, gen, time.Now().Add(365*24*time.Hour), 0, []byte(`"planted"`))
	if err := e.Raw.Set(ctx, e.Prefix+key, forged, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	fresh := rcNew(t, Options{L2: e.store()})
	if got, err := integrityTool(t, fresh, docs, &runs)(ctx, "year"); err != nil || got == "planted" || fresh.Stats().L2Corrupt != 1 {
		t.Errorf("a value fresh for a year under a 1m resource: %q, %v, %d corrupt; want it refused", got, err, fresh.Stats().L2Corrupt)
	}
}
