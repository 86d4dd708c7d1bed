package agentcache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/tier"
)

// The write path. A loaded value goes to L1 at once and to L2 as a record
// stamped with the store's clock when its load began (see fence.go),
// through a bounded write-behind queue: the caller never waits for L2, also
// when it holds the fleet lock's lease, which the same write releases. Once
// the write has landed, the fleet is told (the L1 keys to drop, the fills
// that waiting instances read).

// writeOp is one queued L2 operation: a record write, or (with no record)
// only the release of a lease.
type writeOp struct {
	key    string
	record []byte // nil: release only
	ttl    time.Duration
	lease  *tier.Lease // released after the write
	// l1 and seq fence the write on this instance: it is dropped if l1 was
	// exact-invalidated after the fence sequence seq.
	l1  string
	seq uint64
	// announce, if set, is an L1 key the other instances are told to drop
	// (and fence) once the write has landed, so they reload the new value
	// from L2 (a Set); fill tells the instances waiting for this key's
	// lease that it was filled.
	announce string
	fill     bool
	// replace marks a Set: it replaces what L2 holds unless an exact
	// invalidation came after it (tier.LandedReplace).
	replace bool
	// floor is the stamp of the last exact invalidation of l1 known here
	// when the write was made (tier.RecordWrite.Floor).
	floor int64
}

// put stores a loaded value, whose codec bytes are payload (see roundTrip):
// L1 now, L2 through the write-behind queue (or at once with write-through). A value loaded under epochs that have moved
// since, or fenced by an exact invalidation, is returned to its callers but
// not stored: it may predate the invalidation. It reports false when a
// write-through failed.
func (c *Cache) put(ctx context.Context, lk *lookup, a *attempt, v any, payload []byte, cost time.Duration) bool {
	if !c.storable(lk, a) {
		c.release(a)
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
	e := &entry{value: v, seal: a.st.Seal(), expiresAt: now.Add(life).UnixNano(), cost: cost}
	var freshUntil, refreshAt int64
	if lk.r.stale > 0 {
		freshUntil = fresh.UnixNano()
	}
	if lk.refreshAhead > 0 {
		refreshAt = now.Add(time.Duration(float64(ttl) * lk.refreshAhead)).UnixNano()
	}
	e.timing(freshUntil, refreshAt)
	if !c.fillL1(lk.l1, e, life, a.seq) { // fenced since storable's check
		c.release(a)
		return true
	}
	return c.writeRecord(ctx, lk, a, kindValue, payload, fresh, cost, life)
}

// putNegative remembers a "not found" answer in the filter and as an L2
// marker, which never replaces a value. It reports false when a
// write-through failed.
func (c *Cache) putNegative(ctx context.Context, lk *lookup, a *attempt, cost time.Duration, msg string) bool {
	if lk.r.negTTL <= 0 || !c.storable(lk, a) {
		c.release(a)
		return true
	}
	c.negFilterFor(lk.r, lk.seg).add(negKey(a))
	c.stats.negativeStored.Add(1)
	var payload []byte // the marker's payload: the tool's message, when it gave one
	if msg != "" {
		payload, _ = c.codec.Marshal(msg) // a string: if a codec cannot say it, the marker says nothing
	}
	return c.writeRecord(ctx, lk, a, kindMissing, payload, c.opts.Now().Add(lk.r.negTTL), cost, lk.r.negTTL)
}

// storable reports whether a's result may be stored: its epochs have not
// moved, no exact invalidation of its key came after it began, and it is
// younger than the fence horizon.
func (c *Cache) storable(lk *lookup, a *attempt) bool {
	if !a.st.Current() || c.fence.fenced(lk.l1, a.seq) {
		return false
	}
	if c.opts.Now().Sub(a.began) > fenceHorizon {
		c.stats.writesFenced.Add(1)
		return false
	}
	return true
}

// writeRecord wraps a result's payload in a record stamped with a's start
// and writes it to L2 with a's lease released; without L2 it does nothing.
func (c *Cache) writeRecord(ctx context.Context, lk *lookup, a *attempt, kind byte, payload []byte, fresh time.Time, cost, ttl time.Duration) bool {
	if c.l2 == nil || a.st.Local() {
		c.release(a)
		return true
	}
	since := a.since
	if since == 0 {
		since = c.clock.now(a.began)
	}
	b, ok := c.envelope(a.key, kind, payload, since, a.st.Token(), fresh, cost)
	if !ok {
		c.release(a)
		return true
	}
	// A fill under a lease is announced to the instances waiting for it.
	// It drops nobody's L1 copy: an instance that read the new value from
	// L2 while the announcement travelled keeps it, and one with a stale
	// copy refreshes it from L2 on its next read.
	op := writeOp{key: a.key, record: b, ttl: ttl, lease: a.lease, l1: lk.l1, seq: a.seq, fill: a.lease != nil, floor: c.fence.mark(lk.l1).stamp}
	return c.writeL2(ctx, op, lk.writeThrough)
}

// release hands a's lease, if any, to the queue to release: a load that
// stores nothing still frees the key for the next instance at once.
func (c *Cache) release(a *attempt) {
	if a.lease == nil {
		return
	}
	c.w.enqueue(writeOp{key: a.key, lease: a.lease})
	a.lease = nil
}

// writeL2 queues an operation, or with sync makes it now (write-through).
// It reports false when a write-through failed.
func (c *Cache) writeL2(ctx context.Context, op writeOp, sync bool) bool {
	if !sync {
		c.w.enqueue(op)
		return true
	}
	if c.w.shutDown() { // a tool that outlived Close: dropped, as by the queue
		c.stats.writesDropped.Add(1)
		return false
	}
	var landed bool
	err := c.l2Call(context.WithoutCancel(ctx), "write", func(ctx context.Context) error {
		var err error
		landed, err = c.w.send(ctx, []writeOp{op})
		return err
	})
	if err == errBreakerOpen {
		c.stats.writesSkipped.Add(1)
		c.rp.addUnlock(op.lease)
	}
	return err == nil && landed
}

// envelope wraps a payload in the L2 envelope, sealed for key, or reports
// false (counted and logged) when it is too large for L2.
func (c *Cache) envelope(key string, kind byte, payload []byte, stamp int64, gen uint64, freshUntil time.Time, cost time.Duration) ([]byte, bool) {
	if envHeader+len(payload) > c.opts.MaxValueSize {
		c.stats.oversize.Add(1)
		c.warn("oversize", "agentcache: value not written to L2", fmt.Errorf("%w: %d bytes > %d", ErrValueTooLarge, envHeader+len(payload), c.opts.MaxValueSize))
		return nil, false
	}
	return c.seal.Append(make([]byte, 0, envHeader+len(payload)), key, kind, stamp, gen, freshUntil, cost, payload), true
}

// writer is the bounded write-behind queue in front of L2. Callers never
// wait for it: a full queue drops the write and counts it. One goroutine
// drains it, sending up to WriteBatchSize operations per call.
type writer struct {
	c     *Cache
	ch    chan writeOp
	mu    sync.RWMutex // guards closed against enqueues racing close(ch)
	shut  bool
	quit  atomic.Bool // set when Close's ctx ends: drop what is left
	abort context.CancelFunc
	ctx   context.Context
	done  chan struct{}
}

func newWriter(c *Cache) *writer {
	w := &writer{c: c, done: make(chan struct{})}
	if c.l2 == nil {
		close(w.done)
		return w
	}
	w.ch = make(chan writeOp, c.opts.Tuning.WriteQueueSize)
	w.ctx, w.abort = context.WithCancel(context.Background())
	go w.run()
	return w
}

// shutDown reports whether Close has shut the queue: from then on no L2
// write is attempted, queued or written through.
func (w *writer) shutDown() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.shut
}

// enqueue hands op to the queue without waiting. It reports false, and
// counts the drop, when the queue is full or closed. A lease whose release
// is dropped goes to the repair loop.
func (w *writer) enqueue(op writeOp) bool {
	if w.ch == nil {
		return false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.shut {
		w.dropped(op)
		return false
	}
	select {
	case w.ch <- op:
		if op.record != nil {
			w.c.stats.writesQueued.Add(1)
		}
		return true
	default:
		w.dropped(op)
		w.c.warn("queue full", "agentcache: L2 write queue is full; dropping writes (they stay in L1)", nil)
		return false
	}
}

// dropped counts a write that will not be made and keeps its lease's
// release for the repair loop.
func (w *writer) dropped(op writeOp) {
	if op.record != nil {
		w.c.stats.writesDropped.Add(1)
	}
	w.c.rp.addUnlock(op.lease)
	w.c.disown(op.lease)
}

// disown forgets a lease this instance took once its release was sent (or
// handed to the repair loop).
func (c *Cache) disown(l *tier.Lease) {
	if l != nil {
		c.ownLeases.CompareAndDelete(l.Key, l.Token)
	}
}

func (w *writer) depth() int {
	if w.ch == nil {
		return 0
	}
	return len(w.ch)
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]writeOp, 0, w.c.opts.Tuning.WriteBatchSize)
	for op := range w.ch {
		batch = append(batch[:0], op)
	fill:
		for len(batch) < cap(batch) {
			select {
			case op, ok := <-w.ch:
				if !ok {
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		if w.quit.Load() {
			for _, op := range batch {
				w.dropped(op)
			}
			continue
		}
		w.flush(batch)
	}
}

// flush sends one batch. Writes refused by the breaker are skipped and
// counted; failed ones are counted and logged; leases they held go to the
// repair loop.
func (w *writer) flush(batch []writeOp) {
	c := w.c
	if !c.brk.Allow() {
		for _, op := range batch {
			if op.record != nil {
				c.stats.writesSkipped.Add(1)
			}
			c.rp.addUnlock(op.lease)
			c.disown(op.lease)
		}
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, 2*c.opts.L2Timeout)
	defer cancel()
	_, err := w.send(ctx, batch)
	c.record(w.ctx, "write", err)
}

// send makes the operations of batch: one WriteRecords call for the
// records, with their lease releases and the notices that announce them
// (in the same round trip), and the bare releases. It reports whether
// every record landed; err is a failure of the whole call (counted here).
func (w *writer) send(ctx context.Context, batch []writeOp) (bool, error) {
	c := w.c
	defer func() {
		for _, op := range batch {
			c.disown(op.lease)
		}
	}()
	writes := make([]tier.RecordWrite, 0, len(batch))
	ops := make([]*writeOp, 0, len(batch))
	var releases []*tier.Lease
	for i := range batch {
		op := &batch[i]
		if op.record == nil {
			releases = append(releases, op.lease)
			continue
		}
		if op.l1 != "" && c.fence.fenced(op.l1, op.seq) {
			c.stats.writesFenced.Add(1)
			if op.lease != nil {
				releases = append(releases, op.lease)
			}
			continue
		}
		writes = append(writes, tier.RecordWrite{Key: op.key, Record: op.record, TTL: op.ttl, Horizon: fenceHorizon, Release: op.lease, Replace: op.replace, Floor: op.floor, Notice: c.writeNotice(op)})
		ops = append(ops, op)
	}
	all := true
	var filled []string
	if len(writes) > 0 {
		res, err := c.fencer.WriteRecords(ctx, writes)
		if err == nil && len(res) != len(writes) {
			err = fmt.Errorf("agentcache: L2 answered %d of %d writes", len(res), len(writes))
		}
		if err != nil {
			c.stats.writesFailed.Add(uint64(len(writes)))
			for _, op := range ops {
				c.rp.addUnlock(op.lease)
			}
			return false, err
		}
		for i, r := range res {
			op := ops[i]
			switch r.Outcome {
			case tier.Written:
				c.stats.writesDone.Add(1)
			case tier.Fenced, tier.TooOld:
				c.stats.writesFenced.Add(1)
			default:
				all = false
				c.stats.writesFailed.Add(1)
				c.stats.l2Errors.Add(1) // one node of a cluster refused its part
				c.warn("write", "agentcache: an L2 write failed", r.Err)
				c.rp.addUnlock(op.lease)
				continue
			}
			if op.fill {
				filled = append(filled, op.key)
			}
		}
	}
	if len(releases) > 0 {
		for _, l := range releases {
			if c.locker == nil {
				break
			}
			if _, err := c.locker.Unlock(ctx, l.Key, l.Token); err != nil {
				c.rp.addUnlock(l)
			}
		}
	}
	// Loads of this instance waiting for a lease released here (a load
	// that began after an exact invalidation waits for the one before it)
	// read again at once; the others hear of fills through the message.
	for _, l := range releases {
		c.fills.notify(keyspace.LeaseEntry(l.Key))
	}
	for _, k := range filled {
		c.fills.notify(k)
	}
	return all, nil
}

// writeNotice is what the store publishes with op's write: the fill, to
// the instances waiting for its lease, and a Set's key with its stamp, for
// every instance to drop from L1.
func (c *Cache) writeNotice(op *writeOp) *tier.Notice {
	var m message
	if op.fill {
		m.Fills = []string{op.key}
	}
	if op.announce != "" {
		r, _ := tier.ParseRecord(op.record)
		m.Keys, m.Stamps = []string{op.announce}, []int64{r.Stamp}
	}
	if m.Fills == nil && m.Keys == nil {
		return nil
	}
	return c.messageNotice(m)
}

// close stops accepting writes and drains the queue until ctx ends; what is
// still queued then is dropped and counted.
func (w *writer) close(ctx context.Context) error {
	if w.ch == nil {
		return nil
	}
	w.mu.Lock()
	if !w.shut {
		w.shut = true
		close(w.ch)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		w.abort()
		return nil
	case <-ctx.Done():
		w.quit.Store(true)
		w.abort()
		<-w.done
		return fmt.Errorf("agentcache: L2 write queue not drained at Close: %w", ctx.Err())
	}
}
