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
