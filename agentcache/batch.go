package agentcache

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/agentcache/agentcache-go/internal/epoch"
	"github.com/agentcache/agentcache-go/internal/flight"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
	"github.com/agentcache/agentcache-go/tier"
)

// Defaults of the DataLoader window.
const (
	defaultBatchWindow  = 2 * time.Millisecond
	defaultMaxBatchSize = 100
)

// BatchTool is a tool that looks up many IDs in one call, get_products(ids)
// style. It returns what it found; an ID missing from the map does not exist.
type BatchTool[K comparable, V any] func(ctx context.Context, ids []K) (map[K]V, error)

// Batch is a batch tool wrapped by WrapBatch. It is safe for concurrent use.
type Batch[K comparable, V any] struct {
	c    *Cache
	rs   *resState
	cfg  *toolConfig
	tool BatchTool[K, V]
	enc  *resource.ArgsEncoder[K]

	mu      sync.Mutex // guards pending
	pending map[string]*window[K, V]
}

// window collects single-ID calls of one scope for one tool call.
type window[K comparable, V any] struct {
	ctx  context.Context // the first caller's, detached: carries the scope
	ids  []K
	subs map[K][]chan result[V]
	t    *time.Timer
}

type result[V any] struct {
	v   V
	err error
}

// WrapBatch wraps a batch tool as resource r. Each ID is cached as its own
// entry — the same entry a single-argument tool of r called with that ID
// would use — so batches and single calls share the cache.
//
// GetMany serves what it can from L1, reads the rest from L2 in one round
// trip per node (never a CROSSSLOT error on a cluster), and calls the tool
// once with the IDs still missing. IDs the tool does not return become
// negative entries. If part of the L2 read fails, only those IDs go to the
// tool. Get coalesces concurrent single-ID calls of one scope made within
// the BatchWindow (default 2ms, at most MaxBatchSize IDs) into one GetMany.
//
// Batches do not take the fleet lock: a batch call is already one tool call
// for many IDs.
func WrapBatch[K comparable, V any](c *Cache, r resource.Resource, tool BatchTool[K, V], opts ...ToolOption) (*Batch[K, V], error) {
	if tool == nil {
		return nil, fmt.Errorf("agentcache: WrapBatch %s: nil tool", r.Name)
	}
	cfg := newToolConfig(opts)
	if err := cfg.check("WrapBatch", r.Name, reflect.TypeFor[V](), "KeyFunc", "NoFleetLock"); err != nil {
		return nil, err
	}
	if err := resource.CheckArgs(reflect.TypeFor[K]()); err != nil { // as Wrap: an ID is a call's argument
		return nil, fmt.Errorf("agentcache: WrapBatch %s: %w", r.Name, err)
	}
	rs, err := c.register(r)
	if err != nil {
		return nil, err
	}
	if err := c.checkTool(rs, "WrapBatch", tool, reflect.TypeFor[K](), reflect.TypeFor[V](), nil, true); err != nil {
		return nil, err
	}
	b := &Batch[K, V]{c: c, rs: rs, cfg: cfg, tool: tool, enc: resource.NewArgsEncoder[K](), pending: map[string]*window[K, V]{}}
	return b, nil
}

// BatchWindow sets how long Batch.Get waits to gather single-ID calls into
// one tool call (default 2ms).
func BatchWindow(d time.Duration) ToolOption {
	return namedOption("BatchWindow", func(c *toolConfig) {
		if d > 0 {
			c.batchWindow = d
		}
	})
}

// MaxBatchSize caps the IDs of one tool call made by Batch.Get (default
// 100); a full window is sent at once.
func MaxBatchSize(n int) ToolOption {
	return namedOption("MaxBatchSize", func(c *toolConfig) {
		if n > 0 {
			c.maxBatch = n
		}
	})
}

// GetMany returns the values of ids that exist. IDs that do not exist (now
// or as remembered by the negative cache) are absent from the map. A tool
// error is returned with the values found without the tool.
func (b *Batch[K, V]) GetMany(ctx context.Context, ids []K) (map[K]V, error) {
	if b.c.closed.Load() {
		return nil, ErrClosed
	}
	sid, err := scope.ID(ctx, b.rs.def.Scope)
	if err != nil {
		return nil, fmt.Errorf("agentcache: %s: %w", b.rs.id, err)
	}
	res := b.many(ctx, sid, ids)
	out := make(map[K]V, len(ids))
	var toolErr error
	for id, r := range res {
		switch {
		case r.err == nil:
			out[id] = r.v
		case isNotFoundErr(r.err):
		case toolErr == nil:
			toolErr = r.err
		}
	}
	return out, toolErr
}

// appendKey appends the L1 key of id in scope sid to dst.
func (b *Batch[K, V]) appendKey(dst []byte, sid string, id *K) ([]byte, error) {
	return appendArgsKey(b.rs, dst, sid, b.enc, id, b.cfg.limits)
}

// Get returns one ID's value, coalescing concurrent calls into batches.
// An ID that does not exist gives ErrNotFound. A caller whose ctx ends
// leaves with ctx.Err(); the batch goes on for the others.
func (b *Batch[K, V]) Get(ctx context.Context, id K) (V, error) {
	var zero V
	if b.c.closed.Load() {
		return zero, ErrClosed
	}
	sid, err := scope.ID(ctx, b.rs.def.Scope)
	if err != nil {
		return zero, fmt.Errorf("agentcache: %s: %w", b.rs.id, err)
	}
	var buf [l1KeyBuf]byte
	kb, err := b.appendKey(buf[:0], sid, &id)
	if err != nil {
		return zero, fmt.Errorf("agentcache: %s: arguments: %w", b.rs.id, err)
	}
	if v, hit := fromL1Fast[V](b.c, unsafe.String(unsafe.SliceData(kb), len(kb))); hit != hitNone {
		if hit != hitFresh { // stale or due: served, and refreshed as a single call would be
			lk := b.cfg.lookup(b.rs, string(kb))
			served(ctx, b.c, &lk, hit, b.one(id), nil)
		}
		return v, nil
	}
	ch := make(chan result[V], 1)
	b.join(ctx, sid, id, ch)
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// join adds id to the scope's open window, opening one if needed. A window
// that reaches MaxBatchSize IDs leaves the open set at once, under the lock,
// so no later caller can join it: a tool call never gets more IDs.
func (b *Batch[K, V]) join(ctx context.Context, sid string, id K, ch chan result[V]) {
	b.mu.Lock()
	w := b.pending[sid]
	if w == nil {
		w = &window[K, V]{ctx: flight.Detach(ctx, b.c.base), subs: map[K][]chan result[V]{}}
		b.pending[sid] = w
		w.t = time.AfterFunc(b.cfg.window(), func() { b.send(sid, w) })
	}
	if _, dup := w.subs[id]; !dup {
		w.ids = append(w.ids, id)
	}
	w.subs[id] = append(w.subs[id], ch)
	full := len(w.ids) >= b.cfg.maxBatchSize()
	if full {
		delete(b.pending, sid)
	}
	b.mu.Unlock()
	if full && w.t.Stop() {
		b.send(sid, w)
	}
}

// send closes a window and runs its batch.
func (b *Batch[K, V]) send(sid string, w *window[K, V]) {
	b.mu.Lock()
	if b.pending[sid] == w {
		delete(b.pending, sid)
	}
	b.mu.Unlock()
	deliver := func(res map[K]result[V]) {
		for id, subs := range w.subs {
			r, ok := res[id]
			if !ok {
				r = result[V]{err: ErrClosed}
			}
			for _, ch := range subs {
				ch <- r // buffered: a caller that left does not block the batch
			}
		}
	}
	if !b.c.spawnTool(func() { deliver(b.many(w.ctx, sid, w.ids)) }) {
		deliver(nil) // the cache closed while the window was open
	}
}

// many resolves ids in the scope sid with the per-key steps of the single
// read path (lookup.go) — L1 against confirmed epochs, tombstones, the L2
// record and its stamp, stale entries refreshed, the negative filter, fenced
// stores — with one L2 read for all the misses (one round trip per node) and
// one tool call for what is left.
func (b *Batch[K, V]) many(ctx context.Context, sid string, ids []K) map[K]result[V] {
	c, rs := b.c, b.rs
	out := make(map[K]result[V], len(ids))
	type miss struct {
		id K
		lk lookup
		a  attempt
	}
	var misses []*miss
	var st epoch.Stamp
	stamped := false
	seq, began := c.fence.start(), c.opts.Now()
	var buf [l1KeyBuf]byte
	for _, id := range ids {
		if _, done := out[id]; done {
			continue
		}
		kb, err := b.appendKey(buf[:0], sid, &id)
		if err != nil {
			out[id] = result[V]{err: fmt.Errorf("agentcache: %s: arguments: %w", rs.id, err)}
			continue
		}
		if v, hit := fromL1Fast[V](c, unsafe.String(unsafe.SliceData(kb), len(kb))); hit == hitFresh {
			out[id] = result[V]{v: v}
			continue
		}
		m := &miss{id: id, lk: b.cfg.lookup(rs, string(kb))}
		if !stamped { // every ID of one scope shares the epochs
			st, stamped = c.stampFor(ctx, &m.lk), true
		}
		if v, hit, _ := fromL1[V](c, &m.lk, &st, seq); hit != hitNone {
			c.countL1(hit)
			served(ctx, c, &m.lk, hit, b.one(id), nil)
			out[id] = result[V]{v: v}
			continue
		}
		m.a = attempt{key: m.lk.l2Key(), st: st, seq: seq, began: began}
		misses = append(misses, m)
	}
	if len(misses) == 0 {
		return out
	}

	// L2: one read for every miss that may be read there.
	avail := make([]bool, len(misses))
	if c.l2 != nil && !st.Local() && !st.Down() {
		var read []*attempt
		var at []int
		for i, m := range misses {
			if !c.rp.tombstoned(m.a.key) {
				read = append(read, &m.a)
				at = append(at, i)
			}
		}
		var rr []tier.ReadResult
		if len(read) > 0 {
			rr = c.readMany(ctx, read)
		}
		for j, i := range at {
			if rr == nil || rr[j].Err != nil {
				continue
			}
			avail[i] = true
			m := misses[i]
			v, r := fromRead[V](ctx, c, &m.lk, &m.a, rr[j])
			switch r.status {
			case l2Hit:
				c.stats.l2Hits.Inc()
				if r.stale {
					c.stats.staleHits.Inc()
					refreshAsync(ctx, c, &m.lk, b.one(m.id))
				}
				out[m.id] = result[V]{v: v}
			case l2Negative:
				c.stats.negativeHits.Inc()
				out[m.id] = result[V]{err: negativeHit(rs, r.msg)}
			}
		}
	}

	// The negative filter answers what L2 could not confirm or deny.
	var load []*miss
	for i, m := range misses {
		if _, done := out[m.id]; done {
			continue
		}
		if f := negFilterOf(rs, m.lk.seg); f != nil && !avail[i] && f.test(negKey(&m.a)) {
			c.stats.negativeHits.Inc()
			out[m.id] = result[V]{err: negativeHit(rs, "")}
			continue
		}
		load = append(load, m)
	}
	if len(load) == 0 {
		return out
	}

	// One tool call for the rest.
	c.stats.misses.Add(uint64(len(load)))
	c.stats.loads.Add(1)
	want := make([]K, len(load))
	for i, m := range load {
		want[i] = m.id
	}
	got, cost, err := runBatch(ctx, c, rs.obs, b.tool, want)
	cost /= time.Duration(len(want)) // each ID's share of the call
	if err != nil {
		c.stats.loadErrors.Add(1)
		for _, m := range load {
			out[m.id] = result[V]{err: err}
		}
		return out
	}
	for _, m := range load {
		v, ok := got[m.id]
		if !ok || (m.lk.isNegative != nil && m.lk.isNegative(v)) {
			c.putNegative(ctx, &m.lk, &m.a, cost, "")
			out[m.id] = result[V]{err: negativeHit(rs, "")}
			continue
		}
		v, payload, cacheable := roundTrip(c, rs, v)
		if cacheable {
			c.put(ctx, &m.lk, &m.a, v, payload, cost)
		} else {
			c.release(&m.a)
		}
		out[m.id] = result[V]{v: v}
	}
	return out
}

// one is the load of a single ID through the batch tool, for refreshes.
func (b *Batch[K, V]) one(id K) func(context.Context) (V, error) {
	return func(ctx context.Context) (V, error) {
		m, err := b.tool(ctx, []K{id})
		if err != nil {
			var zero V
			return zero, err
		}
		v, ok := m[id]
		if !ok {
			return v, ErrNotFound
		}
		return v, nil
	}
}

// runBatch runs a batch tool like runTool runs a single one.
func runBatch[K comparable, V any](ctx context.Context, c *Cache, ro *resObs, tool BatchTool[K, V], ids []K) (m map[K]V, d time.Duration, err error) {
	return runTool(ctx, c, ro, func(ctx context.Context) (map[K]V, error) { return tool(ctx, ids) })
}
