package agentcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
)

// resKind says how a resource's entries are scoped.
type resKind uint8

const (
	kindKV      resKind = iota // the key-value API: no resource, no scope
	kindGlobal                 // one entry per call, shared by everyone
	kindUser                   // one entry per call and user
	kindSession                // one entry per call and session
)

// resState is a resource as the cache runs it.
type resState struct {
	id        string            // "name@version"; empty for the key-value API
	def       resource.Resource // as registered
	kind      resKind
	segPrefix string // "u:", "s:" or "" (unscoped)
	ttl       time.Duration
	negTTL    time.Duration // < 0: "not found" is not remembered
	stale     time.Duration
	cell      *cell                     // the resource's epoch
	neg       atomic.Pointer[negFilter] // created by the first "not found"
	obs       *resObs
}

// lookup names one entry.
type lookup struct {
	r    *resState
	seg  string // scope segment, "u:<escaped id>" or "s:<escaped id>"; empty when unscoped
	tail string // the key-value key, or the argument hash
	l1   string // the L1 key
	// isNegative, if set, marks loaded values that mean "not found".
	isNegative func(any) bool
	// refreshAhead, if in (0, 1), refreshes an entry read after that share
	// of its TTL, in the background.
	refreshAhead float64
	writeThrough bool // write L2 before the lookup returns
	noFleetLock  bool // load on this instance even when the fleet lock is on
}

// stampFor returns the epochs the entry lives under, confirmed with L2 where
// they are stale.
func (c *Cache) stampFor(ctx context.Context, lk *lookup) stamp {
	var st stamp
	st.cells[0] = c.ep.global
	st.n = 1
	if lk.r.cell != nil {
		st.cells[1] = lk.r.cell
		st.n = 2
		if lk.seg != "" {
			var buf [160]byte
			st.cells[2] = c.ep.scopedCellOf(keyspace.AppendScopeEpochKey(buf[:0], lk.seg))
			st.cells[3] = c.ep.scopedCellOf(keyspace.AppendResourceScopeEpochKey(buf[:0], lk.r.id, lk.seg))
			st.n = 4
		}
	}
	c.ep.confirm(ctx, &st)
	return st
}

// l2Key is the entry's key in L2 (the store adds its prefix); the layout is
// package internal/keyspace's.
func (lk *lookup) l2Key(st *stamp) string {
	var buf [256]byte
	return string(keyspace.AppendEntryKey(buf[:0], lk.r.id, lk.seg, st.token(), lk.tail))
}

// hit says how an L1 lookup went.
type hit uint8

const (
	hitNone    hit = iota // not in L1 (or not usable)
	hitFresh              // a fresh value
	hitRefresh            // a fresh value due for refresh-ahead
	hitStale              // a value past its TTL, inside the stale window
)

// l1Entry returns the usable L1 entry at key and its value: current
// epochs, decoded, of type T. No allocation, no map but L1's, no clock.
func l1Entry[T any](c *Cache, key string) (T, *entry) {
	if e, ok := c.l1.Get(key); ok && !e.raw && e.st.valid(c.ep.tick.Load()) {
		if v, ok := e.value.(T); ok {
			return v, e
		}
	}
	var zero T
	return zero, nil
}

// fromL1Fast is the L1 hit path. It reads the clock only when the entry
// has a stale window or refresh-ahead.
func fromL1Fast[T any](c *Cache, key string) (T, hit) {
	v, e := l1Entry[T](c, key)
	if e == nil {
		return v, hitNone
	}
	h := hitFresh
	if e.freshUntil|e.refreshAt != 0 {
		h = c.age(e)
	}
	c.countL1(h)
	return v, h
}

// freshL1 is a fresh L1 hit for an observed lookup, which learns the
// entry's tool cost. A stale or due entry is left to the full lookup, which
// starts its refresh.
func freshL1[T any](c *Cache, key string, o *obsLookup) (T, bool) {
	v, e := l1Entry[T](c, key)
	if e == nil || e.freshUntil|e.refreshAt != 0 && c.age(e) != hitFresh {
		var zero T
		return zero, false
	}
	c.countL1(hitFresh)
	o.tier, o.cost = tierL1, e.cost
	return v, true
}

// age classifies an entry that has a stale window or refresh-ahead.
func (c *Cache) age(e *entry) hit {
	now := c.opts.Now().UnixNano()
	switch {
	case e.freshUntil != 0 && now >= e.freshUntil:
		return hitStale
	case e.refreshAt != 0 && now >= e.refreshAt:
		return hitRefresh
	}
	return hitFresh
}

func (c *Cache) countL1(h hit) {
	c.stats.l1Hits.Inc()
	if h == hitStale {
		c.stats.staleHits.Inc()
	}
}

// served finishes an L1 hit of the slow or fast path: a stale or due entry
// starts one background refresh.
func served[T any](ctx context.Context, c *Cache, lk *lookup, h hit, load func(context.Context) (T, error), o *obsLookup) {
	if o != nil {
		o.tier = tierL1
		o.stale = h == hitStale
	}
	if h == hitStale || h == hitRefresh {
		refreshAsync(ctx, c, lk, load)
	}
}

// loaded is what a load step hands the flight's waiters.
type loaded struct {
	v    any
	tier tierIdx       // tierLoader, or tierL2/tierNegative when another instance's load filled L2
	cost time.Duration // how long the tool ran (here or on the instance that filled L2)
	// l2failed reports a write-through that L2 did not take.
	l2failed bool
}

// fetch is the slow read path: L1 against confirmed epochs, the negative
// filter, L2, then one load per key at a time (and, with the fleet lock,
// per key across the fleet). o, if not nil, learns which tier answered.
func fetch[T any](ctx context.Context, c *Cache, lk *lookup, load func(ctx context.Context) (T, error), o *obsLookup) (T, error) {
	var zero T
	var scratch obsLookup
	if o == nil {
		o = &scratch
	}
	st := c.stampFor(ctx, lk)
	if v, h, cost := fromL1[T](c, lk, &st); h != hitNone {
		c.countL1(h)
		o.cost = cost
		served(ctx, c, lk, h, load, o)
		return v, nil
	}
	key := lk.l2Key(&st)
	maybeNegative := false
	if f := lk.r.neg.Load(); f != nil {
		maybeNegative = f.test(key)
	}
	// One unreachable-L2 verdict per lookup: after a failed epoch read or a
	// failed L2 read, the lookup neither reads L2 nor takes the fleet lock,
	// so a stalled Redis costs a caller one timeout, not several.
	status := l2Unavailable
	if c.l2 != nil && !st.local && !st.down && !c.rp.tombstoned(key) {
		v, r := readShared[T](ctx, c, lk, key, &st)
		status = r.status
		switch status {
		case l2Hit:
			c.stats.l2Hits.Inc()
			o.tier, o.stale, o.cost = tierL2, r.stale, r.cost
			if r.stale {
				c.stats.staleHits.Inc()
				refreshAsync(ctx, c, lk, load)
			}
			return v, nil
		case l2Negative:
			c.stats.negativeHits.Inc()
			o.tier, o.cost = tierNegative, r.cost
			if !maybeNegative && lk.r.negTTL > 0 {
				c.negFilterFor(lk.r).add(key)
			}
			return zero, negativeHit(lk.r)
		}
	}
	// A bloom "maybe" that L2 could not confirm or deny is trusted.
	if maybeNegative && status == l2Unavailable {
		c.stats.negativeHits.Inc()
		o.tier = tierNegative
		return zero, negativeHit(lk.r)
	}
	o.tier = tierLoader
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c.stats.misses.Inc()
	fleet := status != l2Unavailable
	res, err, _ := c.fl.Do(ctx, key, func(lctx context.Context) (any, error) {
		// A load of this key may have finished between our L1 miss and
		// now: do not run the tool twice.
		if v, h, e := fromL1Slow[T](c, lk, &st); h != hitNone {
			l := loaded{v: v, tier: tierL1}
			if e != nil {
				l.cost = e.cost
			}
			return l, nil
		}
		l, err := loadStep(lctx, c, lk, key, &st, load, fleet)
		return l, err
	})
	if l, ok := res.(loaded); ok {
		o.tier, o.cost = l.tier, l.cost
	}
	if err != nil {
		return zero, err
	}
	l, _ := res.(loaded)
	tv, ok := l.v.(T)
	if !ok && l.v != nil {
		return zero, fmt.Errorf("agentcache: a concurrent load of the same key returned %T, not %T", l.v, zero)
	}
	return tv, nil
}

// loadStep runs inside the flight: the tool, under the fleet lock when it
// is on and L2 just answered.
func loadStep[T any](ctx context.Context, c *Cache, lk *lookup, key string, st *stamp, load func(context.Context) (T, error), fleet bool) (loaded, error) {
	if fleet && c.fleetOn(lk) && !st.local && !st.down {
		return loadFleet(ctx, c, lk, key, st, load)
	}
	return loadLocal(ctx, c, lk, key, st, load, lk.writeThrough)
}

// loadLocal runs the tool and stores what it returns: a value, or a "not
// found". Errors are returned and never stored. With writeThrough the L2
// write happens before it returns.
func loadLocal[T any](ctx context.Context, c *Cache, lk *lookup, key string, st *stamp, load func(context.Context) (T, error), writeThrough bool) (loaded, error) {
	c.stats.loads.Add(1)
	ok := false
	defer func() {
		if !ok { // an error or a panic (which the flight turns into a PanicError)
			c.stats.loadErrors.Add(1)
		}
	}()
	val, cost, err := runTool(ctx, c, lk.r.obs, load)
	if isNotFound(lk, val, err) {
		ok = true
		stored := c.putNegative(ctx, lk, key, st, cost, writeThrough)
		if err == nil {
			err = negativeHit(lk.r)
		}
		return loaded{tier: tierLoader, cost: cost, l2failed: !stored}, err
	}
	if err != nil {
		return loaded{tier: tierLoader, cost: cost}, err
	}
	ok = true
	stored := c.put(ctx, lk, key, st, val, cost, writeThrough)
	return loaded{v: val, tier: tierLoader, cost: cost, l2failed: !stored}, nil
}

// l2Status is what an L2 read found.
type l2Status uint8

const (
	l2Unavailable l2Status = iota // not asked (no L2, breaker open) or failed
	l2Miss                        // asked; nothing usable there
	l2Hit                         // a value
	l2Negative                    // a "not found" marker
)

// l2Read is what an L2 read found besides the value.
type l2Read struct {
	status l2Status
	stale  bool          // a value past its TTL, inside the stale window
	cost   time.Duration // the tool run that produced it (0: unknown)
}

// fromL1 reads L1 in the slow path, against a confirmed stamp. Unlike the
// fast path it accepts cells that could not be confirmed (L2 down), and it
// decodes entries restored from a snapshot on first use.
func fromL1[T any](c *Cache, lk *lookup, st *stamp) (T, hit, time.Duration) {
	v, h, e := fromL1Slow[T](c, lk, st)
	if e == nil {
		return v, h, 0
	}
	return v, h, e.cost
}

func fromL1Slow[T any](c *Cache, lk *lookup, st *stamp) (T, hit, *entry) {
	var zero T
	e, ok := c.l1.Get(lk.l1)
	if !ok || !e.st.sameVals(st) {
		return zero, hitNone, nil
	}
	if e.raw {
		raw, _ := e.value.([]byte)
		var v T
		if err := c.codec.Unmarshal(raw, &v); err != nil {
			c.l1.Delete(lk.l1)
			c.warn("snapshot decode", "agentcache: dropping a restored entry that does not decode", err)
			return zero, hitNone, nil
		}
		ne := &entry{value: v, st: *st, expiresAt: e.expiresAt, freshUntil: e.freshUntil, cost: e.cost}
		c.l1.Set(lk.l1, ne, c.remaining(e.expiresAt))
		return v, c.age(ne), ne
	}
	for i := uint8(0); i < st.n; i++ {
		if e.st.cells[i] != st.cells[i] {
			return zero, hitNone, nil
		}
	}
	v, ok := e.value.(T)
	if !ok {
		return zero, hitNone, nil
	}
	if e.freshUntil|e.refreshAt != 0 {
		return v, c.age(e), e
	}
	return v, hitFresh, e
}

// readGroup shares one L2 read among the concurrent lookups of a key. The
// first caller reads on its own goroutine (no goroutine is started for an
// L2 hit); the others wait for its answer or their own ctx.
type readGroup struct {
	mu sync.Mutex // guards m
	m  map[string]*readCall
}

type readCall struct {
	done  chan struct{}
	v     any
	r     l2Read
	retry bool // the first caller gave up: read for yourself
}

// readShared is fromL2 with concurrent reads of one key shared.
func readShared[T any](ctx context.Context, c *Cache, lk *lookup, key string, st *stamp) (T, l2Read) {
	var zero T
	g := &c.reads
	g.mu.Lock()
	if call, ok := g.m[key]; ok {
		g.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			return zero, l2Read{status: l2Unavailable}
		}
		if call.retry {
			return fromL2[T](ctx, c, lk, key, st)
		}
		if call.r.status != l2Hit {
			return zero, call.r
		}
		if v, ok := call.v.(T); ok {
			return v, call.r
		}
		return fromL2[T](ctx, c, lk, key, st) // another type at this key
	}
	if g.m == nil {
		g.m = map[string]*readCall{}
	}
	call := &readCall{done: make(chan struct{})}
	g.m[key] = call
	g.mu.Unlock()
	v, r := fromL2[T](ctx, c, lk, key, st)
	call.v, call.r = v, r
	call.retry = r.status == l2Unavailable && ctx.Err() != nil
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
	close(call.done)
	return v, r
}

// fromL2 reads an entry from L2 and fills L1 with a value it finds.
func fromL2[T any](ctx context.Context, c *Cache, lk *lookup, key string, st *stamp) (T, l2Read) {
	var b []byte
	var found bool
	err := c.l2Call(ctx, "read", func(ctx context.Context) (err error) {
		b, found, err = c.l2.Get(ctx, key)
		return err
	})
	if err != nil {
		var zero T
		return zero, l2Read{status: l2Unavailable}
	}
	if !found {
		var zero T
		return zero, l2Read{status: l2Miss}
	}
	return decodeL2[T](ctx, c, lk, key, st, b)
}

// decodeL2 turns the bytes of an L2 entry into a value (filling L1) or a
// "not found" marker. Undecodable bytes are a miss and the key is deleted.
func decodeL2[T any](ctx context.Context, c *Cache, lk *lookup, key string, st *stamp, b []byte) (v T, r l2Read) {
	env, err := keyspace.OpenEnvelope(b)
	if err != nil {
		c.corrupt(ctx, key, errBadEnvelope)
		return v, l2Read{status: l2Miss}
	}
	r.cost = env.Cost
	if env.Kind == kindMissing {
		r.status = l2Negative
		return v, r
	}
	if err := c.codec.Unmarshal(env.Payload, &v); err != nil {
		c.corrupt(ctx, key, err)
		var zero T
		return zero, l2Read{status: l2Miss}
	}
	e := &entry{value: v, st: *st, cost: env.Cost}
	ttl := lk.r.ttl + lk.r.stale
	if !env.FreshUntil.IsZero() {
		f := env.FreshUntil.UnixNano()
		e.expiresAt = f + int64(lk.r.stale)
		if ttl = c.remaining(e.expiresAt); ttl <= 0 {
			var zero T
			return zero, l2Read{status: l2Miss}
		}
		if lk.r.stale > 0 {
			e.freshUntil = f
			r.stale = c.opts.Now().UnixNano() >= f
		}
	}
	if st.current() {
		c.l1.Set(lk.l1, e, ttl)
	}
	r.status = l2Hit
	return v, r
}

// corrupt handles an undecodable L2 value: a miss, counted, and the key
// deleted — at once, before the reload that follows writes the fresh value,
// so the delete cannot land after it.
func (c *Cache) corrupt(ctx context.Context, key string, err error) {
	c.stats.l2Corrupt.Add(1)
	c.warn("corrupt", "agentcache: undecodable L2 value; deleting it", err)
	_ = c.l2Call(context.WithoutCancel(ctx), "delete", func(ctx context.Context) error { return c.l2.Delete(ctx, key) })
}

// remaining returns the time left until expiresAt (Unix nanos; 0: none).
func (c *Cache) remaining(expiresAt int64) time.Duration {
	if expiresAt == 0 {
		return 0
	}
	return time.Duration(expiresAt - c.opts.Now().UnixNano())
}

// jitter shortens ttl by a random share of up to Options.TTLJitter, so that
// entries written together do not expire together.
func (c *Cache) jitter(ttl time.Duration) time.Duration {
	if c.opts.TTLJitter <= 0 || ttl <= 0 {
		return ttl
	}
	span := int64(float64(ttl) * c.opts.TTLJitter)
	if span <= 0 {
		return ttl
	}
	return ttl - time.Duration(rand.Int64N(span))
}

// put stores a loaded value: L1 now, L2 through the write-behind queue (or
// at once with writeThrough). A value loaded under epochs that have moved
// since is returned to its callers but not stored: it may predate an
// invalidation.
// It reports false when a write-through failed.
func (c *Cache) put(ctx context.Context, lk *lookup, key string, st *stamp, v any, cost time.Duration, writeThrough bool) bool {
	if !st.current() {
		return true
	}
	ttl := lk.r.ttl
	if ttl <= 0 {
		ttl = c.opts.DefaultTTL
	}
	ttl = c.jitter(ttl)
	now := c.opts.Now()
	fresh := now.Add(ttl)
	life := ttl + lk.r.stale
	e := &entry{value: v, st: *st, expiresAt: now.Add(life).UnixNano(), cost: cost}
	if lk.r.stale > 0 {
		e.freshUntil = fresh.UnixNano()
	}
	if lk.refreshAhead > 0 {
		e.refreshAt = now.Add(time.Duration(float64(ttl) * lk.refreshAhead)).UnixNano()
	}
	c.l1.Set(lk.l1, e, life)
	if c.l2 != nil && !st.local {
		if b, ok := c.encode(v, kindValue, fresh, cost); ok {
			return c.writeL2(ctx, writeOp{key: key, value: b, ttl: life}, writeThrough)
		}
	}
	return true
}

// writeL2 queues a write, or with sync makes it now (write-through). It
// reports false when a write-through failed.
func (c *Cache) writeL2(ctx context.Context, op writeOp, sync bool) bool {
	if !sync {
		c.w.enqueue(op)
		return true
	}
	if c.w.shutDown() { // a tool that outlived Close: dropped, as by the queue
		c.stats.writesDropped.Add(1)
		return false
	}
	err := c.l2Call(context.WithoutCancel(ctx), "write", func(ctx context.Context) error {
		if op.ifAbsent {
			if c.w.adder == nil {
				return nil
			}
			_, err := c.w.adder.SetIfAbsent(ctx, op.key, op.value, op.ttl)
			return err
		}
		return c.l2.Set(ctx, op.key, op.value, op.ttl)
	})
	if err == nil {
		c.stats.writesDone.Add(1)
	} else if err != errBreakerOpen {
		c.stats.writesFailed.Add(1)
	} else {
		c.stats.writesSkipped.Add(1)
	}
	return err == nil
}

// encode wraps v in the L2 envelope, or reports false (counted and logged)
// when it cannot be encoded or is too large for L2.
func (c *Cache) encode(v any, kind byte, freshUntil time.Time, cost time.Duration) ([]byte, bool) {
	var payload []byte
	if kind == kindValue {
		var err error
		payload, err = c.codec.Marshal(v)
		if err != nil {
			c.warn("encode", "agentcache: cannot encode a value for L2; it stays in L1 only", err)
			return nil, false
		}
	}
	if envHeader+len(payload) > c.opts.MaxValueSize {
		c.stats.oversize.Add(1)
		c.warn("oversize", "agentcache: value not written to L2", fmt.Errorf("%w: %d bytes > %d", ErrValueTooLarge, envHeader+len(payload), c.opts.MaxValueSize))
		return nil, false
	}
	return keyspace.AppendEnvelope(make([]byte, 0, envHeader+len(payload)), kind, freshUntil, cost, payload), true
}
