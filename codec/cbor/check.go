package cbor

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// TypeError is CheckType's refusal of a type: Path names the part, from the
// checked type down ("pkg.Order.Items.note"), and Reason says what the
// codec would do to it.
type TypeError struct {
	Path   string
	Reason string
}

func (e *TypeError) Error() string {
	return "cbor: " + e.Path + " " + e.Reason + ": a hit from L2 or a snapshot would not return the value the tool did"
}

// CheckType implements agentcache.TypeChecker. It refuses, as a
// *TypeError naming the part, a type with a part this codec leaves out (an
// unexported field, one tagged `cbor:"-"` or, untagged for cbor,
// `json:"-"`, one hidden by another field of the same name), cannot write
// (a func, a channel, a complex number, an unsafe.Pointer, a uintptr, a
// keyasint field whose name is no integer), cannot read back into (an
// interface with methods, such as error; an embedded pointer to an
// unexported struct; a type with one of MarshalCBOR and UnmarshalCBOR, or
// of MarshalBinary and UnmarshalBinary, but not the other) or would read
// back as another value (a pointer to a pointer, an interface, a slice or a
// map, whose nil inside comes back as a nil outer pointer; a map keyed by
// anything but strings, booleans, integers, floats and byte arrays).
func (Codec) CheckType(t reflect.Type) error {
	if t == nil {
		return nil
	}
	c := checker{seen: map[reflect.Type]bool{}}
	return c.check(t, t.String())
}

type checker struct{ seen map[reflect.Type]bool }

func fail(path, format string, args ...any) error {
	return &TypeError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

func (c *checker) check(t reflect.Type, path string) error {
	if c.seen[t] {
		return nil
	}
	c.seen[t] = true
	if t == timeType || t == bigIntType {
		return nil
	}
	if err := pair(t, path, cborMarshaler, cborUnmarshaler, "MarshalCBOR", "UnmarshalCBOR"); err != nil || implements(t, cborMarshaler) {
		return err
	}
	if err := pair(t, path, binaryMarshaler, binaryUnmarshaler, "MarshalBinary", "UnmarshalBinary"); err != nil || implements(t, binaryMarshaler) {
		return err
	}
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128, reflect.Uintptr:
		return fail(path, "is a %s, which cbor cannot encode", t)
	case reflect.Interface:
		if t.NumMethod() > 0 {
			return fail(path, "is the interface %s, which cbor cannot decode into", t)
		}
		return nil
	case reflect.Pointer:
		switch e := t.Elem(); e.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
			if !implements(e, cborMarshaler) && !implements(e, binaryMarshaler) {
				return fail(path, "is a %s: a nil %s behind it is written as null and comes back as a nil pointer", t, e.Kind())
			}
		}
		return c.check(t.Elem(), path)
	case reflect.Slice, reflect.Array:
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

// pair refuses a type with one method of a pair but not the other: it
// would be written one way and read another.
func pair(t reflect.Type, path string, m, u reflect.Type, mName, uName string) error {
	switch hasM, hasU := implements(t, m), implements(t, u); {
	case hasM && !hasU:
		return fail(path, "is a %s, which has a %s method but no %s", t, mName, uName)
	case hasU && !hasM:
		return fail(path, "is a %s, which has an %s method but no %s", t, uName, mName)
	}
	return nil
}

// mapKey accepts the key types whose decoded keys are == to the written
// ones: of string, boolean, integer or float kind, or arrays of bytes.
func (c *checker) mapKey(k reflect.Type, path string) error {
	if implements(k, cborMarshaler) || implements(k, binaryMarshaler) {
		return fail(path, "is a map keyed by %s, which marshals itself, so its decoded keys may differ", k)
	}
	switch k.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Array:
		if k.Elem().Kind() == reflect.Uint8 {
			return nil
		}
	}
	return fail(path, "is a map keyed by %s, which cbor does not carry faithfully", k)
}

// field is a struct field the codec writes, before the rule that picks one
// of several with the same name.
type field struct {
	name     string
	keyAsInt bool
	path     string
	depth    int
	tagged   bool
}

// fields checks a struct's fields and the ones its embedded structs
// promote, as the library selects them: the cbor tag, or else the json
// tag, names a field; an untagged embedded struct promotes its fields.
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
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if f.Name == "_" && f.Type.Size() == 0 {
				continue // holds struct options such as toarray, and no data
			}
			tagKey, tag := "cbor", f.Tag.Get("cbor")
			if tag == "" {
				tagKey, tag = "json", f.Tag.Get("json")
			}
			if tag == "-" {
				return fail(p, "is tagged %s:\"-\", so cbor leaves it out", tagKey)
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				if !f.IsExported() && f.Type.Kind() == reflect.Pointer {
					return fail(p, "is an embedded pointer to an unexported struct, which cbor cannot decode into")
				}
				queue = append(queue, level{ft, p, lv.depth + 1}) // its fields are promoted
				continue
			}
			if !f.IsExported() {
				return fail(p, "is unexported, so cbor leaves it out")
			}
			keyAsInt := slices.Contains(strings.Split(opts, ","), "keyasint")
			if keyAsInt {
				if _, err := strconv.Atoi(name); err != nil {
					return fail(p, "is tagged keyasint with the name %q, which is not an integer", name)
				}
			}
			if err := c.check(f.Type, p); err != nil {
				return err
			}
			tagged := tag != ""
			if name == "" {
				name = f.Name
			}
			if keyAsInt {
				n, _ := strconv.Atoi(name)
				name = strconv.Itoa(n)
			}
			found = append(found, field{name: name, keyAsInt: keyAsInt, path: p, depth: lv.depth, tagged: tagged})
		}
	}
	return dominance(found)
}

// dominance refuses the fields the library drops because another field
// has their name: all but the shallowest (and, among the shallowest, the
// one tagged), or all of them when none wins.
func dominance(found []field) error {
	type key struct {
		name     string
		keyAsInt bool
	}
	byName := map[key][]field{}
	var keys []key
	for _, f := range found {
		k := key{f.name, f.keyAsInt}
		if byName[k] == nil {
			keys = append(keys, k)
		}
		byName[k] = append(byName[k], f)
	}
	for _, k := range keys {
		fs := byName[k]
		if len(fs) < 2 {
			continue
		}
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
			return fail(f.path, "has the name %q of another field, so cbor leaves it out", k.name)
		}
	}
	return nil
}
