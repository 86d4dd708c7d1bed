package fake

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/tier"
)

// Every capability the cache looks for.
var (
	_ tier.Remote       = (*Remote)(nil)
	_ tier.BatchGetter  = (*Remote)(nil)
	_ tier.BatchWriter  = (*Remote)(nil)
	_ tier.Adder        = (*Remote)(nil)
	_ tier.Epochs       = (*Remote)(nil)
	_ tier.Fencer       = (*Remote)(nil)
	_ tier.Broadcaster  = (*Remote)(nil)
	_ tier.Locker       = (*Remote)(nil)
	_ tier.Subscription = (*remoteSub)(nil)
)

// BackendOptions configures a [Backend]. The zero value is ready to use.
type BackendOptions struct {
	// Clock returns the current time. Every TTL and lease is measured with
	// it, so a test can expire entries by moving a fake clock instead of
	// sleeping. Default: time.Now.
	Clock func() time.Time

	// SweepInterval is how often a background sweeper removes expired
	// entries. Expired entries are never returned whatever this is; the
	// sweeper only bounds the memory they hold until touched. Default: 1s.
	// Negative: no sweeper.
	SweepInterval time.Duration

	// SweepLimit is the most entries one sweep examines, so a sweep never
	// holds the lock for long. Default: 1000.
	SweepLimit int

	// SubscriptionBuffer is how many messages each subscription buffers for
	// a slow receiver. When a message arrives and the buffer is full, the
	// backlog is dropped and a Reset is delivered instead, exactly as if the
	// subscriber had reconnected: it knows it lost messages. Default: 256.
	SubscriptionBuffer int
}

// Backend is an in-process stand-in for a Redis server shared by several
// cache instances: the stores opened from it with [Backend.Remote] see the
// same keys and the same pub/sub channels, so one process can simulate a
// fleet (in examples and tests) without a network.
//
// Each store namespaces its keys and channels with its prefix, as the Redis
// store does: Clear removes only the keys that start with the store's prefix,
// and a message reaches only the subscribers of the same prefix and channel.
// Like Redis, prefixes nest: a store with prefix "a:" also clears the keys of
// a store with prefix "a:b:".
//
// Every store implements every optional capability of the tier package and
// passes [github.com/agentcache/agentcache-go/tier/tiertest]. Epochs are
// stored as decimal text and leases as their token, in the same key space as
// values, as in Redis. Each call is atomic: the notices ([tier.Notice]) of
// epoch bumps, invalidations and record writes are delivered to the
// subscribers of the store's channel under the same lock as the writes they
// announce, as a Redis script publishes them.
//
// TTLs are honoured lazily (an expired entry is never returned) and by a
// bounded background sweeper, which stops when the backend is closed.
// [Backend.SetError] and [Backend.ResetSubscriptions] simulate an outage and
// a pub/sub reconnect.
//
// A Backend is safe for concurrent use. All its stores share one lock; it is
// meant for tests and examples, not for throughput.
type Backend struct {
	now        func() time.Time
	subBuf     int
	sweepLimit int

	mu     sync.Mutex
	data   map[string]remoteEntry             // full key → entry; guarded by mu
	subs   map[string]map[*remoteSub]struct{} // full channel → subscriptions; guarded by mu
	fail   error                              // injected failure; guarded by mu
	closed bool                               // guarded by mu
	micros int64                              // the last reading of the clock in µs (see Remote.micros); guarded by mu

	stop      chan struct{} // closed by Close to stop the sweeper
	sweeping  sync.WaitGroup
	closeOnce sync.Once
}

// remoteEntry is one stored value.
type remoteEntry struct {
	value   []byte
	expires time.Time // zero: never
}

func (e remoteEntry) live(now time.Time) bool {
	return e.expires.IsZero() || now.Before(e.expires)
}

// NewBackend returns an empty backend. Close it to stop its sweeper.
func NewBackend(opts BackendOptions) *Backend {
	b := &Backend{
		now:        opts.Clock,
		subBuf:     opts.SubscriptionBuffer,
		sweepLimit: opts.SweepLimit,
		data:       make(map[string]remoteEntry),
		subs:       make(map[string]map[*remoteSub]struct{}),
		stop:       make(chan struct{}),
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.subBuf <= 0 {
		b.subBuf = 256
	}
	if b.sweepLimit <= 0 {
		b.sweepLimit = 1000
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = time.Second
	}
	if interval > 0 {
		b.sweeping.Add(1)
		go b.sweep(interval)
	}
	return b
}

// sweep removes expired entries every interval until the backend is closed.
func (b *Backend) sweep(interval time.Duration) {
	defer b.sweeping.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		b.mu.Lock()
		now, n := b.now(), 0
		// Map iteration starts at a random place, so successive bounded
		// sweeps cover the whole map over time.
		for k, e := range b.data {
			if n++; n > b.sweepLimit {
				break
			}
			if !e.live(now) {
				delete(b.data, k)
			}
		}
		b.mu.Unlock()
	}
}

// Remote opens a store whose keys and channels are prefixed with prefix. Any
// prefix is accepted, including the empty one (whose Clear removes every key
// of the backend). Several stores may share a prefix: they behave like
// several instances of one application.
func (b *Backend) Remote(prefix string) *Remote {
	return &Remote{b: b, prefix: prefix, subs: make(map[*remoteSub]struct{})}
}

// Close stops the sweeper and closes every store and subscription of the
// backend: their operations return errors wrapping [tier.ErrClosed]. Calling
// Close again does nothing.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		b.sweeping.Wait()
		b.mu.Lock()
		defer b.mu.Unlock()
		b.closed = true
		for _, subs := range b.subs {
			for s := range subs {
				s.closeLocked()
			}
		}
		b.data = make(map[string]remoteEntry)
	})
	return nil
}

// SetError makes every operation of every store of this backend fail with an
// error wrapping err, as if Redis were unreachable, until SetError(nil).
// Subscriptions stay open but publishing fails; when the error is cleared,
// every subscriber receives a Reset, as after a pub/sub reconnect.
func (b *Backend) SetError(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasFailing := b.fail != nil
	b.fail = err
	if wasFailing && err == nil {
		b.resetLocked()
	}
}

// ResetSubscriptions delivers a Reset to every subscriber, as the Redis store
// does when its pub/sub connection is re-established.
func (b *Backend) ResetSubscriptions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resetLocked()
}

func (b *Backend) resetLocked() {
	for _, subs := range b.subs {
		for s := range subs {
			s.deliverLocked(tier.Message{Reset: true})
		}
	}
}

// Len returns the number of live entries of every store of the backend.
func (b *Backend) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	now, n := b.now(), 0
	for _, e := range b.data {
		if e.live(now) {
			n++
		}
	}
	return n
}

// Remote is one namespaced store of a [Backend], the in-memory counterpart of
// the Redis store. It implements [tier.Remote] and every optional capability.
// Values are copied on the way in and out, so neither side's slices are
// shared. Create it with [Backend.Remote].
type Remote struct {
	b      *Backend
	prefix string

	closed  bool                    // guarded by b.mu
	subs    map[*remoteSub]struct{} // open subscriptions; guarded by b.mu
	repairs atomic.Uint64           // epoch keys replaced (see Repairs)
}

// lock takes the backend lock and checks that op may run. On error the lock
// is not held.
func (r *Remote) lock(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake: %s: %w", op, err)
	}
	r.b.mu.Lock()
	var err error
	switch {
	case r.closed || r.b.closed:
		err = tier.ErrClosed
	case r.b.fail != nil:
		err = r.b.fail
	default:
		return nil
	}
	r.b.mu.Unlock()
	return fmt.Errorf("fake: %s: %w", op, err)
}

func (r *Remote) unlock() { r.b.mu.Unlock() }

var errNegativeTTL = errors.New("fake: negative ttl")

// expiry turns a ttl into an expiry time (zero for none).
func (r *Remote) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return r.b.now().Add(ttl)
}

// getLocked returns the live entry at the full key k, dropping it if it
// expired.
func (r *Remote) getLocked(k string) (remoteEntry, bool) {
	e, ok := r.b.data[k]
	if !ok {
		return e, false
	}
	if !e.live(r.b.now()) {
		delete(r.b.data, k)
		return e, false
	}
	return e, true
}

func (r *Remote) setLocked(k string, value []byte, ttl time.Duration) {
	r.b.data[k] = remoteEntry{value: append([]byte{}, value...), expires: r.expiry(ttl)}
}

// Get implements [tier.Remote].
func (r *Remote) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := r.lock(ctx, "get"); err != nil {
		return nil, false, err
	}
	defer r.unlock()
	e, ok := r.getLocked(r.prefix + key)
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, e.value...), true, nil
}

// Set implements [tier.Remote].
func (r *Remote) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < 0 {
		return errNegativeTTL
	}
	if err := r.lock(ctx, "set"); err != nil {
		return err
	}
	defer r.unlock()
	r.setLocked(r.prefix+key, value, ttl)
	return nil
}

// Delete implements [tier.Remote].
func (r *Remote) Delete(ctx context.Context, keys ...string) error {
	if err := r.lock(ctx, "delete"); err != nil {
		return err
	}
	defer r.unlock()
	for _, k := range keys {
		delete(r.b.data, r.prefix+k)
	}
	return nil
}

// Clear implements [tier.Remote]: it removes every key that starts with the
// store's prefix.
func (r *Remote) Clear(ctx context.Context) error {
	if err := r.lock(ctx, "clear"); err != nil {
		return err
	}
	defer r.unlock()
	for k := range r.b.data {
		if strings.HasPrefix(k, r.prefix) {
			delete(r.b.data, k)
		}
	}
	return nil
}

// Close implements [tier.Remote]. It closes the store's subscriptions but not
// the backend, which other stores may still use. Calling Close again does
// nothing.
func (r *Remote) Close() error {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	r.closed = true
	for s := range r.subs {
		s.closeLocked()
	}
	return nil
}

// GetMulti implements [tier.BatchGetter].
func (r *Remote) GetMulti(ctx context.Context, keys []string) ([]tier.Lookup, error) {
	if err := r.lock(ctx, "get multi"); err != nil {
		return nil, err
	}
	defer r.unlock()
	out := make([]tier.Lookup, len(keys))
	for i, k := range keys {
		if e, ok := r.getLocked(r.prefix + k); ok {
			out[i] = tier.Lookup{Value: append([]byte{}, e.value...), Found: true}
		}
	}
	return out, nil
}

// SetMulti implements [tier.BatchWriter]. The writes are applied in order,
// atomically with respect to other operations on the backend.
func (r *Remote) SetMulti(ctx context.Context, writes []tier.Write) ([]error, error) {
	if err := r.lock(ctx, "set multi"); err != nil {
		return nil, err
	}
	defer r.unlock()
	errs := make([]error, len(writes))
	for i, w := range writes {
		if w.TTL < 0 {
			errs[i] = errNegativeTTL
			continue
		}
		k := r.prefix + w.Key
		if w.IfAbsent {
			if _, ok := r.getLocked(k); ok {
				continue
			}
		}
		r.setLocked(k, w.Value, w.TTL)
	}
	return errs, nil
}

// SetIfAbsent implements [tier.Adder].
func (r *Remote) SetIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if ttl < 0 {
		return false, errNegativeTTL
	}
	return r.addIfAbsent(ctx, "set if absent", key, value, ttl)
}

// addIfAbsent stores value at key unless a live value is there, and reports
// whether it did.
func (r *Remote) addIfAbsent(ctx context.Context, op, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := r.lock(ctx, op); err != nil {
		return false, err
	}
	defer r.unlock()
	k := r.prefix + key
	if _, ok := r.getLocked(k); ok {
		return false, nil
	}
	r.setLocked(k, value, ttl)
	return true, nil
}

// epochLocked reads the epoch at the full key k; anything but a decimal
// number reads as 0 (missing).
func (r *Remote) epochLocked(k string) uint64 {
	e, ok := r.getLocked(k)
	if !ok {
		return 0
	}
	v, err := strconv.ParseUint(string(e.value), 10, 64)
	if err != nil || v == 0 {
		r.repairs.Add(1) // replaced by the caller, as if missing
		return 0
	}
	return v
}

// Repairs implements [tier.Repairer]: how many epoch keys this store found
// holding something that is not an epoch and replaced.
func (r *Remote) Repairs() uint64 { return r.repairs.Load() }

// micros is the backend's clock in the unit of epochs and record stamps.
// No two readings are equal and none goes back, as with a real server
// whose clock moves on between requests: a fake clock that stands still
// (or a fast machine) must not give an epoch created after a delete the
// value the key held before, nor stamp a load that begins after a
// tombstone with the tombstone's own stamp. Called with b.mu held.
func (r *Remote) micros() uint64 {
	r.b.micros = max(r.b.now().UnixMicro(), r.b.micros+1)
	return uint64(r.b.micros)
}

// checkEpochOps fails a call with an epoch op whose TTL is negative, before
// anything is written.
func checkEpochOps(ops []tier.EpochOp) error {
	for _, op := range ops {
		if op.TTL < 0 {
			return errNegativeTTL
		}
	}
	return nil
}

// loadEpochsLocked is LoadEpochs under the lock: each op's epoch, created
// from the clock (at least its Known + 1) when missing, raised to its Known
// when it holds less.
func (r *Remote) loadEpochsLocked(ops []tier.EpochOp) []uint64 {
	out := make([]uint64, len(ops))
	for i, op := range ops {
		k := r.prefix + op.Key
		v := r.epochLocked(k)
		switch {
		case v == 0:
			v = max(r.micros(), op.Known+1)
		case v < op.Known:
			v = op.Known
		default:
			out[i] = v
			continue
		}
		r.setLocked(k, strconv.AppendUint(nil, v, 10), op.TTL)
		out[i] = v
	}
	return out
}

// bumpEpochsLocked is BumpEpochs under the lock: each op's epoch set past
// what it held, its Known and the clock, and its notice published.
func (r *Remote) bumpEpochsLocked(ops []tier.EpochOp) []uint64 {
	out := make([]uint64, len(ops))
	for i, op := range ops {
		k := r.prefix + op.Key
		v := max(r.epochLocked(k)+1, op.Known+1, r.micros())
		r.setLocked(k, strconv.AppendUint(nil, v, 10), op.TTL)
		out[i] = v
		r.noticeLocked(op.Notice, int64(v))
	}
	return out
}

// LoadEpochs implements [tier.Epochs]. Every op is applied under one lock.
func (r *Remote) LoadEpochs(ctx context.Context, ops []tier.EpochOp) ([]uint64, error) {
	if err := checkEpochOps(ops); err != nil {
		return nil, err
	}
	if err := r.lock(ctx, "load epochs"); err != nil {
		return nil, err
	}
	defer r.unlock()
	return r.loadEpochsLocked(ops), nil
}

// BumpEpochs implements [tier.Epochs]. Every op is applied, and its notice
// published, under one lock.
func (r *Remote) BumpEpochs(ctx context.Context, ops []tier.EpochOp) ([]uint64, error) {
	if err := checkEpochOps(ops); err != nil {
		return nil, err
	}
	if err := r.lock(ctx, "bump epochs"); err != nil {
		return nil, err
	}
	defer r.unlock()
	return r.bumpEpochsLocked(ops), nil
}

// ReadRecords implements [tier.Fencer]: the epochs and the reads under one
// lock.
func (r *Remote) ReadRecords(ctx context.Context, epochs []tier.EpochOp, ops []tier.ReadOp) ([]uint64, []tier.ReadResult, error) {
	// Check every op first: a call that fails writes nothing and takes no
	// lease.
	if err := checkEpochOps(epochs); err != nil {
		return nil, nil, err
	}
	for _, op := range ops {
		if op.Lease != nil && op.Lease.TTL <= 0 {
			return nil, nil, errLeaseTTL
		}
	}
	if err := r.lock(ctx, "read records"); err != nil {
		return nil, nil, err
	}
	defer r.unlock()
	vals := r.loadEpochsLocked(epochs)
	out := make([]tier.ReadResult, len(ops))
	for i, op := range ops {
		res := tier.ReadResult{Now: int64(r.micros())}
		e, ok := r.getLocked(r.prefix + op.Key)
		live := false
		if ok {
			res.Value, res.Found = append([]byte{}, e.value...), true
			live = tier.Live(e.value, op.Gen)
		}
		if op.Lease != nil && !live {
			lk := r.prefix + op.Lease.Key
			if l, ok := r.getLocked(lk); ok && l.expires.IsZero() {
				delete(r.b.data, lk) // a lease that never expires would block the key forever
				res.Repaired = true
			}
			if l, held := r.getLocked(lk); !held || tier.LeaseTakesOver(l.value, op.Lease.Gen) {
				r.setLocked(lk, []byte(tier.LeaseValue(op.Lease.Token, op.Lease.Gen)), op.Lease.TTL)
				res.Leased = true
			}
		}
		out[i] = res
	}
	return vals, out, nil
}

// WriteRecords implements [tier.Fencer]. Each write, its release and its
// notice are applied in order under one lock.
func (r *Remote) WriteRecords(ctx context.Context, writes []tier.RecordWrite) ([]tier.WriteResult, error) {
	if err := r.lock(ctx, "write records"); err != nil {
		return nil, err
	}
	defer r.unlock()
	out := make([]tier.WriteResult, len(writes))
	for i, w := range writes {
		out[i] = r.writeRecordLocked(w)
		if w.Release != nil {
			lk := r.prefix + w.Release.Key
			if l, ok := r.getLocked(lk); ok && tier.LeaseHeld(l.value, w.Release.Token) {
				delete(r.b.data, lk)
			}
		}
		if out[i].Outcome != tier.Failed {
			r.noticeLocked(w.Notice, -1)
		}
	}
	return out, nil
}

func (r *Remote) writeRecordLocked(w tier.RecordWrite) tier.WriteResult {
	if w.TTL < 0 {
		return tier.WriteResult{Outcome: tier.Failed, Err: errNegativeTTL}
	}
	rec, ok := tier.ParseRecord(w.Record)
	if !ok {
		return tier.WriteResult{Outcome: tier.Failed, Err: errors.New("fake: write records: bytes that are not a record")}
	}
	kind, stamp := rec.Kind, rec.Stamp
	if w.Horizon > 0 && int64(r.micros())-stamp > w.Horizon.Microseconds() {
		return tier.WriteResult{Outcome: tier.TooOld}
	}
	k := r.prefix + w.Key
	var cur []byte
	if e, ok := r.getLocked(k); ok {
		cur = e.value
	}
	if tier.AheadOfClock(cur, int64(r.micros()), w.Horizon) {
		cur = nil
	}
	sk, stored, lands := tier.Landed(cur, kind, stamp, rec.Gen)
	if !w.Replace {
		sk, stored = tier.WithFloor(sk, stored, stamp, w.Floor)
	} else {
		sk, stored, lands = tier.LandedReplace(cur, stamp, int64(r.micros()))
	}
	if !lands {
		return tier.WriteResult{Outcome: tier.Fenced}
	}
	r.setLocked(k, tier.Rewrite(w.Record, sk, stored), w.TTL)
	return tier.WriteResult{Outcome: tier.Written}
}

// Invalidate implements [tier.Fencer]: the tombstones, then the bumps, each
// followed by its notice, under one lock.
func (r *Remote) Invalidate(ctx context.Context, tombs []tier.TombstoneOp, bumps []tier.EpochOp) ([]int64, []uint64, error) {
	for _, t := range tombs {
		if t.TTL <= 0 { // a tombstone without an expiry would fence its key forever
			return nil, nil, errors.New("fake: invalidate: tombstone ttl must be positive")
		}
	}
	if err := checkEpochOps(bumps); err != nil {
		return nil, nil, err
	}
	if err := r.lock(ctx, "invalidate"); err != nil {
		return nil, nil, err
	}
	defer r.unlock()
	stamps := make([]int64, len(tombs))
	for i, t := range tombs {
		k := r.prefix + t.Key
		s := int64(r.micros())
		if e, ok := r.getLocked(k); ok {
			if c, isRec := tier.ParseRecord(e.value); isRec && c.Stamp >= s {
				s = c.Stamp + 1
			}
		}
		r.setLocked(k, tier.AppendRecord(nil, tier.KindTombstone, s, 0, nil), t.TTL)
		stamps[i] = s
		r.noticeLocked(t.Notice, s)
	}
	return stamps, r.bumpEpochsLocked(bumps), nil
}

// noticeLocked publishes n, if set, with the number v (v < 0: none), as
// Publish would.
func (r *Remote) noticeLocked(n *tier.Notice, v int64) {
	if n != nil {
		r.publishLocked(n.Channel, n.Payload(v))
	}
}

// publishLocked hands every subscriber of the store's channel its own copy
// of msg.
func (r *Remote) publishLocked(channel string, msg []byte) {
	for s := range r.b.subs[r.prefix+channel] {
		s.deliverLocked(tier.Message{Payload: append([]byte{}, msg...)})
	}
}

// Publish implements [tier.Broadcaster]. Every subscriber of the same
// backend, prefix and channel gets its own copy of msg, in publish order.
func (r *Remote) Publish(ctx context.Context, channel string, msg []byte) error {
	if err := r.lock(ctx, "publish"); err != nil {
		return err
	}
	defer r.unlock()
	r.publishLocked(channel, msg)
	return nil
}

// Subscribe implements [tier.Broadcaster]. The subscription is active when it
// returns, and its first delivery (already buffered) is a Reset. See
// [BackendOptions.SubscriptionBuffer] for what a slow receiver gets.
func (r *Remote) Subscribe(ctx context.Context, channel string) (tier.Subscription, error) {
	if err := r.lock(ctx, "subscribe"); err != nil {
		return nil, err
	}
	defer r.unlock()
	s := &remoteSub{r: r, channel: r.prefix + channel, c: make(chan tier.Message, r.b.subBuf)}
	subs := r.b.subs[s.channel]
	if subs == nil {
		subs = make(map[*remoteSub]struct{})
		r.b.subs[s.channel] = subs
	}
	subs[s] = struct{}{}
	r.subs[s] = struct{}{}
	s.c <- tier.Message{Reset: true}
	return s, nil
}

// remoteSub is a subscription of a Remote.
type remoteSub struct {
	r       *Remote
	channel string            // full channel name
	c       chan tier.Message // sent to and closed only with r.b.mu held
	closed  bool              // guarded by r.b.mu
}

func (s *remoteSub) C() <-chan tier.Message { return s.c }

func (s *remoteSub) Close() error {
	s.r.b.mu.Lock()
	defer s.r.b.mu.Unlock()
	s.closeLocked()
	return nil
}

func (s *remoteSub) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	b := s.r.b
	if subs := b.subs[s.channel]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(b.subs, s.channel)
		}
	}
	delete(s.r.subs, s)
	close(s.c)
}

// deliverLocked hands m to the receiver without ever blocking the publisher.
// If the buffer is full, the receiver has fallen behind: its backlog (and m)
// is dropped and replaced by a single Reset, so it knows it missed messages.
func (s *remoteSub) deliverLocked(m tier.Message) {
	select {
	case s.c <- m:
		return
	default:
	}
	for drained := false; !drained; {
		select {
		case <-s.c:
		default:
			drained = true
		}
	}
	// Only senders holding the lock add to s.c, so there is room now.
	s.c <- tier.Message{Reset: true}
}

// TryLock implements [tier.Locker]. ttl must be positive: a lease that never
// expires would outlive a crashed holder. A lease key without an expiry
// (planted with Set) is taken over, as ReadRecords does: it would block the
// key forever.
func (r *Remote) TryLock(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errLeaseTTL
	}
	if err := r.lock(ctx, "try lock"); err != nil {
		return false, err
	}
	defer r.unlock()
	k := r.prefix + key
	if e, ok := r.getLocked(k); ok && !e.expires.IsZero() {
		return false, nil
	}
	r.setLocked(k, []byte(token), ttl)
	return true, nil
}

var errLeaseTTL = errors.New("fake: lease ttl must be positive")

// Extend implements [tier.Locker].
func (r *Remote) Extend(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errLeaseTTL
	}
	return r.held(ctx, "extend", key, token, func(k string, e remoteEntry) {
		e.expires = r.expiry(ttl)
		r.b.data[k] = e
	})
}

// TagLease implements [tier.LeaseTagger].
func (r *Remote) TagLease(ctx context.Context, key, token string, gen uint64, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errLeaseTTL
	}
	if gen == 0 {
		return false, errLeaseGen
	}
	return r.held(ctx, "tag lease", key, token, func(k string, _ remoteEntry) {
		r.setLocked(k, []byte(tier.LeaseValue(token, gen)), ttl)
	})
}

var errLeaseGen = errors.New("fake: a lease's generation must be known (> 0)")

// Unlock implements [tier.Locker].
func (r *Remote) Unlock(ctx context.Context, key, token string) (bool, error) {
	return r.held(ctx, "unlock", key, token, func(k string, _ remoteEntry) { delete(r.b.data, k) })
}

// held runs fn on the lease at key, under the lock, if token holds it, and
// reports whether it did.
func (r *Remote) held(ctx context.Context, op, key, token string, fn func(k string, e remoteEntry)) (bool, error) {
	if err := r.lock(ctx, op); err != nil {
		return false, err
	}
	defer r.unlock()
	k := r.prefix + key
	e, ok := r.getLocked(k)
	if !ok || !tier.LeaseHeld(e.value, token) {
		return false, nil
	}
	fn(k, e)
	return true, nil
}
