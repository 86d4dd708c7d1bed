package cbor

import (
	"errors"
	"reflect"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

// Limits on what Unmarshal accepts, so that hostile or corrupt L2 bytes
// cost bounded work and memory. Marshal refuses a value nested deeper than
// twice MaxNestedLevels (a cyclic one included); one between the two is
// written, Unmarshal refuses it, and agentcache returns it uncached.
const (
	// MaxNestedLevels is the deepest nesting of arrays, maps and tags
	// (slices, structs, maps, times) in one value.
	MaxNestedLevels = 128
	// MaxArrayElements is the most elements of one array (a slice or an
	// array of a type other than bytes).
	MaxArrayElements = 1 << 20
	// MaxMapPairs is the most pairs of one map (a map, or a struct's fields).
	MaxMapPairs = 1 << 20
)

// Codec is an agentcache.Codec that writes CBOR (RFC 8949) with
// github.com/fxamacker/cbor/v2. Its zero value is ready to use and safe for
// concurrent use; every Codec shares one configuration. See the package
// documentation for what round-trips and what CheckType refuses.
type Codec struct{}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{
		// Deterministic: map keys in bytewise lexical order of their
		// encodings (RFC 8949 section 4.2.1), definite lengths only, the
		// shortest head for every integer and length. Floats keep their Go
		// width, so a float32 decodes to the same float32.
		Sort:          cbor.SortCoreDeterministic,
		ShortestFloat: cbor.ShortestFloatNone,
		IndefLength:   cbor.IndefLengthForbidden,
		// NaN is refused, as encoding/json refuses it: it is not equal to
		// itself, so no decoded copy could be.
		NaNConvert: cbor.NaNConvertReject,
		InfConvert: cbor.InfConvertNone,
		// A big.Int is always a bignum, so that one decoded into an
		// interface{} stays a big.Int when written again.
		BigIntConvert: cbor.BigIntConvertNone,
		// Times are tag 0 text, RFC 3339 with nanoseconds and the offset.
		Time:          cbor.TimeRFC3339Nano,
		TimeTag:       cbor.EncTagRequired,
		NilContainers: cbor.NilContainerAsNull,
		TagsMd:        cbor.TagsAllowed,
		String:        cbor.StringToTextString,
		FieldName:     cbor.FieldNameToTextString,
		// Types that marshal themselves to bytes do so; MarshalText and
		// MarshalJSON are not used (such types are written field by field).
		BinaryMarshaler: cbor.BinaryMarshalerByteString,
		TextMarshaler:   cbor.TextMarshalerNone,
	}.EncMode()
	if err != nil {
		panic("cbor: " + err.Error())
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		TimeTag:           cbor.DecTagOptional,
		MaxNestedLevels:   MaxNestedLevels,
		MaxArrayElements:  MaxArrayElements,
		MaxMapPairs:       MaxMapPairs,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsAllowed,
		IntDec:            cbor.IntDecConvertNone,
		DefaultMapType:    reflect.TypeFor[map[string]any](),
		UTF8:              cbor.UTF8DecodeInvalid, // a Go string is bytes: it comes back byte for byte
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		BigIntDec:         cbor.BigIntDecodeValue,
		NaN:               cbor.NaNDecodeForbidden,
		Inf:               cbor.InfDecodeAllowed,
		BinaryUnmarshaler: cbor.BinaryUnmarshalerByteString,
		TextUnmarshaler:   cbor.TextUnmarshalerNone,
	}.DecMode()
	if err != nil {
		panic("cbor: " + err.Error())
	}
}

// Marshal implements agentcache.Codec. Besides the library's own refusals
// (NaN, a time outside years 0 to 9999, a channel, ...), it refuses a
// time.Time whose UTC offset has seconds, which RFC 3339 cannot write, and a
// value nested deeper than twice MaxNestedLevels (a cyclic one included).
func (Codec) Marshal(v any) ([]byte, error) {
	if v != nil {
		rv := reflect.ValueOf(v)
		if plan(rv.Type()).encodeWalk {
			if err := checkValue(rv, 0); err != nil {
				return nil, err
			}
		}
	}
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, prefixed(err)
	}
	return b, nil
}

// Unmarshal implements agentcache.Codec: it decodes one CBOR data item,
// with nothing after it, into v, a non-nil pointer. Times come back with
// their instant and offset: in UTC for an offset of zero, else in the one
// *time.Location this process keeps for that offset, so that two decodes
// of the same bytes are ==.
func (Codec) Unmarshal(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return prefixed(err)
	}
	rv := reflect.ValueOf(v)
	if plan(rv.Type()).decodeWalk {
		var fx fixer
		fx.intern(rv)
		return fx.err
	}
	return nil
}

// prefixed makes err's message start with the package name, as the
// library's own errors do (but not always the errors of a type's own
// MarshalCBOR or UnmarshalBinary).
func prefixed(err error) error {
	if strings.HasPrefix(err.Error(), "cbor: ") {
		return err
	}
	return &codecError{err}
}

type codecError struct{ err error }

func (e *codecError) Error() string { return "cbor: " + e.err.Error() }
func (e *codecError) Unwrap() error { return e.err }

var errTooDeep = errors.New("cbor: a value nested deeper than twice MaxNestedLevels, or cyclic, which Unmarshal would refuse")
