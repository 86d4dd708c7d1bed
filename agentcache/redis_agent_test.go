package agentcache

// Real-Redis tests of the agent layer (issue 3): instances sharing one Redis
// with separate L1s, scoped invalidation across them, isolation between
// users, loads racing invalidations, lost invalidation messages and an
// unreachable Redis during Invalidate.

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
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

var (
	rcCartRes    = resource.Resource{Name: "rc_cart", Scope: scope.User, TTL: time.Minute, Version: 2}
	rcWeatherRes = resource.Resource{Name: "rc_weather", Scope: scope.Global, TTL: time.Minute}
)

type rcCartArgs struct {
	Currency string `json:"currency"`
}

type rcCart struct {
	User  string   `json:"user"`
	Items []string `json:"items"`
}

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

func (s *rcShop) cart(ctx context.Context, _ rcCartArgs) (rcCart, error) {
	u, ok := scope.UserFrom(ctx)
	if !ok {
		return rcCart{}, errors.New("get_cart ran without a user")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs[u]++
	return rcCart{User: u, Items: slices.Clone(s.items[u])}, nil
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

type rcCartTool = func(context.Context, rcCartArgs) (rcCart, error)

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
	got, err := get(scope.WithUser(context.Background(), user), rcCartArgs{Currency: "EUR"})
	if err != nil {
		t.Fatalf("get_cart for %s: %v", user, err)
	}
	if got.User != user {
		t.Fatalf("get_cart for %s returned %s's cart", user, got.User)
	}
	return got.Items
}

func TestRedisThreeInstancesInvalidateOneUsersCart(t *testing.T) {
	e := rcStart(t)
	shop := newRCShop(map[string][]string{"alice": {"book"}, "bob": {"pen"}})
	cs := make([]*Cache, 3)
	carts := make([]rcCartTool, 3)
	weather := make([]func(context.Context, string) (string, error), 3)
	for i := range cs {
		cs[i] = rcNew(t, Options{L2: e.store()})
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
		waitFor(t, 5*time.Second, fmt.Sprintf("instance %d to drop alice's old cart", i), func() bool {
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
		waitFor(t, 5*time.Second, fmt.Sprintf("instance %d to drop alice's cart", i), func() bool {
			return len(rcCartOf(t, carts[i], "alice")) == 3
		})
	}
	checkOthersCached()
	// Each invalidation reloaded alice's cart once for the whole fleet: B
	// read it first and wrote L2, and A and C read it there.
	if n := shop.cartRuns("alice"); n != 3 {
		t.Fatalf("alice's cart loaded %d times for 2 invalidations, want 3", n)
	}
}

// rcOwned is a tool result that names who it was computed for.
type rcOwned struct {
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
	Arg     string `json:"arg"`
	N       int64  `json:"n"`
}

func TestRedisIsolationUnderCancellationsSmallPool(t *testing.T) {
	e := rcStart(t)
	const instances, users, workers, ops = 3, 40, 24, 120
	profileRes := resource.Resource{Name: "rc_profile", Scope: scope.User, TTL: time.Minute}
	notesRes := resource.Resource{Name: "rc_notes", Scope: scope.Session, TTL: time.Minute}
	var n atomic.Int64
	jitter := func() {
		if d := rand.IntN(400); d < 200 {
			time.Sleep(time.Duration(d) * time.Microsecond)
		}
	}
	profileTool := func(ctx context.Context, arg string) (rcOwned, error) {
		u, _ := scope.UserFrom(ctx)
		jitter()
		return rcOwned{User: u, Arg: arg, N: n.Add(1)}, nil
	}
	notesTool := func(ctx context.Context, arg string) (rcOwned, error) {
		s, _ := scope.SessionFrom(ctx)
		jitter()
		return rcOwned{Session: s, Arg: arg, N: n.Add(1)}, nil
	}
	type inst struct {
		c              *Cache
		profile, notes func(context.Context, string) (rcOwned, error)
	}
	insts := make([]inst, instances)
	for i := range insts {
		// One connection per instance: every call queues for it, and a
		// cancelled call must not leave its reply for the next one.
		c := rcNew(t, Options{L2: e.store(func(o *goredis.Options) { o.PoolSize = 1 })})
		p, err := Wrap(c, profileRes, profileTool)
		if err != nil {
			t.Fatal(err)
		}
		nt, err := Wrap(c, notesRes, notesTool)
		if err != nil {
			t.Fatal(err)
		}
		insts[i] = inst{c: c, profile: p, notes: nt}
	}
	var ok, cancelled atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; i < ops; i++ {
				in := insts[rng.IntN(instances)]
				user := "user-" + strconv.Itoa(rng.IntN(users))
				session := "sess-" + user
				arg := "q" + strconv.Itoa(rng.IntN(4))
				ctx, cancel := context.WithCancel(context.Background())
				switch rng.IntN(4) {
				case 0:
					cancel()
				case 1:
					time.AfterFunc(time.Duration(rng.IntN(500))*time.Microsecond, cancel)
				}
				ctx = scope.WithSession(scope.WithUser(ctx, user), session)
				var got rcOwned
				var err error
				byUser := rng.IntN(2) == 0
				if byUser {
					got, err = in.profile(ctx, arg)
				} else {
					got, err = in.notes(ctx, arg)
				}
				switch {
				case err != nil:
					if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
						t.Errorf("call failed with %v (context: %v); only a cancelled caller may fail", err, ctx.Err())
					}
					cancelled.Add(1)
				case byUser && (got.User != user || got.Arg != arg):
					t.Errorf("%s asked for profile %s and got %+v", user, arg, got)
				case !byUser && (got.Session != session || got.Arg != arg):
					t.Errorf("%s asked for notes %s and got %+v", session, arg, got)
				default:
					ok.Add(1)
				}
				if rng.IntN(30) == 0 {
					// Invalidations move keys under the callers; a
					// FleetError (the breaker may be open) is fine.
					target := TargetUser(user)
					if rng.IntN(2) == 0 {
						target = TargetResourceScope(notesRes, session)
					}
					_ = in.c.Invalidate(context.Background(), target)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	var l2Hits uint64
	for _, in := range insts {
		l2Hits += in.c.Stats().L2Hits
	}
	t.Logf("%d answers, %d cancelled calls, %d L2 hits, %d tool runs", ok.Load(), cancelled.Load(), l2Hits, n.Load())
	if ok.Load() == 0 || cancelled.Load() == 0 || l2Hits == 0 {
		t.Fatalf("%d answers, %d cancelled calls, %d L2 hits: the test did not exercise every path", ok.Load(), cancelled.Load(), l2Hits)
	}
}

func TestRedisInFlightLoadRacedWithInvalidation(t *testing.T) {
	res := resource.Resource{Name: "rc_balance", Scope: scope.User, TTL: time.Minute}
	type balance struct {
		User string `json:"user"`
		V    int64  `json:"v"`
	}
	for _, mode := range []string{"same instance", "other instance"} {
		t.Run(mode, func(t *testing.T) {
			e := rcStart(t)
			a := rcNew(t, Options{L2: e.store()})
			b := rcNew(t, Options{L2: e.store()})
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
			for round := 0; round < 5; round++ {
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
				waitFor(t, 5*time.Second, "A to drop version 1", func() bool { return get(getA, user).V != 1 })
				for k := 0; k < 20; k++ {
					if v := get(getA, user); v.V == 1 {
						t.Fatalf("round %d: A served version 1 again", round)
					}
				}
				// A new instance, which only has L2, never sees it either.
				c := rcNew(t, Options{L2: e.store()})
				getC, _ := Wrap(c, res, tool)
				if v := get(getC, user); v.V == 1 {
					t.Fatalf("round %d: a new instance read version 1 from L2", round)
				}
			}
		})
	}
}

// rcScopedEpochKey is the L2 key (with prefix) of r's epoch in user's scope.
func rcScopedEpochKey(prefix string, r resource.Resource, user string) string {
	return prefix + keyspace.ResourceScopeEpochKey(r.ID(), keyspace.Segment(r.Scope, user))
}

func TestRedisLostInvalidationEndsWithinMaxEpochAge(t *testing.T) {
	const maxAge = 500 * time.Millisecond
	cases := []struct {
		name       string
		killPubSub bool
		viaB       bool // invalidate on B (its message may be lost) instead of a raw epoch bump
	}{
		{name: "no message at all"},
		{name: "pubsub killed then raw epoch bump", killPubSub: true},
		{name: "pubsub killed then invalidated on B", killPubSub: true, viaB: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := rcStart(t)
			shop := newRCShop(map[string][]string{"alice": {"book"}})
			a := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
			b := rcNew(t, Options{L2: e.store(), MaxEpochAge: maxAge})
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
				n, err := e.Raw.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Int()
				if err != nil || n < 2 {
					t.Fatalf("CLIENT KILL TYPE pubsub: %d killed, %v; want A's and B's subscriptions", n, err)
				}
			}
			if tc.viaB {
				if err := b.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice")); err != nil {
					t.Fatal(err)
				}
			} else {
				key := rcScopedEpochKey(e.Prefix, rcCartRes, "alice")
				if e.Raw.Exists(ctx, key).Val() != 1 {
					t.Fatalf("epoch key %s not in Redis", key)
				}
				if err := e.Raw.Set(ctx, key, strconv.FormatUint(rand.Uint64()|1, 10), 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			bumped := time.Now()
			bound := 5 * maxAge
			for len(rcCartOf(t, getA, "alice")) != 2 {
				if time.Since(bumped) > bound {
					t.Fatalf("A still served alice's old cart %v after her epoch changed (MaxEpochAge %v)", bound, maxAge)
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("A served the new cart %v after the epoch changed", time.Since(bumped).Round(time.Millisecond))
			for k := 0; k < 20; k++ {
				if got := rcCartOf(t, getA, "alice"); len(got) != 2 {
					t.Fatalf("A served %q again", got)
				}
			}
			for time.Since(bumped) <= bound && len(rcCartOf(t, getB, "alice")) != 2 {
				time.Sleep(5 * time.Millisecond)
			}
			if got := rcCartOf(t, getB, "alice"); len(got) != 2 {
				t.Fatalf("B still served %q %v after the epoch changed", got, bound)
			}
		})
	}
}

func TestRedisUnreachableDuringInvalidate(t *testing.T) {
	for _, how := range []string{"Invalidate", "mutation"} {
		t.Run(how, func(t *testing.T) {
			e := rcStart(t)
			shop := newRCShop(map[string][]string{"alice": {"book"}, "bob": {"pen"}})
			a := rcNew(t, Options{L2: e.store(), L2Timeout: 100 * time.Millisecond})
			rcSubscribed(t, a)
			get := rcWrapCart(t, a, shop)
			add, err := WrapMutation(a, []resource.Resource{rcCartRes}, shop.addTool)
			if err != nil {
				t.Fatal(err)
			}
			rcCartOf(t, get, "alice")
			rcCartOf(t, get, "bob")

			e.Srv.Kill()
			// Without an invalidation, L1 keeps serving.
			if got := rcCartOf(t, get, "alice"); !slices.Equal(got, []string{"book"}) || shop.cartRuns("alice") != 1 {
				t.Fatalf("with Redis dead: %q after %d runs; want the cached cart", got, shop.cartRuns("alice"))
			}
			ctx := scope.WithUser(context.Background(), "alice")
			switch how {
			case "Invalidate":
				shop.add("alice", "lamp")
				err := a.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice"))
				var fe *FleetError
				if !errors.As(err, &fe) || fe.Op != "invalidate" {
					t.Fatalf("Invalidate with Redis dead = %v; want a *FleetError saying the fleet was not told", err)
				}
			case "mutation":
				// The write happened, so the mutation reports no error.
				if _, err := add(ctx, "lamp"); err != nil {
					t.Fatalf("mutation with Redis dead: %v", err)
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
}

// Short arguments are held in the L1 key as they are and long ones by their
// hash; either way the L2 key is the hash, so instances share entries, and
// an exact invalidation drops the call everywhere, whatever the length.
func TestCallsShareEntriesAndInvalidateAtEveryArgumentLength(t *testing.T) {
	e := rcStart(t)
	type query struct {
		Q    string `json:"q"`
		Page int    `json:"page"`
	}
	res := resource.Resource{Name: "search_len", Scope: scope.User, TTL: time.Hour}
	var runs atomic.Int32
	tool := func(_ context.Context, a query) (string, error) {
		return fmt.Sprintf("%s#%d", a.Q, runs.Add(1)), nil
	}
	a := rcNew(t, Options{L2: e.store()})
	b := rcNew(t, Options{L2: e.store()})
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
		waitFor(t, 10*time.Second, "the write to L2", func() bool { return rcDrained(a) })
		h, _ := resource.HashValue(q, resource.Limits{})
		if n, _ := e.Raw.Exists(ctx, e.Prefix+string(keyspace.AppendEntryKey(nil, res.ID(), "u:alice", h.String()))).Result(); n != 1 {
			t.Fatalf("inline=%v: no L2 entry under the arguments' hash", inline)
		}
		if got, err := getB(ctx, q); err != nil || got != first || runs.Load() != 1 {
			t.Fatalf("inline=%v: the other instance got %q, %v after %d runs; want the L2 hit %q", inline, got, err, runs.Load(), first)
		}
		if err := a.Invalidate(ctx, TargetCall(res, "alice", q)); err != nil {
			t.Fatal(err)
		}
		// b's L1 copy goes when the message reaches it; then b reloads.
		waitFor(t, 10*time.Second, "the other instance dropping the call", func() bool {
			got, err := getB(ctx, q)
			return err == nil && got != first
		})
	}
}

// An invalidation that could not reach Redis (a *FleetError) applies
// locally, but the new epoch value is never written to L2 later. When L2
// answers again, the next confirmation (epochs.load) replaces the cell's
// local value with the old one still in L2: the invalidating instance
// serves the pre-invalidation entry again from L2, and the other instances
// never learn of the invalidation, although FleetError promises they stop
// serving the old value within MaxEpochAge once they reach L2.
func TestFailedInvalidationIsNotUndoneWhenRedisAnswersAgain(t *testing.T) {
	const maxAge = 300 * time.Millisecond
	e := rcStart(t)
	shop := newRCShop(map[string][]string{"alice": {"book"}})
	o := Options{MaxEpochAge: maxAge, L2Timeout: time.Second}
	o.L2 = e.store()
	a := rcNew(t, o)
	o.L2 = e.store()
	b := rcNew(t, o)
	rcSubscribed(t, a, b)
	getA, getB := rcWrapCart(t, a, shop), rcWrapCart(t, b, shop)
	rcCartOf(t, getA, "alice")
	if got := rcCartOf(t, getB, "alice"); !slices.Equal(got, []string{"book"}) || b.Stats().L2Hits != 1 {
		t.Fatalf("B: %q, %d L2 hits", got, b.Stats().L2Hits)
	}

	// Redis refuses writes (out of memory) while alice's cart is invalidated
	// on A: the fleet is not told.
	ctx := context.Background()
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", "1"}} {
		if err := e.Raw.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	shop.add("alice", "lamp")
	err := a.Invalidate(ctx, TargetResourceScope(rcCartRes, "alice"))
	var fe *FleetError
	if !errors.As(err, &fe) {
		t.Fatalf("Invalidate with writes refused = %v; want a *FleetError", err)
	}
	if got := rcCartOf(t, getA, "alice"); !slices.Equal(got, []string{"book", "lamp"}) {
		t.Fatalf("A right after the local invalidation: %q", got)
	}
	if err := e.Raw.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}

	// Redis is healthy again. Watch both instances for several MaxEpochAges.
	var aOld atomic.Int32
	deadline := time.Now().Add(8 * maxAge)
	bNew := false
	for time.Now().Before(deadline) {
		if got := rcCartOf(t, getA, "alice"); len(got) != 2 && aOld.Add(1) == 1 {
			t.Errorf("A, which invalidated alice's cart, served the old cart %q again once Redis answered", got)
		}
		bNew = len(rcCartOf(t, getB, "alice")) == 2
		time.Sleep(5 * time.Millisecond)
	}
	if !bNew {
		t.Errorf("B still served alice's old cart %v after Redis answered again (MaxEpochAge %v)", 8*maxAge, maxAge)
	}
}

// Per-scope epochs must expire after Options.Tuning.ScopeEpochTTL. epochs.load
// sends every cell it confirms in one LoadEpochs call with the TTL of the
// first key (e.ttlFor(keys[0])), and the global epoch, which never expires,
// comes first: the scope epochs created by the first lookup of an instance
// (or after a subscription reset, or after an idle MaxEpochAge) get no
// expiry, and one key per user and resource stays in Redis forever.
func TestScopeEpochsExpireAfterScopeEpochTTL(t *testing.T) {
	e := rcStart(t)
	shop := newRCShop(map[string][]string{})
	a := rcNew(t, Options{L2: e.store(), Tuning: TuningOptions{ScopeEpochTTL: time.Hour}})
	get := rcWrapCart(t, a, shop)
	ctx := context.Background()
	for _, user := range []string{"alice", "bob"} {
		rcCartOf(t, get, user) // alice: the instance's first lookup
		seg := keyspace.Segment(rcCartRes.Scope, user)
		for _, k := range []string{keyspace.ScopeEpochKey(seg), keyspace.ResourceScopeEpochKey(rcCartRes.ID(), seg)} {
			ttl, err := e.Raw.PTTL(ctx, e.Prefix+k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl <= 0 || ttl > time.Hour {
				t.Errorf("%s's epoch %s has TTL %v; want ScopeEpochTTL (1h)", user, k, ttl)
			}
		}
	}
	for _, k := range []string{keyspace.GlobalEpochKey, keyspace.ResourceEpochKey(rcCartRes.ID())} {
		if ttl := e.Raw.PTTL(ctx, e.Prefix+k).Val(); ttl != -1 {
			t.Errorf("epoch %s has TTL %v; want none", k, ttl)
		}
	}
}
