package agentcache

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

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
			st.cells[2] = c.ep.scopedCell("ep:s:" + lk.seg)
			st.cells[3] = c.ep.scopedCell("{" + lk.r.id + ":" + lk.seg + "}:ep")
			st.n = 4
		}
	}
	c.ep.confirm(ctx, &st)
	return st
}

// l2Key lays out an entry's L2 key (the store adds its prefix):
//
//	key-value API      kv:<token>:<key>
//	global resource    {<name@ver>:g:<hash>}:<token>
//	scoped resource    {<name@ver>:<u|s>:<escaped id>}:<token>:<hash>
//
// The braces are a Redis Cluster hash tag: every entry of one resource in
// one scope lives in one slot (a global resource spreads by argument). The
// token mixes the epochs, so bumping one moves every key under it. Nothing a
// caller supplies can break out of its segment: names are validated, IDs
// escaped, arguments hashed, and the key-value key comes last after a
// fixed-length token.
func (lk *lookup) l2Key(st *stamp) string {
	r := lk.r
	b := make([]byte, 0, 48+len(r.id)+len(lk.seg)+len(lk.tail))
	switch {
	case r.kind == kindKV:
		b = append(b, "kv:"...)
		b = hex16(b, st.token())
		b = append(b, ':')
		b = append(b, lk.tail...)
	case lk.seg == "":
		b = append(b, '{')
		b = append(b, r.id...)
		b = append(b, ":g:"...)
		b = append(b, lk.tail...)
		b = append(b, "}:"...)
		b = hex16(b, st.token())
	default:
		b = append(b, '{')
		b = append(b, r.id...)
		b = append(b, ':')
		b = append(b, lk.seg...)
		b = append(b, "}:"...)
		b = hex16(b, st.token())
		b = append(b, ':')
		b = append(b, lk.tail...)
	}
	return string(b)
}

// fromL1Fast is the L1 hit path: no allocation, no map but L1's, no clock.
func fromL1Fast[T any](c *Cache, key string) (T, bool) {
	if e, ok := c.l1.Get(key); ok && !e.raw && e.st.valid(c.ep.tick.Load()) {
		if v, ok := e.value.(T); ok {
			c.stats.l1Hits.Inc()
			return v, true
		}
	}
	var zero T
	return zero, false
}

// fetch is the slow read path: L1 against confirmed epochs, the negative
// filter, L2, then one load per key at a time.
// o, if not nil, learns which tier answered.
func fetch[T any](ctx context.Context, c *Cache, lk *lookup, load func(ctx context.Context) (T, error), o *obsLookup) (T, error) {
	var zero T
	var scratch obsLookup
	if o == nil {
		o = &scratch
	}
	st := c.stampFor(ctx, lk)
	if v, ok := fromL1[T](c, lk, &st); ok {
		c.stats.l1Hits.Inc()
		o.tier = tierL1
		return v, nil
	}
	key := lk.l2Key(&st)
	maybeNegative := false
	if f := lk.r.neg.Load(); f != nil {
		maybeNegative = f.test(key)
	}
	status := l2Unavailable
	if c.l2 != nil {
		var v T
		v, status = fromL2[T](ctx, c, lk, key, &st)
		switch status {
		case l2Hit:
			c.stats.l2Hits.Inc()
			o.tier = tierL2
			return v, nil
		case l2Negative:
			c.stats.negativeHits.Inc()
			o.tier = tierNegative
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
	v, err, _ := c.fl.Do(ctx, key, func(lctx context.Context) (any, error) {
		c.stats.loads.Add(1)
		ok := false
		defer func() {
			if !ok { // an error or a panic (which the flight turns into a PanicError)
				c.stats.loadErrors.Add(1)
			}
		}()
		val, err := runTool(lctx, c, lk.r.obs, load)
		if isNotFound(lk, val, err) {
			ok = true
			c.putNegative(lk, key, &st)
			if err == nil {
				err = negativeHit(lk.r)
			}
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		ok = true
		c.put(lk, key, &st, val, lk.r.ttl)
		return val, nil
	})
	if err != nil {
		return zero, err
	}
	tv, ok := v.(T)
	if !ok && v != nil {
		return zero, fmt.Errorf("agentcache: a concurrent load of the same key returned %T, not %T", v, zero)
	}
	return tv, nil
}

// l2Status is what an L2 read found.
type l2Status uint8

const (
	l2Unavailable l2Status = iota // not asked (no L2, breaker open) or failed
	l2Miss                        // asked; nothing usable there
	l2Hit                         // a value
	l2Negative                    // a "not found" marker
)

// fromL1 reads L1 in the slow path, against a confirmed stamp. Unlike the
// fast path it accepts cells that could not be confirmed (L2 down), and it
// decodes entries restored from a snapshot on first use.
func fromL1[T any](c *Cache, lk *lookup, st *stamp) (T, bool) {
	var zero T
	e, ok := c.l1.Get(lk.l1)
	if !ok || !e.st.sameVals(st) {
		return zero, false
	}
	if e.raw {
		raw, _ := e.value.([]byte)
		var v T
		if err := c.codec.Unmarshal(raw, &v); err != nil {
			c.l1.Delete(lk.l1)
			c.warn("snapshot decode", "agentcache: dropping a restored entry that does not decode", err)
			return zero, false
		}
		ne := &entry{value: v, st: *st, expiresAt: e.expiresAt}
		c.l1.Set(lk.l1, ne, c.remaining(e.expiresAt))
		return v, true
	}
	for i := uint8(0); i < st.n; i++ {
		if e.st.cells[i] != st.cells[i] {
			return zero, false
		}
	}
	v, ok := e.value.(T)
	return v, ok
}

// fromL2 reads an entry from L2 and fills L1 with a value it finds.
func fromL2[T any](ctx context.Context, c *Cache, lk *lookup, key string, st *stamp) (T, l2Status) {
	var zero T
	var b []byte
	var found bool
	err := c.l2Call(ctx, "read", func(ctx context.Context) (err error) {
		b, found, err = c.l2.Get(ctx, key)
		return err
	})
	if err != nil {
		return zero, l2Unavailable
	}
	if !found {
		return zero, l2Miss
	}
	kind, fresh, payload, err := openEnvelope(b)
	if err != nil {
		c.corrupt(key, err)
		return zero, l2Miss
	}
	if kind == kindMissing {
		return zero, l2Negative
	}
	var v T
	if err := c.codec.Unmarshal(payload, &v); err != nil {
		c.corrupt(key, err)
		return zero, l2Miss
	}
	ttl := lk.r.ttl
	var exp int64
	if !fresh.IsZero() {
		exp = fresh.UnixNano()
		ttl = c.remaining(exp)
		if ttl <= 0 {
			return zero, l2Miss
		}
	}
	if st.current() {
		c.l1.Set(lk.l1, &entry{value: v, st: *st, expiresAt: exp}, ttl)
	}
	return v, l2Hit
}

// corrupt handles an undecodable L2 value: a miss, counted, and the key
// deleted so the next load replaces it.
func (c *Cache) corrupt(key string, err error) {
	c.stats.l2Corrupt.Add(1)
	c.warn("corrupt", "agentcache: undecodable L2 value; deleting it", err)
	c.w.enqueue(writeOp{key: key, del: true})
}

// remaining returns the time left until expiresAt (Unix nanos; 0: none).
func (c *Cache) remaining(expiresAt int64) time.Duration {
	if expiresAt == 0 {
		return 0
	}
	return time.Duration(expiresAt - c.opts.Now().UnixNano())
}

// put stores a loaded value: L1 now, L2 through the write-behind queue. A
// value loaded under epochs that have moved since is returned to its
// callers but not stored: it may predate an invalidation.
func (c *Cache) put(lk *lookup, key string, st *stamp, v any, ttl time.Duration) {
	if !st.current() {
		return
	}
	if ttl <= 0 {
		ttl = c.opts.DefaultTTL
	}
	exp := c.opts.Now().Add(ttl)
	c.l1.Set(lk.l1, &entry{value: v, st: *st, expiresAt: exp.UnixNano()}, ttl)
	if c.l2 != nil {
		if b, ok := c.encode(v, kindValue, exp); ok {
			c.w.enqueue(writeOp{key: key, value: b, ttl: ttl})
		}
	}
}

// encode wraps v in the L2 envelope, or reports false (counted and logged)
// when it cannot be encoded or is too large for L2.
func (c *Cache) encode(v any, kind byte, freshUntil time.Time) ([]byte, bool) {
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
	return appendEnvelope(make([]byte, 0, envHeader+len(payload)), kind, freshUntil, payload), true
}
