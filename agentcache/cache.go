package agentcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/codes"

	"github.com/agentcache/agentcache-go/internal/breaker"
	"github.com/agentcache/agentcache-go/internal/epoch"
	"github.com/agentcache/agentcache-go/internal/flight"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/internal/ratelog"
	"github.com/agentcache/agentcache-go/internal/stripe"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/memory"
)

var errNoEpochStore = errors.New("agentcache: the L2 store keeps no epochs (it does not implement tier.Epochs)")

// Cache is a two-tier cache. It is safe for concurrent use. Create it with
// New and release it with Close.
type Cache struct {
	opts Options
	id   string
	l1   *memory.Store[*entry]
	l2   tier.Remote // nil: L1 only
	// fencer keeps entries in L2 as stamped records: the store's own, or
	// one over its basic methods.
	fencer tier.Fencer
	codec  Codec
	seal   *keyspace.Sealer // binds L2 values to their keys (with Options.Secret, unforgeably)
	brk    *breaker.Breaker
	ep     *epoch.Table // what this instance knows of the epochs
	bus    *bus         // the invalidation channel
	w      *writer
	fl     *flight.Group
	log    *ratelog.Log
	obs    *observer
	kv     *resState // the key-value API's built-in resource

	resMu     sync.Mutex // guards resources
	resources map[string]*resState

	locker    tier.Locker // nil: no fleet lock
	fills     fillWaiters
	fence     fences   // exact invalidations this instance made or heard
	ownLeases sync.Map // lease key → token: leases this instance took and has not released yet
	// repairsAtNew is the store's count of repaired epoch keys at New.
	repairsAtNew uint64
	clock        storeClock // the L2 store's clock, for stamps of writes without a read
	rp           repairs
	refreshing   sync.Map // L1 key → struct{}: refreshes running
	checked      sync.Map // reflect.Type → error (nil: carried): result types the codec was asked about

	bgMu        sync.Mutex     // guards bgClosed and toolsClosed against Adds racing Waits
	bgClosed    bool           // no background work may start
	bg          sync.WaitGroup // refreshes, lease renewals, batch windows
	toolsClosed bool           // no background tool run may start
	tools       sync.WaitGroup // background tool runs (refreshes, batches): Close gives them until its ctx ends

	base      context.Context // ends at Close: cancels loads and background work
	cancel    context.CancelFunc
	closed    atomic.Bool
	closeDone chan struct{} // closed when the first Close returns
	stats     counters

	repairsDone chan struct{} // closed when the repair loop has stopped

	snapMu   sync.Mutex // serializes snapshot saves
	snapStop chan struct{}
	snapDone chan struct{}
}

// entry is what L1 holds for one key.
type entry struct {
	// value is the value, or a rawValue: the codec's bytes, decoded into
	// the reader's type on the first lookup (a Set's, whose type is the
	// reader's to choose, and an entry restored from a snapshot).
	value     any
	seal      epoch.Seal    // the epochs it was made under
	expiresAt int64         // Unix nanos; 0: never. Kept for snapshots.
	cost      time.Duration // how long the tool ran to produce it (0: unknown), the time a hit saves
	more      *entryMore    // nil on most entries
}

// entryMore is what few entries need: a stale window, refresh-ahead, or a
// snapshot's restore. Kept apart, so that every other entry is 80 bytes.
type entryMore struct {
	// freshUntil, with a stale window, is when the entry turns stale; it
	// is served stale until expiresAt while one refresh runs. 0: no window.
	freshUntil int64
	// refreshAt, with refresh-ahead, is when a read starts a background
	// refresh while the entry is still fresh. 0: none.
	refreshAt int64
	// restored is set on entries restored from a snapshot: the epoch
	// values they were saved with, and no cells until the first lookup
	// confirms them.
	restored *epoch.Stamp
	// unconfirmed is set on restored entries until L2 has been seen to
	// hold the same value for them (see confirmSnapshot). Until then they
	// are served only while L2 is unreachable.
	unconfirmed bool
}

// expiry is when the entry leaves L1 (Unix nanos; 0: never).
func (e *entry) expiry() int64 { return e.expiresAt }

// rawValue is an entry's value held as the codec's bytes.
type rawValue []byte

// raw returns the codec's bytes of an entry held raw.
func (e *entry) raw() ([]byte, bool) {
	b, ok := e.value.(rawValue)
	return b, ok
}

func (e *entry) freshUntil() int64 {
	if e.more == nil {
		return 0
	}
	return e.more.freshUntil
}

// timed reports whether the entry has a stale window or refresh-ahead.
func (e *entry) timed() bool {
	return e.more != nil && e.more.freshUntil|e.more.refreshAt != 0
}

func (e *entry) restored() bool { return e.more != nil && e.more.restored != nil }

func (e *entry) unconfirmed() bool { return e.more != nil && e.more.unconfirmed }

// timing sets the entry's stale window end and refresh-ahead time (0: none).
func (e *entry) timing(freshUntil, refreshAt int64) {
	if freshUntil|refreshAt == 0 {
		return
	}
	if e.more == nil {
		e.more = &entryMore{}
	}
	e.more.freshUntil, e.more.refreshAt = freshUntil, refreshAt
}

// counters are the cache's statistics. Lookup counters are striped: every L1
// hit adds to one, and parallel hits must not share a cache line.
type counters struct {
	l1Hits, l2Hits, negativeHits, misses       stripe.Counter
	staleHits                                  stripe.Counter
	refreshes, fleetWaits                      atomic.Uint64
	negativeStored                             atomic.Uint64
	loads, loadErrors                          atomic.Uint64
	l2Errors, l2Corrupt                        atomic.Uint64
	writesQueued, writesDone                   atomic.Uint64
	writesDropped, writesFailed, writesFenced  atomic.Uint64
	writesSkipped, oversize, unencodable       atomic.Uint64
	invalidations, fleetErrors, snapshotErrors atomic.Uint64
	invalidationsHeard                         atomic.Uint64
}

// New returns a Cache configured by opts, or an error naming each bad option.
func New(opts Options) (*Cache, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cache{opts: o, l2: o.L2, codec: o.Codec, seal: keyspace.NewSealer(o.Secret), resources: map[string]*resState{}, closeDone: make(chan struct{})}
	if r, ok := o.L2.(tier.Repairer); ok {
		c.repairsAtNew = r.Repairs()
	}
	c.id = o.Tuning.InstanceID
	if c.id == "" {
		c.id = uuid.NewString()
	}
	c.log = ratelog.New(o.Logger, o.Tuning.LogInterval, o.Now)
	c.l1, err = memory.New(memory.Options{MaxEntries: o.L1MaxEntries, Now: opts.Now}, (*entry).expiry)
	if err != nil {
		return nil, fmt.Errorf("agentcache: %w", err)
	}
	c.base, c.cancel = context.WithCancel(context.Background())
	c.fl = flight.New(c.base, o.LoadTimeout)
	c.brk = breaker.New(breaker.Options{
		Failures: o.Tuning.Breaker.Failures, OpenFor: o.Tuning.Breaker.OpenFor, MaxOpenFor: o.Tuning.Breaker.MaxOpenFor, Now: o.Now,
		OnChange: func(from, to breaker.State) {
			c.log.Logger().Warn("agentcache: L2 circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	restored, snapErr := c.loadSnapshot()
	if c.obs, err = newObserver(c); err != nil {
		c.l1.Close()
		return nil, fmt.Errorf("agentcache: telemetry: %w", err)
	}
	c.bus = newBus(c)
	c.ep, err = epoch.New(c.epochConfig(max(4*o.L1MaxEntries, 10_000), restored.epochs))
	if err != nil {
		c.l1.Close()
		c.obs.close()
		return nil, fmt.Errorf("agentcache: %w", err)
	}
	c.kv = &resState{ttl: o.DefaultTTL, negTTL: resource.Resource{}.NegativeTTLFor(o.DefaultTTL),
		obs: c.obs.newResObs("kv", "none")}
	c.w = newWriter(c)
	c.locker, _ = o.L2.(tier.Locker)
	if c.l2 != nil {
		c.fencer = tier.Fence(c.l2)
		if _, native := c.l2.(tier.Fencer); !native {
			c.locker = nil // leases are taken by the store's atomic read
		}
	}
	c.rp.init()
	if c.l2 != nil {
		c.repairsDone = make(chan struct{})
		go func() { defer close(c.repairsDone); c.runRepairs() }()
	}
	c.ep.Start()
	c.bus.start()
	// Give the invalidation subscription a moment to come up, so that the
	// first lookups do not race its first Reset (which drops L1 and asks for
	// the epochs again). If L2 is slow or down, the cache starts anyway.
	select {
	case <-c.bus.ready:
	case <-time.After(o.L2Timeout):
	}
	c.applySnapshot(restored)
	if snapErr != nil {
		c.stats.snapshotErrors.Add(1)
		c.log.Logger().Warn("agentcache: snapshot not restored; starting cold", "error", snapErr)
	}
	c.startSnapshots()
	return c, nil
}

// Close stops the cache: new calls fail with ErrClosed; the tools running
// (callers' loads, background refreshes, batches) are given until ctx ends
// to finish; the L2 write queue is drained (writes still queued when ctx
// ends are dropped and counted); the snapshot, if configured, is saved. The
// L2 store is not closed: it belongs to the caller.
//
// When ctx ends, the tools still running have their contexts cancelled.
// Those that return promptly release their
// leases and announce their fills, each bounded by Options.L2Timeout, so
// against an unreachable L2 Close may return up to about two L2 timeouts
// after ctx ends; every goroutine the cache started has then stopped. A tool
// that ignores its context is not waited for: Close returns an error wrapping
// ctx.Err(), and when the tool returns, its caller gets the answer, L1 takes
// it, and its L2 write is dropped and counted.
//
// Close may be called more than once, from any goroutine: a later call
// waits for the first to finish and returns nil, or, if its ctx ends first,
// an error wrapping ctx.Err(); so a second shutdown path that returns from
// Close knows the queue has been drained. Every other method, and every
// wrapper (Wrap, WrapBatch, Memoize), returns ErrClosed after it.
func (c *Cache) Close(ctx context.Context) error {
	if !c.closed.CompareAndSwap(false, true) {
		select {
		case <-c.closeDone:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("agentcache: Close: the first Close is still draining: %w", ctx.Err())
		}
	}
	defer close(c.closeDone)
	var errs []error
	if err := c.waitTools(ctx); err != nil {
		errs = append(errs, fmt.Errorf("agentcache: loads still running at Close: %w", err))
	}
	c.cancel()
	c.bgMu.Lock()
	c.bgClosed = true
	c.bgMu.Unlock()
	stopped := make(chan struct{})
	go func() {
		_ = c.fl.Wait(context.Background())
		c.bg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		// Cancelled tools return promptly unless they ignore their context;
		// those are left to finish on their own.
		select {
		case <-stopped:
		case <-time.After(2 * c.opts.L2Timeout):
			errs = append(errs, fmt.Errorf("agentcache: Close: tools that ignore cancellation are still running: %w", ctx.Err()))
		}
	}
	if c.repairsDone != nil {
		<-c.repairsDone
	}
	c.stopSnapshots()
	if err := c.w.close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := c.saveSnapshot(); err != nil {
		errs = append(errs, err)
	}
	c.bus.close()
	c.ep.Close()
	c.obs.close()
	c.l1.Close()
	return errors.Join(errs...)
}

// Stats is a snapshot of a Cache's counters.
type Stats struct {
	L1Hits uint64 // lookups answered by L1
	L2Hits uint64 // lookups answered by L2
	Misses uint64 // lookups that reached the loader

	StaleHits  uint64 // of the L1 and L2 hits, how many were served stale
	Refreshes  uint64 // background refreshes started (stale or ahead)
	FleetWaits uint64 // times a load waited for another instance's lease
	// Joined counts the lookups that joined a lookup of the same key
	// already running on this instance (its L2 read and, on a miss, its
	// tool run) instead of starting their own: the herd one call served.
	// Each joined lookup is counted as it joins, and again under the tier
	// that answered it.
	Joined uint64

	NegativeHits   uint64 // lookups answered "not found" by the negative cache
	NegativeStored uint64 // "not found" answers remembered

	Loads      uint64 // loader runs (a shared run counts once)
	LoadErrors uint64 // loader runs that returned an error or panicked

	L2Errors uint64 // failed or timed-out L2 calls
	// L2Corrupt counts undecodable L2 values and lease keys of another type
	// this cache found (each treated as a miss and replaced), plus, when the
	// store counts them (tier.Repairer), the epoch keys the store found
	// holding something that is not an epoch and replaced since New.
	L2Corrupt uint64

	WritesQueued  uint64 // L2 writes accepted by the write-behind queue
	WritesDone    uint64 // L2 writes the store accepted
	WritesDropped uint64 // L2 writes dropped: queue full, still queued at Close, or made after it
	WritesFenced  uint64 // L2 writes not made: an invalidation or a newer write came after their load began
	WritesFailed  uint64 // L2 writes the store refused
	WritesSkipped uint64 // L2 writes not attempted: the breaker was open
	Oversize      uint64 // values kept out of L2 by MaxValueSize (or found there above it, not read), or out of a snapshot by its format's limits
	Unencodable   uint64 // loaded values the codec could not encode or decode back: returned to their callers, not cached

	Invalidations uint64 // Invalidate, Delete and Clear calls
	FleetErrors   uint64 // of those, how many could not tell the fleet
	// InvalidationsHeard counts the invalidation messages of other
	// instances (and their Sets, Deletes and Clears) applied to this one's
	// L1: the fleet's coherence, seen from here.
	InvalidationsHeard uint64
	SnapshotErrors     uint64 // snapshot saves or restores that failed

	L1Evictions     uint64 // entries L1 dropped to stay within L1MaxEntries (steadily rising: L1 is too small for the working set)
	L1Entries       int    // entries in L1 now
	WriteQueueDepth int    // writes waiting for L2 now
	Breaker         string // "closed", "open" or "half-open"
}

// epochRepairs is how many epoch keys the store replaced since New.
func (c *Cache) epochRepairs() uint64 {
	r, ok := c.l2.(tier.Repairer)
	if !ok {
		return 0
	}
	return r.Repairs() - c.repairsAtNew
}

// HitRatio is the share of lookups answered without the loader (by L1, L2
// or the negative cache).
func (s Stats) HitRatio() float64 {
	hits := s.L1Hits + s.L2Hits + s.NegativeHits
	if hits+s.Misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+s.Misses)
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{
		L1Hits: s.l1Hits.Load(), L2Hits: s.l2Hits.Load(), Misses: s.misses.Load(),
		NegativeHits: s.negativeHits.Load(), NegativeStored: s.negativeStored.Load(),
		StaleHits: s.staleHits.Load(), Refreshes: s.refreshes.Load(), FleetWaits: s.fleetWaits.Load(),
		Joined: c.fl.Joined(),
		Loads:  s.loads.Load(), LoadErrors: s.loadErrors.Load(),
		L2Errors: s.l2Errors.Load(), L2Corrupt: s.l2Corrupt.Load() + c.epochRepairs(),
		WritesQueued: s.writesQueued.Load(), WritesDone: s.writesDone.Load(), WritesDropped: s.writesDropped.Load(),
		WritesFenced: s.writesFenced.Load(),
		WritesFailed: s.writesFailed.Load(), WritesSkipped: s.writesSkipped.Load(),
		Oversize: s.oversize.Load(), Unencodable: s.unencodable.Load(),
		Invalidations: s.invalidations.Load(), FleetErrors: s.fleetErrors.Load(),
		InvalidationsHeard: s.invalidationsHeard.Load(),
		SnapshotErrors:     s.snapshotErrors.Load(),
		L1Evictions:        c.l1.Stats().Evictions, L1Entries: c.l1.Len(), WriteQueueDepth: c.w.depth(),
		Breaker: c.brk.State().String(),
	}
}

// spawn runs fn on a goroutine that Close waits for, and reports false
// without running it once Close has begun.
func (c *Cache) spawn(fn func()) bool { return c.spawnWork(false, fn) }

// spawnTool is spawn for work that runs a tool (a refresh, a batch): like
// the loads of the caller's path, Close lets it finish until its ctx ends
// before it cancels it, and none starts once Close has begun.
func (c *Cache) spawnTool(fn func()) bool { return c.spawnWork(true, fn) }

func (c *Cache) spawnWork(tool bool, fn func()) bool {
	c.bgMu.Lock()
	if c.bgClosed || tool && c.toolsClosed {
		c.bgMu.Unlock()
		return false
	}
	c.bg.Add(1)
	if tool {
		c.tools.Add(1)
	}
	c.bgMu.Unlock()
	go func() {
		defer c.bg.Done()
		if tool {
			defer c.tools.Done()
		}
		fn()
	}()
	return true
}

// waitTools waits, until ctx ends, for the loads of the caller's path and
// the tools running in the background, none of which can start any more.
func (c *Cache) waitTools(ctx context.Context) error {
	c.bgMu.Lock()
	c.toolsClosed = true
	c.bgMu.Unlock()
	done := make(chan struct{})
	go func() { c.tools.Wait(); close(done) }()
	if err := c.fl.Wait(ctx); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// l2Call runs one L2 operation on a caller's behalf behind the breaker and
// the L2 timeout, and records its outcome. It returns errBreakerOpen without
// calling when the breaker refuses.
func (c *Cache) l2Call(ctx context.Context, what string, op func(ctx context.Context) error) error {
	if c.l2 == nil {
		return errNoL2
	}
	if !c.brk.Allow() {
		return errBreakerOpen
	}
	sctx, span := c.l2Span(ctx, what)
	cctx, cancel := context.WithTimeout(sctx, c.opts.L2Timeout)
	err := op(cctx)
	cancel()
	c.record(ctx, what, err)
	if span != nil {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	return err
}

// l2Probe is l2Call for the repair loop: it calls even while the breaker
// is open (the loop's cadence bounds the calls), and its outcome moves the
// breaker like any other (a success closes it).
func (c *Cache) l2Probe(ctx context.Context, what string, op func(ctx context.Context) error) error {
	if c.l2 == nil {
		return errNoL2
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.L2Timeout)
	err := op(cctx)
	cancel()
	c.record(ctx, what, err)
	return err
}

// record feeds an L2 outcome to the breaker, the counters and the log.
func (c *Cache) record(ctx context.Context, what string, err error) {
	switch {
	case err == nil:
		c.brk.Success()
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about L2's health.
		c.brk.Cancel()
	default:
		c.brk.Failure()
		c.stats.l2Errors.Add(1)
		c.warn("l2 "+what, "agentcache: L2 "+what+" failed", err)
	}
}

var (
	errNoL2        = errors.New("agentcache: no L2 configured")
	errBreakerOpen = errors.New("agentcache: L2 circuit breaker is open")
)

func (c *Cache) warn(kind, msg string, err error) { c.log.Warn(kind, msg, "error", err) }
