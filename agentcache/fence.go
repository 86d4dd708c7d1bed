package agentcache

import (
	"sync"
	"sync/atomic"
	"time"
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
// old epochs is not stored (stamp.current).

// fenceHorizon is how long a tombstone lives in L2, and so the longest a
// load may run (or a write wait in the queue) and still be stored: a write
// older than that could postdate an expired tombstone, so L2 and this
// instance refuse it (counted in Stats.WritesDropped).
const fenceHorizon = 10 * time.Minute

// fences is this instance's record of recent exact invalidations.
type fences struct {
	seq atomic.Uint64 // bumped by every exact invalidation made or heard here

	mu   sync.Mutex           // guards keys
	keys map[string]fenceMark // L1 key → the last exact invalidation of it
}

type fenceMark struct {
	seq uint64
	at  time.Time
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

// add records an exact invalidation of key. Marks older than the horizon
// are dropped as new ones come: a load that old is refused anyway.
func (f *fences) add(key string, now time.Time) {
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
	f.keys[key] = fenceMark{seq: f.seq.Add(1), at: now}
}

// fenceL1 drops key from L1 and fences the loads of it that are running.
func (c *Cache) fenceL1(key string) {
	c.fence.add(key, c.opts.Now())
	c.l1.Delete(key)
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
