package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/internal/redistest"
	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/redis"
)

// The prefix has glob metacharacters: a SCAN MATCH that does not escape
// them would also match the decoy cache under decoyPrefix.
const (
	prefix      = "app[1]:"
	decoyPrefix = "app1:"
)

var (
	weatherRes = resource.Resource{Name: "get_weather", Scope: scope.Global, TTL: 10 * time.Minute, Version: 2}
	cartRes    = resource.Resource{Name: "get_cart", Scope: scope.User, TTL: 5 * time.Minute, Version: 1}
	orderRes   = resource.Resource{Name: "get_order", Scope: scope.User, TTL: 5 * time.Minute, NegativeTTL: time.Minute}
	notesRes   = resource.Resource{Name: "session_notes", Scope: scope.Session, TTL: time.Minute}
)

type cityArgs struct {
	City string `json:"city"`
}

type pageArgs struct {
	Page int `json:"page"`
}

type orderArgs struct {
	ID string `json:"id"`
}

// result is what every test tool returns: Gen counts the runs of the tool
// for the same label, so a reloaded value differs from the old one.
type result struct {
	Label string `json:"label"`
	Gen   int    `json:"gen"`
}

// runs counts tool runs per label, across every instance of a test.
type runs struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *runs) run(label string) result {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[label]++
	return result{Label: label, Gen: r.n[label]}
}

func (r *runs) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.n)
}

// instance is one application instance: a Cache on the Redis store with
// the four tools wrapped.
type instance struct {
	c       *agentcache.Cache
	weather func(context.Context, cityArgs) (result, error)
	cart    func(context.Context, pageArgs) (result, error)
	order   func(context.Context, orderArgs) (result, error)
	notes   func(context.Context, struct{}) (result, error)
	runs    *runs
}

// newStore opens a store on a single server or, with addrs, a cluster.
func newStore(t *testing.T, url string, addrs []string, pfx string) *redis.Store {
	t.Helper()
	var st *redis.Store
	var err error
	if addrs != nil {
		st, err = redis.NewFromConfig(redis.Config{Addrs: addrs, ReadTimeout: time.Second, WriteTimeout: time.Second}, redis.Options{Prefix: pfx})
	} else {
		st, err = redis.NewFromURL(url, redis.Options{Prefix: pfx})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newInstance(t *testing.T, st *redis.Store, r *runs) *instance {
	t.Helper()
	c, err := agentcache.New(agentcache.Options{L2: st, Logger: slog.New(slog.DiscardHandler), L2Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	in := &instance{c: c, runs: r}
	user := func(ctx context.Context) string { id, _ := scope.UserFrom(ctx); return id }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	in.weather, err = agentcache.Wrap(c, weatherRes, func(ctx context.Context, a cityArgs) (result, error) {
		return r.run("weather/" + a.City), nil
	})
	must(err)
	in.cart, err = agentcache.Wrap(c, cartRes, func(ctx context.Context, a pageArgs) (result, error) {
		return r.run(fmt.Sprintf("cart/%s/%d", user(ctx), a.Page)), nil
	})
	must(err)
	in.order, err = agentcache.Wrap(c, orderRes, func(ctx context.Context, a orderArgs) (result, error) {
		res := r.run("order/" + user(ctx) + "/" + a.ID)
		if strings.HasPrefix(a.ID, "guess") {
			return result{}, agentcache.ErrNotFound
		}
		return res, nil
	})
	must(err)
	in.notes, err = agentcache.Wrap(c, notesRes, func(ctx context.Context, _ struct{}) (result, error) {
		id, _ := scope.SessionFrom(ctx)
		return r.run("notes/" + id), nil
	})
	must(err)
	return in
}

// Users of the fixture: "team:{a}" escapes to team%3A%7Ba%7D and must never
// be confused with "team".
var users = []string{"alice", "bob", "team:{a}", "team"}

// callAll makes every call of the fixture and returns the values served by
// label ("-" for a not-found answer).
func (in *instance) callAll(t *testing.T) map[string]int {
	t.Helper()
	ctx := context.Background()
	got := map[string]int{}
	put := func(label string, v result, err error) {
		t.Helper()
		switch {
		case errors.Is(err, agentcache.ErrNotFound):
			got[label] = -1
		case err != nil:
			t.Fatalf("%s: %v", label, err)
		default:
			got[label] = v.Gen
		}
	}
	for _, city := range []string{"paris", "tokyo", "lima"} {
		v, err := in.weather(ctx, cityArgs{City: city})
		put("weather/"+city, v, err)
	}
	for _, u := range users {
		uctx := scope.WithUser(ctx, u)
		pages := []int{1}
		if u == "alice" {
			pages = []int{1, 2}
		}
		for _, p := range pages {
			v, err := in.cart(uctx, pageArgs{Page: p})
			put(fmt.Sprintf("cart/%s/%d", u, p), v, err)
		}
	}
	actx := scope.WithUser(ctx, "alice")
	for _, id := range []string{"A-1", "guess-1", "guess-2"} {
		v, err := in.order(actx, orderArgs{ID: id})
		put("order/alice/"+id, v, err)
	}
	v, err := in.notes(scope.WithSession(ctx, "s-1"), struct{}{})
	put("notes/s-1", v, err)
	kv, err := agentcache.Get(ctx, in.c, "greeting", func(context.Context, string) (result, error) {
		return in.runs.run("kv/greeting"), nil
	})
	put("kv/greeting", kv, err)
	return got
}

// fixtureEntries is how many L2 entries populate writes: 3 weather, 5 cart,
// 3 order (2 not found), 1 note, 1 key-value.
const fixtureEntries = 13

// populate fills Redis through an instance and waits for the L2 writes.
func populate(t *testing.T, st *redis.Store, r *runs) *instance {
	t.Helper()
	in := newInstance(t, st, r)
	if err := in.c.Set(context.Background(), "greeting", result{Label: "kv/greeting", Gen: 1}, 0); err != nil {
		t.Fatal(err)
	}
	in.callAll(t)
	waitWrites(t, in.c, fixtureEntries)
	return in
}

func waitWrites(t *testing.T, c *agentcache.Cache, n uint64) {
	t.Helper()
	wait.Until(t, 10*time.Second, func() string {
		if s := c.Stats(); s.WritesDone < n {
			return fmt.Sprintf("L2 writes: %+v, want %d done", s, n)
		}
		return ""
	})
}

// ran returns the labels whose tool ran since before.
func ran(before, after map[string]int) []string {
	var out []string
	for k, n := range after {
		if n != before[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// reloads calls everything on a fresh instance (no L1: every answer comes
// from L2 or the tool) and returns the labels whose tool ran.
func reloads(t *testing.T, st *redis.Store, r *runs) []string {
	t.Helper()
	before := r.snapshot()
	newInstance(t, st, r).callAll(t)
	return ran(before, r.snapshot())
}

// cli runs the CLI in process.
func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// ok runs the CLI and fails the test unless it succeeds.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("agentcache %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func clearEnv(t *testing.T) {
	for _, k := range []string{"AGENTCACHE_URL", "AGENTCACHE_CLUSTER", "AGENTCACHE_PREFIX"} {
		t.Setenv(k, "")
	}
}

func statsJSON(t *testing.T, args ...string) statsReport {
	t.Helper()
	var rep statsReport
	out := ok(t, append([]string{"stats", "-json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stats -json: %v\n%s", err, out)
	}
	return rep
}

func byResource(rep statsReport) map[string]resStats {
	m := map[string]resStats{}
	for _, r := range rep.Resources {
		m[r.Resource] = r
	}
	return m
}

// setup starts a server, fills it through the library, and adds a decoy
// cache under decoyPrefix and a foreign key under the prefix.
func setup(t *testing.T) (srv *redistest.Server, st *redis.Store, r *runs, in *instance) {
	t.Helper()
	clearEnv(t)
	srv = redistest.Start(t)
	st = newStore(t, srv.URL(), nil, prefix)
	r = &runs{}
	in = populate(t, st, r)
	populate(t, newStore(t, srv.URL(), nil, decoyPrefix), &runs{})
	if err := st.Client().Set(context.Background(), prefix+"not-ours", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	return srv, st, r, in
}

func TestStats(t *testing.T) {
	srv, st, _, _ := setup(t)
	conn := []string{"-url", srv.URL(), "-prefix", prefix}

	for _, exact := range []bool{false, true} {
		args := conn
		if exact {
			args = append(slices.Clone(conn), "-exact")
		}
		rep := statsJSON(t, args...)
		res := byResource(rep)
		want := map[string]struct {
			scope                    string
			entries, notFound, scIDs int
		}{
			"get_weather@2":   {"global", 3, 0, 0},
			"get_cart@1":      {"user", 5, 0, 4},
			"get_order@0":     {"user", 3, 2, 1},
			"session_notes@0": {"session", 1, 0, 1},
		}
		if len(res) != len(want) {
			t.Fatalf("exact=%v: resources %v, want %v", exact, slices.Collect(maps.Keys(res)), slices.Collect(maps.Keys(want)))
		}
		for id, w := range want {
			g := res[id]
			if g.Scope != w.scope || g.Entries != int64(w.entries) || g.Live != int64(w.entries) ||
				g.NotFound != int64(w.notFound) || g.Scopes != w.scIDs || g.Leases != 0 || g.Sampled != int64(w.entries) {
				t.Errorf("exact=%v: %s = %+v, want %+v", exact, id, g, w)
			}
			if g.MemoryBytes <= 0 || g.TTL == nil || g.TTL.MinMS <= 0 || g.TTL.MaxMS > (10*time.Minute).Milliseconds() || g.TTL.MinMS > g.TTL.MedianMS || g.TTL.MedianMS > g.TTL.MaxMS {
				t.Errorf("exact=%v: %s memory %d, TTL %+v", exact, id, g.MemoryBytes, g.TTL)
			}
			if g.IDs != nil {
				t.Errorf("%s lists IDs without -show-ids: %v", id, g.IDs)
			}
		}
		if kv := rep.KeyValue; kv.Entries != 1 || kv.Live != 1 {
			t.Errorf("key-value: %+v", kv)
		}
		// ep:g; ep:r for 4 resources; ep:s for 4 users and 1 session; and
		// a resource-in-scope epoch per user of cart (4), of order (1),
		// and the session of notes (1).
		if e := rep.Epochs; e != (epochCounts{Total: 16, Global: 1, Resource: 4, Scope: 5, ResourceScope: 6}) {
			t.Errorf("epochs %+v", e)
		}
		if rep.OtherKeys != 1 || rep.Masters != 1 || rep.KeysScanned != fixtureEntries+16+1 {
			t.Errorf("other keys %d, masters %d, scanned %d", rep.OtherKeys, rep.Masters, rep.KeysScanned)
		}
	}

	// A sample of one entry per resource: counts stay exact, the rest is
	// scaled from the sample.
	rep := statsJSON(t, append(slices.Clone(conn), "-sample", "1")...)
	if g := byResource(rep)["get_cart@1"]; g.Entries != 5 || g.Sampled != 1 || g.Scopes != 4 || g.Live != 5 {
		t.Errorf("-sample 1: %+v", g)
	}

	rep = statsJSON(t, append(slices.Clone(conn), "-show-ids")...)
	if g := byResource(rep)["get_cart@1"]; !slices.Equal(g.IDs, []string{"user:alice", "user:bob", "user:team", "user:team:{a}"}) {
		t.Errorf("-show-ids: %q", g.IDs)
	}

	// Connection flags before the command.
	var before statsReport
	if err := json.Unmarshal([]byte(ok(t, "-url", srv.URL(), "-prefix", prefix, "stats", "-json")), &before); err != nil || before.KeysScanned != rep.KeysScanned {
		t.Errorf("flags before the command: %+v, %v", before, err)
	}

	// The table, and the environment instead of flags.
	t.Setenv("AGENTCACHE_URL", srv.URL())
	t.Setenv("AGENTCACHE_PREFIX", prefix)
	out := ok(t, "stats")
	t.Logf("stats output:\n%s", out)
	for _, want := range []string{"RESOURCE", "get_cart@1", "get_order@0", "(key-value)", "epochs: 16 (1 global, 4 resource, 5 scope, 6 resource-in-scope)", "other keys under the prefix: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
	if fields := strings.Fields(lineWith(out, "get_order@0")); !slices.Equal(fields[:5], []string{"get_order@0", "user", "3", "3", "2"}) {
		t.Errorf("get_order row: %q", fields)
	}
	if strings.Contains(out, "alice") {
		t.Errorf("stats prints IDs without -show-ids:\n%s", out)
	}

	// A load in progress holds a fleet-lock lease.
	c, err := agentcache.New(agentcache.Options{L2: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	release := make(chan struct{})
	search, err := agentcache.Wrap(c, resource.Resource{Name: "search_docs"}, func(ctx context.Context, q string) (string, error) {
		<-release
		return "results for " + q, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := search(context.Background(), "epochs"); done <- err }()
	wait.For(t, 5*time.Second, "stats to see the lease of the running load", func() bool {
		return byResource(statsJSON(t))["search_docs@0"].Leases == 1
	})
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g := byResource(statsJSON(t))["search_docs@0"]; g.Leases != 0 || g.Entries != 1 || g.Live != 1 || g.Scope != "global" {
		t.Errorf("after the load: %+v", g)
	}
}

func lineWith(out, s string) string {
	for l := range strings.Lines(out) {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func inspectJSON(t *testing.T, args ...string) inspectReport {
	t.Helper()
	var rep inspectReport
	out := ok(t, append([]string{"inspect", "-json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect -json: %v\n%s", err, out)
	}
	return rep
}

func TestInspect(t *testing.T) {
	srv, _, _, _ := setup(t)
	conn := []string{"-url", srv.URL(), "-prefix", prefix}
	keys := func(rep inspectReport) []string {
		var ks []string
		for _, e := range rep.Entries {
			ks = append(ks, strings.TrimPrefix(e.Key, prefix))
		}
		return ks
	}

	// A user ID with ':' and '{' is escaped in the pattern and the keys, and
	// never matches the user "team".
	rep := inspectJSON(t, append(slices.Clone(conn), "-user", "team:{a}")...)
	if len(rep.Entries) != 1 {
		t.Fatalf("user team:{a}: %+v", rep.Entries)
	}
	e := rep.Entries[0]
	if !strings.HasPrefix(e.Key, prefix+"{get_cart@1:u:team%3A%7Ba%7D}:") || e.ID != "team:{a}" || e.Kind != "value" ||
		e.State != "live" || e.Scope != "user" || e.TTLMS <= 0 || e.Size <= int64(keyspace.HeaderLen) || e.Value != nil {
		t.Errorf("team:{a} entry %+v", e)
	}
	rep = inspectJSON(t, append(slices.Clone(conn), "-user", "team")...)
	if len(rep.Entries) != 1 || rep.Entries[0].ID != "team" {
		t.Errorf("user team: %+v", rep.Entries)
	}

	// One user across resources: values and not-found markers.
	rep = inspectJSON(t, append(slices.Clone(conn), "-user", "alice")...)
	kinds := map[string]int{}
	for _, e := range rep.Entries {
		kinds[e.Resource+" "+e.Kind]++
	}
	if want := map[string]int{"get_cart@1 value": 2, "get_order@0 value": 1, "get_order@0 not-found": 2}; !maps.Equal(kinds, want) {
		t.Errorf("alice: %v, want %v", kinds, want)
	}

	// A resource in every version and scope; an exact version; a version
	// that has nothing.
	if rep = inspectJSON(t, append(slices.Clone(conn), "-resource", "get_weather")...); len(rep.Entries) != 3 {
		t.Errorf("get_weather: %v", keys(rep))
	}
	if rep = inspectJSON(t, append(slices.Clone(conn), "-resource", "get_cart@1")...); len(rep.Entries) != 5 {
		t.Errorf("get_cart@1: %v", keys(rep))
	}
	if rep = inspectJSON(t, append(slices.Clone(conn), "-resource", "get_cart@2")...); len(rep.Entries) != 0 {
		t.Errorf("get_cart@2: %v", keys(rep))
	}
	if rep = inspectJSON(t, append(slices.Clone(conn), "-resource", "get_cart", "-user", "alice", "-limit", "1")...); len(rep.Entries) != 1 || !rep.More {
		t.Errorf("-limit 1: %v more=%v", keys(rep), rep.More)
	}

	// Values only on request, decoded from the envelope, cut at -max-bytes.
	out := ok(t, append(slices.Clone(conn), "inspect", "-resource", "get_cart@1", "-user", "bob")...)
	if strings.Contains(out, `"label"`) || !strings.Contains(out, "{get_cart@1:u:bob}") {
		t.Errorf("inspect without -values:\n%s", out)
	}
	out = ok(t, append(slices.Clone(conn), "inspect", "-resource", "get_cart@1", "-user", "bob", "-values")...)
	if !strings.Contains(out, `{"label":"cart/bob/1","gen":1}`) {
		t.Errorf("inspect -values:\n%s", out)
	}
	t.Logf("inspect -values output:\n%s", out)
	rep = inspectJSON(t, append(slices.Clone(conn), "-resource", "get_cart@1", "-user", "bob", "-values", "-max-bytes", "8")...)
	if e := rep.Entries[0]; e.Value != nil || e.ValueText != `{"label"` || !e.Truncated || e.ValueBytes != len(`{"label":"cart/bob/1","gen":1}`) {
		t.Errorf("-max-bytes 8: %+v", e)
	}
	rep = inspectJSON(t, append(slices.Clone(conn), "-resource", "get_order", "-user", "alice", "-values")...)
	for _, e := range rep.Entries {
		if (e.Kind == "not-found") != (e.Value == nil) {
			t.Errorf("order entry %+v", e)
		}
	}
}

func TestInvalidate(t *testing.T) {
	srv, st, r, a := setup(t)
	conn := []string{"-url", srv.URL(), "-prefix", prefix}

	if got := reloads(t, st, r); got != nil {
		t.Fatalf("before any invalidation a fresh instance ran %v", got)
	}

	step := func(args []string, want []string) {
		t.Helper()
		out, errOut, code := cli(t, "", append(append([]string{"invalidate"}, conn...), args...)...)
		if code != 0 || !strings.HasPrefix(out, "invalidated ") {
			t.Errorf("invalidate %v: exit %d, printed %q, stderr %q", args, code, out, errOut)
		}
		// A target with nothing cached gets a note (a wrong version, say).
		if noted := strings.Contains(errOut, "agentcache: invalidate: note: "); noted != (want == nil) {
			t.Errorf("invalidate %v: stderr %q", args, errOut)
		}
		if got := reloads(t, st, r); !slices.Equal(got, want) {
			t.Errorf("after invalidate %v, the tools that ran: %v, want %v", args, got, want)
		}
	}

	// One user's cart: stats and inspect see the old entries as orphaned.
	out := ok(t, append(append([]string{"invalidate"}, conn...), "-resource", "get_cart@1", "-user", "alice")...)
	if want := "invalidated get_cart@1 for user \"alice\"\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	if g := byResource(statsJSON(t, conn...))["get_cart@1"]; g.Entries != 5 || g.Live != 3 {
		t.Errorf("stats after invalidating alice's cart: %+v", g)
	}
	for _, e := range inspectJSON(t, append(slices.Clone(conn), "-user", "alice")...).Entries {
		if want := map[bool]string{true: "orphaned", false: "live"}[e.Resource == "get_cart@1"]; e.State != want {
			t.Errorf("%s: state %s, want %s", e.Key, e.State, want)
		}
	}
	if got, want := reloads(t, st, r), []string{"cart/alice/1", "cart/alice/2"}; !slices.Equal(got, want) {
		t.Errorf("tools that ran: %v, want %v", got, want)
	}
	// The instance that filled the cache is told by the message: it stops
	// serving alice's old cart (gen 1) and keeps everything else.
	var got map[string]int
	wait.Until(t, 5*time.Second, func() string {
		if got = a.callAll(t); got["cart/alice/1"] != 2 || got["cart/alice/2"] != 2 {
			return fmt.Sprintf("the first instance still serves %v", got)
		}
		return ""
	})
	for k, v := range got {
		if !strings.HasPrefix(k, "cart/alice/") && v != 1 && v != -1 {
			t.Errorf("the first instance serves %s gen %d", k, v)
		}
	}

	step([]string{"-user", "bob"}, []string{"cart/bob/1"})
	step([]string{"-session", "s-1"}, []string{"notes/s-1"})
	// An exact call, with the arguments spelled differently from the tool's
	// encoding: the canonical hash still finds it. Version 0 is the default.
	step([]string{"-resource", "get_order", "-user", "alice", "-args", `{ "id" : "A-1" }`}, []string{"order/alice/A-1"})
	step([]string{"-resource", "get_order", "-user", "alice", "-args", `{"id":"guess-1"}`}, []string{"order/alice/guess-1"})
	step([]string{"-resource", "get_weather@2", "-args", `{"city":"lima"}`}, []string{"weather/lima"})
	step([]string{"-resource", "get_weather@2"}, []string{"weather/lima", "weather/paris", "weather/tokyo"})
	step([]string{"-resource", "get_cart@1", "-scope", "user"}, []string{"cart/alice/1", "cart/alice/2", "cart/bob/1", "cart/team/1", "cart/team:{a}/1"})
	// Another version or another user invalidates nothing here.
	step([]string{"-resource", "get_cart@7", "-user", "alice"}, nil)
	step([]string{"-user", "team:{a}"}, []string{"cart/team:{a}/1"})
	step([]string{"-session", "s-2", "-user", "nobody"}, nil)
}

func TestInvalidateAll(t *testing.T) {
	srv, st, r, _ := setup(t)
	conn := []string{"-url", srv.URL(), "-prefix", prefix, "invalidate", "-all"}

	for _, answer := range []string{"", "app1:\n", "yes\n"} {
		_, errOut, code := cli(t, answer, conn...)
		if code != 1 || !strings.Contains(errOut, "Type the prefix to confirm") ||
			!strings.HasSuffix(errOut, "agentcache: invalidate: the confirmation did not match the prefix; nothing was invalidated\n") {
			t.Errorf("answer %q: exit %d, stderr %q", answer, code, errOut)
		}
	}
	if got := reloads(t, st, r); got != nil {
		t.Fatalf("an aborted -all invalidated %v", got)
	}
	if _, errOut, code := cli(t, prefix+"\n", conn...); code != 0 {
		t.Fatalf("confirmed -all: exit %d: %s", code, errOut)
	}
	rep := statsJSON(t, "-url", srv.URL(), "-prefix", prefix)
	for _, g := range append(rep.Resources, rep.KeyValue) {
		if g.Live != 0 {
			t.Errorf("after -all %s has %d live entries", g.Resource, g.Live)
		}
	}
	if got := reloads(t, st, r); len(got) != fixtureEntries {
		t.Errorf("after -all the tools that ran: %v", got)
	}
	// The decoy cache under another prefix is untouched.
	decoy := statsJSON(t, "-url", srv.URL(), "-prefix", decoyPrefix)
	if g := byResource(decoy)["get_cart@1"]; g.Live != 5 {
		t.Errorf("decoy prefix: %+v", g)
	}
	before := r.snapshot()
	ok(t, append(slices.Clone(conn), "-yes")...)
	if got := reloads(t, st, r); len(got) != fixtureEntries {
		t.Errorf("after -all -yes the tools that ran: %v (before %v)", got, before)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestErrors(t *testing.T) {
	clearEnv(t)
	srv := redistest.Start(t, redistest.Config{Password: "s3cret-pass"})
	good := "redis://:s3cret-pass@" + srv.Addr()
	ok(t, "stats", "-url", good)

	cases := []struct {
		name string
		args []string
		code int
		want string // in the one line on stderr
	}{
		{"no command", nil, 2, "no command"},
		{"unknown command", []string{"purge"}, 2, `unknown command "purge"`},
		{"unknown flag", []string{"stats", "-url", good, "-verbose"}, 2, "stats: flag provided but not defined: -verbose"},
		{"stray argument", []string{"stats", "-url", good, "extra"}, 2, `unexpected argument "extra"`},
		{"no server", []string{"stats"}, 2, "no server: set -url or -cluster"},
		{"both servers", []string{"stats", "-url", good, "-cluster", srv.Addr()}, 2, "give -url or -cluster, not both"},
		{"bad scheme", []string{"stats", "-url", "http://" + srv.Addr()}, 2, `scheme "http"`},
		{"bad url", []string{"stats", "-url", "redis://:s3cret-pass@host:port:x"}, 2, "invalid -url"},
		{"bad prefix", []string{"stats", "-url", good, "-prefix", "a{b}"}, 1, "prefix must not contain"},
		{"unreachable", []string{"stats", "-url", "redis://" + freePort(t)}, 1, "connecting to 127.0.0.1:"},
		{"unreachable cluster", []string{"stats", "-cluster", freePort(t)}, 1, "connecting to"},
		{"wrong password", []string{"stats", "-url", "redis://:wrong-pass@" + srv.Addr()}, 1, "authentication failed"},
		{"no password", []string{"inspect", "-url", "redis://" + srv.Addr(), "-user", "alice"}, 1, "authentication failed"},
		{"inspect nothing", []string{"inspect", "-url", good}, 2, "nothing to inspect"},
		{"inspect bad resource", []string{"inspect", "-url", good, "-resource", "get cart"}, 2, `-resource "get cart"`},
		{"inspect bad user", []string{"inspect", "-url", good, "-user", "a b"}, 2, "-user: scope:"},
		{"invalidate nothing", []string{"invalidate", "-url", good}, 2, "nothing to invalidate"},
		{"args without resource", []string{"invalidate", "-url", good, "-user", "u", "-args", "{}"}, 2, "-args needs -resource"},
		{"args without user", []string{"invalidate", "-url", good, "-resource", "r", "-scope", "user", "-args", "{}"}, 2, "needs -user"},
		{"bad args", []string{"invalidate", "-url", good, "-resource", "r", "-args", "{nope"}, 2, "-args:"},
		{"bad scope", []string{"invalidate", "-url", good, "-resource", "r", "-scope", "team"}, 2, `unknown kind "team"`},
		{"scope conflict", []string{"invalidate", "-url", good, "-resource", "r", "-scope", "session", "-user", "u"}, 2, "does not go with"},
		{"all and more", []string{"invalidate", "-url", good, "-all", "-user", "u"}, 2, "-all takes no other target"},
		{"wrong password invalidate", []string{"invalidate", "-url", "redis://:wrong-pass@" + srv.Addr(), "-user", "u"}, 1, "authentication failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := cli(t, "", tc.args...)
			if code != tc.code || out != "" || !strings.HasPrefix(errOut, "agentcache: ") ||
				strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and one line with %q", code, out, errOut, tc.code, tc.want)
			}
			if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, "wrong-pass") {
				t.Errorf("stderr repeats a password: %q", errOut)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	clearEnv(t)
	t.Setenv("AGENTCACHE_URL", "redis://:hidden@localhost:1")
	for _, args := range [][]string{{"-h"}, {"help"}} {
		out, _, code := cli(t, "", args...)
		if code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "invalidate") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "-h"}, {"help", c.name}} {
			out, errOut, code := cli(t, "", args...)
			if code != 0 || errOut != "" || !strings.Contains(out, "Usage: agentcache "+c.name) || !strings.Contains(out, "Flags:") {
				t.Errorf("%v: exit %d, stderr %q\n%s", args, code, errOut, out)
			}
			if c.name != "version" && (!strings.Contains(out, "Examples:") || !strings.Contains(out, "-prefix")) {
				t.Errorf("%v lacks examples or connection flags:\n%s", args, out)
			}
			if strings.Contains(out, "hidden") {
				t.Errorf("%v shows the URL from the environment:\n%s", args, out)
			}
		}
	}
	out := ok(t, "version")
	if !strings.HasPrefix(out, "agentcache ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %q", out)
	}
}

func TestCluster(t *testing.T) {
	clearEnv(t)
	cl := redistest.StartCluster(t, 3, 0)
	addrs := cl.Addrs()
	st := newStore(t, "", addrs, prefix)
	r := &runs{}
	in := newInstance(t, st, r)
	ctx := context.Background()
	const n = 24
	for i := range n {
		if _, err := in.cart(scope.WithUser(ctx, fmt.Sprintf("user-%d", i)), pageArgs{Page: 1}); err != nil {
			t.Fatal(err)
		}
	}
	waitWrites(t, in.c, n)
	// The users' slots spread over the masters, so a scan of one master
	// would miss entries.
	masters := 0
	var mu sync.Mutex
	err := cl.Client(t).ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		keys, _, err := c.Scan(ctx, 0, keyspace.Glob(prefix)+"{get_cart*", 1000).Result()
		if len(keys) > 0 {
			mu.Lock()
			masters++
			mu.Unlock()
		}
		return err
	})
	if err != nil || masters < 2 {
		t.Fatalf("entries on %d masters (%v)", masters, err)
	}

	seeds := strings.Join(addrs, ",")
	t.Setenv("AGENTCACHE_CLUSTER", seeds)
	t.Setenv("AGENTCACHE_PREFIX", prefix)
	if g := byResource(statsJSON(t))["get_cart@1"]; g.Entries != n {
		t.Errorf("stats with $AGENTCACHE_CLUSTER: %+v", g)
	}
	for _, args := range [][]string{{"-cluster", seeds}, {"-cluster", seeds, "-exact"}, {"-cluster", "redis://" + addrs[1] + "?addr=" + addrs[2]}} {
		rep := statsJSON(t, append(args, "-prefix", prefix)...)
		g := byResource(rep)["get_cart@1"]
		if rep.Masters != 3 || g.Entries != n || g.Live != n || g.Scopes != n || g.MemoryBytes <= 0 {
			t.Errorf("%v: masters %d, %+v", args, rep.Masters, g)
		}
	}
	conn := []string{"-cluster", seeds, "-prefix", prefix}
	if rep := inspectJSON(t, append(slices.Clone(conn), "-resource", "get_cart@1", "-user", "user-7")...); len(rep.Entries) != 1 || rep.Entries[0].State != "live" {
		t.Errorf("inspect user-7: %+v", rep.Entries)
	}
	if rep := inspectJSON(t, append(slices.Clone(conn), "-user", "user-7")...); len(rep.Entries) != 1 {
		t.Errorf("inspect user-7 on every master: %+v", rep.Entries)
	}

	ok(t, append(append([]string{"invalidate"}, conn...), "-resource", "get_cart@1", "-user", "user-7")...)
	if g := byResource(statsJSON(t, conn...))["get_cart@1"]; g.Live != n-1 {
		t.Errorf("after invalidating user-7: %+v", g)
	}
	before := r.snapshot()
	fresh := newInstance(t, st, r)
	for i := range n {
		if _, err := fresh.cart(scope.WithUser(ctx, fmt.Sprintf("user-%d", i)), pageArgs{Page: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if got := ran(before, r.snapshot()); !slices.Equal(got, []string{"cart/user-7/1"}) {
		t.Errorf("after invalidating user-7 the tools that ran: %v", got)
	}

	ok(t, append(append([]string{"invalidate"}, conn...), "-all", "-yes")...)
	if g := byResource(statsJSON(t, conn...))["get_cart@1"]; g.Live != 0 {
		t.Errorf("after -all: %+v", g)
	}
}

// TestLiveness plants entries next to the library's and checks that stats
// and inspect take liveness from each record's generation (bytes 10-17 of
// the value) and kind, never from the key: a value of another generation, a
// tombstone (even one planted with the current generation) and bytes that
// are not a record are all dead.
func TestLiveness(t *testing.T) {
	srv, st, _, _ := setup(t)
	conn := []string{"-url", srv.URL(), "-prefix", prefix}
	ctx := context.Background()
	client := st.Client()

	bob := inspectJSON(t, append(slices.Clone(conn), "-resource", "get_cart@1", "-user", "bob")...).Entries
	if len(bob) != 1 || bob[0].State != "live" {
		t.Fatalf("bob's cart: %+v", bob)
	}
	live, err := client.Get(ctx, bob[0].Key).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	r, isRec := tier.ParseRecord(live)
	if !isRec || r.Gen == 0 || r.Kind == tier.KindTombstone {
		t.Fatalf("bob's cart holds %x", live)
	}
	variant := func(edit func(b []byte)) []byte {
		b := slices.Clone(live)
		edit(b)
		return b
	}
	entry := func(last string) string { return prefix + "{get_cart@1:u:bob}:AAAAAAAAAAAAAAAAAAAAA" + last }
	planted := map[string]struct {
		val  []byte
		kind string
	}{
		// An older generation, as an entry invalidated and not reloaded yet.
		entry("A"): {variant(func(b []byte) { binary.BigEndian.PutUint64(b[10:18], r.Gen^1) }), "value"},
		// Tombstones: the library's (generation 0), and one with the
		// current generation, which is still no value.
		entry("B"): {tier.AppendRecord(nil, tier.KindTombstone, r.Stamp, 0, nil), "tombstone"},
		entry("C"): {tier.AppendRecord(nil, tier.KindTombstone, r.Stamp, r.Gen, nil), "tombstone"},
		// The current generation in bytes 10-17 of something that is not
		// a record.
		entry("D"): {variant(func(b []byte) { b[0] = 'x' }), "invalid"},
		// Shorter than a record header.
		entry("E"): {live[:tier.RecordHeaderLen-1], "invalid"},
	}
	for k, p := range planted {
		if err := client.Set(ctx, k, p.val, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A key-value entry that is not a record.
	if err := client.Set(ctx, prefix+"kv:{planted}", "not a record, long enough to hold 18 bytes", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{conn, append(slices.Clone(conn), "-exact"), append(slices.Clone(conn), "-sample", "1")} {
		rep := statsJSON(t, args...)
		if g := byResource(rep)["get_cart@1"]; g.Entries != 5+int64(len(planted)) || g.Live != 5 {
			t.Errorf("%v: get_cart@1 %+v, want %d entries, 5 live", args, g, 5+len(planted))
		}
		if kv := rep.KeyValue; kv.Entries != 2 || kv.Live != 1 {
			t.Errorf("%v: key-value %+v, want 2 entries, 1 live", args, kv)
		}
		if g := byResource(rep)["get_order@0"]; g.Entries != 3 || g.Live != 3 {
			t.Errorf("%v: get_order@0 %+v", args, g)
		}
	}

	for _, values := range []bool{false, true} {
		args := append(slices.Clone(conn), "-resource", "get_cart@1", "-user", "bob")
		if values {
			args = append(args, "-values")
		}
		rep := inspectJSON(t, args...)
		if len(rep.Entries) != 1+len(planted) {
			t.Fatalf("values=%v: %d entries, want %d: %+v", values, len(rep.Entries), 1+len(planted), rep.Entries)
		}
		for _, e := range rep.Entries {
			want, kind := "orphaned", planted[e.Key].kind
			if e.Key == bob[0].Key {
				want, kind = "live", "value"
			}
			if e.State != want || e.Kind != kind {
				t.Errorf("values=%v: %s: state %s kind %s, want %s %s", values, e.Key, e.State, e.Kind, want, kind)
			}
		}
	}
	if rep := inspectJSON(t, append(slices.Clone(conn), "-user", "alice")...); len(rep.Entries) != 5 {
		t.Errorf("alice: %+v", rep.Entries)
	} else {
		for _, e := range rep.Entries {
			if e.State != "live" {
				t.Errorf("alice: %s is %s", e.Key, e.State)
			}
		}
	}
}

// TestURLErrorsNeverShowThePassword: a password with an unescaped '#', '/',
// '?' or '@' breaks the URL at that character, and the parser's message
// quotes the piece it stopped at, which is then a piece of the password.
func TestURLErrorsNeverShowThePassword(t *testing.T) {
	clearEnv(t)
	const pw = "Zq#Xw/Kp?Vb@Ty"
	pieces := []string{"Zq", "Xw", "Kp", "Vb", "Ty"}
	for _, raw := range []string{
		"redis://:" + pw + "@127.0.0.1:6379/0",
		"redis://user:" + pw + "@127.0.0.1:6379",
		"rediss://user:" + pw + "@cache.internal:6380/1",
		"unix://user:" + pw + "@/tmp/redis.sock",
		"redis://user:Zq/Xw@127.0.0.1:1",
		"redis://user:Zq#Xw@127.0.0.1:1",
	} {
		for _, cmd := range []string{"stats", "inspect", "invalidate"} {
			args := []string{cmd, "-url", raw, "-user", "u"}
			if cmd == "stats" {
				args = args[:3]
			}
			_, errOut, code := cli(t, "", args...)
			if code == 0 {
				t.Errorf("%s -url %q succeeded", cmd, raw)
			}
			for _, p := range pieces {
				if strings.Contains(errOut, p) {
					t.Errorf("%s -url %q: stderr %q shows %q, a piece of the password", cmd, raw, errOut, p)
				}
			}
		}
	}
}
