package resource

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// ErrLossyArgs is wrapped by the error of [CheckArgs] for an argument type
// whose JSON encoding leaves out part of the value.
var ErrLossyArgs = errors.New("resource: arguments the key would not cover")

// CheckArgs reports whether every part of a value of type t that a tool can
// see is in its JSON encoding, which is what [HashValue] keys a call on. A
// struct field that encoding/json leaves out (unexported, or tagged
// `json:"-"`) is not: two calls that differ only there would share one
// cached answer, though the tool gets different input. The error names
// the field. Types that encode themselves (json.Marshaler,
// encoding.TextMarshaler) are trusted to encode what they hold; interface
// values are checked when they are hashed, not here.
func CheckArgs(t reflect.Type) error {
	return checkArgs(t, t.String(), map[reflect.Type]bool{})
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerT    = reflect.TypeFor[encoding.TextMarshaler]()
)

func selfEncoding(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(jsonMarshalerType) || pt.Implements(jsonMarshalerType) ||
		t.Implements(textMarshalerT) || pt.Implements(textMarshalerT)
}

func checkArgs(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if selfEncoding(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return checkArgs(t.Elem(), path, seen)
	case reflect.Map:
		return checkArgs(t.Elem(), path, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name := path + "." + f.Name
			tag := f.Tag.Get("json")
			if tag == "-" {
				return fmt.Errorf("%w: %s is tagged json:\"-\": calls that differ only there would share one cached answer; key the call on it (drop the tag) or keep it out of the arguments", ErrLossyArgs, name)
			}
			if !f.IsExported() {
				if f.Anonymous && strings.TrimSpace(tag) == "" {
					ft := f.Type
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if ft.Kind() == reflect.Struct { // its exported fields are promoted
						if err := checkArgs(ft, name, seen); err != nil {
							return err
						}
						continue
					}
				}
				return fmt.Errorf("%w: %s is unexported: encoding/json leaves it out, so calls that differ only there would share one cached answer; export it or keep it out of the arguments", ErrLossyArgs, name)
			}
			if err := checkArgs(f.Type, name, seen); err != nil {
				return err
			}
		}
	}
	return nil
}
