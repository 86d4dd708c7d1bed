package agentcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"time"

	"github.com/agentcache/agentcache-go/internal/epoch"
	"github.com/agentcache/agentcache-go/internal/keyspace"
	"github.com/agentcache/agentcache-go/tier"
	"github.com/agentcache/agentcache-go/tier/disk"
	"github.com/agentcache/agentcache-go/tier/memory"
)

// Snapshot records carry one of these flags.
const (
	snapEntry = 0 // Key: L1 key; Value: epoch count, epochs, codec payload
	snapEpoch = 1 // Key: epoch key; Value: 8-byte epoch
)

type restored struct {
	entries []disk.Record
	epochs  map[string]uint64
}

// loadSnapshot reads the snapshot file, if configured. A corrupt file has
// been moved aside by the disk package; the cache starts cold.
func (c *Cache) loadSnapshot() (restored, error) {
	var r restored
	if c.opts.Snapshot.Path == "" {
		return r, nil
	}
	recs, err := disk.Load(c.opts.Snapshot.Path, c.opts.Now())
	if err != nil {
		return r, err
	}
	for _, rec := range recs {
		switch rec.Flags {
		case snapEpoch:
			if len(rec.Value) == 8 {
				if v := binary.BigEndian.Uint64(rec.Value); v != 0 {
					if r.epochs == nil {
						r.epochs = map[string]uint64{}
					}
					r.epochs[rec.Key] = v
				}
			}
		case snapEntry:
			r.entries = append(r.entries, rec)
		}
	}
	return r, nil
}

// applySnapshot puts restored entries in L1, still encoded, and starts
// their confirmation against L2. Each is checked against the current epochs
// and decoded on its first lookup, so an entry whose epochs moved while this
// instance was down is never served; one that was exact-invalidated,
// deleted or overwritten meanwhile is dropped by the confirmation. Until it
// is confirmed, an entry is served only while L2 is unreachable
// (availability first); with L2 reachable, a lookup of it reads L2 instead.
func (c *Cache) applySnapshot(r restored) {
	var check []restoredEntry
	for _, rec := range r.entries {
		v := rec.Value
		if len(v) < 1 || v[0] > 4 || len(v) < 1+8*int(v[0]) {
			continue
		}
		var vals [4]uint64
		n := int(v[0])
		for i := range n {
			vals[i] = binary.BigEndian.Uint64(v[1+8*i:])
		}
		st := epoch.StampOf(vals[:n])
		e := &entry{value: rawValue(v[1+8*n:]), more: &entryMore{restored: &st, unconfirmed: c.l2 != nil}}
		if !rec.ExpiresAt.IsZero() {
			e.expiresAt = rec.ExpiresAt.UnixNano()
			if c.remaining(e.expiresAt) <= 0 {
				continue
			}
		}
		c.l1.Set(rec.Key, e)
		if e.unconfirmed() {
			check = append(check, restoredEntry{key: rec.Key, e: e})
		}
	}
	if len(check) > 0 {
		c.spawn(func() { c.confirmSnapshot(check) })
	}
}

type restoredEntry struct {
	key string // L1 key
	e   *entry
}

// confirmBatch is how many restored entries one L2 read confirms.
const confirmBatch = 512

// confirmSnapshot reads the L2 records of restored entries, a batch per
// call (one round trip per node): an entry whose record holds the same
// encoded value is confirmed and served from then on; one whose record is
// gone, a tombstone or another value is dropped (its next lookup reads L2).
// If L2 does not answer, the entries stay unconfirmed: served while L2 is
// unreachable, and replaced by L2 reads once it answers.
func (c *Cache) confirmSnapshot(check []restoredEntry) {
	for len(check) > 0 {
		n := min(len(check), confirmBatch)
		batch := check[:n]
		check = check[n:]
		ops := make([]tier.ReadOp, n)
		for i, r := range batch {
			ops[i] = tier.ReadOp{Key: restoredL2Key(r.key), Gen: r.e.more.restored.Token()}
		}
		var rr []tier.ReadResult
		if err := c.l2Call(c.base, "confirm snapshot", func(ctx context.Context) (err error) {
			_, rr, err = c.fencer.ReadRecords(ctx, nil, ops)
			return err
		}); err != nil || len(rr) != n {
			return
		}
		for i, r := range batch {
			if rr[i].Err != nil {
				continue
			}
			same := false
			if rr[i].Found {
				env, err := c.seal.Open(ops[i].Key, rr[i].Value)
				raw, _ := r.e.raw()
				same = err == nil && env.Kind == kindValue && env.Gen == r.e.more.restored.Token() && bytes.Equal(env.Payload, raw)
			}
			c.confirmRestored(r, same)
		}
	}
}

// confirmRestored marks a restored entry confirmed (same) or drops it,
// unless L1 holds something else for its key by now.
func (c *Cache) confirmRestored(r restoredEntry, same bool) {
	c.l1.Compute(r.key, func(cur *entry, ok bool) (*entry, memory.Op) {
		switch {
		case !ok || cur != r.e:
			return cur, memory.Keep
		case !same:
			return nil, memory.Remove
		}
		ne, more := *r.e, *r.e.more
		more.unconfirmed = false
		ne.more = &more
		return &ne, memory.Write
	})
}

// restoredL2Key is the L2 key of the entry at L1 key l1: a call's (see
// splitCallKey), or a key-value key's.
func restoredL2Key(l1 string) string {
	rid, seg, tail, ok := splitCallKey(l1)
	if !ok {
		rid, seg, tail = "", "", l1
	}
	var buf [256]byte
	return string(keyspace.AppendEntryKey(buf[:0], rid, seg, tail))
}

// snapshotRecords yields L1 as snapshot records: the epochs this instance
// knows, then every entry still current. It counts in *tooLarge the entries
// left out because the format cannot hold them.
func (c *Cache) snapshotRecords(tooLarge *int) iter.Seq[disk.Record] {
	return func(yield func(disk.Record) bool) {
		for cl := range c.ep.All() {
			v := cl.Val()
			if v == 0 {
				continue
			}
			if !yield(disk.Record{Key: cl.Key(), Value: binary.BigEndian.AppendUint64(nil, v), Flags: snapEpoch}) {
				return
			}
		}
		var vbuf [4]uint64
		for key, e := range c.l1.All() {
			// The epoch values it was made under: a restored entry's as
			// the snapshot gave them, any other's as its cells hold them
			// while they are current.
			var vals []uint64
			if e.restored() {
				vals = e.more.restored.Vals()
			} else if v, current := e.seal.AppendVals(vbuf[:0]); current {
				vals = v
			} else {
				continue
			}
			payload, raw := e.raw()
			if !raw {
				var err error
				if payload, err = c.codec.Marshal(e.value); err != nil {
					continue
				}
			}
			// One record the format refuses would fail the whole save. L1
			// holds values of any size (MaxValueSize bounds L2 only), so
			// this is the one place the format's limit applies.
			size := 1 + 8*len(vals) + len(payload)
			if len(key) > disk.MaxKeyLen || size > disk.MaxValueLen {
				*tooLarge++
				continue
			}
			b := make([]byte, 0, size)
			b = append(b, uint8(len(vals)))
			for _, v := range vals {
				b = binary.BigEndian.AppendUint64(b, v)
			}
			b = append(b, payload...)
			rec := disk.Record{Key: key, Value: b, Flags: snapEntry}
			if e.expiresAt != 0 {
				rec.ExpiresAt = time.Unix(0, e.expiresAt)
			}
			if !yield(rec) {
				return
			}
		}
	}
}

// saveSnapshot writes L1 to the snapshot file atomically.
func (c *Cache) saveSnapshot() error {
	if c.opts.Snapshot.Path == "" {
		return nil
	}
	c.snapMu.Lock()
	defer c.snapMu.Unlock()
	tooLarge := 0
	if _, err := disk.Save(c.opts.Snapshot.Path, c.snapshotRecords(&tooLarge)); err != nil {
		c.stats.snapshotErrors.Add(1)
		return fmt.Errorf("agentcache: saving snapshot: %w", err)
	}
	if tooLarge > 0 {
		c.stats.oversize.Add(uint64(tooLarge))
		c.warn("snapshot oversize", "agentcache: entries left out of the snapshot",
			fmt.Errorf("%d entries over the snapshot format's limits (key %d bytes, value %d bytes)", tooLarge, disk.MaxKeyLen, disk.MaxValueLen))
	}
	return nil
}

// startSnapshots saves the snapshot every Snapshot.Interval until Close.
func (c *Cache) startSnapshots() {
	if c.opts.Snapshot.Path == "" || c.opts.Snapshot.Interval <= 0 {
		return
	}
	c.snapStop, c.snapDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(c.snapDone)
		t := time.NewTicker(c.opts.Snapshot.Interval)
		defer t.Stop()
		for {
			select {
			case <-c.snapStop:
				return
			case <-t.C:
				if err := c.saveSnapshot(); err != nil {
					c.warn("snapshot", "agentcache: periodic snapshot failed", err)
				}
			}
		}
	}()
}

func (c *Cache) stopSnapshots() {
	if c.snapStop != nil {
		close(c.snapStop)
		<-c.snapDone
	}
}
