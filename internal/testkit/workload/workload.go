// Package workload is a small agent back end behind a set of caches, and a
// random mix of calls to it that checks every answer. It is the load of the
// reliability tests and of cmd/soak.
//
// The back end has per-user, per-session and global tools, a batch tool, a
// mutation, and the key-value API; the mix adds invalidations and deletes.
// Every answer names whom and what it was computed for, so a caller can
// check that it got its own answer. A call that gets an error (other than
// the "not found" the tool itself gives), or someone else's answer, is a
// failure; a *agentcache.FleetError from a fleet-wide operation is the
// documented answer while Redis is unreachable, and is counted apart.
package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// The resources of the back end's tools. The TTLs are short enough that a
// soak of a minute sees entries expire, go stale and refresh.
var (
	ProfileRes  = resource.Resource{Name: "wl_profile", Scope: scope.User, TTL: 30 * time.Second}
	NotesRes    = resource.Resource{Name: "wl_notes", Scope: scope.Session, TTL: 30 * time.Second}
	SearchRes   = resource.Resource{Name: "wl_search", Scope: scope.Global, TTL: 20 * time.Second, StaleWindow: 10 * time.Second}
	ProductsRes = resource.Resource{Name: "wl_products", Scope: scope.Global, TTL: time.Minute}
	OrdersRes   = resource.Resource{Name: "wl_orders", Scope: scope.User, TTL: time.Minute, NegativeTTL: 5 * time.Second}
	// WeatherRes is never invalidated by the mix and expires within a
	// second, so its entries are served stale while one refresh runs.
	WeatherRes = resource.Resource{Name: "wl_weather", Scope: scope.Global, TTL: 500 * time.Millisecond, StaleWindow: 10 * time.Second}
)

// NoOrder is the first order number that does not exist.
const NoOrder = 50

// ProductExists reports whether the product id exists: those whose ID ends
// in 7 do not.
func ProductExists(id int) bool { return id%10 != 7 }

// Answer is what the profile, notes, orders and search tools return.
type Answer struct {
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
	Arg     string `json:"arg"`
	Run     int64  `json:"run"` // the tool run that produced it
}

// Product is what the batch tool returns per ID.
type Product struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// Tools is the application behind the caches; it counts its runs.
type Tools struct{ Runs atomic.Int64 }

// Profile is the per-user tool.
func (t *Tools) Profile(ctx context.Context, field string) (Answer, error) {
	u, ok := scope.UserFrom(ctx)
	if !ok {
		return Answer{}, errors.New("profile ran without a user")
	}
	return Answer{User: u, Arg: field, Run: t.Runs.Add(1)}, nil
}

// Notes is the per-session tool.
func (t *Tools) Notes(ctx context.Context, topic string) (Answer, error) {
	s, ok := scope.SessionFrom(ctx)
	if !ok {
		return Answer{}, errors.New("notes ran without a session")
	}
	return Answer{Session: s, Arg: topic, Run: t.Runs.Add(1)}, nil
}

// AddNote is the mutation that invalidates the session's notes.
func (t *Tools) AddNote(context.Context, string) (int64, error) {
	return t.Runs.Add(1), nil
}

// Orders is the per-user tool that answers "not found" from NoOrder on.
func (t *Tools) Orders(ctx context.Context, id int) (Answer, error) {
	u, _ := scope.UserFrom(ctx)
	n := t.Runs.Add(1)
	if id >= NoOrder {
		return Answer{}, fmt.Errorf("order %d: %w", id, agentcache.ErrNotFound)
	}
	return Answer{User: u, Arg: strconv.Itoa(id), Run: n}, nil
}

// Search is the global tool on raw JSON arguments {"q": ...}.
func (t *Tools) Search(_ context.Context, args json.RawMessage) (json.RawMessage, error) {
	var q struct {
		Q string `json:"q"`
	}
	if err := json.Unmarshal(args, &q); err != nil {
		return nil, err
	}
	return json.Marshal(Answer{Arg: q.Q, Run: t.Runs.Add(1)})
}

// Weather is the global tool whose entries go stale.
func (t *Tools) Weather(_ context.Context, city string) (Answer, error) {
	return Answer{Arg: city, Run: t.Runs.Add(1)}, nil
}

// Products is the batch tool; IDs that do not exist are left out.
func (t *Tools) Products(_ context.Context, ids []int) (map[int]Product, error) {
	t.Runs.Add(1)
	out := make(map[int]Product, len(ids))
	for _, id := range ids {
		if ProductExists(id) {
			out[id] = Product{ID: id, Name: "product-" + strconv.Itoa(id)}
		}
	}
	return out, nil
}

// Instance is one cache with the tools wrapped on it: one pod.
type Instance struct {
	Name     string
	C        *agentcache.Cache
	Profile  func(context.Context, string) (Answer, error)
	Notes    func(context.Context, string) (Answer, error)
	AddNote  func(context.Context, string) (int64, error)
	Orders   func(context.Context, int) (Answer, error)
	Search   func(context.Context, json.RawMessage) (json.RawMessage, error)
	Weather  func(context.Context, string) (Answer, error)
	Products *agentcache.Batch[int, Product]
}

// Wrap wraps t's tools on c.
func Wrap(name string, c *agentcache.Cache, t *Tools) (*Instance, error) {
	in := &Instance{Name: name, C: c}
	var errs [7]error
	in.Profile, errs[0] = agentcache.Wrap(c, ProfileRes, t.Profile)
	in.Notes, errs[1] = agentcache.Wrap(c, NotesRes, t.Notes, agentcache.RefreshAhead(0.8))
	in.AddNote, errs[2] = agentcache.WrapMutation(c, []resource.Resource{NotesRes}, t.AddNote)
	in.Orders, errs[3] = agentcache.Wrap(c, OrdersRes, t.Orders)
	in.Search, errs[4] = agentcache.Wrap(c, SearchRes, t.Search)
	in.Products, errs[5] = agentcache.WrapBatch(c, ProductsRes, t.Products)
	in.Weather, errs[6] = agentcache.Wrap(c, WeatherRes, t.Weather)
	return in, errors.Join(errs[:]...)
}

// The operations of the mix.
const (
	OpProfile = iota
	OpNotes
	OpOrders
	OpSearch
	OpWeather
	OpGetMany
	OpBatchGet
	OpKVGet
	OpKVSet
	OpMutation
	OpInvalidate
	OpDelete
	NumOps
)

// OpNames names the operations.
var OpNames = [NumOps]string{"profile", "notes", "orders", "search", "weather", "products.GetMany", "products.Get",
	"Get", "Set", "mutation", "Invalidate", "Delete"}

// opShare is each operation's share of the mix, in percent.
var opShare = [NumOps]int{20, 12, 12, 8, 4, 6, 8, 12, 6, 6, 4, 2}

func pick(r int) int {
	for op, share := range opShare {
		if r < share {
			return op
		}
		r -= share
	}
	return OpProfile
}

// The key space of the mix.
const (
	users       = 50 // distinct users, and sessions
	argsPerTool = 8
	products    = 500
)

// Load drives instances with the mix and checks every answer. Its
// counters may be read while it runs.
type Load struct {
	Insts []*Instance
	// Observe, if set before Run, is told every call's start, duration and
	// operation name.
	Observe func(start time.Time, d time.Duration, op string)

	Ops, NotFound, FleetErrors atomic.Int64
	ByKind                     [NumOps]atomic.Int64

	failures atomic.Int64
	mu       sync.Mutex
	first    []string // the first failures
}

// New returns a Load on insts.
func New(insts []*Instance) *Load { return &Load{Insts: insts} }

// Failed returns the number of calls that failed or got a wrong answer, and
// the first of them.
func (l *Load) Failed() (int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures.Load(), append([]string(nil), l.first...)
}

func (l *Load) fail(format string, args ...any) {
	l.failures.Add(1)
	l.mu.Lock()
	if len(l.first) < 20 {
		l.first = append(l.first, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

// Run calls the instances from workers goroutines until ctx ends, and
// returns when every worker has stopped. The seed makes the mix repeatable.
func (l *Load) Run(ctx context.Context, workers int, seed uint64) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for ctx.Err() == nil {
				l.op(rng)
			}
		})
	}
	wg.Wait()
}

// Start runs the load in the background; the returned function stops it and
// waits for the workers.
func (l *Load) Start(workers int, seed uint64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, workers, seed)
	}()
	return func() {
		cancel()
		<-done
	}
}

// kvValue is what the key-value API holds at key: set by Set, loaded by the
// loader; both start with the key.
func kvValue(key string, rev int64) string { return key + "#" + strconv.FormatInt(rev, 10) }

func (l *Load) op(rng *rand.Rand) {
	in := l.Insts[rng.IntN(len(l.Insts))]
	user := "user-" + strconv.Itoa(rng.IntN(users))
	session := "sess-" + strconv.Itoa(rng.IntN(users))
	arg := "arg" + strconv.Itoa(rng.IntN(argsPerTool))
	ctx := scope.WithSession(scope.WithUser(context.Background(), user), session)
	op := pick(rng.IntN(100))
	start := time.Now()
	defer func() {
		l.Ops.Add(1)
		l.ByKind[op].Add(1)
		if l.Observe != nil {
			l.Observe(start, time.Since(start), OpNames[op])
		}
	}()
	switch op {
	case OpProfile:
		got, err := in.Profile(ctx, arg)
		if err != nil || got.User != user || got.Arg != arg {
			l.fail("%s profile(%s, %s) = %+v, %v", in.Name, user, arg, got, err)
		}
	case OpNotes:
		got, err := in.Notes(ctx, arg)
		if err != nil || got.Session != session || got.Arg != arg {
			l.fail("%s notes(%s, %s) = %+v, %v", in.Name, session, arg, got, err)
		}
	case OpOrders:
		id := rng.IntN(NoOrder * 3 / 2)
		got, err := in.Orders(ctx, id)
		switch {
		case id >= NoOrder && errors.Is(err, agentcache.ErrNotFound):
			l.NotFound.Add(1)
		case id >= NoOrder:
			l.fail("%s orders(%s, %d) = %+v, %v; want not found", in.Name, user, id, got, err)
		case err != nil || got.User != user || got.Arg != strconv.Itoa(id):
			l.fail("%s orders(%s, %d) = %+v, %v", in.Name, user, id, got, err)
		}
	case OpSearch:
		q := "q-" + arg
		raw, err := in.Search(ctx, json.RawMessage(`{ "q" : "`+q+`" }`))
		var got Answer
		if err == nil {
			err = json.Unmarshal(raw, &got)
		}
		if err != nil || got.Arg != q {
			l.fail("%s search(%s) = %s, %v", in.Name, q, raw, err)
		}
	case OpWeather:
		city := "city-" + arg
		got, err := in.Weather(ctx, city)
		if err != nil || got.Arg != city {
			l.fail("%s weather(%s) = %+v, %v", in.Name, city, got, err)
		}
	case OpGetMany:
		ids := make([]int, 1+rng.IntN(40))
		for i := range ids {
			ids[i] = rng.IntN(products)
		}
		got, err := in.Products.GetMany(ctx, ids)
		if err != nil {
			l.fail("%s products.GetMany: %v", in.Name, err)
			return
		}
		for _, id := range ids {
			p, ok := got[id]
			switch {
			case !ProductExists(id) && ok:
				l.fail("%s products.GetMany: %d does not exist, got %+v", in.Name, id, p)
			case ProductExists(id) && (!ok || p.ID != id):
				l.fail("%s products.GetMany: %d = %+v, %v", in.Name, id, p, ok)
			}
		}
	case OpBatchGet:
		id := rng.IntN(products)
		p, err := in.Products.Get(ctx, id)
		switch {
		case !ProductExists(id) && errors.Is(err, agentcache.ErrNotFound):
			l.NotFound.Add(1)
		case !ProductExists(id):
			l.fail("%s products.Get(%d) = %+v, %v; want not found", in.Name, id, p, err)
		case err != nil || p.ID != id:
			l.fail("%s products.Get(%d) = %+v, %v", in.Name, id, p, err)
		}
	case OpKVGet:
		key := "cfg:" + user + ":" + arg
		got, err := agentcache.Get(ctx, in.C, key, func(_ context.Context, key string) (string, error) {
			return kvValue(key, 0), nil
		})
		if err != nil || !strings.HasPrefix(got, key+"#") {
			l.fail("%s Get(%s) = %q, %v", in.Name, key, got, err)
		}
	case OpKVSet:
		key := "cfg:" + user + ":" + arg
		if err := in.C.Set(ctx, key, kvValue(key, rng.Int64N(1000)), 0); err != nil {
			l.fail("%s Set(%s): %v", in.Name, key, err)
		}
	case OpMutation:
		if _, err := in.AddNote(ctx, arg); err != nil {
			l.fail("%s addNote(%s): %v", in.Name, session, err)
		}
	case OpInvalidate:
		targets := []agentcache.Target{
			agentcache.TargetUser(user),
			agentcache.TargetResourceScope(ProfileRes, user),
			agentcache.TargetResourceScope(OrdersRes, user),
			agentcache.TargetSession(session),
			agentcache.TargetCall(ProfileRes, user, arg),
			agentcache.TargetResource(SearchRes),
		}
		l.fleet(in, "Invalidate", in.C.Invalidate(ctx, targets[rng.IntN(len(targets))]))
	case OpDelete:
		l.fleet(in, "Delete", in.C.Delete(ctx, "cfg:"+user+":"+arg))
	}
}

// fleet classifies the result of a fleet-wide operation.
func (l *Load) fleet(in *Instance, op string, err error) {
	var fe *agentcache.FleetError
	switch {
	case errors.As(err, &fe):
		l.FleetErrors.Add(1)
	case err != nil:
		l.fail("%s %s: %v", in.Name, op, err)
	}
}

// SumStats adds up the counters of the instances' caches.
func SumStats(insts []*Instance) agentcache.Stats {
	var s agentcache.Stats
	for _, in := range insts {
		x := in.C.Stats()
		s.L1Hits += x.L1Hits
		s.L2Hits += x.L2Hits
		s.StaleHits += x.StaleHits
		s.Misses += x.Misses
		s.NegativeHits += x.NegativeHits
		s.Loads += x.Loads
		s.LoadErrors += x.LoadErrors
		s.L2Errors += x.L2Errors
		s.L2Corrupt += x.L2Corrupt
		s.WritesQueued += x.WritesQueued
		s.WritesDone += x.WritesDone
		s.WritesDropped += x.WritesDropped
		s.WritesFailed += x.WritesFailed
		s.WritesSkipped += x.WritesSkipped
		s.Invalidations += x.Invalidations
		s.FleetErrors += x.FleetErrors
		s.FleetWaits += x.FleetWaits
		s.Joined += x.Joined
	}
	return s
}
