package agentcache

// Isolation between users and sessions: under cancelled callers and
// invalidations moving keys, every answer is the caller's own.

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/internal/leakcheck"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
)

// rcOwned is a tool result that names who it was computed for.
type rcOwned struct {
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
	Arg     string `json:"arg"`
	N       int64  `json:"n"`
}

// Callers of per-user and per-session resources on 3 instances, a quarter
// of them cancelled before or during their call, with invalidations moving
// keys under them, each get their own answer or, cancelled, their
// context's error. Over the in-memory L2, and over a redis-server and a
// 3-master cluster with a go-redis pool of one connection per instance
// (and node): every call queues for it, and a cancelled call must not
// leave its reply for the next one.
func TestScopesStayIsolatedUnderCancellations(t *testing.T) {
	for _, backend := range []l2Backend{
		l2Backends[0],
		{name: "one server, a pool of 1", open: func(t *testing.T, n int) *l2Env {
			e := rcStart(t)
			stores := make([]tier.Remote, n)
			for i := range stores {
				stores[i] = e.store(func(o *goredis.Options) { o.PoolSize = 1 })
			}
			return &l2Env{t: t, stores: stores}
		}},
		{name: "3-master cluster, pools of 1", open: func(t *testing.T, n int) *l2Env {
			leakcheck.Check(t)
			cl := redistest.StartCluster(t, 3, 0)
			prefix := redisenv.Prefix(t, "ac-")
			stores := make([]tier.Remote, n)
			for i := range stores {
				o := cl.ClusterOptions()
				o.ContextTimeoutEnabled = true
				o.PoolSize = 1
				stores[i] = redisenv.StoreOn(t, goredis.NewClusterClient(o), prefix)
			}
			return &l2Env{t: t, stores: stores}
		}},
	} {
		t.Run(backend.name, func(t *testing.T) {
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
			stores := backend.stores(t, instances)
			insts := make([]inst, instances)
			for i := range insts {
				c := rcNew(t, Options{L2: stores[i]})
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
		})
	}
}
