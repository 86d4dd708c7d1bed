package tiertest

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcache/agentcache-go/tier"
)

// Records in this file are built with tier.AppendRecord and stamped with
// readings of the store's clock (ReadRecords' Now), in microseconds.

// hourMicros is an hour in the unit of record stamps.
const hourMicros = int64(time.Hour / time.Microsecond)

// rec builds a record.
func rec(kind tier.Kind, stamp int64, payload string) []byte {
	return tier.AppendRecord(nil, kind, stamp, []byte(payload))
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
	kind, stamp, payload, ok := tier.ParseRecord(b)
	if !ok {
		return "non-record " + show(b)
	}
	name := map[tier.Kind]string{tier.KindValue: "value", tier.KindMarker: "marker", tier.KindTombstone: "tombstone", tier.KindFencedValue: "fenced value"}[kind]
	return fmt.Sprintf("%s@%d %s", name, stamp, show(payload))
}

// readRecords reads ops, failing t on an error of the call or of any key.
func readRecords(t *testing.T, f tier.Fencer, ops ...tier.ReadOp) []tier.ReadResult {
	t.Helper()
	got, err := f.ReadRecords(testCtx(t), ops)
	if err != nil {
		t.Fatalf("ReadRecords of %d keys: %v", len(ops), err)
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
	got, err := f.Tombstone(testCtx(t), keys, ttl)
	if err != nil {
		t.Fatalf("Tombstone(%q): %v", keys, err)
	}
	if len(got) != len(keys) {
		t.Fatalf("Tombstone returned %d stamps for %d keys", len(got), len(keys))
	}
	return got
}

// wantTombstone fails t unless key holds the tombstone stamped stamp: the
// header alone.
func wantTombstone(t *testing.T, f tier.Fencer, key string, stamp int64) {
	t.Helper()
	wantRecord(t, f, key, tier.AppendRecord(nil, tier.KindTombstone, stamp, nil))
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
			eventually(t, "record "+k+" with a short TTL expires", func() bool {
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
		eventually(t, "record rewritten with a 100ms TTL expires", func() bool {
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
			_, st, _, ok := tier.ParseRecord(r.Value)
			if !r.Found || !ok {
				t.Fatalf("ReadRecords(%q) after a replacing write: found %v, a record %v", key, r.Found, ok)
			}
			return st
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
		eventually(t, "the store's clock passes the tombstone's stamp", func() bool {
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
			eventually(t, "tombstone "+k+" with a short TTL expires", func() bool {
				return !readKey(t, f, k).Found
			})
		}
		// Once it expired the tombstone fences nothing (what Horizon is for).
		put(t, f, "k", rec(tier.KindValue, before, "v"), tier.Written)
		for _, ttl := range []time.Duration{-time.Second, 0} {
			if _, err := f.Tombstone(ctx, []string{"k"}, ttl); err == nil {
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
			append([]byte("\xA5\x09"), make([]byte, 8)...),
			append([]byte("\xA5\x00"), make([]byte, 8)...),
			append([]byte("\xAC\x01\x01"), make([]byte, 12)...),
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
		eventually(t, "the store's clock moves", func() bool { return clockAt(t, f, "k") > c })
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
			if got, err := f.ReadRecords(ctx, ops); err != nil || len(got) != 0 {
				t.Errorf("ReadRecords(%#v) = (%v, %v), want no results and no error", ops, got, err)
			}
		}
		for _, writes := range [][]tier.RecordWrite{nil, {}} {
			if got, err := f.WriteRecords(ctx, writes); err != nil || len(got) != 0 {
				t.Errorf("WriteRecords(%#v) = (%v, %v), want no results and no error", writes, got, err)
			}
		}
		for _, keys := range [][]string{nil, {}} {
			if got, err := f.Tombstone(ctx, keys, time.Hour); err != nil || len(got) != 0 {
				t.Errorf("Tombstone(%#v) = (%v, %v), want no stamps and no error", keys, got, err)
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
		eventually(t, "another token takes the lease once it expired", func() bool {
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
			got, err := f.ReadRecords(ctx, ops)
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
					got, err := f.ReadRecords(ctx, []tier.ReadOp{{Key: key, Lease: leaseOn(key, fmt.Sprintf("token-%d", i), time.Hour)}})
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
				got, err := f.Tombstone(ctx, []string{key}, time.Hour)
				if err != nil {
					t.Errorf("Tombstone: %v", err)
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
			if kind, _, _, ok := tier.ParseRecord(r.Value); !ok || kind != tier.KindTombstone {
				t.Fatalf("round %d: after a write stamped %d raced a tombstone stamped %d, the key holds %s", round, stamp, tomb, showRecord(r.Value))
			}
		}
	})
}
