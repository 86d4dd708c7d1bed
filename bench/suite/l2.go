package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	gocache "github.com/go-redis/cache/v9"
	"github.com/maypok86/otter/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	acredis "github.com/agentcache/agentcache-go/tier/redis"
)

// The L2 workloads keep agentcache's L1 tiny (16 entries) and cycle through
// far more keys, so nearly every lookup misses L1 and is served by Redis —
// including, as in production, the L1 fill that follows an L2 hit. The
// share of L1 hits is checked and reported.
const (
	l2Keys     = 1000
	tinyL1     = 16
	batchSize  = 100
	batchKeys  = 5000
	l2Product  = "get_product"
	sysRawGET  = "go-redis GET (raw bytes)"
	sysRawGETd = "go-redis GET + JSON decode"
	sysRawFill = "go-redis GET + decode + otter fill"
	sysRawSync = "… same, otter maintenance inline"
	sysACL2    = "agentcache Get (L2 hit)"
	sysACL2New = "agentcache Wrap, per-user L2 hit, user never seen here"
	sysGoRedis = "go-redis/cache remote hit"
	sysRawMGET = "go-redis MGET (raw bytes)"
	sysMGETd   = "go-redis MGET + JSON decode"
	sysMGETf   = "go-redis MGET + decode + otter fill"
	sysACBatch = "agentcache Batch.GetMany"
	sysACSingl = "agentcache Wrap × 100 (L2 hits)"
)

// decodePayload decodes the JSON payload of an agentcache L2 value into v:
// what a baseline that reads agentcache's bytes must do to get the value.
func decodePayload(b []byte, v any) error {
	env, err := keyspace.OpenEnvelope(b)
	if err != nil {
		return err
	}
	return json.Unmarshal(env.Payload, v)
}

// scanKeys returns every key matching pattern, sorted.
func scanKeys(ctx context.Context, c *goredis.Client, pattern string) ([]string, error) {
	var keys []string
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	sort.Strings(keys)
	return keys, iter.Err()
}

// l2Hit: a lookup answered by Redis, against a raw GET of the same bytes
// and go-redis/cache's remote hit.
func l2Hit(ctx context.Context, e *env) error {
	const wl = "l2_hit"
	rdb := e.client()
	defer rdb.Close()
	prefix := e.prefix("l2")
	st, err := e.store(rdb, prefix)
	if err != nil {
		return err
	}
	ac, err := newCache(agentcache.Options{L2: st, L1MaxEntries: tinyL1, DefaultTTL: time.Hour})
	if err != nil {
		return err
	}
	defer closeCache(ac)
	keys := make([]string, l2Keys)
	for i := range keys {
		keys[i] = keyName(i)
		if err := ac.Set(ctx, keys[i], newProduct(i), time.Hour); err != nil {
			return err
		}
	}
	if err := drain(ac, l2Keys); err != nil {
		return err
	}
	// The raw baseline reads the very keys and bytes agentcache wrote.
	raw, err := scanKeys(ctx, rdb, prefix+"kv:*")
	if err != nil {
		return err
	}
	if len(raw) != l2Keys {
		return fmt.Errorf("found %d agentcache keys in Redis, want %d", len(raw), l2Keys)
	}
	grc := gocache.New(&gocache.Options{Redis: rdb})
	grcKeys := make([]string, l2Keys)
	for i := range grcKeys {
		grcKeys[i] = "grc:" + keyName(i)
		if err := grc.Set(&gocache.Item{Ctx: ctx, Key: grcKeys[i], Value: newProduct(i), TTL: time.Hour}); err != nil {
			return err
		}
	}
	// A lookup that reaches the loader was not an L2 hit (an L2 timeout on
	// a loaded machine, say): it is answered, counted and reported.
	var loads atomic.Int64
	load := func(_ context.Context, key string) (*Product, error) {
		loads.Add(1)
		return newProduct(0), nil
	}
	// The floor of what an L2 hit has to do by design: read, decode, and
	// fill an otter L1 of the same size as agentcache's here.
	fill, err := newOtter(tinyL1)
	if err != nil {
		return err
	}
	defer fill.StopAllGoroutines()
	// The same with otter's maintenance run inline by the writer instead of
	// on a new goroutine (its default Executor): what tier/memory could do.
	fillSync, err := otter.New(&otter.Options[string, *Product]{
		MaximumSize: tinyL1,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(otter.Entry[string, *Product]) time.Duration {
			return time.Hour
		}),
		Executor: func(fn func()) { fn() },
	})
	if err != nil {
		return err
	}
	defer fillSync.StopAllGoroutines()
	var be benchErr
	serial := func(op func(i int) error) func(b *testing.B) { return cycle(&be, l2Keys, op) }
	// getDecodeFill is the floor of an L2 hit done by hand: GET, decode and,
	// when o is not nil, fill the otter o.
	getDecodeFill := func(o *otter.Cache[string, *Product]) func(i int) error {
		return func(i int) error {
			b, err := rdb.Get(ctx, raw[i]).Bytes()
			if err != nil {
				return err
			}
			p := &Product{}
			if err := decodePayload(b, p); err != nil {
				return err
			}
			if o != nil {
				o.Set(keys[i], p)
			}
			return nil
		}
	}
	cold, err := newColdEpochReader(ctx, ac, st, e.cfg.size(5_000, 500))
	if err != nil {
		return err
	}
	defer cold.close()
	before := ac.Stats()
	m, err := e.compare(wl, &be, []candidate{
		{sysRawGET, serial(func(i int) error {
			_, err := rdb.Get(ctx, raw[i]).Bytes()
			return err
		})},
		{sysACL2New, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := cold.lookup(b); err != nil {
					be.fail(b, err)
				}
			}
		}},
		{sysRawGETd, serial(getDecodeFill(nil))},
		{sysRawFill, serial(getDecodeFill(fill))},
		{sysRawSync, serial(getDecodeFill(fillSync))},
		{sysACL2, serial(func(i int) error {
			_, err := agentcache.Get(ctx, ac, keys[i], load)
			return err
		})},
		{sysGoRedis, serial(func(i int) error {
			var p Product
			return grc.Get(ctx, grcKeys[i], &p)
		})},
	})
	if err != nil {
		return err
	}
	after := ac.Stats()
	l1, l2 := after.L1Hits-before.L1Hits, after.L2Hits-before.L2Hits
	share := float64(l1) / float64(max(1, l1+l2))
	note := fmt.Sprintf("%.1f%% of its lookups were L1 hits", 100*share)
	if n := loads.Load(); n > 0 {
		e.note("%s: %d lookups reached the loader instead of L2 (%d L2 errors or timeouts)", wl, n, after.L2Errors-before.L2Errors)
	}
	a := m[sysACL2]
	e.versus(wl, sysACL2, MetricNsPerOp, a.nsPerOp, sysRawGET, m[sysRawGET].nsPerOp, ratioAtMost(1.10, "≤ 1.10× raw GET"), note)
	e.versus(wl, sysACL2, MetricNsPerOp, a.nsPerOp, sysRawGETd, m[sysRawGETd].nsPerOp, nil, "")
	e.versus(wl, sysACL2, MetricNsPerOp, a.nsPerOp, sysRawFill, m[sysRawFill].nsPerOp, nil, "the same work by hand")
	e.versus(wl, sysACL2, MetricNsPerOp, a.nsPerOp, sysRawSync, m[sysRawSync].nsPerOp, nil, "")
	e.versus(wl, sysACL2, MetricNsPerOp, a.nsPerOp, sysGoRedis, m[sysGoRedis].nsPerOp, nil, "")
	e.versus(wl, sysACL2, MetricAllocsPerOp, a.allocsPerOp, sysRawGET, m[sysRawGET].allocsPerOp, nil, "")
	c := m[sysACL2New]
	coldNote := fmt.Sprintf("a per-user tool's L2 hit for a user the reading instance has never seen (its scope epochs unknown; "+
		"the global and resource epochs known): a new reading instance every %d users, made and warmed with the timer stopped", cold.users)
	if n := cold.loads.Load(); n > 0 {
		coldNote += fmt.Sprintf("; %d lookups reached the tool instead of L2", n)
	}
	coldNote += fmt.Sprintf("; %.2f× the warm hit (%s) in the same run", c.nsPerOp/a.nsPerOp, sysACL2)
	e.versus(wl, sysACL2New, MetricNsPerOp, c.nsPerOp, sysRawGET, m[sysRawGET].nsPerOp, ratioAtMost(1.10, "≤ 1.10× raw GET"), coldNote)
	e.versus(wl, sysACL2New, MetricAllocsPerOp, c.allocsPerOp, sysRawGET, m[sysRawGET].allocsPerOp, nil, "")
	e.figure(wl, sysGoRedis, MetricAllocsPerOp, m[sysGoRedis].allocsPerOp, "")
	e.note("%s: jetcache-go's remote hit is not measured (module unavailable here)", wl)
	return nil
}

// l2UserRes is the per-user tool of the cold-epoch L2 hit.
var l2UserRes = resource.Resource{Name: "get_profile", Scope: scope.User, TTL: time.Hour}

// coldEpochReader serves per-user L2 hits for users its instance has never
// seen: the values of users+1 users are written to L2 by another instance
// beforehand; the reader takes the users in turn and, once it has seen
// them all, is replaced by a new instance (made, and warmed with one lookup
// of the spare user so that it knows the global and resource epochs, with
// the benchmark's timer stopped).
type coldEpochReader struct {
	st    *acredis.Store
	users int
	ctxs  []context.Context // one per user; the last is the warm-up user
	loads atomic.Int64      // lookups that reached the tool

	c    *agentcache.Cache
	get  func(context.Context, SearchArgs) (*Product, error)
	next int
}

var coldArgs = SearchArgs{Query: "profile"}

func newColdEpochReader(ctx context.Context, writer *agentcache.Cache, st *acredis.Store, users int) (*coldEpochReader, error) {
	r := &coldEpochReader{st: st, users: users}
	for i := 0; i <= users; i++ {
		r.ctxs = append(r.ctxs, scope.WithUser(ctx, fmt.Sprintf("cold-%d", i)))
	}
	fill, err := agentcache.Wrap(writer, l2UserRes, func(context.Context, SearchArgs) (*Product, error) { return newProduct(7), nil })
	if err != nil {
		return nil, err
	}
	done0 := writer.Stats().WritesDone
	const fillers = 8
	errs := make(chan error, fillers)
	for w := 0; w < fillers; w++ {
		go func() {
			for i := w; i < len(r.ctxs); i += fillers {
				if _, err := fill(r.ctxs[i], coldArgs); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < fillers; w++ {
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	if err := settled(writer); err != nil {
		return nil, err
	}
	if n := writer.Stats().WritesDone - done0; n != uint64(len(r.ctxs)) {
		return nil, fmt.Errorf("cold-epoch values: %d of %d written to L2", n, len(r.ctxs))
	}
	return r, nil
}

// renew replaces the reading instance with a new one, warmed.
func (r *coldEpochReader) renew() error {
	r.close()
	c, err := newCache(agentcache.Options{L2: r.st, L1MaxEntries: tinyL1})
	if err != nil {
		return err
	}
	get, err := agentcache.Wrap(c, l2UserRes, func(context.Context, SearchArgs) (*Product, error) {
		r.loads.Add(1)
		return newProduct(7), nil
	})
	if err != nil {
		closeCache(c)
		return err
	}
	if _, err := get(r.ctxs[r.users], coldArgs); err != nil {
		closeCache(c)
		return err
	}
	time.Sleep(20 * time.Millisecond) // its subscription comes up
	r.c, r.get, r.next = c, get, 0
	return nil
}

// lookup makes one cold-epoch L2 hit, renewing the instance (timer
// stopped) when it has seen every user.
func (r *coldEpochReader) lookup(b *testing.B) error {
	if r.c == nil || r.next == r.users {
		b.StopTimer()
		err := r.renew()
		b.StartTimer()
		if err != nil {
			return err
		}
	}
	u := r.next
	r.next++
	_, err := r.get(r.ctxs[u], coldArgs)
	return err
}

func (r *coldEpochReader) close() {
	if r.c != nil {
		closeCache(r.c)
		r.c = nil
	}
}

// batchFixture is one agentcache instance of batch_100_l2 with its batch
// tool, the L2 keys it wrote, and the IDs of each 100-key batch.
type batchFixture struct {
	ac        *agentcache.Cache
	batch     *agentcache.Batch[int, *Product]
	groups    [][]int    // the IDs of each batch
	rawGroups [][]string // the same entries' keys in Redis
}

var batchRes = resource.Resource{Name: l2Product, Scope: scope.Global, TTL: time.Hour}

// newBatchFixture makes an instance with codec (nil: the default) under a
// prefix of its own, and writes batchKeys entries to L2 through it. After
// the fill, an ID that reaches the tool was not an L2 hit (an L2 timeout on
// a loaded machine, say): it is answered, and counted in toolIDs.
func newBatchFixture(ctx context.Context, e *env, rdb *goredis.Client, codec agentcache.Codec, toolIDs *atomic.Int64) (*batchFixture, error) {
	prefix := e.prefix("batch")
	st, err := e.store(rdb, prefix)
	if err != nil {
		return nil, err
	}
	ac, err := newCache(agentcache.Options{L2: st, L1MaxEntries: tinyL1, Codec: codec})
	if err != nil {
		return nil, err
	}
	f := &batchFixture{ac: ac}
	var filling atomic.Bool
	filling.Store(true)
	f.batch, err = agentcache.WrapBatch(ac, batchRes, productBatch(func(n int) {
		if !filling.Load() {
			toolIDs.Add(int64(n))
		}
	}))
	if err == nil {
		err = f.fill(ctx, rdb, prefix)
	}
	if err != nil {
		closeCache(ac)
		return nil, err
	}
	filling.Store(false)
	return f, nil
}

func (f *batchFixture) fill(ctx context.Context, rdb *goredis.Client, prefix string) error {
	f.groups = batchGroups()
	for _, ids := range f.groups {
		if _, err := f.batch.GetMany(ctx, ids); err != nil {
			return err
		}
	}
	if err := drain(f.ac, batchKeys); err != nil {
		return err
	}
	raw, err := scanKeys(ctx, rdb, prefix+"{"+batchRes.ID()+":g:*")
	if err != nil {
		return err
	}
	if len(raw) != batchKeys {
		return fmt.Errorf("found %d agentcache keys in Redis, want %d", len(raw), batchKeys)
	}
	f.rawGroups = make([][]string, len(f.groups))
	for g := range f.rawGroups {
		f.rawGroups[g] = raw[g*batchSize : (g+1)*batchSize]
	}
	return nil
}

// productBatch is a batch tool that finds every product, telling called how
// many IDs each call asked for.
func productBatch(called func(n int)) agentcache.BatchTool[int, *Product] {
	return func(_ context.Context, ids []int) (map[int]*Product, error) {
		called(len(ids))
		out := make(map[int]*Product, len(ids))
		for _, id := range ids {
			out[id] = newProduct(id)
		}
		return out, nil
	}
}

// batchGroups returns the IDs 0 to batchKeys-1 in batches of batchSize.
func batchGroups() [][]int {
	groups := make([][]int, batchKeys/batchSize)
	for g := range groups {
		for i := 0; i < batchSize; i++ {
			groups[g] = append(groups[g], g*batchSize+i)
		}
	}
	return groups
}

// getMany is one batch of the fixture, checked.
func (f *batchFixture) getMany(ctx context.Context, g int) error {
	return getAll(ctx, f.batch, f.groups[g])
}

// getAll gets ids through b and fails unless every one has a value.
func getAll(ctx context.Context, b *agentcache.Batch[int, *Product], ids []int) error {
	got, err := b.GetMany(ctx, ids)
	if err == nil && len(got) != len(ids) {
		err = fmt.Errorf("GetMany returned %d of %d values", len(got), len(ids))
	}
	return err
}

// mget is a raw MGET of batch g's bytes.
func (f *batchFixture) mget(ctx context.Context, rdb *goredis.Client, g int) error {
	_, err := rdb.MGet(ctx, f.rawGroups[g]...).Result()
	return err
}

// cycle is a benchmark of b.N calls of op, over 0 to n-1 in turn (keys,
// batches); a failure stops it and is recorded in be.
func cycle(be *benchErr, n int, op func(i int) error) func(b *testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := op(i % n); err != nil {
				be.fail(b, err)
			}
		}
	}
}

// batch100: a 100-key batch served by Redis, against a raw MGET of the same
// bytes and against 100 single lookups; and the same batch through each
// codec of fastCodecs, against a raw MGET of that codec's bytes.
func batch100(ctx context.Context, e *env) error {
	const wl = "batch_100_l2"
	rdb := e.client()
	defer rdb.Close()
	var toolIDs atomic.Int64
	f, err := newBatchFixture(ctx, e, rdb, nil, &toolIDs)
	if err != nil {
		return err
	}
	defer closeCache(f.ac)
	single, err := agentcache.Wrap(f.ac, batchRes, func(_ context.Context, id int) (*Product, error) {
		toolIDs.Add(1)
		return newProduct(id), nil
	})
	if err != nil {
		return err
	}
	fast := make([]*batchFixture, len(fastCodecs))
	for i, nc := range fastCodecs {
		if fast[i], err = newBatchFixture(ctx, e, rdb, nc.codec, &toolIDs); err != nil {
			return fmt.Errorf("codec %s: %w", nc.name, err)
		}
		defer closeCache(fast[i].ac)
	}
	fill, err := newOtter(tinyL1)
	if err != nil {
		return err
	}
	defer fill.StopAllGoroutines()
	var be benchErr
	groups := len(f.groups)
	// mgetDecodeFill is a batch done by hand: MGET, decode each value and,
	// when o is not nil, fill the otter o.
	mgetDecodeFill := func(o *otter.Cache[string, *Product]) func(g int) error {
		return func(g int) error {
			vals, err := rdb.MGet(ctx, f.rawGroups[g]...).Result()
			if err != nil {
				return err
			}
			for i, v := range vals {
				s, ok := v.(string)
				if !ok {
					return errors.New("MGET: a key is missing")
				}
				p := &Product{}
				if err := decodePayload([]byte(s), p); err != nil {
					return err
				}
				if o != nil {
					o.Set(f.rawGroups[g][i], p)
				}
			}
			return nil
		}
	}
	cands := []candidate{
		{sysRawMGET, cycle(&be, groups, func(g int) error { return f.mget(ctx, rdb, g) })},
		{sysMGETd, cycle(&be, groups, mgetDecodeFill(nil))},
		{sysMGETf, cycle(&be, groups, mgetDecodeFill(fill))},
		{sysACBatch, cycle(&be, groups, func(g int) error { return f.getMany(ctx, g) })},
		{sysACSingl, cycle(&be, groups, func(g int) error {
			for _, id := range f.groups[g] {
				if _, err := single(ctx, id); err != nil {
					return err
				}
			}
			return nil
		})},
	}
	for i, nc := range fastCodecs {
		fc := fast[i]
		cands = append(cands,
			candidate{codecMGET(nc), cycle(&be, groups, func(g int) error { return fc.mget(ctx, rdb, g) })},
			candidate{codecBatch(nc), cycle(&be, groups, func(g int) error { return fc.getMany(ctx, g) })})
	}
	before := batchStats(f, fast)
	m, err := e.compare(wl, &be, cands)
	if err != nil {
		return err
	}
	after := batchStats(f, fast)
	l1, l2 := after.L1Hits-before.L1Hits, after.L2Hits-before.L2Hits
	if n := toolIDs.Load(); n > 0 {
		e.note("%s: %d IDs reached the tool instead of L2 (%d L2 errors or timeouts)", wl, n, after.L2Errors-before.L2Errors)
	}
	note := fmt.Sprintf("ns per 100-key batch; %.1f%% of agentcache's lookups were L1 hits", 100*float64(l1)/float64(max(1, l1+l2)))
	a := m[sysACBatch]
	e.versus(wl, sysACBatch, MetricNsPerOp, a.nsPerOp, sysRawMGET, m[sysRawMGET].nsPerOp, ratioAtMost(2, "≤ 2× raw MGET"), note+"; the default codec (agentcache.JSON)")
	e.versus(wl, sysACBatch, MetricNsPerOp, a.nsPerOp, sysMGETd, m[sysMGETd].nsPerOp, nil, "")
	e.versus(wl, sysACBatch, MetricNsPerOp, a.nsPerOp, sysMGETf, m[sysMGETf].nsPerOp, nil, "the same work by hand")
	e.versus(wl, sysACBatch, MetricNsPerOp, a.nsPerOp, sysACSingl, m[sysACSingl].nsPerOp, nil, "the serial cost the batch removes")
	e.versus(wl, sysACBatch, MetricAllocsPerOp, a.allocsPerOp, sysRawMGET, m[sysRawMGET].allocsPerOp, nil, "")
	// The budget is the fastest codec's: the one a user after speed picks.
	ratio := func(nc namedCodec) float64 { return m[codecBatch(nc)].nsPerOp / m[codecMGET(nc)].nsPerOp }
	fastest := 0
	for i, nc := range fastCodecs {
		if ratio(nc) < ratio(fastCodecs[fastest]) {
			fastest = i
		}
	}
	for i, nc := range fastCodecs {
		var b *budget
		cnote := fmt.Sprintf("Options.Codec = %s; against a raw MGET of the bytes it wrote", nc.name)
		if i == fastest {
			b = ratioAtMost(1.5, "≤ 1.5× raw MGET")
			cnote += fmt.Sprintf("; the fastest of the %d codecs offered besides the default", len(fastCodecs))
		}
		c := m[codecBatch(nc)]
		e.versus(wl, codecBatch(nc), MetricNsPerOp, c.nsPerOp, codecMGET(nc), m[codecMGET(nc)].nsPerOp, b, cnote)
		e.versus(wl, codecBatch(nc), MetricNsPerOp, c.nsPerOp, sysACBatch, a.nsPerOp, nil, "against the default codec")
		e.versus(wl, codecBatch(nc), MetricAllocsPerOp, c.allocsPerOp, sysACBatch, a.allocsPerOp, nil, "")
	}
	e.note("%s: jetcache-go's MGet is not measured (module unavailable here)", wl)
	return nil
}

func codecBatch(nc namedCodec) string { return sysACBatch + ", " + nc.name + " codec" }
func codecMGET(nc namedCodec) string  { return sysRawMGET + ", " + nc.name + " values" }

// batchStats sums the lookup counters of the fixtures' instances.
func batchStats(f *batchFixture, fast []*batchFixture) (s agentcache.Stats) {
	for _, x := range append([]*batchFixture{f}, fast...) {
		t := x.ac.Stats()
		s.L1Hits += t.L1Hits
		s.L2Hits += t.L2Hits
		s.L2Errors += t.L2Errors
	}
	return s
}
