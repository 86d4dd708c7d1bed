package agentcache

// Invalidation across a fleet, over every L2 that can carry it (the
// l2Backends table, and the faults each can be put through): instances
// sharing one L2 with separate L1s, one user's entries invalidated on all
// of them and nobody else's, a load raced with an invalidation, lost
// invalidation messages, an L2 that cannot be reached or refuses writes
// during an invalidation, and the TTL of the epochs that invalidation moves.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/fake"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// The get_cart fixtures keep the rc names they had when these tests ran on
// one redis-server only: other test files may use them.

var (
	rcCartRes    = resource.Resource{Name: "rc_cart", Scope: scope.User, TTL: time.Minute, Version: 2}
	rcWeatherRes = resource.Resource{Name: "rc_weather", Scope: scope.Global, TTL: time.Minute}
)

// rcShop is a cart store shared by every instance of a test; its get_cart
// answer names the user it was computed for.
type rcShop struct {
	mu          sync.Mutex
	items       map[string][]string
	runs        map[string]int // get_cart runs per user
	weatherRuns atomic.Int32
}

func newRCShop(items map[string][]string) *rcShop {
	return &rcShop{items: items, runs: map[string]int{}}
}

func (s *rcShop) cart(ctx context.Context, _ cartArgs) (cart, error) {
	u, ok := scope.UserFrom(ctx)
	if !ok {
		return cart{}, errors.New("get_cart ran without a user")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs[u]++
	return cart{User: u, Items: slices.Clone(s.items[u])}, nil
}

func (s *rcShop) add(user, item string) {
	s.mu.Lock()
	s.items[user] = append(s.items[user], item)
	s.mu.Unlock()
}

func (s *rcShop) addTool(ctx context.Context, item string) (int, error) {
	u, ok := scope.UserFrom(ctx)
	if !ok {
		return 0, errors.New("add_to_cart ran without a user")
	}
	s.add(u, item)
	return 1, nil
}

func (s *rcShop) cartRuns(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[user]
}

func (s *rcShop) weather(ctx context.Context, city string) (string, error) {
	s.weatherRuns.Add(1)
	return "sunny in " + city, nil
}

type rcCartTool = func(context.Context, cartArgs) (cart, error)

// rcWrapCart wraps the shop's get_cart on c.
func rcWrapCart(t *testing.T, c *Cache, shop *rcShop) rcCartTool {
	t.Helper()
	get, err := Wrap(c, rcCartRes, shop.cart)
	if err != nil {
		t.Fatal(err)
	}
	return get
}

// rcCartOf reads user's cart and checks it is user's.
func rcCartOf(t *testing.T, get rcCartTool, user string) []string {
	t.Helper()
	got, err := get(scope.WithUser(context.Background(), user), cartArgs{Currency: "EUR"})
	if err != nil {
		t.Fatalf("get_cart for %s: %v", user, err)
	}
	if got.User != user {
		t.Fatalf("get_cart for %s returned %s's cart", user, got.User)
	}
	return got.Items
}

// rcScopedEpochKey is the L2 key (with prefix) of r's epoch in user's scope.
func rcScopedEpochKey(prefix string, r resource.Resource, user string) string {
	return prefix + keyspace.ResourceScopeEpochKey(r.ID(), keyspace.Segment(r.Scope, user))
}

// Three instances share one L2, each with its own L1. A mutation on B
// invalidates alice's cart: B serves her new cart at once, A and C once
// the invalidation reaches them, and none the old one after that; bob's
// cart and a global forecast stay cached everywhere. The same with
// Invalidate and an explicit target. Each invalidation reloads the cart
// once for the whole fleet.
func TestInvalidatingOneUsersCartReachesEveryInstance(t *testing.T) {
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 3)
			shop := newRCShop(map[string][]string{"alice": {"book"}, "bob": {"pen"}})
			cs := make([]*Cache, 3)
			carts := make([]rcCartTool, 3)
			weather := make([]func(context.Context, string) (string, error), 3)
			for i := range cs {
				cs[i] = rcNew(t, Options{L2: stores[i]})
				carts[i] = rcWrapCart(t, cs[i], shop)
				weather[i], _ = Wrap(cs[i], rcWeatherRes, shop.weather)
			}
			rcSubscribed(t, cs...)
			b, c := cs[1], cs[2]
			ctx := context.Background()
			forecast := func(i int) {
				t.Helper()
				if v, err := weather[i](ctx, "paris"); err != nil || v != "sunny in paris" {
					t.Fatalf("weather on instance %d: %q, %v", i, v, err)
				}
			}

			// Loaded on A, an L2 hit on B and C, then an L1 hit everywhere.
			if got := rcCartOf(t, carts[0], "alice"); !slices.Equal(got, []string{"book"}) {
				t.Fatalf("alice's cart on A: %q", got)
			}
			rcCartOf(t, carts[0], "bob")
			forecast(0)
			for i, inst := range []*Cache{b, c} {
				before := inst.Stats().L2Hits
				if got := rcCartOf(t, carts[i+1], "alice"); !slices.Equal(got, []string{"book"}) {
					t.Fatalf("alice's cart on instance %d: %q", i+1, got)
				}
				rcCartOf(t, carts[i+1], "bob")
				forecast(i + 1)
				if d := inst.Stats().L2Hits - before; d != 3 {
					t.Fatalf("instance %d: %d L2 hits for 3 lookups loaded on A", i+1, d)
				}
			}
			for i := range cs {
				before := cs[i].Stats().L1Hits
				rcCartOf(t, carts[i], "alice")
				rcCartOf(t, carts[i], "bob")
				forecast(i)
				if d := cs[i].Stats().L1Hits - before; d != 3 {
					t.Fatalf("instance %d: %d L1 hits for 3 repeated lookups", i, d)
				}
			}
			if shop.cartRuns("alice") != 1 || shop.cartRuns("bob") != 1 || shop.weatherRuns.Load() != 1 {
				t.Fatalf("tool runs: alice %d, bob %d, weather %d; want 1 each", shop.cartRuns("alice"), shop.cartRuns("bob"), shop.weatherRuns.Load())
			}

			// B runs add_to_cart for alice, a mutation that invalidates her cart.
			add, err := WrapMutation(b, []resource.Resource{rcCartRes}, shop.addTool)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := add(scope.WithUser(ctx, "alice"), "lamp"); err != nil {
				t.Fatal(err)
			}
			// On B, at once.
			if got := rcCartOf(t, carts[1], "alice"); !slices.Equal(got, []string{"book", "lamp"}) {
				t.Fatalf("alice's cart on B right after the mutation: %q", got)
			}
			// On A and C, once the invalidation reaches them; never the old cart
			// again after that.
			for _, i := range []int{0, 2} {
				wait.For(t, 5*time.Second, fmt.Sprintf("instance %d to drop alice's old cart", i), func() bool {
					return len(rcCartOf(t, carts[i], "alice")) == 2
				})
				for j := 0; j < 20; j++ {
					if got := rcCartOf(t, carts[i], "alice"); !slices.Equal(got, []string{"book", "lamp"}) {
						t.Fatalf("instance %d served %q after serving the new cart", i, got)
					}
				}
			}
			// Bob's cart and the forecast stay cached everywhere.
			checkOthersCached := func() {
				t.Helper()
				for i := range cs {
					if got := rcCartOf(t, carts[i], "bob"); !slices.Equal(got, []string{"pen"}) {
						t.Fatalf("bob's cart on instance %d: %q", i, got)
					}
					forecast(i)
				}
				if shop.cartRuns("bob") != 1 || shop.weatherRuns.Load() != 1 {
					t.Fatalf("invalidating alice's cart reloaded bob's cart %d times and the forecast %d times",
						shop.cartRuns("bob")-1, shop.weatherRuns.Load()-1)
				}
			}
			checkOthersCached()

			// The same with Invalidate and an explicit target.
			shop.add("alice", "mug")
			if err := b.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice")); err != nil {
				t.Fatal(err)
			}
			for _, i := range []int{1, 0, 2} {
				wait.For(t, 5*time.Second, fmt.Sprintf("instance %d to drop alice's cart", i), func() bool {
					return len(rcCartOf(t, carts[i], "alice")) == 3
				})
			}
			checkOthersCached()
			// Each invalidation reloaded alice's cart once for the whole fleet: B
			// read it first and wrote L2, and A and C read it there.
			if n := shop.cartRuns("alice"); n != 3 {
				t.Fatalf("alice's cart loaded %d times for 2 invalidations, want 3", n)
			}
		})
	}
}

// A load that began before an invalidation and ends after it is never
// served once Invalidate returned: not by the invalidating instance, which
// reads while the old load finishes under it (the same instance or
// another), not by the other instance once the message reaches it, and not
// by a new instance, which only has L2.
func TestLoadRacedWithInvalidationIsNeverServedAfterIt(t *testing.T) {
	res := resource.Resource{Name: "rc_balance", Scope: scope.User, TTL: time.Minute}
	type balance struct {
		User string `json:"user"`
		V    int64  `json:"v"`
	}
	const rounds = 5
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			for _, mode := range []string{"same instance", "other instance"} {
				t.Run(mode, func(t *testing.T) {
					// A and B, then a new instance each round.
					stores := backend.stores(t, 2+rounds)
					a := rcNew(t, Options{L2: stores[0]})
					b := rcNew(t, Options{L2: stores[1]})
					rcSubscribed(t, a, b)
					invalidator := a
					if mode == "other instance" {
						invalidator = b
					}
					var mu sync.Mutex
					versions := map[string]int64{}
					gates := map[string]chan struct{}{}
					started := make(chan string, 1)
					// The first load of each user's balance blocks until released;
					// every later load returns a higher version.
					tool := func(ctx context.Context, _ struct{}) (balance, error) {
						u, _ := scope.UserFrom(ctx)
						mu.Lock()
						versions[u]++
						v, gate := versions[u], gates[u]
						mu.Unlock()
						if v == 1 {
							started <- u
							<-gate
						}
						return balance{User: u, V: v}, nil
					}
					getA, _ := Wrap(a, res, tool)
					getB, _ := Wrap(b, res, tool)
					get := func(g func(context.Context, struct{}) (balance, error), user string) balance {
						v, err := g(scope.WithUser(context.Background(), user), struct{}{})
						if err != nil || v.User != user {
							t.Errorf("balance of %s: %+v, %v", user, v, err)
						}
						return v
					}
					for round := 0; round < rounds; round++ {
						user := fmt.Sprintf("user-%d", round)
						gate := make(chan struct{})
						mu.Lock()
						gates[user] = gate
						mu.Unlock()
						first := make(chan balance, 1)
						go func() { first <- get(getA, user) }()
						<-started // A is loading version 1

						if err := invalidator.Invalidate(context.Background(), TargetResourceScope(res, user)); err != nil {
							t.Fatal(err)
						}
						// From here on the invalidating instance never serves
						// version 1, while the old load finishes under it.
						read := getA
						if invalidator == b {
							read = getB
						}
						var wg sync.WaitGroup
						for r := 0; r < 4; r++ {
							wg.Go(func() {
								for k := 0; k < 40; k++ {
									if v := get(read, user); v.V == 1 {
										t.Errorf("round %d: version 1 served after Invalidate returned", round)
										return
									}
									if k == 10 && r == 0 {
										close(gate) // the old load returns while the others read
									}
								}
							})
						}
						wg.Wait()
						old := <-first
						t.Logf("round %d: the raced load returned version %d to its caller", round, old.V)
						// A, if it did not invalidate, stops serving version 1 when
						// the message arrives, and never serves it again.
						wait.For(t, 5*time.Second, "A to drop version 1", func() bool { return get(getA, user).V != 1 })
						for k := 0; k < 20; k++ {
							if v := get(getA, user); v.V == 1 {
								t.Fatalf("round %d: A served version 1 again", round)
							}
						}
						// A new instance, which only has L2, never sees it either.
						c := rcNew(t, Options{L2: stores[2+round]})
						getC, _ := Wrap(c, res, tool)
						if v := get(getC, user); v.V == 1 {
							t.Fatalf("round %d: a new instance read version 1 from L2", round)
						}
					}
				})
			}
		})
	}
}

// When no invalidation message reaches an instance (none was sent: the
// epoch changed in L2 behind the fleet's back; or the instances' pub/sub
// connections were killed, and then the epoch changed or another instance
// invalidated), it stops serving the old entry within a few MaxEpochAges
// of the epoch changing, and never serves it again.
func TestLostInvalidationEndsWithinMaxEpochAge(t *testing.T) {
	const maxAge = 500 * time.Millisecond
	cases := []struct {
		name       string
		killPubSub bool // only on a Redis L2: l2Backends[0], the in-memory one, has no connection to kill
		viaB       bool // invalidate on B (its message may be lost) instead of a raw epoch bump
	}{
		{name: "no message at all"},
		{name: "pubsub killed then raw epoch bump", killPubSub: true},
		{name: "pubsub killed then invalidated on B", killPubSub: true, viaB: true},
	}
	for i, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			for _, tc := range cases {
				if tc.killPubSub && i == 0 {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					stores := backend.stores(t, 3)
					raw := stores[2] // no cache's
					shop := newRCShop(map[string][]string{"alice": {"book"}})
					a := rcNew(t, Options{L2: stores[0], MaxEpochAge: maxAge})
					b := rcNew(t, Options{L2: stores[1], MaxEpochAge: maxAge})
					rcSubscribed(t, a, b)
					getA, getB := rcWrapCart(t, a, shop), rcWrapCart(t, b, shop)
					rcCartOf(t, getA, "alice")
					rcCartOf(t, getB, "alice")
					hits := a.Stats().L1Hits
					if got := rcCartOf(t, getA, "alice"); !slices.Equal(got, []string{"book"}) || a.Stats().L1Hits != hits+1 {
						t.Fatalf("A: %q, not an L1 hit", got)
					}

					shop.add("alice", "lamp")
					ctx := context.Background()
					if tc.killPubSub {
						var killed atomic.Int64
						if !onRedisMasters(t, raw, func(ctx context.Context, c *goredis.Client) error {
							n, err := c.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Int64()
							killed.Add(n)
							return err
						}) {
							t.Fatalf("%s is not a Redis L2: no pub/sub connection to kill", backend.name)
						}
						if n := killed.Load(); n < 2 {
							t.Fatalf("CLIENT KILL TYPE pubsub: %d killed; want A's and B's subscriptions", n)
						}
					}
					if tc.viaB {
						if err := b.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice")); err != nil {
							t.Fatal(err)
						}
					} else {
						key := rcScopedEpochKey("", rcCartRes, "alice")
						if _, ok := rawGet(t, raw, key); !ok {
							t.Fatalf("epoch key %s not in L2", key)
						}
						rawSet(t, raw, key, []byte(strconv.FormatUint(rand.Uint64()|1, 10)))
					}
					bumped := time.Now()
					bound := 5 * maxAge
					wait.For(t, bound, fmt.Sprintf("A to stop serving alice's old cart after her epoch changed (MaxEpochAge %v)", maxAge), func() bool {
						return len(rcCartOf(t, getA, "alice")) == 2
					})
					t.Logf("A served the new cart %v after the epoch changed", time.Since(bumped).Round(time.Millisecond))
					for k := 0; k < 20; k++ {
						if got := rcCartOf(t, getA, "alice"); len(got) != 2 {
							t.Fatalf("A served %q again", got)
						}
					}
					wait.For(t, time.Until(bumped.Add(bound)), "B to stop serving alice's old cart after her epoch changed", func() bool {
						return len(rcCartOf(t, getB, "alice")) == 2
					})
				})
			}
		})
	}
}

// An invalidation made while L2 cannot be reached (Invalidate, or a
// mutation) applies locally and says the fleet was not told, with a
// *FleetError from Invalidate and a count in Stats.FleetErrors. Until then
// L1 keeps serving, and afterwards nobody else's entries move. Over the
// in-memory L2 (Backend.SetError: every call fails) and a redis-server
// that is killed; a 3-master cluster is left out: the table gives no handle
// on its nodes to kill them, and a cluster that cannot be reached fails
// calls as one server does.
func TestInvalidateWhileL2IsUnreachableAppliesLocally(t *testing.T) {
	outages := []struct {
		name string
		// l2 returns an L2 and a function that makes it unreachable.
		l2 func(t *testing.T) (tier.Remote, func())
	}{
		{"in-memory", func(t *testing.T) (tier.Remote, func()) {
			stores, b := memL2(t, 1, fake.BackendOptions{})
			return stores[0], func() { b.SetError(errors.New("connection refused")) }
		}},
		{"one server", func(t *testing.T) (tier.Remote, func()) {
			e := rcStart(t)
			return e.store(), e.Srv.Kill
		}},
	}
	for _, outage := range outages {
		t.Run(outage.name, func(t *testing.T) {
			for _, how := range []string{"Invalidate", "mutation"} {
				t.Run(how, func(t *testing.T) {
					l2, down := outage.l2(t)
					shop := newRCShop(map[string][]string{"alice": {"book"}, "bob": {"pen"}})
					a := rcNew(t, Options{L2: l2, L2Timeout: 100 * time.Millisecond})
					rcSubscribed(t, a)
					get := rcWrapCart(t, a, shop)
					add, err := WrapMutation(a, []resource.Resource{rcCartRes}, shop.addTool)
					if err != nil {
						t.Fatal(err)
					}
					rcCartOf(t, get, "alice")
					rcCartOf(t, get, "bob")

					down()
					// Without an invalidation, L1 keeps serving.
					if got := rcCartOf(t, get, "alice"); !slices.Equal(got, []string{"book"}) || shop.cartRuns("alice") != 1 {
						t.Fatalf("with L2 unreachable: %q after %d runs; want the cached cart", got, shop.cartRuns("alice"))
					}
					ctx := scope.WithUser(context.Background(), "alice")
					switch how {
					case "Invalidate":
						shop.add("alice", "lamp")
						err := a.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice"))
						var fe *FleetError
						if !errors.As(err, &fe) || fe.Op != "invalidate" {
							t.Fatalf("Invalidate with L2 unreachable = %v; want a *FleetError saying the fleet was not told", err)
						}
					case "mutation":
						// The write happened, so the mutation reports no error.
						if _, err := add(ctx, "lamp"); err != nil {
							t.Fatalf("mutation with L2 unreachable: %v", err)
						}
					}
					if s := a.Stats(); s.FleetErrors != 1 {
						t.Fatalf("FleetErrors = %d, want 1", s.FleetErrors)
					}
					// The local invalidation applies: the next call reloads.
					if got := rcCartOf(t, get, "alice"); !slices.Equal(got, []string{"book", "lamp"}) || shop.cartRuns("alice") != 2 {
						t.Fatalf("after the local invalidation: %q after %d runs; want a reload", got, shop.cartRuns("alice"))
					}
					// Nobody else's entries moved.
					if rcCartOf(t, get, "bob"); shop.cartRuns("bob") != 1 {
						t.Fatalf("bob's cart reloaded")
					}
				})
			}
		})
	}
}

// Short arguments are held in the L1 key as they are and long ones by their
// hash; either way the L2 key is the hash, so instances share entries, and
// an exact invalidation drops the call everywhere, whatever the length.
func TestCallsShareEntriesAndInvalidateAtEveryArgumentLength(t *testing.T) {
	type query struct {
		Q    string `json:"q"`
		Page int    `json:"page"`
	}
	res := resource.Resource{Name: "search_len", Scope: scope.User, TTL: time.Hour}
	for _, backend := range l2Backends {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 3)
			raw := stores[2] // no cache's
			var runs atomic.Int32
			tool := func(_ context.Context, a query) (string, error) {
				return fmt.Sprintf("%s#%d", a.Q, runs.Add(1)), nil
			}
			a := rcNew(t, Options{L2: stores[0]})
			b := rcNew(t, Options{L2: stores[1]})
			rcSubscribed(t, a, b)
			getA, err := Wrap(a, res, tool)
			if err != nil {
				t.Fatal(err)
			}
			getB, err := Wrap(b, res, tool)
			if err != nil {
				t.Fatal(err)
			}
			ctx := scope.WithUser(context.Background(), "alice")
			for _, q := range []query{{Q: "paris"}, {Q: strings.Repeat("a long query ", 8), Page: 2}} {
				inline := len(`{"page":0,"q":""}`)+len(q.Q) <= maxInlineArgs
				runs.Store(0)
				first, err := getA(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				wait.For(t, 10*time.Second, "the write to L2", func() bool { return rcDrained(a) })
				h, _ := resource.HashValue(q, resource.Limits{})
				if _, ok := rawGet(t, raw, string(keyspace.AppendEntryKey(nil, res.ID(), "u:alice", h.String()))); !ok {
					t.Fatalf("inline=%v: no L2 entry under the arguments' hash", inline)
				}
				if got, err := getB(ctx, q); err != nil || got != first || runs.Load() != 1 {
					t.Fatalf("inline=%v: the other instance got %q, %v after %d runs; want the L2 hit %q", inline, got, err, runs.Load(), first)
				}
				if err := a.Invalidate(ctx, TargetCall(res, "alice", q)); err != nil {
					t.Fatal(err)
				}
				// b's L1 copy goes when the message reaches it; then b reloads.
				wait.For(t, 10*time.Second, "the other instance dropping the call", func() bool {
					got, err := getB(ctx, q)
					return err == nil && got != first
				})
			}
		})
	}
}

// An invalidation that could not reach L2 (a *FleetError) applies locally,
// and when L2 answers again it is not undone: the invalidating instance
// never serves the pre-invalidation entry again (from L2, whose epoch was
// not moved), and the other instances stop serving it within MaxEpochAge
// once they reach L2, as FleetError promises. (This was a bug: the next
// confirmation replaced the cell's local value with the old one still in
// L2.) Over a redis-server and a 3-master cluster that refuse writes (out
// of memory), and the in-memory L2 failing every call (Backend.SetError),
// whose recovery also resets the subscriptions.
func TestFailedInvalidationIsNotUndoneWhenL2AnswersAgain(t *testing.T) {
	const maxAge = 300 * time.Millisecond
	type outage struct {
		stores        []tier.Remote
		refuse, heals func()
	}
	redisOOM := func(backend l2Backend) func(t *testing.T) outage {
		return func(t *testing.T) outage {
			stores := backend.stores(t, 3)
			raw := stores[2] // no cache's
			config := func(kvs ...[2]string) func() {
				return func() {
					onRedisMasters(t, raw, func(ctx context.Context, c *goredis.Client) error {
						for _, kv := range kvs {
							if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
								return err
							}
						}
						return nil
					})
				}
			}
			return outage{stores[:2],
				config([2]string{"maxmemory-policy", "noeviction"}, [2]string{"maxmemory", "1"}),
				config([2]string{"maxmemory", "0"})}
		}
	}
	for _, l2 := range []struct {
		name string
		open func(t *testing.T) outage
	}{
		{"in-memory", func(t *testing.T) outage {
			stores, b := memL2(t, 2, fake.BackendOptions{})
			return outage{stores, func() { b.SetError(errors.New("connection refused")) }, func() { b.SetError(nil) }}
		}},
		{l2Backends[1].name, redisOOM(l2Backends[1])},
		{l2Backends[2].name, redisOOM(l2Backends[2])},
	} {
		t.Run(l2.name, func(t *testing.T) {
			l2 := l2.open(t)
			shop := newRCShop(map[string][]string{"alice": {"book"}})
			o := Options{MaxEpochAge: maxAge, L2Timeout: time.Second}
			o.L2 = l2.stores[0]
			a := rcNew(t, o)
			o.L2 = l2.stores[1]
			b := rcNew(t, o)
			rcSubscribed(t, a, b)
			getA, getB := rcWrapCart(t, a, shop), rcWrapCart(t, b, shop)
			rcCartOf(t, getA, "alice")
			if got := rcCartOf(t, getB, "alice"); !slices.Equal(got, []string{"book"}) || b.Stats().L2Hits != 1 {
				t.Fatalf("B: %q, %d L2 hits", got, b.Stats().L2Hits)
			}

			// L2 refuses while alice's cart is invalidated on A: the fleet is
			// not told.
			ctx := context.Background()
			l2.refuse()
			shop.add("alice", "lamp")
			err := a.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice"))
			var fe *FleetError
			if !errors.As(err, &fe) {
				t.Fatalf("Invalidate with L2 refusing = %v; want a *FleetError", err)
			}
			if got := rcCartOf(t, getA, "alice"); !slices.Equal(got, []string{"book", "lamp"}) {
				t.Fatalf("A right after the local invalidation: %q", got)
			}
			l2.heals()

			// L2 is healthy again. Watch both instances for several MaxEpochAges.
			var aOld atomic.Int32
			deadline := time.Now().Add(8 * maxAge)
			bNew := false
			for time.Now().Before(deadline) {
				if got := rcCartOf(t, getA, "alice"); len(got) != 2 && aOld.Add(1) == 1 {
					t.Errorf("A, which invalidated alice's cart, served the old cart %q again once L2 answered", got)
				}
				bNew = len(rcCartOf(t, getB, "alice")) == 2
				time.Sleep(5 * time.Millisecond) // the pace of the watch, which lasts its whole window
			}
			if !bNew {
				t.Errorf("B still served alice's old cart %v after L2 answered again (MaxEpochAge %v)", 8*maxAge, maxAge)
			}
		})
	}
}

// Per-scope epochs expire after Options.Tuning.ScopeEpochTTL, and the
// global and resource-wide ones never do. (This was a bug: epochs.load
// sent every cell it confirmed in one LoadEpochs call with the TTL of the
// first key, and the global epoch, which never expires, comes first, so
// the scope epochs created by an instance's first lookup got no expiry and
// one key per user and resource stayed in L2 forever.) On a redis-server
// and a 3-master cluster, by the keys' PTTL; on the in-memory L2, by
// moving its clock.
func TestScopeEpochsExpireAfterScopeEpochTTL(t *testing.T) {
	const ttl = time.Hour
	users := []string{"alice", "bob"} // alice: the instance's first lookup
	scoped := func(user string) []string {
		seg := keyspace.Segment(rcCartRes.Scope, user)
		return []string{keyspace.ScopeEpochKey(seg), keyspace.ResourceScopeEpochKey(rcCartRes.ID(), seg)}
	}
	unscoped := []string{keyspace.GlobalEpochKey, keyspace.ResourceEpochKey(rcCartRes.ID())}
	lookUp := func(t *testing.T, l2 tier.Remote) *Cache {
		a := rcNew(t, Options{L2: l2, Tuning: TuningOptions{ScopeEpochTTL: ttl}})
		get := rcWrapCart(t, a, newRCShop(map[string][]string{}))
		for _, user := range users {
			rcCartOf(t, get, user)
		}
		return a
	}

	t.Run("in-memory", func(t *testing.T) {
		clk := newTestClock()
		stores, _ := memL2(t, 2, fake.BackendOptions{Clock: clk.Now})
		raw := stores[1] // no cache's
		a := lookUp(t, stores[0])
		// Nothing touches the epochs while the clock moves.
		if err := a.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, user := range users {
			for _, k := range scoped(user) {
				if _, ok := rawGet(t, raw, k); !ok {
					t.Fatalf("%s's epoch %s is not in L2", user, k)
				}
			}
		}
		clk.Advance(ttl)
		for _, user := range users {
			for _, k := range scoped(user) {
				if _, ok := rawGet(t, raw, k); ok {
					t.Errorf("%s's epoch %s is still in L2 ScopeEpochTTL (%v) after it was created", user, k, ttl)
				}
			}
		}
		clk.Advance(10 * 365 * 24 * time.Hour)
		for _, k := range unscoped {
			if _, ok := rawGet(t, raw, k); !ok {
				t.Errorf("epoch %s expired; want no TTL", k)
			}
		}
	})
	for _, backend := range l2Backends[1:] {
		t.Run(backend.name, func(t *testing.T) {
			stores := backend.stores(t, 2)
			raw, ok := stores[1].(*acredis.Store) // no cache's
			if !ok {
				t.Fatalf("%s is not a Redis L2", backend.name)
			}
			lookUp(t, stores[0])
			pttl := func(k string) time.Duration {
				d, err := raw.Client().PTTL(context.Background(), raw.Prefix()+k).Result()
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			for _, user := range users {
				for _, k := range scoped(user) {
					if d := pttl(k); d <= 0 || d > ttl {
						t.Errorf("%s's epoch %s has TTL %v; want ScopeEpochTTL (%v)", user, k, d, ttl)
					}
				}
			}
			for _, k := range unscoped {
				if d := pttl(k); d != -1 {
					t.Errorf("epoch %s has TTL %v; want none", k, d)
				}
			}
		})
	}
}
