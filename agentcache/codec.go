package agentcache

import (
	"encoding/json"
	"errors"
	"reflect"
	"time"

	"github.com/agentcache/agentcache-go/internal/jsontype"
	"github.com/agentcache/agentcache-go/internal/keyspace"
)

// Codec turns values into the bytes stored in L2 and back. Every tier
// returns the same value for a key because L1 holds what L2 would: a loaded
// value is encoded and decoded back once, and that copy is what L1 keeps and
// every caller gets, the caller whose call ran the tool included. So a Codec
// runs on loads, L2 reads and writes, and snapshots, never on an L1 hit.
// Implementations must be safe for concurrent use; a Codec that knows which
// types it cannot carry says so by implementing [TypeChecker].
type Codec interface {
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec: encoding/json. It is slow next to a binary
// codec but readable with redis-cli and tolerant of added fields.
type JSON struct{}

// CheckType implements [TypeChecker]. It refuses a type with a part that
// encoding/json leaves out (an unexported field, one tagged `json:"-"`, one
// hidden by another field of the same JSON name), cannot encode (a func, a
// channel, a complex number, a map keyed by anything but strings, integers
// or text marshalers) or cannot decode into (an interface with methods,
// such as error; a type with MarshalJSON or MarshalText but not their
// Unmarshal). Values held in an interface{} come back as JSON's own types
// (float64, map[string]any, ...) from every tier alike.
func (JSON) CheckType(t reflect.Type) error { return jsontype.Check(t, jsontype.Result) }

// Marshal implements Codec.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec. A time.Time comes back with its instant and
// offset, without its zone's name or monotonic reading; a time of offset
// zero comes back in UTC, and times with one other offset share one
// *time.Location, so that two decodes of a value are ==, and a decoded
// value encodes to the same bytes again (as a snapshot re-encodes L1).
func (JSON) Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	jsontype.InternZones(reflect.ValueOf(v))
	return nil
}

// L2 values travel in the envelope of package internal/keyspace.
const (
	envHeader     = keyspace.HeaderLen
	kindValue     = keyspace.KindValue
	kindMissing   = keyspace.KindNotFound
	kindTombstone = keyspace.KindTombstone
)

var (
	errBadEnvelope = errors.New("agentcache: undecodable L2 value")
	errFarExpiry   = errors.New("agentcache: an L2 value fresh for longer than its resource's TTL")
)

// maxClockSkew is how far ahead of this instance's clock another writer's
// may be: an entry fresh for longer than its TTL plus this was not made by
// the cache.
const maxClockSkew = time.Minute

// plausibleExpiry reports whether an entry's freshness is one its writer
// could have given it: at most the resource's TTL (or negative TTL) from
// now, give or take clock skew. The key-value API's entries have TTLs of
// their callers' choosing, and are not checked.
func (c *Cache) plausibleExpiry(lk *lookup, env keyspace.Envelope) bool {
	if lk.r.id == "" || env.FreshUntil.IsZero() {
		return true
	}
	life := lk.r.ttl
	if env.Kind == kindMissing {
		life = lk.r.negTTL
	}
	return env.FreshUntil.Before(c.opts.Now().Add(life + maxClockSkew))
}

// TypeChecker is implemented by a Codec that can tell from a type alone
// whether its values survive the trip through it. A result type it refuses
// is refused by Wrap (and by Get on its first miss, and by Set) with an
// error wrapping ErrResultType that names the part, instead of being served
// differently from L1 and from L2. A Codec without it is trusted with every
// type; a value it cannot encode or decode at run time is returned to its
// caller uncached and counted (Stats.Unencodable).
type TypeChecker interface {
	CheckType(t reflect.Type) error
}

// ErrResultType is wrapped by the error for a result type the Codec cannot
// carry (see TypeChecker).
var ErrResultType = errors.New("agentcache: a result type the codec cannot carry")

// checkResult reports whether the codec carries values of t, once per type.
func (c *Cache) checkResult(t reflect.Type) error {
	tc, ok := c.codec.(TypeChecker)
	if !ok || t == nil {
		return nil
	}
	if v, ok := c.checked.Load(t); ok {
		err, _ := v.(error)
		return err
	}
	var err error
	if cerr := tc.CheckType(t); cerr != nil {
		err = &typeError{cerr}
	}
	c.checked.Store(t, err)
	return err
}

// typeError is a TypeChecker's refusal, which is an ErrResultType.
type typeError struct{ err error }

func (e *typeError) Error() string   { return "result type: " + e.err.Error() }
func (e *typeError) Unwrap() []error { return []error{ErrResultType, e.err} }

// roundTrip encodes a loaded value and decodes it back, so that L1 holds,
// and every caller gets, what an L2 or snapshot hit returns. It reports
// false, counted and logged, when the codec cannot encode v or decode its
// bytes: v is then returned to its callers but not cached.
func roundTrip[T any](c *Cache, rs *resState, v T) (T, []byte, bool) {
	payload, err := c.codec.Marshal(v)
	if err == nil {
		var out T
		if err = c.codec.Unmarshal(payload, &out); err == nil {
			return out, payload, true
		}
	}
	c.stats.unencodable.Add(1)
	c.warn("encode", "agentcache: "+rs.name()+": a result the codec cannot carry was returned uncached", err)
	return v, nil, false
}
