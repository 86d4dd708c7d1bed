package tiertest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/internal/testkit/wait"
	"github.com/agentcache/agentcache-go/tier"
)

// Records in this file are built with tier.AppendRecord and stamped with
// readings of the store's clock (ReadRecords' Now), in microseconds.

// hourMicros is an hour in the unit of record stamps.
const hourMicros = int64(time.Hour / time.Microsecond)

// rec builds a record of generation 0.
func rec(kind tier.Kind, stamp int64, payload string) []byte {
	return tier.AppendRecord(nil, kind, stamp, 0, []byte(payload))
}

// recGen builds a record of generation gen.
func recGen(kind tier.Kind, stamp int64, gen uint64, payload string) []byte {
	return tier.AppendRecord(nil, kind, stamp, gen, []byte(payload))
}

// outcomeName names an outcome in failure messages.
func outcomeName(o tier.Outcome) string {
	switch o {
	case tier.Written:
		return "Written"
	case tier.Fenced:
		return "Fenced"
	case tier.TooOld:
		return "TooOld"
	case tier.Failed:
		return "Failed"
	}
	return fmt.Sprintf("Outcome(%d)", o)
}

// showRecord prints a record (or other bytes) compactly.
func showRecord(b []byte) string {
	r, ok := tier.ParseRecord(b)
	if !ok {
		return "non-record " + show(b)
	}
	name := map[tier.Kind]string{tier.KindValue: "value", tier.KindMarker: "marker", tier.KindTombstone: "tombstone", tier.KindFencedValue: "fenced value"}[r.Kind]
	return fmt.Sprintf("%s@%d gen %d %s", name, r.Stamp, r.Gen, show(r.Payload))
}

// readRecords reads ops, failing t on an error of the call or of any key.
func readRecords(t *testing.T, f tier.Fencer, ops ...tier.ReadOp) []tier.ReadResult {
	t.Helper()
	vals, got, err := f.ReadRecords(testCtx(t), nil, ops)
	if err != nil {
		t.Fatalf("ReadRecords of %d keys: %v", len(ops), err)
	}
	if len(vals) != 0 {
		t.Fatalf("ReadRecords with no epochs returned %d epoch values", len(vals))
	}
	if len(got) != len(ops) {
		t.Fatalf("ReadRecords returned %d results for %d keys", len(got), len(ops))
	}
	for i, r := range got {
		switch {
		case r.Err != nil:
			t.Fatalf("ReadRecords[%d] (%q): Err %v", i, ops[i].Key, r.Err)
		case !r.Found && r.Value != nil:
			t.Fatalf("ReadRecords[%d] (%q) = (%q, false): a miss must have a nil value", i, ops[i].Key, r.Value)
		case r.Now <= 0:
			t.Fatalf("ReadRecords[%d] (%q): Now %d, want the store's clock in microseconds", i, ops[i].Key, r.Now)
		case r.Leased && ops[i].Lease == nil:
			t.Fatalf("ReadRecords[%d] (%q): Leased without a lease asked for", i, ops[i].Key)
		}
	}
	return got
}

// readKey reads one key without a lease.
func readKey(t *testing.T, f tier.Fencer, key string) tier.ReadResult {
	t.Helper()
	return readRecords(t, f, tier.ReadOp{Key: key})[0]
}

// clockAt returns the store's clock at key.
func clockAt(t *testing.T, f tier.Fencer, key string) int64 {
	t.Helper()
	return readKey(t, f, key).Now
}

// writeRecords writes, failing t on an error of the call or a Failed write.
func writeRecords(t *testing.T, f tier.Fencer, writes ...tier.RecordWrite) []tier.Outcome {
	t.Helper()
	got, err := f.WriteRecords(testCtx(t), writes)
	if err != nil {
		t.Fatalf("WriteRecords of %d records: %v", len(writes), err)
	}
	if len(got) != len(writes) {
		t.Fatalf("WriteRecords returned %d results for %d writes", len(got), len(writes))
	}
	out := make([]tier.Outcome, len(got))
	for i, r := range got {
		if r.Outcome == tier.Failed || r.Err != nil {
			t.Fatalf("WriteRecords[%d] (%q, %s): %s, Err %v", i, writes[i].Key, showRecord(writes[i].Record), outcomeName(r.Outcome), r.Err)
		}
		out[i] = r.Outcome
	}
	return out
}

// put writes one record with no expiry and fails t unless the outcome is want.
func put(t *testing.T, f tier.Fencer, key string, record []byte, want tier.Outcome) {
	t.Helper()
	if got := writeRecords(t, f, tier.RecordWrite{Key: key, Record: record})[0]; got != want {
		t.Fatalf("write of %s at %q: %s, want %s", showRecord(record), key, outcomeName(got), outcomeName(want))
	}
}

// wantRecord fails t unless key holds exactly want.
func wantRecord(t *testing.T, f tier.Fencer, key string, want []byte) {
	t.Helper()
	r := readKey(t, f, key)
	if !r.Found {
		t.Fatalf("ReadRecords(%q): miss, want %s", key, showRecord(want))
	}
	if string(r.Value) != string(want) {
		t.Fatalf("ReadRecords(%q) = %s, want %s", key, showRecord(r.Value), showRecord(want))
	}
}

// wantNoRecord fails t unless key is absent.
func wantNoRecord(t *testing.T, f tier.Fencer, key string) {
	t.Helper()
	if r := readKey(t, f, key); r.Found {
		t.Fatalf("ReadRecords(%q) = %s, want a miss", key, showRecord(r.Value))
	}
}

// tombstone tombstones keys for ttl, failing t on an error.
func tombstone(t *testing.T, f tier.Fencer, ttl time.Duration, keys ...string) []int64 {
	t.Helper()
	got, vals, err := f.Invalidate(testCtx(t), tombstoneOps(ttl, keys...), nil)
	if err != nil {
		t.Fatalf("Invalidate(tombstones %q): %v", keys, err)
	}
	if len(got) != len(keys) || len(vals) != 0 {
		t.Fatalf("Invalidate returned %d stamps for %d tombstones and %d values for no epochs", len(got), len(keys), len(vals))
	}
	return got
}

// tombstoneOps returns a tombstone op for each key with ttl and no notice.
func tombstoneOps(ttl time.Duration, keys ...string) []tier.TombstoneOp {
	ops := make([]tier.TombstoneOp, len(keys))
	for i, k := range keys {
		ops[i] = tier.TombstoneOp{Key: k, TTL: ttl}
	}
	return ops
}

// wantTombstone fails t unless key holds the tombstone stamped stamp: the
// header alone.
func wantTombstone(t *testing.T, f tier.Fencer, key string, stamp int64) {
	t.Helper()
	wantRecord(t, f, key, tier.AppendRecord(nil, tier.KindTombstone, stamp, 0, nil))
}

// leaseOn is a lease on the lease key of an entry key, named as the cache
// names it: "lk:" and the entry key, so that a key with a hash tag shares
// its slot with its lease.
func leaseOn(key, token string, ttl time.Duration) *tier.Lease {
	return &tier.Lease{Key: "lk:" + key, Token: token, TTL: ttl}
}

// readLeased reads key asking for a lease and returns the result.
func readLeased(t *testing.T, f tier.Fencer, key, token string, ttl time.Duration) tier.ReadResult {
	t.Helper()
	return readRecords(t, f, tier.ReadOp{Key: key, Lease: leaseOn(key, token, ttl)})[0]
}

func (s *suite) testFencer(t *testing.T) {
	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "fence")
		f := st.(tier.Fencer)
		ctx := testCtx(t)
		miss := readKey(t, f, "absent")
		if miss.Found || miss.Value != nil || miss.Leased || miss.Repaired {
			t.Fatalf("ReadRecords of a missing key = %+v, want a miss", miss)
		}
		now := clockAt(t, f, "value")
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		records := map[string][]byte{
			"value":  rec(tier.KindValue, now, "hello"),
			"empty":  rec(tier.KindValue, now, ""),
			"marker": rec(tier.KindMarker, now, ""),
			"meta":   rec(tier.KindMarker, now, "a marker's own bytes"),
			"binary": rec(tier.KindValue, now, string(all)),
			"big":    rec(tier.KindValue, now, string(randomBytes(1<<20))),
		}
		keys := slices.Sorted(maps.Keys(records))
		var writes []tier.RecordWrite
		for _, k := range keys {
			writes = append(writes, tier.RecordWrite{Key: k, Record: slices.Clone(records[k])})
		}
		for i, o := range writeRecords(t, f, writes...) {
			if o != tier.Written {
				t.Fatalf("write of %s at the missing key %q: %s, want Written", showRecord(writes[i].Record), writes[i].Key, outcomeName(o))
			}
		}
		for _, w := range writes {
			copy(w.Record, "XXXXXXXXXXXX") // the caller owns its buffers
		}
		for k, r := range records {
			if r[1] == byte(tier.KindMarker) { // over nothing, a marker carries stamp 0 (tier.Landed)
				records[k] = tier.Restamp(r, 0)
			}
		}
		big := records["big"]
		delete(records, "big")
		for k, want := range records {
			wantRecord(t, f, k, want)
			// Records are the values at their keys.
			wantValue(t, ctx, st, k, want)
		}
		wantRecord(t, f, "big", big)
		// Many keys in one call, in order, with repeats and misses.
		order := []string{"value", "absent", "marker", "value", "binary"}
		ops := make([]tier.ReadOp, len(order))
		for i, k := range order {
			ops[i].Key = k
		}
		got := readRecords(t, f, ops...)
		for i, k := range order {
			want, ok := records[k]
			if got[i].Found != ok || string(got[i].Value) != string(want) {
				t.Fatalf("ReadRecords[%d] (%q) = (%s, %v), want (%s, %v)", i, k, showRecord(got[i].Value), got[i].Found, showRecord(want), ok)
			}
		}
		// Two results of one key must not share a buffer the caller may
		// modify.
		got[0].Value[tier.RecordHeaderLen] = 'X'
		if got[3].Value[tier.RecordHeaderLen] == 'X' {
			t.Fatal("ReadRecords returned one slice for two reads of a key")
		}
		wantRecord(t, f, "value", records["value"])
	})

	t.Run("KeyBytes", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencekeys").(tier.Fencer)
		now := clockAt(t, f, "plain")
		writes := make([]tier.RecordWrite, len(keyZoo))
		for i, k := range keyZoo {
			writes[i] = tier.RecordWrite{Key: k, Record: rec(tier.KindValue, now, fmt.Sprintf("value %d", i))}
		}
		for i, o := range writeRecords(t, f, writes...) {
			if o != tier.Written {
				t.Fatalf("write %d: %s, want Written", i, outcomeName(o))
			}
		}
		for i, k := range keyZoo {
			wantRecord(t, f, k, writes[i].Record)
		}
		stamps := tombstone(t, f, time.Hour, keyZoo...)
		for i, k := range keyZoo {
			wantTombstone(t, f, k, stamps[i])
		}
	})

	t.Run("TTL", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencettl").(tier.Fencer)
		ctx := testCtx(t)
		now := clockAt(t, f, "short")
		writes := []tier.RecordWrite{
			{Key: "short", Record: rec(tier.KindValue, now, "v"), TTL: 100 * time.Millisecond},
			{Key: "long", Record: rec(tier.KindValue, now, "v"), TTL: time.Hour},
			{Key: "forever", Record: rec(tier.KindMarker, now, ""), TTL: 0},
			{Key: "tiny", Record: rec(tier.KindValue, now, "v"), TTL: time.Nanosecond},
			{Key: "neg", Record: rec(tier.KindValue, now, "v"), TTL: -time.Second},
			{Key: "garbage", Record: []byte("not a record"), TTL: time.Hour},
		}
		got, err := f.WriteRecords(ctx, writes)
		if err != nil {
			t.Fatalf("WriteRecords: %v", err)
		}
		if len(got) != len(writes) {
			t.Fatalf("WriteRecords returned %d results for %d writes", len(got), len(writes))
		}
		for i, w := range writes {
			switch w.Key {
			case "neg", "garbage":
				if got[i].Outcome != tier.Failed || got[i].Err == nil {
					t.Errorf("write %q (a negative TTL, or bytes that are not a record): %s, Err %v, want Failed with an Err", w.Key, outcomeName(got[i].Outcome), got[i].Err)
				}
			default:
				if got[i].Outcome != tier.Written || got[i].Err != nil {
					t.Errorf("write %q: %s, Err %v, want Written", w.Key, outcomeName(got[i].Outcome), got[i].Err)
				}
			}
		}
		wantNoRecord(t, f, "neg")
		wantNoRecord(t, f, "garbage")
		for _, k := range []string{"short", "tiny"} {
			wait.For(t, 10*time.Second, "record "+k+" with a short TTL expires", func() bool {
				return !readKey(t, f, k).Found
			})
		}
		time.Sleep(100 * time.Millisecond)
		wantRecord(t, f, "long", writes[1].Record)
		wantRecord(t, f, "forever", tier.Restamp(writes[2].Record, 0))
		// A write over a record with a TTL sets its own.
		put(t, f, "long", rec(tier.KindValue, now+1, "again"), tier.Written)
		if got := writeRecords(t, f, tier.RecordWrite{Key: "long", Record: rec(tier.KindValue, now+2, "short now"), TTL: 100 * time.Millisecond}); got[0] != tier.Written {
			t.Fatalf("write over an older record: %s", outcomeName(got[0]))
		}
		wait.For(t, 10*time.Second, "record rewritten with a 100ms TTL expires", func() bool {
			return !readKey(t, f, "long").Found
		})
	})

	t.Run("NewerWins", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencenewer").(tier.Fencer)
		base := clockAt(t, f, "k")
		v1 := rec(tier.KindValue, base, "v1")
		put(t, f, "k", v1, tier.Written)
		put(t, f, "k", rec(tier.KindValue, base-1, "older"), tier.Fenced)
		put(t, f, "k", rec(tier.KindValue, base-hourMicros, "much older"), tier.Fenced)
		put(t, f, "k", rec(tier.KindValue, base, "same stamp"), tier.Fenced)
		wantRecord(t, f, "k", v1)
		v2 := rec(tier.KindValue, base+1, "v2")
		put(t, f, "k", v2, tier.Written)
		wantRecord(t, f, "k", v2)
		// Two writes of one key in one call: the newer holds, whatever
		// the order in which the store applies them.
		for _, order := range [][2]int64{{5, 3}, {3, 5}} {
			key := fmt.Sprintf("pair%d", order[0])
			writes := []tier.RecordWrite{
				{Key: key, Record: rec(tier.KindValue, base+order[0], "a")},
				{Key: key, Record: rec(tier.KindValue, base+order[1], "b")},
			}
			out := writeRecords(t, f, writes...)
			if slices.Contains(out, tier.TooOld) {
				t.Fatalf("writes without a Horizon: %v", out)
			}
			newer := writes[0].Record
			if order[1] > order[0] {
				newer = writes[1].Record
			}
			wantRecord(t, f, key, newer)
		}
	})

	t.Run("Replace", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencereplace").(tier.Fencer)
		base := clockAt(t, f, "k")
		replace := func(key string, record []byte, want tier.Outcome) {
			t.Helper()
			if got := writeRecords(t, f, tier.RecordWrite{Key: key, Record: record, Replace: true})[0]; got != want {
				t.Fatalf("replacing write of %s at %q: %s, want %s", showRecord(record), key, outcomeName(got), outcomeName(want))
			}
		}
		stampOf := func(key string) int64 {
			t.Helper()
			r := readKey(t, f, key)
			c, ok := tier.ParseRecord(r.Value)
			if !r.Found || !ok {
				t.Fatalf("ReadRecords(%q) after a replacing write: found %v, a record %v", key, r.Found, ok)
			}
			return c.Stamp
		}
		// A replacement lands over a value stamped after it, and is stored
		// stamped no earlier than the store's clock when it landed (and
		// after what it replaced): a load that began before then cannot
		// replace it.
		put(t, f, "k", rec(tier.KindValue, base+hourMicros, "loaded later"), tier.Written)
		set := rec(tier.KindValue, base, "set")
		replace("k", set, tier.Written)
		got := stampOf("k")
		if got <= base+hourMicros {
			t.Fatalf("a replacement over a value stamped %d is stored with stamp %d; want a later one", base+hourMicros, got)
		}
		wantRecord(t, f, "k", tier.Rewrite(set, tier.KindFencedValue, got))
		// A second replacement that began before the first landed loses.
		replace("k", rec(tier.KindValue, got-1, "set earlier, landed later"), tier.Fenced)
		put(t, f, "k", rec(tier.KindValue, got-1, "loaded before it landed"), tier.Fenced)
		// Over nothing and over a marker it lands too, stamped at least
		// with the store's clock.
		now := clockAt(t, f, "fresh")
		replace("fresh", rec(tier.KindValue, base-hourMicros, "old estimate"), tier.Written)
		if st := stampOf("fresh"); st < now {
			t.Fatalf("a replacement stamped an hour back is stored with stamp %d, before the store's clock %d", st, now)
		}
		put(t, f, "marker", rec(tier.KindMarker, base, ""), tier.Written)
		replace("marker", rec(tier.KindValue, base, "set over a marker"), tier.Written)
		// Only a tombstone stamped at or after it refuses it: a Delete made
		// after the Set wins, one made before it loses.
		stamp := tombstone(t, f, time.Hour, "tomb")[0]
		replace("tomb", rec(tier.KindValue, stamp, "set before the delete"), tier.Fenced)
		replace("tomb", rec(tier.KindValue, stamp-1, "much earlier"), tier.Fenced)
		replace("tomb", rec(tier.KindValue, stamp+1, "set after the delete"), tier.Written)
		if st := stampOf("tomb"); st <= stamp {
			t.Fatalf("a replacement over tombstone %d is stored with stamp %d", stamp, st)
		}
	})

	t.Run("Floor", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencefloor").(tier.Fencer)
		now := clockAt(t, f, "k")
		write := func(key string, record []byte, floor int64) {
			t.Helper()
			if got := writeRecords(t, f, tier.RecordWrite{Key: key, Record: record, Floor: floor})[0]; got != tier.Written {
				t.Fatalf("write of %s with floor %d: %s", showRecord(record), floor, outcomeName(got))
			}
		}
		// A value with a floor is stored as a fenced value stamped with it.
		v := rec(tier.KindValue, now, "v")
		write("k", v, now-10)
		wantRecord(t, f, "k", tier.Rewrite(v, tier.KindFencedValue, now-10))
		// Over a fenced value the greater fence holds, and a floor is never
		// above the write's own stamp.
		v = rec(tier.KindValue, now+5, "v2")
		write("k", v, now-20)
		wantRecord(t, f, "k", tier.Rewrite(v, tier.KindFencedValue, now-10))
		v = rec(tier.KindValue, now+6, "v3")
		write("k", v, now+hourMicros)
		wantRecord(t, f, "k", tier.Rewrite(v, tier.KindFencedValue, now+6))
		// Without a floor nothing changes, and a marker ignores it.
		v = rec(tier.KindValue, now, "plain")
		write("plain", v, 0)
		wantRecord(t, f, "plain", v)
		m := rec(tier.KindMarker, now, "")
		write("marker", m, now-1)
		wantRecord(t, f, "marker", tier.Restamp(m, 0))
	})

	t.Run("StampAheadOfClock", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fenceahead").(tier.Fencer)
		now := clockAt(t, f, "planted")
		// A record stamped a day ahead fences a write without a Horizon (the
		// store cannot tell it from a clock that jumped)...
		put(t, f, "planted", rec(tier.KindValue, now+24*hourMicros, "planted"), tier.Written)
		put(t, f, "planted", rec(tier.KindValue, now+1, "no horizon"), tier.Fenced)
		// ...but a write with a Horizon shorter than the lead treats it as
		// absent: no writer stamps that far ahead.
		v := rec(tier.KindValue, now+2, "with horizon")
		if got := writeRecords(t, f, tier.RecordWrite{Key: "planted", Record: v, Horizon: time.Hour})[0]; got != tier.Written {
			t.Fatalf("a write with a 1h Horizon over a record stamped a day ahead: %s, want written", outcomeName(got))
		}
		wantRecord(t, f, "planted", v)
	})

	t.Run("Markers", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencemark").(tier.Fencer)
		base := clockAt(t, f, "value")
		// A marker never replaces a value, however new.
		v := rec(tier.KindValue, base, "v")
		put(t, f, "value", v, tier.Written)
		put(t, f, "value", rec(tier.KindMarker, base+hourMicros, ""), tier.Fenced)
		wantRecord(t, f, "value", v)
		// A marker carries on the fence of what it replaces (tier.Landed):
		// over nothing it is stored with stamp 0, so any value replaces it,
		// and so does a later marker.
		m := rec(tier.KindMarker, base, "")
		put(t, f, "marker", m, tier.Written)
		wantRecord(t, f, "marker", tier.Restamp(m, 0))
		m = rec(tier.KindMarker, base-1, "older")
		put(t, f, "marker", m, tier.Written)
		wantRecord(t, f, "marker", tier.Restamp(m, 0))
		v = rec(tier.KindValue, 1, "v")
		put(t, f, "marker", v, tier.Written)
		wantRecord(t, f, "marker", v)
		// Over a tombstone, a marker lands only when stamped after it, and
		// is stored with the tombstone's stamp: a value whose load began
		// before the tombstone never replaces it, one that began after does.
		stamp := tombstone(t, f, time.Hour, "tomb")[0]
		put(t, f, "tomb", rec(tier.KindMarker, stamp-1, ""), tier.Fenced)
		put(t, f, "tomb", rec(tier.KindMarker, stamp, ""), tier.Fenced)
		m = rec(tier.KindMarker, stamp+5, "")
		put(t, f, "tomb", m, tier.Written)
		wantRecord(t, f, "tomb", tier.Restamp(m, stamp))
		put(t, f, "tomb", rec(tier.KindValue, stamp, "old"), tier.Fenced)
		// A later marker keeps the same fence.
		m = rec(tier.KindMarker, stamp+6, "")
		put(t, f, "tomb", m, tier.Written)
		wantRecord(t, f, "tomb", tier.Restamp(m, stamp))
		// A value replaces it, as a fenced value that carries the fence on.
		v = rec(tier.KindValue, stamp+1, "new")
		put(t, f, "tomb", v, tier.Written)
		wantRecord(t, f, "tomb", tier.Rewrite(v, tier.KindFencedValue, stamp))
	})

	t.Run("TombstoneFences", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencetomb").(tier.Fencer)
		// A load begins (its read's clock stamps it), an invalidation
		// comes, then the load's write arrives: it must not land.
		before := clockAt(t, f, "k")
		put(t, f, "k", rec(tier.KindValue, before, "v"), tier.Written)
		stamp := tombstone(t, f, time.Hour, "k")[0]
		if stamp <= before {
			t.Fatalf("Tombstone stamp %d, not after the stamp %d the key held", stamp, before)
		}
		wantTombstone(t, f, "k", stamp)
		put(t, f, "k", rec(tier.KindValue, before, "stale"), tier.Fenced)
		put(t, f, "k", rec(tier.KindValue, stamp-1, "stale"), tier.Fenced)
		put(t, f, "k", rec(tier.KindValue, stamp, "stale"), tier.Fenced)
		put(t, f, "k", rec(tier.KindMarker, stamp, ""), tier.Fenced)
		wantTombstone(t, f, "k", stamp)
		// A load that begins after the invalidation lands: its read's clock
		// is past the tombstone's stamp.
		var after int64
		wait.For(t, 10*time.Second, "the store's clock passes the tombstone's stamp", func() bool {
			after = clockAt(t, f, "k")
			return after > stamp
		})
		// It is stored as a fenced value with the tombstone's stamp: the
		// fence outlives the tombstone (tier.Landed), so that a Set made
		// before the invalidation still cannot land (tier.LandedReplace)...
		fresh := rec(tier.KindValue, after, "fresh")
		put(t, f, "k", fresh, tier.Written)
		wantRecord(t, f, "k", tier.Rewrite(fresh, tier.KindFencedValue, stamp))
		if got := writeRecords(t, f, tier.RecordWrite{Key: "k", Record: rec(tier.KindValue, stamp-1, "set before"), Replace: true})[0]; got != tier.Fenced {
			t.Fatalf("a replacing write stamped before the tombstone, over the value that replaced it: %s, want fenced", outcomeName(got))
		}
		// ...while a later load replaces it and carries the fence on, and a
		// load that began before the tombstone still cannot.
		put(t, f, "k", rec(tier.KindValue, stamp, "began with it"), tier.Fenced)
		later := rec(tier.KindValue, after+1, "later")
		put(t, f, "k", later, tier.Written)
		wantRecord(t, f, "k", tier.Rewrite(later, tier.KindFencedValue, stamp))

		// A missing key: the tombstone is stamped with the store's clock.
		before = clockAt(t, f, "missing")
		if stamp := tombstone(t, f, time.Hour, "missing")[0]; stamp < before {
			t.Fatalf("Tombstone of a missing key stamped %d, before the store's clock %d", stamp, before)
		} else {
			wantTombstone(t, f, "missing", stamp)
			put(t, f, "missing", rec(tier.KindValue, before, "stale"), tier.Fenced)
		}
		// A key holding a record stamped ahead of the clock: the tombstone
		// is stamped after it.
		ahead := clockAt(t, f, "ahead") + hourMicros
		put(t, f, "ahead", rec(tier.KindValue, ahead, "v"), tier.Written)
		if stamp := tombstone(t, f, time.Hour, "ahead")[0]; stamp <= ahead {
			t.Fatalf("Tombstone of a key stamped %d: stamped %d, want after it", ahead, stamp)
		}
		// Several keys, one twice, and a tombstone over a tombstone.
		clocks := readRecords(t, f, tier.ReadOp{Key: "a"}, tier.ReadOp{Key: "{x}b"})
		stamps := tombstone(t, f, time.Hour, "a", "{x}b", "a")
		if stamps[0] < clocks[0].Now || stamps[1] < clocks[1].Now {
			t.Fatalf("Tombstone stamps %v, before the store's clock (%d, %d)", stamps, clocks[0].Now, clocks[1].Now)
		}
		if stamps[2] <= stamps[0] {
			t.Fatalf("Tombstone of one key twice in one call stamped %v, want the second after the first", stamps)
		}
		wantTombstone(t, f, "a", stamps[2])
		wantTombstone(t, f, "{x}b", stamps[1])
		if again := tombstone(t, f, time.Hour, "a")[0]; again <= stamps[2] {
			t.Fatalf("Tombstone over a tombstone stamped %d: stamped %d, want after it", stamps[2], again)
		}
	})

	t.Run("TombstoneTTL", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencetombttl").(tier.Fencer)
		ctx := testCtx(t)
		before := clockAt(t, f, "k")
		tombstone(t, f, 100*time.Millisecond, "k", "tiny")
		tombstone(t, f, time.Nanosecond, "tiny")
		for _, k := range []string{"k", "tiny"} {
			wait.For(t, 10*time.Second, "tombstone "+k+" with a short TTL expires", func() bool {
				return !readKey(t, f, k).Found
			})
		}
		// Once it expired the tombstone fences nothing (what Horizon is for).
		put(t, f, "k", rec(tier.KindValue, before, "v"), tier.Written)
		for _, ttl := range []time.Duration{-time.Second, 0} {
			if _, _, err := f.Invalidate(ctx, tombstoneOps(ttl, "k"), nil); err == nil {
				t.Fatalf("Tombstone with TTL %v: no error (a tombstone must expire)", ttl)
			}
		}
		wantRecord(t, f, "k", rec(tier.KindValue, before, "v"))
	})

	t.Run("Horizon", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencehorizon").(tier.Fencer)
		now := clockAt(t, f, "old")
		out := writeRecords(t, f,
			tier.RecordWrite{Key: "old", Record: rec(tier.KindValue, now-hourMicros, "v"), Horizon: time.Minute},
			tier.RecordWrite{Key: "oldmarker", Record: rec(tier.KindMarker, now-hourMicros, ""), Horizon: time.Minute},
			tier.RecordWrite{Key: "fresh", Record: rec(tier.KindValue, now, "v"), Horizon: time.Minute},
			tier.RecordWrite{Key: "nohorizon", Record: rec(tier.KindValue, now-hourMicros, "v")},
		)
		if want := []tier.Outcome{tier.TooOld, tier.TooOld, tier.Written, tier.Written}; !slices.Equal(out, want) {
			t.Fatalf("writes of an hour-old stamp with a 1m Horizon, a fresh one, and an old one with no Horizon: %v, want %v", out, want)
		}
		wantNoRecord(t, f, "old")
		wantNoRecord(t, f, "oldmarker")
		// TooOld leaves an older record in place.
		held := rec(tier.KindValue, now-2*hourMicros, "held")
		put(t, f, "held", held, tier.Written)
		out = writeRecords(t, f, tier.RecordWrite{Key: "held", Record: rec(tier.KindValue, now-hourMicros, "v"), Horizon: time.Minute})
		if out[0] != tier.TooOld {
			t.Fatalf("write of an hour-old stamp with a 1m Horizon over an older record: %s, want TooOld", outcomeName(out[0]))
		}
		wantRecord(t, f, "held", held)
	})

	t.Run("NotRecordOverwritten", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "fencegarbage")
		f := st.(tier.Fencer)
		ctx := testCtx(t)
		garbage := [][]byte{
			[]byte("plain text, long enough for a header"),
			{},
			[]byte("\xA5\x01short"),
			append([]byte("\xA5\x09"), make([]byte, 16)...),
			append([]byte("\xA5\x00"), make([]byte, 16)...),
			append([]byte("\xAC\x01\x01"), make([]byte, 20)...),
			// A header of 10 bytes (stamp, no generation) is too short.
			append([]byte("\xA5\x01"), make([]byte, 8)...),
			append([]byte("\xA5\x03"), make([]byte, 15)...),
		}
		for i, g := range garbage {
			for j, kind := range []tier.Kind{tier.KindValue, tier.KindMarker} {
				key := fmt.Sprintf("g%d-%d", i, j)
				mustSet(t, ctx, st, key, g, 0)
				r := readKey(t, f, key)
				if !r.Found || string(r.Value) != string(g) || r.Repaired {
					t.Fatalf("ReadRecords of a key holding %s = (%s, found %v, repaired %v), want those bytes", show(g), show(r.Value), r.Found, r.Repaired)
				}
				// Bytes that are not a record count as absent: even the
				// oldest stamp overwrites them.
				w := rec(kind, 1, "v")
				put(t, f, key, w, tier.Written)
				if kind == tier.KindMarker {
					w = tier.Restamp(w, 0)
				}
				wantRecord(t, f, key, w)
			}
			key := fmt.Sprintf("t%d", i)
			mustSet(t, ctx, st, key, g, 0)
			before := clockAt(t, f, key)
			if stamp := tombstone(t, f, time.Hour, key)[0]; stamp < before {
				t.Fatalf("Tombstone of a key holding %s stamped %d, before the store's clock %d", show(g), stamp, before)
			} else {
				wantTombstone(t, f, key, stamp)
			}
		}
	})

	t.Run("NowGrows", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencenow").(tier.Fencer)
		start := time.Now()
		a := clockAt(t, f, "k")
		b := clockAt(t, f, "k")
		if b < a {
			t.Fatalf("the store's clock went back from %d to %d", a, b)
		}
		const pause = 50 * time.Millisecond
		time.Sleep(pause)
		c := clockAt(t, f, "k")
		elapsed := time.Since(start)
		// The clock is in microseconds: it moved by about what passed.
		if d := c - a; d < int64(pause*8/10/time.Microsecond) || d > elapsed.Microseconds()+1_000_000 {
			t.Fatalf("the store's clock moved %d over %v (a pause of %v): Now is not in microseconds", d, elapsed, pause)
		}
		wait.For(t, 10*time.Second, "the store's clock moves", func() bool { return clockAt(t, f, "k") > c })
	})

	t.Run("Isolation", func(t *testing.T) {
		t.Parallel()
		mine := s.open(t, "fenceiso").(tier.Fencer)
		other := s.open(t, "fenceiso").(tier.Fencer)
		now := clockAt(t, mine, "k")
		theirs := rec(tier.KindValue, now, "other")
		put(t, other, "k", theirs, tier.Written)
		put(t, mine, "k", rec(tier.KindValue, now+1, "mine"), tier.Written)
		tombstone(t, mine, time.Hour, "k")
		wantRecord(t, other, "k", theirs)
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fenceempty").(tier.Fencer)
		ctx := testCtx(t)
		for _, ops := range [][]tier.ReadOp{nil, {}} {
			if vals, got, err := f.ReadRecords(ctx, nil, ops); err != nil || len(got) != 0 || len(vals) != 0 {
				t.Errorf("ReadRecords(nil, %#v) = (%v, %v, %v), want no results and no error", ops, vals, got, err)
			}
			if vals, got, err := f.ReadRecords(ctx, []tier.EpochOp{}, ops); err != nil || len(got) != 0 || len(vals) != 0 {
				t.Errorf("ReadRecords({}, %#v) = (%v, %v, %v), want no results and no error", ops, vals, got, err)
			}
		}
		for _, writes := range [][]tier.RecordWrite{nil, {}} {
			if got, err := f.WriteRecords(ctx, writes); err != nil || len(got) != 0 {
				t.Errorf("WriteRecords(%#v) = (%v, %v), want no results and no error", writes, got, err)
			}
		}
		for _, keys := range [][]string{nil, {}} {
			if got, vals, err := f.Invalidate(ctx, tombstoneOps(time.Hour, keys...), nil); err != nil || len(got) != 0 || len(vals) != 0 {
				t.Errorf("Invalidate(%#v) = (%v, %v, %v), want no stamps, no values and no error", keys, got, vals, err)
			}
			if got, vals, err := f.Invalidate(ctx, nil, []tier.EpochOp{}); err != nil || len(got) != 0 || len(vals) != 0 {
				t.Errorf("Invalidate(nil, {}) = (%v, %v, %v), want no stamps, no values and no error", got, vals, err)
			}
		}
	})

	t.Run("ManySlots", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencemany").(tier.Fencer)
		leases := !s.opts.NotAtomic
		keys := make([]string, 300)
		ops := make([]tier.ReadOp, len(keys))
		for i := range keys {
			keys[i] = fmt.Sprintf("{f%d}k", i)
			ops[i].Key = keys[i]
			if leases {
				ops[i].Lease = leaseOn(keys[i], "t", time.Hour)
			}
		}
		reads := readRecords(t, f, ops...)
		writes := make([]tier.RecordWrite, len(keys))
		for i, r := range reads {
			if r.Found || r.Leased != leases {
				t.Fatalf("ReadRecords[%d] of a missing key = %+v, want a miss (and the lease)", i, r)
			}
			writes[i] = tier.RecordWrite{Key: keys[i], Record: rec(tier.KindValue, r.Now, keys[i]), TTL: time.Hour, Horizon: time.Hour}
			if leases {
				writes[i].Release = ops[i].Lease
			}
		}
		for i, o := range writeRecords(t, f, writes...) {
			if o != tier.Written {
				t.Fatalf("write %d over many slots: %s, want Written", i, outcomeName(o))
			}
		}
		for i, r := range readRecords(t, f, ops...) {
			if !r.Found || string(r.Value) != string(writes[i].Record) || r.Leased {
				t.Fatalf("ReadRecords[%d] after the writes = %+v, want the record and no lease", i, r)
			}
		}
		stamps := tombstone(t, f, time.Hour, keys...)
		for i, o := range writeRecords(t, f, writes...) {
			if o != tier.Fenced {
				t.Fatalf("write %d stamped before the tombstone at %d: %s, want Fenced", i, stamps[i], outcomeName(o))
			}
		}
		for i, k := range keys {
			if stamps[i] <= reads[i].Now {
				t.Fatalf("Tombstone of %q stamped %d, not after the record stamped %d", k, stamps[i], reads[i].Now)
			}
		}
	})

	t.Run("MarkerGeneration", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencemarkgen").(tier.Fencer)
		base := clockAt(t, f, "v")
		v := recGen(tier.KindValue, base, 7, "v")
		put(t, f, "v", v, tier.Written)
		// A marker of the value's own generation never replaces it, however
		// new.
		put(t, f, "v", recGen(tier.KindMarker, base+hourMicros, 7, ""), tier.Fenced)
		// One of another generation (the value was loaded under epochs
		// invalidated since) does, when stamped after it...
		put(t, f, "v", recGen(tier.KindMarker, base, 8, ""), tier.Fenced)
		put(t, f, "v", recGen(tier.KindMarker, base-1, 8, ""), tier.Fenced)
		wantRecord(t, f, "v", v)
		// ...and is stored with the stamp of the value it replaced, keeping
		// its own generation.
		m := recGen(tier.KindMarker, base+5, 8, "meta")
		put(t, f, "v", m, tier.Written)
		wantRecord(t, f, "v", tier.Restamp(m, base))
		// A value of that generation replaces the marker as a fenced value
		// carrying the fence on, its generation and payload kept.
		v8 := recGen(tier.KindValue, base+6, 8, "v8")
		put(t, f, "v", v8, tier.Written)
		wantRecord(t, f, "v", tier.Rewrite(v8, tier.KindFencedValue, base))
		// Over a fenced value the same rules hold.
		put(t, f, "v", recGen(tier.KindMarker, base+hourMicros, 8, ""), tier.Fenced)
		put(t, f, "v", recGen(tier.KindMarker, base, 9, ""), tier.Fenced)
		m9 := recGen(tier.KindMarker, base+7, 9, "")
		put(t, f, "v", m9, tier.Written)
		wantRecord(t, f, "v", tier.Restamp(m9, base))
		// Generations are compared in all 64 bits (more than a Lua number
		// holds exactly).
		g1, g2 := uint64(1<<63|1), uint64(1<<63|2)
		hi := recGen(tier.KindValue, base, g1, "hi")
		put(t, f, "hi", hi, tier.Written)
		put(t, f, "hi", recGen(tier.KindMarker, base+1, g1, ""), tier.Fenced)
		put(t, f, "hi", recGen(tier.KindMarker, base+1, g1|1<<8, ""), tier.Written)
		put(t, f, "hi2", hi, tier.Written)
		m = recGen(tier.KindMarker, base+1, g2, "")
		put(t, f, "hi2", m, tier.Written)
		wantRecord(t, f, "hi2", tier.Restamp(m, base))
	})

	t.Run("ReadLoadsEpochs", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "fenceepochs")
		f := st.(tier.Fencer)
		ctx := testCtx(t)
		floor := clockAt(t, f, "k")
		v := rec(tier.KindValue, floor, "v")
		put(t, f, "k", v, tier.Written)
		mustSet(t, ctx, st, "{e}bad", []byte("not an epoch"), 0)
		const short = 100 * time.Millisecond
		far := uint64(floor + hourMicros)
		// The epochs come with the reads, in the same call.
		epochs := []tier.EpochOp{
			{Key: "{e}short", TTL: short},
			{Key: "{e}forever"},
			{Key: "{e}bad", TTL: time.Hour},
			{Key: "{e}known", Known: far, TTL: time.Hour},
			{Key: "{e}forever"},
		}
		vals, reads, err := f.ReadRecords(ctx, epochs, []tier.ReadOp{{Key: "k"}, {Key: "absent"}})
		if err != nil {
			t.Fatalf("ReadRecords with epochs: %v", err)
		}
		if len(vals) != len(epochs) || len(reads) != 2 {
			t.Fatalf("ReadRecords of %d epochs and 2 keys returned %d values and %d results", len(epochs), len(vals), len(reads))
		}
		if r := reads[0]; r.Err != nil || !r.Found || string(r.Value) != string(v) || r.Now <= 0 {
			t.Fatalf("ReadRecords with epochs: read of a record = %+v, want it", r)
		}
		if r := reads[1]; r.Err != nil || r.Found || r.Now <= 0 {
			t.Fatalf("ReadRecords with epochs: read of a missing key = %+v, want a miss", r)
		}
		// Missing epochs (and bytes that are not one) are created from the
		// store's clock, at least their known value; one key twice agrees.
		for i := range 3 {
			if vals[i] < uint64(floor) {
				t.Fatalf("ReadRecords created epoch %q = %d, want the store's clock (%d) or more", epochs[i].Key, vals[i], floor)
			}
		}
		if vals[3] < far || vals[4] != vals[1] {
			t.Fatalf("ReadRecords epochs = %v: want a created value of at least the known %d, and one key read twice to agree", vals, far)
		}
		if got, _ := mustGet(t, ctx, st, "{e}bad"); string(got) == "not an epoch" {
			t.Fatal("ReadRecords left bytes that are not an epoch in place")
		}
		// As with LoadEpochs: stored values come back, a known value above
		// the stored one raises it, in the order of the ops.
		raised := vals[1] + 1_000_000
		again, none, err := f.ReadRecords(ctx, []tier.EpochOp{{Key: "{e}forever"}, {Key: "{e}forever", Known: raised}, {Key: "{e}forever"}, {Key: "{e}bad"}, {Key: "{e}known"}}, nil)
		if err != nil || len(none) != 0 {
			t.Fatalf("ReadRecords of epochs only = (%v, %v, %v)", again, none, err)
		}
		if want := []uint64{vals[1], raised, raised, vals[2], vals[3]}; !slices.Equal(again, want) {
			t.Fatalf("ReadRecords of stored epochs = %v, want %v", again, want)
		}
		if e, ok := st.(tier.Epochs); ok {
			got, err := e.LoadEpochs(ctx, []tier.EpochOp{{Key: "{e}forever"}, {Key: "{e}bad"}})
			if err != nil || !slices.Equal(got, []uint64{raised, vals[2]}) {
				t.Fatalf("LoadEpochs after ReadRecords = (%v, %v), want [%d %d]", got, err, raised, vals[2])
			}
		}
		// Each op's key gets its own TTL.
		wait.For(t, 10*time.Second, "an epoch ReadRecords created with a 100ms TTL expires", func() bool {
			_, ok := mustGet(t, ctx, st, "{e}short")
			return !ok
		})
		time.Sleep(2 * short)
		after, _, err := f.ReadRecords(ctx, []tier.EpochOp{{Key: "{e}short"}, {Key: "{e}forever"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if after[0] <= vals[0] || after[1] != raised {
			t.Fatalf("ReadRecords after the short epoch expired = %v, want a new value after %d and the kept %d", after, vals[0], raised)
		}
		// An epoch op with a negative TTL fails the whole call: no epoch is
		// written and no lease taken.
		_, _, err = f.ReadRecords(ctx, []tier.EpochOp{{Key: "{n}ok"}, {Key: "{n}neg", TTL: -time.Second}}, []tier.ReadOp{{Key: "{n}x", Lease: leaseOn("{n}x", "t", time.Hour)}})
		if err == nil {
			t.Fatal("ReadRecords with an epoch TTL of -1s: no error")
		}
		wantMissing(t, ctx, st, "{n}ok")
		wantMissing(t, ctx, st, "{n}neg")
		wantMissing(t, ctx, st, leaseOn("{n}x", "", 0).Key)
	})

	t.Run("Invalidate", func(t *testing.T) {
		t.Parallel()
		prefix := s.newPrefix("fenceinv")
		st := s.openPrefix(t, prefix)
		f := st.(tier.Fencer)
		ctx := testCtx(t)
		b, broadcasts := st.(tier.Broadcaster)
		var sub, elsewhere tier.Subscription
		if broadcasts {
			sub = s.subscribe(t, b, "inv")
			// A store of another prefix hears nothing of it.
			other := s.open(t, "fenceinv").(tier.Broadcaster)
			elsewhere = s.subscribe(t, other, "inv")
			t.Cleanup(func() {
				if t.Failed() {
					return
				}
				if err := other.Publish(ctx, "inv", []byte("end")); err != nil {
					t.Errorf("Publish: %v", err)
				}
				if got := nextPayload(t, elsewhere); got != "end" {
					t.Errorf("a store of another prefix received %q: notices are not namespaced", got)
				}
			})
		} else {
			t.Log("the store is not a tier.Broadcaster: notices are not checked")
		}
		now := clockAt(t, f, "{i}k")
		put(t, f, "{i}k", rec(tier.KindValue, now, "v"), tier.Written)
		known, _, err := f.ReadRecords(ctx, []tier.EpochOp{{Key: "{i}e1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		notice := func(before, after string) *tier.Notice {
			return &tier.Notice{Channel: "inv", Before: []byte(before), After: []byte(after)}
		}
		tombs := []tier.TombstoneOp{
			{Key: "{i}k", TTL: time.Hour, Notice: notice("tomb:", ":k")},
			{Key: "{i}missing", TTL: time.Hour},
			{Key: "{i}short", TTL: 100 * time.Millisecond, Notice: notice("", "")},
		}
		far := known[0] + 1_000_000
		bumps := []tier.EpochOp{
			{Key: "{i}e1", Notice: notice("e1:", "")},
			{Key: "{i}e2", Known: far, TTL: time.Hour, Notice: notice("e2:", "!")},
			{Key: "{i}e3", TTL: time.Hour},
		}
		stamps, vals, err := f.Invalidate(ctx, tombs, bumps)
		if err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
		if len(stamps) != len(tombs) || len(vals) != len(bumps) {
			t.Fatalf("Invalidate of %d tombstones and %d epochs returned %d stamps and %d values", len(tombs), len(bumps), len(stamps), len(vals))
		}
		if stamps[0] <= now {
			t.Fatalf("tombstone stamped %d over a record stamped %d", stamps[0], now)
		}
		wantTombstone(t, f, "{i}k", stamps[0])
		wantTombstone(t, f, "{i}missing", stamps[1])
		put(t, f, "{i}k", rec(tier.KindValue, now, "stale"), tier.Fenced)
		if vals[0] <= known[0] || vals[1] <= far || vals[2] < uint64(now) {
			t.Fatalf("Invalidate bumped %v from %d, known %d and nothing: want values after each", vals, known[0], far)
		}
		stored, _, err := f.ReadRecords(ctx, epochOps([]string{"{i}e1", "{i}e2", "{i}e3"}, make([]uint64, 3), 0), nil)
		if err != nil || !slices.Equal(stored, vals) {
			t.Fatalf("ReadRecords of the bumped epochs = (%v, %v), want %v", stored, err, vals)
		}
		if broadcasts {
			// Every notice, with the stamp or value its op made. The order
			// across ops is not part of the contract (on a cluster they come
			// from the nodes of their keys).
			want := []string{
				fmt.Sprintf("tomb:%d:k", stamps[0]),
				fmt.Sprint(stamps[2]),
				fmt.Sprintf("e1:%d", vals[0]),
				fmt.Sprintf("e2:%d!", vals[1]),
			}
			got := make([]string, len(want))
			for i := range got {
				got[i] = nextPayload(t, sub)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("notices of Invalidate = %q, want %q", got, want)
			}
		}
		// Each tombstone has its own TTL.
		wait.For(t, 10*time.Second, "a tombstone with a 100ms TTL expires", func() bool {
			return !readKey(t, f, "{i}short").Found
		})
		wantTombstone(t, f, "{i}k", stamps[0])
		// Bumps alone, and tombstones alone.
		st2, v2, err := f.Invalidate(ctx, nil, []tier.EpochOp{{Key: "{i}e1", Known: vals[0], Notice: notice("again:", "")}})
		if err != nil || len(st2) != 0 || len(v2) != 1 || v2[0] <= vals[0] {
			t.Fatalf("Invalidate of one epoch = (%v, %v, %v), want one value after %d", st2, v2, err, vals[0])
		}
		st3, v3, err := f.Invalidate(ctx, []tier.TombstoneOp{{Key: "{i}k", TTL: time.Hour, Notice: notice("t2:", "")}}, nil)
		if err != nil || len(st3) != 1 || len(v3) != 0 || st3[0] <= stamps[0] {
			t.Fatalf("Invalidate of one tombstone = (%v, %v, %v), want one stamp after %d", st3, v3, err, stamps[0])
		}
		if broadcasts {
			// One key each, so one after the other.
			if got, want := nextPayload(t, sub), fmt.Sprintf("again:%d", v2[0]); got != want {
				t.Fatalf("notice of a bump = %q, want %q", got, want)
			}
			if got, want := nextPayload(t, sub), fmt.Sprintf("t2:%d", st3[0]); got != want {
				t.Fatalf("notice of a tombstone = %q, want %q", got, want)
			}
		}
		// A tombstone without an expiry, or an epoch with a negative TTL,
		// fails the whole call, which writes nothing.
		for _, bad := range []struct {
			tomb, bump time.Duration
		}{{time.Hour, -time.Second}, {0, 0}, {-time.Second, time.Hour}} {
			_, _, err := f.Invalidate(ctx, []tier.TombstoneOp{{Key: "{b}t", TTL: bad.tomb, Notice: notice("bad", "")}}, []tier.EpochOp{{Key: "{b}e", TTL: bad.bump, Notice: notice("bad", "")}})
			if err == nil {
				t.Fatalf("Invalidate with a tombstone TTL of %v and an epoch TTL of %v: no error", bad.tomb, bad.bump)
			}
			wantMissing(t, ctx, st, "{b}t")
			wantMissing(t, ctx, st, "{b}e")
		}
		if broadcasts {
			if err := b.Publish(ctx, "inv", []byte("done")); err != nil {
				t.Fatal(err)
			}
			if got := nextPayload(t, sub); got != "done" {
				t.Fatalf("received %q: a failed Invalidate published its notice", got)
			}
		}
	})

	t.Run("WriteNotices", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "fencewnotice")
		f := st.(tier.Fencer)
		b, ok := st.(tier.Broadcaster)
		if !ok {
			t.Skip("the store is not a tier.Broadcaster: it ignores notices")
		}
		ctx := testCtx(t)
		sub := s.subscribe(t, b, "w")
		notice := func(tag string) *tier.Notice {
			return &tier.Notice{Channel: "w", Before: []byte(tag), After: []byte("/" + tag)}
		}
		now := clockAt(t, f, "{w}k")
		// A failed write publishes nothing. Every other outcome (it was
		// made, refused, or too old) releases its lease and publishes its
		// notice, without a number. One key: one node, so in order.
		writes := []tier.RecordWrite{
			{Key: "{w}k", Record: rec(tier.KindValue, now, "v"), TTL: -time.Second, Notice: notice("negative ttl")},
			{Key: "{w}k", Record: []byte("not a record"), Notice: notice("garbage")},
			{Key: "{w}k", Record: rec(tier.KindValue, now, "v"), Notice: notice("landed")},
			{Key: "{w}k", Record: rec(tier.KindValue, now-1, "older"), Notice: notice("fenced")},
			{Key: "{w}k", Record: rec(tier.KindValue, now-hourMicros, "v"), Horizon: time.Minute, Notice: notice("too old")},
			{Key: "{w}k", Record: rec(tier.KindValue, now+1, "v2")},
			{Key: "{w}k", Record: rec(tier.KindMarker, now+2, ""), Notice: &tier.Notice{Channel: "w"}},
		}
		got, err := f.WriteRecords(ctx, writes)
		if err != nil {
			t.Fatalf("WriteRecords: %v", err)
		}
		outcomes := make([]tier.Outcome, len(got))
		for i, r := range got {
			outcomes[i] = r.Outcome
		}
		if want := []tier.Outcome{tier.Failed, tier.Failed, tier.Written, tier.Fenced, tier.TooOld, tier.Written, tier.Fenced}; !slices.Equal(outcomes, want) {
			t.Fatalf("outcomes %v, want %v", outcomes, want)
		}
		for _, want := range []string{"landed/landed", "fenced/fenced", "too old/too old", ""} {
			if got := nextPayload(t, sub); got != want {
				t.Fatalf("notice %q, want %q (a failed write publishes nothing)", got, want)
			}
		}
		if !s.opts.NotAtomic {
			// With a release: the notice follows it.
			r := readLeased(t, f, "{w}l", "a", time.Hour)
			if !r.Leased {
				t.Fatal("ReadRecords of a missing key did not take the free lease")
			}
			writeRecords(t, f, tier.RecordWrite{Key: "{w}l", Record: rec(tier.KindValue, r.Now, "v"), Release: leaseOn("{w}l", "a", time.Hour), Notice: notice("released")})
			if got := nextPayload(t, sub); got != "released/released" {
				t.Fatalf("notice %q, want %q", got, "released/released")
			}
			if !readRecords(t, f, tier.ReadOp{Key: "{w}probe", Lease: &tier.Lease{Key: leaseOn("{w}l", "", 0).Key, Token: "b", TTL: time.Hour}})[0].Leased {
				t.Fatal("the lease was still held after the write's notice arrived")
			}
		}
		if err := b.Publish(ctx, "w", []byte("end")); err != nil {
			t.Fatal(err)
		}
		if got := nextPayload(t, sub); got != "end" {
			t.Fatalf("received %q after the notices", got)
		}
	})

	if s.opts.NotAtomic {
		t.Log("the store's records are not atomic: leases and races are not tested")
		return
	}

	t.Run("LeaseOnlyWithoutRecord", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "lease")
		f := st.(tier.Fencer)
		ctx := testCtx(t)
		// A missing key: the lease is taken, once.
		k := "{l1}e"
		r := readLeased(t, f, k, "a", time.Hour)
		if r.Found || !r.Leased || r.Repaired {
			t.Fatalf("ReadRecords of a missing key with a free lease = %+v, want a miss and the lease", r)
		}
		if r := readLeased(t, f, k, "b", time.Hour); r.Leased {
			t.Fatal("ReadRecords took a lease another token holds")
		}
		if r := readLeased(t, f, k, "a", time.Hour); r.Leased {
			t.Fatal("ReadRecords took a lease its own token already holds (want SET NX semantics)")
		}
		// A value or a marker: no lease (and the lease stays free).
		now := clockAt(t, f, "{l2}v")
		put(t, f, "{l2}v", rec(tier.KindValue, now, "v"), tier.Written)
		put(t, f, "{l2}m", rec(tier.KindMarker, now, ""), tier.Written)
		for _, k := range []string{"{l2}v", "{l2}m"} {
			if r := readLeased(t, f, k, "a", time.Hour); !r.Found || r.Leased {
				t.Fatalf("ReadRecords of %q holding a record = %+v, want the record and no lease", k, r)
			}
			probe := readRecords(t, f, tier.ReadOp{Key: "{l2}probe", Lease: leaseOn(k, "p", time.Hour)})[0]
			if !probe.Leased {
				t.Fatalf("the lease of %q was taken by a read that found a record", k)
			}
		}
		// A tombstone, or bytes that are not a record: the lease is taken.
		tombstone(t, f, time.Hour, "{l3}t")
		mustSet(t, ctx, st, "{l3}g", []byte("garbage"), 0)
		for _, k := range []string{"{l3}t", "{l3}g"} {
			if r := readLeased(t, f, k, "a", time.Hour); !r.Found || !r.Leased {
				t.Fatalf("ReadRecords of %q (no value or marker) = %+v, want the bytes and the lease", k, r)
			}
		}
	})

	t.Run("LeaseGeneration", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "leasegen").(tier.Fencer)
		now := clockAt(t, f, "{g}v")
		put(t, f, "{g}v", recGen(tier.KindValue, now, 7, "v"), tier.Written)
		put(t, f, "{g}m", recGen(tier.KindMarker, now, 7, ""), tier.Written)
		stamp := tombstone(t, f, time.Hour, "{g}f")[0]
		var after int64
		wait.For(t, 10*time.Second, "the store's clock passes the tombstone's stamp", func() bool {
			after = clockAt(t, f, "{g}f")
			return after > stamp
		})
		put(t, f, "{g}f", recGen(tier.KindValue, after, 7, "fenced"), tier.Written) // stored as a fenced value
		g1 := uint64(1<<63 | 1)
		put(t, f, "{g}hi", recGen(tier.KindValue, now, g1, "hi"), tier.Written)
		for _, c := range []struct {
			key       string
			gen, miss uint64 // its generation, and another
		}{{"{g}v", 7, 8}, {"{g}m", 7, 8}, {"{g}f", 7, 8}, {"{g}hi", g1, g1 ^ 1<<62}} {
			stored := readKey(t, f, c.key).Value
			// Its own generation, or 0 (any): the record is live and the
			// lease stays free.
			for _, gen := range []uint64{c.gen, 0} {
				r := readRecords(t, f, tier.ReadOp{Key: c.key, Gen: gen, Lease: leaseOn(c.key, "a", time.Hour)})[0]
				if !r.Found || r.Leased {
					t.Fatalf("ReadRecords of %s with Gen %d = %+v, want the record and no lease", showRecord(stored), gen, r)
				}
			}
			// Another generation: the record is stale for the reader, who
			// takes the lease (and still gets the bytes), once.
			r := readRecords(t, f, tier.ReadOp{Key: c.key, Gen: c.miss, Lease: leaseOn(c.key, "b", time.Hour)})[0]
			if !r.Found || string(r.Value) != string(stored) || !r.Leased {
				t.Fatalf("ReadRecords of %s with Gen %d = %+v, want the bytes and the lease", showRecord(stored), c.miss, r)
			}
			if r := readRecords(t, f, tier.ReadOp{Key: c.key, Gen: c.miss + 1, Lease: leaseOn(c.key, "c", time.Hour)})[0]; r.Leased {
				t.Fatalf("ReadRecords took a lease token b already holds")
			}
		}
		// A tombstone is live for no generation.
		for i, gen := range []uint64{0, 7} {
			k := fmt.Sprintf("{g}t%d", i)
			tombstone(t, f, time.Hour, k)
			if r := readRecords(t, f, tier.ReadOp{Key: k, Gen: gen, Lease: leaseOn(k, "a", time.Hour)})[0]; !r.Found || !r.Leased {
				t.Fatalf("ReadRecords of a tombstone with Gen %d = %+v, want the lease", gen, r)
			}
		}
	})

	t.Run("LeaseTakeover", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "leasetake").(tier.Fencer)
		k, probe := "{lt}e", "{lt}probe"
		lk := leaseOn(k, "", 0).Key
		ask := func(token string, gen uint64) bool {
			t.Helper()
			return readRecords(t, f, tier.ReadOp{Key: probe, Lease: &tier.Lease{Key: lk, Token: token, TTL: time.Hour, Gen: gen}})[0].Leased
		}
		if !ask("a", 5) {
			t.Fatal("a free lease was not taken")
		}
		// Its own generation and an unknown one wait for the holder.
		if ask("b", 5) || ask("c", 0) {
			t.Fatal("a lease of generation 5 was taken over by a read of generation 5 or of an unknown one")
		}
		// Another known generation takes it over.
		if !ask("d", 9) {
			t.Fatal("a lease of generation 5 was not taken over by a read of generation 9")
		}
		if l, ok := f.(tier.Locker); ok {
			ctx := context.Background()
			if got, err := l.Unlock(ctx, lk, "a"); err != nil || got {
				t.Fatalf("Unlock by the holder taken over = %v, %v; want false", got, err)
			}
			if got, err := l.Extend(ctx, lk, "d", time.Hour); err != nil || !got {
				t.Fatalf("Extend by the holder of a lease with a generation = %v, %v; want true", got, err)
			}
			if got, err := l.Unlock(ctx, lk, "d"); err != nil || !got {
				t.Fatalf("Unlock by the holder of a lease with a generation = %v, %v; want true", got, err)
			}
		}
		// A lease of unknown generation is taken over by none, until its
		// holder tags it.
		if !ask("e", 0) || ask("f", 9) {
			t.Fatal("a lease of unknown generation was not taken, or was taken over")
		}
		tg, ok := f.(tier.LeaseTagger)
		if !ok {
			return
		}
		ctx := context.Background()
		if got, err := tg.TagLease(ctx, lk, "x", 3, time.Hour); err != nil || got {
			t.Fatalf("TagLease by a token that does not hold the lease = %v, %v; want false", got, err)
		}
		if _, err := tg.TagLease(ctx, lk, "e", 0, time.Hour); err == nil {
			t.Fatal("TagLease with generation 0 did not fail")
		}
		if got, err := tg.TagLease(ctx, lk, "e", 3, time.Hour); err != nil || !got {
			t.Fatalf("TagLease by the holder = %v, %v; want true", got, err)
		}
		if ask("g", 3) || !ask("h", 9) {
			t.Fatal("a lease tagged 3 was taken over by generation 3, or not by generation 9")
		}
	})

	t.Run("LeaseRelease", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "leaserel").(tier.Fencer)
		k, probe := "{r1}e", "{r1}probe"
		lk := leaseOn(k, "", 0).Key
		held := func(token string) bool {
			t.Helper()
			return !readRecords(t, f, tier.ReadOp{Key: probe, Lease: &tier.Lease{Key: lk, Token: token, TTL: time.Hour}})[0].Leased
		}
		r := readLeased(t, f, k, "a", time.Hour)
		if !r.Leased {
			t.Fatal("ReadRecords of a missing key did not take the free lease")
		}
		// Another token's release leaves the lease.
		put1 := tier.RecordWrite{Key: k, Record: rec(tier.KindValue, r.Now, "v"), Release: leaseOn(k, "b", time.Hour)}
		if out := writeRecords(t, f, put1); out[0] != tier.Written {
			t.Fatalf("write with a release: %s, want Written", outcomeName(out[0]))
		}
		if !held("probe-1") {
			t.Fatal("a write whose release named another token released the lease")
		}
		// The holder's release frees it.
		put2 := tier.RecordWrite{Key: k, Record: rec(tier.KindValue, r.Now+1, "v2"), Release: leaseOn(k, "a", time.Hour)}
		if out := writeRecords(t, f, put2); out[0] != tier.Written {
			t.Fatalf("write with a release: %s, want Written", outcomeName(out[0]))
		}
		if held("probe-2") {
			t.Fatal("the holder's write did not release its lease")
		}

		// A refused write releases too: Fenced, and TooOld.
		k2 := "{r2}e"
		stamp := tombstone(t, f, time.Hour, k2)[0]
		if !readLeased(t, f, k2, "a", time.Hour).Leased {
			t.Fatal("ReadRecords of a tombstoned key did not take the free lease")
		}
		out := writeRecords(t, f, tier.RecordWrite{Key: k2, Record: rec(tier.KindValue, stamp, "v"), Release: leaseOn(k2, "a", time.Hour)})
		if out[0] != tier.Fenced {
			t.Fatalf("write stamped at the tombstone: %s, want Fenced", outcomeName(out[0]))
		}
		if !readLeased(t, f, k2, "b", time.Hour).Leased {
			t.Fatal("a Fenced write did not release its lease")
		}
		now := clockAt(t, f, k2)
		out = writeRecords(t, f, tier.RecordWrite{Key: k2, Record: rec(tier.KindValue, now-hourMicros, "v"), Horizon: time.Minute, Release: leaseOn(k2, "b", time.Hour)})
		if out[0] != tier.TooOld {
			t.Fatalf("write of an hour-old stamp with a 1m Horizon: %s, want TooOld", outcomeName(out[0]))
		}
		if !readLeased(t, f, k2, "c", time.Hour).Leased {
			t.Fatal("a TooOld write did not release its lease")
		}
	})

	t.Run("LeaseExpires", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "leasettl").(tier.Fencer)
		if !readLeased(t, f, "{x}e", "a", 100*time.Millisecond).Leased {
			t.Fatal("ReadRecords did not take a free lease")
		}
		wait.For(t, 10*time.Second, "another token takes the lease once it expired", func() bool {
			return readLeased(t, f, "{x}e", "b", time.Hour).Leased
		})
	})

	t.Run("LeaseRepaired", func(t *testing.T) {
		t.Parallel()
		st := s.open(t, "leaserepair")
		f := st.(tier.Fencer)
		ctx := testCtx(t)
		// A lease without an expiry would block the key forever.
		k := "{p}e"
		mustSet(t, ctx, st, leaseOn(k, "", 0).Key, []byte("stale"), 0)
		r := readLeased(t, f, k, "a", time.Hour)
		if !r.Leased || !r.Repaired || r.Found {
			t.Fatalf("ReadRecords with a lease key that never expires = %+v, want it replaced (Repaired) and the lease taken", r)
		}
		if r := readLeased(t, f, k, "b", time.Hour); r.Leased || r.Repaired {
			t.Fatalf("ReadRecords after the repair = %+v: the new lease must hold, with its expiry", r)
		}
		if l, ok := st.(tier.Locker); ok {
			if ok, err := l.Unlock(ctx, leaseOn(k, "", 0).Key, "a"); err != nil || !ok {
				t.Fatalf("Unlock of the lease ReadRecords took = (%v, %v), want (true, nil)", ok, err)
			}
		}
		// A lease with an expiry is a lease, whatever token it holds.
		k = "{p}f"
		mustSet(t, ctx, st, leaseOn(k, "", 0).Key, []byte("someone"), time.Hour)
		if r := readLeased(t, f, k, "a", time.Hour); r.Leased || r.Repaired {
			t.Fatalf("ReadRecords with a lease held by another token = %+v, want no lease and no repair", r)
		}
	})

	t.Run("LeaseNeedsTTL", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "leasebad").(tier.Fencer)
		ctx := testCtx(t)
		// release releases the lease of key held by token, with a write
		// that its Horizon refuses.
		release := func(key, token string) {
			t.Helper()
			w := tier.RecordWrite{Key: key, Record: rec(tier.KindValue, 1, ""), Horizon: time.Minute, Release: leaseOn(key, token, time.Hour)}
			if out := writeRecords(t, f, w); out[0] != tier.TooOld {
				t.Fatalf("write stamped 1 with a 1m Horizon: %s, want TooOld", outcomeName(out[0]))
			}
		}
		for _, ttl := range []time.Duration{0, -time.Second} {
			ops := []tier.ReadOp{
				{Key: "{n}a", Lease: leaseOn("{n}a", "t", time.Hour)},
				{Key: "{n}b", Lease: leaseOn("{n}b", "t", ttl)},
			}
			_, got, err := f.ReadRecords(ctx, nil, ops)
			if err == nil {
				if len(got) != 2 || got[1].Err == nil || got[1].Leased {
					t.Fatalf("ReadRecords with a lease TTL of %v = %+v, want an error", ttl, got)
				}
				if got[0].Leased {
					release("{n}a", "t")
				}
				continue
			}
			// The call failed as a whole: it took no lease the caller
			// cannot know about.
			if !readLeased(t, f, "{n}a", "other", time.Hour).Leased {
				t.Fatalf("ReadRecords failed (%v) but took the lease of another of its keys", err)
			}
			release("{n}a", "other")
			if !readLeased(t, f, "{n}b", "other", time.Hour).Leased {
				t.Fatalf("ReadRecords failed (%v) but took a lease with a TTL of %v", err, ttl)
			}
			release("{n}b", "other")
		}
	})

	t.Run("ExactlyOneLeaseHolder", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "leaserace").(tier.Fencer)
		ctx := testCtx(t)
		const n, rounds = 30, 10
		for round := range rounds {
			key := fmt.Sprintf("{race%d}e", round)
			var wins atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, got, err := f.ReadRecords(ctx, nil, []tier.ReadOp{{Key: key, Lease: leaseOn(key, fmt.Sprintf("token-%d", i), time.Hour)}})
					if err != nil || got[0].Err != nil {
						t.Errorf("ReadRecords: %v %v", err, got)
						return
					}
					if got[0].Leased {
						wins.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if got := wins.Load(); got != 1 {
				t.Fatalf("round %d: %d of %d concurrent reads took the lease, want exactly 1", round, got, n)
			}
		}
	})

	t.Run("RacingWritesNewestHolds", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fencerace").(tier.Fencer)
		ctx := testCtx(t)
		const n, rounds = 20, 10
		for round := range rounds {
			key := fmt.Sprintf("k%d", round)
			base := clockAt(t, f, key)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					w := tier.RecordWrite{Key: key, Record: rec(tier.KindValue, base+int64(i), fmt.Sprint(i))}
					if got, err := f.WriteRecords(ctx, []tier.RecordWrite{w}); err != nil || got[0].Err != nil {
						t.Errorf("WriteRecords: %v %v", err, got)
					}
				}()
			}
			close(start)
			wg.Wait()
			if t.Failed() {
				return
			}
			wantRecord(t, f, key, rec(tier.KindValue, base+n-1, fmt.Sprint(n-1)))
		}
	})

	t.Run("RacingInvalidationWins", func(t *testing.T) {
		t.Parallel()
		f := s.open(t, "fenceinval").(tier.Fencer)
		ctx := testCtx(t)
		// A load read the key, then its write and an invalidation race:
		// whichever reaches the store first, the tombstone is what stays.
		const rounds = 50
		for round := range rounds {
			key := fmt.Sprintf("{i%d}k", round)
			stamp := clockAt(t, f, key)
			var wg sync.WaitGroup
			wg.Add(2)
			start := make(chan struct{})
			var tomb int64
			go func() {
				defer wg.Done()
				<-start
				got, _, err := f.Invalidate(ctx, tombstoneOps(time.Hour, key), nil)
				if err != nil {
					t.Errorf("Invalidate: %v", err)
					return
				}
				tomb = got[0]
			}()
			go func() {
				defer wg.Done()
				<-start
				w := tier.RecordWrite{Key: key, Record: rec(tier.KindValue, stamp, "stale")}
				if got, err := f.WriteRecords(ctx, []tier.RecordWrite{w}); err != nil || got[0].Err != nil {
					t.Errorf("WriteRecords: %v %v", err, got)
				}
			}()
			close(start)
			wg.Wait()
			if t.Failed() {
				return
			}
			r := readKey(t, f, key)
			if c, ok := tier.ParseRecord(r.Value); !ok || c.Kind != tier.KindTombstone {
				t.Fatalf("round %d: after a write stamped %d raced a tombstone stamped %d, the key holds %s", round, stamp, tomb, showRecord(r.Value))
			}
		}
	})
}
