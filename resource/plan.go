package resource

import (
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// A plan says how HashValue encodes values of one type. Plans are built
// once per type, following encoding/json's rules for choosing an encoder,
// and cached.
type plan struct {
	kind   planKind
	elem   *plan     // kPtr, kSlice, kArray, kMap: the element's plan
	alt    *plan     // kAddrMarshal: the plan for non-addressable values
	key    keyKind   // kMap
	fast   fastMap   // kMap
	fields []fieldPl // kStruct, sorted by name
}

type planKind uint8

const (
	kUnsupported planKind = iota // json.Marshal fails: chan, func, complex, …
	kBool
	kInt
	kUint
	kFloat32
	kFloat64
	kString
	kNumber // json.Number
	kRaw    // json.RawMessage
	kBytes  // []byte, as base64
	kSlice
	kArray
	kMap
	kPtr
	kIface
	kStruct
	kMarshal     // encoded by encoding/json and canonicalized
	kAddrMarshal // kMarshal if the value is addressable, else alt
)

type keyKind uint8

const (
	keyString keyKind = iota
	keyInt
	keyUint
)

type fastMap uint8

const (
	fastNone fastMap = iota
	fastStringAny
	fastStringString
)

type fieldPl struct {
	key       string // the name, for sorting
	name      []byte // `"name":` in canonical form
	index     []int  // field indexes from the struct, through embedded structs
	omitEmpty bool
	omitZero  bool
	quoted    bool // the ",string" option on a bool, int or uint field
	plan      *plan
	// direct is set on a field of the struct itself (not promoted) of a
	// scalar plan (bool, int, uint, string) and without the string
	// option: encoded from its offset in an addressable struct, with no
	// reflection.
	direct bool
	size   uint8   // direct ints and uints: the size in bytes
	offset uintptr // direct fields: the offset in the struct
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	isZeroerType      = reflect.TypeFor[interface{ IsZero() bool }]()
	numberType        = reflect.TypeFor[json.Number]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	mapStringAnyType  = reflect.TypeFor[map[string]any]()
	mapStringStrType  = reflect.TypeFor[map[string]string]()
)

var (
	plans   sync.Map   // reflect.Type → *plan, complete plans only
	buildMu sync.Mutex // serializes building, so a plan graph is published whole
)

func planFor(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	b := builder{made: map[reflect.Type]*plan{}}
	p := b.plan(t)
	for t, p := range b.made {
		plans.Store(t, p)
	}
	return p
}

// builder builds the plans of a type and the types it reaches. Recursive
// types are handled by registering a plan before filling it in.
type builder struct {
	made map[reflect.Type]*plan
}

func (b *builder) plan(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	if p, ok := b.made[t]; ok {
		return p
	}
	p := new(plan)
	b.made[t] = p
	b.fill(p, t, true)
	return p
}

func implementsMarshaler(t reflect.Type) bool {
	return t.Implements(marshalerType) || t.Implements(textMarshalerType)
}

// fill chooses p's encoding for t in the order encoding/json does. allowAddr
// is false when building the plan for values known not to be addressable.
func (b *builder) fill(p *plan, t reflect.Type, allowAddr bool) {
	switch {
	case t == rawMessageType:
		// Its MarshalJSON returns it unchanged (or null), which json.Marshal
		// then validates: canonicalizing it directly gives the same result.
		p.kind = kRaw
		return
	case allowAddr && t.Kind() != reflect.Pointer && implementsMarshaler(reflect.PointerTo(t)):
		p.kind = kAddrMarshal
		p.alt = new(plan)
		b.fill(p.alt, t, false)
		return
	case implementsMarshaler(t):
		p.kind = kMarshal
		return
	case t == numberType:
		p.kind = kNumber
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		p.kind = kBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.kind = kInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		p.kind = kUint
	case reflect.Float32:
		p.kind = kFloat32
	case reflect.Float64:
		p.kind = kFloat64
	case reflect.String:
		p.kind = kString
	case reflect.Interface:
		p.kind = kIface
	case reflect.Pointer:
		p.kind = kPtr
		p.elem = b.plan(t.Elem())
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Uint8 && !implementsMarshaler(reflect.PointerTo(e)) {
			p.kind = kBytes
			return
		}
		p.kind = kSlice
		p.elem = b.plan(t.Elem())
	case reflect.Array:
		p.kind = kArray
		p.elem = b.plan(t.Elem())
	case reflect.Map:
		b.fillMap(p, t)
	case reflect.Struct:
		b.fillStruct(p, t)
	default:
		p.kind = kUnsupported
	}
}

func (b *builder) fillMap(p *plan, t reflect.Type) {
	k := t.Key()
	switch k.Kind() {
	case reflect.String:
		p.key = keyString // used as is, even if it implements TextMarshaler
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.key = keyInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		p.key = keyUint
	default:
		if k.Implements(textMarshalerType) {
			p.kind = kMarshal
		} else {
			p.kind = kUnsupported
		}
		return
	}
	if p.key != keyString && k.Implements(textMarshalerType) {
		p.kind = kMarshal // the key's MarshalText wins over its number
		return
	}
	p.kind = kMap
	p.elem = b.plan(t.Elem())
	switch t {
	case mapStringAnyType:
		p.fast = fastStringAny
	case mapStringStrType:
		p.fast = fastStringString
	}
}

// fillStruct lists the fields encoding/json would encode. Where the
// reflection encoder could not match encoding/json exactly, the struct is
// encoded by encoding/json instead.
func (b *builder) fillStruct(p *plan, t reflect.Type) {
	fields, ok := jsonFields(t)
	if !ok {
		p.kind = kMarshal
		return
	}
	p.kind = kStruct
	p.fields = make([]fieldPl, 0, len(fields))
	for _, f := range fields {
		fp := b.plan(f.typ)
		if f.omitZero && (f.typ.Implements(isZeroerType) || reflect.PointerTo(f.typ).Implements(isZeroerType)) {
			p.kind, p.fields = kMarshal, nil // omitzero calls the IsZero method
			return
		}
		if f.quoted && fp.kind != kBool && fp.kind != kInt && fp.kind != kUint {
			p.kind, p.fields = kMarshal, nil // quoted strings, floats and pointers
			return
		}
		name := appendQuotedString(nil, f.name)
		fl := fieldPl{
			key:       f.name,
			name:      append(name, ':'),
			index:     f.index,
			omitEmpty: f.omitEmpty,
			omitZero:  f.omitZero,
			quoted:    f.quoted,
			plan:      fp,
		}
		if len(f.index) == 1 && !f.quoted {
			switch fp.kind {
			case kBool, kInt, kUint, kString:
				sf := t.Field(f.index[0])
				fl.direct, fl.size, fl.offset = true, uint8(sf.Type.Size()), sf.Offset
			}
		}
		p.fields = append(p.fields, fl)
	}
	// Names are unique and valid UTF-8 (tag names and identifiers), so this
	// is the order of the canonical form.
	slices.SortFunc(p.fields, func(a, b fieldPl) int { return strings.Compare(a.key, b.key) })
}

type jsonField struct {
	name                string
	index               []int
	typ                 reflect.Type
	omitEmpty, omitZero bool
	quoted              bool
}

// jsonFields returns the fields encoding/json encodes for struct type t, in
// no particular order, or false if two of them have the same name. Names
// that collide are resolved by Go's embedding rules plus JSON tags; rather
// than reproduce those, such structs are left to encoding/json. Without a
// collision, every field found is encoded.
func jsonFields(t reflect.Type) ([]jsonField, bool) {
	type embedded struct {
		typ   reflect.Type
		index []int
		count int // how many times typ was queued at this depth
	}
	var fields []jsonField
	visited := map[reflect.Type]bool{}
	level := []embedded{{typ: t, count: 1}}
	for len(level) > 0 {
		var next []embedded
		queued := map[reflect.Type]int{} // position in next
		for _, e := range level {
			if visited[e.typ] {
				continue
			}
			visited[e.typ] = true
			for i := range e.typ.NumField() {
				sf := e.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTagName(name) {
					name = ""
				}
				index := append(slices.Clip(e.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					// An untagged embedded struct: its fields are promoted.
					if at, ok := queued[ft]; ok {
						next[at].count++
					} else {
						queued[ft] = len(next)
						next = append(next, embedded{typ: ft, index: index, count: 1})
					}
					continue
				}
				if e.count > 1 {
					// The same struct embedded twice at one depth: its
					// fields collide with each other.
					return nil, false
				}
				if name == "" {
					name = sf.Name
				}
				f := jsonField{name: name, index: index, typ: sf.Type}
				for opts != "" {
					var o string
					o, opts, _ = strings.Cut(opts, ",")
					switch o {
					case "omitempty":
						f.omitEmpty = true
					case "omitzero":
						f.omitZero = true
					case "string":
						switch ft.Kind() {
						case reflect.Bool,
							reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
							reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
							reflect.Float32, reflect.Float64,
							reflect.String:
							f.quoted = true
						}
					}
				}
				fields = append(fields, f)
			}
		}
		level = next
	}
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		if seen[f.name] {
			return nil, false
		}
		seen[f.name] = true
	}
	return fields, true
}

// validTagName reports whether encoding/json accepts name from a struct tag.
func validTagName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			return false
		}
	}
	return true
}
