// Package jsontype checks, from a Go type alone, what encoding/json does
// with its values: which parts of them it leaves out, and which it cannot
// bring back. The same walk serves the two promises that depend on it:
// a call's key covers every part of its arguments that the tool sees
// ([Args]), and a cached result comes back from L2 or a snapshot as it
// went in ([Result]).
//
// It follows encoding/json's own rules for struct fields: unexported fields
// and fields tagged `json:"-"` are left out, embedded structs promote their
// fields, and of several fields with one JSON name the shallowest wins (a
// tagged one among equals), while the others are left out without a word.
package jsontype

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// Mode says what a type is checked for.
type Mode uint8

const (
	// Args: every part of a value that a tool sees must be in its
	// encoding, or two calls that differ only there would share a key.
	Args Mode = iota
	// Result: every part of a value must be encoded and must decode back
	// into the same type.
	Result
)

// Error is a type that does not meet its Mode. Path names the part, from the
// checked type down ("Order.Items.note").
type Error struct {
	Path   string
	Reason string
	Mode   Mode
}

func (e *Error) Error() string {
	var why string
	if e.Mode == Args {
		why = "calls that differ only there would share one cached answer"
	} else {
		why = "a hit from L2 or a snapshot would not return the value the tool did"
	}
	return e.Path + " " + e.Reason + ": " + why
}

var (
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textMarshaler   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Check reports the first part of t that does not meet m, as an *Error; nil
// if every part does. Types that encode themselves (json.Marshaler,
// encoding.TextMarshaler) are trusted when they also decode themselves: a
// type that only encodes (a redacting MarshalJSON, say) is refused, since
// nothing says its encoding holds all it keeps. Interface values are the
// caller's to check when it has one: the type cannot tell what they hold.
func Check(t reflect.Type, m Mode) error {
	c := checker{mode: m, seen: map[reflect.Type]bool{}}
	return c.check(t, t.String())
}

type checker struct {
	mode Mode
	seen map[reflect.Type]bool
}

func (c *checker) fail(path, format string, args ...any) error {
	return &Error{Path: path, Reason: fmt.Sprintf(format, args...), Mode: c.mode}
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface)
}

func (c *checker) check(t reflect.Type, path string) error {
	if c.seen[t] {
		return nil
	}
	c.seen[t] = true
	if implements(t, jsonMarshaler) {
		if !implements(t, jsonUnmarshaler) {
			return c.fail(path, "is a %s, which has a MarshalJSON method but no UnmarshalJSON", t)
		}
		return nil
	}
	if implements(t, textMarshaler) {
		if !implements(t, textUnmarshaler) {
			return c.fail(path, "is a %s, which has a MarshalText method but no UnmarshalText", t)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return c.fail(path, "is a %s, which encoding/json cannot encode", t)
	case reflect.Interface:
		if c.mode == Result && t.NumMethod() > 0 {
			return c.fail(path, "is the interface %s, which encoding/json cannot decode into", t)
		}
		return nil
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return c.check(t.Elem(), path)
	case reflect.Map:
		if err := c.mapKey(t.Key(), path); err != nil {
			return err
		}
		return c.check(t.Elem(), path)
	case reflect.Struct:
		return c.fields(t, path)
	}
	return nil
}

// mapKey checks a map's key type as encoding/json treats it: string kinds
// as they are, then text marshalers, then integers.
func (c *checker) mapKey(k reflect.Type, path string) error {
	switch {
	case k.Kind() == reflect.String:
		return nil
	case implements(k, textMarshaler):
		if !implements(k, textUnmarshaler) {
			return c.fail(path, "is a map keyed by %s, which has a MarshalText method but no UnmarshalText", k)
		}
		return nil
	}
	switch k.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return nil
	}
	return c.fail(path, "is a map keyed by %s, which encoding/json cannot encode", k)
}

// field is a struct field encoding/json may encode, before the rule that
// picks one of several with the same name.
type field struct {
	name   string // its JSON name
	path   string
	depth  int
	tagged bool
}

// fields checks a struct's fields and the fields its embedded structs
// promote, as encoding/json selects them.
func (c *checker) fields(t reflect.Type, path string) error {
	type level struct {
		t     reflect.Type
		path  string
		depth int
	}
	var found []field
	expanded := map[reflect.Type]bool{}
	for queue := []level{{t, path, 0}}; len(queue) > 0; queue = queue[1:] {
		lv := queue[0]
		if expanded[lv.t] {
			continue
		}
		expanded[lv.t] = true
		for i := range lv.t.NumField() {
			f := lv.t.Field(i)
			p := lv.path + "." + f.Name
			tag := f.Tag.Get("json")
			if tag == "-" {
				return c.fail(p, `is tagged json:"-", so encoding/json leaves it out`)
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				if c.mode == Result && !f.IsExported() && f.Type.Kind() == reflect.Pointer {
					return c.fail(p, "is an embedded pointer to an unexported struct, which encoding/json cannot decode into")
				}
				queue = append(queue, level{ft, p, lv.depth + 1}) // its fields are promoted
				continue
			}
			if !f.IsExported() {
				return c.fail(p, "is unexported, so encoding/json leaves it out")
			}
			if err := c.check(f.Type, p); err != nil {
				return err
			}
			tagged := name != ""
			if !tagged {
				name = f.Name
			}
			found = append(found, field{name: name, path: p, depth: lv.depth, tagged: tagged})
		}
	}
	return c.dominance(found)
}

// dominance refuses the fields that encoding/json drops because another
// field has their JSON name: all but the shallowest (and, among the
// shallowest, the one tagged), or all of them when none wins.
func (c *checker) dominance(found []field) error {
	byName := map[string][]field{}
	for _, f := range found {
		byName[f.name] = append(byName[f.name], f)
	}
	names := make([]string, 0, len(byName))
	for n, fs := range byName {
		if len(fs) > 1 {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		fs := byName[n]
		top := fs[0].depth
		for _, f := range fs {
			top = min(top, f.depth)
		}
		var best []field
		for _, f := range fs {
			if f.depth == top {
				best = append(best, f)
			}
		}
		if len(best) > 1 {
			var tagged []field
			for _, f := range best {
				if f.tagged {
					tagged = append(tagged, f)
				}
			}
			if len(tagged) == 1 {
				best = tagged
			}
		}
		for _, f := range fs {
			if len(best) == 1 && f.path == best[0].path {
				continue
			}
			return c.fail(f.path, "has the JSON name %q of another field, so encoding/json leaves it out", n)
		}
	}
	return nil
}

var timeType = reflect.TypeFor[time.Time]()

// zonedTypes caches, per type, whether its values can hold a time.Time
// outside an interface.
var zonedTypes sync.Map // reflect.Type → bool

// HoldsTime reports whether values of t can hold a time.Time other than
// behind an interface (whose decoded values never do).
func HoldsTime(t reflect.Type) bool {
	if v, ok := zonedTypes.Load(t); ok {
		return v.(bool)
	}
	ok := holdsTime(t, map[reflect.Type]bool{})
	zonedTypes.Store(t, ok)
	return ok
}

func holdsTime(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == timeType {
		return true
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return holdsTime(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() || f.Anonymous {
				if holdsTime(f.Type, seen) {
					return true
				}
			}
		}
	}
	return false
}

// zones interns the fixed zones of decoded times, by offset.
var zones sync.Map // int → *time.Location

// InternZones gives every time.Time in v (a decoded value, reached through
// a pointer) whose zone is a fixed, unnamed offset, as time.Parse makes for
// an offset that is not the local one, the one *time.Location this process
// keeps for that offset. Two decodes of one encoding then give times that
// are == (they would otherwise hold two equal zones at two addresses).
func InternZones(v reflect.Value) {
	if v.IsValid() && HoldsTime(v.Type()) {
		intern(v)
	}
}

func intern(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			intern(v.Elem())
		}
		return
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			intern(v.Index(i))
		}
		return
	case reflect.Map:
		if v.Len() == 0 || !HoldsTime(v.Type().Elem()) {
			return
		}
		iter := v.MapRange()
		for iter.Next() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(iter.Value())
			intern(e)
			v.SetMapIndex(iter.Key(), e)
		}
		return
	case reflect.Struct:
		if v.Type() == timeType {
			if !v.CanSet() {
				return
			}
			t := v.Interface().(time.Time)
			_, off := t.Zone()
			loc := t.Location()
			switch {
			case off == 0 && loc != time.UTC:
				// An offset of zero is written "Z" once decoded into a
				// zone of its own (Local, or one made for "+00:00"), so a
				// copy encoded again (a snapshot's) would decode as UTC:
				// it is UTC from the first decode on.
				v.Set(reflect.ValueOf(t.UTC()))
			case loc != time.UTC && loc != time.Local && loc.String() == "":
				z, ok := zones.Load(off)
				if !ok {
					z, _ = zones.LoadOrStore(off, time.FixedZone("", off))
				}
				v.Set(reflect.ValueOf(t.In(z.(*time.Location))))
			}
			return
		}
		for i := range v.NumField() {
			if f := v.Type().Field(i); (f.IsExported() || f.Anonymous) && HoldsTime(f.Type) {
				intern(v.Field(i))
			}
		}
	}
}
