package reliability

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/testkit/redisenv"
	"github.com/agentcache/agentcache-go/internal/testkit/workload"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

var inboxRes = resource.Resource{Name: "rel_inbox", Scope: scope.User, TTL: time.Minute}

// replyCheck is a go-redis hook that checks, below the cache, that every
// reply to a GET or a batch of GETs names the same user as its key: keys
// and values of the isolation test both carry "user-<n>".
type replyCheck struct {
	checked, cancelled atomic.Int64
	mu                 sync.Mutex
	mismatches         []string
}

var userRE = regexp.MustCompile(`user-[0-9]+`)

// check checks cmd's reply; err is what the command returned (a process
// hook sees it before go-redis sets it on cmd).
func (h *replyCheck) check(cmd goredis.Cmder, err error) {
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			h.cancelled.Add(1)
		}
		return
	}
	key, val, ok := readReply(cmd)
	if !ok {
		return
	}
	want := userRE.FindString(key)
	if want == "" {
		return
	}
	h.checked.Add(1)
	for _, got := range userRE.FindAllString(val, -1) {
		if got != want {
			h.mu.Lock()
			h.mismatches = append(h.mismatches, "GET of "+want+"'s key returned "+got+"'s value")
			h.mu.Unlock()
			return
		}
	}
}

// readReply returns the key and the value of a read reply: a GET, or a
// call of tier/redis's read script (EVALSHA or EVAL, script, numkeys, the
// entry's key first; the reply's first element is the value, nil on a miss).
func readReply(cmd goredis.Cmder) (key, val string, ok bool) {
	args := cmd.Args()
	switch cmd.Name() {
	case "get":
		get, isStr := cmd.(*goredis.StringCmd)
		if !isStr || len(args) < 2 {
			return "", "", false
		}
		key, _ = args[1].(string)
		return key, get.Val(), true
	case "evalsha", "eval":
		c, isCmd := cmd.(*goredis.Cmd)
		if !isCmd || len(args) < 4 {
			return "", "", false
		}
		reply, isSlice := c.Val().([]any)
		if !isSlice || len(reply) == 0 {
			return "", "", false
		}
		v, isStr := reply[0].(string)
		if !isStr {
			return "", "", false // a miss
		}
		key, _ = args[3].(string)
		return key, v, true
	}
	return "", "", false
}

func (h *replyCheck) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *replyCheck) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.check(cmd, err)
		return err
	}
}
func (h *replyCheck) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.check(c, c.Err())
		}
		return err
	}
}

// TestIsolationUnderCancellation is the class of bug behind the ChatGPT
// incident of March 2023: a request cancelled after its command was written
// but before its reply was read left the reply on a pooled connection, and
// the next user of the connection read it as its own.
//
// Each instance has one connection (PoolSize 1) behind a proxy that delays
// every chunk, so that commands queue for the connection and cancellations
// land between write and read; a small L1 sends most lookups to Redis. Many
// users call per-user, per-session, batch and key-value lookups with
// contexts that end at random moments, and the application reads keys of
// its own on the same clients with such contexts.
//
// Promise checked: every answer a caller gets is its own — the cache's
// answer, and, below the cache, every GET reply names the user of its key.
func TestIsolationUnderCancellation(t *testing.T) {
	e := startRedis(t)
	p := e.Proxy()
	p.SetLatency(100 * time.Microsecond)
	const instances, users, workers = 3, 40, 32
	hook := &replyCheck{}
	b := &workload.Tools{}
	inbox := func(ctx context.Context, ids []int) (map[int]string, error) {
		u, _ := scope.UserFrom(ctx)
		out := make(map[int]string, len(ids))
		for _, id := range ids {
			out[id] = u + "/msg-" + strconv.Itoa(id)
		}
		return out, nil
	}
	type inst struct {
		*workload.Instance
		inbox  *agentcache.Batch[int, string]
		client *goredis.Client
	}
	var insts []inst
	for i := range instances {
		client := goredis.NewClient(func() *goredis.Options {
			o := clientOptions(p.Addr())
			o.PoolSize = 1
			o.PoolTimeout = time.Second
			return o
		}())
		client.AddHook(hook)
		o := faultOptions(redisenv.StoreOn(t, client, e.Prefix))
		o.L1MaxEntries = 64
		o.L2Timeout = 500 * time.Millisecond // queueing for the one connection is not a failure
		c := newCache(t, o)
		in := wrapInstance(t, "i"+strconv.Itoa(i), c, b)
		bt, err := agentcache.WrapBatch(c, inboxRes, inbox)
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, inst{in, bt, client})
	}
	e.waitSubscribed(instances)
	// The application shares each instance's client with the cache, as
	// services do, and reads keys of its own that name their user. The
	// cache never lets a caller's context cut off its own commands (its
	// reads run in flights, its epoch confirmations in the background),
	// but the application's commands are cut off on the connection the
	// cache uses next.
	appKey := func(user string) string { return e.Prefix + "app:" + user }
	for u := range users {
		user := "user-" + strconv.Itoa(u)
		if err := e.Raw.Set(context.Background(), appKey(user), "owned by "+user, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}

	var answers, cancelled, failures, appTimeouts atomic.Int64
	var mu sync.Mutex
	var first []string
	fail := func(s string) {
		failures.Add(1)
		mu.Lock()
		if len(first) < 10 {
			first = append(first, s)
		}
		mu.Unlock()
	}
	// Run until the dangerous path has been exercised enough, however
	// busy the machine is: at least 4s, at most 30s.
	var stopped atomic.Bool
	enough := func() bool {
		var l2 uint64
		for _, in := range insts {
			l2 += in.C.Stats().L2Hits
		}
		return answers.Load() >= 1000 && cancelled.Load() >= 200 && hook.cancelled.Load() >= 100 && hook.checked.Load() >= 1000 && l2 >= 400
	}
	go func() {
		start := time.Now()
		for time.Since(start) < 30*time.Second && (time.Since(start) < 4*time.Second || !enough()) {
			time.Sleep(10 * time.Millisecond)
		}
		stopped.Store(true)
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(7, uint64(w)))
			for !stopped.Load() {
				in := insts[rng.IntN(instances)]
				user := "user-" + strconv.Itoa(rng.IntN(users))
				session := "sess-" + user
				arg := "a" + strconv.Itoa(rng.IntN(3))
				// A deadline, not just a cancel: go-redis turns it into a
				// socket deadline, so it can cut a command off after its
				// write and before its reply.
				ctx, cancel := context.WithCancel(context.Background())
				switch r := rng.IntN(10); {
				case r == 0:
					cancel()
				case r < 5:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(50+rng.IntN(1000))*time.Microsecond)
				}
				ctx = scope.WithSession(scope.WithUser(ctx, user), session)
				var got string
				var err error
				app := false // go-redis reports a cut-off command as its own timeout
				switch rng.IntN(5) {
				case 0:
					var o workload.Answer
					if o, err = in.Profile(ctx, arg); err == nil && (o.User != user || o.Arg != arg) {
						fail(user + " got profile " + o.User + "/" + o.Arg)
					}
				case 1:
					var o workload.Answer
					if o, err = in.Notes(ctx, arg); err == nil && (o.Session != session || o.Arg != arg) {
						fail(session + " got notes " + o.Session + "/" + o.Arg)
					}
				case 2:
					id := rng.IntN(5)
					if got, err = in.inbox.Get(ctx, id); err == nil && got != user+"/msg-"+strconv.Itoa(id) {
						fail(user + " got inbox message " + got)
					}
				case 3:
					key := "kv:" + user + ":" + arg
					got, err = agentcache.Get(ctx, in.C, key, func(_ context.Context, k string) (string, error) {
						return "value of " + k, nil
					})
					if err == nil && got != "value of "+key {
						fail(user + " got " + got)
					}
				case 4:
					app = true
					if got, err = in.client.Get(ctx, appKey(user)).Result(); err == nil && got != "owned by "+user {
						fail(user + " read the application's key and got " + got)
					}
				}
				var ne net.Error
				switch {
				case err == nil:
					answers.Add(1)
				case ctx.Err() != nil && (errors.Is(err, ctx.Err()) || app):
					cancelled.Add(1)
				case app && errors.As(err, &ne) && ne.Timeout():
					// The application's own read, on the client's 100ms
					// ReadTimeout, behind 32 workers on one connection: on
					// a loaded machine it can time out. Its reply is what
					// this test checks (the hook), not its latency; the
					// cache's lookups never see such an error.
					appTimeouts.Add(1)
				default:
					fail(user + ": " + err.Error())
				}
				cancel()
			}
		})
	}
	wg.Wait()

	s := workload.SumStats(func() []*workload.Instance {
		var out []*workload.Instance
		for _, in := range insts {
			out = append(out, in.Instance)
		}
		return out
	}())
	hook.mu.Lock()
	mismatches := hook.mismatches
	hook.mu.Unlock()
	t.Logf("%d answers checked, %d calls cancelled, %d application reads timed out; below the cache %d GET replies checked, %d commands cut off by a cancelled context; %d L2 hits, %d tool runs",
		answers.Load(), cancelled.Load(), appTimeouts.Load(), hook.checked.Load(), hook.cancelled.Load(), s.L2Hits, b.Runs.Load())
	if len(mismatches) > 0 {
		t.Errorf("%d GET replies belonged to another user's key: %s", len(mismatches), strings.Join(mismatches[:min(5, len(mismatches))], "; "))
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d callers got an error or someone else's answer: %s", n, strings.Join(first, "; "))
	}
	// The test must have exercised the dangerous path.
	if !enough() {
		t.Errorf("not enough of the dangerous path exercised: %d answers, %d cancelled calls, %d commands cut off mid-flight, %d GET replies, %d L2 hits",
			answers.Load(), cancelled.Load(), hook.cancelled.Load(), hook.checked.Load(), s.L2Hits)
	}
}

// TestReplyCheckCatchesMismatch makes sure the hook above can fail.
func TestReplyCheckCatchesMismatch(t *testing.T) {
	h := &replyCheck{}
	ok := goredis.NewStringCmd(context.Background(), "get", "p:{res:u:user-1}:t:h")
	ok.SetVal(`{"user":"user-1"}`)
	bad := goredis.NewStringCmd(context.Background(), "get", "p:{res:u:user-1}:t:h")
	bad.SetVal(`{"user":"user-2"}`)
	h.check(ok, nil)
	h.check(bad, nil)
	// The read script's reply: {value, clock, leased, repaired}.
	script := func(val string) goredis.Cmder {
		c := goredis.NewCmd(context.Background(), "evalsha", "sha", 2, "p:kv:{t:user-1:k}", "p:lk:kv:{t:user-1:k}", "token", 10000)
		c.SetVal([]any{val, int64(1), int64(0), int64(0)})
		return c
	}
	h.check(script(`{"user":"user-1"}`), nil)
	h.check(script(`{"user":"user-3"}`), nil)
	if h.checked.Load() != 4 || len(h.mismatches) != 2 {
		t.Fatalf("checked %d replies, %d mismatches; want 4 and 2", h.checked.Load(), len(h.mismatches))
	}
}
