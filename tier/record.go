package tier

import (
	"bytes"
	"context"
	"encoding/binary"
	"strconv"
	"time"
)

// Records are how a cache keeps its entries in a remote store so that a
// write already in flight can never undo an invalidation that came after it.
//
// Every entry is stored as a record: a short header that carries a kind and
// a stamp, followed by the cache's bytes. The stamp is a reading of the
// store's clock in microseconds: for a value or a marker, taken when the
// load that produced it began (the clock reading of its miss read); for a
// tombstone, when the invalidation was made. A write lands only if the key
// holds no record stamped at or after the write's own stamp, so a load that
// began before an invalidation cannot store its result after the
// invalidation's tombstone, on any instance — whatever the order in which the
// two reach the store. The check and the write are one atomic step in a
// [Fencer]; [Fence] gives any [Remote] the same operations without that
// atomicity.
//
// A record also names its generation: the invalidation epochs its value was
// loaded under, mixed into 64 bits by the cache (0 for a tombstone, which
// belongs to every generation). An entry keeps one key whatever its epochs,
// so a reader that knows the current generation can tell a record of an
// earlier one — invalidated since it was written — and treat it as absent
// ([ReadOp.Gen]), and a reader that learns the epochs in the same round trip
// as the record ([Fencer.ReadRecords]) needs no second one.
//
// Layout of the header (RecordHeaderLen bytes):
//
//	byte 0       magic 0xA5
//	byte 1       kind: 1 value, 2 marker, 3 tombstone, 4 fenced value
//	bytes 2-9    stamp, microseconds of the store's clock, big endian
//	bytes 10-17  generation, big endian
//
// Stores read only the header. What follows is the cache's and is kept
// byte for byte.

// RecordHeaderLen is the length of a record's header.
const RecordHeaderLen = 18

const recordMagic = 0xA5

// Kind is what a record holds.
type Kind byte

// The kinds of record.
const (
	KindValue     Kind = 1 // a cached value
	KindMarker    Kind = 2 // a remembered "not found"; never replaces a value
	KindTombstone Kind = 3 // an exact invalidation: no value, only a stamp
	// KindFencedValue is a value whose stamp is a fence, not its load's
	// start: the stamp of the tombstone (or fence) it replaced, or the
	// store's clock when a replacing write (a Set) landed. Stores write it;
	// writers send KindValue, and readers treat it as a value.
	KindFencedValue Kind = 4
)

// AppendRecord appends a record of kind with stamp, generation gen and
// payload to dst.
func AppendRecord(dst []byte, kind Kind, stamp int64, gen uint64, payload []byte) []byte {
	dst = append(dst, recordMagic, byte(kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(stamp))
	dst = binary.BigEndian.AppendUint64(dst, gen)
	return append(dst, payload...)
}

// Record is a parsed record.
type Record struct {
	Kind    Kind
	Stamp   int64
	Gen     uint64
	Payload []byte // the cache's bytes after the header (aliases the input)
}

// ParseRecord parses b. ok is false for bytes that are not a record (a
// store treats those as absent).
func ParseRecord(b []byte) (r Record, ok bool) {
	if len(b) < RecordHeaderLen || b[0] != recordMagic {
		return Record{}, false
	}
	r.Kind = Kind(b[1])
	if r.Kind < KindValue || r.Kind > KindFencedValue {
		return Record{}, false
	}
	r.Stamp = int64(binary.BigEndian.Uint64(b[2:10]))
	r.Gen = binary.BigEndian.Uint64(b[10:18])
	r.Payload = b[RecordHeaderLen:]
	return r, true
}

// Live reports whether b is a record a reader of generation gen can use: a
// value or marker, of generation gen unless gen is 0.
func Live(b []byte, gen uint64) bool {
	r, ok := ParseRecord(b)
	return ok && r.Kind != KindTombstone && (gen == 0 || r.Gen == gen)
}

// Landed decides whether a write of a record of kind stamped since lands
// over what the key holds (cur, ok false when it holds no record), and as
// which kind and with which stamp the record is stored. Every [Fencer]
// applies these rules:
//
//   - A tombstone or value lands unless the key holds a record stamped at or
//     after it. A tombstone keeps its stamp. A value keeps its stamp too,
//     except over a record that carries a fence (a tombstone, a fenced
//     value, a marker stamped above 0): it is then stored as a fenced value
//     with that fence's stamp, so that the fence outlives the tombstone the
//     value replaced (see [LandedReplace]).
//   - A marker ("not found") never replaces a value of its own generation,
//     and lands over a tombstone, a marker or a value of another generation
//     only when stamped after it. It is stored with the
//     stamp of the record it replaces (0 over nothing): a marker only
//     carries on the fence it found, so that a value whose load began after
//     that fence replaces it whenever it lands, and one that began before
//     it never does.
//
// gen is the write's generation. A write of kind KindFencedValue is taken as
// KindValue. A write with [RecordWrite.Replace] follows [LandedReplace]
// instead.
func Landed(cur []byte, kind Kind, since int64, gen uint64) (storedKind Kind, stored int64, lands bool) {
	if kind == KindFencedValue {
		kind = KindValue
	}
	c, ok := ParseRecord(cur)
	if !ok {
		if kind == KindMarker {
			return KindMarker, 0, true
		}
		return kind, since, true
	}
	ck, cs := c.Kind, c.Stamp
	switch {
	case kind == KindMarker && (ck == KindValue || ck == KindFencedValue) && c.Gen == gen:
		return 0, 0, false
	case cs >= since:
		return 0, 0, false
	case kind == KindMarker:
		return KindMarker, cs, true
	case kind == KindValue && ck != KindValue && cs > 0:
		return KindFencedValue, cs, true
	}
	return kind, since, true
}

// LandedReplace decides whether a replacing write (an explicit Set; see
// [RecordWrite.Replace]) stamped since lands over cur when the store's clock
// reads now. It is refused by a record that carries a fence stamped at or
// after since — a tombstone, or a value or marker that replaced one: an
// invalidation made after the Set — and replaces a load's value whatever its
// stamp. It is stored as a fenced value stamped with the later of since and
// now (and after cur's stamp), so that no load that began before it landed
// can replace it.
func LandedReplace(cur []byte, since, now int64) (storedKind Kind, stored int64, lands bool) {
	stored = max(since, now)
	c, ok := ParseRecord(cur)
	if !ok {
		return KindFencedValue, stored, true
	}
	if c.Kind != KindValue && c.Stamp >= since {
		return 0, 0, false
	}
	return KindFencedValue, max(stored, c.Stamp+1), true
}

// AheadOfClock reports whether cur is a record stamped more than horizon
// after now (the store's clock): no writer made that stamp, so a store
// treats such a record as absent when a write with a Horizon checks it.
// Without this, planted bytes with a far-future stamp would fence their key
// until they expire.
func AheadOfClock(cur []byte, now int64, horizon time.Duration) bool {
	c, ok := ParseRecord(cur)
	return ok && horizon > 0 && c.Stamp-now > horizon.Microseconds()
}

// Restamp returns a copy of the record rec with its stamp set to stamp.
func Restamp(rec []byte, stamp int64) []byte {
	return Rewrite(rec, Kind(rec[1]), stamp)
}

// Rewrite returns a copy of the record rec as kind, stamped stamp (its
// generation and payload unchanged).
func Rewrite(rec []byte, kind Kind, stamp int64) []byte {
	out := append([]byte(nil), rec...)
	out[1] = byte(kind)
	binary.BigEndian.PutUint64(out[2:10], uint64(stamp))
	return out
}

// Lease names a fleet-lock lease, as [Locker] takes it.
type Lease struct {
	Key   string
	Token string        // must not contain a NUL byte
	TTL   time.Duration // > 0
	// Gen is the generation of the entry the lease is asked for in (0:
	// unknown). A [ReadOp] lease of a known generation takes over a lease
	// held for another known generation: its holder is loading an entry
	// that the epochs have moved past (or the asker's are behind, which
	// costs one more load), and waiting for it would only delay the load
	// that can be served. A lease of unknown generation takes over none and
	// is taken over by none.
	Gen uint64
}

// LeaseValue is what a store keeps at a lease key for the lease of token in
// generation gen: the token, then, for a known generation, a NUL byte and
// the generation in base 36. [Locker.TryLock] keeps the bare token.
func LeaseValue(token string, gen uint64) string {
	if gen == 0 {
		return token
	}
	return token + "\x00" + strconv.FormatUint(gen, 36)
}

// LeaseHeld reports whether v, kept at a lease key, is the lease of token.
func LeaseHeld(v []byte, token string) bool {
	return string(v) == token || len(v) > len(token) && string(v[:len(token)]) == token && v[len(token)] == 0
}

// LeaseTakesOver reports whether a [ReadOp] lease in generation gen takes
// over v, a lease held: both are of known generations, and they differ.
func LeaseTakesOver(v []byte, gen uint64) bool {
	i := bytes.IndexByte(v, 0)
	return gen != 0 && i >= 0 && string(v[i+1:]) != strconv.FormatUint(gen, 36)
}

// ReadOp is one key of a [Fencer.ReadRecords] call.
type ReadOp struct {
	Key string
	// Lease, if set, is taken (SET NX semantics, with its TTL) in the same
	// atomic step when Key holds no record [Live] for Gen. A lease key that
	// holds something other than a lease, or a lease without an expiry, is
	// replaced.
	Lease *Lease
	// Gen is the generation the reader expects (0: unknown, when the read
	// also loads the epochs it is made of): a value or marker of another
	// generation does not keep the lease from being taken.
	Gen uint64
}

// ReadResult is what ReadRecords found at one key.
type ReadResult struct {
	Value []byte // the stored bytes, when Found
	Found bool
	// Now is the store's clock (microseconds) when the key was read: the
	// stamp of a load that this read starts.
	Now int64
	// Leased reports that the read took its lease.
	Leased bool
	// Repaired reports that the key or its lease key held data of another
	// type, which the read removed (the key then reads as absent).
	Repaired bool
	// Err reports a failure of this key only (one cluster node down).
	Err error
}

// RecordWrite is one write of [Fencer.WriteRecords].
type RecordWrite struct {
	Key string
	// Record is the whole record (see [AppendRecord]); its stamp orders it.
	Record []byte
	TTL    time.Duration // as in Remote.Set
	// Horizon, if > 0, refuses the write when the store's clock is more than
	// Horizon past the record's stamp: such a write may predate a tombstone
	// that has already expired. A record the key holds stamped more than
	// Horizon ahead of the store's clock is treated as absent (AheadOfClock).
	Horizon time.Duration
	// Release, if set, is a lease released (if its token still holds it)
	// right after the write, landed or refused.
	Release *Lease
	// Replace marks an explicit replacement of the entry (a Set) rather
	// than a load's result: it follows [LandedReplace], not [Landed], and
	// Record must be a value.
	Replace bool
	// Notice, if set, is published once the write is decided (Written,
	// Fenced or TooOld: every outcome but Failed) and its lease released,
	// in the same round trip: it tells the instances waiting on the lease
	// to read again.
	Notice *Notice
	// Floor, if > 0, is a fence the writer knows of (an invalidation it
	// made or heard, at most the record's stamp): a value that lands is
	// stored as a fenced value stamped at least Floor ([WithFloor]), so
	// that readers who know that fence can tell it was loaded after it.
	Floor int64
}

// WithFloor applies a write's Floor to what [Landed] decided for a value:
// the record is stored as a fenced value stamped with the greater of its
// fence and floor (floor is capped at the write's own stamp since).
func WithFloor(kind Kind, stored, since, floor int64) (Kind, int64) {
	if floor <= 0 || (kind != KindValue && kind != KindFencedValue) {
		return kind, stored
	}
	floor = min(floor, since)
	if kind == KindValue {
		return KindFencedValue, floor
	}
	return KindFencedValue, max(stored, floor)
}

// Outcome is what became of one record write.
type Outcome uint8

// The outcomes of a record write.
const (
	Written Outcome = iota // the record is stored
	Fenced                 // the key holds a record stamped at or after it, or a value a marker may not replace
	TooOld                 // the store's clock is past the write's Horizon
	Failed                 // the write's own Err says why
)

// WriteResult is the outcome of one record write.
type WriteResult struct {
	Outcome Outcome
	Err     error // with Failed
}

// Fencer is implemented by stores that keep records atomically: the read
// of a key and its clock (and a lease), and the stamp check and the write,
// are each one atomic step on the store. One round trip per node for a whole
// call, nodes in parallel.
type Fencer interface {
	// ReadRecords loads the epochs (as [Epochs.LoadEpochs] does) and reads
	// each key, its store clock and, where asked, its lease, all in the same
	// round trip, so that a reader who does not know the epochs of a key yet
	// still reads it in one. err reports a failure of the whole call or of
	// an epoch (then the results are nil); a failure of one key is in its
	// ReadResult.
	ReadRecords(ctx context.Context, epochs []EpochOp, ops []ReadOp) ([]uint64, []ReadResult, error)
	// WriteRecords writes each record by the rules of [Landed], releases
	// each write's lease and publishes its Notice. Bytes that are not a
	// record count as absent and are overwritten.
	WriteRecords(ctx context.Context, writes []RecordWrite) ([]WriteResult, error)
	// Invalidate replaces each tombstone's key with a tombstone for its TTL
	// (> 0), stamped with the store's clock (and after any stamp the key
	// held), bumps the epochs (as [Epochs.BumpEpochs] does), publishes
	// every op's Notice with the stamp or value it made, and returns the
	// stamps and the new epoch values: one round trip (per node) for the
	// whole invalidation.
	Invalidate(ctx context.Context, tombs []TombstoneOp, bumps []EpochOp) ([]int64, []uint64, error)
}

// TombstoneOp is one tombstone of [Fencer.Invalidate].
type TombstoneOp struct {
	Key    string
	TTL    time.Duration // > 0: a tombstone without an expiry would fence its key forever
	Notice *Notice       // published with the tombstone's stamp
}
