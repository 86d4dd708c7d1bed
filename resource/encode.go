package resource

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// maxIndirections is how many pointers and interfaces the reflection
// encoder follows on one path before it hands the value to encoding/json,
// which detects pointer cycles. Nesting of arrays and objects is bounded by
// Limits.MaxDepth instead.
const maxIndirections = 1000

// encode writes the canonical form of json.Marshal(v) to s.out.
func (s *state) encode(v reflect.Value, p *plan) error {
	switch p.kind {
	case kBool:
		if v.Bool() {
			s.out = append(s.out, "true"...)
		} else {
			s.out = append(s.out, "false"...)
		}
	case kInt:
		// A decimal integer of at most 19 digits is already canonical.
		s.out = strconv.AppendInt(s.out, v.Int(), 10)
	case kUint:
		s.out = strconv.AppendUint(s.out, v.Uint(), 10)
	case kFloat32:
		return s.float(v, 32)
	case kFloat64:
		return s.float(v, 64)
	case kString:
		x := v.String()
		if !utf8.ValidString(x) {
			return errInvalidUTF8
		}
		s.out = appendQuotedString(s.out, x)
		return s.checkSize()
	case kNumber:
		return s.jsonNumber(v.String())
	case kRaw:
		if v.IsNil() {
			s.out = append(s.out, "null"...)
			return nil
		}
		if err := s.canonical(v.Bytes()); err != nil {
			return err
		}
		return s.checkSize()
	case kBytes:
		if v.IsNil() {
			s.out = append(s.out, "null"...)
			return nil
		}
		s.out = append(s.out, '"')
		s.out = base64.StdEncoding.AppendEncode(s.out, v.Bytes())
		s.out = append(s.out, '"')
		return s.checkSize()
	case kSlice:
		if v.IsNil() {
			s.out = append(s.out, "null"...)
			return nil
		}
		// A slice's elements are addressable, through its array.
		asValue := s.asValue
		s.asValue = false
		err := s.encArray(v, p.elem)
		s.asValue = asValue
		return err
	case kArray:
		return s.encArray(v, p.elem)
	case kMap:
		if v.IsNil() {
			s.out = append(s.out, "null"...)
			return nil
		}
		return s.encObject(v, p)
	case kPtr, kIface:
		if v.IsNil() {
			s.out = append(s.out, "null"...)
			return nil
		}
		if s.indir >= maxIndirections {
			return s.fallback(v)
		}
		s.indir++
		e := v.Elem()
		ep := p.elem
		if p.kind == kIface {
			ep = planFor(e.Type())
		}
		asValue := s.asValue
		s.asValue = false // what a pointer points to is addressable
		err := s.encode(e, ep)
		s.indir--
		s.asValue = asValue
		return err
	case kStruct:
		return s.structure(v, p)
	case kMarshal:
		return s.fallback(v)
	case kAddrMarshal:
		if s.addressable(v) {
			return s.fallback(v)
		}
		return s.encode(v, p.alt)
	default:
		return &json.UnsupportedTypeError{Type: v.Type()}
	}
	return nil
}

// addressable reports whether json.Marshal would see v as addressable
// (which decides whether pointer-receiver MarshalJSON methods apply).
func (s *state) addressable(v reflect.Value) bool { return v.CanAddr() && !s.asValue }

func (s *state) checkSize() error {
	if len(s.out) > s.maxBytes {
		return s.tooLarge()
	}
	return nil
}

func (s *state) tooLarge() error { return tooLarge(s.maxBytes) }

// checkText refuses a value whose text encoding (encoding.TextMarshaler,
// when it is not a json.Marshaler, which encoding/json prefers) is not
// valid UTF-8: encoding/json would replace each bad byte with U+FFFD, so
// two binary IDs that differ only there would share one key.
func checkText(x any) error {
	if _, ok := x.(json.Marshaler); ok {
		return nil
	}
	tm, ok := x.(encoding.TextMarshaler)
	if !ok {
		return nil
	}
	if rv := reflect.ValueOf(x); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil // encoding/json writes null
	}
	b, err := tm.MarshalText()
	if err != nil {
		return nil // encoding/json reports it, as it does for every marshaler
	}
	if !utf8.Valid(b) {
		return errInvalidText
	}
	return nil
}

// errInvalidText refuses a MarshalText result that is not valid UTF-8.
var errInvalidText = &jsonError{ErrInvalidJSON, "MarshalText returned text that is not valid UTF-8", -1}

// errInvalidUTF8 refuses a Go string that is not valid UTF-8. encoding/json
// would replace each bad byte with U+FFFD, so two different arguments
// would share one key (and one cached answer); HashValue refuses instead,
// as HashJSON refuses invalid UTF-8 in JSON text.
var errInvalidUTF8 = &jsonError{ErrInvalidJSON, "string is not valid UTF-8", -1}

// float writes a float as encoding/json would (the shortest decimal that
// reads back as the same float of that size), in canonical form.
func (s *state) float(v reflect.Value, bits int) error {
	f := v.Float()
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return &json.UnsupportedValueError{Value: v, Str: strconv.FormatFloat(f, 'g', -1, bits)}
	}
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, bits) // -d.ddde±dd
	p, _, _ := scanNumber(b, 0)
	s.out, _ = appendNumber(s.out, p)
	return nil
}

// jsonNumber writes a json.Number, which encoding/json writes literally
// after checking that it is a valid number ("" counts as 0).
func (s *state) jsonNumber(n string) error {
	if n == "" {
		s.out = append(s.out, '0')
		return nil
	}
	in := []byte(n)
	p, end, msg := scanNumber(in, 0)
	if msg != "" || end != len(in) {
		return &jsonError{ErrInvalidJSON, "invalid json.Number literal", -1}
	}
	var ok bool
	if s.out, ok = appendNumber(s.out, p); !ok {
		return &jsonError{ErrTooLarge, "json.Number exponent out of range", -1}
	}
	return nil
}

func (s *state) encArray(v reflect.Value, elem *plan) error {
	if err := s.enter(); err != nil {
		return err
	}
	s.out = append(s.out, '[')
	n := v.Len()
	// Each element takes at least two bytes ("0,"): refuse a hopeless
	// array before walking it.
	if n > (s.maxBytes-len(s.out))/2+1 {
		return s.tooLarge()
	}
	for i := range n {
		if i > 0 {
			s.out = append(s.out, ',')
		}
		if err := s.encode(v.Index(i), elem); err != nil {
			return err
		}
		if err := s.checkSize(); err != nil {
			return err
		}
	}
	s.out = append(s.out, ']')
	s.depth--
	return s.checkSize()
}

func (s *state) structure(v reflect.Value, p *plan) error {
	if err := s.enter(); err != nil {
		return err
	}
	s.out = append(s.out, '{')
	first := true
	asValue := s.asValue
	var base unsafe.Pointer // the struct's address, for direct fields
	if v.CanAddr() {
		base = v.Addr().UnsafePointer()
	}
fields:
	for i := range p.fields {
		f := &p.fields[i]
		if f.direct && base != nil {
			if err := s.direct(unsafe.Add(base, f.offset), f, &first); err != nil {
				return err
			}
			continue
		}
		var fv reflect.Value
		s.asValue = asValue
		if len(f.index) == 1 {
			fv = v.Field(f.index[0])
		} else {
			fv = v
			for _, x := range f.index {
				if fv.Kind() == reflect.Pointer { // an embedded *T
					if fv.IsNil() {
						continue fields
					}
					fv = fv.Elem()
					s.asValue = false
				}
				fv = fv.Field(x)
			}
		}
		if f.omitEmpty && isEmptyValue(fv) || f.omitZero && fv.IsZero() {
			continue
		}
		if !first {
			s.out = append(s.out, ',')
		}
		first = false
		s.out = append(s.out, f.name...)
		if err := s.encodeField(fv, f); err != nil {
			return err
		}
	}
	s.asValue = asValue
	s.out = append(s.out, '}')
	s.depth--
	return s.checkSize()
}

// direct writes a direct field (see fieldPl.direct) from its address, as
// structure would by reflection.
func (s *state) direct(p unsafe.Pointer, f *fieldPl, first *bool) error {
	var err error
	if s.out, err = appendDirect(s.out, p, f, first); err != nil {
		return err
	}
	return s.checkSize()
}

// appendDirect appends a direct field (see fieldPl.direct), read from its
// address p, preceded by its name and, unless *first, a comma.
func appendDirect(dst []byte, p unsafe.Pointer, f *fieldPl, first *bool) ([]byte, error) {
	var (
		str    string
		i      int64
		u      uint64
		b      bool
		isZero bool
	)
	switch f.plan.kind {
	case kString:
		str = *(*string)(p)
		isZero = str == ""
	case kBool:
		b = *(*bool)(p)
		isZero = !b
	case kInt:
		switch f.size {
		case 1:
			i = int64(*(*int8)(p))
		case 2:
			i = int64(*(*int16)(p))
		case 4:
			i = int64(*(*int32)(p))
		default:
			i = *(*int64)(p)
		}
		isZero = i == 0
	case kUint:
		switch f.size {
		case 1:
			u = uint64(*(*uint8)(p))
		case 2:
			u = uint64(*(*uint16)(p))
		case 4:
			u = uint64(*(*uint32)(p))
		default:
			u = *(*uint64)(p)
		}
		isZero = u == 0
	}
	if isZero && (f.omitEmpty || f.omitZero) {
		return dst, nil
	}
	if !*first {
		dst = append(dst, ',')
	}
	*first = false
	dst = append(dst, f.name...)
	switch f.plan.kind {
	case kString:
		if !utf8.ValidString(str) {
			return dst, errInvalidUTF8
		}
		dst = appendQuotedString(dst, str)
	case kBool:
		if b {
			dst = append(dst, "true"...)
		} else {
			dst = append(dst, "false"...)
		}
	case kInt:
		dst = strconv.AppendInt(dst, i, 10)
	case kUint:
		dst = strconv.AppendUint(dst, u, 10)
	}
	return dst, nil
}

func (s *state) encodeField(fv reflect.Value, f *fieldPl) error {
	if !f.quoted {
		return s.encode(fv, f.plan)
	}
	s.out = append(s.out, '"')
	if err := s.encode(fv, f.plan); err != nil {
		return err
	}
	s.out = append(s.out, '"')
	return nil
}

// isEmptyValue is encoding/json's definition of empty for omitempty.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64,
		reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// encObject writes a map. Its members are written in iteration order and then
// sorted by closeObject, which also rejects keys that collide once invalid
// UTF-8 is replaced, as HashJSON would reject json.Marshal's output.
func (s *state) encObject(v reflect.Value, p *plan) error {
	if err := s.enter(); err != nil {
		return err
	}
	start := len(s.out)
	s.out = append(s.out, '{')
	// Each member takes at least five bytes (`"":0,`): refuse a hopeless
	// map before walking and sorting it.
	if v.Len() > (s.maxBytes-len(s.out))/5+1 {
		return s.tooLarge()
	}
	memBase, keyBase := len(s.mems), len(s.keys)
	n := 0
	var err error
	switch {
	case p.fast == fastStringAny && v.CanInterface():
		for k, x := range v.Interface().(map[string]any) {
			if err := s.beginMember(&n, k); err != nil {
				return err
			}
			if x == nil {
				s.out = append(s.out, "null"...)
			} else if err = s.encodeAny(x); err != nil {
				return err
			}
			s.endMember(memBase + n - 1)
			if err := s.checkSize(); err != nil {
				return err
			}
		}
	case p.fast == fastStringString && v.CanInterface():
		for k, x := range v.Interface().(map[string]string) {
			if err := s.beginMember(&n, k); err != nil {
				return err
			}
			if !utf8.ValidString(x) {
				return errInvalidUTF8
			}
			s.out = appendQuotedString(s.out, x)
			s.endMember(memBase + n - 1)
			if err := s.checkSize(); err != nil {
				return err
			}
		}
	default:
		it := v.MapRange()
		for it.Next() {
			k := it.Key()
			k0 := len(s.keys)
			switch p.key {
			case keyString:
				if !utf8.ValidString(k.String()) {
					return errInvalidUTF8
				}
				s.keys = appendSanitized(s.keys, k.String(), false)
			case keyInt:
				s.keys = strconv.AppendInt(s.keys, k.Int(), 10)
			case keyUint:
				s.keys = strconv.AppendUint(s.keys, k.Uint(), 10)
			}
			s.beginMemberKey(&n, k0)
			if err = s.encode(it.Value(), p.elem); err != nil {
				return err
			}
			s.endMember(memBase + n - 1)
			if err := s.checkSize(); err != nil {
				return err
			}
		}
	}
	if err := s.closeObject(start, memBase, keyBase, -1); err != nil {
		return err
	}
	return s.checkSize()
}

func (s *state) beginMember(n *int, key string) error {
	if !utf8.ValidString(key) {
		return errInvalidUTF8
	}
	k0 := len(s.keys)
	s.keys = appendSanitized(s.keys, key, false)
	s.beginMemberKey(n, k0)
	return nil
}

// beginMemberKey starts the member whose unescaped key is s.keys[k0:].
func (s *state) beginMemberKey(n *int, k0 int) {
	if *n > 0 {
		s.out = append(s.out, ',')
	}
	*n++
	k1 := len(s.keys)
	m0 := len(s.out)
	s.out = appendQuoted(s.out, s.keys[k0:k1])
	s.out = append(s.out, ':')
	s.mems = append(s.mems, member{k0: k0, k1: k1, m0: m0})
}

func (s *state) endMember(i int) { s.mems[i].m1 = len(s.out) }

// encodeAny writes the value held by an interface, as if reached through
// an interface-typed map value.
func (s *state) encodeAny(x any) error {
	if s.indir >= maxIndirections {
		// As encoding/json sees an interface's content: not addressable.
		b, err := json.Marshal(x)
		if err != nil {
			return err
		}
		if err := s.canonical(b); err != nil {
			return err
		}
		return s.checkSize()
	}
	s.indir++
	v := reflect.ValueOf(x)
	err := s.encode(v, planFor(v.Type()))
	s.indir--
	return err
}

// fallback writes v by running encoding/json on it and canonicalizing the
// result. The value is handed over so that encoding/json sees it exactly as
// its own traversal would have: through its address if it is addressable
// (which decides whether pointer-receiver MarshalJSON methods apply), and
// still wrapped if it is an interface.
func (s *state) fallback(v reflect.Value) error {
	if !v.CanInterface() {
		return errWhole
	}
	var x any
	switch {
	case s.addressable(v):
		x = v.Addr().Interface()
	case v.Kind() == reflect.Interface:
		c := reflect.New(v.Type())
		c.Elem().Set(v)
		x = c.Interface()
	default:
		x = v.Interface()
	}
	if err := checkText(x); err != nil {
		return err
	}
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	if err := s.canonical(b); err != nil {
		return err
	}
	return s.checkSize()
}
