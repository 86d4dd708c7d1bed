package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

// The workload is a small agent back end: per-user, per-session and global
// tools, a batch tool, a key-value lookup, a mutation and invalidations. Every
// answer says whom and what it was computed for, so a caller can check that
// it got its own answer; a caller that gets an error (other than the
// "not found" the tool itself gives) or someone else's answer counts a
// failure.

var (
	profileRes  = resource.Resource{Name: "rel_profile", Scope: scope.User, TTL: time.Minute}
	notesRes    = resource.Resource{Name: "rel_notes", Scope: scope.Session, TTL: time.Minute}
	searchRes   = resource.Resource{Name: "rel_search", Scope: scope.Global, TTL: time.Minute}
	productsRes = resource.Resource{Name: "rel_products", Scope: scope.Global, TTL: time.Minute}
	ordersRes   = resource.Resource{Name: "rel_orders", Scope: scope.User, TTL: time.Minute, NegativeTTL: 10 * time.Second}
)

// owned is an answer that names whom and what it was computed for.
type owned struct {
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
	Arg     string `json:"arg"`
	N       int64  `json:"n"`
}

type product struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// Orders numbered from noOrder on do not exist; products whose ID ends in
// 7 do not exist.
const noOrder = 50

func productExists(id int) bool { return id%10 != 7 }

// backend is what the tools read; it counts their runs.
type backend struct {
	runs atomic.Int64
}

func (b *backend) profile(ctx context.Context, field string) (owned, error) {
	u, ok := scope.UserFrom(ctx)
	if !ok {
		return owned{}, errors.New("profile tool ran without a user")
	}
	return owned{User: u, Arg: field, N: b.runs.Add(1)}, nil
}

func (b *backend) notes(ctx context.Context, topic string) (owned, error) {
	s, ok := scope.SessionFrom(ctx)
	if !ok {
		return owned{}, errors.New("notes tool ran without a session")
	}
	return owned{Session: s, Arg: topic, N: b.runs.Add(1)}, nil
}

func (b *backend) addNote(ctx context.Context, topic string) (bool, error) {
	b.runs.Add(1)
	return true, nil
}

func (b *backend) orders(ctx context.Context, id int) (owned, error) {
	u, _ := scope.UserFrom(ctx)
	b.runs.Add(1)
	if id >= noOrder {
		return owned{}, agentcache.ErrNotFound
	}
	return owned{User: u, Arg: strconv.Itoa(id)}, nil
}

func (b *backend) search(ctx context.Context, args json.RawMessage) (json.RawMessage, error) {
	var q struct {
		Q string `json:"q"`
	}
	if err := json.Unmarshal(args, &q); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"q": q.Q, "n": b.runs.Add(1)})
}

func (b *backend) products(ctx context.Context, ids []int) (map[int]product, error) {
	b.runs.Add(1)
	out := make(map[int]product, len(ids))
	for _, id := range ids {
		if productExists(id) {
			out[id] = product{ID: id, Name: "product-" + strconv.Itoa(id)}
		}
	}
	return out, nil
}

// instance is one cache with the tools wrapped on it.
type instance struct {
	name     string
	c        *agentcache.Cache
	profile  func(context.Context, string) (owned, error)
	notes    func(context.Context, string) (owned, error)
	addNote  func(context.Context, string) (bool, error)
	orders   func(context.Context, int) (owned, error)
	search   agentcache.JSONTool
	products *agentcache.Batch[int, product]
}

func wrapInstance(t testing.TB, name string, c *agentcache.Cache, b *backend) *instance {
	t.Helper()
	in := &instance{name: name, c: c}
	var err error
	must := func() {
		if err != nil {
			t.Fatal(err)
		}
	}
	in.profile, err = agentcache.Wrap(c, profileRes, b.profile)
	must()
	in.notes, err = agentcache.Wrap(c, notesRes, b.notes)
	must()
	in.addNote, err = agentcache.WrapMutation(c, b.addNote, notesRes)
	must()
	in.orders, err = agentcache.Wrap(c, ordersRes, b.orders)
	must()
	in.search, err = agentcache.WrapJSON(c, searchRes, b.search)
	must()
	in.products, err = agentcache.WrapBatch(c, productsRes, b.products)
	must()
	return in
}

// workload drives instances with random calls and checks every answer.
type workload struct {
	insts []*instance
	users int // distinct users (and sessions)
	args  int // distinct arguments per tool

	ops, notFound, fleetErrors atomic.Int64
	failures                   atomic.Int64
	mu                         sync.Mutex
	firstFailures              []string
	lat                        atomic.Pointer[latencies] // if set, every call's duration
}

func newWorkload(insts []*instance) *workload {
	return &workload{insts: insts, users: 20, args: 6}
}

func (w *workload) fail(format string, a ...any) {
	w.failures.Add(1)
	w.mu.Lock()
	if len(w.firstFailures) < 10 {
		w.firstFailures = append(w.firstFailures, fmt.Sprintf(format, a...))
	}
	w.mu.Unlock()
}

// failed returns the number of caller-visible failures and the first ones.
func (w *workload) failed() (int64, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failures.Load(), append([]string(nil), w.firstFailures...)
}

// run calls the instances from workers goroutines until ctx ends and
// returns when every worker has stopped.
func (w *workload) run(ctx context.Context, workers int, seed uint64) {
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for ctx.Err() == nil {
				w.op(rng)
			}
		})
	}
	wg.Wait()
}

// start runs the workload in the background; the returned function stops it
// and waits for the workers.
func (w *workload) start(workers int, seed uint64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, workers, seed)
	}()
	return func() {
		cancel()
		<-done
	}
}

// op makes one random call and checks its answer.
func (w *workload) op(rng *rand.Rand) {
	in := w.insts[rng.IntN(len(w.insts))]
	user := "user-" + strconv.Itoa(rng.IntN(w.users))
	session := "sess-" + strconv.Itoa(rng.IntN(w.users))
	ctx := scope.WithSession(scope.WithUser(context.Background(), user), session)
	arg := "a" + strconv.Itoa(rng.IntN(w.args))
	start, lat := time.Now(), w.lat.Load()
	k := rng.IntN(100)
	defer func() {
		w.ops.Add(1)
		if lat != nil {
			lat.add(start, time.Since(start), opKind(k))
		}
	}()
	switch {
	case k < 30:
		got, err := in.profile(ctx, arg)
		if err != nil || got.User != user || got.Arg != arg {
			w.fail("%s profile(%s, %s) = %+v, %v", in.name, user, arg, got, err)
		}
	case k < 45:
		got, err := in.notes(ctx, arg)
		if err != nil || got.Session != session || got.Arg != arg {
			w.fail("%s notes(%s, %s) = %+v, %v", in.name, session, arg, got, err)
		}
	case k < 60:
		id := rng.IntN(noOrder + noOrder/2)
		got, err := in.orders(ctx, id)
		switch {
		case id >= noOrder && errors.Is(err, agentcache.ErrNotFound):
			w.notFound.Add(1)
		case id >= noOrder:
			w.fail("%s orders(%s, %d) = %+v, %v; want not found", in.name, user, id, got, err)
		case err != nil || got.User != user || got.Arg != strconv.Itoa(id):
			w.fail("%s orders(%s, %d) = %+v, %v", in.name, user, id, got, err)
		}
	case k < 70:
		q := "q" + arg
		raw, err := in.search(ctx, json.RawMessage(`{"q":"`+q+`"}`))
		var got struct {
			Q string `json:"q"`
		}
		if err == nil {
			err = json.Unmarshal(raw, &got)
		}
		if err != nil || got.Q != q {
			w.fail("%s search(%s) = %s, %v", in.name, q, raw, err)
		}
	case k < 78:
		ids := make([]int, 1+rng.IntN(20))
		for i := range ids {
			ids[i] = rng.IntN(200)
		}
		got, err := in.products.GetMany(ctx, ids)
		if err != nil {
			w.fail("%s products.GetMany: %v", in.name, err)
			return
		}
		for _, id := range ids {
			p, ok := got[id]
			switch {
			case !productExists(id) && ok:
				w.fail("%s products.GetMany: product %d does not exist but got %+v", in.name, id, p)
			case productExists(id) && (!ok || p.ID != id):
				w.fail("%s products.GetMany: product %d = %+v, %v", in.name, id, p, ok)
			}
		}
	case k < 85:
		id := rng.IntN(200)
		p, err := in.products.Get(ctx, id)
		switch {
		case !productExists(id) && errors.Is(err, agentcache.ErrNotFound):
			w.notFound.Add(1)
		case !productExists(id):
			w.fail("%s products.Get(%d) = %+v, %v; want not found", in.name, id, p, err)
		case err != nil || p.ID != id:
			w.fail("%s products.Get(%d) = %+v, %v", in.name, id, p, err)
		}
	case k < 93:
		key := "kv:" + user + ":" + arg
		got, err := agentcache.Get(ctx, in.c, key, agentcache.LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
			return "value of " + key, nil
		}))
		if err != nil || got != "value of "+key {
			w.fail("%s Get(%s) = %q, %v", in.name, key, got, err)
		}
	case k < 97:
		if _, err := in.addNote(ctx, arg); err != nil {
			w.fail("%s addNote(%s): %v", in.name, session, err)
		}
	default:
		target := agentcache.TargetUser(user)
		if k == 99 {
			target = agentcache.TargetResourceScope(profileRes, user)
		}
		var fe *agentcache.FleetError
		switch err := in.c.Invalidate(ctx, target); {
		case errors.As(err, &fe):
			w.fleetErrors.Add(1) // Redis unreachable: the documented answer
		case err != nil:
			w.fail("%s Invalidate: %v", in.name, err)
		}
	}
}

// opKind names the call that op makes for k.
func opKind(k int) string {
	switch {
	case k < 30:
		return "profile"
	case k < 45:
		return "notes"
	case k < 60:
		return "orders"
	case k < 70:
		return "search"
	case k < 78:
		return "products.GetMany"
	case k < 85:
		return "products.Get"
	case k < 93:
		return "Get"
	case k < 97:
		return "addNote"
	}
	return "Invalidate"
}

// check fails t if any caller saw an error or a wrong answer.
func (w *workload) check(t testing.TB) {
	t.Helper()
	n, first := w.failed()
	if n > 0 {
		t.Errorf("%d of %d calls failed or got a wrong answer; first ones:\n%s", n, w.ops.Load(), joinLines(first))
	}
}

func joinLines(s []string) string {
	out := ""
	for _, l := range s {
		out += "  " + l + "\n"
	}
	return out
}

// sumStats adds up the stats of the instances.
func sumStats(insts []*instance) agentcache.Stats {
	var s agentcache.Stats
	for _, in := range insts {
		x := in.c.Stats()
		s.L1Hits += x.L1Hits
		s.L2Hits += x.L2Hits
		s.Misses += x.Misses
		s.NegativeHits += x.NegativeHits
		s.Loads += x.Loads
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
	}
	return s
}
