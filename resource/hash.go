package resource

import (
	"encoding/base64"
	"errors"
	"reflect"
)

// Hash identifies a set of tool arguments: the first 16 bytes of the
// SHA-256 of their canonical form. 128 bits make an accidental collision
// among the arguments one cache ever sees negligible.
type Hash [16]byte

// HashTextLen is the length of a Hash's text form ([Hash.AppendTo]).
const HashTextLen = 22

// AppendTo appends h in unpadded base64url (22 bytes, [A-Za-z0-9_-]) to dst
// and returns the extended slice. The form is safe in Redis keys.
func (h Hash) AppendTo(dst []byte) []byte {
	return base64.RawURLEncoding.AppendEncode(dst, h[:])
}

// String returns h in unpadded base64url, as [Hash.AppendTo] writes it.
func (h Hash) String() string {
	var buf [22]byte
	return string(h.AppendTo(buf[:0]))
}

// HashJSON returns the [Hash] of the canonical form of the JSON value in
// data (see [AppendCanonicalJSON]), so that arguments that differ only in
// key order, white space, string escapes or number spelling hash the same.
// It does not allocate unless it fails.
func HashJSON(data []byte, lim Limits) (Hash, error) {
	s := getState(lim)
	err := s.canonical(data)
	var h Hash
	if err == nil {
		h = HashCanonical(s.out)
	}
	putState(s)
	return h, err
}

// errWhole asks HashValue to encode the whole value with encoding/json
// because the reflection encoder met something it cannot reproduce exactly.
var errWhole = errors.New("resource: internal: encode with encoding/json")

// HashValue returns the [Hash] of the canonical form of json.Marshal(v): the
// same Hash as HashJSON(json.Marshal(v)) for every v that json.Marshal
// accepts, and an error for every v it rejects — with one deliberate
// exception: a string that is not valid UTF-8 is refused with an error
// wrapping [ErrInvalidJSON], where json.Marshal would replace each bad byte
// with U+FFFD and so give different arguments one key (and one cached
// answer). Typed tools call it with their argument struct on every lookup.
//
// It follows encoding/json's rules (field names and tags, omitempty,
// omitzero, the string option, embedded structs, map key conversion,
// []byte as base64) but writes the canonical form
// directly, without building json.Marshal's output, and caches a plan per
// type. Values it cannot reproduce exactly by reflection — types that
// implement json.Marshaler or encoding.TextMarshaler, structs whose field
// names collide, the string option on string and float fields, omitzero on
// types with an IsZero method — are encoded with json.Marshal and
// canonicalized, which is correct but slower. For a struct of strings,
// numbers, bools, slices and maps of them, HashValue itself does not
// allocate; converting a non-pointer struct to any at the call site
// allocates once.
//
// Here [Limits.MaxBytes] bounds the canonical form, while HashJSON applies
// it to its input, so near the limit one may accept a value the other
// rejects. MaxDepth applies alike.
func HashValue(v any, lim Limits) (Hash, error) {
	s := getState(lim)
	err := s.encodeValue(v)
	if err == errWhole {
		err = s.whole(v)
	}
	var h Hash
	if err == nil {
		h = HashCanonical(s.out)
	}
	putState(s)
	return h, encodeError(err)
}

func (s *state) encodeValue(v any) error {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		s.out = append(s.out, "null"...)
		return nil
	}
	return s.encode(rv, planFor(rv.Type()))
}
