package cbor

import (
	"encoding"
	"fmt"
	"math/big"
	"reflect"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

var (
	timeType          = reflect.TypeFor[time.Time]()
	bigIntType        = reflect.TypeFor[big.Int]()
	cborMarshaler     = reflect.TypeFor[cbor.Marshaler]()
	cborUnmarshaler   = reflect.TypeFor[cbor.Unmarshaler]()
	binaryMarshaler   = reflect.TypeFor[encoding.BinaryMarshaler]()
	binaryUnmarshaler = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface)
}

// opaque reports whether values of t are written by a method of their own,
// so that the walks below leave them alone. A pointer is not: the walks go
// on to what it points to (a *time.Time has time.Time's methods).
func opaque(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		return false
	}
	return implements(t, cborMarshaler) || implements(t, binaryMarshaler) || t == bigIntType
}

// walkPlan says which walks a type's values need.
type walkPlan struct {
	// encodeWalk: a value may hold a time.Time (whose offset Marshal
	// checks) or be nested without bound (a recursive type, or one with
	// an interface): Marshal walks it first.
	encodeWalk bool
	// decodeWalk: a decoded value may hold a time.Time, whose zone
	// Unmarshal interns.
	decodeWalk bool
	// opaque: values are written by a method of their own (or are a
	// big.Int), and the walks leave them alone.
	opaque bool
}

var plans sync.Map // reflect.Type → walkPlan

func plan(t reflect.Type) walkPlan {
	if p, ok := plans.Load(t); ok {
		return p.(walkPlan)
	}
	var p walkPlan
	p.opaque = opaque(t)
	p.decodeWalk = holdsTime(t, map[reflect.Type]bool{})
	p.encodeWalk = p.decodeWalk || recursive(t, map[reflect.Type]int{})
	plans.Store(t, p)
	return p
}

// holdsTime reports whether values of t can hold a time.Time or a big.Int
// (whose zero the library decodes in two ways), an interface{} among the
// ways (it can hold anything).
func holdsTime(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == timeType || t == bigIntType || t.Kind() == reflect.Interface {
		return true
	}
	if seen[t] || opaque(t) {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return holdsTime(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); (f.IsExported() || f.Anonymous) && holdsTime(f.Type, seen) {
				return true
			}
		}
	}
	return false
}

// recursive reports whether t refers to itself (so that its values may
// nest without bound, or form a cycle). state: 1 on the path, 2 done.
func recursive(t reflect.Type, state map[reflect.Type]int) bool {
	switch state[t] {
	case 1:
		return true
	case 2:
		return false
	}
	if opaque(t) {
		return false
	}
	state[t] = 1
	defer func() { state[t] = 2 }()
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return recursive(t.Elem(), state)
	case reflect.Map:
		return recursive(t.Key(), state) || recursive(t.Elem(), state)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); (f.IsExported() || f.Anonymous) && recursive(f.Type, state) {
				return true
			}
		}
	}
	return false
}

// maxEncodeDepth is how deep a value Marshal writes: deep enough for all
// that Unmarshal reads back (the library counts levels its own way, a run
// of tags as one fewer), and shallow enough that a cyclic value is refused
// before it overflows the stack.
const maxEncodeDepth = 2 * MaxNestedLevels

// checkValue refuses, before the library sees v, what it would write
// wrongly or could not write at all: a time whose UTC offset has seconds
// (RFC 3339 writes hours and minutes, so the instant would move), and a
// value nested deeper than maxEncodeDepth (a cycle would otherwise
// overflow the stack). depth counts the arrays and maps (slices, arrays,
// maps, structs) around v.
func checkValue(v reflect.Value, depth int) error {
	t := v.Type()
	p := plan(t)
	if !p.encodeWalk {
		return nil
	}
	if t == timeType {
		tm := v.Interface().(time.Time)
		if _, off := tm.Zone(); off%60 != 0 {
			return fmt.Errorf("cbor: the time %s has a UTC offset with seconds (%ds), which RFC 3339 cannot write", tm.Format(time.RFC3339), off)
		}
		return nil
	}
	if p.opaque {
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return checkValue(v.Elem(), depth)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // a byte string
		}
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		if depth++; depth > maxEncodeDepth {
			return errTooDeep
		}
		for i := range v.Len() {
			if err := checkValue(v.Index(i), depth); err != nil {
				return err
			}
		}
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		if depth++; depth > maxEncodeDepth {
			return errTooDeep
		}
		iter := v.MapRange()
		for iter.Next() {
			if err := checkValue(iter.Key(), depth); err != nil {
				return err
			}
			if err := checkValue(iter.Value(), depth); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if depth++; depth > maxEncodeDepth {
			return errTooDeep
		}
		for i := range v.NumField() {
			if f := t.Field(i); f.IsExported() || f.Anonymous {
				if err := checkValue(v.Field(i), depth); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// zones holds the one fixed zone this process gives decoded times of each
// offset.
var zones sync.Map // int → *time.Location

func zoneFor(off int) *time.Location {
	if z, ok := zones.Load(off); ok {
		return z.(*time.Location)
	}
	z, _ := zones.LoadOrStore(off, time.FixedZone("", off))
	return z.(*time.Location)
}

// fixer walks a decoded value; err is the first time in it that Marshal
// would refuse.
type fixer struct{ err error }

// intern gives every time.Time in a decoded value (reached through the
// pointer Unmarshal was given) the zone of its offset: UTC for zero, else
// the one fixed zone zoneFor keeps. time.Parse returns time.Local for an
// offset Local has at that instant and a new zone otherwise; after this,
// two decodes of the same bytes are == whatever the machine's zone. It
// reports whether it changed v, for the callers that must set a copy back
// (map values and interface contents are not addressable).
func (fx *fixer) intern(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || !plan(v.Type().Elem()).decodeWalk {
			return false
		}
		fx.intern(v.Elem())
		return false // the pointer itself is unchanged
	case reflect.Interface:
		if v.IsNil() {
			return false
		}
		e := v.Elem()
		if !plan(e.Type()).decodeWalk {
			return false
		}
		c := reflect.New(e.Type()).Elem()
		c.Set(e)
		if fx.intern(c) {
			v.Set(c)
			return true
		}
		return false
	case reflect.Slice, reflect.Array:
		if !plan(v.Type().Elem()).decodeWalk {
			return false
		}
		changed := false
		for i := range v.Len() {
			changed = fx.intern(v.Index(i)) || changed
		}
		return changed && v.Kind() == reflect.Array
	case reflect.Map:
		if v.Len() == 0 || !plan(v.Type().Elem()).decodeWalk {
			return false
		}
		c := reflect.New(v.Type().Elem()).Elem()
		iter := v.MapRange()
		for iter.Next() {
			c.Set(iter.Value())
			if fx.intern(c) {
				v.SetMapIndex(iter.Key(), c)
			}
		}
		return false // the map is changed in place
	case reflect.Struct:
		if v.Type() == timeType {
			t := v.Interface().(time.Time)
			_, off := t.Zone()
			var z *time.Location
			if off == 0 {
				z = time.UTC
			} else {
				z = zoneFor(off)
			}
			if y := t.Year(); (y < 0 || y > 9999 || off%60 != 0 || off <= -24*3600 || off >= 24*3600) && fx.err == nil {
				// Only from a tag 1 (epoch) time, which Marshal never
				// writes: refused, as Marshal would refuse to write it.
				fx.err = fmt.Errorf("cbor: the decoded time %v cannot be written back in RFC 3339", t)
			}
			if t.Location() == z || !v.CanSet() {
				return false
			}
			v.Set(reflect.ValueOf(t.In(z)))
			return true
		}
		if v.Type() == bigIntType {
			// A zero decoded from a bignum with leading zero bytes has an
			// empty slice where zero has none: make it the one zero.
			if x := v.Addr().Interface().(*big.Int); x.Sign() == 0 && !v.IsZero() && v.CanSet() {
				v.Set(reflect.Zero(bigIntType))
				return true
			}
			return false
		}
		if plan(v.Type()).opaque {
			return false
		}
		changed := false
		for i := range v.NumField() {
			if f := v.Type().Field(i); (f.IsExported() || f.Anonymous) && plan(f.Type).decodeWalk {
				changed = fx.intern(v.Field(i)) || changed
			}
		}
		return changed
	}
	return false
}
