package main

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

// The soak's tools. Every answer names whom and what it was computed for.
var (
	profileRes  = resource.Resource{Name: "soak_profile", Scope: scope.User, TTL: 30 * time.Second}
	notesRes    = resource.Resource{Name: "soak_notes", Scope: scope.Session, TTL: 30 * time.Second}
	searchRes   = resource.Resource{Name: "soak_search", Scope: scope.Global, TTL: 20 * time.Second, StaleWindow: 10 * time.Second}
	productsRes = resource.Resource{Name: "soak_products", Scope: scope.Global, TTL: time.Minute}
	ordersRes   = resource.Resource{Name: "soak_orders", Scope: scope.User, TTL: time.Minute, NegativeTTL: 5 * time.Second}
)

const (
	users       = 50
	argsPerTool = 8
	products    = 500
	noOrder     = 40 // orders numbered from here do not exist
)

func productExists(id int) bool { return id%13 != 0 }

type answer struct {
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
	Arg     string `json:"arg"`
	Run     int64  `json:"run"`
}

type product struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// tools is the application behind the cache; it counts its runs.
type tools struct{ runs atomic.Int64 }

func (t *tools) profile(ctx context.Context, field string) (answer, error) {
	u, ok := scope.UserFrom(ctx)
	if !ok {
		return answer{}, errors.New("profile ran without a user")
	}
	return answer{User: u, Arg: field, Run: t.runs.Add(1)}, nil
}

func (t *tools) notes(ctx context.Context, topic string) (answer, error) {
	s, ok := scope.SessionFrom(ctx)
	if !ok {
		return answer{}, errors.New("notes ran without a session")
	}
	return answer{Session: s, Arg: topic, Run: t.runs.Add(1)}, nil
}

func (t *tools) addNote(ctx context.Context, topic string) (int64, error) {
	return t.runs.Add(1), nil
}

func (t *tools) orders(ctx context.Context, id int) (answer, error) {
	u, _ := scope.UserFrom(ctx)
	n := t.runs.Add(1)
	if id >= noOrder {
		return answer{}, fmt.Errorf("order %d: %w", id, agentcache.ErrNotFound)
	}
	return answer{User: u, Arg: strconv.Itoa(id), Run: n}, nil
}

func (t *tools) search(ctx context.Context, args json.RawMessage) (json.RawMessage, error) {
	var q struct {
		Q string `json:"q"`
	}
	if err := json.Unmarshal(args, &q); err != nil {
		return nil, err
	}
	return json.Marshal(answer{Arg: q.Q, Run: t.runs.Add(1)})
}

func (t *tools) products(ctx context.Context, ids []int) (map[int]product, error) {
	t.runs.Add(1)
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
	profile  func(context.Context, string) (answer, error)
	notes    func(context.Context, string) (answer, error)
	addNote  func(context.Context, string) (int64, error)
	orders   func(context.Context, int) (answer, error)
	search   agentcache.JSONTool
	products *agentcache.Batch[int, product]
}

func wrap(name string, c *agentcache.Cache, t *tools) (*instance, error) {
	in := &instance{name: name, c: c}
	var errs [6]error
	in.profile, errs[0] = agentcache.Wrap(c, profileRes, t.profile)
	in.notes, errs[1] = agentcache.Wrap(c, notesRes, t.notes, agentcache.RefreshAhead(0.8))
	in.addNote, errs[2] = agentcache.WrapMutation(c, t.addNote, notesRes)
	in.orders, errs[3] = agentcache.Wrap(c, ordersRes, t.orders)
	in.search, errs[4] = agentcache.WrapJSON(c, searchRes, t.search)
	in.products, errs[5] = agentcache.WrapBatch(c, productsRes, t.products)
	return in, errors.Join(errs[:]...)
}

// load drives the instances and checks every answer.
type load struct {
	insts []*instance

	ops, notFound, fleetErrors, failures atomic.Int64
	byKind                               [numOps]atomic.Int64

	mu    sync.Mutex
	first []string // the first failures
}

// The operations, with their share of the mix in percent.
const (
	opProfile = iota
	opNotes
	opOrders
	opSearch
	opGetMany
	opBatchGet
	opKVGet
	opKVSet
	opMutation
	opInvalidate
	opDelete
	numOps
)

var opNames = [numOps]string{"profile", "notes", "orders", "search", "products.GetMany", "products.Get",
	"Get", "Set", "mutation", "Invalidate", "Delete"}

var opShare = [numOps]int{22, 12, 12, 10, 6, 8, 12, 6, 6, 4, 2}

func pick(r int) int {
	for op, share := range opShare {
		if r < share {
			return op
		}
		r -= share
	}
	return opProfile
}

func (l *load) fail(format string, args ...any) {
	l.failures.Add(1)
	l.mu.Lock()
	if len(l.first) < 20 {
		l.first = append(l.first, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

// run calls the instances from workers goroutines until ctx ends.
func (l *load) run(ctx context.Context, workers int, seed uint64) {
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

// kvValue is what the key-value API holds at key: set by Set, loaded by
// the loader; both start with the key.
func kvValue(key string, rev int64) string { return key + "#" + strconv.FormatInt(rev, 10) }

func (l *load) op(rng *rand.Rand) {
	in := l.insts[rng.IntN(len(l.insts))]
	user := "user-" + strconv.Itoa(rng.IntN(users))
	session := "sess-" + strconv.Itoa(rng.IntN(users))
	arg := "arg" + strconv.Itoa(rng.IntN(argsPerTool))
	ctx := scope.WithSession(scope.WithUser(context.Background(), user), session)
	op := pick(rng.IntN(100))
	l.ops.Add(1)
	l.byKind[op].Add(1)
	switch op {
	case opProfile:
		got, err := in.profile(ctx, arg)
		if err != nil || got.User != user || got.Arg != arg {
			l.fail("%s profile(%s, %s) = %+v, %v", in.name, user, arg, got, err)
		}
	case opNotes:
		got, err := in.notes(ctx, arg)
		if err != nil || got.Session != session || got.Arg != arg {
			l.fail("%s notes(%s, %s) = %+v, %v", in.name, session, arg, got, err)
		}
	case opOrders:
		id := rng.IntN(noOrder * 3 / 2)
		got, err := in.orders(ctx, id)
		switch {
		case id >= noOrder && errors.Is(err, agentcache.ErrNotFound):
			l.notFound.Add(1)
		case id >= noOrder:
			l.fail("%s orders(%s, %d) = %+v, %v; want not found", in.name, user, id, got, err)
		case err != nil || got.User != user || got.Arg != strconv.Itoa(id):
			l.fail("%s orders(%s, %d) = %+v, %v", in.name, user, id, got, err)
		}
	case opSearch:
		q := "q-" + arg
		raw, err := in.search(ctx, json.RawMessage(`{ "q" : "`+q+`" }`))
		var got answer
		if err == nil {
			err = json.Unmarshal(raw, &got)
		}
		if err != nil || got.Arg != q {
			l.fail("%s search(%s) = %s, %v", in.name, q, raw, err)
		}
	case opGetMany:
		ids := make([]int, 1+rng.IntN(40))
		for i := range ids {
			ids[i] = rng.IntN(products)
		}
		got, err := in.products.GetMany(ctx, ids)
		if err != nil {
			l.fail("%s products.GetMany: %v", in.name, err)
			return
		}
		for _, id := range ids {
			p, ok := got[id]
			switch {
			case !productExists(id) && ok:
				l.fail("%s products.GetMany: %d does not exist, got %+v", in.name, id, p)
			case productExists(id) && (!ok || p.ID != id):
				l.fail("%s products.GetMany: %d = %+v, %v", in.name, id, p, ok)
			}
		}
	case opBatchGet:
		id := rng.IntN(products)
		p, err := in.products.Get(ctx, id)
		switch {
		case !productExists(id) && errors.Is(err, agentcache.ErrNotFound):
			l.notFound.Add(1)
		case !productExists(id):
			l.fail("%s products.Get(%d) = %+v, %v; want not found", in.name, id, p, err)
		case err != nil || p.ID != id:
			l.fail("%s products.Get(%d) = %+v, %v", in.name, id, p, err)
		}
	case opKVGet:
		key := "cfg:" + user + ":" + arg
		got, err := agentcache.Get(ctx, in.c, key, agentcache.LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
			return kvValue(key, 0), nil
		}))
		if err != nil || !strings.HasPrefix(got, key+"#") {
			l.fail("%s Get(%s) = %q, %v", in.name, key, got, err)
		}
	case opKVSet:
		key := "cfg:" + user + ":" + arg
		if err := in.c.Set(ctx, key, kvValue(key, rng.Int64N(1000)), 0); err != nil {
			l.fail("%s Set(%s): %v", in.name, key, err)
		}
	case opMutation:
		if _, err := in.addNote(ctx, arg); err != nil {
			l.fail("%s addNote(%s): %v", in.name, session, err)
		}
	case opInvalidate:
		targets := []agentcache.Target{
			agentcache.TargetUser(user),
			agentcache.TargetResourceScope(profileRes, user),
			agentcache.TargetResourceScope(ordersRes, user),
			agentcache.TargetSession(session),
			agentcache.TargetCall(profileRes, user, arg),
			agentcache.TargetResource(searchRes),
		}
		l.fleet(in, "Invalidate", in.c.Invalidate(ctx, targets[rng.IntN(len(targets))]))
	case opDelete:
		l.fleet(in, "Delete", in.c.Delete(ctx, "cfg:"+user+":"+arg))
	}
}

// fleet classifies the result of a fleet-wide operation: a *FleetError is
// the documented answer while Redis is unreachable.
func (l *load) fleet(in *instance, op string, err error) {
	var fe *agentcache.FleetError
	switch {
	case errors.As(err, &fe):
		l.fleetErrors.Add(1)
	case err != nil:
		l.fail("%s %s: %v", in.name, op, err)
	}
}
