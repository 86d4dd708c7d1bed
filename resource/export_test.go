package resource

import "reflect"

// UsesEncodingJSON reports whether HashValue hands whole values of type t
// to encoding/json rather than encoding them by reflection.
func UsesEncodingJSON(t reflect.Type) bool {
	switch planFor(t).kind {
	case kMarshal, kAddrMarshal:
		return true
	}
	return false
}

// HashAsArgs hashes v as an ArgsEncoder of v's type does: from an
// addressable copy, encoded as the value json.Marshal sees.
func HashAsArgs(v any) (Hash, error) {
	rv := reflect.ValueOf(v)
	cp := reflect.New(rv.Type()).Elem()
	cp.Set(rv)
	s := getState(Limits{})
	err := s.encodeCopy(cp, planFor(rv.Type()))
	var h Hash
	if err == nil {
		h = HashCanonical(s.out)
	}
	putState(s)
	return h, encodeError(err)
}

// Flat reports whether e writes its arguments without reflection.
func (e *ArgsEncoder[A]) Flat() bool { return e.flat }
