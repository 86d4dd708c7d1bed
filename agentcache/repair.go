package agentcache

import (
	"context"
	"sync"
	"time"
)

// repairs are L2 operations that must happen eventually for the cache's
// promises to hold, kept until L2 takes them: the exact deletes of
// invalidations made while L2 was unreachable (with the L1 keys to announce
// once they land), and the release of leases whose TryLock or Unlock did
// not get an answer (such a lease would make every instance wait it out).
// Dirty epochs (see epoch.go) are flushed by the same loop.
//
// Until its delete lands, an exact-invalidated key is a tombstone: lookups
// do not read it from L2, so the old value cannot come back.
type repairs struct {
	mu      sync.Mutex        // guards the maps
	deletes map[string]string // L2 key → L1 key to announce
	unlocks map[string]string // lease key → token
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

func (r *repairs) addUnlock(lkey, token string) {
	r.mu.Lock()
	if r.unlocks == nil {
		r.unlocks = map[string]string{}
	}
	r.unlocks[lkey] = token
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
	c.ep.pendMu.Lock()
	defer c.ep.pendMu.Unlock()
	return len(c.ep.pending) > 0
}

// run retries what is pending every repairEvery until it is done, and
// sleeps while nothing is. It stops at Close.
func (c *Cache) runRepairs() {
	t := time.NewTicker(repairEvery)
	defer t.Stop()
	for {
		if c.rp.pending(c) {
			select {
			case <-c.base.Done():
				return
			case <-t.C:
			case <-c.rp.wake:
			}
			c.repairNow(c.base)
			continue
		}
		select {
		case <-c.base.Done():
			return
		case <-c.rp.wake:
		}
	}
}

// repairNow tries every pending repair once.
func (c *Cache) repairNow(ctx context.Context) {
	c.ep.flush(ctx)
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
	if len(dels) > 0 && c.l2Call(ctx, "delete", func(ctx context.Context) error { return c.l2.Delete(ctx, dels...) }) == nil {
		r.mu.Lock()
		for _, k := range dels {
			delete(r.deletes, k)
		}
		r.mu.Unlock()
		_ = c.ep.publish(ctx, message{From: c.id, Keys: announce})
	}
	for k, tok := range unlocks {
		if c.locker == nil {
			break
		}
		if c.l2Call(ctx, "unlock", func(ctx context.Context) error {
			_, err := c.locker.Unlock(ctx, k, tok)
			return err
		}) == nil {
			r.mu.Lock()
			if r.unlocks[k] == tok {
				delete(r.unlocks, k)
			}
			r.mu.Unlock()
		}
	}
}
