package agentcache

import (
	"context"
	"sync"
	"time"

	"github.com/agentcache/agentcache-go/tier"
)

// repairs are L2 operations that must happen eventually for the cache's
// promises to hold, kept until L2 takes them: the tombstones of exact
// invalidations made while L2 was unreachable (with the L1 keys to announce
// once they land), and the release of leases whose read or write did not
// get an answer (such a lease would make every instance wait it out).
// Dirty epochs (see epoch.Table.Flush) are flushed by the same loop. The
// loop runs on its own cadence, not the breaker's: what it holds reaches L2
// within repairEvery of L2 answering again, however long the breaker's
// backoff.
//
// Until its tombstone lands, an exact-invalidated key is not read from L2
// here, so the old value cannot come back.
type repairs struct {
	mu      sync.Mutex        // guards the maps
	deletes map[string]string // L2 key → L1 key to announce
	unlocks map[string]string // lease key → token (a lease's TTL is not needed to release it)
	wake    chan struct{}     // buffered: something was added
}

const repairEvery = 100 * time.Millisecond

func (r *repairs) init() { r.wake = make(chan struct{}, 1) }

func (r *repairs) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *repairs) addDelete(l2, l1 string) {
	r.mu.Lock()
	if r.deletes == nil {
		r.deletes = map[string]string{}
	}
	r.deletes[l2] = l1
	r.mu.Unlock()
	r.signal()
}

// addUnlock keeps the release of l (nil: nothing to release).
func (r *repairs) addUnlock(l *tier.Lease) {
	if l == nil {
		return
	}
	r.mu.Lock()
	if r.unlocks == nil {
		r.unlocks = map[string]string{}
	}
	r.unlocks[l.Key] = l.Token
	r.mu.Unlock()
	r.signal()
}

// tombstoned reports whether key waits for its delete.
func (r *repairs) tombstoned(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.deletes[key]
	return ok
}

// pending reports whether anything waits.
func (r *repairs) pending(c *Cache) bool {
	r.mu.Lock()
	n := len(r.deletes) + len(r.unlocks)
	r.mu.Unlock()
	if n > 0 {
		return true
	}
	return c.ep.Pending()
}

// runRepairs retries what is pending until it is done, and sleeps while
// nothing is. The first try comes repairEvery after something is added;
// after a try that L2 did not answer, the next comes repairRetry later —
// one L2 call per try, however many calls add to what is pending, so an
// outage costs L2 a probe per period, not one per call. It stops at Close.
func (c *Cache) runRepairs() {
	wait := repairEvery
	for {
		if !c.rp.pending(c) {
			select {
			case <-c.base.Done():
				return
			case <-c.rp.wake:
			}
			wait = repairEvery
		}
		t := time.NewTimer(wait)
		select {
		case <-c.base.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if c.repairNow(c.base) {
			wait = repairEvery
		} else {
			wait = c.repairRetry()
		}
	}
}

// repairRetry is the pause after a repair that L2 did not answer: a quarter
// of MaxEpochAge (so what is pending reaches the fleet within MaxEpochAge
// of L2 answering again), and at least repairEvery.
func (c *Cache) repairRetry() time.Duration {
	return max(repairEvery, c.opts.MaxEpochAge/4)
}

// repairNow tries every pending repair once, whatever the breaker says,
// and stops at the first that L2 does not answer. It reports whether L2
// answered every call.
func (c *Cache) repairNow(ctx context.Context) bool {
	if !c.ep.Flush(ctx, true) {
		return false
	}
	r := &c.rp
	r.mu.Lock()
	dels := make([]string, 0, len(r.deletes))
	var announce []string
	for k, l1 := range r.deletes {
		dels = append(dels, k)
		announce = append(announce, l1)
	}
	unlocks := make(map[string]string, len(r.unlocks))
	for k, tok := range r.unlocks {
		unlocks[k] = tok
	}
	r.mu.Unlock()
	if len(dels) > 0 {
		var stamps []int64
		tombs := c.tombstones(dels, announce)
		if c.l2Probe(ctx, "invalidate", func(ctx context.Context) error {
			var err error
			stamps, _, err = c.fencer.Invalidate(ctx, tombs, nil)
			return err
		}) != nil || len(stamps) != len(tombs) {
			return false
		}
		r.mu.Lock()
		for _, k := range dels {
			delete(r.deletes, k)
		}
		r.mu.Unlock()
		c.tombstoned(announce, stamps)
	}
	for k, tok := range unlocks {
		if c.locker == nil {
			break
		}
		if c.l2Probe(ctx, "unlock", func(ctx context.Context) error {
			_, err := c.locker.Unlock(ctx, k, tok)
			return err
		}) != nil {
			return false
		}
		r.mu.Lock()
		if r.unlocks[k] == tok {
			delete(r.unlocks, k)
		}
		r.mu.Unlock()
	}
	return true
}
