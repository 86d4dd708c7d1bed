// Package cbor is an agentcache.Codec that stores results in L2 and
// snapshots as CBOR (RFC 8949), through github.com/fxamacker/cbor/v2:
//
//	cache, err := agentcache.New(agentcache.Options{L2: store, Codec: cbor.Codec{}})
//
// # What round-trips
//
// Every tier returns the same value for a key (agentcache's fidelity
// contract): agentcache keeps in L1 the value encoded and decoded once, and
// Unmarshal of the same bytes gives values that are reflect.DeepEqual and,
// where comparable, ==. Beyond that, a value of a type CheckType accepts
// comes back deeply equal to the one written, with these exceptions, the
// same on every tier:
//
//   - A time.Time keeps its instant (to the nanosecond) and its UTC offset,
//     but not its zone's name or monotonic reading: it comes back in UTC
//     for an offset of zero, else in a fixed zone this process keeps for
//     that offset. The zero time is written as null, so behind a pointer
//     or in an interface{} it comes back as nil.
//   - Values held in an interface{} come back as CBOR's generic types:
//     non-negative integers as uint64, negative ones as int64, floats as
//     float64, byte strings as []byte, maps as map[string]any, arrays as
//     []any, times as time.Time, big integers as big.Int.
//   - A field tagged omitempty that is empty (an empty slice or map) comes
//     back as its zero value (nil).
//
// Integers of every width keep every value (int64 and uint64 extremes
// included), floats keep their width and bits (±Inf too), nil and empty
// slices and maps stay nil and empty, []byte is a byte string (byte for
// byte), strings come back byte for byte (invalid UTF-8 included), and
// json.RawMessage is carried as its bytes, unchanged. Struct fields are
// named by their cbor tag, else their json tag, else their Go name;
// embedded structs promote their fields as in encoding/json. A type with
// MarshalCBOR and UnmarshalCBOR, or MarshalBinary and UnmarshalBinary
// (netip.Addr, say), encodes itself; MarshalJSON and MarshalText are not
// used. The encoding is deterministic: a value encodes to the same bytes
// every time (map keys in bytewise order of their encodings, definite
// lengths, shortest integer heads), so a snapshot that re-encodes L1
// writes what L2 holds.
//
// Marshal refuses NaN (no copy of it would be equal to it), a time outside
// years 0 to 9999, or with an offset of 24 hours or more or with seconds
// (RFC 3339 cannot write them), and a value nested deeper than twice
// MaxNestedLevels, cyclic ones included (the library would overflow the
// stack on a cycle). agentcache returns such a value to its caller
// uncached and counts it (Stats.Unencodable), as it does a value nested
// deeper than MaxNestedLevels, which Unmarshal refuses.
//
// # What CheckType refuses
//
// CheckType (agentcache.TypeChecker) refuses, before any call, a result
// type with a part that would not come back as it went in, naming the part:
// an unexported field, one tagged "-", one hidden by another field of the
// same name; a func, channel, complex number, unsafe.Pointer or uintptr;
// an interface with methods (error, say); a pointer to a pointer, an
// interface, a slice or a map (a nil behind it comes back as a nil
// pointer); a map keyed by anything but strings, booleans, integers,
// floats and byte arrays; a type with one method of the pairs above but
// not the other. agentcache.Wrap then fails with an error wrapping
// agentcache.ErrResultType.
//
// # Hostile bytes
//
// Unmarshal never panics on any input and bounds its work: it checks that
// the bytes are one well-formed data item before decoding, and refuses
// nesting deeper than MaxNestedLevels, arrays longer than
// MaxArrayElements, maps larger than MaxMapPairs, indefinite lengths,
// duplicate map keys, NaN and trailing bytes. Every length is checked
// against the input first, so memory is a small multiple of the input's
// size and of the decoded type's element sizes. Bytes it decodes encode
// and decode again to an equal value.
//
// # Why CBOR and not msgpack
//
// Measured with the benchmarks of bench/codeccmp (cd bench && go test
// -run '^$' -bench . -benchmem ./codeccmp; Go 1.26, 2 cores of an AMD EPYC), Marshal then
// Unmarshal of the bench suite's product (about 100 bytes in either
// format) and of a result of 100 of them:
//
//	                                   product                  100 products
//	this Codec                         705-800 ns  408 B  10    42 µs  32 KB  705
//	fxamacker/cbor v2.10.0, defaults   605-780 ns  408 B  10    43 µs  32 KB  705
//	vmihailenco/msgpack v5.4.1,
//	  sorted keys, json tags          1170-1260 ns  880 B  16    61 µs  63 KB  722
//	  defaults                         790-1030 ns  560 B  12    61 µs  63 KB  718
//	agentcache.JSON                   1960-2180 ns  720 B  16   133 µs  56 KB  817
//
// (ns/op, B/op, allocs/op.) CBOR is faster and allocates half as much, and
// its configuration costs nothing; msgpack set up for determinism costs it
// half again. On fidelity CBOR carries what the contract needs as options:
// a time's offset (msgpack's time extension keeps only the instant and
// decodes in Local), limits on nesting, array and map sizes for hostile
// bytes (msgpack has no nesting limit), duplicate-key errors, and
// decoding interface{} maps as map[string]any; it reads json tags without
// configuration. fxamacker/cbor implements a standard (RFC 8949) and is
// maintained: the module proxy dates v2.10.0 2026-10-28, and msgpack's
// latest, v5.4.1, 2023-10-26.
package cbor
