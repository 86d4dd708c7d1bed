package agentcache

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcache/agentcache-go/tier/memory"
)

// Fences keep a load that began before an exact invalidation (TargetCall,
// Delete) from storing its result after it.
//
// In L2 the store does it: every entry is a record stamped with the store's
// clock when its load began (the clock reading of the miss read), an exact
// invalidation writes a tombstone stamped with the store's clock, and a
// write lands only if the key holds nothing stamped at or after it (see
// package tier). That holds on every instance, whatever order the write and
// the tombstone reach the store in, and costs nothing on the hit path.
//
// In L1 this instance does it: every exact invalidation made or heard here
// records the L1 key with a sequence number, and a load that started before
// that number stores nothing (neither in L1 nor in L2). Scoped
// invalidations need neither: they bump epochs, and a load stamped with the
// old epochs is not stored (epoch.Stamp.Current).

// fenceHorizon is how long a tombstone lives in L2, and so the longest a
// load may run (or a write wait in the queue) and still be stored: a write
// older than that could postdate an expired tombstone, so L2 and this
// instance refuse it (counted in Stats.WritesDropped).
const fenceHorizon = 10 * time.Minute

// fences is this instance's record of recent exact invalidations.
//
// A fence and an L1 fill of the same key never interleave: a fence records
// its mark and then drops the key from L1, and a fill checks the marks in
// the same step as it writes the key (memory.Store.Compute), so the fill
// either lands before the drop or sees the mark and stores nothing.
// Checking and then filling in two steps would let a load that began
// before an invalidation put its value in L1 just after the invalidation
// dropped the key.
type fences struct {
	seq atomic.Uint64 // bumped by every exact invalidation made or heard here

	mu   sync.Mutex           // guards keys
	keys map[string]fenceMark // L1 key → the last exact invalidation of it
}

type fenceMark struct {
	seq uint64
	at  time.Time
	// stamp is the store-clock time (µs) of the invalidation: the stamp of
	// its tombstone, of the Set's record, or this instance's estimate of the
	// store's clock when it learned of it. An L2 record stamped before it
	// was loaded before the invalidation and is not served here (see
	// predates).
	stamp int64
}

// mark returns key's mark: its last exact invalidation made or heard here
// (the zero mark: none recorded). Without any, it takes no lock.
func (f *fences) mark(key string) fenceMark {
	if f.seq.Load() == 0 {
		return fenceMark{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[key]
}

// flightKey is the key of a load of the L2 entry l2 (L1 key l1) in
// generation gen on this instance: a lookup that begins after an
// invalidation of l1 — exact, or of epochs, which changes gen — never joins
// a load that began before it (whose result it must not be served).
func (f *fences) flightKey(l2 string, gen uint64, l1 string) string {
	k := l2 + "\x00" + strconv.FormatUint(gen, 36)
	if g := f.mark(l1).seq; g != 0 {
		k += "\x00" + strconv.FormatUint(g, 36)
	}
	return k
}

// start returns the sequence number a load or write that begins now
// carries.
func (f *fences) start() uint64 { return f.seq.Load() }

// fenced reports whether key was exact-invalidated after a load that began
// at seq, or whether that load has run past the horizon.
func (f *fences) fenced(key string, seq uint64) bool {
	if f.seq.Load() == seq {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.keys[key]
	return ok && m.seq > seq
}

// predates reports whether an L2 record of key stamped stamp was loaded
// before an exact invalidation of key made or heard here. Such a record can
// be found although the invalidation's tombstone landed: the tombstone is
// written under the entry's key for the epochs known then, and a record
// written under epochs this instance adopts later escapes it.
func (f *fences) predates(key string, stamp int64) bool {
	return stamp < f.mark(key).stamp
}

// raise moves key's mark up to stamp (a tombstone's stamp, known once L2
// has answered).
func (f *fences) raise(key string, stamp int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.keys[key]; ok && stamp > m.stamp {
		m.stamp = stamp
		f.keys[key] = m
	}
}

// add records an exact invalidation of key at store time stamp. Marks
// older than the horizon are dropped as new ones come: a load that old is
// refused anyway.
func (f *fences) add(key string, now time.Time, stamp int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]fenceMark{}
	}
	if len(f.keys) >= 1024 && len(f.keys)&(len(f.keys)-1) == 0 { // at powers of two: amortised
		for k, m := range f.keys {
			if now.Sub(m.at) > fenceHorizon {
				delete(f.keys, k)
			}
		}
	}
	stamp = max(stamp, f.keys[key].stamp)
	f.keys[key] = fenceMark{seq: f.seq.Add(1), at: now, stamp: stamp}
}

// fenceL1 drops key from L1 and fences the loads of it that are running
// and the L2 records stamped before stamp (0: this instance's estimate of
// the store's clock now).
func (c *Cache) fenceL1(key string, stamp int64) {
	now := c.opts.Now()
	if stamp <= 0 {
		stamp = c.clock.now(now)
	}
	c.fence.add(key, now, stamp)
	c.l1.Delete(key)
}

// fillL1 stores e at key in L1 for ttl unless key was exact-invalidated
// after seq, atomically with respect to fenceL1. It reports whether it
// stored e.
func (c *Cache) fillL1(key string, e *entry, ttl time.Duration, seq uint64) bool {
	if !c.l1.Compute(key, func(old *entry, _ bool) (*entry, memory.Op) {
		if c.fence.fenced(key, seq) {
			return old, memory.Keep
		}
		return e, memory.Write
	}) {
		return false
	}
	c.ep.KeepSeal(&e.seal, ttl) // its hits find the epochs confirmed in the background
	return true
}

// storeClock estimates the L2 store's clock, the unit of record stamps, from
// the readings that L2's replies carry. The estimate never runs ahead of the
// store: each reading is taken as of the moment its reply arrived, and the
// greatest offset seen wins. A write that carries no load's reading (Set)
// is stamped with it.
type storeClock struct {
	offset atomic.Int64 // store µs minus local µs; valid once seen
	seen   atomic.Bool
}

// observe takes a reading of the store's clock (µs) that arrived at local.
func (s *storeClock) observe(reading int64, local time.Time) {
	off := reading - local.UnixMicro()
	for {
		cur := s.offset.Load()
		if s.seen.Load() && cur >= off {
			return
		}
		if s.offset.CompareAndSwap(cur, off) {
			s.seen.Store(true)
			return
		}
	}
}

// now returns the estimate of the store's clock at local.
func (s *storeClock) now(local time.Time) int64 {
	return local.UnixMicro() + s.offset.Load()
}
