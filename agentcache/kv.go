package agentcache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/agentcache/agentcache-go/internal/epoch"
)

// MaxKeyLen bounds a key of the key-value API, in bytes.
const MaxKeyLen = 4096

// Get returns the value cached at key, from L1, else from L2, else from
// load — which runs once for all concurrent callers of the key on this
// instance, on its own goroutine, so that a caller whose ctx ends leaves with
// ctx.Err() while the load goes on for the others. The loaded value is
// written to L1 at once and to L2 in the background, for Options.DefaultTTL.
// A load that returns ErrNotFound (or an error wrapping it) says the thing
// does not exist, which is remembered (see NegativeOptions); any other error
// is returned to the callers and never cached.
//
// Get is a function, not a method like Set, Delete and Clear, because it is
// generic in the value's type.
//
// The value returned is shared with every other caller of the key: it must
// not be mutated. Redis errors never reach the caller; they make the lookup
// go to load.
func Get[T any](ctx context.Context, c *Cache, key string, load func(ctx context.Context, key string) (T, error)) (T, error) {
	var zero T
	if c.closed.Load() {
		return zero, ErrClosed
	}
	// The hit path, uninstrumented: one byte of key check (keys starting
	// with NUL are reserved for resources, so a key-value key can never name
	// one), the L1 lookup, and nothing else.
	if !c.obs.active(ctx) {
		if len(key) > 0 && key[0] != 0 {
			if v, h := fromL1Fast[T](c, key); h != hitNone {
				return v, nil
			}
		}
		return getKV(ctx, c, key, load, nil)
	}
	return observe(ctx, c, c.kv.obs, &obsLookup{}, func(o *obsLookup) (T, bool) {
		if len(key) == 0 || key[0] == 0 {
			return *new(T), false
		}
		return freshL1[T](c, key, o)
	}, func(ctx context.Context, o *obsLookup) (T, error) {
		return getKV(ctx, c, key, load, o)
	})
}

func getKV[T any](ctx context.Context, c *Cache, key string, load func(context.Context, string) (T, error), o *obsLookup) (T, error) {
	var zero T
	// The key check on the hit path is one byte: keys starting with NUL are
	// reserved for resources, so a key-value key can never name one.
	if len(key) > 0 && key[0] != 0 {
		if v, h := fromL1Fast[T](c, key); h != hitNone {
			if o != nil {
				o.tier = tierL1
			}
			return v, nil
		}
	}
	if err := checkKey(key); err != nil {
		return zero, err
	}
	if load == nil {
		return zero, errors.New("agentcache: Get needs a non-nil load function")
	}
	if err := c.checkResult(reflect.TypeFor[T]()); err != nil {
		return zero, fmt.Errorf("agentcache: Get %q: %w", key, err)
	}
	lk := lookup{r: c.kv, tail: key, l1: key}
	return fetch(ctx, c, &lk, func(ctx context.Context) (T, error) { return load(ctx, key) }, o)
}

// Set stores value at key for ttl (0: Options.DefaultTTL): in L1 at once, in
// L2 through the write-behind queue, after which the other instances drop
// their L1 copy of key. L1 keeps the codec's bytes, decoded by the first
// Get into the type it asks for, so that it returns what an L2 hit would. It
// returns an error only for bad arguments (a value of a type the codec
// refuses, see TypeChecker, or that it cannot encode) or a closed cache.
func (c *Cache) Set(ctx context.Context, key string, value any, ttl time.Duration) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("agentcache: Set %q: negative TTL %v", key, ttl)
	}
	if ttl == 0 {
		ttl = c.opts.DefaultTTL
	}
	if err := c.checkResult(reflect.TypeOf(value)); err != nil {
		return fmt.Errorf("agentcache: Set %q: %w", key, err)
	}
	payload, err := c.codec.Marshal(value)
	if err != nil {
		return fmt.Errorf("agentcache: Set %q: the codec cannot encode the value: %w", key, err)
	}
	lk := lookup{r: c.kv, tail: key, l1: key}
	st := c.stampFor(ctx, &lk)
	now := c.opts.Now()
	exp := now.Add(ttl)
	// A load of key that began before this Set must not overwrite it: the
	// Set fences the key and then fills L1, so a load's fill that comes
	// after this one sees the fence (see fences).
	stamp := c.clock.now(now)
	c.fence.add(key, now, stamp)
	seq := c.fence.start()
	c.l1.Set(key, &entry{value: rawValue(payload), seal: st.Seal(), expiresAt: exp.UnixNano()})
	if c.l2 != nil && !st.Local() {
		if b, ok := c.envelope(lk.l2Key(), kindValue, payload, stamp, st.Token(), exp, 0); ok {
			c.w.enqueue(writeOp{key: lk.l2Key(), record: b, ttl: ttl, l1: key, seq: seq, announce: key, replace: true})
		}
	}
	return nil
}

// Delete removes key from L1 and L2 and tells the other instances to drop
// it from their L1. The local removal always happens; a *FleetError says L2
// or the fleet could not be reached.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := checkKey(key); err != nil {
		return err
	}
	c.countInvalidation(ctx, "delete")
	lk := lookup{r: c.kv, tail: key, l1: key}
	return c.fleet(ctx, "delete", c.invalidate(ctx, nil, []string{key}, []string{lk.l2Key()}))
}

// Clear empties the cache everywhere: this instance's L1, every key under
// the L2 prefix (bounded by ctx alone, not Options.L2Timeout), and — through a message and a new global epoch — every
// other instance's L1. A *FleetError says L2 or the fleet could not be
// reached; the local L1 is cleared regardless.
func (c *Cache) Clear(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	c.countInvalidation(ctx, "clear")
	c.l1.Clear()
	var err error
	if c.l2 != nil && c.brk.Allow() {
		// Clear has the caller's deadline, not the per-call L2 timeout: it
		// may have millions of keys to delete.
		err = c.l2.Clear(ctx)
		c.record(ctx, "clear", err)
	} else if c.l2 != nil {
		err = errBreakerOpen
	}
	// The new global epoch makes every instance's L1 entries unreachable
	// even if one misses the message (within MaxEpochAge).
	if berr := c.ep.Bump(ctx, []*epoch.Cell{c.ep.Global()}, nil); err == nil {
		err = berr
	}
	if err == nil {
		err = c.publish(ctx, message{From: c.id, Clear: true})
	}
	return c.fleet(ctx, "clear", err)
}

// fleet wraps an L2 error of a fleet-wide operation, counts it and hands it
// to Options.OnFleetError.
func (c *Cache) fleet(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	c.stats.fleetErrors.Add(1)
	fe := &FleetError{Op: op, Err: err}
	if c.opts.OnFleetError != nil {
		c.opts.OnFleetError(ctx, fe)
	}
	return fe
}

func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrInvalidKey, len(key), MaxKeyLen)
	case key[0] == 0:
		return fmt.Errorf("%w: keys starting with a NUL byte are reserved", ErrInvalidKey)
	}
	return nil
}
