package agentcache

import (
	"encoding/binary"
	"fmt"
	"iter"
	"time"

	"github.com/agentcache/agentcache-go/tier/disk"
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

// applySnapshot puts restored entries in L1, still encoded. Each is checked
// against the current epochs and decoded on its first lookup, so an entry
// invalidated while this instance was down is never served.
func (c *Cache) applySnapshot(r restored) {
	for _, rec := range r.entries {
		v := rec.Value
		if len(v) < 1 || v[0] > 4 || len(v) < 1+8*int(v[0]) {
			continue
		}
		e := &entry{raw: true}
		e.st.n = v[0]
		for i := 0; i < int(e.st.n); i++ {
			e.st.vals[i] = binary.BigEndian.Uint64(v[1+8*i:])
		}
		e.value = v[1+8*int(e.st.n):]
		var ttl time.Duration
		if !rec.ExpiresAt.IsZero() {
			e.expiresAt = rec.ExpiresAt.UnixNano()
			if ttl = c.remaining(e.expiresAt); ttl <= 0 {
				continue
			}
		}
		c.l1.Set(rec.Key, e, ttl)
	}
}

// snapshotRecords yields L1 as snapshot records: the epochs this instance
// knows, then every entry still current.
func (c *Cache) snapshotRecords() iter.Seq[disk.Record] {
	return func(yield func(disk.Record) bool) {
		epoch := func(cl *cell) bool {
			v := cl.val.Load()
			if v == 0 {
				return true
			}
			return yield(disk.Record{Key: cl.key, Value: binary.BigEndian.AppendUint64(nil, v), Flags: snapEpoch})
		}
		ok := true
		c.ep.pinned.Range(func(_, v any) bool { ok = epoch(v.(*cell)); return ok })
		if !ok {
			return
		}
		for _, cl := range c.ep.scoped.All() {
			if !epoch(cl) {
				return
			}
		}
		for key, e := range c.l1.All() {
			var payload []byte
			if e.raw {
				payload, _ = e.value.([]byte)
			} else {
				if !e.st.current() {
					continue
				}
				var err error
				if payload, err = c.codec.Marshal(e.value); err != nil {
					continue
				}
			}
			// One record the format refuses would fail the whole save.
			if len(key) > disk.MaxKeyLen || len(payload)+33 > disk.DefaultMaxValueLen {
				continue
			}
			b := make([]byte, 0, 1+8*int(e.st.n)+len(payload))
			b = append(b, e.st.n)
			for i := uint8(0); i < e.st.n; i++ {
				b = binary.BigEndian.AppendUint64(b, e.st.vals[i])
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
	if _, err := disk.Save(c.opts.Snapshot.Path, c.snapshotRecords()); err != nil {
		c.stats.snapshotErrors.Add(1)
		return fmt.Errorf("agentcache: saving snapshot: %w", err)
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
