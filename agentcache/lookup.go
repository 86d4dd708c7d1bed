package agentcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/internal/breaker"
	"github.com/agentcache/agentcache-go/internal/epoch"
	"github.com/agentcache/agentcache-go/internal/flight"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier"
)

// resState is a resource as the cache runs it.
type resState struct {
	id        string            // "name@version"; empty for the key-value API
	def       resource.Resource // as registered
	segPrefix string            // "u:", "s:" or "" (unscoped)
	ttl       time.Duration
	negTTL    time.Duration // < 0: "not found" is not remembered
	stale     time.Duration
	cell      *epoch.Cell               // the resource's epoch
	neg       atomic.Pointer[negScopes] // created by the first "not found"
	obs       *resObs
	claims    *claims // the tools cached under it
}

// name is the resource's name in messages ("key-value" for the key-value API).
func (rs *resState) name() string {
	if rs.id == "" {
		return "key-value"
	}
	return rs.def.Name
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
func (c *Cache) stampFor(ctx context.Context, lk *lookup) epoch.Stamp {
	st := c.stampOf(lk)
	c.ep.Confirm(ctx, &st)
	return st
}

// stampOf returns the cells of the epochs the entry lives under, without
// their values (see epoch.Table.Confirm and Begin).
func (c *Cache) stampOf(lk *lookup) epoch.Stamp {
	var st epoch.Stamp
	st.Add(c.ep.Global())
	if lk.r.cell != nil {
		st.Add(lk.r.cell)
		if lk.seg != "" {
			var buf [160]byte
			st.Add(c.ep.ScopedOf(keyspace.AppendScopeEpochKey(buf[:0], lk.seg)))
			st.Add(c.ep.ScopedOf(keyspace.AppendResourceScopeEpochKey(buf[:0], lk.r.id, lk.seg)))
		}
	}
	return st
}

// l2Key is the entry's key in L2 (the store adds its prefix); the layout is
// package internal/keyspace's. It does not depend on the epochs: they are
// the record's generation.
func (lk *lookup) l2Key() string {
	var buf [256]byte
	return string(keyspace.AppendEntryKey(buf[:0], lk.r.id, lk.seg, lk.tail))
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
	if e, ok := c.l1.Get(key); ok && e.seal.Valid(c.ep.Tick()) {
		if _, raw := e.value.(rawValue); raw { // not decoded yet: the slow path's
			var zero T
			return zero, nil
		}
		if v, ok := e.value.(T); ok {
			return v, e
		}
		if e.value == nil && isInterface[T]() { // a nil result of interface type
			var zero T
			return zero, e
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
	if e.more != nil {
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
	if e == nil || e.more != nil && c.age(e) != hitFresh {
		var zero T
		return zero, false
	}
	c.countL1(hitFresh)
	o.tier, o.cost = tierL1, e.cost
	return v, true
}

// age classifies an entry that has a stale window or refresh-ahead.
func (c *Cache) age(e *entry) hit {
	if !e.timed() {
		return hitFresh
	}
	now := c.opts.Now().UnixNano()
	switch m := e.more; {
	case m.freshUntil != 0 && now >= m.freshUntil:
		return hitStale
	case m.refreshAt != 0 && now >= m.refreshAt:
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
	tier tierIdx       // tierLoader, or tierL1/tierL2/tierNegative when no tool ran here
	cost time.Duration // how long the tool ran (here or on the instance that filled L2)
	// stale reports an L2 value past its TTL, inside the stale window.
	stale bool
	// l2failed reports a write-through that L2 did not take.
	l2failed bool
}

// attempt is one load of an entry: what its reads learned, and what a
// write of its result must carry.
type attempt struct {
	key string // the entry's L2 key
	st  epoch.Stamp
	// since is the L2 store's clock when the miss read was made, the stamp
	// of the record a write of the result carries (0: no read answered;
	// the store clock is then estimated when the load began).
	since   int64
	seq     uint64      // the fence sequence when the lookup began
	began   time.Time   // when the lookup began, on this instance's clock
	lease   *tier.Lease // the fleet-lock lease this load holds, if any
	refresh bool        // a background refresh of an entry L1 still serves
	// carry is set when st's values are not confirmed yet: the L2 read
	// carries the loads of pend, and st is final once it has answered.
	carry bool
	pend  epoch.Pending
	// settled, if set, runs once a carried stamp is final.
	settled func()
}

// begin stamps a lookup of lk: with confirmed epochs, or — when some are
// stale, L1 holds nothing for the key and L2 is to be read anyway — with the
// values the cells hold now and the loads that confirm them, for the L2
// read to carry (one round trip for the epochs and the entry).
func (c *Cache) begin(ctx context.Context, lk *lookup, a *attempt) {
	a.st = c.stampOf(lk)
	if c.l2 != nil && c.ep.Stale(&a.st) && c.brk.State() != breaker.Open {
		if _, inL1 := c.l1.Get(lk.l1); inL1 {
			c.ep.Confirm(ctx, &a.st) // a hit may need no read at all
			return
		}
		if p, ok := c.ep.Begin(&a.st); ok {
			a.carry, a.pend = true, p
			return
		}
	}
	c.ep.Confirm(ctx, &a.st)
}

// settle makes a carried stamp final with what the read found for its
// epochs (ok false: the read failed).
func (c *Cache) settle(a *attempt, vals []uint64, ok bool) {
	if a.carry {
		c.ep.Finish(&a.st, a.pend, vals, ok)
		a.carry, a.pend = false, epoch.Pending{}
		if a.settled != nil {
			a.settled()
			a.settled = nil
		}
	}
}

// fetch is the slow read path, shared by every entry point: L1 against
// confirmed epochs, the negative filter, then one flight per key on this
// instance that reads L2 (taking the fleet lock's lease in the same round
// trip), waits for another instance's load or runs the tool, and stores
// what it gets. o, if not nil, learns which tier answered.
func fetch[T any](ctx context.Context, c *Cache, lk *lookup, load func(ctx context.Context) (T, error), o *obsLookup) (T, error) {
	var zero T
	var scratch obsLookup
	if o == nil {
		o = &scratch
	}
	a := attempt{seq: c.fence.start(), began: c.opts.Now()}
	c.begin(ctx, lk, &a)
	if !a.carry {
		if v, h, cost := fromL1[T](c, lk, &a.st, a.seq); h != hitNone {
			c.countL1(h)
			o.cost = cost
			served(ctx, c, lk, h, load, o)
			return v, nil
		}
	}
	a.key = lk.l2Key()
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	fk := c.fence.flightKey(a.key, a.st.Token(), lk.l1)
	if a.carry {
		// Once the read has confirmed the epochs, the load is also the load
		// of the key's confirmed generation: lookups that begin with it
		// join this one instead of reading again. Not after an exact
		// invalidation made or heard since this lookup began.
		a.settled = func() {
			if !a.st.Down() && !a.st.Local() && c.fence.start() == a.seq {
				c.fl.Alias(fk, c.fence.flightKey(a.key, a.st.Token(), lk.l1))
			}
		}
	}
	res, err, _ := c.fl.Do(ctx, fk, func(lctx context.Context) (any, error) {
		// A load of this key may have finished between our L1 miss and
		// now: do not run the tool twice. (A carried stamp is not
		// confirmed yet: its read decides.)
		if a.carry {
			return loadStep(lctx, c, lk, &a, load)
		}
		if v, h, e := fromL1Slow[T](c, lk, &a.st, a.seq); h != hitNone {
			l := loaded{v: v, tier: tierL1}
			if e != nil {
				l.cost = e.cost
			}
			return l, nil
		}
		return loadStep(lctx, c, lk, &a, load)
	})
	err = asPanic(err)
	l, ok := res.(loaded)
	if !ok { // the caller left before the flight answered, or Close came
		if err == flight.ErrClosed {
			return zero, ErrClosed
		}
		c.stats.misses.Inc()
		o.tier = tierLoader
		return zero, err
	}
	o.tier, o.cost, o.stale = l.tier, l.cost, l.stale
	switch l.tier {
	case tierL1:
		c.countL1(hitFresh)
	case tierL2:
		c.stats.l2Hits.Inc()
		if l.stale {
			c.stats.staleHits.Inc()
			refreshAsync(ctx, c, lk, load)
		}
	case tierNegative:
		c.stats.negativeHits.Inc()
	default:
		c.stats.misses.Inc()
	}
	if err != nil {
		return zero, err
	}
	return typed[T](l.v)
}

// typed returns v, which a load of any entry point stored, as a T. A nil
// interface value is the zero T when T is an interface type.
func typed[T any](v any) (T, error) {
	if tv, ok := v.(T); ok {
		return tv, nil
	}
	var zero T
	if v == nil && isInterface[T]() {
		return zero, nil
	}
	return zero, fmt.Errorf("agentcache: a concurrent load of the same key returned %T, not %T", v, zero)
}

// isInterface reports whether T is an interface type (whose zero is nil).
func isInterface[T any]() bool { return reflect.TypeFor[T]().Kind() == reflect.Interface }

// loadStep runs inside the flight. It reads L2 with the fleet lock's lease
// in one round trip: a value or a "not found" marker answers; a miss with
// the lease runs the tool here; a miss without it waits for the instance
// that holds it and reads again. Without L2 (or when L2 does not answer) the
// negative filter's "maybe" is trusted, and otherwise the tool runs here.
func loadStep[T any](ctx context.Context, c *Cache, lk *lookup, a *attempt, load func(context.Context) (T, error)) (loaded, error) {
	if c.rp.tombstoned(a.key) {
		c.settle(a, nil, false) // not read: its epochs stay as they are
	}
	if c.l2 == nil || !a.carry && (a.st.Local() || a.st.Down()) {
		if c.maybeNegative(lk, a) {
			return loaded{tier: tierNegative}, negativeHit(lk.r, "")
		}
		return loadAndStore(ctx, c, lk, a, load)
	}
	fleet := c.fleetOn(lk)
	var w chan struct{}
	if fleet {
		// Listen for the key's fill before the first read: a fill
		// announced while it is in flight is not missed.
		w = c.fills.add(a.key)
		defer c.fills.remove(a.key, w)
	}
	// A lease is asked for in the stamp's generation once its epochs are
	// confirmed (a read that carries their loads does not know it yet, and
	// asks for one of unknown generation), so that a load after an
	// invalidation takes over the lease of one that began before it
	// instead of waiting for a result it could not be served.
	known := a.carry && a.st.Known() // the carried epochs have values: perhaps old ones
	rechecked := false               // the epochs were confirmed again for a record that suggested they were behind
	for poll := c.opts.Tuning.LockPoll; ; poll = min(2*poll, 16*c.opts.Tuning.LockPoll) {
		var lease *tier.Lease
		carried := a.carry
		if fleet {
			lease = &tier.Lease{Key: keyspace.LeaseKey(a.key), Token: newToken(), TTL: c.opts.Tuning.LockLease}
			if !carried {
				lease.Gen = a.st.Token()
			}
		}
		before := a.st.Token()
		v, r := readOne[T](ctx, c, lk, a, lease)
		switch r.status {
		case l2Hit:
			return loaded{v: v, tier: tierL2, cost: r.cost, stale: r.stale}, nil
		case l2Negative:
			if lk.r.negTTL > 0 {
				c.negFilterFor(lk.r, lk.seg).add(negKey(a))
			}
			return loaded{tier: tierNegative, cost: r.cost}, negativeHit(lk.r, r.msg)
		case l2Unavailable:
			if c.maybeNegative(lk, a) { // a bloom "maybe" that L2 could not confirm or deny is trusted
				return loaded{tier: tierNegative}, negativeHit(lk.r, "")
			}
			return loadAndStore(ctx, c, lk, a, load)
		}
		if r.behind && !rechecked {
			// L2 holds a record loaded after this instance last knew the
			// epochs, under others: it may not have heard of an
			// invalidation yet. Confirm the epochs in the next read (one
			// round trip) rather than load under epochs that may be behind
			// (which would overwrite a current record with a stale-epoch
			// one, and load again on every instance that knows).
			rechecked = true
			if r.leased {
				a.lease = lease
				c.ownLeases.Store(lease.Key, lease.Token)
				c.release(a)
			}
			c.ep.Distrust(&a.st)
			if p, ok := c.ep.Begin(&a.st); ok {
				a.carry, a.pend, known = true, p, true
			} else {
				c.ep.Confirm(ctx, &a.st)
			}
			continue
		}
		if fleet && !r.leased && r.unusable {
			// A value L2 still keeps but that cannot be served (past its
			// life by the writer's clock, or undecodable): the read did not
			// take the lease for it, so take it on its own.
			r.leased = c.tryLock(ctx, lease)
		}
		if fleet && !r.leased && carried && known && a.st.Token() != before {
			// The read carried epochs that turned out to be behind, and the
			// lease is held (perhaps by a load that began before the
			// invalidation this instance had not heard of, whose result
			// cannot be served now): read again at once, asking in the
			// current generation, which takes such a lease over. (With
			// epochs this instance never knew, the holder is as likely a
			// load of the current generation, so it waits.)
			continue
		}
		if !fleet || r.leased {
			if r.leased {
				a.lease = lease
				c.ownLeases.Store(lease.Key, lease.Token)
			}
			return loadAndStore(ctx, c, lk, a, load)
		}
		// Another instance holds the lease: wait for its fill, announced
		// (or found by polling in case the announcement is lost). While the
		// subscription is up an announcement is lost only with it, and a
		// resubscription wakes every waiter, so the poll is a slow safety
		// net; without one it is how the fill is found.
		c.stats.fleetWaits.Add(1)
		wait := poll
		if c.bus.live.Load() {
			wait = 16 * c.opts.Tuning.LockPoll
		}
		t := time.NewTimer(wait)
		select {
		case <-w:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return loaded{}, ctx.Err()
		}
		t.Stop()
	}
}

// loadAndStore runs the tool and stores what it returns: a value, or a "not
// found". Errors are returned and never stored. A lease the attempt holds
// is renewed while the tool runs and released with the write.
func loadAndStore[T any](ctx context.Context, c *Cache, lk *lookup, a *attempt, load func(context.Context) (T, error)) (loaded, error) {
	c.stats.loads.Add(1)
	if a.lease != nil {
		stop := c.renewLease(*a.lease, a.st.Token())
		defer stop()
	}
	ok := false
	defer func() {
		if !ok { // an error or a panic (which the flight turns into a PanicError)
			c.stats.loadErrors.Add(1)
			c.release(a)
		}
	}()
	val, cost, err := runTool(ctx, c, lk.r.obs, load)
	if isNotFound(lk, val, err) {
		ok = true
		stored := c.putNegative(ctx, lk, a, cost, notFoundMessage(err))
		if err == nil {
			err = negativeHit(lk.r, "")
		}
		return loaded{tier: tierLoader, cost: cost, l2failed: !stored}, err
	}
	if err != nil {
		return loaded{tier: tierLoader, cost: cost}, err
	}
	ok = true
	val, payload, cacheable := roundTrip(c, lk.r, val)
	if !cacheable {
		c.release(a)
		return loaded{v: val, tier: tierLoader, cost: cost}, nil
	}
	stored := c.put(ctx, lk, a, val, payload, cost)
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
	leased bool          // the read took the lease it asked for
	// unusable reports a value record that could not be served: the read
	// takes no lease over it.
	unusable bool
	// otherGen reports a record of another generation than the lookup's.
	otherGen bool
	// msg is the tool's message a "not found" marker remembered.
	msg string
	// behind reports a record of another generation whose load began after
	// this instance last confirmed the lookup's epochs.
	behind bool
}

// fromL1 reads L1 in the slow path, against a confirmed stamp. Unlike the
// fast path it accepts cells that could not be confirmed (L2 down), and it
// decodes entries restored from a snapshot on first use.
func fromL1[T any](c *Cache, lk *lookup, st *epoch.Stamp, seq uint64) (T, hit, time.Duration) {
	v, h, e := fromL1Slow[T](c, lk, st, seq)
	if e == nil {
		return v, h, 0
	}
	return v, h, e.cost
}

// fromL1Slow is fromL1 returning the entry; seq is the fence sequence
// when the lookup began (an entry decoded from a snapshot is put back only
// if no exact invalidation came since).
func fromL1Slow[T any](c *Cache, lk *lookup, st *epoch.Stamp, seq uint64) (T, hit, *entry) {
	var zero T
	e, ok := c.l1.Get(lk.l1)
	if !ok {
		return zero, hitNone, nil
	}
	if r := e.restored(); r && !e.more.restored.SameVals(st) || !r && !e.seal.Is(st) {
		return zero, hitNone, nil
	}
	if raw, ok := e.raw(); ok {
		// A restored entry not confirmed against L2 yet is served only
		// while L2 is unreachable (and then not stored decoded: once L2
		// answers, it must not be served unconfirmed).
		if e.unconfirmed() && !c.l2Unreachable(st) {
			return zero, hitNone, nil
		}
		var v T
		if err := c.codec.Unmarshal(raw, &v); err != nil {
			c.l1.Delete(lk.l1)
			c.warn("snapshot decode", "agentcache: dropping a restored entry that does not decode", err)
			return zero, hitNone, nil
		}
		ne := &entry{value: v, seal: st.Seal(), expiresAt: e.expiresAt, cost: e.cost}
		ne.timing(e.freshUntil(), 0)
		if !e.unconfirmed() {
			c.fillL1(lk.l1, ne, c.remaining(e.expiresAt), seq)
		}
		return v, c.age(ne), ne
	}
	v, ok := asT[T](e.value)
	if !ok {
		return zero, hitNone, nil
	}
	return v, c.age(e), e
}

// l2Unreachable reports whether a lookup stamped st cannot use L2: none
// configured, its epochs could not be confirmed, or the breaker is open.
func (c *Cache) l2Unreachable(st *epoch.Stamp) bool {
	return c.l2 == nil || st.Down() || c.brk.State() == breaker.Open
}

// asT is the L1 value v as a T: a nil stored by a tool of interface type is
// the zero T of an interface type.
func asT[T any](v any) (T, bool) {
	if tv, ok := v.(T); ok {
		return tv, true
	}
	var zero T
	return zero, v == nil && isInterface[T]()
}

// maybeNegative reports whether the negative filter says a's entry may be
// a remembered "not found".
func (c *Cache) maybeNegative(lk *lookup, a *attempt) bool {
	f := negFilterOf(lk.r, lk.seg)
	return f != nil && f.test(negKey(a))
}

// negKey is a's entry in the negative filter: its L2 key in its
// generation, so that a "not found" is forgotten with the epochs it was
// found under.
func negKey(a *attempt) string {
	return a.key + "\x00" + strconv.FormatUint(a.st.Token(), 36)
}

// readOne reads one entry from L2 (with lease, the fleet lock's lease) and
// decodes what it finds, in one round trip that also carries the loads of
// a's stale epochs. The lease is asked for over anything not of a's
// generation; when a's epochs are not known yet, only over nothing live at
// all, and a lease taken over what turns out to be a hit is released.
func readOne[T any](ctx context.Context, c *Cache, lk *lookup, a *attempt, lease *tier.Lease) (T, l2Read) {
	var zero T
	var epochs []tier.EpochOp
	gen := a.st.Token()
	if a.carry {
		epochs = a.pend.Ops
		if !a.st.Known() {
			gen = 0
		}
	}
	var rr []tier.ReadResult
	var vals []uint64
	err := c.l2Call(ctx, "read", func(ctx context.Context) (err error) {
		vals, rr, err = c.fencer.ReadRecords(ctx, epochs, []tier.ReadOp{{Key: a.key, Lease: lease, Gen: gen}})
		return err
	})
	c.settle(a, vals, err == nil)
	if err != nil || len(rr) != 1 || rr[0].Err != nil || a.st.Local() || a.st.Down() {
		// The read may have taken the lease although its answer was lost
		// (a timeout after Redis ran it): release it, or every instance
		// would wait it out.
		if err != errBreakerOpen {
			c.rp.addUnlock(lease)
		}
		return zero, l2Read{status: l2Unavailable}
	}
	v, r := fromRead[T](ctx, c, lk, a, rr[0])
	if r.otherGen && gen != 0 {
		// The read asked for the lease over it (a record is live only for
		// its own generation): a lease not taken is held, and taking it on
		// its own later would only find it free once its holder's fill has
		// landed, and load again.
		r.unusable = false
	}
	if r.leased && (r.status == l2Hit || r.status == l2Negative) {
		c.w.enqueue(writeOp{key: a.key, lease: lease})
		r.leased = false
	}
	return v, r
}

// readMany reads the entries of attempts in one call (one round trip per
// node). nil means the whole read failed.
func (c *Cache) readMany(ctx context.Context, as []*attempt) []tier.ReadResult {
	ops := make([]tier.ReadOp, len(as))
	for i, a := range as {
		ops[i] = tier.ReadOp{Key: a.key, Gen: a.st.Token()}
	}
	var rr []tier.ReadResult
	if err := c.l2Call(ctx, "read batch", func(ctx context.Context) (err error) {
		_, rr, err = c.fencer.ReadRecords(ctx, nil, ops)
		return err
	}); err != nil || len(rr) != len(as) {
		return nil
	}
	return rr
}

// fromRead handles what an L2 read found for one entry: the store's clock
// becomes the attempt's stamp, and the record a value (filling L1), a "not
// found" marker, or a miss (nothing, a tombstone, or bytes that do not
// decode, which are counted).
func fromRead[T any](ctx context.Context, c *Cache, lk *lookup, a *attempt, rr tier.ReadResult) (v T, r l2Read) {
	if rr.Now > 0 {
		a.since = rr.Now
		c.clock.observe(rr.Now, c.opts.Now())
	}
	r.leased = rr.Leased
	if rr.Repaired {
		c.stats.l2Corrupt.Add(1)
		c.warn("corrupt", "agentcache: an L2 key held data of another type; replaced", nil)
	}
	r.status = l2Miss
	if !rr.Found {
		return v, r
	}
	if len(rr.Value) > c.opts.MaxValueSize {
		// Not decoded: MaxValueSize bounds what is read as well as what is
		// written (bytes planted in L2, or written by an instance with a
		// larger bound). The reload keeps its value out of L2 the same way.
		c.stats.oversize.Add(1)
		c.warn("oversize", "agentcache: an L2 value was not read", fmt.Errorf("%w: %d bytes > %d at a key of %s", ErrValueTooLarge, len(rr.Value), c.opts.MaxValueSize, lk.r.def.Name))
		r.unusable = true
		return v, r
	}
	env, err := c.seal.Open(a.key, rr.Value)
	if err == nil && env.Kind != kindTombstone && !c.plausibleExpiry(lk, env) {
		err = errFarExpiry
	}
	if err != nil {
		if err != keyspace.ErrUnbound && err != errFarExpiry {
			err = errBadEnvelope
		}
		c.corrupt(a.key, rr.Value, err)
		r.unusable = true
		return v, r
	}
	if env.Kind != kindTombstone && env.Gen != a.st.Token() {
		// Written under other epochs: invalidated since (or, from an
		// instance that had not heard yet, before them), and overwritten by
		// the reload. Unless its load began after this instance last knew
		// its epochs: then they may be what is behind.
		r.unusable, r.otherGen = true, true
		if k := a.st.KnownSince(); k > 0 && c.clock.seen.Load() && env.Origin > c.clock.now(time.UnixMicro(k)) {
			r.behind = true
		}
		return v, r
	}
	switch env.Kind {
	case kindTombstone:
		return v, r
	case kindValue:
		// The writer's own stamp (when the load began, or the Set was
		// made): a store restamps a record as it lands.
		if c.fence.predates(lk.l1, env.Origin) {
			// Loaded before an exact invalidation (or Set) made or heard
			// here: a miss, and the record is overwritten by the reload.
			r.unusable = true
			return v, r
		}
	case kindMissing:
		r.status, r.cost = l2Negative, env.Cost
		if len(env.Payload) > 0 {
			var m string // the tool's message; a marker of another shape says none
			if c.codec.Unmarshal(env.Payload, &m) == nil {
				r.msg = strings.ToValidUTF8(m, "")
			}
		}
		return v, r
	}
	if err := c.codec.Unmarshal(env.Payload, &v); err != nil {
		c.corrupt(a.key, rr.Value, err)
		var zero T
		r.unusable = true
		return zero, r
	}
	e := &entry{value: v, seal: a.st.Seal(), cost: env.Cost}
	ttl := lk.r.ttl + lk.r.stale
	if !env.FreshUntil.IsZero() {
		f := env.FreshUntil.UnixNano()
		e.expiresAt = f + int64(lk.r.stale)
		if ttl = c.remaining(e.expiresAt); ttl <= 0 {
			var zero T
			r.unusable = true
			return zero, r
		}
		if lk.r.stale > 0 {
			e.timing(f, 0)
			r.stale = c.opts.Now().UnixNano() >= f
		}
	} else if ttl > 0 {
		e.expiresAt = c.opts.Now().Add(ttl).UnixNano()
	}
	// A refresh's read fills L1 only with a fresh value: a stale one in L2
	// may be older than what L1 holds.
	if a.st.Current() && !(a.refresh && r.stale) {
		c.fillL1(lk.l1, e, ttl, a.seq)
	}
	r.status, r.cost = l2Hit, env.Cost
	return v, r
}

// corrupt handles an undecodable L2 value: a miss, counted and logged, and
// the key deleted in the background if it still holds the same bytes (a
// compare-and-delete through the store's lease release, which deletes a key
// only while it holds the given bytes): a plain delete could remove a record
// or tombstone written since the read. A store without one leaves the bad
// bytes for the reload to overwrite (its stamp is after theirs).
func (c *Cache) corrupt(key string, bad []byte, err error) {
	c.stats.l2Corrupt.Add(1)
	c.warn("corrupt", "agentcache: undecodable L2 value; deleting it", err)
	if c.locker == nil {
		return
	}
	c.spawn(func() {
		_ = c.l2Call(c.base, "delete", func(ctx context.Context) error {
			_, err := c.locker.Unlock(ctx, key, string(bad))
			return err
		})
	})
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
